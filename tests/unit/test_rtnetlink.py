"""The rtnetlink codec without a kernel: hand-built request bytes, captured replies, bad input.

Expected requests are packed here from literal numbers out of the kernel's uapi headers, not
from the module's constants, so a wrong constant in the module fails a test. The captured
replies came from Linux 6.18 in a throw-away namespace (a TUN ``tfcap0``, index 2, MTU 1400, no
carrier) configured with ``ip``::

    ip addr add 192.0.2.1/24 brd + dev tfcap0
    ip addr add 10.9.0.1 peer 10.9.0.2/32 dev tfcap0
    ip addr add 2001:db8::1/64 dev tfcap0 nodad
    ip route add 198.51.100.0/24 via 192.0.2.254 dev tfcap0 metric 7 proto static
    ip route add 2001:db8:5::/48 dev tfcap0
"""

from __future__ import annotations

import ast
import errno
import struct
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
)
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from tunflow.errors import ConfigError
from tunflow.netconfig import rtnetlink as rt
from tunflow.netconfig.rtnetlink import (
    AddressInfo,
    Expect,
    LinkInfo,
    NetlinkDecodeError,
    NetlinkMessage,
    OperState,
    Route,
    Transaction,
)


def hdr(length: int, type_: int, flags: int, seq: int) -> bytes:
    return struct.pack("=IHHII", length, type_, flags, seq, 0)


def nla(type_: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("=HH", n, type_) + data + b"\0" * (-n % 4)


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


def ip(text: str) -> bytes:
    return ip_address(text).packed


# --- requests ------------------------------------------------------------------------------------


def test_get_link_by_index() -> None:
    # RTM_GETLINK=18, NLM_F_REQUEST; ifinfomsg; IFLA_EXT_MASK=29 with RTEXT_FILTER_SKIP_STATS=8
    body = struct.pack("=BxHiII", 0, 0, 2, 0, 0) + nla(29, u32(8))
    assert rt.encode_get_link(1, index=2) == hdr(16 + len(body), 18, 1, 1) + body


def test_get_link_by_name() -> None:
    body = struct.pack("=BxHiII", 0, 0, 0, 0, 0) + nla(3, b"tun0\0") + nla(29, u32(8))
    assert rt.encode_get_link(3, name="tun0") == hdr(16 + len(body), 18, 1, 3) + body


def test_set_link() -> None:
    # RTM_NEWLINK=16, REQUEST|ACK; IFF_UP in flags and change; MAC(1), MTU(4), IFNAME(3), TXQLEN(13)
    body = (
        struct.pack("=BxHiII", 0, 0, 3, 1, 1)
        + nla(1, bytes.fromhex("020000000001"))
        + nla(4, u32(1400))
        + nla(3, b"tfnew\0")
        + nla(13, u32(64))
    )
    got = rt.encode_set_link(
        5, 3, up=True, mtu=1400, mac=bytes.fromhex("020000000001"), name="tfnew", txqlen=64
    )
    assert got == hdr(16 + len(body), 16, 5, 5) + body


def test_set_link_down_and_nothing() -> None:
    down = struct.pack("=BxHiII", 0, 0, 3, 0, 1)
    assert rt.encode_set_link(1, 3, up=False) == hdr(32, 16, 5, 1) + down
    # Without up/down the flags and the change mask stay zero (change 0 would mean "all flags").
    assert rt.encode_set_link(1, 3) == hdr(32, 16, 5, 1) + struct.pack("=BxHiII", 0, 0, 3, 0, 0)


def test_new_address_v4_with_broadcast() -> None:
    # RTM_NEWADDR=20, REQUEST|ACK|EXCL|CREATE = 0x605; IFA_LOCAL=2, IFA_ADDRESS=1, IFA_BROADCAST=4
    body = (
        struct.pack("=BBBBI", 2, 24, 0, 0, 3)
        + nla(2, ip("192.0.2.1"))
        + nla(1, ip("192.0.2.1"))
        + nla(4, ip("192.0.2.255"))
    )
    assert (
        rt.encode_new_address(7, 3, IPv4Interface("192.0.2.1/24")) == hdr(48, 20, 0x605, 7) + body
    )


def test_new_address_v4_peer_and_small_prefixes_have_no_broadcast() -> None:
    body = struct.pack("=BBBBI", 2, 32, 0, 0, 3) + nla(2, ip("10.9.0.1")) + nla(1, ip("10.9.0.2"))
    got = rt.encode_new_address(7, 3, "10.9.0.1/32", peer=IPv4Address("10.9.0.2"))
    assert got == hdr(40, 20, 0x605, 7) + body
    for plen in (31, 32):
        assert len(rt.encode_new_address(1, 3, f"10.0.0.0/{plen}")) == 40  # no IFA_BROADCAST
    assert len(rt.encode_new_address(1, 3, "10.0.0.1/24", broadcast=False)) == 40


def test_new_address_v6_nodad_and_replace() -> None:
    body = (
        struct.pack("=BBBBI", 10, 64, 0x02, 0, 3)  # IFA_F_NODAD = 0x02
        + nla(2, ip("2001:db8::1"))
        + nla(1, ip("2001:db8::1"))
    )
    assert rt.encode_new_address(8, 3, "2001:db8::1/64") == hdr(64, 20, 0x605, 8) + body
    # NLM_F_REPLACE (0x100) instead of NLM_F_EXCL; DAD kept when asked
    again = rt.encode_new_address(8, 3, "2001:db8::1/64", replace=True, nodad=False)
    assert struct.unpack_from("=H", again, 6)[0] == 0x505
    assert again[16 + 2] == 0


def test_del_address() -> None:
    body = struct.pack("=BBBBI", 2, 24, 0, 0, 3) + nla(2, ip("192.0.2.1")) + nla(1, ip("192.0.2.1"))
    assert rt.encode_del_address(9, 3, "192.0.2.1/24") == hdr(40, 21, 5, 9) + body
    peer = rt.encode_del_address(9, 3, "10.9.0.1/32", peer="10.9.0.2")
    assert peer.endswith(nla(1, ip("10.9.0.2")))


def test_get_addresses_dump() -> None:
    # NLM_F_DUMP = ROOT|MATCH = 0x300; strict checking wants prefixlen/flags/scope zero
    body = struct.pack("=BBBBI", 0, 0, 0, 0, 3)
    assert rt.encode_get_addresses(4, index=3) == hdr(24, 22, 0x301, 4) + body


def test_new_route_v4_gateway_metric() -> None:
    # RTM_NEWROUTE=24; rtmsg: table main 254, proto static 4, scope universe 0, type unicast 1
    body = (
        struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 254, 4, 0, 1, 0)
        + nla(1, ip("198.51.100.0"))  # RTA_DST
        + nla(4, u32(3))  # RTA_OIF
        + nla(5, ip("192.0.2.254"))  # RTA_GATEWAY
        + nla(6, u32(7))  # RTA_PRIORITY
    )
    got = rt.encode_new_route(
        9, 3, IPv4Network("198.51.100.0/24"), gateway=IPv4Address("192.0.2.254"), metric=7
    )
    assert got == hdr(60, 24, 0x605, 9) + body


