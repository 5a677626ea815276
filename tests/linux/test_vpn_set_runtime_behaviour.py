"""What a ``wg set`` on a running interface starts at once, through the real ``wg`` and the
interface's control socket: a persistent keepalive turned on sends its handshake now, not at
the next timer; a WireGuard peer joining an interface whose peers were all native gets its
packets cut to the MTU (docs/vpn.md, "Native fast mode").

    ns a: veth 192.168.94.1 — interface 10.94.0.1/24
    ns b: veth 192.168.94.2 — interface 10.94.0.2/24
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from tests.linux.test_vpn_tunflow import OA, OB, UB, pair, ping, tcp_transfer  # noqa: F401
from tunflow import testing
from tunflow.wireguard import (
    InterfaceConfig,
    PeerConfig,
    PrivateKey,
    WireGuardInterface,
    open_interface,
)

pytestmark = [
    pytest.mark.needs_root,
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("wg") is None, reason="needs wg (wireguard-tools)"),
]


@asynccontextmanager
async def a_and_b(
    a: testing.Netns, b: testing.Netns, peers_of_a: list[PeerConfig]
) -> AsyncIterator[tuple[WireGuardInterface, WireGuardInterface, PrivateKey]]:
    """b listening on 51820 with a as its peer (no endpoint: learnt); a with ``peers_of_a``,
    not b (a ``wg set`` adds it); and b's key."""
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    cb = InterfaceConfig(
        kb, listen_port=51820, peers=[PeerConfig(ka.public_key(), allowed_ips=f"{OA}/32")]
    )
    ca = InterfaceConfig(ka, listen_port=51820, peers=peers_of_a)
    async with (
        open_interface(
            cb, name=testing.unique_name("wb"), addresses=[f"{OB}/24"], netns=b.name
        ) as ib,
        open_interface(
            ca, name=testing.unique_name("wa"), addresses=[f"{OA}/24"], netns=a.name
        ) as ia,
    ):
        yield ia, ib, kb


async def wg_set(iface: WireGuardInterface, *args: str) -> None:
    """``wg set`` of the interface (``wg`` finds it by its control socket)."""
    done = await anyio.run_process(["wg", "set", iface.name, *args], check=False)
    assert done.returncode == 0, done.stderr.decode()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_persistent_keepalive_set_on_a_new_peer_handshakes_at_once(
    pair: tuple[testing.Netns, testing.Netns],  # noqa: F811
) -> None:
    # wg(8): persistent-keepalive; as wireguard-go and the kernel, turning it on sends a
    # keepalive at once — here a handshake first, no traffic needed
    a, b = pair
    async with a_and_b(a, b, []) as (ia, ib, kb):
        pk = kb.public_key()
        await wg_set(
            ia,
            *("peer", pk.to_base64(), "endpoint", f"{UB}:51820", "allowed-ips", f"{OB}/32"),
            *("persistent-keepalive", "25"),
        )
        # before the initiation's retransmission (5 s): the first one went out with the set
        await ia.wait_handshake(pk, timeout=4)
        (pk_a,) = ib.wg.peers
        await ib.wait_handshake(pk_a, timeout=4)  # confirmed by a's keepalive
        sa = ia.statistics().wireguard
        assert sa.handshake_initiations_sent == 1, sa
        assert sa.keepalives_sent >= 1 and sa.tx_packets == sa.keepalives_sent, sa


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_wireguard_peer_added_among_native_ones_gets_mtu_sized_packets(
    pair: tuple[testing.Netns, testing.Netns],  # noqa: F811
) -> None:
    # docs/vpn.md: "when every peer is native the device hands out super-packets whole;
    # otherwise (or once a WireGuard peer is added with `wg set`) packets are cut to the MTU"
    a, b = pair
    native = PeerConfig(
        PrivateKey.generate().public_key(), allowed_ips="10.94.0.9/32", native_mode=True
    )
    async with a_and_b(a, b, [native]) as (ia, ib, kb):
        assert ia.device.offload_info.vnet_hdr  # super-packets read whole (every peer native)
        await wg_set(
            ia,
            "peer",
            kb.public_key().to_base64(),
            "endpoint",
            f"{UB}:51820",
            "allowed-ips",
            f"{OB}/32",
        )
        await ping(a, OB, 1)
        await tcp_transfer(a, b, OB, 8 << 20)
        sa, sb = ia.statistics(), ib.statistics()
        assert sa.device.rx_super_packets > 0, sa.device  # TCP was read as super-packets...
        assert sb.wireguard.dropped_malformed == 0, sb.wireguard  # ...and sent b cut
        assert sb.wireguard.rx_packets > (8 << 20) // 1500, sb.wireguard
