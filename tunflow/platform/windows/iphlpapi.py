"""IP Helper (iphlpapi.dll) bindings: addresses, routes, MTU, metric and DNS of one interface.

Structures follow ``netioapi.h``/``ws2ipdef.h`` with fixed-width ctypes types; their x64 sizes
(``MIB_UNICASTIPADDRESS_ROW`` 80, ``MIB_IPINTERFACE_ROW`` 168, ``MIB_IPFORWARD_ROW2`` 104 bytes)
are checked by the unit tests against the sizes wireguard-windows measured with the Windows SDK.

Interface configuration as tun-rs (PR #140) and wireguard-windows do it: an address is a
``MIB_UNICASTIPADDRESS_ROW`` passed to ``CreateUnicastIpAddressEntry``; MTU and metric are
``NlMtu``/``Metric`` of the interface's ``MIB_IPINTERFACE_ROW`` per address family
(``SitePrefixLength`` must be 0 for IPv4 when setting it back); routes are
``MIB_IPFORWARD_ROW2``; DNS servers go through ``SetInterfaceDnsSettings`` (Windows 10 2004+)
and, where it is missing, ``netsh``, then the resolver cache is flushed
(:func:`flush_resolver_cache`). A machine without an IPv6 stack answers ``ERROR_NOT_FOUND``
for the IPv6 interface row: MTU and metric then skip IPv6 with a log message (ecosystem notes §2
item 9).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import uuid
from collections.abc import Iterator
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_network,
)
from typing import Any, Final

from ...errors import DeviceError, DeviceNotFoundError, UnsupportedError
from .._base import Route
from .._syscalls import Syscalls
from ._win32 import BOOL, ERROR_INVALID_PARAMETER, ERROR_NOT_FOUND, ERROR_SUCCESS, bind, win_error

__all__ = [
    "AF_INET",
    "AF_INET6",
    "AF_UNSPEC",
    "SOCKADDR_IN",
    "SOCKADDR_IN6",
    "SOCKADDR_INET",
    "NET_LUID",
    "GUID",
    "MIB_UNICASTIPADDRESS_ROW",
    "MIB_IPINTERFACE_ROW",
    "IP_ADDRESS_PREFIX",
    "MIB_IPFORWARD_ROW2",
    "DNS_INTERFACE_SETTINGS",
    "IpHelper",
    "flush_resolver_cache",
]

log = logging.getLogger("tunflow.platform.windows")

#: ws2def.h (Windows values; AF_INET6 is 23 there)
AF_UNSPEC: Final = 0
AF_INET: Final = 2
AF_INET6: Final = 23
#: nldef.h: NL_DAD_STATE IpDadStatePreferred; NL_ROUTE_PROTOCOL MIB_IPPROTO_NETMGMT
IP_DAD_STATE_PREFERRED: Final = 4
MIB_IPPROTO_NETMGMT: Final = 3
#: netioapi.h: DNS_INTERFACE_SETTINGS_VERSION1, DNS_SETTING_IPV6, DNS_SETTING_NAMESERVER
DNS_INTERFACE_SETTINGS_VERSION1: Final = 0x0001
DNS_SETTING_IPV6: Final = 0x0001
DNS_SETTING_NAMESERVER: Final = 0x0002
#: ifdef.h: NDIS_IF_MAX_STRING_SIZE + 1, the alias buffer length
IF_MAX_STRING_SIZE: Final = 257

_u8 = ctypes.c_uint8
_u16 = ctypes.c_uint16
_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64
_i32 = ctypes.c_int32  # C enums are int-sized


class SOCKADDR_IN(ctypes.Structure):
    """ws2def.h: ``SOCKADDR_IN`` (16 bytes; no ``sin_len`` on Windows)."""

    _fields_ = [
        ("sin_family", _u16),
        ("sin_port", _u16),
        ("sin_addr", _u8 * 4),
        ("sin_zero", _u8 * 8),
    ]


class SOCKADDR_IN6(ctypes.Structure):
    """ws2ipdef.h: ``SOCKADDR_IN6`` (28 bytes)."""

    _fields_ = [
        ("sin6_family", _u16),
        ("sin6_port", _u16),
        ("sin6_flowinfo", _u32),
        ("sin6_addr", _u8 * 16),
        ("sin6_scope_id", _u32),
    ]


class SOCKADDR_INET(ctypes.Union):
    """ws2ipdef.h: ``SOCKADDR_INET`` (28 bytes)."""

    _fields_ = [("Ipv4", SOCKADDR_IN), ("Ipv6", SOCKADDR_IN6), ("si_family", _u16)]


class NET_LUID(ctypes.Structure):
    """ifdef.h: ``NET_LUID`` (the 64-bit ``Value`` view)."""

    _fields_ = [("Value", _u64)]


class GUID(ctypes.Structure):
    """guiddef.h: ``GUID``."""

    _fields_ = [("Data1", _u32), ("Data2", _u16), ("Data3", _u16), ("Data4", _u8 * 8)]

    @classmethod
    def from_uuid(cls, value: uuid.UUID) -> GUID:
        """``value`` in Windows' layout (the first three fields little-endian)."""
        return cls.from_buffer_copy(value.bytes_le)

    def to_uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes_le=bytes(self))

    def __str__(self) -> str:
        d4 = bytes(self.Data4)
        return (
            f"{{{self.Data1:08X}-{self.Data2:04X}-{self.Data3:04X}-"
            f"{d4[:2].hex().upper()}-{d4[2:].hex().upper()}}}"
        )