def test_new_route_on_link_scopes() -> None:
    # IPv4 without a gateway: scope link (253); a default route has no RTA_DST
    v4 = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 254, 4, 253, 1, 0) + nla(4, u32(3))
    assert rt.encode_new_route(1, 3, "0.0.0.0/0") == hdr(36, 24, 0x605, 1) + v4
    # IPv6: the kernel ignores rtm_scope and reports universe, so that is what is sent
    v6 = (
        struct.pack("=BBBBBBBBI", 10, 48, 0, 0, 254, 3, 0, 1, 0)
        + nla(1, ip("2001:db8:5::"))
        + nla(4, u32(3))
    )
    got = rt.encode_new_route(1, 3, IPv6Network("2001:db8:5::/48"), protocol=3)
    assert got == hdr(16 + len(v6), 24, 0x605, 1) + v6


def test_del_route_uses_wildcards() -> None:
    # protocol 0, scope RT_SCOPE_NOWHERE (255), type 0: what `ip route del` sends
    body = (
        struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 254, 0, 255, 0, 0)
        + nla(1, ip("198.51.100.0"))
        + nla(4, u32(3))
    )
    assert rt.encode_del_route(2, 3, "198.51.100.0/24") == hdr(44, 25, 5, 2) + body


def test_get_routes_dump() -> None:
    body = struct.pack("=BBBBBBBBI", 0, 0, 0, 0, 254, 0, 0, 1, 0) + nla(4, u32(3))
    assert rt.encode_get_routes(6, index=3) == hdr(36, 26, 0x301, 6) + body


def test_route_in_another_table() -> None:
    # A table above 255: the header byte says RT_TABLE_COMPAT (252), RTA_TABLE (15) has the id
    v4 = (
        struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 252, 4, 253, 1, 0)
        + nla(4, u32(3))  # RTA_OIF
        + nla(15, u32(51820))  # RTA_TABLE
    )
    assert rt.encode_new_route(1, 3, "0.0.0.0/0", table=51820) == hdr(44, 24, 0x605, 1) + v4
    # A small id fits the byte and is sent in RTA_TABLE too; main (254) is never in RTA_TABLE
    v6 = (
        struct.pack("=BBBBBBBBI", 10, 0, 0, 0, 100, 4, 0, 1, 0) + nla(4, u32(3)) + nla(15, u32(100))
    )
    assert rt.encode_new_route(2, 3, "::/0", table=100) == hdr(44, 24, 0x605, 2) + v6
    assert rt.encode_new_route(2, 3, "::/0", table=254) == rt.encode_new_route(2, 3, "::/0")
    deleted = (
        struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 252, 0, 255, 0, 0)
        + nla(1, ip("198.51.100.0"))
        + nla(4, u32(3))
        + nla(15, u32(1234))
    )
    got = rt.encode_del_route(4, 3, "198.51.100.0/24", table=1234)
    assert got == hdr(52, 25, 5, 4) + deleted


def test_get_routes_of_a_table() -> None:
    # below 256 the header byte is the filter; above, RTA_TABLE (one family at a time)
    small = struct.pack("=BBBBBBBBI", 0, 0, 0, 0, 100, 0, 0, 1, 0)
    assert rt.encode_get_routes(6, table=100) == hdr(28, 26, 0x301, 6) + small
    big = struct.pack("=BBBBBBBBI", 10, 0, 0, 0, 252, 0, 0, 1, 0) + nla(15, u32(51820))
    assert rt.encode_get_routes(6, family=10, table=51820) == hdr(36, 26, 0x301, 6) + big
    # route type 0: no type filter (blackhole, unreachable… too)
    any_type = struct.pack("=BBBBBBBBI", 0, 0, 0, 0, 100, 0, 0, 0, 0)
    assert rt.encode_get_routes(6, table=100, route_type=0) == hdr(28, 26, 0x301, 6) + any_type


