"""The ``wireguard`` pipeline stage: two pipelines per side over UDP on loopback (no root)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.helpers import ipv4_udp, udp_payload
from tunflow.pipeline import (
    Direction,
    MemorySink,
    MemorySource,
    Pipeline,
    StageSpec,
    TransportPort,
    build_stage,
)
from tunflow.transport import UDPTransport
from tunflow.wireguard import InterfaceConfig, PeerConfig, PrivateKey
from tunflow.wireguard.stage import WireGuardStage

pytestmark = pytest.mark.anyio


def configs(
    port_a: int, port_b: int, *, native: bool = False, keepalive: int = 0
) -> tuple[InterfaceConfig, InterfaceConfig]:
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    a = InterfaceConfig(
        ka,
        peers=[
            PeerConfig(
                kb.public_key(),
                endpoint=("127.0.0.1", port_b),
                allowed_ips="10.0.0.2/32",
                native_mode=native,
                persistent_keepalive=keepalive,
            )
        ],
    )
    b = InterfaceConfig(
        kb,
        peers=[PeerConfig(ka.public_key(), allowed_ips="10.0.0.1/32", native_mode=native)],
    )
    return a, b


@pytest.mark.parametrize("native", [False, True], ids=["wireguard", "native"])
async def test_two_sides_handshake_and_deliver(native: bool) -> None:
    packets = [ipv4_udp("10.0.0.1", "10.0.0.2", 1000, 2000, bytes([i]) * 300) for i in range(20)]
    async with UDPTransport.bind("127.0.0.1:0") as ta, UDPTransport.bind("127.0.0.1:0") as tb:
        ca, cb = configs(ta.local_address[1], tb.local_address[1], native=native)
        sa, sb = WireGuardStage.for_config(ca), WireGuardStage.for_config(cb)
        assert sa.needs_mtu_packets is (not native)
        got_b, got_a = MemorySink(), MemorySink()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    Pipeline(TransportPort(tb), [sb], got_b, direction=Direction.INBOUND).run
                )
                tg.start_soon(
                    Pipeline(TransportPort(ta), [sa], got_a, direction=Direction.INBOUND).run
                )
                # staged behind the handshake, delivered once it completes
                await Pipeline(MemorySource(packets), [sa], ta).run()
                while len(got_b.packets) < len(packets):  # noqa: ASYNC110 - polls a sink
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        assert [udp_payload(p) for p in got_b.packets] == [udp_payload(p) for p in packets]
        a = sa.statistics()
        assert a.counters["handshakes_completed"] == 1
        assert a.counters["tx_packets"] >= len(packets)
        assert sb.statistics().counters["rx_packets"] >= len(packets)


async def test_built_from_a_wgquick_file(tmp_path: Path) -> None:
    key, peer = PrivateKey.generate(), PrivateKey.generate().public_key()
    path = tmp_path / "wg9.conf"
    path.write_text(
        f"[Interface]\nPrivateKey = {key.to_base64()}\n"
        f"[Peer]\nPublicKey = {peer.to_base64()}\nAllowedIPs = 10.9.0.0/24\n"
    )
    stage = build_stage(StageSpec("wireguard", {"config": str(path), "native": True}))
    assert isinstance(stage, WireGuardStage)
    assert stage.wg.public_key == key.public_key()
    assert not stage.needs_mtu_packets  # every peer native: super-packets welcome
    # no session yet: a packet is staged, a handshake initiation comes out
    out = stage.process(MemorySource([]).new_batch())
    assert len(out) == 0


async def test_a_persistent_keepalive_starts_the_handshake_when_the_pipeline_starts() -> None:
    """As ``tunflow up``/wireguard-go/the kernel do at interface up: a peer with a persistent
    keepalive is sent one at once — the handshake starts with no traffic at all, so a peer
    behind NAT can be reached. The stage sends it through the pipeline's transport."""
    async with UDPTransport.bind("127.0.0.1:0") as ta, UDPTransport.bind("127.0.0.1:0") as tb:
        config, _ = configs(ta.local_address[1], tb.local_address[1], keepalive=25)
        stage = WireGuardStage.for_config(config)
        inbound = Pipeline(TransportPort(ta), [stage], MemorySink(), direction=Direction.INBOUND)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(inbound.run)
                got = await tb.recv_batch()
                tg.cancel_scope.cancel()
        first = got.to_list()[0]
        assert first[0] == 1 and len(first) == 148  # a handshake initiation
        assert got.addresses[0] == ta.local_address
        assert stage.statistics().counters["handshake_initiations_sent"] == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # (~5 s: REKEY_TIMEOUT, see below)
