"""Windows backend through fake ``kernel32``/``iphlpapi``/``wintun`` DLLs: the calls and
structures of a build, clean-up, errors, the Wintun and tap-windows6 queues, and the waits the
sync and async faces do in threads."""

from __future__ import annotations

import ctypes
import errno
import re
import struct
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, ip_network
from typing import Any

import anyio
import attrs
import pytest

from tunflow import (
    ClosedDeviceError,
    ConfigError,
    DeviceBuilder,
    DeviceBusyError,
    DeviceError,
    DeviceGoneError,
    DeviceNotFoundError,
    DevicePermissionError,
    InterruptedCallError,
    InterruptEvent,
    Layer,
    PacketTooLargeError,
    UnsupportedError,
)
from tunflow.netconfig.device import DeviceConfig
from tunflow.packet import PacketBatch
from tunflow.platform import windows
from tunflow.platform._base import Route
from tunflow.platform._syscalls import CommandError
from tunflow.platform.fake import Call, FakeSyscalls, pretend_platform
from tunflow.platform.windows import _win32, iphlpapi, tap, wintun

from .support import ipv4_packet, ipv6_packet

Fake = Callable[[str], FakeSyscalls]


def tun_config(**kw: Any) -> DeviceConfig:
    base = (
        DeviceBuilder()
        .name("wg0")
        .ipv4("10.0.0.1", 24)
        .ipv6("fd00::1", 64)
        .mtu(1400)
        .metric(7)
        .dns_servers(["10.0.0.53", "fd00::53", "10.0.0.54"])
        .route("192.0.2.0/24")
        .config()
    )
    return attrs.evolve(base, **kw)


def dll_calls(fake: FakeSyscalls, prefix: str = "") -> list[str]:
    return [c.name for c in fake.calls if "." in c.name and c.name.startswith(prefix)]


def struct_arg(call: Call, i: int = 0) -> Any:
    return call.args[i]._obj  # the ctypes object behind ctypes.byref(...)


# -- a Wintun build ----------------------------------------------------------------------------


def test_wintun_build_sequence_and_structures(make_fake: Fake) -> None:
    fake = make_fake("windows")
    w = fake.windows
    iface, queue = windows.open_device(tun_config(), syscalls=fake)
    assert [c.name for c in fake.calls if c.name == "load_library"][-2:] == ["load_library"] * 2
    assert dll_calls(fake, "wintun") == [
        "wintun.WintunOpenAdapter",  # reuse an adapter of that name if it is healthy
        "wintun.WintunCreateAdapter",
        "wintun.WintunGetAdapterLUID",
        "wintun.WintunStartSession",
        "wintun.WintunGetReadWaitEvent",
    ]
    create = fake.named("wintun.WintunCreateAdapter")[0]
    assert create.args == ("wg0", "tunflow", None)  # name, tunnel type, kernel-chosen GUID
    start = fake.named("wintun.WintunStartSession")[0]
    assert start.args[1] == 0x400000  # the default ring: 4 MiB, a power of two
    luid = iface.luid
    # MTU then metric, each on the IPv4 and the IPv6 interface row
    sets = [struct_arg(c) for c in fake.named("iphlpapi.SetIpInterfaceEntry")]
    assert [(r.Family, r.NlMtu) for r in sets[:2]] == [(2, 1400), (23, 1400)]
    assert [(r.Family, r.Metric, r.UseAutomaticMetric) for r in sets[2:]] == [(2, 7, 0), (23, 7, 0)]
    assert all(r.InterfaceLuid.Value == luid for r in sets)
    assert sets[0].SitePrefixLength == 0  # SetIpInterfaceEntry's IPv4 requirement
    # addresses: MIB_UNICASTIPADDRESS_ROW with SOCKADDR_INET, LUID, prefix, DadState preferred
    rows = [struct_arg(c) for c in fake.named("iphlpapi.CreateUnicastIpAddressEntry")]
    raw4 = bytes(rows[0])
    assert struct.unpack_from("<HH4s", raw4, 0) == (2, 0, bytes([10, 0, 0, 1]))
    assert struct.unpack_from("<Q", raw4, 32)[0] == luid  # InterfaceLuid at 32
    assert raw4[60] == 24  # OnLinkPrefixLength at 60
    assert struct.unpack_from("<i", raw4, 64)[0] == 4  # DadState = IpDadStatePreferred
    assert struct.unpack_from("<II", raw4, 52) == (0xFFFFFFFF, 0xFFFFFFFF)  # lifetimes
    raw6 = bytes(rows[1])
    assert struct.unpack_from("<H", raw6, 0)[0] == 23
    assert raw6[8:24] == IPv6Interface("fd00::1/64").ip.packed and raw6[60] == 64
    # DNS: one SetInterfaceDnsSettings per family, comma-separated, flags NAMESERVER (|IPV6)
    assert [(version, flags, servers) for _g, version, flags, servers in w.dns] == [
        (1, 0x2, "10.0.0.53,10.0.0.54"),
        (1, 0x3, "fd00::53"),
    ]
    dns_call = fake.named("iphlpapi.SetInterfaceDnsSettings")[0]
    assert isinstance(dns_call.args[0], iphlpapi.GUID)  # the GUID goes by value
    # the route: MIB_IPFORWARD_ROW2, on-link next hop, MIB_IPPROTO_NETMGMT
    (route_row,) = [struct_arg(c) for c in fake.named("iphlpapi.CreateIpForwardEntry2")]
    raw = bytes(route_row)
    assert struct.unpack_from("<Q", raw, 0)[0] == luid
    assert struct.unpack_from("<H2x4s", raw, 12) == (2, bytes([192, 0, 2, 0]))
    assert raw[12 + 28] == 24  # DestinationPrefix.PrefixLength at 40
    assert struct.unpack_from("<H2x4s", raw, 44) == (2, bytes(4))  # NextHop 0.0.0.0
    assert struct.unpack_from("<i", raw, 88)[0] == 3  # Protocol
    # what the model now holds
    assert iface.name() == "wg0"
    assert iface.mtu() == 1400
    assert iface.addresses() == [IPv4Interface("10.0.0.1/24"), IPv6Interface("fd00::1/64")]
    assert iface.routes() == [Route(ip_network("192.0.2.0/24"), None, 0)]
    queue.close()
    iface.close()
    assert w.adapters == {} and w.sessions == {} and w.kernel32.events == {}