def test_new_rule_not_fwmark() -> None:
    # `ip -4 rule add not fwmark 51820 table 51820`: RTM_NEWRULE=32, REQUEST|ACK|EXCL|CREATE;
    # fib_rule_hdr: family 2, table byte 0 (the id is above 255), action FR_ACT_TO_TBL=1,
    # flags FIB_RULE_INVERT=2; FRA_FWMARK=10, FRA_TABLE=15
    body = (
        struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 0, 0, 0, 1, 2)
        + nla(10, u32(51820))
        + nla(15, u32(51820))
    )
    got = rt.encode_new_rule(7, rt.AF_INET, table=51820, fwmark=51820, invert=True)
    assert got == hdr(44, 32, 0x605, 7) + body


def test_new_rule_suppress_prefixlength_priority_mask() -> None:
    # `ip -6 rule add table main suppress_prefixlength 0`: FRA_SUPPRESS_PREFIXLEN=14
    body = (
        struct.pack("=BBBBBBBBI", 10, 0, 0, 0, 254, 0, 0, 1, 0)
        + nla(14, u32(0))
        + nla(15, u32(254))
    )
    got = rt.encode_new_rule(1, rt.AF_INET6, table=254, suppress_prefixlength=0)
    assert got == hdr(44, 32, 0x605, 1) + body
    # FRA_PRIORITY=6, FRA_FWMARK=10, FRA_FWMASK=16 in that order
    body = (
        struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 100, 0, 0, 1, 0)
        + nla(6, u32(1000))
        + nla(10, u32(0x100))
        + nla(16, u32(0xF00))
        + nla(15, u32(100))
    )
    got = rt.encode_new_rule(2, rt.AF_INET, table=100, priority=1000, fwmark=0x100, fwmask=0xF00)
    assert got == hdr(60, 32, 0x605, 2) + body


