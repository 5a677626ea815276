"""Device configuration values and their validation (sans-I/O: no system calls).

Everything a :class:`~tunflow.DeviceBuilder` collects ends up in one frozen
:class:`DeviceConfig`, validated as a whole before the first system call, so a bad name, address
or MTU never leaves a half-made interface behind.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any

import attrs

from .._text import is_decimal
from ..errors import ConfigError

__all__ = [
    "Layer",
    "DeviceConfig",
    "IPv4Setting",
    "IPAddressLike",
    "NetworkLike",
    "parse_ipv4",
    "parse_ipv6",
    "parse_address",
    "parse_dns_servers",
    "parse_network",
    "parse_mac",
    "format_mac",
    "parse_netns",
    "IFNAMSIZ",
    "IPV6_MIN_MTU",
    "check_unicast",
]

#: Interface names are at most 15 bytes (16 with the terminating NUL).
IFNAMSIZ = 16
#: Linux refuses IPv6 on links whose MTU is below this (RFC 8200 §5).
IPV6_MIN_MTU = 1280
MIN_MTU = 68
MAX_MTU = 65535

IPAddressLike = str | IPv4Address | IPv6Address
NetworkLike = str | IPv4Network | IPv6Network
PrefixLike = int | str | IPv4Address | IPv6Address


class Layer(enum.Enum):
    """Which layer the device carries: :attr:`L3` (TUN, IP packets) or :attr:`L2` (TAP, frames)."""

    L3 = "tun"
    L2 = "tap"


@attrs.frozen
class IPv4Setting:
    """One IPv4 address of a device, with its optional point-to-point peer."""

    interface: IPv4Interface
    destination: IPv4Address | None = None


def _prefix_v4(prefix: PrefixLike) -> int:
    if isinstance(prefix, bool):
        raise ConfigError(f"IPv4 prefix must be an int or a netmask, not {prefix!r}")
    if isinstance(prefix, int):
        if not 0 <= prefix <= 32:
            raise ConfigError(f"IPv4 prefix length {prefix} is outside 0..32")
        return prefix
    text = str(prefix).strip()
    if is_decimal(text):  # (not "²", which str.isdigit takes)
        return _prefix_v4(int(text))
    try:
        mask = int(IPv4Address(text))
    except ValueError:
        raise ConfigError(f"{prefix!r} is neither an IPv4 prefix length nor a netmask") from None
    bits = bin(mask)[2:].rjust(32, "0")
    if "01" in bits:
        raise ConfigError(f"netmask {text} is not contiguous")
    return bits.count("1")


def _prefix_v6(prefix: PrefixLike) -> int:
    if isinstance(prefix, bool):
        raise ConfigError(f"IPv6 prefix must be an int, not {prefix!r}")
    if isinstance(prefix, int):
        if not 0 <= prefix <= 128:
            raise ConfigError(f"IPv6 prefix length {prefix} is outside 0..128")
        return prefix
    text = str(prefix).strip()
    if is_decimal(text):  # (not "²", which str.isdigit takes)
        return _prefix_v6(int(text))
    try:
        mask = int(IPv6Address(text))
    except ValueError:
        raise ConfigError(f"{prefix!r} is neither an IPv6 prefix length nor a netmask") from None
    bits = bin(mask)[2:].rjust(128, "0")
    if "01" in bits:
        raise ConfigError(f"IPv6 netmask {text} is not contiguous")
    return bits.count("1")


def parse_ipv4(address: IPAddressLike, prefix: PrefixLike | None = None) -> IPv4Interface:
    """``address``/``prefix`` as an :class:`~ipaddress.IPv4Interface`, or :class:`ConfigError`.

    ``prefix`` is a prefix length (``24``) or a dotted netmask (``"255.255.255.0"``); it is
    left out when ``address`` carries its own (``"10.0.0.1/24"``, an ``IPv4Interface``).
    """
    text, prefix = _split_prefix(address, prefix, "10.0.0.1", 24)
    try:
        addr = IPv4Address(text)
    except ValueError:
        raise ConfigError(f"{address!r} is not an IPv4 address") from None
    iface = IPv4Interface((addr, _prefix_v4(prefix)))
    check_unicast(iface.ip, address)
    return iface


def parse_ipv6(address: IPAddressLike, prefix: PrefixLike | None = None) -> IPv6Interface:
    """``address``/``prefix`` as an :class:`~ipaddress.IPv6Interface`, or :class:`ConfigError`.

    ``prefix`` is left out when ``address`` carries its own (``"fd00::1/64"``, an
    ``IPv6Interface``).
    """
    text, prefix = _split_prefix(address, prefix, "fd00::1", 64)
    try:
        addr = IPv6Address(text)
    except ValueError:
        raise ConfigError(f"{address!r} is not an IPv6 address") from None
    # (it was dropped without a word; an IPv6Interface keeps it on itself, not on its .ip)
    scope = address.scope_id if isinstance(address, IPv6Interface) else addr.scope_id
    if scope is not None:
        raise ConfigError(
            f"{address!r}: an interface address takes no scope (%{scope}): its device is its scope"
        )
    iface = IPv6Interface((addr, _prefix_v6(prefix)))
    check_unicast(iface.ip, address)
    return iface


def _split_prefix(
    address: IPAddressLike, prefix: PrefixLike | None, example: str, example_prefix: int
) -> tuple[str, PrefixLike]:
    """The address's text and its prefix: the one given, or the one after its ``/``; a
    :class:`ConfigError`, showing both forms, for two prefixes or none."""
    if isinstance(address, IPv4Interface | IPv6Interface):  # (an IPv4Address subclass)
        text, own = str(address.ip), str(address.network.prefixlen)
    else:
        text, _, own = str(address).strip().partition("/")
        if not own and "/" in str(address):
            raise ConfigError(f"{address!r} has nothing after its '/'")
    forms = f'"{example}/{example_prefix}" or ("{example}", {example_prefix})'
    if prefix is None and not own:
        raise ConfigError(f"{address!r} needs a prefix: give {forms}")
    if prefix is not None and own:
        raise ConfigError(f"{address!r} already has a prefix; give {forms}, not both")
    return text.strip(), own.strip() if prefix is None else prefix


def check_unicast(ip: IPv4Address | IPv6Address, given: object) -> None:
    """Refuse what no interface address can be (a :class:`ConfigError` naming ``given``): a
    multicast address or the unspecified one."""
    if ip.is_multicast:
        raise ConfigError(f"{given!r} is a multicast address, not an interface address")
    if ip.is_unspecified:
        raise ConfigError(f"{given!r} is the unspecified address")


def int_setting(value: object, what: str, low: int, high: int) -> int:
    """``value``, an int in ``low..high`` (not a bool).

    Raises:
        ConfigError: ``"MTU must be an int, not 'x'"``, ``"MTU 70000 is outside 68..65535"``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an int, not {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{what} {value} is outside {low}..{high}")
    return value


def check_mtu_keeps_ipv6(
    mtu: int, addresses: Callable[[], Iterable[IPv4Interface | IPv6Interface]], hint: str = ""
) -> None:
    """Refuse an ``mtu`` below :data:`IPV6_MIN_MTU` on a device that has IPv6 addresses other
    than link-local ones (a :class:`ConfigError`, ``hint`` at its end); ``addresses`` is called
    only for such an ``mtu``."""
    if mtu < IPV6_MIN_MTU and any(
        isinstance(a, IPv6Interface) and not a.ip.is_link_local for a in addresses()
    ):
        raise ConfigError(
            f"MTU {mtu} is below {IPV6_MIN_MTU}, and the device has IPv6 addresses{hint}"
        )


def check_mtu_takes_ipv6(iface: IPv6Interface, mtu: int) -> None:
    """Refuse adding the IPv6 address ``iface`` to a device whose MTU is ``mtu``, below
    :data:`IPV6_MIN_MTU` (a :class:`ConfigError`)."""
    if mtu < IPV6_MIN_MTU:
        raise ConfigError(
            f"cannot add {iface}: the MTU is {mtu}, IPv6 needs at least {IPV6_MIN_MTU} "
            "(set_mtu first)"
        )


def parse_address(address: IPAddressLike, *, prefix_ok: bool = False) -> IPv4Address | IPv6Address:
    """An IPv4 or IPv6 address, or :class:`ConfigError`. A prefix (``10.0.0.2/24``) is refused
    — a peer, gateway or DNS server is one address — unless ``prefix_ok``, when it is left
    out (the caller reads it itself)."""
    if isinstance(address, IPv4Interface | IPv6Interface):  # (an IPv4Address subclass)
        if not prefix_ok:
            raise ConfigError(f"{address!r} takes no prefix: it is one address")
        return address.ip
    if isinstance(address, IPv4Address | IPv6Address):
        return address
    text = str(address).strip()
    if "/" in text and not prefix_ok:
        raise ConfigError(f"{address!r} takes no prefix: it is one address")
    try:
        return ipaddress.ip_address(text.split("/")[0])
    except ValueError:
        raise ConfigError(f"{address!r} is not an IP address") from None


def address_list(value: Any, refused: str) -> list[Any]:
    """``value``'s items as a list; :class:`ConfigError` (``refused``) for a lone address or a
    string (a sequence of characters, not of addresses) and for what is not iterable."""
    if isinstance(value, str | bytes | bytearray | IPv4Address | IPv6Address):
        raise ConfigError(refused)
    try:
        return list(value)
    except TypeError:
        raise ConfigError(refused) from None


def parse_dns_servers(servers: Sequence[IPAddressLike]) -> tuple[IPv4Address | IPv6Address, ...]:
    """DNS server addresses, in order, of either family; :class:`ConfigError` for anything
    else: a lone address (a ``str`` is a sequence of characters, not of addresses), something
    that is not iterable, or an address no server can have (unspecified, multicast)."""
    given = address_list(servers, f"DNS servers are a list of addresses, not {servers!r}")
    out = tuple(parse_address(s) for s in given)
    for text, ip in zip(given, out, strict=True):
        if ip.is_unspecified or ip.is_multicast:
            raise ConfigError(f"{text!r} cannot be a DNS server's address")
    return out


def parse_network(network: NetworkLike) -> IPv4Network | IPv6Network:
    """A CIDR network; host bits must be clear (``10.0.0.0/24``, not ``10.0.0.1/24``)."""
    if isinstance(network, IPv4Network | IPv6Network) and "%" not in str(network):
        return network
    text = str(network).strip()
    if "%" in text:  # (an IPv6 scope, which ip_network kept and the route dropped)
        raise ConfigError(f"{network!r}: a route takes no scope: its device is its scope")
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(f"{network!r} is not a CIDR network") from None
        raise ConfigError(f"{network!r} has host bits set; did you mean {loose}?") from None


_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")


def parse_mac(mac: str | bytes | Sequence[int]) -> bytes:
    """A unicast Ethernet address as 6 bytes, from ``"02:00:00:00:00:01"`` or 6 ints/bytes."""
    if isinstance(mac, str):
        if not _MAC_RE.match(mac.strip()):
            raise ConfigError(f"{mac!r} is not a MAC address like 02:00:5e:10:00:01")
        raw = bytes.fromhex(mac.strip().replace(":", "").replace("-", ""))
    elif isinstance(mac, int):  # (bytes(123): 123 zero bytes)
        raise ConfigError(f"{mac!r} is not a MAC address")
    else:
        try:
            raw = bytes(mac)
        except (TypeError, ValueError):
            raise ConfigError(f"{mac!r} is not a MAC address") from None
        if len(raw) != 6:
            raise ConfigError(f"a MAC address has 6 bytes, not {len(raw)}")
    if raw[0] & 1:
        raise ConfigError(
            f"{format_mac(raw)} is a multicast MAC address (low bit of the first byte)"
        )
    if raw == bytes(6):
        raise ConfigError("00:00:00:00:00:00 is not a usable MAC address")
    return raw


def parse_netns(name_or_path: object) -> str:
    """A network namespace as ``ip netns`` names it or as a path (``/proc/PID/ns/net``).

    Raises:
        ConfigError: not a ``str``, empty, with a NUL, or ``"."``/``".."``.
    """
    # (a NUL was os.open()'s ValueError where the namespace is entered, a traceback out of
    # tunflow run; "." and "..", which ip netns refuses as names, its directories /run/netns
    # and /run)
    if (
        not isinstance(name_or_path, str)
        or not name_or_path
        or "\0" in name_or_path
        or name_or_path in (".", "..")
    ):
        raise ConfigError(f"netns must be a namespace name or path, not {name_or_path!r}")
    return name_or_path


def format_mac(mac: bytes) -> str:
    """``b"\\x02\\x00..."`` as ``"02:00:..."``."""
    return ":".join(f"{b:02x}" for b in mac)


def _check_name(name: str | None) -> None:
    if name is None:
        return
    if not isinstance(name, str):
        raise ConfigError(f"interface name {name!r} is not a str")
    try:
        # (surrogateescape: a name the kernel reported in bytes that are not UTF-8 is those bytes)
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ConfigError(f"interface name {name!r} cannot be encoded as UTF-8") from None
    if not raw:
        raise ConfigError("interface name is empty")
    if len(raw) >= IFNAMSIZ:
        raise ConfigError(
            f"interface name {name!r} is {len(raw)} bytes; the limit is {IFNAMSIZ - 1}"
        )
    if name in (".", "..") or any(c in name for c in "/: \t\n\0"):
        raise ConfigError(f"interface name {name!r} contains '/', ':', whitespace or is '.'/'..'")
    if "%" in name and (name.count("%") > 1 or "%d" not in name):
        # the kernel's rule (dev_alloc_name): one "%d", numbered by the kernel; no other "%"
        raise ConfigError(
            f"interface name {name!r} may hold one '%d' (for the kernel to number) and no other '%'"
        )


@attrs.frozen(kw_only=True)
class DeviceConfig:
    """Everything needed to create or attach a device. Built by :class:`~tunflow.DeviceBuilder`.

    :meth:`validate` checks the combination; each field was checked when it was set.
    """

    name: str | None = None
    layer: Layer = Layer.L3
    ipv4: tuple[IPv4Setting, ...] = ()
    ipv6: tuple[IPv6Interface, ...] = ()
    routes: tuple[IPv4Network | IPv6Network, ...] = ()
    mtu: int | None = None
    mac: bytes | None = None
    #: ``True``/``False`` bring the link up/down; ``None`` leaves the state as it is
    enabled: bool | None = True
    multi_queue: bool = False
    offload: bool = False
    packet_information: bool = False
    tx_queue_len: int | None = None
    persist: bool = False
    owner: int | None = None
    group: int | None = None
    #: the device must already exist (attach only, never create)
    attach: bool = False
    #: Linux: make the device in this network namespace (a name from ``ip netns`` or a path)
    netns: str | None = None
    # -- platform-specific, ignored where meaningless (documented per platform) --
    associate_route: bool = True
    #: Windows: the IPv4 / IPv6 MTU alone, over ``mtu`` (which sets both families)
    mtu_v4: int | None = None
    mtu_v6: int | None = None
    metric: int | None = None
    description: str | None = None
    wintun_file: str | None = None
    ring_capacity: int | None = None
    #: Windows (Wintun): the GUID the adapter is created with (``RequestedGUID``)
    device_guid: uuid.UUID | None = None
    #: Windows (Wintun): route Wintun's own messages to ``logging``
    wintun_log: bool = False
    #: Windows (Wintun): ``WintunDeleteDriver`` after the adapter is closed
    delete_driver: bool = False
    dns_servers: tuple[IPv4Address | IPv6Address, ...] = ()
    peer_feth: str | None = None

    @property
    def link_mtu(self) -> int | None:
        """The MTU of a link with one MTU for both families (every OS but Windows):
        ``mtu_v4`` when given, else ``mtu``."""
        return self.mtu_v4 if self.mtu_v4 is not None else self.mtu

    def validate(self) -> None:
        """Check the whole configuration.

        Raises:
            ConfigError: naming the first value or combination that cannot work.
        """
        _check_name(self.name)
        if self.mtu is not None and not MIN_MTU <= self.mtu <= MAX_MTU:
            raise ConfigError(f"MTU {self.mtu} is outside {MIN_MTU}..{MAX_MTU}")
        if self.mtu_v4 is not None and not MIN_MTU <= self.mtu_v4 <= MAX_MTU:
            raise ConfigError(f"IPv4 MTU {self.mtu_v4} is outside {MIN_MTU}..{MAX_MTU}")
        if self.mtu_v6 is not None and not IPV6_MIN_MTU <= self.mtu_v6 <= MAX_MTU:
            raise ConfigError(f"IPv6 MTU {self.mtu_v6} is outside {IPV6_MIN_MTU}..{MAX_MTU}")
        mtu6 = self.mtu_v6 if self.mtu_v6 is not None else self.mtu
        if self.ipv6 and mtu6 is not None and mtu6 < IPV6_MIN_MTU:
            raise ConfigError(
                f"IPv6 addresses need an MTU of at least {IPV6_MIN_MTU}; MTU is {mtu6}"
            )
        if self.mac is not None and self.layer is not Layer.L2:
            raise ConfigError("a MAC address needs a layer-2 (TAP) device: use layer(Layer.L2)")
        if self.persist and (self.name is None or "%" in self.name):
            raise ConfigError(
                "persist needs a fixed name: a kernel-chosen name would be lost when this "
                "process exits"
            )
        if self.attach and (self.name is None or "%" in self.name):
            raise ConfigError("attaching to an existing device needs its name")
        if self.tx_queue_len is not None and not 0 <= self.tx_queue_len <= 0xFFFFFFFF:
            raise ConfigError(f"tx_queue_len {self.tx_queue_len} is outside 0..2**32-1")
        for label, ident in (("owner", self.owner), ("group", self.group)):
            if ident is not None and not 0 <= ident < 0xFFFFFFFF:
                raise ConfigError(f"{label} {ident} is not a valid id")
        if self.offload and self.packet_information:
            raise ConfigError("offload and packet_information cannot be combined")
        if self.offload and self.layer is not Layer.L3:
            # The kernel's GSO frames on a TAP start with an Ethernet header that tunflow's
            # split and coalesce (IP packets) do not parse.
            raise ConfigError("offload is supported on TUN (layer 3) devices only")
        seen: set[IPv4Address | IPv6Address] = set()
        for ip in [s.interface.ip for s in self.ipv4] + [i.ip for i in self.ipv6]:
            if ip in seen:
                raise ConfigError(f"address {ip} is configured twice")
            seen.add(ip)
        if len(set(self.routes)) != len(self.routes):
            raise ConfigError("a route is configured twice")
        if self.routes and self.enabled is False:
            raise ConfigError(
                "routes need the link up (the kernel refuses a route through a down link): "
                "drop enable(False), or add the routes with add_route after enabling it"
            )
        if self.ring_capacity is not None and not 0x20000 <= self.ring_capacity <= 0x4000000:
            raise ConfigError("ring_capacity must lie in 128 KiB..64 MiB")