def test_wintun_full_build_order(make_fake: Fake) -> None:
    """Adapter and session first, then MTU (v4, v6) → metric (v4, v6) → addresses → DNS (one
    call per family, then the resolver cache flushed) → routes; the queue's shutdown event
    last."""
    fake = make_fake("windows")
    iface, queue = windows.open_device(tun_config(), syscalls=fake)
    interface_row = [
        "iphlpapi.InitializeIpInterfaceEntry",
        "iphlpapi.GetIpInterfaceEntry",
        "iphlpapi.SetIpInterfaceEntry",
    ]
    address = ["iphlpapi.InitializeUnicastIpAddressEntry", "iphlpapi.CreateUnicastIpAddressEntry"]
    dns = ["iphlpapi.ConvertInterfaceLuidToGuid", "iphlpapi.SetInterfaceDnsSettings"]
    assert dll_calls(fake) == [
        "wintun.WintunOpenAdapter",
        "wintun.WintunCreateAdapter",
        "wintun.WintunGetAdapterLUID",
        "wintun.WintunStartSession",
        "wintun.WintunGetReadWaitEvent",
        *interface_row * 4,  # MTU v4, MTU v6, metric v4, metric v6
        *address * 2,  # 10.0.0.1/24, fd00::1/64
        "iphlpapi.ConvertInterfaceLuidToAlias",  # for the netsh fallback's messages
        *dns * 2,  # IPv4 servers, IPv6 servers
        "dnsapi.DnsFlushResolverCache",
        "iphlpapi.InitializeIpForwardEntry",
        "iphlpapi.CreateIpForwardEntry2",
        "kernel32.CreateEventW",  # the queue's shutdown event
    ]
    queue.close()
    iface.close()


def test_ring_capacity_is_checked_first(make_fake: Fake) -> None:
    fake = make_fake("windows")
    with pytest.raises(ConfigError, match="power of two"):
        windows.open_device(tun_config(ring_capacity=0x30000), syscalls=fake)
    assert fake.calls == []
    iface, queue = windows.open_device(tun_config(ring_capacity=0x20000), syscalls=fake)
    assert fake.named("wintun.WintunStartSession")[0].args[1] == 0x20000
    queue.close()
    iface.close()


def test_missing_wintun_dll_names_the_paths(make_fake: Fake) -> None:
    fake = make_fake("windows")
    fake.windows.wintun_paths.clear()
    with pytest.raises(DeviceNotFoundError) as info:
        windows.open_device(tun_config(), syscalls=fake)
    message = str(info.value)
    assert "wintun.dll could not be loaded from" in message
    for path in wintun.wintun_candidates(None):
        assert path in message
    assert "https://www.wintun.net" in message

    fake = make_fake("windows")
    with pytest.raises(DeviceNotFoundError, match=re.escape("C:\\vpn\\wintun.dll")):
        windows.open_device(tun_config(wintun_file="C:\\vpn\\wintun.dll"), syscalls=fake)
    assert [c.args[0] for c in fake.named("load_library")] == ["C:\\vpn\\wintun.dll"]


def test_an_old_wintun_dll_is_unsupported_error(make_fake: Fake) -> None:
    """A wintun.dll before 0.14 (pool API: WintunFreeAdapter, no WintunCloseAdapter) loads,
    but binding its functions fails: a typed error naming the file, not AttributeError."""
    fake = make_fake("windows")
    fake.windows.wintun_paths = {"D:/old/wintun.dll"}
    fake.windows.wintun.WintunCloseAdapter = None  # type: ignore[assignment,method-assign]
    with pytest.raises(UnsupportedError, match=re.escape("Wintun 0.14 or later")) as info:
        windows.open_device(tun_config(wintun_file="D:/old/wintun.dll"), syscalls=fake)
    assert "D:/old/wintun.dll" in str(info.value)
    assert "WintunCloseAdapter" in str(info.value)
    assert fake.named("wintun.WintunCreateAdapter") == []


def test_wintun_file_is_loaded_from_the_given_path(make_fake: Fake) -> None:
    fake = make_fake("windows")
    fake.windows.wintun_paths = {"D:/tools/wintun.dll"}
    iface, queue = windows.open_device(tun_config(wintun_file="D:/tools/wintun.dll"), syscalls=fake)
    assert fake.calls[0].args == ("D:/tools/wintun.dll",)
    queue.close()
    iface.close()


def test_driver_version_zero_is_a_failure(make_fake: Fake) -> None:
    """WintunGetRunningDriverVersion returns 0 on failure, the reason in GetLastError
    (wintun.h: ERROR_FILE_NOT_FOUND, Wintun not loaded) — an error, not version 0.0."""
    fake = make_fake("windows")
    api = wintun.load_wintun(fake, None)
    assert api.driver_version() == "14.0"

    def not_loaded() -> int:
        fake.windows.last_error = 2  # ERROR_FILE_NOT_FOUND
        return 0

    fake.on("wintun.WintunGetRunningDriverVersion", handler=not_loaded)
    with pytest.raises(DeviceNotFoundError, match="WintunGetRunningDriverVersion") as info:
        api.driver_version()
    assert getattr(info.value, "winerror", None) == 2


def test_version_of_a_wintun_device() -> None:
    # tun-rs version(): WintunGetRunningDriverVersion, "major.minor" (high and low word)
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg5").build_sync() as dev:
            fake.calls.clear()
            assert dev.version() == "14.0"
            assert [(c.name, c.args) for c in fake.calls] == [
                ("wintun.WintunGetRunningDriverVersion", ())
            ]

            def not_loaded() -> int:
                fake.windows.last_error = 2  # ERROR_FILE_NOT_FOUND: Wintun not loaded
                return 0

            fake.on("wintun.WintunGetRunningDriverVersion", handler=not_loaded)
            with pytest.raises(DeviceNotFoundError, match="WintunGetRunningDriverVersion"):
                dev.version()
        with pytest.raises(ClosedDeviceError):
            dev.version()
        fake.close_all()


@pytest.mark.anyio
async def test_version_is_awaited_on_an_async_device() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        fake.windows.wintun.WintunGetRunningDriverVersion = lambda: 0x0000_0000_0001_0002
        async with DeviceBuilder().name("wg6").build_async() as dev:
            assert await dev.version() == "1.2"
        fake.close_all()