def test_del_rule() -> None:
    # `ip -4 rule del table main suppress_prefixlength 0`: RTM_DELRULE=33, REQUEST|ACK
    body = (
        struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 254, 0, 0, 1, 0) + nla(14, u32(0)) + nla(15, u32(254))
    )
    got = rt.encode_del_rule(3, rt.AF_INET, table=254, suppress_prefixlength=0)
    assert got == hdr(44, 33, 5, 3) + body
    # without a table: any table and any action (FR_ACT_UNSPEC=0) match
    body = struct.pack("=BBBBBBBBI", 10, 0, 0, 0, 0, 0, 0, 0, 0) + nla(6, u32(32765))
    assert rt.encode_del_rule(4, rt.AF_INET6, priority=32765) == hdr(36, 33, 5, 4) + body


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: rt.encode_new_rule(1, 0, table=100), "AF_INET or AF_INET6"),
        (lambda: rt.encode_new_rule(1, 2, table=0), "routing table 0"),
        (lambda: rt.encode_new_rule(1, 2, table=2**32), "routing table"),
        (lambda: rt.encode_new_rule(1, 2, table=True), "routing table True"),
        (lambda: rt.encode_new_rule(1, 2, table=100, priority=-1), "rule priority -1"),
        (lambda: rt.encode_new_rule(1, 2, table=100, fwmark=2**32), "fwmark"),
        (lambda: rt.encode_new_rule(1, 2, table=100, fwmask=0xFF), "without a fwmark"),
        (lambda: rt.encode_new_rule(1, 2, table=100, fwmark=1, fwmask=-1), "fwmask -1"),
        (lambda: rt.encode_new_rule(1, 2, table=100, suppress_prefixlength=33), "0..32"),
        (lambda: rt.encode_new_rule(1, 10, table=100, suppress_prefixlength=129), "0..128"),
        (lambda: rt.encode_new_rule(1, 2, table=100, invert=1), "not a bool"),  # type: ignore[arg-type]
        (lambda: rt.encode_new_rule(-1, 2, table=100), "sequence number"),
        (lambda: rt.encode_del_rule(1, 2, table=0), "routing table 0"),
        (lambda: rt.encode_del_rule(1, 7), "family 7"),
        (lambda: rt.encode_new_route(1, 3, "10.0.0.0/24", table=0), "routing table 0"),
        (lambda: rt.encode_del_route(1, 3, "10.0.0.0/24", table=2**32), "routing table"),
        (lambda: rt.encode_get_routes(1, table=1234), "one address family at a time"),
        (lambda: rt.encode_get_routes(1, family=2, table=0), "routing table 0"),
    ],
)
def test_bad_rule_and_table_values(call: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()  # type: ignore[operator]


def test_with_seq() -> None:
    request = rt.encode_new_address(0, 3, "192.0.2.1/24")
    assert rt.with_seq(request, 77) == rt.encode_new_address(77, 3, "192.0.2.1/24")
    with pytest.raises(ConfigError, match="sequence number"):
        rt.with_seq(request, -1)
    with pytest.raises(ConfigError, match="header"):
        rt.with_seq(b"short", 1)


# --- bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, -1, True, 2**31, "3", 3.0, None])
def test_bad_index(index: object) -> None:
    with pytest.raises(ConfigError, match="interface index"):
        rt.encode_set_link(1, index, up=True)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a" * 16, "a b", "a/b", "a:b", ".", "..", "é" * 8, 5])
def test_bad_name(name: object) -> None:
    with pytest.raises(ConfigError, match="interface name"):
        rt.encode_set_link(1, 3, name=name)  # type: ignore[arg-type]


def test_good_name_limits() -> None:
    rt.encode_set_link(1, 3, name="a" * 15)
    rt.encode_get_link(1, name="é" * 7)  # 14 bytes of UTF-8


@pytest.mark.parametrize("name", ["\u00e0x", "x\u0160", "\xa0x"])
def test_a_name_with_the_byte_0xa0_is_refused_as_the_kernel_refuses_it(name: str) -> None:
    # (dev_valid_name's isspace() takes 0xA0; à is C3 A0 in UTF-8, Š C5 A0)
    with pytest.raises(ConfigError, match="interface name"):
        rt.encode_set_link(1, 3, name=name)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mtu": 0}, "MTU 0"),
        ({"mtu": 2**31}, "MTU"),
        ({"mtu": "1500"}, "MTU"),
        ({"txqlen": -1}, "txqueuelen"),
        ({"txqlen": 2**32}, "txqueuelen"),
        ({"mac": b""}, "MAC"),
        ({"mac": bytes(33)}, "MAC"),
        ({"mac": "02:00:00:00:00:01"}, "MAC"),
        ({"up": 1}, "up=1"),
    ],
)
def test_bad_link_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        rt.encode_set_link(1, 3, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: rt.encode_new_address(1, 3, "10.0.0.300/24"), "10.0.0.300/24"),
        (lambda: rt.encode_new_address(1, 3, IPv4Address("10.0.0.1")), "IPv4Interface"),
        (lambda: rt.encode_new_address(1, 3, "0.0.0.0/8"), "unspecified"),
        (lambda: rt.encode_new_address(1, 3, "ff02::1/64"), "multicast"),
        (lambda: rt.encode_new_address(1, 3, "10.0.0.1/32", peer="2001:db8::1"), "same IP version"),
        (lambda: rt.encode_new_address(1, 3, "10.0.0.1/32", peer="nope"), "'nope'"),
        (lambda: rt.encode_new_address(1, 3, "2001:db8::1/64", broadcast=True), "broadcast"),
        (lambda: rt.encode_del_address(1, 3, "10.0.0.1/24", peer=b"x"), "peer"),
        (lambda: rt.encode_new_route(1, 3, "10.0.0.1/24"), "host bits"),
        (lambda: rt.encode_new_route(1, 3, IPv4Interface("10.0.0.0/24")), "IPv4Network"),
        (lambda: rt.encode_new_route(1, 3, "10.0.0.0/24", gateway="2001:db8::1"), "same IP"),
        (lambda: rt.encode_new_route(1, 3, "10.0.0.0/24", gateway="0.0.0.0"), "unspecified"),
        (lambda: rt.encode_new_route(1, 3, "fd00::/64", gateway="fe80::1%lo"), "no scope"),
        (lambda: rt.encode_del_route(1, 3, "fd00::/64", gateway="fe80::1%2"), "no scope"),
        (lambda: rt.encode_new_route(1, 3, "10.0.0.0/24", gateway="10.1.0.1/24"), "10.1.0.1/24"),
        (lambda: rt.encode_new_route(1, 3, "10.0.0.0/24", metric=-1), "metric -1"),
        (lambda: rt.encode_new_route(1, 3, "10.0.0.0/24", protocol=256), "protocol"),
        (lambda: rt.encode_del_route(1, 3, "10.0.0.0/24", metric=2**32), "metric"),
        (lambda: rt.encode_get_addresses(1, family=7), "family 7"),
        (lambda: rt.encode_get_routes(1, family=7), "family 7"),
        (lambda: rt.encode_get_routes(1, route_type=256), "route type 256"),
        (lambda: rt.encode_get_link(1), "by index or by name"),
        (lambda: rt.encode_get_link(1, index=2, name="x"), "not both"),
        (lambda: rt.encode_get_link(2**32, index=2), "sequence number"),
    ],
)
def test_bad_address_and_route_values(call: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()  # type: ignore[operator]


# --- captured replies ----------------------------------------------------------------------------

LINK_REPLY = bytes.fromhex(
    "740400001000000001000000521900000000feff0200000091100000000000000b000300746663617030000008000d00"
    "f40100000500100002000000050011000000000005004300000000000800040078050000080032004400000008003300"
    "ffff000008001b000000000008001e000000000008003d000000000008001f000100000008002800ffff000008002900"
    "0000010008003a000000010008003f0000000100080040000000010008003b000000010008003c00ffff000008004200"
    "0000000008002000010000000500210000000000080023000100000008002f0000000000080030000100000006004400"
    "0000000006004500000000000500270000000000cc001700000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000064000700000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000c002b000500020000000000"
    "380012000800010074756e002c0002000500030001000000050004000000000005000500000000000500060001000000"
    "05000700000000000f000600706669666f5f666173740000c0011a008c00020088000100000000000000000000000000"
    "010000000100000001000000010000000000000001000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000010270000"
    "e8030000000000000000000000000000000000000100000030010a00080001000000000014000500ffff000006860300"
    "9c590000e8030000f400020000000000400000007805000001000000010000000100000001000000ffffffffa00f0000"
    "e8030000ffffffff803a0900805101000300000058020000100000000000000001000000010000000100000060ea0000"
    "000000000000000000000000000000000000000000000000ffffffff000000000000000010270000e803000001000000"
    "0000000000000000010000000000000000000000010000000000000000000000000000000000000080ee360000000000"
    "000000000100000000000000000000000000000000000000000000000004000000000000ffff0000ffffffff01000000"
    "0000000000000000000000001400070000000000000000000000000000000000050008000000000024000e0000000000"
    "0000000000000000000000000000000000000000000000000000000004003e8004004180"
)

ADDR_DUMP = [
    bytes.fromhex(
        "58000000140022000200000052190000021880000200000008000100c000020108000200c000020108000400c00002ff"
        "0b0003007466636170300000080008008000000014000600ffffffffffffffff06860300068603005000000014002200"
        "02000000521900000220800002000000080001000a090002080002000a0900010b000300746663617030000008000800"
        "8000000014000600ffffffffffffffff0786030007860300480000001400220002000000521900000a40820002000000"
        "1400010020010db800000000000000000000000114000600ffffffffffffffff07860300078603000800080082000000"
    ),
    bytes.fromhex("1400000003002200020000005219000000000000"),
]

ROUTE_DUMP = [
    bytes.fromhex(
        "3c00000018002200030000005219000002200000fe02fd011000000008000f00fe000000080001000a09000208000700"
        "0a09000108000400020000003c00000018002200030000005219000002180000fe02fd011000000008000f00fe000000"
        "08000100c000020008000700c000020108000400020000004400000018002200030000005219000002180000fe040001"
        "1000000008000f00fe00000008000100c6336400080006000700000008000500c00002fe080004000200000074000000"
        "1800220003000000521900000a400000fe0200011000000008000f00fe0000001400010020010db80000000000000000"
        "000000000800060000010000080004000200000024000c00000000000000000000000000000000000000000000000000"
        "00000000000000000500140000000000740000001800220003000000521900000a300000fe0300011000000008000f00"
        "fe0000001400010020010db80005000000000000000000000800060000040000080004000200000024000c0000000000"
        "000000000000000000000000000000000000000000000000000000000500140000000000"
    ),
    bytes.fromhex("1400000003002200030000005219000000000000"),
]

# RTM_NEWADDR 192.0.2.1/24 again: NLMSG_ERROR -EEXIST, NLM_F_CAPPED|NLM_F_ACK_TLVS, extack text
EEXIST_REPLY = bytes.fromhex(
    "48000000020000030400000052190000efffffff3000000014000506040000000000000023000100697076343a204164"
    "647265737320616c72656164792061737369676e65640000"
)
# RTM_GETADDR dump for index 999 on a strict socket: NLMSG_DONE carrying -ENODEV
ENODEV_DONE = bytes.fromhex("14000000030022000500000052190000edffffff")
# RTM_NEWLINK ack: NLMSG_ERROR 0, NLM_F_CAPPED
ACK = bytes.fromhex("240000000200000106000000521900000000000020000000100005000600000000000000")


def test_link_reply() -> None:
    t = Transaction(1, Expect.REPLY)
    t.receive_data(LINK_REPLY)
    assert t.done
    (msg,) = t.replies
    info = rt.parse_link(msg)
    # A TUN: IFF_UP|IFF_POINTOPOINT|IFF_NOARP|IFF_MULTICAST, no link-layer address, no carrier.
    assert info == LinkInfo(
        index=2,
        name="tfcap0",
        flags=0x1091,
        mtu=1400,
        mac=None,
        txqlen=500,
        operstate=2,
        kind="tun",
        tun_pi=False,  # IFLA_TUN_PI 0: opened with IFF_NO_PI
    )
    assert info.operstate is OperState.DOWN
    assert info.is_up


def test_address_dump() -> None:
    t = Transaction(2, Expect.DUMP)
    t.receive_data(ADDR_DUMP[0])
    assert not t.done
    t.receive_data(ADDR_DUMP[1])
    assert t.done
    assert not t.interrupted
    got = [rt.parse_address(m) for m in t.replies]
    assert got == [
        AddressInfo(
            2, IPv4Interface("192.0.2.1/24"), None, IPv4Address("192.0.2.255"), 0x80, 0, "tfcap0"
        ),
        AddressInfo(
            2, IPv4Interface("10.9.0.1/32"), IPv4Address("10.9.0.2"), None, 0x80, 0, "tfcap0"
        ),
        # IFA_F_NODAD|IFA_F_PERMANENT; an IPv6 address without peer carries IFA_ADDRESS only
        AddressInfo(2, IPv6Interface("2001:db8::1/64"), None, None, 0x82, 0, None),
    ]


def test_route_dump() -> None:
    t = Transaction(3, Expect.DUMP)
    for part in ROUTE_DUMP:
        t.receive_data(part)
    assert t.done
    entries = [rt.parse_route(m) for m in t.replies]
    assert all(e is not None and e.oif == 2 for e in entries)
    assert rt.routes_via(entries, 2) == [
        Route(IPv4Network("10.9.0.2/32"), None, 0, 254, 2, 253),
        Route(IPv4Network("192.0.2.0/24"), None, 0, 254, 2, 253),
        Route(IPv4Network("198.51.100.0/24"), IPv4Address("192.0.2.254"), 7, 254, 4, 0),
        Route(IPv6Network("2001:db8::/64"), None, 256, 254, 2, 0),
        Route(IPv6Network("2001:db8:5::/48"), None, 1024, 254, 3, 0),
    ]
    assert rt.routes_via(entries, 3) == []


def test_error_with_extended_ack() -> None:
    t = Transaction(4, Expect.ACK, strerror=lambda code: f"strerror {code}")
    with pytest.raises(FileExistsError) as info:
        t.receive_data(EEXIST_REPLY)
    assert info.value.errno == errno.EEXIST
    assert info.value.strerror == "strerror 17 (ipv4: Address already assigned)"
    assert t.done


def test_failed_dump_reports_errno_in_done() -> None:
    t = Transaction(5, Expect.DUMP)
    with pytest.raises(OSError, match=r"\[Errno 19\] ENODEV") as info:
        t.receive_data(ENODEV_DONE)
    assert info.value.errno == errno.ENODEV


def test_ack() -> None:
    t = Transaction(6, Expect.ACK)
    t.receive_data(ACK)
    assert t.done
    assert t.replies == []


def test_foreign_sequence_numbers_are_skipped() -> None:
    t = Transaction(99, Expect.ACK)
    t.receive_data(EEXIST_REPLY + ACK)  # seq 4 and 6: leftovers of other requests
    assert not t.done
    t.receive_data(hdr(36, 2, 0, 99) + struct.pack("=i", 0) + hdr(16, 16, 5, 99))
    assert t.done


def test_dump_interrupted_flag_and_noop() -> None:
    t = Transaction(3, Expect.DUMP)
    noop = hdr(16, 1, 0, 3)  # NLMSG_NOOP
    done_intr = hdr(20, 3, 0x12, 3) + struct.pack("=i", 0)  # MULTI|DUMP_INTR
    t.receive_data(noop + done_intr)
    assert t.done
    assert t.interrupted
    assert t.replies == []


def test_overrun() -> None:
    with pytest.raises(OSError, match="overrun") as info:
        Transaction(3, Expect.DUMP).receive_data(hdr(16, 4, 0, 3))
    assert info.value.errno == errno.ENOBUFS


def test_error_without_tlvs_and_uncapped_echo() -> None:
    # Without NLM_F_CAPPED the request is echoed whole; the TLVs start after it.
    request = rt.encode_new_address(4, 2, "192.0.2.1/24")
    payload = struct.pack("=i", -errno.EPERM) + request + nla(1, b"no\0")
    with pytest.raises(PermissionError, match=r"EPERM \(no\)"):
        Transaction(4, Expect.ACK).receive_data(hdr(16 + len(payload), 2, 0x200, 4) + payload)
    bare = struct.pack("=i", -errno.EPERM) + request[:16]
    with pytest.raises(PermissionError, match=r"EPERM$"):
        Transaction(4, Expect.ACK).receive_data(hdr(16 + len(bare), 2, 0x100, 4) + bare)


# --- malformed input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x10\x00\x00",  # shorter than a header
        hdr(15, 2, 0, 1),  # length below the header size
        # an NLMSG_NOOP shorter than its header (NLMSG_OK fails), whose seq, 8 bytes on, would
        # read as the length of a next message
        hdr(8, 1, 0, 16) + bytes(8),
        hdr(40, 2, 0, 1) + bytes(4),  # length past the end
        hdr(16, 3, 0, 1) + b"\x01",  # a stray byte after the last message
        hdr(20, 2, 0, 1) + struct.pack("=i", 5),  # positive error code
        hdr(18, 2, 0, 1) + b"\0\0",  # error payload too short
        hdr(24, 2, 0x200, 1) + struct.pack("=i", -1) + bytes(4),  # TLVs but no echoed header
    ],
)
def test_malformed_datagrams(data: bytes) -> None:
    with pytest.raises(NetlinkDecodeError) as info:
        Transaction(1, Expect.ACK).receive_data(data)
    assert info.value.errno == errno.EBADMSG
    assert isinstance(info.value, OSError)


