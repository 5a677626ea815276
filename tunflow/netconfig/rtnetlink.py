"""rtnetlink messages for Linux interface configuration, sans-I/O.

This module builds the request bytes a ``NETLINK_ROUTE`` socket sends (links, addresses, routes,
policy routing rules) and decodes the kernel's replies into typed records. It is pure computation over ``bytes``:
it must not import ``os``, ``socket``, ``select``, ``fcntl``, ``anyio`` or ``trio``, and it never
makes a system call. :class:`tunflow.platform.linux.netlink.RtNetlink` owns the socket and drives
the exchange; anything else (a test, a fuzzer, another transport) can do the same.

Layouts and numbers come from the kernel's uapi headers (``linux/netlink.h``,
``linux/rtnetlink.h``, ``linux/if_link.h``, ``linux/if_addr.h``, ``linux/fib_rules.h``). Everything is host byte
order (``=`` in the struct formats) except addresses, which are network order.

Three kinds of error leave this module:

* :class:`tunflow.errors.ConfigError` — an encoder was given a bad argument; the message names
  the value and the rule.
* :class:`OSError` subclasses — the kernel answered ``NLMSG_ERROR`` (or a failed
  ``NLMSG_DONE``) with a negative errno; they are made with ``OSError(errno, strerror)``, so
  ``EEXIST`` arrives as :class:`FileExistsError`, ``ENODEV``/``ENOENT`` as
  :class:`FileNotFoundError` (``ENOENT`` only) and so on.
* :class:`NetlinkDecodeError` — the bytes are not well-formed netlink (an :class:`OSError` with
  ``errno.EBADMSG`` and a :class:`~tunflow.errors.TunflowError`).

Example:
    >>> msg = encode_get_link(1, index=1)
    >>> len(msg), msg[4:6]                      # 16 B header + ifinfomsg + IFLA_EXT_MASK
    (40, b'\\x12\\x00')
    >>> t = Transaction(1, Expect.REPLY)
    >>> t.receive_data(bytes.fromhex("24000000020000000100000000000000edffffff") + msg[:16])
    Traceback (most recent call last):
    ...
    OSError: [Errno 19] ENODEV
"""

from __future__ import annotations

import enum
import errno as _errno
import struct
from collections.abc import Callable, Iterable, Iterator
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
from typing import Final

import attrs

from tunflow.errors import ConfigError, TunflowError

__all__ = [
    # records
    "LinkInfo",
    "AddressInfo",
    "Route",
    "RouteEntry",
    "NetlinkMessage",
    "OperState",
    # reply handling
    "Expect",
    "Transaction",
    "NetlinkDecodeError",
    "iter_messages",
    "iter_attributes",
    "with_seq",
    "parse_error",
    "parse_link",
    "parse_link_stats",
    "LinkStats",
    "parse_address",
    "parse_route",
    "routes_via",
    "errno_name",
    # encoders
    "encode_get_link",
    "encode_get_link_stats",
    "encode_set_link",
    "encode_new_address",
    "encode_del_address",
    "encode_get_addresses",
    "encode_new_route",
    "encode_del_route",
    "encode_get_routes",
    "encode_new_rule",
    "encode_del_rule",
    "check_index",
    "check_ifname",
    "check_table",
    # constants
    "AF_UNSPEC",
    "AF_INET",
    "AF_INET6",
    "NLMSG_NOOP",
    "NLMSG_ERROR",
    "NLMSG_DONE",
    "NLMSG_OVERRUN",
    "NLM_F_REQUEST",
    "NLM_F_MULTI",
    "NLM_F_ACK",
    "NLM_F_DUMP_INTR",
    "NLM_F_DUMP",
    "NLM_F_REPLACE",
    "NLM_F_EXCL",
    "NLM_F_CREATE",
    "NLM_F_CAPPED",
    "NLM_F_ACK_TLVS",
    "RTM_NEWLINK",
    "RTM_GETLINK",
    "RTM_NEWADDR",
    "RTM_DELADDR",
    "RTM_GETADDR",
    "RTM_NEWROUTE",
    "RTM_DELROUTE",
    "RTM_GETROUTE",
    "RTM_NEWRULE",
    "RTM_DELRULE",
    "IFF_UP",
    "IFF_BROADCAST",
    "IFF_LOOPBACK",
    "IFF_POINTOPOINT",
    "IFF_RUNNING",
    "IFF_NOARP",
    "IFF_LOWER_UP",
    "IFA_F_SECONDARY",
    "IFA_F_NODAD",
    "IFA_F_TENTATIVE",
    "IFA_F_PERMANENT",
    "IFA_F_NOPREFIXROUTE",
    "RT_TABLE_UNSPEC",
    "RT_TABLE_COMPAT",
    "RT_TABLE_MAIN",
    "RT_TABLE_LOCAL",
    "RTPROT_UNSPEC",
    "RTPROT_KERNEL",
    "RTPROT_BOOT",
    "RTPROT_STATIC",
    "IP6_RT_PRIO_USER",
    "RT_SCOPE_UNIVERSE",
    "RT_SCOPE_LINK",
    "RT_SCOPE_HOST",
    "RT_SCOPE_NOWHERE",
    "RTN_UNICAST",
    "FR_ACT_TO_TBL",
    "FIB_RULE_INVERT",
    "SOL_NETLINK",
    "NETLINK_CAP_ACK",
    "NETLINK_EXT_ACK",
    "NETLINK_GET_STRICT_CHK",
]

# --- constants (linux/socket.h, linux/netlink.h, linux/rtnetlink.h, if_addr.h, if_link.h) ------

#: Linux's address family numbers (``socket.AF_*`` is off limits in a sans-I/O module).
AF_UNSPEC: Final = 0
AF_INET: Final = 2
AF_INET6: Final = 10

SOL_NETLINK: Final = 270
NETLINK_CAP_ACK: Final = 10
NETLINK_EXT_ACK: Final = 11
NETLINK_GET_STRICT_CHK: Final = 12

NLMSG_NOOP: Final = 1
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLMSG_OVERRUN: Final = 4

NLM_F_REQUEST: Final = 0x01
NLM_F_MULTI: Final = 0x02
NLM_F_ACK: Final = 0x04
NLM_F_DUMP_INTR: Final = 0x10
NLM_F_ROOT: Final = 0x100
NLM_F_MATCH: Final = 0x200
NLM_F_DUMP: Final = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE: Final = 0x100
NLM_F_EXCL: Final = 0x200
NLM_F_CREATE: Final = 0x400
# flags of an NLMSG_ERROR (ack) message
NLM_F_CAPPED: Final = 0x100
NLM_F_ACK_TLVS: Final = 0x200

NLMSGERR_ATTR_MSG: Final = 1
NLMSGERR_ATTR_OFFS: Final = 2

RTM_NEWLINK: Final = 16
RTM_DELLINK: Final = 17
RTM_GETLINK: Final = 18
RTM_NEWADDR: Final = 20
RTM_DELADDR: Final = 21
RTM_GETADDR: Final = 22
RTM_NEWROUTE: Final = 24
RTM_DELROUTE: Final = 25
RTM_GETROUTE: Final = 26
RTM_NEWRULE: Final = 32
RTM_DELRULE: Final = 33

#: the multicast group of link notifications (``RTNLGRP_LINK``), as a bind mask
RTMGRP_LINK: Final = 0x1

IFF_UP: Final = 0x1
IFF_BROADCAST: Final = 0x2
IFF_LOOPBACK: Final = 0x8
IFF_POINTOPOINT: Final = 0x10
IFF_RUNNING: Final = 0x40
IFF_NOARP: Final = 0x80
IFF_LOWER_UP: Final = 0x10000

