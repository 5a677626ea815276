"""The exact bytes of every BSD/Darwin structure the backends pass to the kernel.

The expected bytes are spelled out field by field from the C declarations (cited), not produced
by tunflow's packers. The machines these layouts are for (amd64, arm64) are little-endian.
"""

from __future__ import annotations

import struct
import sys
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_network,
)

import pytest

from tunflow.platform import _bsd
from tunflow.platform._base import Route

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="little-endian layouts")

Z = b"\0"


def sin(a: int, b: int, c: int, d: int) -> bytes:
    # netinet/in.h: struct sockaddr_in {u_char sin_len; sa_family_t sin_family; in_port_t
    # sin_port; struct in_addr sin_addr; char sin_zero[8];} — 16 bytes, sin_len = 16
    return bytes([16, 2, 0, 0, a, b, c, d]) + Z * 8


def sin6(family: int, packed: bytes) -> bytes:
    # netinet6/in6.h: struct sockaddr_in6 {u_char sin6_len; sa_family_t sin6_family;
    # in_port_t sin6_port; u_int32_t sin6_flowinfo; struct in6_addr sin6_addr; u_int32_t
    # sin6_scope_id;} — 28 bytes, sin6_len = 28
    return bytes([28, family, 0, 0]) + Z * 4 + packed + Z * 4


def name16(name: str) -> bytes:
    return name.encode() + Z * (16 - len(name))


FD00_1 = bytes.fromhex("fd000000000000000000000000000001")
MASK64 = bytes.fromhex("ffffffffffffffff0000000000000000")


# -- ifreq ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flavor", "size"),
    [(_bsd.DARWIN, 32), (_bsd.FREEBSD, 32), (_bsd.OPENBSD, 32), (_bsd.NETBSD, 144)],
)
def test_ifreq_mtu(flavor: _bsd.Flavor, size: int) -> None:
    # net/if.h: struct ifreq {char ifr_name[IFNAMSIZ]; union {…; int ifru_mtu; …}} — the union
    # is 16 bytes on Darwin/FreeBSD/OpenBSD and 128 (sockaddr_storage) on NetBSD
    raw = _bsd.ifreq(flavor, "tun3", struct.pack("<i", 1400))
    assert raw == name16("tun3") + struct.pack("<i", 1400) + Z * (size - 20)
    assert len(raw) == size


def test_ifreq_rejects_long_names() -> None:
    with pytest.raises(ValueError, match="longer than 15"):
        _bsd.ifreq(_bsd.DARWIN, "x" * 16)


# -- addresses ------------------------------------------------------------------------------


def test_ifaliasreq_darwin_openbsd_netbsd() -> None:
    # net/if.h: struct ifaliasreq {char ifra_name[IFNAMSIZ]; struct sockaddr ifra_addr,
    # ifra_broadaddr, ifra_mask;} — 64 bytes
    expected = name16("utun3") + sin(10, 0, 0, 1) + sin(10, 0, 0, 255) + sin(255, 255, 255, 0)
    for flavor in (_bsd.DARWIN, _bsd.OPENBSD, _bsd.NETBSD):
        got = _bsd.ifaliasreq(
            flavor, "utun3", IPv4Interface("10.0.0.1/24"), IPv4Address("10.0.0.255")
        )
        assert got == expected
        assert len(got) == 64


def test_ifaliasreq_freebsd_has_vhid() -> None:
    # FreeBSD net/if.h: …, struct sockaddr ifra_mask; int ifra_vhid;} — 68 bytes, vhid 0
    expected = name16("tun0") + sin(10, 0, 0, 1) + sin(10, 0, 0, 2) + sin(255, 255, 255, 0) + Z * 4
    got = _bsd.ifaliasreq(
        _bsd.FREEBSD, "tun0", IPv4Interface("10.0.0.1/24"), IPv4Address("10.0.0.2")
    )
    assert got == expected