def msg(type_: int, payload: bytes) -> NetlinkMessage:
    return NetlinkMessage(type_, 0, 1, 0, payload)


@pytest.mark.parametrize(
    ("parse", "message", "match"),
    [
        (rt.parse_link, msg(20, bytes(16)), "expected RTM_NEWLINK"),
        (rt.parse_link, msg(16, bytes(8)), "too short"),
        (rt.parse_link, msg(16, bytes(16) + nla(4, b"\x01\x02")), "IFLA_MTU is 2 bytes"),
        (rt.parse_link, msg(16, bytes(16) + struct.pack("=HH", 2, 4)), "length 2"),
        (rt.parse_link, msg(16, bytes(16) + struct.pack("=HH", 64, 4)), "length 64"),
        (rt.parse_link, msg(16, bytes(16) + nla(16, b"\x01\x02")), "IFLA_OPERSTATE"),
        (rt.parse_address, msg(20, bytes(4)), "too short"),
        (rt.parse_address, msg(20, struct.pack("=BBBBI", 2, 33, 0, 0, 1)), "prefix length 33"),
        (rt.parse_address, msg(20, struct.pack("=BBBBI", 2, 24, 0, 0, 1)), "without IFA_LOCAL"),
        (
            rt.parse_address,
            msg(20, struct.pack("=BBBBI", 10, 64, 0, 0, 1) + nla(1, ip("10.0.0.1"))),
            "not an address of family 10",
        ),
        (rt.parse_route, msg(24, bytes(8)), "too short"),
        (rt.parse_route, msg(24, struct.pack("=BBBBBBBBI", 2, 40, 0, 0, 254, 0, 0, 1, 0)), "40"),
        (
            rt.parse_route,
            msg(
                24,
                struct.pack("=BBBBBBBBI", 2, 8, 0, 0, 254, 0, 0, 1, 0)
                + nla(9, struct.pack("=HBBi", 32, 0, 0, 1)),
            ),
            "rtnexthop",
        ),
        (rt.parse_route, msg(25, bytes(12)), "expected RTM_NEWROUTE"),
        (rt.parse_link_stats, msg(16, bytes(16)), "without IFLA_STATS64"),
        # IFLA_STATS64 (23) cut short of the eight counters (64 bytes) read from it
        (rt.parse_link_stats, msg(16, bytes(16) + nla(23, bytes(32))), "IFLA_STATS64 of 32"),
    ],
)
def test_malformed_payloads(parse: object, message: NetlinkMessage, match: str) -> None:
    with pytest.raises(NetlinkDecodeError, match=match):
        parse(message)  # type: ignore[operator]