class MIB_UNICASTIPADDRESS_ROW(ctypes.Structure):
    """netioapi.h: ``MIB_UNICASTIPADDRESS_ROW`` (80 bytes on x64)."""

    _fields_ = [
        ("Address", SOCKADDR_INET),
        ("InterfaceLuid", NET_LUID),
        ("InterfaceIndex", _u32),
        ("PrefixOrigin", _i32),
        ("SuffixOrigin", _i32),
        ("ValidLifetime", _u32),
        ("PreferredLifetime", _u32),
        ("OnLinkPrefixLength", _u8),
        ("SkipAsSource", _u8),
        ("DadState", _i32),
        ("ScopeId", _u32),
        ("CreationTimeStamp", ctypes.c_int64),
    ]


class MIB_IPINTERFACE_ROW(ctypes.Structure):
    """netioapi.h: ``MIB_IPINTERFACE_ROW`` (168 bytes on x64)."""

    _fields_ = [
        ("Family", _u16),
        ("InterfaceLuid", NET_LUID),
        ("InterfaceIndex", _u32),
        ("MaxReassemblySize", _u32),
        ("InterfaceIdentifier", _u64),
        ("MinRouterAdvertisementInterval", _u32),
        ("MaxRouterAdvertisementInterval", _u32),
        ("AdvertisingEnabled", _u8),
        ("ForwardingEnabled", _u8),
        ("WeakHostSend", _u8),
        ("WeakHostReceive", _u8),
        ("UseAutomaticMetric", _u8),
        ("UseNeighborUnreachabilityDetection", _u8),
        ("ManagedAddressConfigurationSupported", _u8),
        ("OtherStatefulConfigurationSupported", _u8),
        ("AdvertiseDefaultRoute", _u8),
        ("RouterDiscoveryBehavior", _i32),
        ("DadTransmits", _u32),
        ("BaseReachableTime", _u32),
        ("RetransmitTime", _u32),
        ("PathMtuDiscoveryTimeout", _u32),
        ("LinkLocalAddressBehavior", _i32),
        ("LinkLocalAddressTimeout", _u32),
        ("ZoneIndices", _u32 * 16),
        ("SitePrefixLength", _u32),
        ("Metric", _u32),
        ("NlMtu", _u32),
        ("Connected", _u8),
        ("SupportsWakeUpPatterns", _u8),
        ("SupportsNeighborDiscovery", _u8),
        ("SupportsRouterDiscovery", _u8),
        ("ReachableTime", _u32),
        ("TransmitOffload", _u8),
        ("ReceiveOffload", _u8),
        ("DisableDefaultRoutes", _u8),
    ]


