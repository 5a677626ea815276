"""A running interface's routes and rules (``tunflow.wireguard._routing``) as its module
documentation and wg-quick(8) say they behave, on real kernels: which table a numbered ``Table``
puts every route in, what comes back when the link goes down and up, what a reload or the way
down does with a route, rule or nftables table someone removed by hand or the kernel will not
let go, the MTU wg-quick would give.
"""

from __future__ import annotations

import errno
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from tests.linux.test_vpn_default_route import default_peer, policy_rules, rules
from tunflow import testing
from tunflow.wireguard import WireGuardInterface, open_interface
from tunflow.wireguard._routing import Routes, RoutingRecord, remove_recorded, wg_quick_mtu

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


def _default_route(
    ns: testing.Netns, name: str, told: list[RoutingRecord]
) -> AbstractAsyncContextManager[WireGuardInterface]:
    """``open_interface`` of ``name`` in ``ns`` for one peer with AllowedIPs 0.0.0.0/0 (so
    with policy rules, and an nftables table where there is nft), each record of what it holds
    told to ``told``."""
    return open_interface(
        default_peer(allowed_ips="0.0.0.0/0"),
        name=name,
        netns=ns.name,
        uapi=False,
        journal=told.append,
    )


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
        async with _default_route(a, name, told):
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


