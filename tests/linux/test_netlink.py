"""RtNetlink against the real kernel, in a throw-away namespace, witnessed by ``ip -j``.

Every test runs inside the ``netns`` fixture's namespace, so the links it makes (veth pairs —
this kernel has no ``dummy`` module — and a TUN) vanish with the namespace. Each change made
through :class:`RtNetlink` is checked with iproute2's JSON output, a program we did not write.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any

import pytest

from tests.linux.conftest import Link
from tunflow import testing
from tunflow.errors import ConfigError
from tunflow.netconfig import rtnetlink as rt
from tunflow.netconfig.rtnetlink import (
    IFA_F_NOPREFIXROUTE,
    IFF_POINTOPOINT,
    IFF_UP,
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTPROT_KERNEL,
    RTPROT_STATIC,
    OperState,
    Route,
)
from tunflow.platform.linux.netlink import LinkWatch, RtNetlink

pytestmark = pytest.mark.needs_root


# --- the witness ---------------------------------------------------------------------------------


def ip_link(name: str) -> dict[str, Any]:
    (info,) = testing.ip_json("link", "show", "dev", name)
    return info  # type: ignore[no-any-return]


def ip_addrs(name: str) -> list[dict[str, Any]]:
    (info,) = testing.ip_json("addr", "show", "dev", name)
    return info["addr_info"]  # type: ignore[no-any-return]


def ip_ifaces(name: str) -> list[IPv4Interface | IPv6Interface]:
    return [ip_interface(f"{a['local']}/{a['prefixlen']}") for a in ip_addrs(name)]


_PROTO = {"kernel": 2, "boot": 3, "static": 4}


def ip_routes(name: str) -> set[tuple[Any, ...]]:
    """(destination, gateway, metric, protocol, scope) of every route via ``name``, both families."""
    out = set()
    for family, default in (("-4", "0.0.0.0/0"), ("-6", "::/0")):
        for r in testing.ip_json(family, "route", "show", "table", "main", "dev", name):
            dst = ip_network(default if r["dst"] == "default" else r["dst"])
            gw = ip_address(r["gateway"]) if "gateway" in r else None
            scope = RT_SCOPE_LINK if r.get("scope") == "link" else RT_SCOPE_UNIVERSE
            out.add((dst, gw, r.get("metric", 0), _PROTO[r["protocol"]], scope))
    return out


def as_tuples(routes: list[Route]) -> set[tuple[Any, ...]]:
    assert all(r.table == RT_TABLE_MAIN for r in routes)
    return {(r.destination, r.gateway, r.metric, r.protocol, r.scope) for r in routes}


def missing_index(nl: RtNetlink) -> int:
    return max(int(x["ifindex"]) for x in testing.ip_json("link", "show")) + 1000


# --- links ---------------------------------------------------------------------------------------


def test_link_matches_ip(nl: RtNetlink, link: Link) -> None:
    info = nl.link(link.index)
    assert nl.link_by_name(link.name) == info
    j = ip_link(link.name)
    assert (info.index, info.name, info.mtu, info.txqlen) == (
        j["ifindex"],
        j["ifname"],
        j["mtu"],
        j["txqlen"],
    )
    assert info.mac is not None
    assert info.mac.hex(":") == j["address"]
    assert info.operstate.name == j["operstate"]  # type: ignore[attr-defined]
    assert info.is_up is ("UP" in j["flags"]) is False


def test_loopback(nl: RtNetlink) -> None:
    lo = nl.link_by_name("lo")
    assert lo.index == 1
    assert lo.is_up  # the netns fixture raised it
    assert nl.addresses(1) == [IPv4Interface("127.0.0.1/8"), IPv6Interface("::1/128")]


def test_up_and_down(nl: RtNetlink, link: Link) -> None:
    nl.set_link(link.index, up=True)
    j = ip_link(link.name)
    assert "UP" in j["flags"]
    assert j["operstate"] == "UP"  # the veth peer is up: carrier
    assert nl.link(link.index).operstate is OperState.UP
    nl.set_link(link.index, up=False)
    assert "UP" not in ip_link(link.name)["flags"]
    assert not nl.link(link.index).flags & IFF_UP


def test_link_watch_reports_only_its_link_in_order(nl: RtNetlink, link: Link) -> None:
    watch = LinkWatch(link.index)
    try:
        assert watch.changes() == []  # nothing came: no wait
        other = nl.link_by_name("lo").index
        nl.set_link(other, mtu=60000)  # another link's change is not reported
        nl.set_link(link.index, up=True)
        nl.set_link(link.index, up=False)
        seen = watch.changes()
        assert seen and all(s is not None and s.index == link.index for s in seen)
        ups = [s.is_up for s in seen if s is not None]
        # the first notification says up, the last down (the kernel may add carrier changes)
        assert ups[0] is True and ups[-1] is False
        assert watch.changes() == []
    finally:
        watch.close()
    watch.close()  # idempotent
    assert watch.fileno() == -1
    with pytest.raises(OSError) as info:
        watch.changes()
    assert info.value.errno == errno.EBADF


def test_mtu_mac_txqlen_in_one_call(nl: RtNetlink, link: Link) -> None:
    mac = bytes.fromhex("02aabbccdd01")
    nl.set_link(link.index, mtu=1400, mac=mac, txqlen=123)
    j = ip_link(link.name)
    assert (j["mtu"], j["address"], j["txqlen"]) == (1400, "02:aa:bb:cc:dd:01", 123)
    info = nl.link(link.index)
    assert (info.mtu, info.mac, info.txqlen) == (1400, mac, 123)
    nl.set_link(link.index, mtu=9000)
    assert ip_link(link.name)["mtu"] == 9000


def test_bad_link_values_from_the_kernel(nl: RtNetlink, link: Link) -> None:
    with pytest.raises(OSError, match="mtu greater than device maximum") as big:
        nl.set_link(link.index, mtu=2**31 - 1)
    assert big.value.errno == errno.EINVAL
    with pytest.raises(OSError) as zero_mac:
        nl.set_link(link.index, mac=bytes(6))  # not a valid unicast Ethernet address
    assert zero_mac.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OSError) as short_mac:
        nl.set_link(link.index, mac=bytes(5))
    assert short_mac.value.errno == errno.EINVAL
    assert ip_link(link.name)["mtu"] == 1500


def test_rename(nl: RtNetlink, link: Link) -> None:
    new = testing.unique_name("r")
    nl.set_link(link.index, name=new)
    assert ip_link(new)["ifindex"] == link.index
    assert nl.link_by_name(new).index == link.index
    with pytest.raises(OSError) as gone:
        nl.link_by_name(link.name)
    assert gone.value.errno == errno.ENODEV
    with pytest.raises(FileExistsError):
        nl.set_link(link.index, name="lo")
    # Down and rename in one call: sent as two requests (before 6.2 a running link says EBUSY).
    nl.set_link(link.index, up=True)
    newer = testing.unique_name("r")
    nl.set_link(link.index, up=False, name=newer)
    j = ip_link(newer)
    assert j["ifindex"] == link.index
    assert "UP" not in j["flags"]


def test_tun_link(nl: RtNetlink) -> None:
    name = testing.unique_name("t")
    testing.run("ip", "tuntap", "add", "dev", name, "mode", "tun")
    try:
        info = nl.link_by_name(name)
        assert info.mac is None  # layer 3: no link-layer address
        assert info.flags & IFF_POINTOPOINT
        nl.set_link(info.index, up=True, mtu=1420, txqlen=2000)
        nl.add_address(info.index, "10.66.0.1/32", peer=IPv4Address("10.66.0.2"))
        nl.add_address(info.index, IPv6Interface("fd00:66::1/64"))
        j = ip_link(name)
        assert (j["mtu"], j["txqlen"], "UP" in j["flags"]) == (1420, 2000, True)
        assert nl.addresses(info.index) == ip_ifaces(name)
        assert ip_addrs(name)[0]["address"] == "10.66.0.2"
    finally:
        testing.run("ip", "link", "del", name)


# --- addresses -----------------------------------------------------------------------------------


def test_several_addresses_added_listed_removed(nl: RtNetlink, link: Link) -> None:
    nl.set_link(link.index, up=True)
    added: list[IPv4Interface | IPv6Interface] = [
        IPv4Interface("192.0.2.1/24"),
        IPv4Interface("198.51.100.7/26"),
        IPv6Interface("2001:db8::1/64"),
        IPv6Interface("2001:db8:1::5/48"),
    ]
    for iface in added:
        nl.add_address(link.index, iface)
    # The kernel adds the link-local address from a work queue after the link comes up.
    deadline = time.monotonic() + 10
    while not any(a.version == 6 and a.ip.is_link_local for a in nl.addresses(link.index)):
        assert time.monotonic() < deadline, "no IPv6 link-local address appeared"
        time.sleep(0.01)
    listed = nl.addresses(link.index)
    assert listed == ip_ifaces(link.name)  # same addresses, same (kernel) order
    assert set(added) < set(listed)
    assert any(a.version == 6 and a.ip.is_link_local for a in listed)  # nothing left out
    witness = {f"{a['local']}/{a['prefixlen']}": a for a in ip_addrs(link.name)}
    # IPv4 gets its broadcast address, IPv6 skips duplicate address detection
    assert witness["192.0.2.1/24"]["broadcast"] == "192.0.2.255"
    assert witness["198.51.100.7/26"]["broadcast"] == "198.51.100.63"
    assert witness["2001:db8::1/64"]["nodad"] is True
    assert "tentative" not in witness["2001:db8:1::5/48"]
    details = {d.interface: d for d in nl.address_details(link.index)}
    assert details[IPv4Interface("192.0.2.1/24")].broadcast == IPv4Address("192.0.2.255")

    nl.remove_address(link.index, IPv4Interface("192.0.2.1/24"))
    nl.remove_address(link.index, IPv4Address("198.51.100.7"))  # no prefix: looked up
    nl.remove_address(link.index, "2001:db8::1/64")
    nl.remove_address(link.index, "2001:db8:1::5")
    left = ip_ifaces(link.name)
    assert not set(added) & set(left)
    assert nl.addresses(link.index) == left


def test_same_address_two_prefixes(nl: RtNetlink, link: Link) -> None:
    # IPv4 matches IFA_LOCAL then the prefix: removing /24 must not take the /16.
    nl.add_address(link.index, "10.1.2.3/16")
    nl.add_address(link.index, "10.1.2.3/24")
    nl.remove_address(link.index, "10.1.2.3/24")
    assert ip_ifaces(link.name) == [IPv4Interface("10.1.2.3/16")]


def test_point_to_point_peers(nl: RtNetlink, link: Link) -> None:
    nl.add_address(link.index, IPv4Interface("10.9.0.1/32"), peer=IPv4Address("10.9.0.2"))
    nl.add_address(
        link.index, IPv6Interface("2001:db8:9::1/128"), peer=IPv6Address("2001:db8:9::2")
    )
    peers = {(a["local"], a.get("address")) for a in ip_addrs(link.name)}
    assert peers == {("10.9.0.1", "10.9.0.2"), ("2001:db8:9::1", "2001:db8:9::2")}
    assert {(d.interface, d.peer) for d in nl.address_details(link.index)} == {
        (IPv4Interface("10.9.0.1/32"), IPv4Address("10.9.0.2")),
        (IPv6Interface("2001:db8:9::1/128"), IPv6Address("2001:db8:9::2")),
    }
    # With its prefix, an IPv4 peer address is not found by local+prefix alone (the kernel
    # matches the peer): RtNetlink looks the peer up and retries.
    nl.remove_address(link.index, IPv4Interface("10.9.0.1/32"))
    nl.remove_address(link.index, IPv6Address("2001:db8:9::1"))
    assert ip_addrs(link.name) == []


def test_duplicate_address(nl: RtNetlink, link: Link) -> None:
    for iface in ("192.0.2.1/24", "2001:db8::1/64"):
        nl.add_address(link.index, iface)
        with pytest.raises(FileExistsError) as info:
            nl.add_address(link.index, iface)
        assert info.value.errno == errno.EEXIST
    assert len(ip_addrs(link.name)) == 2


@pytest.mark.parametrize("target", ["192.0.2.9/24", "192.0.2.9", "2001:db8::9/64", "2001:db8::9"])
def test_remove_missing_address(nl: RtNetlink, link: Link, target: str) -> None:
    nl.add_address(link.index, "192.0.2.1/24")
    nl.add_address(link.index, "2001:db8::1/64")
    with pytest.raises(OSError) as info:
        nl.remove_address(link.index, target)
    assert info.value.errno == errno.EADDRNOTAVAIL
    assert len(ip_addrs(link.name)) == 2


def test_default_broadcast_is_what_ip_brd_plus_gives(nl: RtNetlink, link: Link) -> None:
    # iproute2's "brd +" and the kernel's SIOCSIFADDR path give a broadcast up to /30, not /31
    # (RFC 3021) or /32; compared on a second link configured by `ip` itself.
    other, peer = testing.unique_name("v"), testing.unique_name("p")
    testing.run("ip", "link", "add", other, "type", "veth", "peer", "name", peer)
    for prefix in (29, 30, 31, 32):
        nl.add_address(link.index, f"10.{prefix}.0.1/{prefix}")
        testing.run("ip", "addr", "add", f"10.{prefix}.0.1/{prefix}", "brd", "+", "dev", other)
    ours = {a["local"]: a.get("broadcast") for a in ip_addrs(link.name)}
    theirs = {a["local"]: a.get("broadcast") for a in ip_addrs(other)}
    assert ours == theirs
    assert ours["10.30.0.1"] == "10.30.0.3" and ours["10.31.0.1"] is None


def test_flags_above_the_header_byte_are_read(nl: RtNetlink, link: Link) -> None:
    # IFA_F_NOPREFIXROUTE (0x200) does not fit ifa_flags (a byte): only IFA_FLAGS carries it.
    testing.run("ip", "addr", "add", "2001:db8::1/64", "dev", link.name, "noprefixroute", "nodad")
    (witness,) = ip_addrs(link.name)
    assert witness["noprefixroute"] is True
    (info,) = nl.address_details(link.index)
    assert info.flags & IFA_F_NOPREFIXROUTE


def test_ipv6_needs_mtu_1280(nl: RtNetlink, link: Link) -> None:
    nl.set_link(link.index, mtu=1200)
    with pytest.raises(OSError) as info:
        nl.add_address(link.index, "2001:db8::1/64")
    # Linux 6.x: EINVAL from ipv6_add_dev(); the link has no IPv6 state below 1280.
    assert info.value.errno in (errno.EINVAL, errno.ENOBUFS)
    assert ip_addrs(link.name) == []


# --- routes --------------------------------------------------------------------------------------


def test_routes(nl: RtNetlink, link: Link) -> None:
    nl.set_link(link.index, up=True)
    nl.add_address(link.index, "192.0.2.1/24")
    nl.add_address(link.index, "2001:db8::1/64")
    kernel_routes = ip_routes(link.name)
    assert as_tuples(nl.routes(link.index)) == kernel_routes
    assert {r[3] for r in kernel_routes} == {RTPROT_KERNEL}

    # unreachable gateways, before any default route makes everything reachable
    with pytest.raises(OSError) as v4:
        nl.add_route(link.index, "203.0.113.0/24", gateway="10.55.0.1")
    assert v4.value.errno == errno.ENETUNREACH
    with pytest.raises(OSError) as v6:
        nl.add_route(link.index, "2001:db8:8::/48", gateway="2001:db8:77::1")
    assert v6.value.errno == errno.EHOSTUNREACH

    mine = [
        (IPv4Network("198.51.100.0/24"), None, None),
        (IPv4Network("198.51.100.0/24"), None, 7),  # same destination, other metric
        (IPv4Network("203.0.113.0/24"), IPv4Address("192.0.2.254"), 50),
        (IPv4Network("0.0.0.0/0"), IPv4Address("192.0.2.254"), 900),
        (IPv6Network("2001:db8:100::/48"), None, None),
        (IPv6Network("2001:db8:200::/48"), IPv6Address("2001:db8::fe"), 10),
        (IPv6Network("::/0"), IPv6Address("fe80::1"), None),
    ]
    for network, gateway, metric in mine:
        nl.add_route(link.index, network, gateway=gateway, metric=metric)
    listed = nl.routes(link.index)
    assert as_tuples(listed) == ip_routes(link.name)
    ours = {(r.destination, r.gateway, r.metric, r.scope) for r in listed if r.protocol == 4}
    assert ours == {
        (IPv4Network("198.51.100.0/24"), None, 0, RT_SCOPE_LINK),
        (IPv4Network("198.51.100.0/24"), None, 7, RT_SCOPE_LINK),
        (IPv4Network("203.0.113.0/24"), IPv4Address("192.0.2.254"), 50, RT_SCOPE_UNIVERSE),
        (IPv4Network("0.0.0.0/0"), IPv4Address("192.0.2.254"), 900, RT_SCOPE_UNIVERSE),
        (IPv6Network("2001:db8:100::/48"), None, 1024, RT_SCOPE_UNIVERSE),  # kernel default
        (IPv6Network("2001:db8:200::/48"), IPv6Address("2001:db8::fe"), 10, RT_SCOPE_UNIVERSE),
        (IPv6Network("::/0"), IPv6Address("fe80::1"), 1024, RT_SCOPE_UNIVERSE),
    }
    assert all(r.protocol == RTPROT_STATIC for r in listed if r.protocol not in (2,))

    with pytest.raises(FileExistsError):
        nl.add_route(link.index, "203.0.113.0/24", gateway="192.0.2.254", metric=50)
    with pytest.raises(FileExistsError):
        nl.add_route(link.index, "2001:db8:100::/48")

    # metric narrows the match: only the metric-7 twin goes
    nl.remove_route(link.index, "198.51.100.0/24", metric=7)
    assert (IPv4Network("198.51.100.0/24"), None, 0, RTPROT_STATIC, RT_SCOPE_LINK) in ip_routes(
        link.name
    )
    assert not any(r[2] == 7 for r in ip_routes(link.name))
    for network, gateway, metric in mine:
        if metric != 7:
            nl.remove_route(link.index, network, gateway=gateway, metric=metric)
    assert ip_routes(link.name) == kernel_routes
    assert as_tuples(nl.routes(link.index)) == kernel_routes

    for network in ("198.51.100.0/24", "2001:db8:100::/48"):
        with pytest.raises(ProcessLookupError) as missing:
            nl.remove_route(link.index, network)
        assert missing.value.errno == errno.ESRCH


def test_remove_route_metric_0_is_metric_0_not_any(nl: RtNetlink, link: Link) -> None:
    # The kernel reads a removal's metric 0 as "any metric"; metric 0 here is a route at 0 (for
    # IPv6 the one an add with metric 0 made: the kernel stores that as 1024), as
    # SyncDevice.remove_route does.
    nl.set_link(link.index, up=True)
    nl.add_address(link.index, "192.0.2.1/24")
    nl.add_address(link.index, "2001:db8::1/64")
    before = ip_routes(link.name)
    nl.add_route(link.index, "198.51.100.0/24", metric=5)
    nl.add_route(link.index, "198.51.100.0/24", metric=0, table=100)
    nl.add_route(link.index, "2001:db8::/64", metric=5)
    mine = ip_routes(link.name)
    for network in ("198.51.100.0/24", "2001:db8::/64"):
        with pytest.raises(ProcessLookupError):
            nl.remove_route(link.index, network, metric=0)
    assert ip_routes(link.name) == mine
    assert (IPv6Network("2001:db8::/64"), None, 256, RTPROT_KERNEL, RT_SCOPE_UNIVERSE) in mine
    nl.add_route(link.index, "198.51.100.0/24", gateway="192.0.2.7", metric=0)
    nl.add_route(link.index, "2001:db8::/64", metric=0)
    with pytest.raises(ProcessLookupError):
        nl.remove_route(link.index, "198.51.100.0/24", gateway="192.0.2.8", metric=0)
    nl.remove_route(link.index, "198.51.100.0/24", gateway="192.0.2.7", metric=0)
    nl.remove_route(link.index, "2001:db8::/64", metric=0)
    assert ip_routes(link.name) == mine
    nl.remove_route(link.index, "198.51.100.0/24", metric=0, table=100)
    with pytest.raises(ProcessLookupError):
        nl.remove_route(link.index, "198.51.100.0/24", metric=0, table=100)
    nl.remove_route(link.index, "198.51.100.0/24", metric=5)
    nl.remove_route(link.index, "2001:db8::/64", metric=5)
    assert ip_routes(link.name) == before


def test_routes_in_other_tables(nl: RtNetlink, link: Link) -> None:
    nl.set_link(link.index, up=True)
    assert not nl.table_in_use(51820) and nl.routes(link.index, table=51820) == []
    nl.add_route(link.index, "0.0.0.0/0", table=51820)
    nl.add_route(link.index, "::/0", table=51820)
    nl.add_route(link.index, "198.51.100.0/24", table=100)
    for family, dst in (("-4", "default"), ("-6", "default")):
        (r,) = testing.ip_json(family, "route", "show", "table", "51820")
        assert (r["dst"], r["dev"]) == (dst, link.name)
    (r,) = testing.ip_json("route", "show", "table", "100")
    assert (r["dst"], r["dev"]) == ("198.51.100.0/24", link.name)
    assert {(r.destination, r.table) for r in nl.routes(link.index, table=51820)} == {
        (IPv4Network("0.0.0.0/0"), 51820),
        (IPv6Network("::/0"), 51820),
    }
    # the main table has only the kernel's own (the IPv6 link-local prefix)
    assert all(r.protocol == RTPROT_KERNEL for r in nl.routes(link.index))
    assert nl.table_in_use(51820) and nl.table_in_use(100) and not nl.table_in_use(51821)
    nl.remove_route(link.index, "0.0.0.0/0", table=51820)
    assert nl.table_in_use(51820)  # the IPv6 one is still there
    nl.remove_route(link.index, "::/0", table=51820)
    assert not nl.table_in_use(51820)
    with pytest.raises(ProcessLookupError):
        nl.remove_route(link.index, "198.51.100.0/24", table=101)


def test_the_local_table(nl: RtNetlink, link: Link) -> None:
    # RT_TABLE_LOCAL (255) fits rtm_table's byte; it must not be sent as RT_TABLE_COMPAT.
    nl.set_link(link.index, up=True)
    assert testing.ip_json("route", "show", "table", "local")  # 127.0.0.0/8 and the like
    assert nl.table_in_use(RT_TABLE_LOCAL)
    nl.add_route(link.index, "198.51.100.0/24", table=RT_TABLE_LOCAL)
    (r,) = testing.ip_json("route", "show", "table", "local", "dev", link.name)
    assert (r["dst"], r.get("type", "unicast")) == ("198.51.100.0/24", "unicast")
    (route,) = nl.routes(link.index, table=RT_TABLE_LOCAL)
    assert (route.destination, route.table) == (IPv4Network("198.51.100.0/24"), RT_TABLE_LOCAL)
    nl.remove_route(link.index, "198.51.100.0/24", table=RT_TABLE_LOCAL)
    assert testing.ip_json("route", "show", "table", "local", "dev", link.name) == []


def test_rules(nl: RtNetlink, netns: testing.Netns) -> None:
    def rules(family: str) -> list[dict[str, Any]]:
        return [
            r
            for r in testing.ip_json(family, "rule", "show")
            if r["priority"] not in (0, 32766, 32767)
        ]

    # wg-quick's pair, each family
    for family in (socket.AF_INET, socket.AF_INET6):
        nl.add_rule(family, table=51820, fwmark=51820, invert=True)
        nl.add_rule(family, table=RT_TABLE_MAIN, suppress_prefixlength=0)
    for family in ("-4", "-6"):
        # each rule without a priority goes just before the earlier ones
        assert rules(family) == [
            {"priority": 32764, "src": "all", "table": "main", "suppress_prefixlen": 0},
            {"priority": 32765, "not": None, "src": "all", "fwmark": "0xca6c", "table": "51820"},
        ]
    nl.add_rule(socket.AF_INET, table=100, priority=1000, fwmark=0x100, fwmask=0xF00)
    assert rules("-4")[0] == {
        "priority": 1000,
        "src": "all",
        "fwmark": "0x100",
        "fwmask": "0xf00",
        "table": "100",
    }
    with pytest.raises(FileExistsError):  # equal in every field, priority included
        nl.add_rule(socket.AF_INET, table=100, priority=1000, fwmark=0x100, fwmask=0xF00)
    nl.remove_rule(socket.AF_INET, priority=1000)
    for family in (socket.AF_INET, socket.AF_INET6):
        nl.remove_rule(family, table=51820, fwmark=51820, invert=True)
        nl.remove_rule(family, table=RT_TABLE_MAIN, suppress_prefixlength=0)
        with pytest.raises(FileNotFoundError):
            nl.remove_rule(family, table=RT_TABLE_MAIN, suppress_prefixlength=0)
    assert rules("-4") == rules("-6") == []
    with pytest.raises(ConfigError, match="routing table 0"):
        nl.add_rule(socket.AF_INET, table=0)


def test_route_on_down_link(nl: RtNetlink, link: Link) -> None:
    with pytest.raises(OSError) as info:
        nl.add_route(link.index, "198.51.100.0/24")
    assert info.value.errno == errno.ENETDOWN


# --- errors --------------------------------------------------------------------------------------


def test_missing_index_is_enodev(nl: RtNetlink, link: Link) -> None:
    bad = missing_index(nl)
    calls = [
        lambda: nl.link(bad),
        lambda: nl.set_link(bad, up=True),
        lambda: nl.addresses(bad),
        lambda: nl.add_address(bad, "192.0.2.1/24"),
        lambda: nl.add_address(bad, "2001:db8::1/64"),
        lambda: nl.remove_address(bad, "192.0.2.1/24"),
        lambda: nl.remove_address(bad, "2001:db8::1/64"),
        lambda: nl.remove_address(bad, "192.0.2.1"),
        lambda: nl.routes(bad),
        lambda: nl.add_route(bad, "198.51.100.0/24"),
        lambda: nl.link_by_name("tfnosuchlink"),
    ]
    for call in calls:
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.ENODEV, call


def test_extended_ack_after_a_whole_echoed_request_of_unaligned_length(
    netns: testing.Netns, link: Link
) -> None:
    # Without NETLINK_CAP_ACK the kernel echoes the request whole, then its TLVs at the next
    # 4-byte boundary (nlmsg_append pads). The request ends in a 5-byte IFLA_IFALIAS, unpadded.
    body = struct.pack("=BxHiII", 0, 0, link.index, 0, 0)
    body += struct.pack("=HHI", 8, 4, 2**31 - 1)  # IFLA_MTU, too big
    body += struct.pack("=HH", 5, 20) + b"x"  # IFLA_IFALIAS
    request = struct.pack("=IHHII", 16 + len(body), 16, 0x5, 77, 0) + body  # REQUEST|ACK
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.setsockopt(rt.SOL_NETLINK, rt.NETLINK_EXT_ACK, 1)
        sock.bind((0, 0))
        sock.send(request)
        sock.settimeout(10)
        reply = sock.recv(65536)
    (message,) = rt.iter_messages(reply)
    assert message.flags & rt.NLM_F_ACK_TLVS and not message.flags & rt.NLM_F_CAPPED
    assert message.payload[4:8] == struct.pack("=I", len(request))  # echoed, not aligned
    with pytest.raises(OSError, match="mtu greater than device maximum") as info:
        rt.Transaction(77, rt.Expect.ACK).receive_data(reply)
    assert info.value.errno == errno.EINVAL


def test_bad_arguments_send_nothing(nl: RtNetlink, link: Link) -> None:
    nl.set_link(link.index, up=True)
    before = (ip_link(link.name), ip_addrs(link.name))
    with pytest.raises(ConfigError, match="'bogus'"):
        nl.add_address(link.index, "bogus")
    with pytest.raises(ConfigError, match="MTU -5"):
        nl.set_link(link.index, mtu=-5)
    # validated before the link is taken down for the rename
    with pytest.raises(ConfigError, match="interface name"):
        nl.set_link(link.index, up=False, name="has space")
    with pytest.raises(ConfigError, match="interface index 0"):
        nl.routes(0)
    with pytest.raises(ConfigError, match="host bits"):
        nl.add_route(link.index, "198.51.100.1/24")
    with pytest.raises(ConfigError):
        nl.remove_address(link.index, 42)  # type: ignore[arg-type]
    assert (ip_link(link.name), ip_addrs(link.name)) == before


def test_closed(netns: testing.Netns) -> None:
    nl = RtNetlink()
    assert not nl.closed
    nl.close()
    nl.close()
    assert nl.closed
    assert "closed" in repr(nl)
    with pytest.raises(OSError) as info:
        nl.link(1)
    assert info.value.errno == errno.EBADF


# --- threads and namespaces ----------------------------------------------------------------------


def test_socket_keeps_its_namespace_in_other_threads(nl: RtNetlink, link: Link) -> None:
    results: dict[str, object] = {}

    def worker(other: testing.Netns) -> None:
        with other.entered():
            try:
                socket.if_nametoindex(link.name)
                results["visible"] = True
            except OSError:
                results["visible"] = False
            results["index"] = nl.link_by_name(link.name).index
            nl.add_address(link.index, "192.0.2.77/24")

    with testing.netns(enter=False) as other:
        t = threading.Thread(target=worker, args=(other,))
        t.start()
        t.join(timeout=30)
    assert not t.is_alive()
    assert results == {"visible": False, "index": link.index}
    assert ip_ifaces(link.name) == [IPv4Interface("192.0.2.77/24")]


def test_concurrent_callers(nl: RtNetlink, link: Link) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                nl.add_address(link.index, f"2001:db8:{n}::{i + 1}/128")
                nl.addresses(link.index)
                if i % 2:
                    nl.remove_address(link.index, f"2001:db8:{n}::{i + 1}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    expected = {
        IPv6Interface(f"2001:db8:{n}::{i + 1}/128") for n in range(4) for i in range(0, 25, 2)
    }
    assert set(ip_ifaces(link.name)) == expected
    assert set(nl.addresses(link.index)) == expected


# --- timing --------------------------------------------------------------------------------------


def test_timing(nl: RtNetlink, link: Link) -> None:
    n = 200
    ifaces = [IPv6Interface(f"2001:db8:7::{i + 1}/128") for i in range(n)]
    t0 = time.perf_counter()
    for iface in ifaces:
        nl.add_address(link.index, iface)
    t1 = time.perf_counter()
    for _ in range(20):
        listed = nl.addresses(link.index)
    t2 = time.perf_counter()
    for iface in ifaces:
        nl.remove_address(link.index, iface)
    t3 = time.perf_counter()
    add_us, list_us, rm_us = (t1 - t0) / n * 1e6, (t2 - t1) / 20 * 1e6, (t3 - t2) / n * 1e6
    print(
        f"\nRtNetlink: add {add_us:.1f} us, list of {len(listed)} {list_us:.1f} us, "
        f"remove {rm_us:.1f} us"
    )
    assert len(listed) == n
    assert ip_addrs(link.name) == []
    # generous: a subprocess `ip addr add` alone costs ~1000 us
    assert add_us < 2000
    assert rm_us < 2000