@pytest.mark.parametrize(
    ("flavor", "family", "flags", "tail"),
    [
        # in6_var.h (Darwin, NetBSD): IN6_IFF_NODAD 0x20; 128 bytes
        (_bsd.DARWIN, 30, 0x20, b""),
        (_bsd.NETBSD, 24, 0x20, b""),
        # OpenBSD dropped IN6_IFF_NODAD
        (_bsd.OPENBSD, 24, 0, b""),
        # FreeBSD: … struct in6_addrlifetime ifra_lifetime; int ifra_vhid;} — 136 bytes
        (_bsd.FREEBSD, 28, 0x20, Z * 8),
    ],
)
def test_in6_aliasreq(flavor: _bsd.Flavor, family: int, flags: int, tail: bytes) -> None:
    # netinet6/in6_var.h: struct in6_aliasreq {char ifra_name[IFNAMSIZ]; struct sockaddr_in6
    # ifra_addr, ifra_dstaddr, ifra_prefixmask; int ifra_flags; struct in6_addrlifetime
    # {time_t ia6t_expire; time_t ia6t_preferred; u_int32_t ia6t_vltime; u_int32_t
    # ia6t_pltime;} ifra_lifetime;} — ifra_flags ends at offset 104, already 8-aligned, so
    # the lifetime follows at once; vltime/pltime ND6_INFINITE_LIFETIME 0xffffffff as tun-rs
    # and ifconfig set them
    expected = (
        name16("tun1")
        + sin6(family, FD00_1)
        + Z * 28
        + sin6(family, MASK64)
        + struct.pack("<i", flags)
        + Z * 16
        + b"\xff" * 8
        + tail
    )
    got = _bsd.in6_aliasreq(flavor, "tun1", IPv6Interface("fd00::1/64"))
    assert got == expected
    assert len(got) == flavor.in6_aliasreq_size


def test_in6_ifreq_for_delete() -> None:
    # netinet6/in6_var.h: struct in6_ifreq {char ifr_name[IFNAMSIZ]; union {struct sockaddr_in6
    # ifru_addr; …; struct icmp6_ifstat ifru_icmp6stat;}} — 288 bytes
    got = _bsd.in6_ifreq(_bsd.DARWIN, "utun2", IPv6Address("fd00::1"))
    assert got == name16("utun2") + sin6(30, FD00_1) + Z * (288 - 16 - 28)


def test_sockaddr_dl_and_parse() -> None:
    # net/if_dl.h: struct sockaddr_dl {u_char sdl_len; u_char sdl_family; u_short sdl_index;
    # u_char sdl_type, sdl_nlen, sdl_alen, sdl_slen; char sdl_data[…];}
    assert _bsd.sockaddr_dl(_bsd.DARWIN, 7) == bytes([20, 18, 7, 0, 0, 0, 0, 0]) + Z * 12
    assert len(_bsd.sockaddr_dl(_bsd.FREEBSD, 7)) == 54
    # a getifaddrs AF_LINK entry: name "feth0", MAC 02:00:00:00:00:01
    raw = bytes([8 + 5 + 6, 18, 3, 0, 6, 5, 6, 0]) + b"feth0" + bytes.fromhex("020000000001")
    assert _bsd.parse_sockaddr(_bsd.DARWIN, raw) == bytes.fromhex("020000000001")
    assert _bsd.parse_sockaddr(_bsd.DARWIN, sin(1, 2, 3, 4)) == IPv4Address("1.2.3.4")
    assert _bsd.parse_sockaddr(_bsd.DARWIN, sin6(30, FD00_1)) == IPv6Address("fd00::1")
    assert _bsd.parse_sockaddr(_bsd.FREEBSD, sin6(30, FD00_1)) is None  # 30 is not FreeBSD's


def test_parse_sockaddr_clears_the_kame_embedded_zone() -> None:
    # KAME stacks (Darwin, OpenBSD, NetBSD) keep the interface index of a link-local (fe80::/10)
    # or interface-/link-local multicast (ff01::, ff02::) address in bytes 2-3 and hand it out
    # in getifaddrs(3) and routing messages; ifconfig's in6_fillscopeid clears it.
    embedded = bytes.fromhex("fe800005000000000000000000000001")
    assert _bsd.parse_sockaddr(_bsd.OPENBSD, sin6(24, embedded)) == IPv6Address("fe80::1")
    group = bytes.fromhex("ff020007000000000000000000000001")
    assert _bsd.parse_sockaddr(_bsd.DARWIN, sin6(30, group)) == IPv6Address("ff02::1")
    # other addresses and every netmask keep their bytes
    assert _bsd.parse_sockaddr(_bsd.DARWIN, sin6(30, FD00_1)) == IPv6Address("fd00::1")
    site = bytes.fromhex("ff050007000000000000000000000001")
    assert _bsd.parse_sockaddr(_bsd.DARWIN, sin6(30, site)) == IPv6Address("ff05:7::1")
    for plen in range(129):
        mask = IPv6Network(f"::/{plen}").netmask
        raw = sin6(30, mask.packed)
        assert _bsd.parse_sockaddr(_bsd.DARWIN, raw, family=30) == mask