IFLA_ADDRESS: Final = 1
IFLA_IFNAME: Final = 3
IFLA_MTU: Final = 4
IFLA_TXQLEN: Final = 13
IFLA_OPERSTATE: Final = 16
IFLA_LINKINFO: Final = 18
IFLA_EXT_MASK: Final = 29
#: inside IFLA_LINKINFO: the link type's name (``tun``, ``veth``, ``wireguard``…)
IFLA_INFO_KIND: Final = 1
#: inside IFLA_LINKINFO: the attributes of the link type (for ``tun``, the IFLA_TUN_* below)
IFLA_INFO_DATA: Final = 2
#: inside a tun's IFLA_INFO_DATA: the owning uid and gid (u32 each; absent when unset)
IFLA_TUN_OWNER: Final = 1
IFLA_TUN_GROUP: Final = 2
#: inside a tun's IFLA_INFO_DATA: 1 when its packets carry the 4-byte tun_pi header (no
#: IFF_NO_PI), else 0 (u8)
IFLA_TUN_PI: Final = 4
#: IFLA_EXT_MASK bit: leave the (large) statistics out of link replies.
RTEXT_FILTER_SKIP_STATS: Final = 1 << 3

IFA_ADDRESS: Final = 1
IFA_LOCAL: Final = 2
IFA_LABEL: Final = 3
IFA_BROADCAST: Final = 4
IFA_FLAGS: Final = 8

IFA_F_SECONDARY: Final = 0x01
IFA_F_NODAD: Final = 0x02
IFA_F_TENTATIVE: Final = 0x40
IFA_F_PERMANENT: Final = 0x80
IFA_F_NOPREFIXROUTE: Final = 0x200

RTA_DST: Final = 1
RTA_OIF: Final = 4
RTA_GATEWAY: Final = 5
RTA_PRIORITY: Final = 6
RTA_METRICS: Final = 8
#: in ``RTA_METRICS``: the route's MTU (``ip route … mtu N``)
RTAX_MTU: Final = 2
RTA_MULTIPATH: Final = 9
RTA_TABLE: Final = 15
RTA_VIA: Final = 18

RT_TABLE_UNSPEC: Final = 0
#: what ``rtm_table`` (one byte) says for a table id above 255; ``RTA_TABLE`` has the id
RT_TABLE_COMPAT: Final = 252
RT_TABLE_MAIN: Final = 254
RT_TABLE_LOCAL: Final = 255

RTPROT_UNSPEC: Final = 0
RTPROT_KERNEL: Final = 2
RTPROT_BOOT: Final = 3
RTPROT_STATIC: Final = 4

#: the metric the kernel gives an IPv6 route added without one (``include/net/ip6_route.h``)
IP6_RT_PRIO_USER: Final = 1024

RT_SCOPE_UNIVERSE: Final = 0
RT_SCOPE_LINK: Final = 253
RT_SCOPE_HOST: Final = 254
RT_SCOPE_NOWHERE: Final = 255

RTN_UNSPEC: Final = 0
RTN_UNICAST: Final = 1
RTN_LOCAL: Final = 2

RTM_F_CLONED: Final = 0x200

# Policy routing rules, include/uapi/linux/fib_rules.h (torvalds/linux): struct fib_rule_hdr,
# the FRA_* attribute enum (FRA_UNSPEC 0, DST, SRC, IIFNAME, GOTO, UNUSED2, PRIORITY 6,
# UNUSED3-5, FWMARK 10, FLOW, TUN_ID, SUPPRESS_IFGROUP, SUPPRESS_PREFIXLEN 14, TABLE 15,
# FWMASK 16, …), FR_ACT_TO_TBL (1, "pass to fixed table") and FIB_RULE_INVERT (0x2, the "not"
# of ``ip rule``).
FR_ACT_UNSPEC: Final = 0
FR_ACT_TO_TBL: Final = 1
FIB_RULE_INVERT: Final = 0x2
FRA_PRIORITY: Final = 6
FRA_FWMARK: Final = 10
FRA_SUPPRESS_PREFIXLEN: Final = 14
FRA_TABLE: Final = 15
FRA_FWMASK: Final = 16

_NLA_TYPE_MASK: Final = 0x3FFF  # strips NLA_F_NESTED and NLA_F_NET_BYTEORDER
_U32_MAX: Final = 0xFFFF_FFFF
_I32_MAX: Final = 0x7FFF_FFFF
_IFNAMSIZ: Final = 16
_MAX_ADDR_LEN: Final = 32  # linux/netdevice.h

# --- precompiled layouts -------------------------------------------------------------------------

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NLMSGERR = struct.Struct("=i")  # error, followed by the offending request's nlmsghdr
_NLATTR = struct.Struct("=HH")  # len, type
_IFINFOMSG = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, proto, scope, type, flags
_RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex
_FIB_RULE_HDR = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, res1, res2, action, flags
_U32 = struct.Struct("=I")
_U16 = struct.Struct("=H")
_HDR_LEN: Final = _NLMSGHDR.size


class NetlinkDecodeError(TunflowError, OSError):
    """The bytes are not a well-formed netlink message of the kind expected.

    An :class:`OSError` with ``errno.EBADMSG`` (the kernel never sends such bytes; seeing one
    means a bug or a foreign sender), so code that maps OS errors handles it too.
    """

    def __init__(self, message: str) -> None:
        super().__init__(_errno.EBADMSG, message)


class OperState(enum.IntEnum):
    """RFC 2863 operational state (``IFLA_OPERSTATE``, ``linux/if.h``)."""

    UNKNOWN = 0
    NOTPRESENT = 1
    DOWN = 2
    LOWERLAYERDOWN = 3
    TESTING = 4
    DORMANT = 5
    UP = 6


# --- records -------------------------------------------------------------------------------------


@attrs.frozen
class NetlinkMessage:
    """One netlink message: header fields and the payload after the 16-byte header."""

    type: int
    flags: int
    seq: int
    port: int
    payload: bytes


@attrs.frozen
class LinkInfo:
    """A network interface as ``RTM_NEWLINK`` describes it.

    Attributes:
        index: the interface index.
        name: the interface name.
        flags: ``IFF_*`` bits (``IFF_UP``, ``IFF_RUNNING``, ``IFF_LOWER_UP``…).
        mtu: the MTU in bytes.
        mac: the link-layer address; ``None`` for links without one (a TUN device).
        txqlen: the transmit queue length in packets.
        operstate: an :class:`OperState` (a plain ``int`` if the kernel sends a newer value).
        kind: the link type (``IFLA_INFO_KIND``: ``tun`` for TUN and TAP, ``veth``,
            ``wireguard``…); ``""`` for links without one (a physical NIC, ``lo``).
        tun_owner: a TUN/TAP's owning uid (``IFLA_TUN_OWNER``); ``None`` when it has none
            or the link is not one.
        tun_group: a TUN/TAP's owning gid (``IFLA_TUN_GROUP``), likewise.
        tun_pi: whether a TUN/TAP's packets carry the 4-byte ``tun_pi`` header
            (``IFLA_TUN_PI``: opened without ``IFF_NO_PI``); ``None`` when the kernel does not
            say or the link is not one.
    """

    index: int
    name: str
    flags: int
    mtu: int
    mac: bytes | None
    txqlen: int
    operstate: int
    kind: str = ""
    tun_owner: int | None = None
    tun_group: int | None = None
    tun_pi: bool | None = None

    @property
    def is_up(self) -> bool:
        """``IFF_UP`` is set (administratively up)."""
        return bool(self.flags & IFF_UP)


@attrs.frozen
class AddressInfo:
    """An address as ``RTM_NEWADDR`` describes it.

    Attributes:
        index: the interface index.
        interface: the local address with its prefix length.
        peer: the other end of a point-to-point address, else ``None``.
        broadcast: the IPv4 broadcast address, if one is set.
        flags: ``IFA_F_*`` bits (from ``IFA_FLAGS`` when present; it has the bits above 0xff).
        scope: ``RT_SCOPE_*``.
        label: the IPv4 label (``eth0:1``), if any.
    """

    index: int
    interface: IPv4Interface | IPv6Interface
    peer: IPv4Address | IPv6Address | None
    broadcast: IPv4Address | None
    flags: int
    scope: int
    label: str | None