@pytest.mark.parametrize(("info", "text"), [((9, 24, 0), "9.24"), ((9, 27, 1), "9.27 (debug)")])
def test_version_of_a_tap_windows_device(make_fake: Fake, info: Any, text: str) -> None:
    # TAP_WIN_IOCTL_GET_VERSION: major, minor, and 1 for a debug build (tap-windows6
    # src/device.c) — the third ULONG is no patch number
    fake = make_fake("windows")
    device = fake.windows.add_tap_adapter("tap-ovpn")
    device.version = info
    iface, queue = windows.open_device(tap_config(), syscalls=fake)
    assert fake.named("kernel32.DeviceIoControl")[0].args[1] == tap.TAP_WIN_IOCTL_GET_VERSION
    assert fake.named("kernel32.DeviceIoControl")[0].args[5] == 12  # three ULONGs
    assert iface.version() == text
    queue.close()
    iface.close()


def test_orphaned_adapter_is_replaced(make_fake: Fake) -> None:
    fake = make_fake("windows")
    orphan = fake.windows.add_orphaned_adapter("wg0")
    iface, queue = windows.open_device(tun_config(), syscalls=fake)
    assert dll_calls(fake, "wintun")[:5] == [
        "wintun.WintunOpenAdapter",
        "wintun.WintunGetAdapterLUID",
        "wintun.WintunCloseAdapter",  # its LUID maps to no interface: let it go
        "wintun.WintunCreateAdapter",
        "wintun.WintunGetAdapterLUID",
    ]
    assert fake.named("iphlpapi.ConvertInterfaceLuidToIndex")[0].result == 2
    assert iface.luid != orphan.luid
    queue.close()
    iface.close()


def test_healthy_adapter_is_reused_and_kept(make_fake: Fake) -> None:
    fake = make_fake("windows")
    w = fake.windows
    handle = w.wintun.WintunCreateAdapter("wg0", "other", None)
    w.adapters["wg0"].created = False  # made by someone else: CloseAdapter must not remove it
    iface, queue = windows.open_device(tun_config(dns_servers=(), routes=()), syscalls=fake)
    assert fake.named("wintun.WintunCreateAdapter") == []
    assert fake.named("wintun.WintunOpenAdapter")[0].result == handle
    queue.close()
    iface.close()
    assert "wg0" in w.adapters


def test_create_needs_administrator(make_fake: Fake) -> None:
    fake = make_fake("windows")
    fake.windows.deny_create = True
    with pytest.raises(DevicePermissionError, match="Administrator") as info:
        windows.open_device(tun_config(), syscalls=fake)
    assert getattr(info.value, "winerror", None) == 5
    assert len(fake.named("wintun.WintunCreateAdapter")) == 1  # no retry on ERROR_ACCESS_DENIED


def test_create_is_retried(make_fake: Fake) -> None:
    fake = make_fake("windows")
    fake.on("wintun.WintunCreateAdapter", result=None, times=3)
    iface, queue = windows.open_device(tun_config(), syscalls=fake)
    assert len(fake.named("wintun.WintunCreateAdapter")) == 4
    queue.close()
    iface.close()


def test_no_ipv6_stack_is_tolerated(make_fake: Fake) -> None:
    fake = make_fake("windows")
    fake.windows.ipv6 = False
    iface, queue = windows.open_device(tun_config(ipv6=(), dns_servers=()), syscalls=fake)
    sets = [struct_arg(c) for c in fake.named("iphlpapi.SetIpInterfaceEntry")]
    assert [r.Family for r in sets] == [2, 2]  # MTU and metric for IPv4 only
    queue.close()
    iface.close()


def test_unsupported_options(make_fake: Fake) -> None:
    fake = make_fake("windows")
    for change in (
        {"multi_queue": True},
        {"offload": True},
        {"packet_information": True},
        {"tx_queue_len": 1},
        {"persist": True},
        {"netns": "blue"},
    ):
        with pytest.raises(UnsupportedError):
            windows.open_device(tun_config(**change), syscalls=fake)
    assert [c.name for c in fake.calls if "." in c.name] == []
    with pytest.raises(UnsupportedError, match="file descriptors"):
        windows.adopt_fd(3, close_fd=True)


def test_address_errors_map_to_tunflow_errors(make_fake: Fake) -> None:
    fake = make_fake("windows")
    iface, queue = windows.open_device(tun_config(dns_servers=()), syscalls=fake)
    with pytest.raises(DeviceError, match="already exists"):
        iface.add_address(IPv4Interface("10.0.0.1/24"))
    fake.on("iphlpapi.CreateUnicastIpAddressEntry", result=5)
    with pytest.raises(DevicePermissionError, match="Administrator"):
        iface.add_address(IPv4Interface("10.0.1.1/24"))
    iface.remove_address(IPv4Address("10.0.0.1"))
    with pytest.raises(DeviceNotFoundError):
        iface.remove_address(IPv4Address("10.0.0.1"))
    iface.add_route(Route(ip_network("198.51.100.0/24"), IPv4Address("10.0.0.2"), 5))
    assert Route(ip_network("198.51.100.0/24"), IPv4Address("10.0.0.2"), 5) in iface.routes()
    iface.remove_route(Route(ip_network("198.51.100.0/24"), IPv4Address("10.0.0.2")))
    with pytest.raises(UnsupportedError):
        iface.mac_address()
    with pytest.raises(UnsupportedError):
        iface.set_enabled(False)
    iface.set_name("wg9")
    assert fake.named("run")[-1].args[0] == (
        "netsh", "interface", "set", "interface", "name=wg0", "newname=wg9",
    )  # fmt: skip
    queue.close()
    iface.close()


def test_empty_address_and_route_tables_are_not_errors(make_fake: Fake) -> None:
    """GetUnicastIpAddressTable and GetIpForwardTable2 answer ERROR_NOT_FOUND when no entry
    exists (learn.microsoft.com, netioapi.h): no addresses or routes, not a failure."""
    fake = make_fake("windows")
    iface, queue = windows.open_device(
        tun_config(ipv4=(), ipv6=(), routes=(), dns_servers=()), syscalls=fake
    )
    assert iface.addresses() == [] and iface.routes() == []
    assert [c.result for c in fake.named("iphlpapi.GetUnicastIpAddressTable")] == [1168]
    assert [c.result for c in fake.named("iphlpapi.GetIpForwardTable2")] == [1168]
    assert fake.named("iphlpapi.FreeMibTable") == []  # no table was handed out
    queue.close()
    iface.close()


