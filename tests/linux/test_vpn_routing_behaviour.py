"""A running interface's routes and rules (``tunflow.wireguard._routing``) as its module
documentation and wg-quick(8) say they behave, on real kernels: which table a numbered ``Table``
puts every route in, what comes back when the link goes down and up, what a reload or the way
down does with a route or rule someone removed by hand, the MTU wg-quick would give.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import ip_network

import anyio
import attrs
import pytest

from tests.linux.test_vpn_default_route import default_peer, policy_rules, rules
from tunflow import testing
from tunflow.wireguard import open_interface
from tunflow.wireguard._routing import RoutingRecord, remove_recorded, wg_quick_mtu

pytestmark = pytest.mark.needs_root


def in_table(ns: testing.Netns, table: int) -> list[tuple[str, str]]:
    """The IPv4 routes of ``table`` as ``(dst, dev)``, sorted."""
    found = ns.ip_json("-4", "route", "show", "table", "main" if table == 254 else str(table))
    return sorted((r["dst"], r["dev"]) for r in found)


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait (bounded) until ``check()`` holds; fail when it never does."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "never came about"
        await anyio.sleep(0.1)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("table", ["auto", 1234])
async def test_the_link_down_and_up_puts_the_routes_back_in_their_tables(
    netns_pair: tuple[testing.Netns, testing.Netns], table: str | int
) -> None:
    # the kernel drops every route through a link that goes down, the default route in the
    # policy table and the routes in a numbered Table among them; they come back where `up`
    # put them (not into the main table)
    a, _ = netns_pair
    name = testing.unique_name("lk")
    config = default_peer(allowed_ips="0.0.0.0/0, 10.97.0.0/24")
    with anyio.fail_after(60):
        async with open_interface(
            config, name=name, addresses=["10.96.0.1/24"], netns=a.name, uapi=False, table=table
        ):
            where = 51820 if table == "auto" else 1234
            if table == "auto":
                want = {where: [("default", name)], 254: [("10.97.0.0/24", name)]}
            else:
                want = {where: [("10.97.0.0/24", name), ("default", name)], 254: []}

            def now() -> dict[int, list[tuple[str, str]]]:
                main = [r for r in in_table(a, 254) if r != ("10.96.0.0/24", name)]
                return {where: sorted(in_table(a, where)), 254: sorted(main)}

            def main_routes() -> list[tuple[str, str]]:
                found = a.ip_json("-4", "route", "show", "dev", name)
                return [(r["dst"], name) for r in found if r["dst"] != "10.96.0.0/24"]

            assert now() == want, now()
            assert main_routes() == want[254]
            # the link watch subscribes in a worker thread once the block runs: a link cycled
            # before that is not seen
            await anyio.sleep(1)
            a.run("ip", "link", "set", name, "down")
            assert in_table(a, where) == []
            a.run("ip", "link", "set", name, "up")
            await until(lambda: now() == want)
            assert main_routes() == want[254]
            if table == "auto":
                assert rules(a, "-4") == policy_rules(51820)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_numbered_table_gets_every_prefix_even_inside_the_interface_s_own(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # wg-quick's add_route skips a prefix the interface routes already (`ip route show dev
    # IFACE match PREFIX`) under Table = auto only; with a table number every AllowedIPs
    # prefix goes into that table, its own address's prefix (in the main table) and what lies
    # inside it included
    a, _ = netns_pair
    name = testing.unique_name("nt")
    config = default_peer(allowed_ips="10.97.0.0/24, 10.97.0.5/32")
    with anyio.fail_after(30):
        async with open_interface(
            config, name=name, addresses=["10.97.0.1/24"], netns=a.name, uapi=False, table=1234
        ):
            assert sorted(in_table(a, 1234)) == [("10.97.0.0/24", name), ("10.97.0.5", name)]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_reload_takes_a_route_removed_by_hand_as_removed_and_adds_it_again(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # Routes.update: "the routes added here for prefixes no longer in networks removed (one
    # already gone is fine)": not refused, and a later reload that wants it again adds it
    a, _ = netns_pair
    name = testing.unique_name("rh")
    config = default_peer(allowed_ips="10.97.0.0/24, 10.98.0.0/24")
    fewer = attrs.evolve(config, peers=[attrs.evolve(config.peers[0], allowed_ips="10.98.0.0/24")])
    net = ip_network("10.97.0.0/24")
    with anyio.fail_after(30):
        async with open_interface(config, name=name, netns=a.name, uapi=False) as iface:
            a.run("ip", "route", "del", str(net), "dev", name)
            changes = await iface.sync(fewer, fwmark=False, routes=True)
            assert (changes.removed, changes.refused) == ((net,), ())
            changes = await iface.sync(config, fwmark=False, routes=True)
            assert (changes.added, changes.refused) == ((net,), ())
            assert ("10.97.0.0/24", name) in in_table(a, 254)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_rules_removed_by_hand_are_not_left_in_the_record(
    netns_pair: tuple[testing.Netns, testing.Netns], caplog: pytest.LogCaptureFixture
) -> None:
    # what is gone already is not an error on the way down: the journal's last record is
    # empty (tunflow up then removes its .undo file) and nothing is said about those rules;
    # remove_recorded of what is gone removes nothing and leaves nothing
    a, _ = netns_pair
    told: list[RoutingRecord] = []
    name = testing.unique_name("rr")
    with anyio.fail_after(30):
        async with open_interface(
            default_peer(allowed_ips="0.0.0.0/0"),
            name=name,
            netns=a.name,
            uapi=False,
            journal=told.append,
        ):
            assert rules(a, "-4") == policy_rules(51820)
            held = told[-1]
            a.run("ip", "-4", "rule", "del", "not", "fwmark", "51820", "table", "51820")
            a.run("ip", "-4", "rule", "del", "table", "main", "suppress_prefixlength", "0")
    assert told[-1] == RoutingRecord(), told[-1]
    assert "cannot remove" not in caplog.text, caplog.text
    gone = RoutingRecord(rules=held.rules)
    assert remove_recorded(gone, netns=a.name) == (RoutingRecord(), RoutingRecord())


def test_wg_quick_mtu_is_80_below_the_largest_path_to_the_peers(netns: testing.Netns) -> None:
    # wg-quick's set_mtu_up: the largest MTU among the routes to the endpoints, less 80
    for link, mtu, prefix in (("dm1", 1400, "192.0.2.0/24"), ("dm2", 1300, "198.51.100.0/24")):
        netns.run("ip", "link", "add", link, "mtu", str(mtu), "type", "veth", "peer", f"{link}p")
        netns.run("ip", "link", "set", link, "up")
        netns.run("ip", "route", "add", prefix, "dev", link)
    assert wg_quick_mtu(["198.51.100.7", "192.0.2.7"]) == 1320
    assert wg_quick_mtu(["192.0.2.7", "198.51.100.7"]) == 1320
    assert wg_quick_mtu(["198.51.100.7"]) == 1220


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_default_route_refused_on_a_reload_leaves_no_rules_and_no_policy_mark(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # the FwMark's table holds a default route: the kernel refuses ours, the rules added
    # before it go again ("a default route refused half-way is taken away again"), and with
    # no rules there is no policy mark (None "without such rules"): another fwmark is taken
    a, _ = netns_pair
    config = default_peer(fwmark=4242, allowed_ips="10.97.0.0/24")
    wider = attrs.evolve(
        config, peers=[attrs.evolve(config.peers[0], allowed_ips="10.97.0.0/24, 0.0.0.0/0")]
    )
    a.run("ip", "route", "add", "blackhole", "default", "table", "4242")
    with anyio.fail_after(30):
        async with open_interface(
            config, name=testing.unique_name("rd"), netns=a.name, uapi=False
        ) as iface:
            changes = await iface.sync(wider, fwmark=False, routes=True)
            assert changes.added == () and len(changes.refused) == 1, changes
            assert rules(a, "-4") == rules(a, "-6") == []
            assert iface.policy_mark is None
            assert await iface.apply_uapi(b"set=1\nfwmark=4660\n\n") == b"errno=0\n\n"
            assert iface.wg.fwmark == 4660