# --- framing as the uapi macros walk it ---------------------------------------------------------


def test_a_message_of_unaligned_length_is_followed_at_the_next_4_byte_boundary() -> None:
    # NLMSG_NEXT (linux/netlink.h) steps NLMSG_ALIGN(nlmsg_len): a 17-byte payload is followed
    # by 3 bytes of padding, then the next header.
    first = hdr(16 + 17, 16, 2, 1) + bytes(17) + b"\xee" * 3
    done = hdr(20, 3, 2, 1) + struct.pack("=i", 0)
    got = list(rt.iter_messages(first + done))
    assert [(m.type, len(m.payload)) for m in got] == [(16, 17), (3, 4)]


def test_attribute_types_lose_the_nested_and_byte_order_flags() -> None:
    # NLA_TYPE_MASK = ~(NLA_F_NESTED (1 << 15) | NLA_F_NET_BYTEORDER (1 << 14))
    metrics = nla(0x4000 | 2, u32(1300))  # RTAX_MTU
    body = (
        struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 254, 4, 0, 1, 0)
        + nla(1, ip("198.51.100.0"))
        + nla(0x8000 | 8, metrics)  # RTA_METRICS marked nested
    )
    entry = rt.parse_route(msg(24, body))
    assert entry is not None and entry.mtu == 1300
    assert list(rt.iter_attributes(nla(0xC000 | 3, b"x\0"))) == [(3, b"x\0")]