def test_dns_falls_back_to_netsh(make_fake: Fake, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunflow.platform.fake import _FakeIphlpapi

    # before Windows 10 2004, iphlpapi.dll has no SetInterfaceDnsSettings
    monkeypatch.delattr(_FakeIphlpapi, "SetInterfaceDnsSettings")
    fake = make_fake("windows")
    iface, queue = windows.open_device(tun_config(), syscalls=fake)
    assert [c.args[0] for c in fake.named("run")] == [
        ("netsh", "interface", "ipv4", "set", "dnsservers", "name=wg0", "static", "10.0.0.53",
         "primary", "validate=no"),
        ("netsh", "interface", "ipv4", "add", "dnsservers", "name=wg0", "10.0.0.54", "index=2",
         "validate=no"),
        ("netsh", "interface", "ipv6", "set", "dnsservers", "name=wg0", "static", "fd00::53",
         "primary", "validate=no"),
    ]  # fmt: skip
    queue.close()
    iface.close()


# -- DNS servers at run time -------------------------------------------------------------------


def _dns_calls(fake: FakeSyscalls) -> list[tuple[int, str]]:
    """(Flags, NameServer) of each SetInterfaceDnsSettings call, its GUID and structure checked."""
    out = []
    for call in fake.named("iphlpapi.SetInterfaceDnsSettings"):
        guid, settings = call.args[0], struct_arg(call, 1)
        assert isinstance(guid, iphlpapi.GUID)  # by value, not a pointer
        (adapter,) = fake.windows.interfaces.values()
        assert guid.Data1 == adapter["index"]  # (the fake's GUIDs carry the interface index)
        raw = ctypes.string_at(ctypes.addressof(settings), ctypes.sizeof(settings))
        # netioapi.h DNS_INTERFACE_SETTINGS: ULONG Version at 0, ULONG64 Flags at 8, PWSTR
        # Domain at 16 (NULL), NameServer at 24, SearchList at 32 (NULL)
        assert struct.unpack_from("<I", raw, 0)[0] == 1  # DNS_INTERFACE_SETTINGS_VERSION1
        assert struct.unpack_from("<QQQ", raw, 16)[::2] == (0, 0)  # Domain, SearchList NULL
        assert struct.unpack_from("<Q", raw, 24)[0] != 0  # an empty string clears, not NULL
        out.append((struct.unpack_from("<Q", raw, 8)[0], settings.NameServer))
    return out


def test_dns_servers_at_run_time() -> None:
    # tun-rs set_dns_servers / clear_dns_servers(is_ipv4): one SetInterfaceDnsSettings per
    # family, DNS_SETTING_NAMESERVER (0x2) | DNS_SETTING_IPV6 (0x1) for IPv6, then
    # DnsFlushResolverCache
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        w = fake.windows
        with DeviceBuilder().name("wg7").build_sync() as dev:
            fake.calls.clear()
            dev.set_dns_servers(["10.0.0.53", IPv4Address("10.0.0.54")])
            assert dll_calls(fake) == [
                "iphlpapi.ConvertInterfaceLuidToAlias",
                "iphlpapi.ConvertInterfaceLuidToGuid",
                "iphlpapi.SetInterfaceDnsSettings",
                "dnsapi.DnsFlushResolverCache",
            ]
            assert _dns_calls(fake) == [(0x2, "10.0.0.53,10.0.0.54")]
            assert w.dns_flushes == 1
            fake.calls.clear()
            dev.set_dns_servers(["fd00::53"])  # IPv6 only: IPv4's stay
            assert _dns_calls(fake) == [(0x3, "fd00::53")]
            fake.calls.clear()
            dev.set_dns_servers(["1.1.1.1", "2606:4700:4700::1111", "1.0.0.1"])  # both
            assert _dns_calls(fake) == [(0x2, "1.1.1.1,1.0.0.1"), (0x3, "2606:4700:4700::1111")]
            fake.calls.clear()
            dev.clear_dns_servers(4)
            assert _dns_calls(fake) == [(0x2, "")]
            fake.calls.clear()
            dev.clear_dns_servers(6)
            assert _dns_calls(fake) == [(0x3, "")]
            fake.calls.clear()
            dev.clear_dns_servers()
            assert _dns_calls(fake) == [(0x2, ""), (0x3, "")]
            assert w.dns_flushes == 6
        with pytest.raises(ClosedDeviceError):
            dev.set_dns_servers(["10.0.0.53"])
        with pytest.raises(ClosedDeviceError):
            dev.clear_dns_servers()
        fake.close_all()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda dev: dev.set_dns_servers("10.0.0.53"), "a list of addresses"),
        (lambda dev: dev.set_dns_servers(None), "a list of addresses"),
        (lambda dev: dev.set_dns_servers([]), "clear_dns_servers"),
        (lambda dev: dev.set_dns_servers(["10.0.0.53", "dns.example"]), "not an IP address"),
        (lambda dev: dev.set_dns_servers(["0.0.0.0"]), "cannot be a DNS server"),
        (lambda dev: dev.clear_dns_servers(True), "4, 6 or None"),  # tun-rs's is_ipv4
        (lambda dev: dev.clear_dns_servers(5), "4, 6 or None"),
        (lambda dev: dev.clear_dns_servers("4"), "4, 6 or None"),
    ],
)
def test_bad_dns_input_is_refused_before_any_call(call: Any, message: str) -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg8").build_sync() as dev:
            fake.calls.clear()
            with pytest.raises(ConfigError, match=message):
                call(dev)
            assert dll_calls(fake) == []
        fake.close_all()


