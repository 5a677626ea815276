"""The configuration side of a Windows device (Wintun or tap-windows6), over the IP Helper API."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from ...errors import ConfigError, DeviceError, UnsupportedError
from ...netconfig.device import DeviceConfig, Layer, check_mtu_keeps_ipv6
from .._base import ASSOCIATE_ROUTE_BSD_ONLY, OWNER_LINUX_ONLY, Route
from .._build import Additions, add_addresses, add_routes
from .._syscalls import Syscalls, oserror_to_device_error
from .iphlpapi import AF_INET, IpHelper, flush_resolver_cache

__all__ = ["WindowsInterface", "configure", "reject_unsupported", "set_mtus"]


class WindowsInterface:
    """One Windows network interface, known by its LUID.

    Args:
        syscalls: the system-call layer (for ``netsh``).
        iphlp: the IP Helper bindings.
        luid: the interface LUID.
        layer: TUN (Wintun) or TAP (tap-windows6).
        driver: ``"wintun"`` or ``"tap-windows6"``, for messages.
    """

    def __init__(
        self,
        *,
        syscalls: Syscalls,
        iphlp: IpHelper,
        luid: int,
        layer: Layer,
        driver: str,
    ) -> None:
        self.sys = syscalls
        self.iphlp = iphlp
        self.luid = luid
        self.layer = layer
        self.driver = driver
        self._cleanups: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<WindowsInterface {self.driver} luid={self.luid:#x}>"

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    @contextlib.contextmanager
    def op(self, what: str) -> Iterator[None]:
        try:
            yield
        except (ConfigError, DeviceError, UnsupportedError):
            raise
        except OSError as exc:
            raise oserror_to_device_error(exc, what, privilege="Administrator") from exc

    # -- identity -----------------------------------------------------------------------------

    def open_queue(self) -> object:
        raise UnsupportedError("multi-queue devices are Linux only; Windows has one queue")

    def name(self) -> str:
        with self.op("get name"):
            return self.iphlp.luid_to_alias(self.luid)

    def set_name(self, name: str) -> None:
        # tun-rs does this with netsh too: the IP Helper API has no rename.
        old = self.name()
        with self.op(f"rename to {name!r}"):
            self.sys.run(
                ["netsh", "interface", "set", "interface", f"name={old}", f"newname={name}"]
            )

    def if_index(self) -> int:
        with self.op("get interface index"):
            return self.iphlp.luid_to_index(self.luid)

    def if_luid(self) -> int:
        """The LUID read when the device opened (``WintunGetAdapterLUID``,
        ``ConvertInterfaceAliasToLuid`` for tap-windows6): it never changes."""
        return self.luid

    # -- MTU, metric, DNS ---------------------------------------------------------------------

    def mtu(self) -> int:
        with self.op("get MTU"):
            return self.iphlp.mtu(self.luid, AF_INET)

    def set_mtu(self, mtu: int) -> None:
        with self.op(f"set MTU {mtu}"):
            check_mtu_keeps_ipv6(mtu, self.addresses)
            self.iphlp.set_mtu(self.luid, mtu)

    def set_mtu_v4(self, mtu: int) -> None:
        with self.op(f"set IPv4 MTU {mtu}"):
            self.iphlp.set_mtu_v4(self.luid, mtu)

    def mtu_v6(self) -> int:
        with self.op("get IPv6 MTU"):
            return self.iphlp.mtu_v6(self.luid)

    def set_mtu_v6(self, mtu: int) -> None:
        with self.op(f"set IPv6 MTU {mtu}"):
            self.iphlp.set_mtu_v6(self.luid, mtu)

    def largest_mtu(self) -> int:
        """The larger of the IPv4 and IPv6 MTUs: the size limits of the device follow it."""
        with self.op("get MTU"):
            return self.iphlp.largest_mtu(self.luid)

    def set_metric(self, metric: int) -> None:
        """The interface metric, for IPv4 and IPv6 (automatic metric off)."""
        with self.op(f"set metric {metric}"):
            self.iphlp.set_metric(self.luid, metric)

    def set_dns_servers(self, servers: tuple[IPv4Address | IPv6Address, ...]) -> None:
        """The interface's DNS servers of each family in ``servers``
        (``SetInterfaceDnsSettings``, else ``netsh``), then the resolver cache is flushed."""
        with self.op("set DNS servers"):
            self.iphlp.set_dns_servers(self.luid, servers, alias=self.name())
        flush_resolver_cache(self.sys)

    def clear_dns_servers(self, versions: tuple[int, ...]) -> None:
        """Remove the interface's DNS servers of each IP version in ``versions``
        (``SetInterfaceDnsSettings``, else ``netsh``), then the resolver cache is flushed."""
        with self.op("clear DNS servers"):
            self.iphlp.clear_dns_servers(self.luid, versions, alias=self.name())
        flush_resolver_cache(self.sys)

    # -- addresses and routes -----------------------------------------------------------------

    def addresses(self) -> list[IPv4Interface | IPv6Interface]:
        with self.op("list addresses"):
            return self.iphlp.addresses(self.luid)

    def add_address(
        self, iface: IPv4Interface | IPv6Interface, peer: IPv4Address | None = None
    ) -> None:
        # Windows interfaces have no point-to-point peer; the on-link prefix covers it.
        with self.op(f"add address {iface}"):
            self.iphlp.add_address(self.luid, iface)

    def remove_address(self, address: IPv4Address | IPv6Address) -> None:
        with self.op(f"remove address {address}"):
            self.iphlp.remove_address(self.luid, address)

    def routes(self) -> list[Route]:
        with self.op("list routes"):
            return self.iphlp.routes(self.luid)

    def add_route(self, route: Route) -> None:
        with self.op(f"add route {route.destination}"):
            self.iphlp.add_route(self.luid, route)

    def remove_route(self, route: Route) -> None:
        with self.op(f"remove route {route.destination}"):
            self.iphlp.remove_route(self.luid, route)

    # -- link (overridden per driver) ---------------------------------------------------------

    def mac_address(self) -> bytes:
        raise UnsupportedError("a TUN (layer 3) device has no MAC address")

    def set_mac_address(self, mac: bytes) -> None:
        raise UnsupportedError(
            f"{self.driver} cannot change the MAC address at run time (tun-rs neither)"
        )

    def set_enabled(self, up: bool) -> None:
        raise UnsupportedError(f"{self.driver}: up/down is not supported")

    def is_running(self) -> bool:
        return not self._closed

    def broadcast(self) -> IPv4Address | None:
        raise UnsupportedError("the broadcast address (SIOCGIFBRDADDR) is Linux only")

    def set_broadcast(self, address: IPv4Address) -> None:
        raise UnsupportedError("the broadcast address (SIOCSIFBRDADDR) is Linux only")

    def tx_queue_len(self) -> int:
        raise UnsupportedError("the transmit queue length is Linux only")

    def set_tx_queue_len(self, length: int) -> None:
        raise UnsupportedError("the transmit queue length is Linux only")

    def set_persist(self, fd: int, persist: bool) -> None:
        raise UnsupportedError(
            f"{self.driver}: persist at run time is not possible on Windows (Linux, macOS feth "
            "and the BSDs have it)"
        )

    def set_owner(self, fd: int, uid: int) -> None:
        raise UnsupportedError(f"{self.driver}: {OWNER_LINUX_ONLY}")

    def set_group(self, fd: int, gid: int) -> None:
        raise UnsupportedError(f"{self.driver}: {OWNER_LINUX_ONLY}")

    def version(self) -> str:
        raise UnsupportedError(f"{self.driver}: no driver version")

    def set_associate_route(self, on: bool) -> None:
        raise UnsupportedError(f"{self.driver}: {ASSOCIATE_ROUTE_BSD_ONLY}")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            cleanups, self._cleanups = self._cleanups, []
        errors: list[BaseException] = []
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def reject_unsupported(config: DeviceConfig) -> None:
    """Refuse, before any system call, options Windows does not have."""
    if config.multi_queue:
        raise UnsupportedError("multi-queue devices are Linux only, not Windows")
    if config.offload:
        raise UnsupportedError("TUN offload (virtio-net header) is Linux only, not Windows")
    if config.tx_queue_len is not None:
        raise UnsupportedError("the transmit queue length is Linux only, not Windows")
    if config.owner is not None or config.group is not None:
        raise UnsupportedError("device owner/group is Linux only, not Windows")
    if config.netns is not None:
        raise UnsupportedError("network namespaces are Linux only, not Windows")
    if config.packet_information:
        raise UnsupportedError("Windows devices carry no packet-information header")
    if config.mac is not None:
        raise UnsupportedError(
            "setting a tap-windows6 MAC address goes through the adapter's registry "
            "(NetworkAddress), which tunflow does not do; set it in the adapter's properties"
        )


def set_mtus(iface: WindowsInterface, config: DeviceConfig) -> None:
    """Each family's MTU: ``mtu_v4`` / ``mtu_v6`` where given, else ``mtu``. An IPv6 MTU that
    comes from ``mtu`` is skipped on a machine without an IPv6 stack (as
    :meth:`WindowsInterface.set_mtu` does); ``mtu_v6`` there is an
    :class:`~tunflow.UnsupportedError`."""
    v4 = config.mtu_v4 if config.mtu_v4 is not None else config.mtu
    v6 = config.mtu_v6 if config.mtu_v6 is not None else config.mtu
    if v4 is not None and v4 == v6 and config.mtu_v6 is None:
        iface.set_mtu(v4)
        return
    if v4 is not None:
        iface.set_mtu_v4(v4)
    if v6 is not None:
        try:
            iface.set_mtu_v6(v6)
        except UnsupportedError:
            if config.mtu_v6 is not None:
                raise


def configure(iface: WindowsInterface, config: DeviceConfig, added: Additions) -> None:
    """MTU (v4 and v6), metric, addresses, DNS, up, routes; additions recorded in ``added``."""
    set_mtus(iface, config)
    if config.metric is not None:
        iface.set_metric(config.metric)
    add_addresses(iface, config, added)
    if config.dns_servers:
        iface.set_dns_servers(config.dns_servers)
    if config.enabled is not None:
        iface.set_enabled(config.enabled)
    add_routes(iface, config, added)