async def test_a_stage_run_again_sends_through_the_new_runs_transport() -> None:
    # start() kept the first run's transport (closed with it) for what timers send: the second
    # run's keepalives and retransmissions raised ClosedResourceError, lost, and its start
    # keepalive was never sent
    async with UDPTransport.bind("127.0.0.1:0") as peer:  # a peer that never answers
        config = InterfaceConfig(
            PrivateKey.generate(),
            peers=[
                PeerConfig(
                    PrivateKey.generate().public_key(),
                    endpoint=peer.local_address,
                    allowed_ips="10.0.0.2/32",
                    persistent_keepalive=25,
                )
            ],
        )
        stage = WireGuardStage.for_config(config)
        for _ in range(2):
            async with UDPTransport.bind("127.0.0.1:0") as t:
                run = Pipeline(TransportPort(t), [stage], MemorySink(), direction=Direction.INBOUND)
                with anyio.fail_after(10):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(run.run)
                        # the start keepalive's initiation (the second run's: its retry,
                        # REKEY_TIMEOUT after the first, as the protocol spaces them)
                        got = await peer.recv_batch()
                        tg.cancel_scope.cancel()
                assert got.to_list()[0][0] == 1 and got.addresses[0] == t.local_address
                assert run.statistics().stages[0].errors == 0


def test_packets_released_by_a_handshake_go_before_newer_ones_without_a_transport() -> None:
    # with no transport to answer through (stage.process, a network side that is not one),
    # what waited for the next outbound batch — packets released by the handshake — went out
    # after that batch's own, newer packets
    from tunflow.datagram import DatagramBatch
    from tunflow.packet import PacketBatch
    from tunflow.wireguard.protocol import WireGuard

    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    b_addr, a_addr = ("127.0.0.2", 2), ("127.0.0.1", 1)
    stage = WireGuardStage.for_config(
        InterfaceConfig(
            ka, peers=[PeerConfig(kb.public_key(), endpoint=b_addr, allowed_ips="10.0.0.2/32")]
        )
    )
    b = WireGuard.from_config(
        InterfaceConfig(kb, peers=[PeerConfig(ka.public_key(), allowed_ips="10.0.0.1/32")])
    )

    def batch(numbers: range) -> PacketBatch:
        out = PacketBatch(capacity=1 << 16, max_packets=64)
        for i in numbers:
            out.append(ipv4_udp("10.0.0.1", "10.0.0.2", 1000, 2000, bytes([i]) * 40))
        return out

    got: list[int] = []

    def to_b(out: PacketBatch) -> None:
        assert isinstance(out, DatagramBatch)
        answers = DatagramBatch(1 << 16)
        for data, _ in out.to_pairs():
            for packet in b.receive_datagram(data, a_addr, 0.0):
                got.append(udp_payload(packet)[2][0])
        for data, _ in b.datagrams_to_send():
            answers.append(data, address=b_addr)
        if len(answers):
            stage.process(answers)  # the response: the staged packets are released

    to_b(stage.process(batch(range(2))))  # staged behind the handshake
    to_b(stage.process(batch(range(2, 4))))
    assert got == [0, 1, 2, 3]


def test_a_bad_wgquick_file_is_blamed_on_the_config_option(tmp_path: Path) -> None:
    from tunflow import ConfigError

    path = tmp_path / "wg0.conf"
    path.write_text("[Interface]\nPrivateKey = notakey\n")
    with pytest.raises(ConfigError) as info:
        build_stage(StageSpec("wireguard", {"config": str(path)}), path="stages[0]")
    assert info.value.path == "stages[0].options.config"  # was "stages[0].options.line 2"
    assert f"{path}: line 2: PrivateKey" in str(info.value)


def test_a_file_without_a_private_key_is_refused_by_the_stage(tmp_path: Path) -> None:
    # (tunflow up runs such a file keyless until `wg set` gives it a key; a pipeline stage has
    # no control socket, so it would never handshake and say nothing)
    from tunflow import ConfigError

    path = tmp_path / "wg0.conf"
    path.write_text("[Interface]\nListenPort = 51820\n")
    with pytest.raises(ConfigError) as info:
        build_stage(StageSpec("wireguard", {"config": str(path)}), path="stages[0]")
    assert info.value.path == "stages[0].options.config"
    assert "has no PrivateKey" in str(info.value)