def test_dns_at_run_time_falls_back_to_netsh(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunflow.platform.fake import _FakeIphlpapi

    monkeypatch.delattr(_FakeIphlpapi, "SetInterfaceDnsSettings")  # before Windows 10 2004
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg9").build_sync() as dev:
            fake.calls.clear()
            dev.set_dns_servers(["fd00::53", "fd00::54"])
            dev.clear_dns_servers()
            assert [c.args[0] for c in fake.named("run")] == [
                ("netsh", "interface", "ipv6", "set", "dnsservers", "name=wg9", "static",
                 "fd00::53", "primary", "validate=no"),
                ("netsh", "interface", "ipv6", "add", "dnsservers", "name=wg9", "fd00::54",
                 "index=2", "validate=no"),
                ("netsh", "interface", "ipv4", "set", "dnsservers", "name=wg9", "source=dhcp"),
                ("netsh", "interface", "ipv6", "set", "dnsservers", "name=wg9", "source=dhcp"),
            ]  # fmt: skip
            assert fake.windows.dns_flushes == 2
            fake.on("run", error=CommandError(errno.EIO, "netsh exited with 1: Element not found"))
            with pytest.raises(DeviceError, match=r"clear DNS servers.*Element not found"):
                dev.clear_dns_servers(4)
            assert fake.windows.dns_flushes == 2  # nothing changed, nothing flushed
        fake.close_all()


@pytest.mark.parametrize(
    ("code", "error"),
    [(5, DevicePermissionError), (87, DeviceError), (1168, DeviceNotFoundError)],
)
def test_dns_refusals_are_typed(code: int, error: type[DeviceError]) -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg10").build_sync() as dev:
            fake.on("iphlpapi.SetInterfaceDnsSettings", result=code)
            with pytest.raises(error, match="SetInterfaceDnsSettings") as info:
                dev.set_dns_servers(["10.0.0.53"])
            assert getattr(info.value, "winerror", None) == code
            with pytest.raises(error):
                dev.clear_dns_servers()
            assert fake.windows.dns_flushes == 0
        fake.close_all()


def test_a_failed_flush_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    # DnsFlushResolverCache is best effort (tun-rs logs it too): the servers are set
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg11").build_sync() as dev:

            def refused() -> int:
                fake.windows.last_error = 5
                return 0

            fake.on("dnsapi.DnsFlushResolverCache", handler=refused)
            dev.set_dns_servers(["10.0.0.53"])
            assert "Win32 error 5" in caplog.text
            caplog.clear()
            fake.fail(
                "load_library",
                FileNotFoundError(errno.ENOENT, "not found", "dnsapi.dll"),
                when=lambda c: c.args == ("dnsapi.dll",),
            )
            dev.clear_dns_servers(6)
            assert "dnsapi.dll" in caplog.text
            assert _dns_calls(fake)[-2:] == [(0x2, "10.0.0.53"), (0x3, "")]
        fake.close_all()


@pytest.mark.anyio
async def test_dns_servers_are_awaited_on_an_async_device() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        async with DeviceBuilder().name("wg12").build_async() as dev:
            await dev.set_dns_servers(["10.0.0.53", "fd00::53"])
            await dev.clear_dns_servers(6)
            with pytest.raises(ConfigError):
                await dev.set_dns_servers([])
            assert _dns_calls(fake) == [(0x2, "10.0.0.53"), (0x3, "fd00::53"), (0x3, "")]
        fake.close_all()


# -- clean-up ----------------------------------------------------------------------------------

#: how each DLL function reports failure: a NULL handle, or a Win32 error code
_FAILURE: dict[str, Any] = {
    "wintun.WintunCreateAdapter": None,
    "wintun.WintunStartSession": None,
    "wintun.WintunGetReadWaitEvent": None,
    "kernel32.CreateEventW": None,
    "iphlpapi.GetIpInterfaceEntry": 31,  # ERROR_GEN_FAILURE
    "iphlpapi.SetIpInterfaceEntry": 31,
    "iphlpapi.CreateUnicastIpAddressEntry": 31,
    "iphlpapi.CreateIpForwardEntry2": 31,
    "iphlpapi.ConvertInterfaceLuidToGuid": 31,
    "iphlpapi.ConvertInterfaceLuidToAlias": 31,
    "iphlpapi.SetInterfaceDnsSettings": 31,
}


def _assert_clean(fake: FakeSyscalls, what: str) -> None:
    w = fake.windows
    assert w.adapters == {}, f"{what} left an adapter"
    assert w.sessions == {}, f"{what} left a session"
    assert w.kernel32.events == {}, f"{what} left an event"
    assert w.addresses == [] and w.routes == [], f"{what} left configuration"


def test_clean_up_after_a_failure_at_every_step(make_fake: Fake) -> None:
    probe = make_fake("windows")
    iface, queue = windows.open_device(tun_config(), syscalls=probe)
    queue.close()
    iface.close()
    failing = [c for c in probe.calls if c.name in _FAILURE]
    assert len(failing) > 10
    for call in failing:
        fake = make_fake("windows")
        if call.name == "wintun.WintunCreateAdapter":
            # creation is retried (4 attempts): make every attempt fail
            fake.on(call.name, result=None)
        else:

            def at(c: Call, n: int = call.number) -> bool:
                return c.number == n

            fake.on(call.name, when=at, result=_FAILURE[call.name])
        with pytest.raises(DeviceError):
            windows.open_device(tun_config(), syscalls=fake)
        _assert_clean(fake, f"a failing {call.name} (call {call.number})")


def test_clean_up_after_an_exception_at_every_step(make_fake: Fake) -> None:
    probe = make_fake("windows")
    iface, queue = windows.open_device(tun_config(), syscalls=probe)
    queue.close()
    iface.close()
    steps = [c.number for c in probe.calls if c.name.startswith(("iphlpapi.", "kernel32.Create"))]
    for step in steps:
        fake = make_fake("windows")
        fake.fail_call(step, RuntimeError("boom"))
        with pytest.raises(RuntimeError):
            windows.open_device(tun_config(), syscalls=fake)
        _assert_clean(fake, f"an exception at call {step}")


def test_attached_adapter_gets_its_additions_back(make_fake: Fake) -> None:
    fake = make_fake("windows")
    w = fake.windows
    w.wintun.WintunCreateAdapter("wg0", "theirs", None)
    w.adapters["wg0"].created = False
    fake.on("iphlpapi.CreateIpForwardEntry2", result=31)
    with pytest.raises(DeviceError, match=r"192\.0\.2\.0/24"):
        windows.open_device(tun_config(attach=True, dns_servers=()), syscalls=fake)
    assert w.addresses == []  # both addresses removed again
    assert "wg0" in w.adapters and w.sessions == {}


def test_attach_reads_why_wintun_open_adapter_failed(make_fake: Fake) -> None:
    """WintunOpenAdapter's NULL comes with GetLastError (wintun.h): ERROR_NOT_FOUND when no
    adapter has the name (wintun api/adapter.c), else another failure — ERROR_ACCESS_DENIED
    is the Administrator error, not "no such adapter"."""
    fake = make_fake("windows")
    with pytest.raises(DeviceNotFoundError, match="wg0") as info:
        windows.open_device(tun_config(attach=True), syscalls=fake)
    assert getattr(info.value, "winerror", None) == 1168

    def denied(*_args: Any) -> None:
        fake.windows.last_error = 5  # ERROR_ACCESS_DENIED
        return None

    fake.on("wintun.WintunOpenAdapter", handler=denied)
    with pytest.raises(DevicePermissionError, match="Administrator") as denied_info:
        windows.open_device(tun_config(attach=True), syscalls=fake)
    assert getattr(denied_info.value, "winerror", None) == 5


# -- the Wintun queue --------------------------------------------------------------------------


def test_wintun_queue_paths(wintun_device: Any) -> None:
    fake, _iface, queue = wintun_device
    w = fake.windows
    p4, p6 = ipv4_packet(), ipv6_packet()
    assert queue.fileno() == -1
    assert queue.wait_handle() == w.session().read_event
    with pytest.raises(BlockingIOError):
        queue.recv(2000)
    w.inject(p4)
    w.inject(p6)
    assert queue.recv(2000) == p4
    buf = bytearray(2000)
    assert queue.recv_into(memoryview(buf)) == len(p6) and bytes(buf[: len(p6)]) == p6
    w.inject(p6)
    w.inject(p4)
    batch = PacketBatch()
    assert queue.recv_batch(batch, 2000) == 2 and batch.to_list() == [p6, p4]
    assert w.session().held == {}  # every received packet was released
    queue.send(p4)
    out = PacketBatch()
    out.extend([p6, p4])
    assert queue.send_batch(out) == 2
    assert w.session().sent == [p4, p6, p4]  # bare IP: no header on Windows
    w.session().ring_full = True
    with pytest.raises(BlockingIOError):
        queue.send(p4)
    w.session().ring_full = False
    with pytest.raises(PacketTooLargeError):
        queue.send(bytes(0x10000))
    fake.on("wintun.WintunReceivePacket", result=None, times=1)
    w.last_error = 38  # ERROR_HANDLE_EOF: the adapter is going away
    with pytest.raises(DeviceGoneError):
        queue.recv(2000)


def test_wintun_wait(wintun_device: Any) -> None:
    fake, _iface, queue = wintun_device
    w = fake.windows
    waker = queue.make_waker()
    start = time.monotonic()
    assert queue.wait(False, 0.05, waker) is False  # timeout
    assert time.monotonic() - start >= 0.04
    threading.Timer(0.05, w.inject, (ipv4_packet(),)).start()
    assert queue.wait(False, 5.0, waker) is True  # the read event fired
    assert queue.recv(2000) == ipv4_packet()
    threading.Timer(0.05, waker.wake).start()
    assert queue.wait(False, 5.0, waker) is False  # woken
    waker.close()
    assert w.kernel32.closed_while_waited == []


def test_close_wakes_a_waiting_thread(wintun_device: Any) -> None:
    fake, _iface, queue = wintun_device
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(queue.wait(False, None, None)))
    thread.start()
    time.sleep(0.05)
    queue.close()
    thread.join(5)
    assert result == [False]
    assert fake.windows.sessions == {}
    assert fake.windows.kernel32.closed_while_waited == []
    with pytest.raises(ClosedDeviceError):
        queue.recv(2000)