@attrs.frozen
class Route:
    """A unicast route through one interface.

    Attributes:
        destination: the destination network (``0.0.0.0/0`` or ``::/0`` for a default route).
        gateway: the next hop, ``None`` for an on-link route.
        metric: the priority (``RTA_PRIORITY``); lower wins. IPv4 routes added without one have
            0; the kernel gives IPv6 routes 1024 (256 for its own prefix routes).
        table: the routing table (``RT_TABLE_MAIN`` = 254).
        protocol: who installed it, ``RTPROT_*`` (2 kernel, 3 boot = ``ip route``, 4 static).
        scope: ``RT_SCOPE_*`` (253 link for on-link IPv4 routes; the kernel reports 0 for IPv6).
    """

    destination: IPv4Network | IPv6Network
    gateway: IPv4Address | IPv6Address | None
    metric: int
    table: int
    protocol: int
    scope: int


@attrs.frozen
class RouteEntry:
    """Everything :func:`parse_route` reads from one ``RTM_NEWROUTE``; :func:`routes_via` filters.

    ``nexthops`` holds ``(ifindex, gateway)`` pairs of a multipath route (``RTA_MULTIPATH``),
    empty for a single-path route, which uses ``oif`` and ``gateway``. ``mtu`` is the route's
    own (``RTAX_MTU``: ``ip route … mtu N``, or a learnt path MTU in a lookup's answer), 0 for
    none.
    """

    family: int
    destination: IPv4Network | IPv6Network
    type: int
    table: int
    protocol: int
    scope: int
    flags: int
    metric: int
    oif: int
    gateway: IPv4Address | IPv6Address | None
    nexthops: tuple[tuple[int, IPv4Address | IPv6Address | None], ...] = ()
    mtu: int = 0


# --- framing -------------------------------------------------------------------------------------


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(type_: int, data: bytes) -> bytes:
    length = _NLATTR.size + len(data)
    return _NLATTR.pack(length, type_) + data + b"\0" * (_align(length) - length)


def _attr_u32(type_: int, value: int) -> bytes:
    return _attr(type_, _U32.pack(value))


def _message(type_: int, flags: int, seq: int, body: bytes) -> bytes:
    if not 0 <= seq <= _U32_MAX:
        raise ConfigError(f"netlink sequence number {seq!r} is not a 32-bit unsigned integer")
    return _NLMSGHDR.pack(_HDR_LEN + len(body), type_, flags, seq, 0) + body


def with_seq(message: bytes, seq: int) -> bytes:
    """``message`` (one request built by an ``encode_*`` function) with sequence number ``seq``.

    Lets a caller validate and build a request once, outside its lock, and number it inside.

    Raises:
        ConfigError: ``seq`` is not a 32-bit unsigned integer or ``message`` has no header.
    """
    if not 0 <= seq <= _U32_MAX:
        raise ConfigError(f"netlink sequence number {seq!r} is not a 32-bit unsigned integer")
    if len(message) < _HDR_LEN:
        raise ConfigError(f"a netlink request needs a {_HDR_LEN}-byte header")
    return message[:8] + _U32.pack(seq) + message[12:]


def iter_messages(data: bytes | bytearray | memoryview) -> Iterator[NetlinkMessage]:
    """Split one datagram read from a netlink socket into its messages.

    Args:
        data: the bytes of one ``recv``.

    Returns:
        An iterator of :class:`NetlinkMessage`, payloads copied out of ``data``.

    Raises:
        NetlinkDecodeError: a length field is impossible or bytes are left over.
    """
    view = memoryview(data).cast("B")
    end = len(view)
    offset = 0
    while offset < end:
        if end - offset < _HDR_LEN:
            raise NetlinkDecodeError(
                f"{end - offset} bytes left at offset {offset}, less than a netlink header"
            )
        length, type_, flags, seq, port = _NLMSGHDR.unpack_from(view, offset)
        if length < _HDR_LEN or length > end - offset:
            raise NetlinkDecodeError(
                f"netlink message at offset {offset} claims {length} bytes "
                f"({end - offset} available, at least {_HDR_LEN} needed)"
            )
        yield NetlinkMessage(
            type_, flags, seq, port, bytes(view[offset + _HDR_LEN : offset + length])
        )
        offset += _align(length)