def veth_link(ns: testing.Netns) -> tuple[str, int]:
    """A veth link, up, in ``ns``: its name and index (for a :class:`Routes` of its own)."""
    name = testing.unique_name("dm")
    ns.run("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    ns.run("ip", "link", "set", name, "up")
    (link,) = ns.ip_json("link", "show", name)
    return name, int(link["ifindex"])


def test_a_default_route_a_reload_brings_needs_no_set_fwmark_when_there_is_a_fwmark(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # Routes.update: set_fwmark None leaves out "a default route that would need it" — only
    # one that needs a table made the fwmark; with a FwMark the table is that mark, and the
    # default route comes as `add` would set it up
    a, _ = netns_pair
    _, index = veth_link(a)
    prefix, default = ip_network("10.97.0.0/24"), ip_network("0.0.0.0/0")
    routes = Routes(index, netns=a.name)
    try:
        assert routes.add([prefix], "auto", 4242) == 4242
        changes = routes.update([prefix, default], "auto", fwmark=4242)
        assert (changes.added, changes.restart, changes.refused) == ((default,), (), ())
        assert rules(a, "-4") == policy_rules(4242)
        assert routes.policy_table == 4242
    finally:
        routes.close()
    assert rules(a, "-4") == []
    # without a fwmark it would need one: left for a restart, nothing made
    routes = Routes(index, netns=a.name)
    try:
        routes.add([prefix], "auto", 0)
        changes = routes.update([prefix, default], "auto", fwmark=0)
        assert (changes.added, changes.restart) == ((), (default,))
        assert rules(a, "-4") == [] and routes.policy_table == 0
    finally:
        routes.close()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft (package nftables)")
async def test_an_nftables_table_the_way_down_cannot_remove_stays_in_the_record(
    netns_pair: tuple[testing.Netns, testing.Netns],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # what close() cannot remove is what it holds still: the journal's last record lists it
    # (so that `tunflow down` removes it later), as it lists a rule it cannot remove
    a, _ = netns_pair
    told: list[RoutingRecord] = []
    name = testing.unique_name("nk")
    table = f"ip wg-quick-{name}"
    with anyio.fail_after(30):
        async with _default_route(a, name, told):
            assert told[-1].nft_tables == (table,)
            monkeypatch.setenv("PATH", str(tmp_path))  # nft is gone by the time it goes down
    assert "cannot remove nftables table ip" in caplog.text
    assert told[-1] == RoutingRecord(nft_tables=(table,)), told[-1]
    monkeypatch.undo()
    assert remove_recorded(told[-1], netns=a.name) == (told[-1], RoutingRecord())
    assert a.run("nft", "list", "tables").stdout == ""


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft (package nftables)")
async def test_an_nftables_table_removed_by_hand_is_not_left_in_the_record(
    netns_pair: tuple[testing.Netns, testing.Netns], caplog: pytest.LogCaptureFixture
) -> None:
    # as for rules: what is gone already is not an error on the way down nor for
    # remove_recorded, and is in neither what was removed nor what is left
    a, _ = netns_pair
    told: list[RoutingRecord] = []
    name = testing.unique_name("nh")
    table = f"ip wg-quick-{name}"
    with anyio.fail_after(30):
        async with _default_route(a, name, told):
            held = told[-1]
            assert held.nft_tables == (table,)
            a.run("nft", "delete", "table", *table.split())
    assert told[-1] == RoutingRecord(), told[-1]
    assert "cannot remove" not in caplog.text, caplog.text
    gone = RoutingRecord(nft_tables=held.nft_tables)
    assert remove_recorded(gone, netns=a.name) == (RoutingRecord(), RoutingRecord())


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_rule_the_kernel_will_not_remove_stays_held_and_keeps_its_mark(
    netns_pair: tuple[testing.Netns, testing.Netns], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a default route going on a reload, whose `not fwmark` rule the kernel refuses to
    # remove: refused (not silently done), still in the record the journal is told, and the
    # rule still sends unmarked packets to the table, so its mark is still the policy mark
    # (another fwmark is refused); the way down keeps it in the record as well, for a later
    # remove_recorded
    from tunflow.platform.linux.netlink import RtNetlink

    a, _ = netns_pair
    remove_rule = RtNetlink.remove_rule

    def refusing(self: RtNetlink, family: int, **kw: Any) -> None:
        if kw.get("invert"):
            raise PermissionError(errno.EPERM, "refused")
        remove_rule(self, family, **kw)

    told: list[RoutingRecord] = []
    config = default_peer(allowed_ips="10.97.0.0/24, 0.0.0.0/0")
    fewer = attrs.evolve(config, peers=[attrs.evolve(config.peers[0], allowed_ips="10.97.0.0/24")])
    kept = "ip -4 rule not fwmark 51820 table 51820"
    with anyio.fail_after(30):
        async with open_interface(
            config, name=testing.unique_name("rk"), netns=a.name, uapi=False, journal=told.append
        ) as iface:
            monkeypatch.setattr(RtNetlink, "remove_rule", refusing)
            changes = await iface.sync(fewer, fwmark=False, routes=True)
            assert len(changes.refused) == 1 and kept[3:] in changes.refused[0], changes
            assert [r["table"] for r in rules(a, "-4")] == ["51820"]
            assert [r for r in told[-1].describe() if "rule" in r] == [kept]
            assert iface.policy_mark == 51820
            assert await iface.apply_uapi(b"set=1\nfwmark=4660\n\n") == b"errno=-22\n\n"
    assert [r for r in told[-1].describe() if "rule" in r] == [kept]
    monkeypatch.undo()
    removed, left = remove_recorded(RoutingRecord(rules=told[-1].rules), netns=a.name)
    assert (len(removed.rules), left) == (1, RoutingRecord())
    assert rules(a, "-4") == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_reload_removes_its_ipv6_route_not_the_address_prefix_route_beside_it(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # an address in an AllowedIPs prefix given to the interface after it came up: the kernel
    # adds its prefix route (metric 256) beside the one `up` added (1024). A reload dropping
    # the prefix removes the one it added, "never one it did not add"
    a, _ = netns_pair
    name = testing.unique_name("rsx")
    config = default_peer(allowed_ips="10.97.0.0/24, fd97::/64")
    fewer = attrs.evolve(config, peers=[attrs.evolve(config.peers[0], allowed_ips="10.97.0.0/24")])

    def metrics() -> list[int]:
        found = a.ip_json("-6", "route", "show", "fd97::/64", "dev", name)
        return sorted(int(r["metric"]) for r in found)

    with anyio.fail_after(30):
        async with open_interface(config, name=name, netns=a.name, uapi=False) as iface:
            a.run("ip", "-6", "addr", "add", "fd97::1/64", "dev", name, "nodad")
            assert metrics() == [256, 1024]
            changes = await iface.sync(fewer, fwmark=False, routes=True)
            assert (changes.removed, changes.refused) == ((ip_network("fd97::/64"),), ())
            assert metrics() == [256]