def test_waker_closed_under_a_waiting_thread_is_closed_later(wintun_device: Any) -> None:
    fake, _iface, queue = wintun_device
    waker = queue.make_waker()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(queue.wait(False, None, waker)))
    thread.start()
    time.sleep(0.05)
    waker.wake()
    waker.close()  # while the thread may still be inside WaitForMultipleObjects
    thread.join(5)
    assert result == [False]
    k32 = fake.windows.kernel32
    assert k32.closed_while_waited == []
    assert len(k32.events) == 2  # the session's read event and the queue's shutdown event


# -- the faces ---------------------------------------------------------------------------------


def test_sync_device_on_windows() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        w = fake.windows
        dev = DeviceBuilder().name("wg1").ipv4("10.0.0.1", 24).build_sync()
        assert dev.fileno() == -1
        threading.Timer(0.05, w.inject, (ipv4_packet(),)).start()
        assert dev.recv(timeout=5) == ipv4_packet()
        with pytest.raises(TimeoutError):
            dev.recv(timeout=0.05)
        threading.Timer(0.05, dev.shutdown).start()
        with pytest.raises(ClosedDeviceError):
            dev.recv()
        dev.close()
        assert w.adapters == {} and w.kernel32.events == {}
        assert w.kernel32.closed_while_waited == []
        fake.close_all()


def test_an_interrupt_event_on_windows() -> None:
    # the event's handle joins the wait (WaitForMultipleObjects), as tun-rs's does on Windows
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        w = fake.windows
        dev = DeviceBuilder().name("wg3").ipv4("10.0.0.1", 24).build_sync()
        stop = InterruptEvent()
        threading.Timer(0.05, stop.trigger).start()
        with pytest.raises(InterruptedCallError):
            dev.recv(timeout=5, interrupt=stop)
        w.inject(ipv4_packet())
        with pytest.raises(InterruptedCallError):  # still triggered: at once
            dev.recv(interrupt=stop)
        stop.reset()  # ResetEvent: the next wait waits again
        assert dev.recv(timeout=5, interrupt=stop) == ipv4_packet()
        with pytest.raises(TimeoutError):
            dev.recv(timeout=0.05, interrupt=stop)
        stop.close()
        dev.close()
        assert w.adapters == {} and w.kernel32.events == {}
        fake.close_all()


@pytest.mark.anyio
async def test_async_receive_waits_in_a_thread() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        w = fake.windows
        dev = DeviceBuilder().name("wg2").ipv4("10.0.0.1", 24).build_async()
        async with dev:
            assert dev.fileno() == -1

            async def later() -> None:
                await anyio.sleep(0.05)
                w.inject(ipv6_packet())

            async with anyio.create_task_group() as tg:
                tg.start_soon(later)
                with anyio.fail_after(5):
                    assert await dev.receive() == ipv6_packet()
            # a cancelled wait leaves the worker thread behind; nothing may break
            with anyio.move_on_after(0.05):
                await dev.receive()
            w.inject(ipv4_packet())
            with anyio.fail_after(5):
                assert await dev.receive() == ipv4_packet()
            await dev.send(ipv4_packet())
            assert w.session().sent == [ipv4_packet()]
        await anyio.sleep(0.05)
        assert w.adapters == {}
        assert w.kernel32.closed_while_waited == []
        fake.close_all()


@pytest.mark.anyio
async def test_aclose_wakes_a_blocked_receiver() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        dev = DeviceBuilder().name("wg3").build_async()
        errors: list[BaseException] = []

        async def receiver() -> None:
            try:
                await dev.receive()
            except ClosedDeviceError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(receiver)
                await anyio.sleep(0.1)
                await dev.aclose()
        assert len(errors) == 1
        assert fake.windows.kernel32.closed_while_waited == []
        fake.close_all()


# -- tap-windows6 ------------------------------------------------------------------------------


def tap_config(**kw: Any) -> DeviceConfig:
    base = DeviceBuilder().layer(Layer.L2).name("tap-ovpn").ipv4("10.8.0.2", 24).config()
    return attrs.evolve(base, **kw)