def iter_attributes(data: bytes | memoryview, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """The ``(type, value)`` pairs of the attributes in ``data[offset:]``.

    The type has ``NLA_F_NESTED``/``NLA_F_NET_BYTEORDER`` masked off. Like the kernel's
    ``nla_for_each_attr``, a tail shorter than an attribute header is ignored (the padding of the
    last attribute may be cut off).

    Raises:
        NetlinkDecodeError: an attribute length is shorter than its header or runs past the end.
    """
    end = len(data)
    while end - offset >= _NLATTR.size:
        length, type_ = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or length > end - offset:
            raise NetlinkDecodeError(
                f"attribute {type_ & _NLA_TYPE_MASK} at offset {offset} has length {length} "
                f"({end - offset} bytes available)"
            )
        yield type_ & _NLA_TYPE_MASK, bytes(data[offset + _NLATTR.size : offset + length])
        offset += _align(length)


def _u32(value: bytes, what: str) -> int:
    if len(value) != 4:
        raise NetlinkDecodeError(f"{what} is {len(value)} bytes, expected 4")
    result: int = _U32.unpack(value)[0]
    return result


def _string(value: bytes) -> str:
    # Interface names are bytes to the kernel; surrogateescape round-trips any of them.
    return value.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _raw_ip(family: int, value: bytes, what: str) -> bytes:
    if len(value) == (4 if family == AF_INET else 16):
        return value
    raise NetlinkDecodeError(f"{what} is {len(value)} bytes, not an address of family {family}")


def _ip(family: int, value: bytes, what: str) -> IPv4Address | IPv6Address:
    # From packed bytes: an ipaddress object given another one goes through str() (~15 us).
    if family == AF_INET:
        return IPv4Address(_raw_ip(family, value, what))
    if family == AF_INET6:
        return IPv6Address(_raw_ip(family, value, what))
    raise NetlinkDecodeError(f"{what} has unknown address family {family}")


# --- errors --------------------------------------------------------------------------------------


def errno_name(code: int) -> str:
    """The symbolic name of an errno (``"EEXIST"``): the default ``strerror`` of this module.

    The socket side passes :func:`os.strerror` instead; this module may not import :mod:`os`.
    """
    return _errno.errorcode.get(code, f"error {code}")


def parse_error(message: NetlinkMessage) -> tuple[int, str | None]:
    """Read an ``NLMSG_ERROR`` (or a ``NLMSG_DONE`` that carries an error code).

    Args:
        message: the message; its payload starts with a signed 32-bit error.

    Returns:
        ``(errno, extack)``: the *positive* errno (0 for a plain acknowledgement) and the
        extended-ack text (``NLMSGERR_ATTR_MSG``) when the kernel sent one.

    Raises:
        NetlinkDecodeError: the payload is too short or the error code is positive.
    """
    payload = message.payload
    if len(payload) < _NLMSGERR.size:
        raise NetlinkDecodeError(f"error message payload of {len(payload)} bytes is too short")
    (error,) = _NLMSGERR.unpack_from(payload)
    if error > 0:
        raise NetlinkDecodeError(f"netlink error code {error} is positive")
    extack: str | None = None
    if message.flags & NLM_F_ACK_TLVS:
        if message.type == NLMSG_ERROR:
            # nlmsgerr = error + the request's header (+ its payload unless NLM_F_CAPPED).
            if len(payload) < _NLMSGERR.size + _HDR_LEN:
                raise NetlinkDecodeError("error message too short for the echoed request header")
            offset = _NLMSGERR.size + _HDR_LEN
            if not message.flags & NLM_F_CAPPED:
                (echoed,) = _U32.unpack_from(payload, _NLMSGERR.size)
                if echoed < _HDR_LEN:
                    raise NetlinkDecodeError(f"echoed request length {echoed} is too short")
                offset = _NLMSGERR.size + _align(echoed)
        else:  # NLMSG_DONE: the TLVs follow the error code directly
            offset = _NLMSGERR.size
        for type_, value in iter_attributes(payload, offset):
            if type_ == NLMSGERR_ATTR_MSG:
                extack = _string(value) or None
    return -error, extack


def _raise_error(code: int, extack: str | None, strerror: Callable[[int], str]) -> None:
    text = strerror(code)
    if extack:
        text = f"{text} ({extack})"
    # OSError(errno, text) picks the subclass: EEXIST -> FileExistsError, EPERM -> PermissionError.
    raise OSError(code, text)


class Expect(enum.Enum):
    """What ends the exchange started by one request."""

    #: an ``NLMSG_ERROR`` with error 0 (a change sent with ``NLM_F_ACK``)
    ACK = "ack"
    #: one reply message (a ``GET`` of one object, sent without ``NLM_F_ACK``)
    REPLY = "reply"
    #: ``NLM_F_MULTI`` messages closed by ``NLMSG_DONE`` (a ``GET`` with ``NLM_F_DUMP``)
    DUMP = "dump"


class Transaction:
    """Collect the kernel's answer to one request, h11-style: feed bytes, ask if it is done.

    Messages whose sequence number is not this request's (left over from an earlier request that
    was abandoned, say) are skipped.

    Args:
        seq: the sequence number the request was sent with.
        expect: what ends the exchange.
        strerror: turns an errno into text for the raised :class:`OSError` (the socket side passes
            :func:`os.strerror`).

    Example:
        >>> t = Transaction(7, Expect.ACK)
        >>> t.receive_data(bytes.fromhex("24000000020000010700000000000000" "00000000")
        ...                + encode_get_link(7, index=1)[:16])
        >>> t.done
        True
    """

    __slots__ = ("done", "expect", "interrupted", "replies", "seq", "strerror")

    def __init__(
        self, seq: int, expect: Expect, *, strerror: Callable[[int], str] = errno_name
    ) -> None:
        self.seq = seq
        self.expect = expect
        self.strerror = strerror
        #: the exchange is complete
        self.done = False
        #: the kernel flagged the dump as inconsistent (``NLM_F_DUMP_INTR``): repeat it
        self.interrupted = False
        #: the data messages received (not errors, acks or ``NLMSG_DONE``)
        self.replies: list[NetlinkMessage] = []

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Consume one datagram.

        Raises:
            OSError: the kernel reported an error (the subclass follows the errno).
            NetlinkDecodeError: the bytes are malformed.
        """
        for msg in iter_messages(data):
            if msg.seq != self.seq or self.done:
                continue
            if msg.flags & NLM_F_DUMP_INTR:
                self.interrupted = True
            if msg.type == NLMSG_NOOP:
                continue
            if msg.type == NLMSG_ERROR:
                code, extack = parse_error(msg)
                self.done = True
                if code:
                    _raise_error(code, extack, self.strerror)
                continue
            if msg.type == NLMSG_DONE:
                # Since Linux 4.x a dump that fails part-way reports the errno here.
                if len(msg.payload) >= _NLMSGERR.size:
                    code, extack = parse_error(msg)
                    if code:
                        self.done = True
                        _raise_error(code, extack, self.strerror)
                self.done = True
                continue
            if msg.type == NLMSG_OVERRUN:
                self.done = True
                _raise_error(_errno.ENOBUFS, "netlink overrun", self.strerror)
            self.replies.append(msg)
            if self.expect is Expect.REPLY:
                self.done = True


# --- argument checks -----------------------------------------------------------------------------


def check_index(index: object) -> int:
    """Return ``index`` if it is a valid interface index (1 to 2**31 - 1).

    Raises:
        ConfigError: it is not.
    """
    if isinstance(index, int) and not isinstance(index, bool) and 1 <= index <= _I32_MAX:
        return index
    raise ConfigError(f"interface index {index!r} is not an integer in 1..{_I32_MAX}")


def check_table(table: object) -> int:
    """Return ``table`` if it is a routing table id a request can name (1 to 2**32 - 1).

    0 (``RT_TABLE_UNSPEC``) is left out: the kernel reads it as "main" in one place and "any"
    in another.

    Raises:
        ConfigError: it is not.
    """
    return _check_range(table, "routing table", 1, _U32_MAX)


def _check_range(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    raise ConfigError(f"{what} {value!r} is not an integer in {low}..{high}")


def _check_mac(mac: object) -> bytes:
    if isinstance(mac, bytes | bytearray) and 1 <= len(mac) <= _MAX_ADDR_LEN:
        return bytes(mac)
    raise ConfigError(f"MAC address {mac!r} is not 1 to {_MAX_ADDR_LEN} bytes")


#: the bytes ``dev_valid_name`` refuses but 0xA0: ``/``, ``:``, NUL and what the kernel's
#: ``isspace()`` takes — tab to carriage return and space (and 0xA0). Unicode's other spaces
#: (U+0085, U+2003, ...) and 0x1C to 0x1F, which ``str.isspace`` takes, it accepts.
_IFNAME_REFUSED: Final = frozenset(b"/:\0\t\n\v\f\r ")


def check_ifname(name: object) -> bytes:
    """Encode an interface name after the kernel's ``dev_valid_name`` rules.

    Returns:
        The UTF-8 bytes with a terminating NUL.

    Raises:
        ConfigError: not encodable (a lone surrogate other than the escaped bytes), empty,
            longer than 15 bytes, ``.``/``..``, or containing ``/``, ``:``, NUL, a byte from tab
            to carriage return, space, or the byte 0xA0.
    """
    if not isinstance(name, str):
        raise ConfigError(f"interface name {name!r} is not a string")
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ConfigError(f"interface name {name!r} cannot be encoded as UTF-8") from None
    if not raw or len(raw) >= _IFNAMSIZ:
        raise ConfigError(f"interface name {name!r} must be 1 to {_IFNAMSIZ - 1} bytes long")
    if name in (".", "..") or not _IFNAME_REFUSED.isdisjoint(raw):
        raise ConfigError(
            f"interface name {name!r} may not be '.' or '..' nor contain '/', ':', NUL, a space, "
            "a tab or a line break"
        )
    if 0xA0 in raw:
        # (the kernel's isspace() takes Latin-1's no-break space, 0xA0: a byte of the UTF-8 of
        # many letters)
        letter = next(c for c in name if 0xA0 in c.encode("utf-8", "surrogateescape"))
        raise ConfigError(
            f"interface name {name!r}: Linux takes the byte 0xA0 for a space, and the UTF-8 of "
            f"{letter!r} holds it"
        )
    return raw + b"\0"


def _family(value: IPv4Address | IPv6Address | IPv4Interface | IPv6Interface) -> int:
    return AF_INET if value.version == 4 else AF_INET6


def _coerce_interface(value: object, what: str) -> IPv4Interface | IPv6Interface:
    if isinstance(value, IPv4Interface | IPv6Interface):
        iface = value
    elif isinstance(value, str):
        try:
            iface = ip_interface(value)
        except ValueError as exc:
            raise ConfigError(f"{what} {value!r} is not an IP address with prefix: {exc}") from None
    else:
        raise ConfigError(
            f"{what} {value!r} is not an IPv4Interface/IPv6Interface (e.g. '192.0.2.1/24')"
        )
    if iface.ip.is_unspecified or iface.ip.is_multicast:
        raise ConfigError(f"{what} {value!r} is unspecified or multicast; it cannot be assigned")
    return iface


def _coerce_address(value: object, what: str) -> IPv4Address | IPv6Address:
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    if isinstance(value, str):
        try:
            return ip_address(value)
        except ValueError as exc:
            raise ConfigError(f"{what} {value!r} is not an IP address: {exc}") from None
    raise ConfigError(f"{what} {value!r} is not an IPv4Address/IPv6Address")


def _coerce_network(value: object) -> IPv4Network | IPv6Network:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    if isinstance(value, str):
        try:
            return ip_network(value)  # strict: host bits must be zero
        except ValueError as exc:
            raise ConfigError(f"route destination {value!r} is not a network: {exc}") from None
    raise ConfigError(
        f"route destination {value!r} is not an IPv4Network/IPv6Network (e.g. '198.51.100.0/24')"
    )


# --- links ---------------------------------------------------------------------------------------


def encode_get_link(seq: int, *, index: int = 0, name: str | None = None) -> bytes:
    """``RTM_GETLINK`` for one link, by index or (``index=0``) by name.

    The reply leaves statistics out (``RTEXT_FILTER_SKIP_STATS``): they are most of its size.

    Args:
        seq: sequence number.
        index: the interface index, or 0 to look up ``name``.
        name: the interface name when ``index`` is 0.

    Returns:
        The request; the kernel answers one ``RTM_NEWLINK`` or ``NLMSG_ERROR`` (``ENODEV``).

    Raises:
        ConfigError: neither or both of index and name, or an invalid one.
    """
    attrs_ = b""
    if index:
        check_index(index)
        if name is not None:
            raise ConfigError("look a link up by index or by name, not both")
    elif name is None:
        raise ConfigError("look a link up by index or by name")
    else:
        attrs_ += _attr(IFLA_IFNAME, check_ifname(name))
    attrs_ += _attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
    return _message(
        RTM_GETLINK, NLM_F_REQUEST, seq, _IFINFOMSG.pack(AF_UNSPEC, 0, index, 0, 0) + attrs_
    )


def encode_set_link(
    seq: int,
    index: int,
    *,
    up: bool | None = None,
    mtu: int | None = None,
    mac: bytes | None = None,
    name: str | None = None,
    txqlen: int | None = None,
) -> bytes:
    """``RTM_NEWLINK`` changing an existing link (no ``NLM_F_CREATE``), acknowledged.

    Kernel quirks: ``do_setlink`` applies MAC, MTU, *then the name*, then the flags, then
    txqlen, and is not atomic (an error part-way leaves the earlier changes). Before Linux 6.2
    a running link cannot be renamed (``EBUSY``): bring it down in an earlier request.
    ``ifi_change == 0`` with non-zero ``ifi_flags`` would mean "set all flags" (kept for old
    binaries), so flags are only sent together with their change mask.

    Args:
        seq: sequence number.
        index: the interface index.
        up: set (``True``) or clear (``False``) ``IFF_UP``; ``None`` leaves it.
        mtu: new MTU (the kernel checks the device's own minimum and maximum).
        mac: new link-layer address (its length must match the device's; 6 for Ethernet).
        name: new name.
        txqlen: new transmit queue length.

    Raises:
        ConfigError: an argument is out of range or of the wrong type.
    """
    check_index(index)
    flags = change = 0
    if up is not None:
        if not isinstance(up, bool):
            raise ConfigError(f"up={up!r} is not a bool")
        flags, change = (IFF_UP if up else 0), IFF_UP
    body = _IFINFOMSG.pack(AF_UNSPEC, 0, index, flags, change)
    if mac is not None:
        body += _attr(IFLA_ADDRESS, _check_mac(mac))
    if mtu is not None:
        # The kernel reads a u32 and rejects anything above INT_MAX as negative.
        body += _attr_u32(IFLA_MTU, _check_range(mtu, "MTU", 1, _I32_MAX))
    if name is not None:
        body += _attr(IFLA_IFNAME, check_ifname(name))
    if txqlen is not None:
        body += _attr_u32(IFLA_TXQLEN, _check_range(txqlen, "txqueuelen", 0, _U32_MAX))
    return _message(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, body)


def parse_link(message: NetlinkMessage) -> LinkInfo:
    """Decode an ``RTM_NEWLINK`` reply, or the ``RTM_DELLINK`` of a deletion (the same
    layout: the link as it was).

    Raises:
        NetlinkDecodeError: wrong message type, short payload, malformed attributes.
    """
    if message.type not in (RTM_NEWLINK, RTM_DELLINK):
        raise NetlinkDecodeError(f"expected RTM_NEWLINK (16), got message type {message.type}")
    payload = message.payload
    if len(payload) < _IFINFOMSG.size:
        raise NetlinkDecodeError(f"RTM_NEWLINK payload of {len(payload)} bytes is too short")
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(payload)
    name = ""
    mtu = txqlen = 0
    mac: bytes | None = None
    operstate: int = OperState.UNKNOWN
    kind = ""
    data = b""
    tun_owner: int | None = None
    tun_group: int | None = None
    tun_pi: bool | None = None
    for type_, value in iter_attributes(payload, _IFINFOMSG.size):
        if type_ == IFLA_IFNAME:
            name = _string(value)
        elif type_ == IFLA_MTU:
            mtu = _u32(value, "IFLA_MTU")
        elif type_ == IFLA_ADDRESS:
            mac = value
        elif type_ == IFLA_TXQLEN:
            txqlen = _u32(value, "IFLA_TXQLEN")
        elif type_ == IFLA_OPERSTATE:
            if len(value) != 1:
                raise NetlinkDecodeError(f"IFLA_OPERSTATE is {len(value)} bytes, expected 1")
            operstate = OperState(value[0]) if value[0] <= OperState.UP else value[0]
        elif type_ == IFLA_LINKINFO:
            for info_type, info in iter_attributes(value):
                if info_type == IFLA_INFO_KIND:
                    kind = _string(info)
                elif info_type == IFLA_INFO_DATA:
                    data = info
    if kind == "tun":
        for data_type, item in iter_attributes(data):
            if data_type == IFLA_TUN_OWNER:
                tun_owner = _u32(item, "IFLA_TUN_OWNER")
            elif data_type == IFLA_TUN_GROUP:
                tun_group = _u32(item, "IFLA_TUN_GROUP")
            elif data_type == IFLA_TUN_PI:
                if len(item) != 1:
                    raise NetlinkDecodeError(f"IFLA_TUN_PI is {len(item)} bytes, expected 1")
                tun_pi = bool(item[0])
    return LinkInfo(
        index, name, flags, mtu, mac, txqlen, operstate, kind, tun_owner, tun_group, tun_pi
    )


# --- addresses -----------------------------------------------------------------------------------


def encode_new_address(
    seq: int,
    index: int,
    interface: IPv4Interface | IPv6Interface | str,
    *,
    peer: IPv4Address | IPv6Address | str | None = None,
    broadcast: bool | None = None,
    nodad: bool = True,
    replace: bool = False,
) -> bytes:
    """``RTM_NEWADDR``: assign an address, acknowledged.

    IPv4 sends ``IFA_LOCAL`` (this host) and ``IFA_ADDRESS`` (the peer for a point-to-point
    address, else the same address). IPv6 does the same; the kernel reads a peer from
    ``IFA_ADDRESS`` when ``IFA_LOCAL`` differs.

    Args:
        seq: sequence number.
        index: the interface index.
        interface: the address and prefix length, e.g. ``IPv4Interface("192.0.2.1/24")``; a
            string without ``/`` means a host prefix (as ``ip addr add`` does).
        peer: the remote end of a point-to-point link (same family).
        broadcast: IPv4 only — ``None`` (default) sets ``IFA_BROADCAST`` to the network's
            broadcast address when there is no peer and the prefix is at most /30, as the kernel's
            ``SIOCSIFADDR`` path does; ``True`` forces it, ``False`` leaves it out.
        nodad: IPv6 only — ``IFA_F_NODAD``, so the address is usable at once instead of
            *tentative* for a second of duplicate address detection.
        replace: update an existing address (``NLM_F_REPLACE``) instead of failing with
            ``EEXIST``.

    Raises:
        ConfigError: invalid index, address, peer of another family, or broadcast on IPv6.
    """
    check_index(index)
    iface = _coerce_interface(interface, "address")
    family = _family(iface)
    local = iface.ip.packed
    remote = local
    if peer is not None:
        peer_ip = _coerce_address(peer, "peer address")
        if peer_ip.version != iface.version:
            raise ConfigError(f"peer {peer_ip} is not of the same IP version as {iface}")
        remote = peer_ip.packed
    flags = IFA_F_NODAD if (nodad and family == AF_INET6) else 0
    body = _IFADDRMSG.pack(family, iface.network.prefixlen, flags, RT_SCOPE_UNIVERSE, index)
    body += _attr(IFA_LOCAL, local) + _attr(IFA_ADDRESS, remote)
    if family == AF_INET:
        if broadcast is None:
            broadcast = peer is None and iface.network.prefixlen <= 30
        if broadcast:
            body += _attr(IFA_BROADCAST, iface.network.broadcast_address.packed)
    elif broadcast:
        raise ConfigError(f"{iface}: IPv6 has no broadcast address")
    nl_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
    nl_flags |= NLM_F_REPLACE if replace else NLM_F_EXCL
    return _message(RTM_NEWADDR, nl_flags, seq, body)


def encode_del_address(
    seq: int,
    index: int,
    interface: IPv4Interface | IPv6Interface | str,
    *,
    peer: IPv4Address | IPv6Address | str | None = None,
) -> bytes:
    """``RTM_DELADDR``: remove the address with exactly this local address and prefix length.

    Kernel quirk: IPv4 matches ``IFA_LOCAL`` and then ``IFA_ADDRESS`` *within the prefix* of each
    candidate, so a point-to-point address is found only when ``peer`` is given (its
    ``IFA_ADDRESS`` is the peer). IPv6 matches the local address and prefix length.

    Raises:
        ConfigError: invalid index, address or peer.
    """
    check_index(index)
    iface = _coerce_interface(interface, "address")
    remote = iface.ip.packed
    if peer is not None:
        peer_ip = _coerce_address(peer, "peer address")
        if peer_ip.version != iface.version:
            raise ConfigError(f"peer {peer_ip} is not of the same IP version as {iface}")
        remote = peer_ip.packed
    body = _IFADDRMSG.pack(_family(iface), iface.network.prefixlen, 0, 0, index)
    body += _attr(IFA_LOCAL, iface.ip.packed) + _attr(IFA_ADDRESS, remote)
    return _message(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq, body)


def encode_get_addresses(seq: int, *, index: int = 0, family: int = AF_UNSPEC) -> bytes:
    """``RTM_GETADDR`` dump of all addresses (of ``family``; both IP versions by default).

    The kernel filters by ``index`` only on a socket with ``NETLINK_GET_STRICT_CHK`` set (Linux
    4.20+); otherwise it returns every interface's addresses — filter the replies anyway.

    Raises:
        ConfigError: invalid index or family.
    """
    if index:
        check_index(index)
    if family not in (AF_UNSPEC, AF_INET, AF_INET6):
        raise ConfigError(f"address family {family!r} is not AF_UNSPEC, AF_INET or AF_INET6")
    # Strict checking rejects a dump request whose prefixlen, flags or scope are not zero.
    body = _IFADDRMSG.pack(family, 0, 0, 0, index)
    return _message(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def parse_address(message: NetlinkMessage) -> AddressInfo | None:
    """Decode an ``RTM_NEWADDR`` reply.

    Returns:
        The address, or ``None`` for families other than IPv4/IPv6 (an ``AF_UNSPEC`` dump may
        carry others, e.g. MCTP).

    Raises:
        NetlinkDecodeError: wrong type, short payload, bad prefix length or attribute sizes, or no
            address at all.
    """
    if message.type != RTM_NEWADDR:
        raise NetlinkDecodeError(f"expected RTM_NEWADDR (20), got message type {message.type}")
    payload = message.payload
    if len(payload) < _IFADDRMSG.size:
        raise NetlinkDecodeError(f"RTM_NEWADDR payload of {len(payload)} bytes is too short")
    family, prefixlen, flags, scope, index = _IFADDRMSG.unpack_from(payload)
    if family not in (AF_INET, AF_INET6):
        return None
    if prefixlen > (32 if family == AF_INET else 128):
        raise NetlinkDecodeError(f"prefix length {prefixlen} is too long for family {family}")
    local: bytes | None = None
    address: bytes | None = None
    broadcast: IPv4Address | None = None
    label: str | None = None
    for type_, value in iter_attributes(payload, _IFADDRMSG.size):
        if type_ == IFA_LOCAL:
            local = _raw_ip(family, value, "IFA_LOCAL")
        elif type_ == IFA_ADDRESS:
            address = _raw_ip(family, value, "IFA_ADDRESS")
        elif type_ == IFA_BROADCAST and family == AF_INET:
            broadcast = IPv4Address(_raw_ip(family, value, "IFA_BROADCAST"))
        elif type_ == IFA_LABEL:
            label = _string(value)
        elif type_ == IFA_FLAGS:
            # The header byte holds only the low 8 bits; IFA_FLAGS (3.14+) has all of them.
            flags = _u32(value, "IFA_FLAGS")
    # IFA_LOCAL is this host's address and IFA_ADDRESS the peer (or the same); an IPv6 address
    # without a peer comes with IFA_ADDRESS alone.
    mine = local if local is not None else address
    if mine is None:
        raise NetlinkDecodeError("RTM_NEWADDR without IFA_LOCAL or IFA_ADDRESS")
    other = address if (local is not None and address is not None and address != local) else None
    # Built from (packed bytes, prefix): ~2.5 us, where (IPv6Address, prefix) costs ~16 us.
    iface: IPv4Interface | IPv6Interface
    peer: IPv4Address | IPv6Address | None
    if family == AF_INET:
        iface = IPv4Interface((mine, prefixlen))
        peer = None if other is None else IPv4Address(other)
    else:
        iface = IPv6Interface((mine, prefixlen))
        peer = None if other is None else IPv6Address(other)
    return AddressInfo(index, iface, peer, broadcast, flags, scope, label)


# --- routes --------------------------------------------------------------------------------------


def _route_body(
    index: int,
    network: object,
    gateway: object,
    metric: object,
    *,
    protocol: int,
    scope: int | None,
    type_: int,
    table: int,
) -> bytes:
    check_index(index)
    check_table(table)
    net = _coerce_network(network)
    family = AF_INET if net.version == 4 else AF_INET6
    gw: IPv4Address | IPv6Address | None = None
    if gateway is not None:
        gw = _coerce_address(gateway, "gateway")
        if gw.version != net.version:
            raise ConfigError(f"gateway {gw} is not of the same IP version as {net}")
        if gw.is_unspecified or gw.is_multicast:
            raise ConfigError(f"gateway {gw} is unspecified or multicast")
        if isinstance(gw, IPv6Address) and gw.scope_id is not None:
            raise ConfigError(f"gateway {gw} takes no scope: the route's device is its scope")
    if scope is None:
        # IPv6 ignores rtm_scope and reports universe; IPv4 on-link routes are scope link.
        scope = RT_SCOPE_LINK if (gw is None and family == AF_INET) else RT_SCOPE_UNIVERSE
    body = _RTMSG.pack(family, net.prefixlen, 0, 0, _table_byte(table), protocol, scope, type_, 0)
    if net.prefixlen:
        body += _attr(RTA_DST, net.network_address.packed)
    body += _attr_u32(RTA_OIF, index)
    if gw is not None:
        body += _attr(RTA_GATEWAY, gw.packed)
    if metric is not None:
        body += _attr_u32(RTA_PRIORITY, _check_range(metric, "route metric", 0, _U32_MAX))
    if table != RT_TABLE_MAIN:
        body += _attr_u32(RTA_TABLE, table)
    return body


def _table_byte(table: int) -> int:
    # rtm_table is one byte; for a larger id the kernel itself reports RT_TABLE_COMPAT and puts
    # the id in RTA_TABLE, which wins over the byte in a request.
    return table if table < 256 else RT_TABLE_COMPAT


def encode_new_route(
    seq: int,
    index: int,
    network: IPv4Network | IPv6Network | str,
    *,
    gateway: IPv4Address | IPv6Address | str | None = None,
    metric: int | None = None,
    protocol: int = RTPROT_STATIC,
    replace: bool = False,
    table: int = RT_TABLE_MAIN,
) -> bytes:
    """``RTM_NEWROUTE``: a unicast route in routing table ``table`` out of interface ``index``.

    Args:
        seq: sequence number.
        index: the output interface.
        network: the destination network (host bits must be zero).
        gateway: the next hop; without one the route is on-link (IPv4: scope link).
        metric: ``RTA_PRIORITY``; ``None`` lets the kernel choose (IPv4 0, IPv6 1024).
        protocol: ``RTPROT_STATIC`` (4, default) or ``RTPROT_BOOT`` (3, what ``ip route``
            uses) — anything below 256.
        replace: replace a route with the same key (``NLM_F_REPLACE``) instead of ``EEXIST``.
        table: the routing table, 1 to 2**32 - 1 (``RT_TABLE_MAIN`` = 254 by default); the
            kernel creates a table on its first route. Any other than main is also sent as
            ``RTA_TABLE`` (the header's byte says ``RT_TABLE_COMPAT`` for ids above 255).

    Raises:
        ConfigError: invalid index, network, gateway (of another family, or with an IPv6
            scope), metric, protocol or table.
    """
    _check_range(protocol, "route protocol", 0, 255)
    body = _route_body(
        index,
        network,
        gateway,
        metric,
        protocol=protocol,
        scope=None,
        type_=RTN_UNICAST,
        table=table,
    )
    nl_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
    nl_flags |= NLM_F_REPLACE if replace else NLM_F_EXCL
    return _message(RTM_NEWROUTE, nl_flags, seq, body)


def encode_del_route(
    seq: int,
    index: int,
    network: IPv4Network | IPv6Network | str,
    *,
    gateway: IPv4Address | IPv6Address | str | None = None,
    metric: int | None = None,
    table: int = RT_TABLE_MAIN,
) -> bytes:
    """``RTM_DELROUTE``: delete the first matching route out of interface ``index`` in ``table``.

    Protocol 0, type 0 and scope ``RT_SCOPE_NOWHERE`` are the kernel's wildcards (as ``ip route
    del`` sends); without ``gateway``/``metric`` any route to ``network`` via ``index`` matches.

    Raises:
        ConfigError: invalid index, network, gateway, metric or table.
    """
    body = _route_body(
        index,
        network,
        gateway,
        metric,
        protocol=RTPROT_UNSPEC,
        scope=RT_SCOPE_NOWHERE,
        type_=RTN_UNSPEC,
        table=table,
    )
    return _message(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, seq, body)


def encode_get_routes(
    seq: int,
    *,
    index: int = 0,
    family: int = AF_UNSPEC,
    table: int = RT_TABLE_MAIN,
    route_type: int = RTN_UNICAST,
) -> bytes:
    """``RTM_GETROUTE`` dump of one table's routes of ``route_type`` (0: every type —
    blackhole, unreachable… as ``ip route show table`` lists them), out of ``index`` if given.

    The header's table and type and an ``RTA_OIF`` attribute are filters only on a socket with
    ``NETLINK_GET_STRICT_CHK`` (which then answers ``ENODEV`` for a missing index, and
    ``ENOENT`` for an IPv4 or IPv6 table that does not exist yet); an older kernel ignores them
    and dumps every route — filter the replies with :func:`routes_via`. A table id above 255
    needs ``RTA_TABLE``, which under strict checking MPLS rejects in an ``AF_UNSPEC`` dump, so
    such a table is dumped one family at a time.

    Raises:
        ConfigError: invalid index, family or table, or a table above 255 with ``AF_UNSPEC``.
    """
    if family not in (AF_UNSPEC, AF_INET, AF_INET6):
        raise ConfigError(f"address family {family!r} is not AF_UNSPEC, AF_INET or AF_INET6")
    check_table(table)
    if table > 255 and family == AF_UNSPEC:
        raise ConfigError(f"dump table {table} one address family at a time (not AF_UNSPEC)")
    if not 0 <= route_type <= 255:
        raise ConfigError(f"route type {route_type!r} is not 0…255")
    body = _RTMSG.pack(family, 0, 0, 0, _table_byte(table), 0, 0, route_type, 0)
    if index:
        body += _attr_u32(RTA_OIF, check_index(index))
    if table > 255:
        body += _attr_u32(RTA_TABLE, table)
    return _message(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def encode_route_lookup(seq: int, address: IPv4Address | IPv6Address | str) -> bytes:
    """``RTM_GETROUTE`` for one destination (``ip route get``): the route the kernel would use.

    The answer is one ``RTM_NEWROUTE``; its type is ``RTN_LOCAL`` once the address is one of
    this host's and ready to receive (an IPv6 address's local route appears a moment after the
    address itself — see :meth:`~tunflow.platform.linux.netlink.RtNetlink.route_type`).

    Raises:
        ConfigError: not an IP address.
    """
    addr = _coerce_address(address, "address")
    family = AF_INET if addr.version == 4 else AF_INET6
    body = _RTMSG.pack(family, addr.max_prefixlen, 0, 0, 0, 0, 0, 0, 0)
    body += _attr(RTA_DST, addr.packed)
    return _message(RTM_GETROUTE, NLM_F_REQUEST, seq, body)


def _parse_nexthops(
    family: int, value: bytes
) -> tuple[tuple[int, IPv4Address | IPv6Address | None], ...]:
    hops: list[tuple[int, IPv4Address | IPv6Address | None]] = []
    offset = 0
    while len(value) - offset >= _RTNEXTHOP.size:
        length, _flags, _hops, ifindex = _RTNEXTHOP.unpack_from(value, offset)
        if length < _RTNEXTHOP.size or length > len(value) - offset:
            raise NetlinkDecodeError(f"rtnexthop at offset {offset} has length {length}")
        gw: IPv4Address | IPv6Address | None = None
        for type_, attr in iter_attributes(value[offset + _RTNEXTHOP.size : offset + length]):
            if type_ == RTA_GATEWAY:
                gw = _ip(family, attr, "RTA_GATEWAY")
            elif type_ == RTA_VIA:
                gw = _parse_via(attr)
        hops.append((ifindex, gw))
        offset += _align(length)
    return tuple(hops)


def _parse_via(value: bytes) -> IPv4Address | IPv6Address:
    # struct rtvia { __kernel_sa_family_t rtvia_family; __u8 rtvia_addr[]; } — an IPv4 route
    # through an IPv6 next hop (RFC 5549) uses it instead of RTA_GATEWAY.
    if len(value) < 2:
        raise NetlinkDecodeError("RTA_VIA shorter than its family field")
    (family,) = _U16.unpack_from(value)
    return _ip(family, value[2:], "RTA_VIA")


def parse_route(message: NetlinkMessage) -> RouteEntry | None:
    """Decode an ``RTM_NEWROUTE`` reply.

    Returns:
        The route, or ``None`` for families other than IPv4/IPv6 (multicast routing, MPLS…).

    Raises:
        NetlinkDecodeError: wrong type, short payload, bad prefix length or attribute sizes.
    """
    if message.type != RTM_NEWROUTE:
        raise NetlinkDecodeError(f"expected RTM_NEWROUTE (24), got message type {message.type}")
    payload = message.payload
    if len(payload) < _RTMSG.size:
        raise NetlinkDecodeError(f"RTM_NEWROUTE payload of {len(payload)} bytes is too short")
    family, dst_len, _src, _tos, table, protocol, scope, type_, flags = _RTMSG.unpack_from(payload)
    if family not in (AF_INET, AF_INET6):
        return None
    width = 32 if family == AF_INET else 128
    if dst_len > width:
        raise NetlinkDecodeError(f"destination length {dst_len} is too long for family {family}")
    dst = bytes(width // 8)
    oif = metric = mtu = 0
    gateway: IPv4Address | IPv6Address | None = None
    nexthops: tuple[tuple[int, IPv4Address | IPv6Address | None], ...] = ()
    for attr_type, value in iter_attributes(payload, _RTMSG.size):
        if attr_type == RTA_DST:
            dst = _raw_ip(family, value, "RTA_DST")
        elif attr_type == RTA_OIF:
            oif = _u32(value, "RTA_OIF")
        elif attr_type == RTA_GATEWAY:
            gateway = _ip(family, value, "RTA_GATEWAY")
        elif attr_type == RTA_VIA:
            gateway = _parse_via(value)
        elif attr_type == RTA_PRIORITY:
            metric = _u32(value, "RTA_PRIORITY")
        elif attr_type == RTA_TABLE:
            # rtm_table is a byte (RT_TABLE_COMPAT for ids above 255); RTA_TABLE has the id.
            table = _u32(value, "RTA_TABLE")
        elif attr_type == RTA_MULTIPATH:
            nexthops = _parse_nexthops(family, value)
        elif attr_type == RTA_METRICS:
            for metric_type, metric_value in iter_attributes(value):
                if metric_type == RTAX_MTU:
                    mtu = _u32(metric_value, "RTAX_MTU")
    network: IPv4Network | IPv6Network
    if family == AF_INET:
        network = IPv4Network((dst, dst_len), strict=False)
    else:
        network = IPv6Network((dst, dst_len), strict=False)
    return RouteEntry(
        family, network, type_, table, protocol, scope, flags, metric, oif, gateway, nexthops, mtu
    )


def routes_via(
    entries: Iterable[RouteEntry | None], index: int, *, table: int = RT_TABLE_MAIN
) -> list[Route]:
    """The unicast routes of ``table`` (main by default) among ``entries`` that leave through
    interface ``index``.

    A multipath route counts once per next hop through ``index``. Cached clones (PMTU and
    redirect exceptions, ``RTM_F_CLONED``) are not routes anyone configured and are left out.
    """
    out: list[Route] = []
    for e in entries:
        if e is None or e.type != RTN_UNICAST or e.table != table:
            continue
        if e.flags & RTM_F_CLONED:
            continue
        hops = e.nexthops or ((e.oif, e.gateway),)
        for oif, gateway in hops:
            if oif == index:
                out.append(Route(e.destination, gateway, e.metric, e.table, e.protocol, e.scope))
    return out


# --- policy routing rules ------------------------------------------------------------------------


def _rule_body(
    family: int,
    *,
    table: int | None,
    priority: int | None,
    fwmark: int | None,
    fwmask: int | None,
    invert: bool,
    suppress_prefixlength: int | None,
) -> bytes:
    if family not in (AF_INET, AF_INET6):
        raise ConfigError(f"address family {family!r} is not AF_INET or AF_INET6")
    if not isinstance(invert, bool):
        raise ConfigError(f"invert={invert!r} is not a bool")
    attrs_ = b""
    if priority is not None:
        attrs_ += _attr_u32(FRA_PRIORITY, _check_range(priority, "rule priority", 0, _U32_MAX))
    if fwmark is not None:
        attrs_ += _attr_u32(FRA_FWMARK, _check_range(fwmark, "fwmark", 0, _U32_MAX))
    if fwmask is not None:
        if fwmark is None:
            raise ConfigError(f"fwmask {fwmask!r} without a fwmark")
        attrs_ += _attr_u32(FRA_FWMASK, _check_range(fwmask, "fwmask", 0, _U32_MAX))
    if suppress_prefixlength is not None:
        width = 32 if family == AF_INET else 128
        attrs_ += _attr_u32(
            FRA_SUPPRESS_PREFIXLEN,
            _check_range(suppress_prefixlength, "suppress_prefixlength", 0, width),
        )
    header_table, action = RT_TABLE_UNSPEC, FR_ACT_UNSPEC
    if table is not None:
        check_table(table)
        # As iproute2 sends it: the id in FRA_TABLE (which the kernel reads first), the header
        # byte only when the id fits.
        header_table = table if table < 256 else RT_TABLE_UNSPEC
        action = FR_ACT_TO_TBL
        attrs_ += _attr_u32(FRA_TABLE, table)
    flags = FIB_RULE_INVERT if invert else 0
    return _FIB_RULE_HDR.pack(family, 0, 0, 0, header_table, 0, 0, action, flags) + attrs_


def encode_new_rule(
    seq: int,
    family: int,
    *,
    table: int,
    priority: int | None = None,
    fwmark: int | None = None,
    fwmask: int | None = None,
    invert: bool = False,
    suppress_prefixlength: int | None = None,
) -> bytes:
    """``RTM_NEWRULE``: a policy routing rule "look the packet up in ``table``" (``ip rule add``).

    The rule matches every packet of ``family`` unless narrowed by ``fwmark``; ``invert``
    matches the packets the selectors do *not* match. Examples, as wg-quick adds them::

        encode_new_rule(seq, AF_INET, table=51820, fwmark=51820, invert=True)
        # ip -4 rule add not fwmark 51820 table 51820
        encode_new_rule(seq, AF_INET, table=RT_TABLE_MAIN, suppress_prefixlength=0)
        # ip -4 rule add table main suppress_prefixlength 0

    Args:
        seq: sequence number.
        family: ``AF_INET`` or ``AF_INET6`` (each has its own rule list).
        table: the table to look up, 1 to 2**32 - 1.
        priority: the rule's preference (lower is earlier); ``None`` lets the kernel put it
            just before the first rule after priority 0 — what ``ip rule add`` does without
            ``pref``, so each new rule goes before the ones added earlier.
        fwmark: match packets with this mark (``SO_MARK``, netfilter ``MARK``).
        fwmask: the bits of the mark compared (the kernel's default: all of them when
            ``fwmark`` is not 0).
        invert: the "not" of ``ip rule``: ``FIB_RULE_INVERT``.
        suppress_prefixlength: ignore a result of this table whose prefix length is at most
            this (0: a default route does not count, the lookup goes on to the next rule).

    Raises:
        ConfigError: a bad family, table, priority, mark, mask (or a mask without a mark) or
            prefix length (above 32 for IPv4, 128 for IPv6).
    """
    body = _rule_body(
        family,
        table=table,
        priority=priority,
        fwmark=fwmark,
        fwmask=fwmask,
        invert=invert,
        suppress_prefixlength=suppress_prefixlength,
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    return _message(RTM_NEWRULE, flags, seq, body)


def encode_del_rule(
    seq: int,
    family: int,
    *,
    table: int | None = None,
    priority: int | None = None,
    fwmark: int | None = None,
    fwmask: int | None = None,
    invert: bool = False,
    suppress_prefixlength: int | None = None,
) -> bytes:
    """``RTM_DELRULE``: delete the first rule of ``family`` that matches (``ip rule del``).

    What is left out is a wildcard for the kernel: without ``priority`` a rule of any priority
    matches, without ``table`` a rule of any table (and action). The kernel does not compare the
    ``invert`` flag; it is sent for symmetry with :func:`encode_new_rule`.

    Raises:
        ConfigError: as :func:`encode_new_rule`.
    """
    body = _rule_body(
        family,
        table=table,
        priority=priority,
        fwmark=fwmark,
        fwmask=fwmask,
        invert=invert,
        suppress_prefixlength=suppress_prefixlength,
    )
    return _message(RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK, seq, body)


# --- link statistics -----------------------------------------------------------------------------

IFLA_STATS64: Final = 23
# struct rtnl_link_stats64 begins with these eight __u64 counters on every kernel since 2.6.35.
_STATS64_HEAD = struct.Struct("=8Q")


@attrs.frozen
class LinkStats:
    """The first counters of ``struct rtnl_link_stats64`` (``IFLA_STATS64``).

    For a TUN/TAP device, *tx* is towards the program reading the device: ``tx_dropped``
    counts packets the kernel dropped because the device's queue was full (nobody read).
    """

    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    rx_errors: int
    tx_errors: int
    rx_dropped: int
    tx_dropped: int


def encode_get_link_stats(seq: int, index: int) -> bytes:
    """``RTM_GETLINK`` for one link by index, statistics included (no ``IFLA_EXT_MASK``).

    Raises:
        ConfigError: an invalid index.
    """
    check_index(index)
    return _message(RTM_GETLINK, NLM_F_REQUEST, seq, _IFINFOMSG.pack(AF_UNSPEC, 0, index, 0, 0))


def parse_link_stats(message: NetlinkMessage) -> LinkStats:
    """The ``IFLA_STATS64`` counters of an ``RTM_NEWLINK`` reply.

    Raises:
        NetlinkDecodeError: wrong message type, short payload, or no (or a short)
            ``IFLA_STATS64`` attribute.
    """
    if message.type != RTM_NEWLINK:
        raise NetlinkDecodeError(f"expected RTM_NEWLINK (16), got message type {message.type}")
    payload = message.payload
    if len(payload) < _IFINFOMSG.size:
        raise NetlinkDecodeError(f"RTM_NEWLINK payload of {len(payload)} bytes is too short")
    for type_, value in iter_attributes(payload, _IFINFOMSG.size):
        if type_ == IFLA_STATS64:
            if len(value) < _STATS64_HEAD.size:
                raise NetlinkDecodeError(f"IFLA_STATS64 of {len(value)} bytes is too short")
            return LinkStats(*_STATS64_HEAD.unpack_from(value))
    raise NetlinkDecodeError("RTM_NEWLINK reply without IFLA_STATS64")
