"""The running interface's timer task and counters, end to end between two namespaces: what
the timers make is sent while the tunnel is idle, a moved clock is acted on within a tick, the
WireGuard port counts the packets and bytes the device does, and what a new listen port's
socket could not send is not counted as sent."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.linux.test_vpn_routing_behaviour import until
from tests.linux.test_vpn_tunflow import (  # noqa: F401
    OA,
    OB,
    UB,
    cut_underlay,
    pair,
    ping,
    two_sides,
)
from tunflow import testing
from tunflow.wireguard import InterfaceConfig, PeerConfig, PrivateKey, open_interface
from tunflow.wireguard.protocol import KeysZeroed

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


def quiet(*namespaces: testing.Netns) -> None:
    """No IPv6 on the interfaces made from now on: the kernel sends nothing of its own
    (router solicitations, MLD reports) into the tunnel, so nothing but the timer task sends
    while the tunnel is idle."""
    for ns in namespaces:
        ns.run("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_persistent_keepalives_go_out_while_the_tunnel_is_idle(
    pair: tuple[testing.Netns, testing.Netns],  # noqa: F811
) -> None:
    """``PersistentKeepalive = 1``: a keepalive every second with no traffic at all, each made
    by the timer task, which must send it (nothing else on an idle tunnel would)."""
    a, b = pair
    quiet(a, b)
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    peer_of_a = PeerConfig(
        kb.public_key(), endpoint=(UB, 51820), allowed_ips=f"{OB}/32", persistent_keepalive=1
    )
    ca = InterfaceConfig(ka, listen_port=51820, peers=[peer_of_a])
    cb = InterfaceConfig(kb, listen_port=51820, peers=[PeerConfig(ka.public_key())])
    async with (
        open_interface(cb, name=testing.unique_name("wb"), netns=b.name) as ib,
        open_interface(ca, name=testing.unique_name("wa"), netns=a.name) as ia,
    ):
        await ib.wait_handshake(ka.public_key(), timeout=10)
        await until(lambda: ib.statistics().wireguard.keepalives_received >= 4, 20)
        assert ia.statistics().wireguard.tx_packets == ia.statistics().wireguard.keepalives_sent


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_clock_moved_forward_is_acted_on_at_once(
    pair: tuple[testing.Netns, testing.Netns],  # noqa: F811
) -> None:
    """``skip_time``: "deadlines come nearer at once". It wakes the timer task, so keys older
    than REJECT_AFTER_TIME * 3 are zeroed as the clock moved — not when the deadline the task
    slept towards (the passive keepalive's, 10 s after the ping's answer) comes."""
    a, b = pair
    quiet(a, b)
    async with two_sides(a, b, native=False) as (ia, _):
        await ping(a, OB, 1)
        (pk,) = ia.wg.peers
        await anyio.sleep(2)  # idle: the timer task has looked at the ping's deadlines since
        ia.skip_time(600)
        await until(lambda: KeysZeroed(pk) in ia.port.events, 3)


@pytest.mark.parametrize("native", [False, True], ids=["wireguard", "native"])
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_wireguard_port_counts_the_bytes_the_device_does(
    pair: tuple[testing.Netns, testing.Netns],  # noqa: F811
    native: bool,
    anyio_backend: Any,
) -> None:
    """Each lane's two ends count the same packets *and bytes*: what the device read is what
    the WireGuard port sealed, what the port opened is what the device wrote (pings of
    several sizes, at rest and on the task's path alike)."""
    a, b = pair
    with anyio.fail_after(60):
        async with two_sides(a, b, native=native) as (ia, ib):
            for size in (56, 1000, 1300):
                done = await anyio.run_process(
                    a.cmd("ping", "-n", "-c", "3", "-i", "0.2", "-s", str(size), OB), check=False
                )
                assert done.returncode == 0, done.stdout.decode()
            await ping(b, OA, 2)
            for end in (ia, ib):
                stats = end.tunnel.statistics()
                ports = {p.name: p for p in stats.ports}
                dev, net = ports[end.name + "/0"], ports[end.port.name]
                assert net.tx_packets == dev.rx_packets and net.tx_bytes == dev.rx_bytes
                assert net.rx_packets == dev.tx_packets and net.rx_bytes == dev.tx_bytes
                assert net.tx_bytes > 0 and net.rx_bytes > 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_what_a_new_listen_port_could_not_send_is_not_counted_as_sent(
    pair: tuple[testing.Netns, testing.Netns],  # noqa: F811
) -> None:
    """A peer's ``tx_bytes`` counts what was sent, not what the socket refused (the underlay
    gone: ENETUNREACH) — also on the socket a ``wg set listen-port`` bound."""
    a, b = pair
    async with two_sides(a, b, native=False) as (ia, _):
        assert await ia.apply_uapi(b"set=1\nlisten_port=51821\n\n") == b"errno=0\n\n"
        await ping(a, OB, 1)
        cut_underlay(a)
        before = ia.statistics()
        await anyio.run_process(
            a.cmd("ping", "-n", "-c", "3", "-i", "0.1", "-W", "1", OB), check=False
        )
        after = ia.statistics()
        assert after.transport.drops.get("unreachable", 0) > before.transport.drops.get(
            "unreachable", 0
        )
        assert after.peers[0].tx_bytes == before.peers[0].tx_bytes
        assert after.wireguard.tx_bytes == before.wireguard.tx_bytes
