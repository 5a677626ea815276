"""The ``wireguard`` stage's bookkeeping: control datagrams, the transport's hook, statistics."""

from __future__ import annotations

import anyio
import pytest

from tests.helpers import ipv4_udp
from tunflow.datagram import DatagramBatch
from tunflow.packet import PacketBatch
from tunflow.pipeline import StageContext
from tunflow.transport import UDPTransport
from tunflow.wireguard import InterfaceConfig, PeerConfig, PrivateKey
from tunflow.wireguard.protocol import WireGuard
from tunflow.wireguard.stage import WireGuardStage

pytestmark = pytest.mark.anyio

A_ADDR, B_ADDR = ("127.0.0.1", 1), ("127.0.0.2", 2)


def _pair() -> tuple[WireGuardStage, WireGuard]:
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    stage = WireGuardStage.for_config(
        InterfaceConfig(
            ka, peers=[PeerConfig(kb.public_key(), endpoint=B_ADDR, allowed_ips="10.0.0.2/32")]
        )
    )
    b = WireGuard.from_config(
        InterfaceConfig(kb, peers=[PeerConfig(ka.public_key(), allowed_ips="10.0.0.1/32")])
    )
    return stage, b


def _batch(numbers: range) -> PacketBatch:
    out = PacketBatch(capacity=1 << 16, max_packets=64)
    for i in numbers:
        out.append(ipv4_udp("10.0.0.1", "10.0.0.2", 1000, 2000, bytes([i]) * 40))
    return out


def test_what_waited_for_an_outbound_batch_goes_out_once() -> None:
    # With no transport to answer through, what the handshake released waits for the next
    # outbound batch — that one, not every later batch as well.
    stage, b = _pair()
    first = stage.process(_batch(range(2)))  # staged behind the handshake: an initiation
    assert isinstance(first, DatagramBatch)
    for data, _ in first.to_pairs():
        b.receive_datagram(data, A_ADDR, 0.0)
    answers = DatagramBatch(1 << 16)
    for data, _ in b.datagrams_to_send():
        answers.append(data, address=B_ADDR)
    stage.process(answers)  # the response: packets 0 and 1 are released, and wait
    assert len(stage.process(_batch(range(2, 4)))) == 4  # 0, 1, then 2, 3
    assert len(stage.process(_batch(range(4, 5)))) == 1  # 4 alone


def _keepalive_stage(endpoint: tuple[str, int]) -> WireGuardStage:
    return WireGuardStage.for_config(
        InterfaceConfig(
            PrivateKey.generate(),
            peers=[
                PeerConfig(
                    PrivateKey.generate().public_key(),
                    endpoint=endpoint,
                    allowed_ips="10.0.0.2/32",
                    persistent_keepalive=25,
                )
            ],
        )
    )


async def test_a_tunnels_two_pipelines_start_the_interface_once_and_hold_the_hook_to_the_end() -> (
    None
):
    # start(): "Once for the pipelines sharing the stage (a Tunnel's two)"; the transport's
    # on_unsent hook is the stage's until they all stopped, so what the transport cannot send
    # while one of them still runs still comes off the peer's tx_bytes
    async with UDPTransport.bind("127.0.0.1:0") as t, UDPTransport.bind("127.0.0.1:0") as peer:
        stage = _keepalive_stage(peer.local_address)
        context = StageContext(remote=t)
        await stage.start(context)
        await stage.start(context)
        assert stage.statistics().counters["handshake_initiations_sent"] == 1
        assert t.on_unsent == stage.wg.unsent
        await stage.stop()
        assert t.on_unsent == stage.wg.unsent  # the other pipeline still runs
        await stage.stop()
        assert t.on_unsent is None


async def test_a_hook_someone_else_holds_on_the_transport_is_left_alone() -> None:
    # start(): the stage takes the transport's on_unsent hook "if nobody else holds it"
    seen: list[int] = []

    def theirs(address: object, nbytes: int) -> None:
        seen.append(nbytes)

    async with UDPTransport.bind("127.0.0.1:0") as t, UDPTransport.bind("127.0.0.1:0") as peer:
        t.on_unsent = theirs
        stage = _keepalive_stage(peer.local_address)
        await stage.start(StageContext(remote=t))
        assert t.on_unsent is theirs
        await stage.stop()
        assert t.on_unsent is theirs


def test_statistics_name_each_drop_by_its_reason_and_only_the_drops_that_happened() -> None:
    stage, _ = _pair()
    junk = DatagramBatch(1 << 12)
    # a transport data message for a receiver index nobody has
    junk.append(b"\x04\x00\x00\x00" + b"\x11" * 4 + bytes(8) + bytes(16), address=B_ADDR)
    stage.process(junk)
    s = stage.statistics()
    assert s.drops == {"unknown_index": 1}
    assert "dropped_unknown_index" not in s.counters


def test_a_stage_without_peers_asks_for_mtu_sized_packets() -> None:
    # super-packets go whole only to native-mode peers; with none at all nothing says so
    stage = WireGuardStage.for_config(InterfaceConfig(PrivateKey.generate()))
    assert stage.needs_mtu_packets


async def test_more_control_datagrams_than_one_batch_holds_are_all_sent() -> None:
    # 2,000 keepalive peers start their handshakes at once: 2,000 initiations of 148 bytes,
    # more than the stage's control batch (256 KiB) holds; they go out in several batches
    n = 2000
    async with UDPTransport.bind("127.0.0.1:0") as t, UDPTransport.bind("127.0.0.1:0") as peer:
        stage = WireGuardStage.for_config(
            InterfaceConfig(
                PrivateKey.generate(),
                peers=[
                    PeerConfig(
                        PrivateKey.generate().public_key(),
                        endpoint=peer.local_address,
                        allowed_ips=f"10.{i >> 8}.{i & 255}.1/32",
                        persistent_keepalive=25,
                    )
                    for i in range(n)
                ],
            )
        )
        await stage.start(StageContext(remote=t))
        got = 0
        with anyio.fail_after(10):
            while got < n:
                got += len(await peer.recv_batch())
        await stage.stop()
    assert got == n