def test_a_next_hop_of_unaligned_length_is_followed_at_the_next_4_byte_boundary() -> None:
    # RTNH_NEXT (linux/rtnetlink.h) steps RTNH_ALIGN(rtnh_len): the first hop's length, 13, says
    # 8 bytes of rtnexthop and a 5-byte attribute, padded to 16.
    hop1 = struct.pack("=HBBi", 13, 0, 0, 3) + nla(99, b"\x01")
    hop2 = struct.pack("=HBBi", 16, 0, 0, 4) + nla(5, ip("192.0.2.1"))
    body = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 254, 4, 0, 1, 0) + nla(9, hop1 + hop2)
    entry = rt.parse_route(msg(24, body))
    assert entry is not None
    assert entry.nexthops == ((3, None), (4, IPv4Address("192.0.2.1")))


def test_messages_after_the_end_of_the_exchange_are_ignored() -> None:
    link = hdr(32, 16, 0, 7) + bytes(16)
    reply = Transaction(7, Expect.REPLY)
    reply.receive_data(link + link + hdr(20, 2, 0, 7) + struct.pack("=i", -errno.EINVAL))
    assert reply.done and len(reply.replies) == 1
    dump = Transaction(7, Expect.DUMP)
    dump.receive_data(link + hdr(20, 3, 2, 7) + struct.pack("=i", 0) + link)
    assert dump.done and len(dump.replies) == 1


def test_other_families_are_skipped() -> None:
    # An AF_UNSPEC dump can carry MCTP addresses or multicast-routing entries.
    assert rt.parse_address(msg(20, struct.pack("=BBBBI", 45, 0, 0, 0, 1))) is None
    assert rt.parse_route(msg(24, struct.pack("=BBBBBBBBI", 128, 0, 0, 0, 254, 0, 0, 1, 0))) is None


def test_multipath_route() -> None:
    # Two next hops, one through index 3 and one through 4; RTA_VIA on the second (RFC 5549).
    hop1 = struct.pack("=HBBi", 16, 0, 0, 3) + nla(5, ip("192.0.2.1"))
    via = struct.pack("=H", 10) + ip("fe80::1")
    hop2 = struct.pack("=HBBi", 8 + len(nla(18, via)), 0, 0, 4) + nla(18, via)
    body = (
        struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 254, 4, 0, 1, 0)
        + nla(1, ip("198.51.100.0"))
        + nla(9, hop1 + hop2)
    )
    entry = rt.parse_route(msg(24, body))
    assert entry is not None
    net = IPv4Network("198.51.100.0/24")
    assert rt.routes_via([entry], 3) == [Route(net, IPv4Address("192.0.2.1"), 0, 254, 4, 0)]
    assert rt.routes_via([entry], 4) == [Route(net, IPv6Address("fe80::1"), 0, 254, 4, 0)]


def test_a_routes_mtu_is_read_from_its_metrics() -> None:
    # RTA_METRICS (8) nests RTAX_ attributes; RTAX_MTU (2) is `ip route … mtu N` (and a path MTU
    # learnt, in a lookup's answer); the others are skipped
    metrics = nla(4, u32(7)) + nla(2, u32(1300))  # RTAX_WINDOW, RTAX_MTU
    body = (
        struct.pack("=BBBBBBBBI", 2, 24, 0, 0, 254, 4, 0, 1, 0)
        + nla(1, ip("198.51.100.0"))
        + nla(4, u32(3))  # RTA_OIF
        + nla(8, metrics)
    )
    entry = rt.parse_route(msg(24, body))
    assert entry is not None and (entry.oif, entry.mtu) == (3, 1300)
    plain = rt.parse_route(msg(24, body[: -len(nla(8, metrics))]))
    assert plain is not None and plain.mtu == 0


def test_routes_via_filters() -> None:
    base = rt.RouteEntry(2, IPv4Network("10.0.0.0/8"), 1, 254, 4, 0, 0, 0, 3, None)
    keep = Route(IPv4Network("10.0.0.0/8"), None, 0, 254, 4, 0)
    assert rt.routes_via([base, None], 3) == [keep]
    import attrs

    for other in (
        attrs.evolve(base, table=255),
        attrs.evolve(base, type=7),  # unreachable
        attrs.evolve(base, flags=0x200),  # RTM_F_CLONED
        attrs.evolve(base, oif=4),
    ):
        assert rt.routes_via([other], 3) == []


# --- properties ----------------------------------------------------------------------------------

v4_ifaces = st.builds(
    lambda a, p: IPv4Interface((a, p)),
    st.integers(0x0100_0000, 0xDFFF_FFFF),
    st.integers(0, 32),
)
v6_ifaces = st.builds(
    lambda a, p: IPv6Interface((a, p)),
    st.integers(1 << 125, (1 << 128) - 1).filter(lambda a: a >> 120 != 0xFF),
    st.integers(0, 128),
)