# -- routing messages -----------------------------------------------------------------------


def sdl(size: int, index: int) -> bytes:
    return bytes([size, 18]) + struct.pack("<H", index) + Z * (size - 4)


def pad(raw: bytes, align: int) -> bytes:
    return raw + Z * (-len(raw) % align)


def test_route_message_darwin_interface_route() -> None:
    # net/route.h (Darwin): struct rt_msghdr {u_short rtm_msglen; u_char rtm_version; u_char
    # rtm_type; u_short rtm_index; int rtm_flags; int rtm_addrs; pid_t rtm_pid; int rtm_seq;
    # int rtm_errno; int rtm_use; u_int32_t rtm_inits; struct rt_metrics rtm_rmx;} — 92 bytes;
    # RTM_VERSION 5; sockaddrs rounded to 4 bytes (ROUNDUP32)
    body = sin(10, 0, 0, 0) + sdl(20, 5) + sin(255, 255, 255, 0)
    header = (
        struct.pack("<HBBH2xiiiiiiI", 92 + len(body), 5, 1, 0, 0x801, 0x7, 0, 42, 0, 0, 0) + Z * 56
    )
    got = _bsd.route_message(_bsd.DARWIN, 1, Route(ip_network("10.0.0.0/24")), if_index=5, seq=42)
    assert got == header + body


def test_route_message_freebsd() -> None:
    # FreeBSD net/route.h: … u_short rtm_index; u_short _rtm_spare1; int rtm_flags; int
    # rtm_addrs; pid_t rtm_pid; int rtm_seq; int rtm_errno; int rtm_fmask; u_long rtm_inits;
    # struct rt_metrics rtm_rmx (14 u_long)} — 152 bytes; sockaddrs rounded to sizeof(long)
    body = sin(10, 0, 0, 0) + pad(sdl(54, 5), 8) + sin(255, 255, 255, 0)
    header = struct.pack("<HBBHHiiiiiiQ", 152 + len(body), 5, 2, 0, 0, 0x801, 0x7, 0, 9, 0, 0, 0)
    header += Z * 112
    got = _bsd.route_message(_bsd.FREEBSD, 2, Route(ip_network("10.0.0.0/24")), if_index=5, seq=9)
    assert got == header + body


def test_route_message_openbsd_sets_hdrlen() -> None:
    # OpenBSD net/route.h: {u_short rtm_msglen; u_char rtm_version; u_char rtm_type; u_short
    # rtm_hdrlen; u_short rtm_index; u_short rtm_tableid; u_char rtm_priority; u_char rtm_mpls;
    # int rtm_addrs; int rtm_flags; int rtm_fmask; pid_t rtm_pid; int rtm_seq; int rtm_errno;
    # u_int rtm_inits; struct rt_metrics rtm_rmx;} — 96 bytes; rtm_hdrlen must be set
    body = sin(192, 0, 2, 0) + sdl(32, 3) + sin(255, 255, 255, 0)
    header = (
        struct.pack(
            "<HBBHHHBBiiiiiiI", 96 + len(body), 5, 1, 96, 0, 0, 0, 0, 0x7, 0x801, 0, 0, 1, 0, 0
        )
        + Z * 56
    )
    got = _bsd.route_message(_bsd.OPENBSD, 1, Route(ip_network("192.0.2.0/24")), if_index=3, seq=1)
    assert got == header + body


def test_route_message_netbsd_version_4_with_ifp() -> None:
    # NetBSD net/route.h: RTM_VERSION 4, rt_msghdr 120 bytes (int rtm_inits then 4 bytes of
    # padding before the 64-bit-aligned rt_metrics); sockaddrs rounded to 8; tun-rs's
    # route_manager adds RTA_IFP (0x10) on NetBSD
    body = sin(10, 0, 0, 0) + pad(sdl(20, 5), 8) + sin(255, 255, 255, 0) + pad(sdl(20, 5), 8)
    header = (
        struct.pack("<HBBH2xiiiiiii4x", 120 + len(body), 4, 1, 0, 0x801, 0x17, 0, 3, 0, 0, 0)
        + Z * 80
    )
    got = _bsd.route_message(_bsd.NETBSD, 1, Route(ip_network("10.0.0.0/24")), if_index=5, seq=3)
    assert got == header + body