def test_tap_windows_open_sequence(make_fake: Fake) -> None:
    fake = make_fake("windows")
    device = fake.windows.add_tap_adapter("tap-ovpn")
    iface, queue = windows.open_device(tap_config(), syscalls=fake)
    create = fake.named("kernel32.CreateFileW")[0]
    path, access, share, _sa, disposition, flags, _tmpl = create.args
    # tap-windows.h USERMODEDEVICEDIR "\\.\Global\" + the adapter GUID + TAP_WIN_SUFFIX ".tap"
    assert path == "\\\\.\\Global\\{0000000A-1234-5678-0001-020304050607}.tap"
    assert access == 0x80000000 | 0x40000000  # GENERIC_READ | GENERIC_WRITE
    assert (share, disposition) == (0, 3)  # exclusive, OPEN_EXISTING
    assert flags == 0x4 | 0x40000000  # FILE_ATTRIBUTE_SYSTEM | FILE_FLAG_OVERLAPPED
    codes = [c.args[1] for c in fake.named("kernel32.DeviceIoControl")]
    assert codes == [0x220008, 0x220004, 0x220018]  # GET_VERSION, GET_MAC, SET_MEDIA_STATUS
    media = fake.named("kernel32.DeviceIoControl")[2]
    assert media.args[3] == 4 and bytes(media.args[2]._obj.raw[:4]) == struct.pack("<I", 1)
    assert device.media == 1
    assert isinstance(iface, tap.TapInterface)
    assert iface.mac_address() == device.mac
    assert iface.version_info == (9, 24, 0)
    assert iface.is_running()
    iface.set_enabled(False)
    assert device.media == 0
    queue.close()
    iface.close()


def test_tap_windows_frames(make_fake: Fake) -> None:
    fake = make_fake("windows")
    device = fake.windows.add_tap_adapter("tap-ovpn")
    iface, queue = windows.open_device(tap_config(), syscalls=fake)
    k32 = fake.windows.kernel32
    frame = bytes.fromhex("ffffffffffff00ff123456780806") + b"a" * 46
    with pytest.raises(BlockingIOError):
        queue.recv(2000)  # the overlapped read is pending
    threading.Timer(0.05, device.inject, (k32, frame)).start()
    assert queue.wait(False, 5.0, None) is True
    assert queue.recv(2000) == frame
    device.inject(k32, frame[::-1])  # completes the next pending read at once
    batch = PacketBatch()
    assert queue.recv_batch(batch, 2000) == 1 and batch.to_list() == [frame[::-1]]
    queue.send(frame)
    assert device.written == [frame]
    queue.close()
    assert device.closed and k32.events == {}
    assert fake.named("kernel32.CancelIoEx")  # the pending read was cancelled before closing
    iface.close()


def test_tap_windows_needs_an_existing_adapter(make_fake: Fake) -> None:
    fake = make_fake("windows")
    with pytest.raises(ConfigError, match="tapctl"):
        windows.open_device(tap_config(name=None), syscalls=fake)
    with pytest.raises(DeviceNotFoundError, match="tap-ovpn"):
        windows.open_device(tap_config(), syscalls=fake)
    with pytest.raises(UnsupportedError, match="MAC"):
        windows.open_device(tap_config(mac=bytes.fromhex("020000000001")), syscalls=fake)


def test_tap_windows_clean_up(make_fake: Fake) -> None:
    fake = make_fake("windows")
    device = fake.windows.add_tap_adapter("tap-ovpn")
    fake.on("iphlpapi.CreateUnicastIpAddressEntry", result=31)
    with pytest.raises(DeviceError):
        windows.open_device(tap_config(), syscalls=fake)
    assert device.closed
    assert fake.windows.kernel32.files == {} and fake.windows.kernel32.events == {}


def test_ctypes_sizes_are_x64() -> None:
    assert ctypes.sizeof(ctypes.c_void_p) == 8
    assert tap.READ_SIZE == 14 + 65536


def test_unknown_alias_is_error_invalid_parameter(make_fake: Fake) -> None:
    """ConvertInterfaceAliasToLuid answers ERROR_INVALID_PARAMETER (87) for an alias no
    interface has (netioapi.h; Wine does the same): a free tunN is still found, and a missing
    tap-windows6 adapter is still a DeviceNotFoundError."""
    fake = make_fake("windows")
    fake.windows.wintun.WintunCreateAdapter("tun0", "other", None)
    fake.windows.adapters["tun0"].created = False
    iface, queue = windows.open_device(tun_config(name=None, dns_servers=()), syscalls=fake)
    assert [c.result for c in fake.named("iphlpapi.ConvertInterfaceAliasToLuid")] == [0, 87]
    assert iface.name() == "tun1"
    queue.close()
    iface.close()
    fake = make_fake("windows")
    with pytest.raises(DeviceNotFoundError, match="tap-ovpn") as info:
        windows.open_device(tap_config(), syscalls=fake)
    assert getattr(info.value, "winerror", None) == 87


def test_tap_windows_clean_up_when_the_first_read_fails(make_fake: Fake) -> None:
    """A first overlapped ReadFile refused at open (ERROR_GEN_FAILURE) must not leak the
    queue's three events (read, write, shutdown) nor the device handle."""
    fake = make_fake("windows")
    device = fake.windows.add_tap_adapter("tap-ovpn")

    def refuse(*_args: Any) -> int:
        fake.windows.last_error = 31  # ERROR_GEN_FAILURE
        return 0

    fake.on("kernel32.ReadFile", handler=refuse)
    with pytest.raises(DeviceError, match="ReadFile"):
        windows.open_device(tap_config(), syscalls=fake)
    assert device.closed
    assert fake.windows.kernel32.files == {} and fake.windows.kernel32.events == {}