class IP_ADDRESS_PREFIX(ctypes.Structure):
    """netioapi.h: ``IP_ADDRESS_PREFIX`` (32 bytes)."""

    _fields_ = [("Prefix", SOCKADDR_INET), ("PrefixLength", _u8)]


class MIB_IPFORWARD_ROW2(ctypes.Structure):
    """netioapi.h: ``MIB_IPFORWARD_ROW2`` (104 bytes on x64)."""

    _fields_ = [
        ("InterfaceLuid", NET_LUID),
        ("InterfaceIndex", _u32),
        ("DestinationPrefix", IP_ADDRESS_PREFIX),
        ("NextHop", SOCKADDR_INET),
        ("SitePrefixLength", _u8),
        ("ValidLifetime", _u32),
        ("PreferredLifetime", _u32),
        ("Metric", _u32),
        ("Protocol", _i32),
        ("Loopback", _u8),
        ("AutoconfigureAddress", _u8),
        ("Publish", _u8),
        ("Immortal", _u8),
        ("Age", _u32),
        ("Origin", _i32),
    ]


class DNS_INTERFACE_SETTINGS(ctypes.Structure):
    """netioapi.h: ``DNS_INTERFACE_SETTINGS`` (version 1; 64 bytes on x64)."""

    _fields_ = [
        ("Version", _u32),
        ("Flags", _u64),
        ("Domain", ctypes.c_wchar_p),
        ("NameServer", ctypes.c_wchar_p),
        ("SearchList", ctypes.c_wchar_p),
        ("RegistrationEnabled", _u32),
        ("RegisterAdapterName", _u32),
        ("EnableLLMNR", _u32),
        ("QueryAdapterName", _u32),
        ("ProfileNameServer", ctypes.c_wchar_p),
    ]


# -- conversions --------------------------------------------------------------------------------


def set_sockaddr(sa: SOCKADDR_INET, address: IPv4Address | IPv6Address | None, family: int) -> None:
    """Fill ``sa`` with ``address`` (``None``: the unspecified address of ``family``)."""
    ctypes.memset(ctypes.addressof(sa), 0, ctypes.sizeof(sa))
    if family == AF_INET:
        sa.Ipv4.sin_family = AF_INET
        packed = (address or IPv4Address(0)).packed
        sa.Ipv4.sin_addr[:] = list(packed)
    else:
        sa.Ipv6.sin6_family = AF_INET6
        packed = (address or IPv6Address(0)).packed
        sa.Ipv6.sin6_addr[:] = list(packed)


def get_sockaddr(sa: SOCKADDR_INET) -> IPv4Address | IPv6Address | None:
    if sa.si_family == AF_INET:
        return IPv4Address(bytes(sa.Ipv4.sin_addr))
    if sa.si_family == AF_INET6:
        return IPv6Address(bytes(sa.Ipv6.sin6_addr))
    return None


def _family(address: IPv4Address | IPv6Address | IPv4Network | IPv6Network) -> int:
    return AF_INET if address.version == 4 else AF_INET6