@pytest.mark.parametrize("value", ["false", "no", 0, "0"])
def test_a_boolean_option_must_be_a_boolean(value: object, tmp_path: Path) -> None:
    # cattrs took bool(value): native = "false" turned native mode on, and a WireGuard peer
    # could read nothing the stage sent
    from tunflow import ConfigError

    with pytest.raises(ConfigError, match="native: must be true or false"):
        build_stage(StageSpec("wireguard", {"config": "x", "native": value}))


async def test_what_the_transport_could_not_send_is_not_counted_as_sent() -> None:
    # A peer's tx_bytes (wg show's "sent") counts what the pipeline's transport sent, as
    # open_interface's do and wireguard-go does: it counted every datagram the stage sealed.
    first = [ipv4_udp("10.0.0.1", "10.0.0.2", 1000, 2000, bytes([i]) * 300) for i in range(3)]
    lost = [ipv4_udp("10.0.0.1", "10.0.0.2", 1000, 2000, bytes([i]) * 500) for i in range(4)]
    async with UDPTransport.bind("127.0.0.1:0") as ta, UDPTransport.bind("127.0.0.1:0") as tb:
        ca, cb = configs(ta.local_address[1], tb.local_address[1])
        sa, sb = WireGuardStage.for_config(ca), WireGuardStage.for_config(cb)
        peer_b = ca.peers[0].public_key
        got_b = MemorySink()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    Pipeline(TransportPort(tb), [sb], got_b, direction=Direction.INBOUND).run
                )
                tg.start_soon(
                    Pipeline(TransportPort(ta), [sa], MemorySink(), direction=Direction.INBOUND).run
                )
                await Pipeline(MemorySource(first), [sa], ta).run()
                while len(got_b.packets) < len(first):  # noqa: ASYNC110 - polls a sink
                    await anyio.sleep(0.01)
                peer_sent = sa.wg.peer_statistics(peer_b).tx_bytes
                all_sent = sa.wg.statistics().tx_bytes
                assert peer_sent > 0
                # an endpoint the IPv4 socket cannot send to: each datagram lost, counted
                sa.wg.set_endpoint(peer_b, ("fe80::1%nosuchlink0", 51820))
                await Pipeline(MemorySource(lost), [sa], ta).run()
                tg.cancel_scope.cancel()
        assert ta.statistics().drops.get("bad_address") == len(lost)
        assert sa.statistics().counters["tx_packets"] >= len(first) + len(lost)  # (sealed)
        assert sa.wg.peer_statistics(peer_b).tx_bytes == peer_sent
        assert sa.wg.statistics().tx_bytes == all_sent
        assert ta.on_unsent is None  # let go once the stage's pipelines stopped


def test_native_messages_completed_from_stored_fragments_are_all_delivered() -> None:
    # A native message whose other fragments came in an earlier batch is completed by one
    # small datagram, yet takes room for its whole super-packet: the output batch, sized by
    # the datagrams' bytes, took two of four such messages and the other two were lost, not
    # counted anywhere (decrypt_batch's "consumed" was ignored)
    from wgpair import A_IP, B_IP, Pair, batch_of, ip4

    from tunflow.datagram import DatagramBatch
    from tunflow.packet import PacketBatch
    from tunflow.pipeline import Lane

    p = Pair(a_peer={"native_mode": True}, b_peer={"native_mode": True})
    p.handshake()
    messages = []
    for k in range(4):
        packets = batch_of([ip4(A_IP, B_IP, bytes([k]) * 60000, proto=6)])
        packets.zero_headers()
        sealed = DatagramBatch(1 << 20)
        assert p.a.encrypt_batch(packets, p.now, sealed) == 1
        messages.append([d for d, _ in sealed.to_pairs()])
    early = DatagramBatch(4 << 20)
    for m in messages:
        for d in m[:-1]:
            early.append(d, address=p.a_addr)
    stored = PacketBatch(capacity=1 << 20, max_packets=1024)
    assert p.b.decrypt_batch(early, p.now, stored) == len(early) and not stored
    stage = WireGuardStage.for_protocol(p.b)
    last = DatagramBatch(1 << 16)
    for m in messages:
        last.append(m[-1], address=p.a_addr)
    out = stage.bind(Lane(direction=Direction.INBOUND))(last)
    assert [bytes(pkt[40:41]) for pkt in out] == [bytes([k]) for k in range(4)]
    assert out.vnet_hdr and all(not any(out.header(i)) for i in range(len(out)))
    assert len(last) == 4  # the input batch is left as it was
    assert p.b.statistics().rx_packets == 1 + 4  # (the handshake's keepalive)