@given(st.one_of(v4_ifaces, v6_ifaces), st.booleans(), st.integers(1, 2**31 - 1))
def test_address_round_trip(
    iface: IPv4Interface | IPv6Interface, with_peer: bool, index: int
) -> None:
    peer = ip_address(int(iface.ip) ^ 1) if with_peer else None
    if peer is not None and (peer.is_unspecified or peer == iface.ip):
        peer = None
    data = rt.encode_new_address(1, index, iface, peer=peer)
    (message,) = rt.iter_messages(data)
    info = rt.parse_address(message)
    assert info is not None
    assert (info.index, info.interface, info.peer) == (index, iface, peer)


@given(
    st.one_of(v4_ifaces.map(lambda i: i.network), v6_ifaces.map(lambda i: i.network)),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    st.integers(1, 2**31 - 1),
)
def test_route_round_trip(
    network: IPv4Network | IPv6Network, with_gateway: bool, metric: int | None, index: int
) -> None:
    gateway = (
        type(network.network_address)(int(network.network_address) | 1) if with_gateway else None
    )
    (message,) = rt.iter_messages(
        rt.encode_new_route(1, index, network, gateway=gateway, metric=metric)
    )
    entry = rt.parse_route(message)
    (route,) = rt.routes_via([entry], index)
    assert (route.destination, route.gateway, route.metric) == (network, gateway, metric or 0)


@given(
    st.one_of(v4_ifaces.map(lambda i: i.network), v6_ifaces.map(lambda i: i.network)),
    st.integers(1, 2**32 - 1),
)
def test_route_table_round_trip(network: IPv4Network | IPv6Network, table: int) -> None:
    (message,) = rt.iter_messages(rt.encode_new_route(1, 3, network, table=table))
    entry = rt.parse_route(message)
    assert entry is not None and entry.table == table
    (route,) = rt.routes_via([entry], 3, table=table)
    assert route.destination == network and route.table == table
    if table != rt.RT_TABLE_MAIN:
        assert rt.routes_via([entry], 3) == []


def only_documented_errors(call: object) -> None:
    """``call`` returns, raises NetlinkDecodeError, or raises exactly what OSError(errno) makes."""
    error: OSError | None = None
    try:
        call()  # type: ignore[operator]
    except NetlinkDecodeError:
        return
    except OSError as exc:
        error = exc
    if error is not None:
        assert type(error) is type(OSError(error.errno, "x"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(list(Expect)))
def test_random_bytes_raise_only_documented_errors(data: bytes, expect: Expect) -> None:
    only_documented_errors(lambda: Transaction(0, expect).receive_data(data))


frames = st.builds(
    lambda type_, flags, payload: (
        hdr(16 + len(payload), type_, flags, 0) + payload + bytes(-len(payload) % 4)
    ),
    st.sampled_from([1, 2, 3, 4, 16, 20, 24]),
    st.sampled_from([0, 2, 0x10, 0x100, 0x200, 0x300]),
    st.binary(max_size=80),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, max_size=4), st.sampled_from(list(Expect)))
def test_framed_random_messages_raise_only_documented_errors(
    parts: list[bytes], expect: Expect
) -> None:
    data = b"".join(parts)
    t = Transaction(0, expect)
    only_documented_errors(lambda: t.receive_data(data))
    for m in t.replies:
        parser = {16: rt.parse_link, 20: rt.parse_address, 24: rt.parse_route}.get(m.type)
        if parser is not None:
            only_documented_errors(lambda p=parser, m=m: p(m))  # type: ignore[misc]


attributes = st.lists(
    st.builds(
        nla, st.sampled_from([1, 2, 3, 4, 5, 6, 8, 9, 13, 15, 16, 18]), st.binary(max_size=20)
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(16, 16), (20, 8), (24, 12)]),
    st.binary(min_size=16, max_size=16),
    attributes,
    st.sampled_from([0, 2, 10]),
)
def test_parsers_on_random_attributes(
    kind: tuple[int, int], fixed: bytes, attrs_: list[bytes], family: int
) -> None:
    type_, size = kind
    head = bytes([family]) + fixed[1:size]
    parser = {16: rt.parse_link, 20: rt.parse_address, 24: rt.parse_route}[type_]
    only_documented_errors(lambda: parser(msg(type_, head + b"".join(attrs_))))


def test_module_is_sans_io() -> None:
    source = Path(rt.__file__).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"os", "socket", "select", "fcntl", "anyio", "trio", "asyncio"}


def test_a_tun_link_reports_its_owner_and_group() -> None:
    # IFLA_LINKINFO { IFLA_INFO_KIND "tun", IFLA_INFO_DATA { IFLA_TUN_OWNER, IFLA_TUN_GROUP } }
    head = bytes(16) + nla(3, b"tf0\0")
    data = nla(1, u32(1234)) + nla(2, u32(4321)) + nla(3, b"\x01")
    info = rt.parse_link(msg(16, head + nla(18, nla(1, b"tun\0") + nla(2, data))))
    assert (info.tun_owner, info.tun_group) == (1234, 4321)
    # unset: the kernel leaves the attribute out
    info = rt.parse_link(msg(16, head + nla(18, nla(1, b"tun\0") + nla(2, nla(2, u32(7))))))
    assert (info.tun_owner, info.tun_group) == (None, 7)
    # another kind's IFLA_INFO_DATA numbers its attributes its own way
    info = rt.parse_link(msg(16, head + nla(18, nla(1, b"veth\0") + nla(2, nla(1, u32(5))))))
    assert (info.tun_owner, info.tun_group) == (None, None)
    with pytest.raises(NetlinkDecodeError, match="IFLA_TUN_OWNER"):
        rt.parse_link(msg(16, head + nla(18, nla(1, b"tun\0") + nla(2, nla(1, b"\x01\x02")))))