class IpHelper:
    """The iphlpapi.dll functions, and the interface operations built on them."""

    def __init__(self, syscalls: Syscalls) -> None:
        self.sys = syscalls
        dll = syscalls.load_library("iphlpapi.dll")
        p = ctypes.POINTER
        u32 = _u32
        self._InitializeUnicastIpAddressEntry = bind(
            dll, "InitializeUnicastIpAddressEntry", None, [p(MIB_UNICASTIPADDRESS_ROW)]
        )
        self._CreateUnicastIpAddressEntry = bind(
            dll, "CreateUnicastIpAddressEntry", u32, [p(MIB_UNICASTIPADDRESS_ROW)]
        )
        self._DeleteUnicastIpAddressEntry = bind(
            dll, "DeleteUnicastIpAddressEntry", u32, [p(MIB_UNICASTIPADDRESS_ROW)]
        )
        self._GetUnicastIpAddressTable = bind(
            dll, "GetUnicastIpAddressTable", u32, [_u16, p(ctypes.c_void_p)]
        )
        self._InitializeIpInterfaceEntry = bind(
            dll, "InitializeIpInterfaceEntry", None, [p(MIB_IPINTERFACE_ROW)]
        )
        self._GetIpInterfaceEntry = bind(dll, "GetIpInterfaceEntry", u32, [p(MIB_IPINTERFACE_ROW)])
        self._SetIpInterfaceEntry = bind(dll, "SetIpInterfaceEntry", u32, [p(MIB_IPINTERFACE_ROW)])
        self._InitializeIpForwardEntry = bind(
            dll, "InitializeIpForwardEntry", None, [p(MIB_IPFORWARD_ROW2)]
        )
        self._CreateIpForwardEntry2 = bind(
            dll, "CreateIpForwardEntry2", u32, [p(MIB_IPFORWARD_ROW2)]
        )
        self._DeleteIpForwardEntry2 = bind(
            dll, "DeleteIpForwardEntry2", u32, [p(MIB_IPFORWARD_ROW2)]
        )
        self._GetIpForwardTable2 = bind(dll, "GetIpForwardTable2", u32, [_u16, p(ctypes.c_void_p)])
        self._FreeMibTable = bind(dll, "FreeMibTable", None, [ctypes.c_void_p])
        self._ConvertInterfaceLuidToIndex = bind(
            dll, "ConvertInterfaceLuidToIndex", u32, [p(NET_LUID), p(u32)]
        )
        self._ConvertInterfaceLuidToAlias = bind(
            dll,
            "ConvertInterfaceLuidToAlias",
            u32,
            [p(NET_LUID), ctypes.c_wchar_p, ctypes.c_size_t],
        )
        self._ConvertInterfaceLuidToGuid = bind(
            dll, "ConvertInterfaceLuidToGuid", u32, [p(NET_LUID), p(GUID)]
        )
        self._ConvertInterfaceAliasToLuid = bind(
            dll, "ConvertInterfaceAliasToLuid", u32, [ctypes.c_wchar_p, p(NET_LUID)]
        )
        try:
            self._SetInterfaceDnsSettings: Any = bind(
                dll, "SetInterfaceDnsSettings", u32, [GUID, p(DNS_INTERFACE_SETTINGS)]
            )
        except AttributeError:  # before Windows 10 2004
            self._SetInterfaceDnsSettings = None

    @staticmethod
    def _check(code: int, what: str) -> None:
        if code != ERROR_SUCCESS:
            raise win_error(code, what)

    # -- identity -----------------------------------------------------------------------------

    def luid_to_index(self, luid: int) -> int:
        index = _u32(0)
        self._check(
            self._ConvertInterfaceLuidToIndex(ctypes.byref(NET_LUID(luid)), ctypes.byref(index)),
            "ConvertInterfaceLuidToIndex",
        )
        return int(index.value)

    def luid_to_alias(self, luid: int) -> str:
        buf = ctypes.create_unicode_buffer(IF_MAX_STRING_SIZE)
        self._check(
            self._ConvertInterfaceLuidToAlias(
                ctypes.byref(NET_LUID(luid)), buf, IF_MAX_STRING_SIZE
            ),
            "ConvertInterfaceLuidToAlias",
        )
        return buf.value

    def luid_to_guid(self, luid: int) -> GUID:
        guid = GUID()
        self._check(
            self._ConvertInterfaceLuidToGuid(ctypes.byref(NET_LUID(luid)), ctypes.byref(guid)),
            "ConvertInterfaceLuidToGuid",
        )
        return guid

    def alias_to_luid(self, alias: str) -> int:
        """The LUID of the interface called ``alias``.

        Raises:
            DeviceNotFoundError: no interface has that alias. ``ConvertInterfaceAliasToLuid``
                reports that as ``ERROR_INVALID_PARAMETER`` (netioapi.h: "the InterfaceAlias
                parameter was invalid"), not as a "not found" code.
        """
        luid = NET_LUID()
        code = self._ConvertInterfaceAliasToLuid(alias, ctypes.byref(luid))
        what = f"find the interface named {alias!r}"
        if code == ERROR_INVALID_PARAMETER and alias:
            exc = DeviceNotFoundError(errno.ENOENT, f"{what}: no interface has that name")
            exc.winerror = code  # type: ignore[attr-defined]
            raise exc
        self._check(code, what)
        return int(luid.Value)

    # -- MTU and metric -----------------------------------------------------------------------

    def _interface_row(self, luid: int, family: int) -> MIB_IPINTERFACE_ROW:
        row = MIB_IPINTERFACE_ROW()
        self._InitializeIpInterfaceEntry(ctypes.byref(row))
        row.Family = family
        row.InterfaceLuid.Value = luid
        self._check(self._GetIpInterfaceEntry(ctypes.byref(row)), "GetIpInterfaceEntry")
        return row

    def _set_interface_row(self, row: MIB_IPINTERFACE_ROW) -> None:
        if row.Family == AF_INET:
            row.SitePrefixLength = 0  # SetIpInterfaceEntry refuses anything else for IPv4
        self._check(self._SetIpInterfaceEntry(ctypes.byref(row)), "SetIpInterfaceEntry")

    def _families(self, luid: int) -> Iterator[MIB_IPINTERFACE_ROW]:
        for family in (AF_INET, AF_INET6):
            try:
                yield self._interface_row(luid, family)
            except DeviceError as exc:
                if family == AF_INET6 and getattr(exc, "winerror", None) == ERROR_NOT_FOUND:
                    log.info("the interface has no IPv6 stack; IPv6 settings skipped")
                    continue
                raise

    def mtu(self, luid: int, family: int = AF_INET) -> int:
        return int(self._interface_row(luid, family).NlMtu)

    def set_mtu(self, luid: int, mtu: int) -> None:
        for row in self._families(luid):
            row.NlMtu = mtu
            self._set_interface_row(row)

    def set_mtu_v4(self, luid: int, mtu: int) -> None:
        row = self._interface_row(luid, AF_INET)
        row.NlMtu = mtu
        self._set_interface_row(row)

    def _ipv6_row(self, luid: int) -> MIB_IPINTERFACE_ROW:
        """The IPv6 interface row; :class:`~tunflow.UnsupportedError` on a machine without an
        IPv6 stack (``ERROR_NOT_FOUND``)."""
        try:
            return self._interface_row(luid, AF_INET6)
        except DeviceError as exc:
            if getattr(exc, "winerror", None) == ERROR_NOT_FOUND:
                raise UnsupportedError(
                    "the machine has no IPv6 stack: the interface has no IPv6 MTU"
                ) from exc
            raise

    def mtu_v6(self, luid: int) -> int:
        return int(self._ipv6_row(luid).NlMtu)

    def set_mtu_v6(self, luid: int, mtu: int) -> None:
        row = self._ipv6_row(luid)
        row.NlMtu = mtu
        self._set_interface_row(row)

    def largest_mtu(self, luid: int) -> int:
        """The larger of the IPv4 and IPv6 MTUs (IPv4's on a machine without IPv6)."""
        return max(int(row.NlMtu) for row in self._families(luid))

    def set_metric(self, luid: int, metric: int) -> None:
        for row in self._families(luid):
            row.UseAutomaticMetric = 0
            row.Metric = metric
            self._set_interface_row(row)

    # -- addresses ----------------------------------------------------------------------------

    def _table(self, getter: Any, what: str, row_type: Any) -> list[Any]:
        table = ctypes.c_void_p()
        code = getter(AF_UNSPEC, ctypes.byref(table))
        if code == ERROR_NOT_FOUND:
            # GetUnicastIpAddressTable / GetIpForwardTable2 (learn.microsoft.com, netioapi.h):
            # ERROR_NOT_FOUND is "no entries as specified in the Family parameter were found" —
            # an empty table, not a failure (and no table to free)
            return []
        self._check(code, what)
        if not table.value:
            return []
        try:
            count = _u32.from_address(table.value).value
            # The rows start after NumEntries, aligned to the row's 8-byte alignment.
            rows = (row_type * count).from_address(table.value + 8)
            return [row_type.from_buffer_copy(r) for r in rows]
        finally:
            self._FreeMibTable(table.value)

    def addresses(self, luid: int) -> list[IPv4Interface | IPv6Interface]:
        out: list[IPv4Interface | IPv6Interface] = []
        for row in self._table(
            self._GetUnicastIpAddressTable, "GetUnicastIpAddressTable", MIB_UNICASTIPADDRESS_ROW
        ):
            if row.InterfaceLuid.Value != luid:
                continue
            address = get_sockaddr(row.Address)
            if isinstance(address, IPv4Address):
                out.append(IPv4Interface((address, int(row.OnLinkPrefixLength))))
            elif isinstance(address, IPv6Address):
                out.append(IPv6Interface((address, int(row.OnLinkPrefixLength))))
        return out

    def _address_row(
        self, luid: int, address: IPv4Address | IPv6Address
    ) -> MIB_UNICASTIPADDRESS_ROW:
        row = MIB_UNICASTIPADDRESS_ROW()
        self._InitializeUnicastIpAddressEntry(ctypes.byref(row))
        row.InterfaceLuid.Value = luid
        set_sockaddr(row.Address, address, _family(address))
        return row

    def add_address(self, luid: int, iface: IPv4Interface | IPv6Interface) -> None:
        row = self._address_row(luid, iface.ip)
        row.OnLinkPrefixLength = iface.network.prefixlen
        row.DadState = IP_DAD_STATE_PREFERRED
        self._check(self._CreateUnicastIpAddressEntry(ctypes.byref(row)), f"add address {iface}")

    def remove_address(self, luid: int, address: IPv4Address | IPv6Address) -> None:
        row = self._address_row(luid, address)
        self._check(
            self._DeleteUnicastIpAddressEntry(ctypes.byref(row)), f"remove address {address}"
        )

    # -- routes -------------------------------------------------------------------------------

    def _route_row(self, luid: int, route: Route) -> MIB_IPFORWARD_ROW2:
        row = MIB_IPFORWARD_ROW2()
        self._InitializeIpForwardEntry(ctypes.byref(row))
        row.InterfaceLuid.Value = luid
        family = _family(route.destination)
        set_sockaddr(row.DestinationPrefix.Prefix, route.destination.network_address, family)
        row.DestinationPrefix.PrefixLength = route.destination.prefixlen
        set_sockaddr(row.NextHop, route.gateway, family)
        row.Metric = route.metric or 0
        row.Protocol = MIB_IPPROTO_NETMGMT
        return row

    def routes(self, luid: int) -> list[Route]:
        out: list[Route] = []
        for row in self._table(self._GetIpForwardTable2, "GetIpForwardTable2", MIB_IPFORWARD_ROW2):
            if row.InterfaceLuid.Value != luid:
                continue
            dest = get_sockaddr(row.DestinationPrefix.Prefix)
            if dest is None:
                continue
            gateway = get_sockaddr(row.NextHop)
            if gateway is not None and int(gateway) == 0:
                gateway = None
            network = ip_network((dest, int(row.DestinationPrefix.PrefixLength)), strict=False)
            out.append(Route(network, gateway, int(row.Metric)))
        return out

    def add_route(self, luid: int, route: Route) -> None:
        row = self._route_row(luid, route)
        self._check(
            self._CreateIpForwardEntry2(ctypes.byref(row)), f"add route {route.destination}"
        )

    def remove_route(self, luid: int, route: Route) -> None:
        row = self._route_row(luid, route)
        self._check(
            self._DeleteIpForwardEntry2(ctypes.byref(row)), f"remove route {route.destination}"
        )

    # -- DNS ----------------------------------------------------------------------------------

    def set_dns_servers(
        self, luid: int, servers: tuple[IPv4Address | IPv6Address, ...], *, alias: str
    ) -> None:
        """Set the interface's DNS servers of each family in ``servers`` (IPv4, then IPv6);
        a family not in ``servers`` keeps its own."""
        for version in (4, 6):
            chosen = [s for s in servers if s.version == version]
            if chosen:
                self._dns(luid, version, chosen, alias)

    def clear_dns_servers(self, luid: int, versions: tuple[int, ...], *, alias: str) -> None:
        """Remove the interface's DNS servers of each IP version in ``versions``."""
        for version in versions:
            self._dns(luid, version, [], alias)

    def _dns(
        self, luid: int, version: int, servers: list[IPv4Address | IPv6Address], alias: str
    ) -> None:
        """One family's servers (none: cleared) with one ``SetInterfaceDnsSettings`` call:
        ``DNS_SETTING_NAMESERVER`` (``| DNS_SETTING_IPV6`` for IPv6, whose ``NameServer`` must
        then hold IPv6 addresses) and ``NameServer`` the comma-separated list — empty to clear,
        as wireguard-windows' ``FlushDNS`` and tun-rs do (netioapi.h,
        ``DNS_INTERFACE_SETTINGS``). ``netsh`` where that function is missing."""
        if self._SetInterfaceDnsSettings is None:
            self._netsh_dns(alias, version, servers)
            return
        settings = DNS_INTERFACE_SETTINGS()
        settings.Version = DNS_INTERFACE_SETTINGS_VERSION1
        settings.Flags = DNS_SETTING_NAMESERVER | (DNS_SETTING_IPV6 if version == 6 else 0)
        settings.NameServer = ",".join(str(s) for s in servers)
        guid = self.luid_to_guid(luid)
        self._check(
            self._SetInterfaceDnsSettings(guid, ctypes.byref(settings)),
            "SetInterfaceDnsSettings",
        )

    def _netsh_dns(
        self, alias: str, version: int, servers: list[IPv4Address | IPv6Address]
    ) -> None:
        """``netsh interface ipvN set dnsservers``: ``static`` with the first server, then
        ``add dnsservers`` for each other at its ``index``; none: ``source=dhcp``, which
        removes the static servers (the interface then has only those DHCP gave it)."""
        family = "ipv4" if version == 4 else "ipv6"
        if not servers:
            self.sys.run(
                ["netsh", "interface", family, "set", "dnsservers", f"name={alias}",
                 "source=dhcp"]
            )  # fmt: skip
            return
        first, *rest = servers
        self.sys.run(
            ["netsh", "interface", family, "set", "dnsservers", f"name={alias}", "static",
             str(first), "primary", "validate=no"]
        )  # fmt: skip
        for n, server in enumerate(rest, start=2):
            self.sys.run(
                ["netsh", "interface", family, "add", "dnsservers", f"name={alias}", str(server),
                 f"index={n}", "validate=no"]
            )  # fmt: skip


def flush_resolver_cache(syscalls: Syscalls) -> None:
    """Empty the DNS resolver cache, so names resolved through the old servers are asked
    again: ``DnsFlushResolverCache`` of dnsapi.dll, what ``ipconfig /flushdns`` calls. It is
    in no SDK header; its prototype is ``BOOL WINAPI DnsFlushResolverCache(void)`` (tun-rs
    declares it ``extern "system" fn() -> i32``). Best effort, as tun-rs's: the servers are
    set either way, so a failure is logged, not raised."""
    try:
        flush = bind(syscalls.load_library("dnsapi.dll"), "DnsFlushResolverCache", BOOL, [])
    except (OSError, AttributeError) as exc:
        log.warning("DNS resolver cache not flushed: dnsapi.dll: %s", exc)
        return
    if not flush():
        log.warning(
            "DNS resolver cache not flushed: DnsFlushResolverCache failed (Win32 error %d)",
            syscalls.last_error(),
        )
