"""What a running interface (``WireGuardInterface``) keeps true across reloads, UAPI sets and
the way down, as its documentation says, on real kernels: the routes and rules a reload made
are put back after the link went down and up, and removed, as ``up``'s are, the policy rules' mark is not cleared under them, the port a set
bound is the one reported.
"""

from __future__ import annotations

import anyio
import attrs
import pytest

from tests.linux.test_vpn_default_route import default_peer, policy_rules, rules
from tests.linux.test_vpn_routing_behaviour import in_table, until
from tunflow import testing
from tunflow.transport import UDPTransport
from tunflow.wireguard import open_interface

pytestmark = pytest.mark.needs_root


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_rules_a_reload_brought_go_with_the_interface(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # no AllowedIPs when it came up: no routes then; the default route a reload brings has
    # its policy rules, which leave with the interface as up's do
    a, _ = netns_pair
    config = default_peer(allowed_ips="")
    wider = attrs.evolve(config, peers=[attrs.evolve(config.peers[0], allowed_ips="0.0.0.0/0")])
    with anyio.fail_after(30):
        async with open_interface(
            config, name=testing.unique_name("rb"), netns=a.name, uapi=False
        ) as iface:
            assert rules(a, "-4") == []
            changes = await iface.sync(wider, fwmark=False, routes=True)
            assert changes.refused == () and rules(a, "-4") == policy_rules(51820)
    assert rules(a, "-4") == rules(a, "-6") == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_routes_a_reload_brought_come_back_after_the_link_goes_down_and_up(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # no Address and no AllowedIPs when it came up: the link is watched all the same, so that
    # the routes a reload makes come back as up's do
    a, _ = netns_pair
    name = testing.unique_name("rw")
    config = default_peer(allowed_ips="")
    wider = attrs.evolve(config, peers=[attrs.evolve(config.peers[0], allowed_ips="10.97.0.0/24")])
    with anyio.fail_after(30):
        async with open_interface(config, name=name, netns=a.name, uapi=False) as iface:
            await iface.sync(wider, fwmark=False, routes=True)
            assert in_table(a, 254) == [("10.97.0.0/24", name)]
            await anyio.sleep(1)  # the link watch subscribes in a worker thread
            a.run("ip", "link", "set", name, "down")
            assert in_table(a, 254) == []
            a.run("ip", "link", "set", name, "up")
            await until(lambda: in_table(a, 254) == [("10.97.0.0/24", name)])


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_wg_set_cannot_clear_the_mark_the_policy_rules_use(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # fwmark=0 is another fwmark than the rules' too: the tunnel's datagrams, unmarked, would
    # loop into the tunnel
    a, _ = netns_pair
    with anyio.fail_after(30):
        async with open_interface(
            default_peer(), name=testing.unique_name("rm"), netns=a.name, uapi=False
        ) as iface:
            assert iface.policy_mark == iface.wg.fwmark == 51820
            assert await iface.apply_uapi(b"set=1\nfwmark=0\n\n") == b"errno=-22\n\n"
            assert iface.wg.fwmark == 51820


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_wg_set_listen_port_0_reports_the_port_bound(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # listen_port=0: any free port, as at the start; what wg show reports is the one bound
    a, _ = netns_pair
    with anyio.fail_after(30):
        async with open_interface(
            default_peer(allowed_ips="10.97.0.0/24"),
            name=testing.unique_name("rp"),
            netns=a.name,
            uapi=False,
        ) as iface:
            before = iface.listen_port
            assert await iface.apply_uapi(b"set=1\nlisten_port=0\n\n") == b"errno=0\n\n"
            port = iface.listen_port
            assert port not in (0, before) and iface.wg.listen_port == port
            got = await iface.apply_uapi(b"get=1\n\n")
            assert f"listen_port={port}\n".encode() in got, got


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_set_that_fails_after_its_new_port_is_in_use_closes_the_old_socket(
    netns_pair: tuple[testing.Netns, testing.Netns], monkeypatch: pytest.MonkeyPatch
) -> None:
    # what comes after the swap may raise (an event hook's error out of flush_control, a send
    # error no datagram loss explains): the old socket was left open, its port bound, until
    # garbage-collected
    a, _ = netns_pair
    with anyio.fail_after(30):
        async with open_interface(
            default_peer(allowed_ips="10.97.0.0/24"),
            name=testing.unique_name("rf"),
            netns=a.name,
            uapi=False,
        ) as iface:
            before = iface.listen_port
            old = iface.port.transport

            def flush_control() -> None:
                raise RuntimeError("an event hook failed")

            monkeypatch.setattr(iface.port, "flush_control", flush_control)
            with pytest.raises(RuntimeError, match="an event hook failed"):
                await iface.apply_uapi(b"set=1\nlisten_port=0\n\n")
            monkeypatch.undo()
            assert iface.port.transport is not old and iface.listen_port != before
            assert old.fileno() == -1
            probe = UDPTransport.bind(("::", before), netns=a.name)  # (the port is free)
            await probe.aclose()