def test_route_message_gateway_and_host_routes() -> None:
    # via a gateway: RTF_GATEWAY (0x2) and the gateway sockaddr instead of the sockaddr_dl
    route = Route(ip_network("fd01::/48"), IPv6Address("fd00::2"))
    got = _bsd.route_message(_bsd.DARWIN, 1, route, if_index=5, seq=1)
    flags, addrs = struct.unpack_from("<ii", got, 8)
    assert (flags, addrs) == (0x803, 0x7)
    mask48 = bytes.fromhex("ffffffffffff00000000000000000000")
    assert got[92:] == (
        sin6(30, bytes.fromhex("fd010000000000000000000000000000"))
        + sin6(30, bytes.fromhex("fd000000000000000000000000000002"))
        + sin6(30, mask48)
    )
    # a /32: RTF_HOST (0x4) and no netmask
    host = _bsd.route_message(_bsd.DARWIN, 1, Route(ip_network("10.9.9.9/32")), if_index=5, seq=1)
    flags, addrs = struct.unpack_from("<ii", host, 8)
    assert (flags, addrs) == (0x805, 0x3)
    assert host[92:] == sin(10, 9, 9, 9) + sdl(20, 5)


def test_parse_route_dump_with_truncated_netmask() -> None:
    # sysctl NET_RT_DUMP hands netmasks cut to their significant bytes: sa_len 7 for a /16,
    # family byte 0 — the parser must take the family from the destination.
    body = sin(10, 1, 0, 0) + sdl(20, 4) + pad(bytes([7, 0, 0, 0, 255, 255, 0]), 4)
    message = struct.pack("<HBBH2xiiiiiiI", 92 + len(body), 5, 4, 4, 0x801, 0x7, 0, 0, 0, 0, 0)
    message += Z * 56 + body
    other_version = bytearray(message)
    other_version[2] = 4  # an RTM_VERSION the parser must skip
    (entry,) = _bsd.parse_route_messages(_bsd.DARWIN, bytes(other_version) + message)
    assert entry.destination == ip_network("10.1.0.0/16")
    assert entry.gateway is None
    assert entry.index == 4


def test_parse_round_trips_every_flavor() -> None:
    for flavor in (_bsd.DARWIN, _bsd.FREEBSD, _bsd.OPENBSD, _bsd.NETBSD):
        route = Route(ip_network("fd00:1::/64"), IPv6Address("fd00::9"))
        (entry,) = _bsd.parse_route_messages(
            flavor, _bsd.route_message(flavor, 1, route, if_index=2, seq=1)
        )
        assert (entry.destination, entry.gateway) == (route.destination, route.gateway)


def test_sockaddr_in6_scope_id_is_the_last_field() -> None:
    # netinet6/in6.h: … u_int32_t sin6_flowinfo; struct in6_addr sin6_addr; u_int32_t
    # sin6_scope_id;} — flowinfo at 4, scope id at 24
    got = _bsd.sockaddr_in6(_bsd.DARWIN, IPv6Address("fe80::1"), scope_id=5)
    assert got[4:8] == Z * 4
    assert got[24:28] == struct.pack("<I", 5)


def test_parse_route_dump_zero_length_sockaddr_takes_one_unit() -> None:
    # Apple network_cmds netstat.tproj/route.c: ROUNDUP(a) ((a) > 0 ? (1 + (((a) - 1) |
    # (sizeof(uint32_t) - 1))) : sizeof(uint32_t)) — a sockaddr with sa_len 0 still occupies 4
    # bytes (FreeBSD's SA_SIZE: sizeof(long)), so the netmask after an empty gateway is found
    body = sin(10, 1, 0, 0) + Z * 4 + sin(255, 255, 0, 0)
    message = struct.pack("<HBBH2xiiiiiiI", 92 + len(body), 5, 4, 4, 0x801, 0x7, 0, 0, 0, 0, 0)
    (entry,) = _bsd.parse_route_messages(_bsd.DARWIN, message + Z * 56 + body)
    assert entry.destination == ip_network("10.1.0.0/16")
    assert entry.gateway is None


def test_parse_route_dump_host_route_ignores_a_netmask() -> None:
    # net/route.h: RTF_HOST (0x4) — "host entry (net otherwise)": the destination is one
    # address whatever netmask sockaddr comes with it (here an empty one, sa_len 0)
    body = sin(10, 0, 0, 5) + sdl(20, 4) + Z * 4
    message = struct.pack("<HBBH2xiiiiiiI", 92 + len(body), 5, 4, 4, 0x805, 0x7, 0, 0, 0, 0, 0)
    (entry,) = _bsd.parse_route_messages(_bsd.DARWIN, message + Z * 56 + body)
    assert entry.destination == ip_network("10.0.0.5/32")