def test_tap_windows_concurrent_sends_do_not_share_an_overlapped(make_fake: Fake) -> None:
    """Two threads sending at once (SyncDevice.send takes no lock) must not start overlapped
    writes on the same OVERLAPPED: it belongs to one I/O until that completes (minwinbase.h,
    WriteFile), and a shared event lets one writer's GetOverlappedResult return on the other
    writer's completion while its own buffer is still in use."""
    fake = make_fake("windows")
    device = fake.windows.add_tap_adapter("tap-ovpn")
    iface, queue = windows.open_device(tap_config(), syscalls=fake)
    device.write_delay = 0.05
    frames = [bytes([i]) * 60 for i in range(4)]
    results: list[int] = []
    threads = [threading.Thread(target=lambda f=f: results.append(queue.send(f))) for f in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert device.overlapped_reused == 0
    assert sorted(device.written) == sorted(frames) and results == [60] * 4
    queue.close()
    iface.close()


def test_batch_reads_never_hand_out_a_cut_packet(wintun_device: Any, make_fake: Fake) -> None:
    """A packet longer than ``max_size`` (the MTU raised outside tunflow) is read whole if the
    batch has room for it, else dropped and counted in ``rx_truncated`` — never handed out cut
    short (FdQueue's rule; Wintun and tap-windows6 give the whole packet, so nothing is lost
    by the driver)."""
    fake, _iface, queue = wintun_device
    w = fake.windows
    small, big = ipv4_packet(), ipv4_packet(b"x" * 1400)
    w.inject(big)
    batch = PacketBatch()
    assert queue.recv_batch(batch, 1000) == 1 and batch.to_list() == [big]
    tight = PacketBatch(capacity=64 + 1200, max_packets=4)
    w.inject(big)
    w.inject(small)
    assert queue.recv_batch(tight, 1000) == 1 and tight.to_list() == [small]
    assert queue.rx_truncated == 1
    assert w.session().held == {}

    fake = make_fake("windows")
    device = fake.windows.add_tap_adapter("tap-ovpn")
    iface, tq = windows.open_device(tap_config(), syscalls=fake)
    k32 = fake.windows.kernel32
    frame = b"\xff" * 12 + b"\x08\x00" + b"y" * 1400
    device.inject(k32, frame)
    batch = PacketBatch()
    assert tq.recv_batch(batch, 1000) == 1 and batch.to_list() == [frame]
    device.inject(k32, frame)
    tight = PacketBatch(capacity=64 + 1200, max_packets=4)
    assert tq.recv_batch(tight, 1000) == 0 and tight.to_list() == []
    assert tq.rx_truncated == 1
    tq.close()
    iface.close()


def test_shutdown_from_a_signal_handler_inside_a_wait_does_not_deadlock() -> None:
    # A signal handler runs in the main thread between any two bytecodes — inside the locked
    # part of the waker's acquire(), which every wait passes, too; the documented shutdown()
    # (or InterruptEvent.trigger()) there takes the same lock. Played here with a tracer.
    import inspect
    import sys

    from tunflow.platform.windows._win32 import Win32Waker

    lines, first = inspect.getsourcelines(Win32Waker.acquire)
    inside = first + next(i for i, line in enumerate(lines) if "self._users += 1" in line)
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        dev = DeviceBuilder().name("wg5").ipv4("10.0.0.1", 24).build_sync()
        fired: list[bool] = []

        def in_acquire(frame: Any, event: str, arg: Any) -> Any:
            if event == "line" and frame.f_lineno == inside and not fired:
                fired.append(True)
                dev.shutdown()  # the "signal handler"
            return in_acquire

        def tracer(frame: Any, event: str, arg: Any) -> Any:
            return in_acquire if frame.f_code is Win32Waker.acquire.__code__ else None

        outcome: list[BaseException] = []

        def run() -> None:
            sys.settrace(tracer)
            try:
                dev.recv(timeout=5)
            except BaseException as exc:
                outcome.append(exc)
            finally:
                sys.settrace(None)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(5)
        assert not t.is_alive(), "deadlocked: shutdown() inside the waker's lock"
        assert fired and isinstance(outcome[0], ClosedDeviceError)
        dev.close()
        fake.close_all()


def test_closing_an_interrupt_event_ends_a_wait_on_it_on_windows() -> None:
    # closing its handle wakes no WaitForMultipleObjects: close() sets the event first
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        dev = DeviceBuilder().name("wg6").ipv4("10.0.0.1", 24).build_sync()
        stop = InterruptEvent()
        threading.Timer(0.1, stop.close).start()
        start = time.monotonic()
        with pytest.raises(ValueError, match="closed"):
            dev.recv(timeout=10, interrupt=stop)
        assert time.monotonic() - start < 5
        dev.close()
        assert fake.windows.kernel32.events == {}
        fake.close_all()


def test_send_on_a_terminating_adapter_is_device_gone(wintun_device: Any) -> None:
    # wintun.h, WintunAllocateSendPacket: NULL with ERROR_HANDLE_EOF (38) when "Wintun adapter
    # is terminating", ERROR_BUFFER_OVERFLOW (111) when the ring is full
    fake, _iface, queue = wintun_device
    fake.on("wintun.WintunAllocateSendPacket", result=None, times=1)
    fake.windows.last_error = 38
    with pytest.raises(DeviceGoneError):
        queue.send(ipv4_packet())


def test_every_mib_table_is_freed(wintun_device: Any) -> None:
    # netioapi.h: GetUnicastIpAddressTable / GetIpForwardTable2 allocate the table; the caller
    # frees it with FreeMibTable
    fake, iface, _queue = wintun_device
    iface.add_route(Route(ip_network("198.51.100.0/24")))
    assert iface.addresses() and iface.routes()
    freed = [c.args[0] for c in fake.named("iphlpapi.FreeMibTable")]
    assert len(freed) == 2 and fake.windows.tables == {}


def test_missing_ipv4_interface_row_is_an_error(wintun_device: Any) -> None:
    # Only a missing IPv6 row (no IPv6 stack) is skipped; ERROR_NOT_FOUND (1168) for the IPv4
    # row means the MTU cannot be set, and says so
    fake, iface, _queue = wintun_device
    fake.on(
        "iphlpapi.GetIpInterfaceEntry",
        when=lambda call: struct_arg(call).Family == 2,
        result=1168,
    )
    with pytest.raises(DeviceNotFoundError):
        iface.set_mtu(1300)


@pytest.mark.parametrize("code", [32, 170])
def test_busy_win32_errors(code: int) -> None:
    # winerror.h: ERROR_SHARING_VIOLATION 32 ("being used by another process"), ERROR_BUSY 170
    exc = _win32.win_error(code, "open")
    assert isinstance(exc, DeviceBusyError)
    assert getattr(exc, "winerror", None) == code


def test_a_failed_session_start_says_why(make_fake: Fake) -> None:
    # wintun.h, WintunStartSession: NULL on failure, "To get extended error information, call
    # GetLastError" — the error is that code (here winerror.h ERROR_NOT_ENOUGH_MEMORY, 8), and
    # the adapter this call created is closed again
    fake = make_fake("windows")

    def fails(*args: Any) -> None:
        fake.windows.last_error = 8
        return None

    fake.on("wintun.WintunStartSession", handler=fails)
    with pytest.raises(DeviceError, match="WintunStartSession") as info:
        windows.open_device(tun_config(), syscalls=fake)
    assert getattr(info.value, "winerror", None) == 8
    assert len(fake.named("wintun.WintunCloseAdapter")) == 1
