"""What macOS, FreeBSD, OpenBSD and NetBSD share: structures, ioctl numbers, routing messages and
the interface configuration built on them.

The four kernels descend from 4.4BSD and configure interfaces the same way — ``struct ifreq``
ioctls on a datagram socket, ``SIOCAIFADDR``/``SIOCAIFADDR_IN6`` for addresses, ``rt_msghdr``
messages on a ``PF_ROUTE`` socket for routes — but sizes, numbers and a few fields differ. A
:class:`Flavor` records those differences, each value next to the header it comes from; every
ioctl number is computed from its ``_IOW``/``_IOWR`` macro with :data:`~tunflow.netconfig.ioctl.BSD`
rather than copied from a table. Layouts are those of the 64-bit ABIs (amd64, arm64); the
backends refuse to run on a 32-bit BSD rather than pass wrongly sized structures.

Everything here goes through a :class:`~tunflow.platform._syscalls.Syscalls`, never ``os`` or
``fcntl`` directly, so the unit tests can check every byte the kernel would see.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_network,
)
from typing import Final

import attrs

from ..errors import (
    ConfigError,
    DeviceBusyError,
    DeviceError,
    DeviceExistsError,
    DeviceNotFoundError,
    UnsupportedError,
)
from ..netconfig.device import DeviceConfig, Layer, check_mtu_keeps_ipv6, check_mtu_takes_ipv6
from ..netconfig.ioctl import BSD
from ._base import OWNER_LINUX_ONLY, Route, mtu_v6_unsupported
from ._build import Additions, add_addresses, add_routes, reject_windows_only
from ._syscalls import IfAddr, Syscalls, oserror_to_device_error, quiet_closer
from ._unix import FdQueue

__all__ = [
    "Flavor",
    "DARWIN",
    "FREEBSD",
    "OPENBSD",
    "NETBSD",
    "BsdInterface",
    "LinkState",
    "IFNAMSIZ",
    "AF_INET",
    "AF_LINK",
    "PF_ROUTE",
    "SOCK_DGRAM",
    "SOCK_RAW",
    "IFF_UP",
    "IFF_RUNNING",
    "RTM_ADD",
    "RTM_DELETE",
    "RTF_UP",
    "RTF_GATEWAY",
    "RTF_HOST",
    "RTF_STATIC",
    "RTA_DST",
    "RTA_GATEWAY",
    "RTA_NETMASK",
    "RTA_IFP",
    "ND6_INFINITE_LIFETIME",
    "O_RDWR",
    "check_lp64",
    "ifreq",
    "ifreq_name",
    "sockaddr_in",
    "sockaddr_in6",
    "sockaddr_dl",
    "parse_sockaddr",
    "ifaliasreq",
    "in6_aliasreq",
    "in6_ifreq",
    "route_message",
    "parse_route_messages",
    "configure",
    "snapshot_for",
    "make_fd_queue",
    "open_node",
    "build_device",
    "adopt_tun_fd",
    "create_interface",
    "destroy_interface",
    "interface_exists",
    "reject_linux_only",
    "close_quietly",
]

log = logging.getLogger("tunflow.platform")

# -- values every BSD and Darwin share --------------------------------------------------------

#: net/if.h: IFNAMSIZ
IFNAMSIZ: Final = 16
#: sys/socket.h: AF_INET, AF_LINK, AF_ROUTE (= PF_ROUTE) — identical on all four
AF_INET: Final = 2
AF_LINK: Final = 18
PF_ROUTE: Final = 17
#: sys/socket.h: SOCK_DGRAM, SOCK_RAW
SOCK_DGRAM: Final = 2
SOCK_RAW: Final = 3
#: sys/fcntl.h: O_RDWR (O_CLOEXEC differs per OS: see Flavor.cloexec)
O_RDWR: Final = 0x2
#: net/if.h: IFF_UP, IFF_RUNNING
IFF_UP: Final = 0x1
IFF_RUNNING: Final = 0x40
#: net/route.h: message types, flags and address bits (identical on all four)
RTM_ADD: Final = 0x1
RTM_DELETE: Final = 0x2
RTM_GET: Final = 0x4
RTF_UP: Final = 0x1
RTF_GATEWAY: Final = 0x2
RTF_HOST: Final = 0x4
RTF_STATIC: Final = 0x800
RTA_DST: Final = 0x1
RTA_GATEWAY: Final = 0x2
RTA_NETMASK: Final = 0x4
RTA_IFP: Final = 0x10
#: sys/sysctl.h: CTL_NET; net/route.h: NET_RT_DUMP
CTL_NET: Final = 4
NET_RT_DUMP: Final = 1
#: netinet6/nd6.h: ND6_INFINITE_LIFETIME
ND6_INFINITE_LIFETIME: Final = 0xFFFFFFFF
#: the ``ifreq`` group letter of sys/sockio.h
_I: Final = ord("i")


@attrs.frozen
class Flavor:
    """The per-OS differences of the BSD interface ABI (64-bit layouts).

    Attributes:
        name: the platform name (``darwin``, ``freebsd``, ``openbsd``, ``netbsd``).
        af_inet6: ``AF_INET6`` — also the value in the 4-byte tun header.
        ifreq_size: ``sizeof(struct ifreq)``.
        ifaliasreq_size: ``sizeof(struct ifaliasreq)`` (FreeBSD appends ``ifra_vhid``).
        aifaddr_nr: the number in ``SIOCAIFADDR = _IOW('i', nr, struct ifaliasreq)``.
        in6_aliasreq_size: ``sizeof(struct in6_aliasreq)``.
        aifaddr_in6_nr: the number in ``SIOCAIFADDR_IN6``.
        in6_ifreq_size: ``sizeof(struct in6_ifreq)``.
        mtu_nrs: the numbers of ``SIOCGIFMTU`` and ``SIOCSIFMTU``.
        ifcreate_nr: the number of ``SIOCIFCREATE``; ``ifcreate_rw`` whether it is ``_IOWR``.
        lladdr_nr: the number of ``SIOCSIFLLADDR`` (``None``: the OS has no such ioctl).
        in6_nodad: ``IN6_IFF_NODAD`` (0 where the OS dropped the flag).
        rtm_version: ``RTM_VERSION``.
        rt_header: the ``struct`` layout of ``rt_msghdr`` (see :func:`route_message`).
        sa_align: the alignment of sockaddrs in routing messages (``ROUNDUP``).
        sdl_size: ``sizeof(struct sockaddr_dl)``.
        route_ifp: add an ``RTA_IFP`` sockaddr to interface routes (NetBSD, as tun-rs does).
        cloexec: ``O_CLOEXEC`` of sys/fcntl.h.
        flagshigh: ``ifreq`` carries the upper 16 interface flags in ``ifr_flagshigh`` after
            ``ifr_flags`` (FreeBSD), which ``SIOCSIFFLAGS`` sets too.
    """

    name: str
    af_inet6: int
    ifreq_size: int
    ifaliasreq_size: int
    aifaddr_nr: int
    in6_aliasreq_size: int
    aifaddr_in6_nr: int
    in6_ifreq_size: int
    mtu_nrs: tuple[int, int]
    ifcreate_nr: int
    ifcreate_rw: bool
    lladdr_nr: int | None
    in6_nodad: int
    rtm_version: int
    rt_header: str
    sa_align: int
    sdl_size: int
    route_ifp: bool
    cloexec: int
    flagshigh: bool = False

    # -- ioctl numbers, each from its macro ---------------------------------------------------

    @property
    def SIOCGIFFLAGS(self) -> int:
        """``_IOWR('i', 17, struct ifreq)`` (sys/sockio.h)."""
        return BSD.iowr(_I, 17, self.ifreq_size)

    @property
    def SIOCSIFFLAGS(self) -> int:
        """``_IOW('i', 16, struct ifreq)``."""
        return BSD.iow(_I, 16, self.ifreq_size)

    @property
    def SIOCGIFMTU(self) -> int:
        """``_IOWR('i', 51 or 126, struct ifreq)``."""
        return BSD.iowr(_I, self.mtu_nrs[0], self.ifreq_size)

    @property
    def SIOCSIFMTU(self) -> int:
        """``_IOW('i', 52 or 127, struct ifreq)``."""
        return BSD.iow(_I, self.mtu_nrs[1], self.ifreq_size)

    @property
    def SIOCAIFADDR(self) -> int:
        """``_IOW('i', 26 or 43, struct ifaliasreq)``."""
        return BSD.iow(_I, self.aifaddr_nr, self.ifaliasreq_size)

    @property
    def SIOCDIFADDR(self) -> int:
        """``_IOW('i', 25, struct ifreq)``."""
        return BSD.iow(_I, 25, self.ifreq_size)

    @property
    def SIOCAIFADDR_IN6(self) -> int:
        """``_IOW('i', 26/27/107, struct in6_aliasreq)`` (netinet6/in6_var.h)."""
        return BSD.iow(_I, self.aifaddr_in6_nr, self.in6_aliasreq_size)

    @property
    def SIOCDIFADDR_IN6(self) -> int:
        """``_IOW('i', 25, struct in6_ifreq)``."""
        return BSD.iow(_I, 25, self.in6_ifreq_size)

    @property
    def SIOCIFCREATE(self) -> int:
        """``_IOWR``/``_IOW('i', 120 or 122, struct ifreq)``."""
        make = BSD.iowr if self.ifcreate_rw else BSD.iow
        return make(_I, self.ifcreate_nr, self.ifreq_size)

    @property
    def SIOCIFDESTROY(self) -> int:
        """``_IOW('i', 121, struct ifreq)``."""
        return BSD.iow(_I, 121, self.ifreq_size)

    @property
    def SIOCSIFLLADDR(self) -> int | None:
        """``_IOW('i', 60 or 31, struct ifreq)``; ``None`` on NetBSD."""
        if self.lladdr_nr is None:
            return None
        return BSD.iow(_I, self.lladdr_nr, self.ifreq_size)

    @property
    def rt_header_size(self) -> int:
        return struct.calcsize(self.rt_header)


# Darwin (apple/darwin-xnu): bsd/sys/sockio.h, bsd/net/if.h, bsd/netinet6/in6_var.h,
# bsd/net/route.h. sizeof(ifreq) 32, ifaliasreq 64, in6_aliasreq 128 (16 + 3*28 + int + pad +
# in6_addrlifetime{time_t,time_t,u32,u32}), in6_ifreq 288 (its union holds icmp6_ifstat, 34
# u_quad_t). rt_msghdr is 92 bytes (rt_metrics of 14 u_int32); sockaddrs in routing messages are
# rounded to 4 bytes (ROUNDUP32 in bsd/net/rtsock.c). sockaddr_dl is 20 bytes.
DARWIN: Final = Flavor(
    name="darwin",
    af_inet6=30,
    ifreq_size=32,
    ifaliasreq_size=64,
    aifaddr_nr=26,
    in6_aliasreq_size=128,
    aifaddr_in6_nr=26,
    in6_ifreq_size=288,
    mtu_nrs=(51, 52),
    ifcreate_nr=120,
    ifcreate_rw=True,
    lladdr_nr=60,
    in6_nodad=0x20,
    rtm_version=5,
    # msglen, version, type, index, pad, flags, addrs, pid, seq, errno, use, inits, rmx[56]
    rt_header="=HBBH2xiiiiiiI56x",
    sa_align=4,
    sdl_size=20,
    route_ifp=False,
    cloexec=0x1000000,
)

# FreeBSD (freebsd-src): sys/sys/sockio.h has SIOCAIFADDR = _IOW('i', 43, struct ifaliasreq)
# since 10.0 (26 is OSIOCAIFADDR), and net/if.h's ifaliasreq ends with int ifra_vhid: 68 bytes.
# netinet6/in6_var.h: SIOCAIFADDR_IN6 = _IOW('i', 27, struct in6_aliasreq) (26 is the old one),
# in6_aliasreq also ends with ifra_vhid: 136 bytes; in6_ifreq 288. net/route.h: rt_msghdr 152
# bytes (u_long inits and 14 u_long metrics); sockaddrs rounded to sizeof(long) (SA_SIZE).
# SIOCIFCREATE = _IOWR('i', 122, struct ifreq). sockaddr_dl has sdl_data[46]: 54 bytes.
# net/if.h: ifru_flags is short[2] — ifr_flags, then ifr_flagshigh — and SIOCSIFFLAGS (net/if.c
# ifhwioctl) sets new_flags = (ifr_flags & 0xffff) | (ifr_flagshigh << 16).
FREEBSD: Final = Flavor(
    name="freebsd",
    af_inet6=28,
    ifreq_size=32,
    ifaliasreq_size=68,
    aifaddr_nr=43,
    in6_aliasreq_size=136,
    aifaddr_in6_nr=27,
    in6_ifreq_size=288,
    mtu_nrs=(51, 52),
    ifcreate_nr=122,
    ifcreate_rw=True,
    lladdr_nr=60,
    in6_nodad=0x20,
    rtm_version=5,
    # msglen, version, type, index, spare, flags, addrs, pid, seq, errno, fmask, inits, rmx[112]
    rt_header="=HBBHHiiiiiiQ112x",
    sa_align=8,
    sdl_size=54,
    route_ifp=False,
    cloexec=0x100000,
    flagshigh=True,
)

# OpenBSD (openbsd/src): sys/sys/sockio.h has SIOCGIFMTU/SIOCSIFMTU = 126/127 and
# SIOCSIFLLADDR = _IOW('i', 31, struct ifreq); SIOCIFCREATE = _IOW('i', 122, struct ifreq).
# netinet6/in6_var.h (rev. 1.81, 2025): SIOCAIFADDR_IN6 = _IOW('i', 26, struct in6_aliasreq)
# (128 bytes) and no IN6_IFF_NODAD any more. net/route.h: rt_msghdr 96 bytes with rtm_hdrlen,
# which the kernel checks; sockaddrs rounded to sizeof(long). sockaddr_dl is 32 bytes.
OPENBSD: Final = Flavor(
    name="openbsd",
    af_inet6=24,
    ifreq_size=32,
    ifaliasreq_size=64,
    aifaddr_nr=26,
    in6_aliasreq_size=128,
    aifaddr_in6_nr=26,
    in6_ifreq_size=288,
    mtu_nrs=(126, 127),
    ifcreate_nr=122,
    ifcreate_rw=False,
    lladdr_nr=31,
    in6_nodad=0,
    rtm_version=5,
    # msglen, version, type, hdrlen, index, tableid, priority, mpls, addrs, flags, fmask, pid,
    # seq, errno, inits, rmx[56]
    rt_header="=HBBHHHBBiiiiiiI56x",
    sa_align=8,
    sdl_size=32,
    route_ifp=False,
    cloexec=0x10000,
)

# NetBSD (NetBSD/src): net/if.h's ifreq union holds a sockaddr_storage, so sizeof(ifreq) is 144
# and every ifreq ioctl number differs from the other BSDs'. netinet6/in6_var.h:
# SIOCAIFADDR_IN6 = _IOW('i', 107, struct in6_aliasreq) (128 bytes; 26 was the old one).
# MTU ioctls are 126/127; there is no SIOCSIFLLADDR (link addresses go through SIOCALIFADDR).
# net/route.h: RTM_VERSION 4, rt_msghdr 120 bytes (64-bit aligned metrics); sockaddrs rounded to
# 8 bytes. sockaddr_dl is 20 bytes.
NETBSD: Final = Flavor(
    name="netbsd",
    af_inet6=24,
    ifreq_size=144,
    ifaliasreq_size=64,
    aifaddr_nr=26,
    in6_aliasreq_size=128,
    aifaddr_in6_nr=107,
    in6_ifreq_size=288,
    mtu_nrs=(126, 127),
    ifcreate_nr=122,
    ifcreate_rw=False,
    lladdr_nr=None,
    in6_nodad=0x20,
    rtm_version=4,
    # msglen, version, type, index, pad, flags, addrs, pid, seq, errno, use, inits, pad, rmx[80]
    rt_header="=HBBH2xiiiiiii4x80x",
    sa_align=8,
    sdl_size=20,
    route_ifp=True,
    cloexec=0x400000,
)


def check_lp64(platform: str) -> None:
    """Refuse to run on a 32-bit ABI: the layouts above are the 64-bit ones."""
    if struct.calcsize("P") != 8:
        raise UnsupportedError(
            f"tunflow's {platform} backend knows the 64-bit structure layouts only"
        )


# -- structures ---------------------------------------------------------------------------------

_SIN = struct.Struct("=BBH4s8x")  # netinet/in.h: struct sockaddr_in (16 bytes, with sin_len)
_SIN6 = struct.Struct("=BBHI16sI")  # netinet6/in6.h: struct sockaddr_in6 (28 bytes)
_SDL = struct.Struct("=BBHBBBB")  # net/if_dl.h: sockaddr_dl up to sdl_slen; sdl_data follows
_LIFETIME = struct.Struct("=qqII")  # netinet6/in6_var.h: struct in6_addrlifetime (LP64)


def ifreq_name(name: str) -> bytes:
    """``ifr_name``: the name NUL-padded to :data:`IFNAMSIZ` bytes."""
    raw = name.encode()
    if len(raw) >= IFNAMSIZ:
        raise ConfigError(f"interface name {name!r} is longer than {IFNAMSIZ - 1} bytes")
    return raw.ljust(IFNAMSIZ, b"\0")


def ifreq(flavor: Flavor, name: str, payload: bytes = b"") -> bytes:
    """``struct ifreq``: name then the union (``payload`` zero-padded to the union's size)."""
    union = flavor.ifreq_size - IFNAMSIZ
    if len(payload) > union:
        raise ValueError("ifreq payload larger than the union")
    return ifreq_name(name) + payload.ljust(union, b"\0")


def sockaddr_in(address: IPv4Address | int) -> bytes:
    """``struct sockaddr_in`` with ``sin_len`` = 16."""
    return _SIN.pack(_SIN.size, AF_INET, 0, IPv4Address(address).packed)


def sockaddr_in6(flavor: Flavor, address: IPv6Address | int, scope_id: int = 0) -> bytes:
    """``struct sockaddr_in6`` with ``sin6_len`` = 28 and the OS's ``AF_INET6``."""
    return _SIN6.pack(_SIN6.size, flavor.af_inet6, 0, 0, IPv6Address(address).packed, scope_id)


def sockaddr_for(flavor: Flavor, address: IPv4Address | IPv6Address) -> bytes:
    if isinstance(address, IPv4Address):
        return sockaddr_in(address)
    return sockaddr_in6(flavor, address)


def sockaddr_dl(flavor: Flavor, index: int) -> bytes:
    """A ``struct sockaddr_dl`` naming interface ``index`` only (an "interface route")."""
    return _SDL.pack(flavor.sdl_size, AF_LINK, index, 0, 0, 0, 0).ljust(flavor.sdl_size, b"\0")


def parse_sockaddr(
    flavor: Flavor, raw: bytes | None, *, family: int | None = None
) -> IPv4Address | IPv6Address | bytes | None:
    """An address from a BSD sockaddr: IPv4/IPv6, the link-layer address bytes (``AF_LINK``),
    or ``None``. ``family`` overrides ``sa_family`` — netmasks in routing messages are often
    truncated to their significant bytes and carry no usable family."""
    if not raw or len(raw) < 2:
        return None
    fam = raw[1] if family is None else family
    if fam == AF_INET:
        body = raw[4:8].ljust(4, b"\0")
        return IPv4Address(body)
    if fam == flavor.af_inet6:
        addr6 = bytearray(raw[8:24].ljust(16, b"\0"))
        if _scope_embedded(addr6):
            # KAME: the kernel keeps the zone (interface index) of a link-local or
            # interface-/link-local multicast address in bytes 2-3 of the address, and Darwin,
            # OpenBSD and NetBSD hand it out so in getifaddrs(3) and routing messages (their
            # ifconfig and netstat clear it: in6_fillscopeid). It is not part of the address.
            addr6[2:4] = b"\0\0"
        return IPv6Address(bytes(addr6))
    if fam == AF_LINK and len(raw) >= 8:
        nlen, alen = raw[5], raw[6]
        return raw[8 + nlen : 8 + nlen + alen]
    return None


def _scope_embedded(addr: bytes | bytearray) -> bool:
    """KAME's IN6_IS_SCOPE_EMBED: fe80::/10, or a multicast of scope 1 or 2 (ff01::, ff02::)."""
    if addr[0] == 0xFE and addr[1] & 0xC0 == 0x80:
        return True
    return addr[0] == 0xFF and addr[1] & 0x0F in (1, 2)


def ifaliasreq(
    flavor: Flavor, name: str, address: IPv4Interface, destination: IPv4Address
) -> bytes:
    """``struct ifaliasreq`` for ``SIOCAIFADDR``: address, broadcast/peer, netmask (+ vhid 0)."""
    body = (
        ifreq_name(name)
        + sockaddr_in(address.ip)
        + sockaddr_in(destination)
        + sockaddr_in(address.netmask)
    )
    return body.ljust(flavor.ifaliasreq_size, b"\0")


def in6_aliasreq(flavor: Flavor, name: str, address: IPv6Interface) -> bytes:
    """``struct in6_aliasreq`` for ``SIOCAIFADDR_IN6``: address, no destination, prefix mask,
    ``IN6_IFF_NODAD`` (where the OS has it) and infinite lifetimes, as tun-rs and ifconfig set
    them. FreeBSD's trailing ``ifra_vhid`` stays 0."""
    body = (
        ifreq_name(name)
        + sockaddr_in6(flavor, address.ip)
        + bytes(_SIN6.size)  # ifra_dstaddr: none
        + sockaddr_in6(flavor, address.netmask)
        + struct.pack("=i", flavor.in6_nodad)  # ifra_flags ends at 104: time_t-aligned already
        + _LIFETIME.pack(0, 0, ND6_INFINITE_LIFETIME, ND6_INFINITE_LIFETIME)
    )
    if len(body) > flavor.in6_aliasreq_size:
        raise AssertionError("in6_aliasreq larger than the OS's struct")
    return body.ljust(flavor.in6_aliasreq_size, b"\0")


def in6_ifreq(flavor: Flavor, name: str, address: IPv6Address) -> bytes:
    """``struct in6_ifreq`` with ``ifr_addr`` set, for ``SIOCDIFADDR_IN6``."""
    body = ifreq_name(name) + sockaddr_in6(flavor, address)
    return body.ljust(flavor.in6_ifreq_size, b"\0")


# -- routing messages ---------------------------------------------------------------------------


def _roundup(length: int, align: int) -> int:
    # ROUNDUP()/SA_SIZE(): a zero-length sockaddr still takes one alignment unit
    if length == 0:
        return align
    return 1 + ((length - 1) | (align - 1))


def _pad(sa: bytes, align: int) -> bytes:
    return sa.ljust(_roundup(len(sa), align), b"\0")


def route_message(
    flavor: Flavor,
    rtm_type: int,
    route: Route,
    *,
    if_index: int,
    seq: int,
) -> bytes:
    """An ``RTM_ADD``/``RTM_DELETE`` message for ``route`` through interface ``if_index``.

    Without a gateway the route is an interface route (``route add -net … -interface``): the
    gateway is a ``sockaddr_dl`` naming the interface. A /32 or /128 gets ``RTF_HOST`` and no
    netmask. NetBSD also gets ``RTA_IFP`` (as tun-rs's route_manager sends it).
    """
    dest = route.destination
    host = dest.prefixlen == dest.max_prefixlen
    flags = RTF_UP | RTF_STATIC
    addrs = RTA_DST | RTA_GATEWAY
    body = [_pad(sockaddr_for(flavor, dest.network_address), flavor.sa_align)]
    if route.gateway is not None:
        flags |= RTF_GATEWAY
        body.append(_pad(sockaddr_for(flavor, route.gateway), flavor.sa_align))
    else:
        body.append(_pad(sockaddr_dl(flavor, if_index), flavor.sa_align))
    if host:
        flags |= RTF_HOST
    else:
        addrs |= RTA_NETMASK
        body.append(_pad(sockaddr_for(flavor, dest.netmask), flavor.sa_align))
    if flavor.route_ifp:
        addrs |= RTA_IFP
        body.append(_pad(sockaddr_dl(flavor, if_index), flavor.sa_align))
    payload = b"".join(body)
    size = flavor.rt_header_size + len(payload)
    if flavor.name == "openbsd":
        header = struct.pack(
            flavor.rt_header,
            size,
            flavor.rtm_version,
            rtm_type,
            flavor.rt_header_size,  # rtm_hdrlen: OpenBSD rejects messages without it
            0,  # rtm_index
            0,  # rtm_tableid: the default table
            0,  # rtm_priority: the kernel picks the static priority
            0,  # rtm_mpls
            addrs,
            flags,
            0,  # rtm_fmask
            0,  # rtm_pid: filled by the kernel
            seq,
            0,  # rtm_errno
            0,  # rtm_inits
        )
    elif flavor.name == "freebsd":
        header = struct.pack(
            flavor.rt_header, size, flavor.rtm_version, rtm_type, 0, 0, flags, addrs, 0, seq, 0,
            0, 0,
        )  # fmt: skip
    else:  # darwin, netbsd: msglen version type index flags addrs pid seq errno use inits
        header = struct.pack(
            flavor.rt_header, size, flavor.rtm_version, rtm_type, 0, flags, addrs, 0, seq, 0, 0, 0
        )
    return header + payload


@attrs.frozen
class RouteEntry:
    """One route parsed from a routing-socket dump."""

    rtm_type: int
    flags: int
    index: int
    errno: int
    destination: IPv4Network | IPv6Network
    gateway: IPv4Address | IPv6Address | None


def _header_fields(flavor: Flavor, data: bytes) -> tuple[int, int, int, int, int, int, int]:
    """(msglen, version, type, index, flags, addrs, errno) of the header at ``data``'s start."""
    values = struct.unpack_from(flavor.rt_header, data)
    if flavor.name == "openbsd":
        msglen, version, rtm_type, _hdrlen, index, _t, _p, _m, addrs, flags, _f, _pid, _s, err = (
            values[:14]
        )
        return msglen, version, rtm_type, index, flags, addrs, err
    if flavor.name == "freebsd":
        msglen, version, rtm_type, index, _spare, flags, addrs, _pid, _seq, err = values[:10]
        return msglen, version, rtm_type, index, flags, addrs, err
    msglen, version, rtm_type, index, flags, addrs, _pid, _seq, err = values[:9]
    return msglen, version, rtm_type, index, flags, addrs, err


def parse_route_messages(flavor: Flavor, data: bytes) -> list[RouteEntry]:
    """Parse a ``sysctl(NET_RT_DUMP)`` buffer (or a routing-socket reply) into routes.

    Messages of another ``RTM_VERSION``, without a destination, or whose destination is neither
    IPv4 nor IPv6 are skipped. Netmasks may be truncated to their significant bytes (the kernel
    does that in dumps); the destination's family is used for them.
    """
    out: list[RouteEntry] = []
    offset = 0
    hsize = flavor.rt_header_size
    while offset + hsize <= len(data):
        msglen, version, rtm_type, index, flags, addrs, err = _header_fields(flavor, data[offset:])
        if msglen == 0:
            break
        message = data[offset : offset + msglen]
        offset += msglen
        if version != flavor.rtm_version or not addrs & RTA_DST:
            continue
        sockaddrs: dict[int, bytes] = {}
        pos = hsize
        for bit in range(8):
            if not addrs & (1 << bit):
                continue
            if pos >= len(message):
                break
            sa_len = message[pos]
            sockaddrs[1 << bit] = message[pos : pos + max(sa_len, 2)]
            pos += _roundup(sa_len, flavor.sa_align)
        dst = parse_sockaddr(flavor, sockaddrs.get(RTA_DST))
        if not isinstance(dst, IPv4Address | IPv6Address):
            continue
        family = AF_INET if isinstance(dst, IPv4Address) else flavor.af_inet6
        prefix: int = dst.max_prefixlen
        if addrs & RTA_NETMASK and not flags & RTF_HOST:
            mask = parse_sockaddr(flavor, sockaddrs.get(RTA_NETMASK), family=family)
            if isinstance(mask, IPv4Address | IPv6Address):
                prefix = bin(int(mask)).count("1")
        gateway = None
        if addrs & RTA_GATEWAY:
            gw = parse_sockaddr(flavor, sockaddrs.get(RTA_GATEWAY))
            if isinstance(gw, IPv4Address | IPv6Address):
                gateway = gw
        try:
            network = ip_network((dst, prefix), strict=False)
        except ValueError:
            continue
        out.append(RouteEntry(rtm_type, flags, index, err, network, gateway))
    return out


# -- configuration of one interface -------------------------------------------------------------

_seq_lock = threading.Lock()
_seq = 0


def _next_seq() -> int:
    global _seq
    with _seq_lock:
        _seq = (_seq + 1) & 0x7FFFFFFF
        return _seq


@attrs.frozen
class LinkState:
    """What :meth:`BsdInterface.snapshot` read of interface ``name``: its MTU, MAC and whether it
    was up (``None``: not read, the build does not change it)."""

    name: str
    mtu: int | None = None
    mac: bytes | None = None
    up: bool | None = None


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    """Log a failure to ``what`` instead of raising it (another error is on its way)."""
    try:
        yield
    except Exception as exc:
        log.warning("could not %s: %s", what, exc)


_NO_INTERFACE_DNS = (
    "interface DNS servers are Windows only: configure the resolver (resolvconf; scutil on "
    "macOS) instead"
)


class BsdInterface:
    """Configuration of one macOS/BSD interface through ``ifreq`` ioctls and ``PF_ROUTE``.

    Args:
        syscalls: the system-call layer.
        flavor: the OS's ABI differences.
        name: the interface name.
        layer: TUN (L3) or TAP (L2).
        associate_route: add (and remove) the subnet route of every address, as tun-rs does
            (TUN only; a TAP's kernel adds it).
        cleanups: called in reverse order by :meth:`close` (destroy the interface…).
    """

    def __init__(
        self,
        *,
        syscalls: Syscalls,
        flavor: Flavor,
        name: str,
        layer: Layer,
        associate_route: bool = True,
        cleanups: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.sys = syscalls
        self.flavor = flavor
        self._name = name
        self.layer = layer
        self.associate_route = associate_route and layer is Layer.L3
        self._cleanups = list(cleanups)
        self._lock = threading.Lock()
        self._closed = False
        #: what :meth:`close` calls to destroy the device unless it is kept (``keep``); ``None``
        #: when the kernel destroys the interface with its fd (a utun, NetBSD's cloned tap)
        self.destroy: list[Callable[[], None]] | None = [
            lambda: destroy_interface(self.sys, self.flavor, self.name())
        ]
        #: keep the device after close: ``persist``, or one attached to (:meth:`set_persist`)
        self.keep = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name} ({self.flavor.name})>"

    # -- plumbing -------------------------------------------------------------------------------

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    @contextlib.contextmanager
    def op(self, what: str) -> Iterator[None]:
        """Map :class:`OSError` to the :mod:`tunflow.errors` tree, naming the interface."""
        try:
            yield
        except (ConfigError, DeviceError, UnsupportedError):
            raise
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise DeviceNotFoundError(
                    exc.errno, f"{what}: interface {self._name} is gone"
                ) from exc
            raise oserror_to_device_error(exc, f"{what} on {self._name}") from exc

    @contextlib.contextmanager
    def control_socket(self, family: int = AF_INET) -> Iterator[int]:
        """A datagram socket for interface ioctls, closed afterwards (as ``ifconfig`` does)."""
        fd = self.sys.socket(family, SOCK_DGRAM, 0)
        try:
            yield fd
        finally:
            close_quietly(self.sys, fd)

    def ioctl_ifreq(self, request: int, payload: bytes = b"", *, name: str | None = None) -> bytes:
        with self.control_socket() as fd:
            out = self.sys.ioctl(fd, request, ifreq(self.flavor, name or self._name, payload))
        assert isinstance(out, bytes)
        return out

    # -- identity -------------------------------------------------------------------------------

    def name(self) -> str:
        return self._name

    def set_name(self, name: str) -> None:
        raise UnsupportedError(f"{self.flavor.name} cannot rename a tun/tap interface")

    def if_index(self) -> int:
        with self.op("look up the interface index"):
            return self.sys.if_nametoindex(self._name)

    def open_queue(self) -> object:
        raise UnsupportedError(
            f"multi-queue devices are Linux only; {self.flavor.name} has one queue per device"
        )

    # -- MTU, flags -----------------------------------------------------------------------------

    def mtu(self) -> int:
        with self.op("get MTU"):
            return self._mtu_of(self._name)

    def _mtu_of(self, name: str) -> int:
        out = self.ioctl_ifreq(self.flavor.SIOCGIFMTU, name=name)
        return int(struct.unpack_from("=i", out, IFNAMSIZ)[0])

    def set_mtu(self, mtu: int) -> None:
        with self.op(f"set MTU {mtu}"):
            check_mtu_keeps_ipv6(mtu, self.addresses, "; remove them first")
            self.ioctl_ifreq(self.flavor.SIOCSIFMTU, struct.pack("=i", mtu))

    def flags(self, name: str | None = None) -> int:
        out = self.ioctl_ifreq(self.flavor.SIOCGIFFLAGS, name=name)
        low, high = struct.unpack_from("=HH", out, IFNAMSIZ)
        return int(low | (high << 16 if self.flavor.flagshigh else 0))

    def set_up(self, up: bool, name: str | None = None) -> None:
        flags = self.flags(name)
        flags = flags | IFF_UP | IFF_RUNNING if up else flags & ~IFF_UP
        # ifr_flags, and on FreeBSD ifr_flagshigh: the kernel takes both, so the upper flags
        # (IFF_PPROMISC, IFF_MONITOR, IFF_STATICARP…) must be handed back as they were read.
        high = flags >> 16 & 0xFFFF if self.flavor.flagshigh else 0
        payload = struct.pack("=HH", flags & 0xFFFF, high)
        self.ioctl_ifreq(self.flavor.SIOCSIFFLAGS, payload, name=name)

    def set_enabled(self, up: bool) -> None:
        with self.op("bring up" if up else "bring down"):
            self.set_up(up)

    def is_running(self) -> bool:
        with self.op("get flags"):
            flags = self.flags()
        return bool(flags & IFF_UP) and bool(flags & IFF_RUNNING)

    def broadcast(self) -> IPv4Address | None:
        raise UnsupportedError("the broadcast address (SIOCGIFBRDADDR) is Linux only")

    def set_broadcast(self, address: IPv4Address) -> None:
        raise UnsupportedError("the broadcast address (SIOCSIFBRDADDR) is Linux only")

    def tx_queue_len(self) -> int:
        raise UnsupportedError("the transmit queue length is Linux only")

    def set_tx_queue_len(self, length: int) -> None:
        raise UnsupportedError("the transmit queue length is Linux only")

    def set_persist(self, fd: int, persist: bool) -> None:
        """Whether :meth:`close` keeps the device (``persist``) or destroys it (``SIOCIFDESTROY``)."""
        with self._lock:
            if self.destroy is None and persist:
                raise UnsupportedError(
                    f"the kernel destroys {self._name} with its fd (a utun, NetBSD's cloned "
                    "tap): it cannot be kept"
                )
            if self.destroy is not None:
                self.keep = persist

    def set_owner(self, fd: int, uid: int) -> None:
        raise UnsupportedError(OWNER_LINUX_ONLY)

    def set_group(self, fd: int, gid: int) -> None:
        raise UnsupportedError(OWNER_LINUX_ONLY)

    def mtu_v6(self) -> int:
        raise mtu_v6_unsupported()

    def set_mtu_v6(self, mtu: int) -> None:
        raise mtu_v6_unsupported()

    def set_metric(self, metric: int) -> None:
        raise UnsupportedError(f"the interface metric is Windows only, not {self.flavor.name}")

    def if_luid(self) -> int:
        raise UnsupportedError("the interface LUID (NET_LUID) is Windows only")

    def version(self) -> str:
        raise UnsupportedError("the driver version is Windows only (Wintun, tap-windows6)")

    def set_dns_servers(self, servers: tuple[IPv4Address | IPv6Address, ...]) -> None:
        raise UnsupportedError(_NO_INTERFACE_DNS)

    def clear_dns_servers(self, versions: tuple[int, ...]) -> None:
        raise UnsupportedError(_NO_INTERFACE_DNS)

    # -- addresses ------------------------------------------------------------------------------

    def _ifaddrs(self) -> list[IfAddr]:
        return [a for a in self.sys.getifaddrs() if a.name == self._name]

    def addresses(self) -> list[IPv4Interface | IPv6Interface]:
        with self.op("list addresses"):
            entries = self._ifaddrs()
        out: list[IPv4Interface | IPv6Interface] = []
        for entry in entries:
            addr = parse_sockaddr(self.flavor, entry.addr)
            if isinstance(addr, IPv4Address):
                mask = parse_sockaddr(self.flavor, entry.netmask, family=AF_INET)
                plen = bin(int(mask)).count("1") if isinstance(mask, IPv4Address) else 32
                out.append(IPv4Interface((addr, plen)))
            elif isinstance(addr, IPv6Address):
                mask = parse_sockaddr(self.flavor, entry.netmask, family=self.flavor.af_inet6)
                plen = bin(int(mask)).count("1") if isinstance(mask, IPv6Address) else 128
                out.append(IPv6Interface((addr, plen)))
        return out

    def add_address(
        self, iface: IPv4Interface | IPv6Interface, peer: IPv4Address | None = None
    ) -> None:
        with self.op(f"add address {iface}"):
            if isinstance(iface, IPv4Interface):
                # The second sockaddr is the broadcast address (or the point-to-point peer);
                # tun-rs and ifconfig default it to the subnet broadcast address.
                dest = peer if peer is not None else iface.network.broadcast_address
                with self.control_socket() as fd:
                    self.sys.ioctl(
                        fd,
                        self.flavor.SIOCAIFADDR,
                        ifaliasreq(self.flavor, self._name, iface, dest),
                    )
            else:
                check_mtu_takes_ipv6(iface, self.mtu())
                with self.control_socket(self.flavor.af_inet6) as fd:
                    self.sys.ioctl(
                        fd,
                        self.flavor.SIOCAIFADDR_IN6,
                        in6_aliasreq(self.flavor, self._name, iface),
                    )
            if self.associate_route:
                try:
                    self._route(RTM_ADD, Route(iface.network), tolerate=(errno.EEXIST,))
                except BaseException:
                    with contextlib.suppress(OSError):
                        self._delete_address(iface.ip)
                    raise

    def _delete_address(self, address: IPv4Address | IPv6Address) -> None:
        if isinstance(address, IPv4Address):
            with self.control_socket() as fd:
                self.sys.ioctl(
                    fd,
                    self.flavor.SIOCDIFADDR,
                    ifreq(self.flavor, self._name, sockaddr_in(address)),
                )
        else:
            with self.control_socket(self.flavor.af_inet6) as fd:
                self.sys.ioctl(
                    fd, self.flavor.SIOCDIFADDR_IN6, in6_ifreq(self.flavor, self._name, address)
                )

    def remove_address(self, address: IPv4Address | IPv6Address) -> None:
        with self.op(f"remove address {address}"):
            addresses = self.addresses()
            network = next((a.network for a in addresses if a.ip == address), None)
            if network is None:
                raise DeviceNotFoundError(
                    errno.EADDRNOTAVAIL, f"{self._name} has no address {address}"
                )
            self._delete_address(address)
            shared = any(a.network == network and a.ip != address for a in addresses)
            if self.associate_route and not shared:
                self._route(RTM_DELETE, Route(network), tolerate=(errno.ESRCH,))

    def set_associate_route(self, on: bool) -> None:
        """Turn :attr:`associate_route` on or off, and make the routes follow: on, the subnet
        route of every address (IPv6 link-local ones aside: the kernel routes those itself) is
        added; off, removed. A route that already exists (on) or is already gone (off) is left
        as it is. When a route is refused, those this call changed are put back and the
        setting stays as it was.

        Raises:
            UnsupportedError: ``on`` for a TAP, whose kernel adds the subnet route itself.
        """
        if self.layer is not Layer.L3:
            if on:
                raise UnsupportedError(
                    f"{self._name} is a TAP: its kernel adds the subnet route of each address"
                )
            return
        if on == self.associate_route:
            return
        rtm, undo, quiet = (
            (RTM_ADD, RTM_DELETE, errno.EEXIST) if on else (RTM_DELETE, RTM_ADD, errno.ESRCH)
        )
        with self.op("add the subnet routes" if on else "remove the subnet routes"):
            networks = list(
                dict.fromkeys(
                    a.network
                    for a in self.addresses()
                    if not (isinstance(a, IPv6Interface) and a.ip.is_link_local)
                )
            )
            changed: list[Route] = []
            try:
                for network in networks:
                    route = Route(network)
                    try:
                        self._route(rtm, route)
                    except OSError as exc:
                        if exc.errno != quiet:
                            raise
                    else:
                        changed.append(route)
            except BaseException:
                for route in reversed(changed):
                    with _logged(f"put back the route to {route.destination}"):
                        self._route(undo, route)
                raise
            self.associate_route = on

    # -- routes ---------------------------------------------------------------------------------

    def _route(self, rtm_type: int, route: Route, *, tolerate: tuple[int, ...] = ()) -> None:
        index = self.sys.if_nametoindex(self._name)
        message = route_message(self.flavor, rtm_type, route, if_index=index, seq=_next_seq())
        fd = self.sys.socket(PF_ROUTE, SOCK_RAW, 0)
        try:
            self.sys.write(fd, message)
        except OSError as exc:
            if exc.errno not in tolerate:
                raise
        finally:
            close_quietly(self.sys, fd)

    def routes(self) -> list[Route]:
        with self.op("list routes"):
            index = self.sys.if_nametoindex(self._name)
            dump = self.sys.sysctl([CTL_NET, PF_ROUTE, 0, 0, NET_RT_DUMP, 0])
        own = {a.ip for a in self.addresses()}
        routes: list[Route] = []
        for entry in parse_route_messages(self.flavor, dump):
            if entry.index != index:
                continue
            if entry.flags & RTF_HOST and entry.destination.network_address in own:
                continue  # the kernel's route to our own address
            routes.append(Route(entry.destination, entry.gateway))
        return routes

    def add_route(self, route: Route) -> None:
        with self.op(f"add route {route.destination}"):
            try:
                self._route(RTM_ADD, route)
            except OSError as exc:
                if exc.errno == errno.EEXIST:
                    raise DeviceExistsError(
                        exc.errno, f"a route to {route.destination} already exists"
                    ) from exc
                raise

    def remove_route(self, route: Route) -> None:
        with self.op(f"remove route {route.destination}"):
            try:
                self._route(RTM_DELETE, route)
            except OSError as exc:
                if exc.errno == errno.ESRCH:
                    raise DeviceNotFoundError(
                        exc.errno, f"no route to {route.destination} through {self._name}"
                    ) from exc
                raise

    # -- MAC ------------------------------------------------------------------------------------

    def mac_address(self) -> bytes:
        if self.layer is not Layer.L2:
            raise UnsupportedError("a TUN (layer 3) device has no MAC address")
        with self.op("get MAC"):
            return self._mac_of(self._name)

    def _mac_of(self, name: str) -> bytes:
        for entry in self.sys.getifaddrs():
            if (
                entry.name == name
                and entry.addr
                and len(entry.addr) > 1
                and entry.addr[1] == AF_LINK
            ):
                mac = parse_sockaddr(self.flavor, entry.addr)
                if isinstance(mac, bytes) and len(mac) == 6:
                    return mac
        return bytes(6)

    def set_mac_address(self, mac: bytes, *, name: str | None = None) -> None:
        if self.layer is not Layer.L2:
            raise UnsupportedError("a TUN (layer 3) device has no MAC address")
        request = self.flavor.SIOCSIFLLADDR
        if request is None:
            raise UnsupportedError(f"{self.flavor.name} has no SIOCSIFLLADDR to set a MAC address")
        # sys/sockio.h SIOCSIFLLADDR takes ifr_addr with sa_len = ETHER_ADDR_LEN and
        # sa_family = AF_LINK (what ifconfig's setifllladdr sends).
        payload = struct.pack("=BB14s", 6, AF_LINK, mac)
        with self.op("set MAC"):
            self.ioctl_ifreq(request, payload, name=name)

    def _put_back_mac(self, mac: bytes, current: bytes, name: str) -> None:
        """Make ``mac`` the MAC of ``name`` again in place of ``current`` (the build's)."""
        self.set_mac_address(mac, name=name)

    # -- a failed build on an interface it did not create --------------------------------------

    def snapshot(self, *, mtu: bool, mac: bool, up: bool, name: str | None = None) -> LinkState:
        """The settings of interface ``name`` (this one by default) a build is about to change:
        its MTU, MAC (of a TAP) and up/down state, each only when asked — for :meth:`restore`."""
        name = name or self._name
        with self.op(f"read the settings of {name}"):
            return LinkState(
                name,
                self._mtu_of(name) if mtu else None,
                self._mac_of(name) if mac and self.layer is Layer.L2 else None,
                bool(self.flags(name) & IFF_UP) if up else None,
            )

    def restore(self, state: LinkState) -> None:
        """Put back what :meth:`snapshot` read, each setting on its own: one that cannot be put
        back is logged and the others are still tried (this runs while a build's error is on its
        way to the caller)."""
        name = state.name
        if state.mac is not None:
            with _logged(f"put back the MAC address of {name}"):
                current = self._mac_of(name)
                if current != state.mac:
                    self._put_back_mac(state.mac, current, name)
        if state.mtu is not None:
            with _logged(f"put back the MTU {state.mtu} of {name}"):
                if self._mtu_of(name) != state.mtu:
                    self.ioctl_ifreq(
                        self.flavor.SIOCSIFMTU, struct.pack("=i", state.mtu), name=name
                    )
        if state.up is not None:
            with _logged(f"bring {name} {'up' if state.up else 'down'} again"):
                if bool(self.flags(name) & IFF_UP) != state.up:
                    self.set_up(state.up, name=name)

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            cleanups, self._cleanups = self._cleanups, []
            if not self.keep and self.destroy is not None:
                cleanups += self.destroy
        errors: list[BaseException] = []
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception as exc:
                errors.append(exc)
        if errors:
            first = errors[0]
            if isinstance(first, OSError) and not isinstance(first, DeviceError):
                raise oserror_to_device_error(first, f"close {self._name}") from first
            raise first


def close_quietly(syscalls: Syscalls, fd: int) -> None:
    """Close a control or routing socket. Its close cannot lose data, and the fd is released
    whatever close(2) answers, so an error there must not fail (or undo) the operation."""
    with contextlib.suppress(OSError):
        syscalls.close(fd)


def destroy_interface(syscalls: Syscalls, flavor: Flavor, name: str) -> None:
    """``SIOCIFDESTROY`` ``name``; an interface already gone (``ENXIO``) is fine."""
    fd = syscalls.socket(AF_INET, SOCK_DGRAM, 0)
    try:
        syscalls.ioctl(fd, flavor.SIOCIFDESTROY, ifreq(flavor, name))
    except OSError as exc:
        if exc.errno not in (errno.ENXIO, errno.EINVAL, errno.ENODEV):
            raise
    finally:
        close_quietly(syscalls, fd)


def create_interface(syscalls: Syscalls, flavor: Flavor, name: str, fd: int | None = None) -> str:
    """``SIOCIFCREATE`` ``name`` (a cloner like ``feth`` gets the next unit); the name the kernel
    gave, for the ``_IOWR`` flavours, else ``name``."""
    own = fd is None
    sock = syscalls.socket(AF_INET, SOCK_DGRAM, 0) if fd is None else fd
    try:
        out = syscalls.ioctl(sock, flavor.SIOCIFCREATE, ifreq(flavor, name))
    finally:
        if own:
            close_quietly(syscalls, sock)
    if flavor.ifcreate_rw and isinstance(out, bytes):
        got = out[:IFNAMSIZ].split(b"\0", 1)[0].decode()
        return got or name
    return name


def interface_exists(syscalls: Syscalls, name: str) -> bool:
    try:
        syscalls.if_nametoindex(name)
    except OSError:
        return False
    return True


# -- the build sequence shared by every backend ------------------------------------------------


def reject_linux_only(config: DeviceConfig, platform: str) -> None:
    """Refuse, before any system call, options this platform does not have."""
    if config.multi_queue:
        raise UnsupportedError(f"multi-queue devices are Linux only, not {platform}")
    if config.offload:
        raise UnsupportedError(f"TUN offload (virtio-net header) is Linux only, not {platform}")
    if config.tx_queue_len is not None:
        raise UnsupportedError(f"the transmit queue length is Linux only, not {platform}")
    if config.owner is not None or config.group is not None:
        raise UnsupportedError(f"device owner/group (TUNSETOWNER) is Linux only, not {platform}")
    if config.netns is not None:
        raise UnsupportedError(f"network namespaces are Linux only, not {platform}")
    if config.layer is Layer.L2 and config.packet_information:
        raise UnsupportedError(
            f"a {platform} TAP carries no packet-information header (its frames are bare "
            "Ethernet, as they are on Linux only with IFF_NO_PI): build it without "
            "packet_information()"
        )
    reject_windows_only(config, platform)


def configure(iface: BsdInterface, config: DeviceConfig, added: Additions) -> None:
    """MTU, MAC, addresses (with their routes), up/down, then routes — tun-rs's order, with the
    routes last because a kernel may refuse a route through a down interface. Every change that
    outlives a destroyed interface is recorded in ``added``."""
    if config.link_mtu is not None:
        iface.set_mtu(config.link_mtu)
    if config.mac is not None:
        iface.set_mac_address(config.mac)
    add_addresses(iface, config, added)
    if config.enabled is not None:
        iface.set_enabled(config.enabled)
    add_routes(iface, config, added)


def snapshot_for(iface: BsdInterface, config: DeviceConfig) -> LinkState:
    """What :func:`configure` is about to change on ``iface``, for :meth:`BsdInterface.restore`."""
    return iface.snapshot(
        mtu=config.link_mtu is not None, mac=config.mac is not None, up=config.enabled is not None
    )


def header_values(flavor: Flavor) -> dict[str, int]:
    """The framing keyword arguments of :class:`~tunflow.platform._unix.FdQueue` for a tun."""
    return {"af_inet": AF_INET, "af_inet6": flavor.af_inet6}


def make_fd_queue(
    syscalls: Syscalls,
    flavor: Flavor,
    fd: int,
    *,
    af_header: bool,
    framed: bool | None = None,
    close_fd: bool = True,
    opened: bool = False,
) -> FdQueue:
    """An :class:`FdQueue` over a tun/tap fd whose closing goes through ``syscalls``.

    ``af_header``: remove the 4-byte address family on read and add it on write (a tun in
    ``TUNSIFHEAD`` mode, a utun) — off for TAP and when the user keeps ``packet_information``.
    ``framed``: the kernel puts that header before each packet (a tun; ``af_header`` if not
    given), so the queue may be switched to remove it or not at run time.
    ``opened``: the build opened ``fd`` (see :class:`~tunflow.platform._unix.FdQueue`).
    """
    framed = af_header if framed is None else framed
    framing: dict[str, object] = (
        {"af_header": af_header, "af_framed": True, **header_values(flavor)} if framed else {}
    )
    # (an adopted fd its maker closed first: EBADF on close is quiet, as in FdQueue)
    closer = quiet_closer(syscalls, fd) if close_fd else None
    # The queue never closes the fd itself, so the fake system-call layer sees every close.
    return FdQueue(
        fd,
        close_fd=False,
        on_close=closer,
        opened=opened,
        **framing,  # type: ignore[arg-type]
    )


def open_node(syscalls: Syscalls, flavor: Flavor, name: str, *, makedev: bool) -> int:
    """Open ``/dev/<name>``; with ``makedev``, a missing node is made with ``sh MAKEDEV <name>``
    in ``/dev`` first (OpenBSD and NetBSD ship only a few tun/tap nodes), as tun-rs does.

    Raises:
        DeviceBusyError: another process has the device open.
        DeviceNotFoundError: the node is missing (and could not be made).
    """
    path = f"/dev/{name}"
    flags = O_RDWR | flavor.cloexec
    try:
        try:
            return syscalls.open(path, flags)
        except FileNotFoundError:
            if not makedev:
                raise
        syscalls.run(["sh", "MAKEDEV", name], cwd="/dev")
        return syscalls.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise DeviceBusyError(exc.errno, f"{path} is in use by another process") from exc
        if exc.errno == errno.ENOENT:
            raise DeviceNotFoundError(
                exc.errno,
                f"{path} does not exist (is the {name.rstrip('0123456789')} driver loaded?)",
            ) from exc
        raise oserror_to_device_error(exc, f"open {path}") from exc


def build_device(
    *,
    syscalls: Syscalls,
    config: DeviceConfig,
    fd: int,
    iface: BsdInterface,
    created: bool,
    destroy_on_close: bool = True,
) -> tuple[BsdInterface, FdQueue]:
    """Configure ``iface`` behind the freshly opened ``fd`` and wrap the fd in a queue.

    On failure everything is taken back: the fd is closed and an interface this build created is
    destroyed (with its addresses and routes); on an interface it attached to, the addresses and
    routes it added are removed again and its MTU, MAC and up/down state put back as they were
    (best effort: what cannot be put back is logged). On success, a created interface is
    destroyed when the device closes (unless ``persist`` or the kernel does it itself).
    """
    added = Additions()
    flavor = iface.flavor
    before: LinkState | None = None
    try:
        if not created:
            before = snapshot_for(iface, config)
        configure(iface, config, added)
        queue = make_fd_queue(
            syscalls,
            flavor,
            fd,
            af_header=config.layer is Layer.L3 and not config.packet_information,
            framed=config.layer is Layer.L3,
            opened=True,
        )
    except BaseException as exc:
        if not created:
            added.undo(iface, iface.name())
            if before is not None:
                iface.restore(before)
        with contextlib.suppress(OSError):
            syscalls.close(fd)
        if created and destroy_on_close:
            with contextlib.suppress(OSError):
                destroy_interface(syscalls, flavor, iface.name())
        if isinstance(exc, OSError) and not isinstance(exc, DeviceError):
            raise oserror_to_device_error(exc, f"configure {iface.name()}") from exc
        raise
    if not destroy_on_close:
        iface.destroy = None
    elif created:
        iface.keep = config.persist
    return iface, queue


def tap_fd_has_no_header(platform: str) -> str:
    """Why a tap fd cannot be adopted with ``packet_information`` on ``platform``."""
    return (
        f"a {platform} tap fd carries no packet-information header (its frames are bare "
        "Ethernet): adopt it without packet_information"
    )


def adopt_tun_fd(
    syscalls: Syscalls,
    flavor: Flavor,
    fd: int,
    *,
    close_fd: bool,
    packet_information: bool,
    layer: Layer = Layer.L3,
) -> tuple[None, FdQueue]:
    """Wrap a BSD tun or tap fd made elsewhere (configure it yourself). The kernel cannot be
    asked which it is: ``layer`` says. A tun is assumed in 4-byte header mode; a tap carries
    bare Ethernet frames, as a built one does.

    Raises:
        UnsupportedError: ``fd`` is negative, or ``packet_information`` for a tap (whose frames
            carry no header); the fd is left open.
    """
    if fd < 0:
        raise UnsupportedError("not a file descriptor")
    tun = layer is Layer.L3
    if not tun and packet_information:
        raise UnsupportedError(tap_fd_has_no_header(flavor.name))
    return None, make_fd_queue(
        syscalls,
        flavor,
        fd,
        af_header=tun and not packet_information,
        framed=tun,
        close_fd=close_fd,
    )
