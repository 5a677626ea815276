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
