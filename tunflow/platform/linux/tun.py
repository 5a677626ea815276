"""Linux TUN/TAP: ``/dev/net/tun``, the ``TUN*`` ioctls, and rtnetlink for configuration.

The only module that opens Linux tun devices. Creation order, chosen so a failure half-way can be
undone: open + ``TUNSETIFF`` (create or attach) → offload negotiation → owner/group → MTU, MAC,
txqueuelen → addresses → up/down → routes (the kernel refuses routes through a down link) →
``TUNSETPERSIST`` last. On failure everything added is removed again, and a device this call
created disappears when its fd closes (persist is only set once all else succeeded).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import platform
import stat
import struct
import time
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any, Final, NamedTuple

from ...errors import (
    ClosedDeviceError,
    ConfigError,
    DeviceBusyError,
    DeviceError,
    DeviceNotFoundError,
    DevicePermissionError,
    UnsupportedError,
)
from ...netconfig.device import DeviceConfig, Layer, check_mtu_keeps_ipv6, check_mtu_takes_ipv6
from ...netconfig.ioctl import linux_layout
from ...netconfig.rtnetlink import IFA_F_SECONDARY, IP6_RT_PRIO_USER, RTN_LOCAL, check_ifname
from .._base import ASSOCIATE_ROUTE_BSD_ONLY, OffloadInfo, Route, mtu_v6_unsupported
from .._build import Additions, add_addresses, add_routes, reject_windows_only
from .._unix import FdQueue
from ._netns import current_inode, entered, netns_path, open_current

__all__ = ["LinuxInterface", "open_device", "adopt_fd", "netns_entered", "TUN_PATH"]

log = logging.getLogger("tunflow.platform")

TUN_PATH = "/dev/net/tun"
_IOC = linux_layout(platform.machine())
_T = ord("T")
TUNSETIFF: Final = _IOC.iow(_T, 202, 4)
TUNSETPERSIST: Final = _IOC.iow(_T, 203, 4)
TUNSETOWNER: Final = _IOC.iow(_T, 204, 4)
TUNSETGROUP: Final = _IOC.iow(_T, 206, 4)
TUNGETFEATURES: Final = _IOC.ior(_T, 207, 4)
TUNSETOFFLOAD: Final = _IOC.iow(_T, 208, 4)
TUNGETIFF: Final = _IOC.ior(_T, 210, 4)
TUNSETVNETHDRSZ: Final = _IOC.iow(_T, 216, 4)
TUNSETQUEUE: Final = _IOC.iow(_T, 217, 4)
TUNSETCARRIER: Final = _IOC.iow(_T, 226, 4)
TUNGETDEVNETNS: Final = _IOC.io(_T, 227)

IFF_TUN: Final = 0x0001
IFF_TAP: Final = 0x0002
IFF_NO_PI: Final = 0x1000
IFF_VNET_HDR: Final = 0x4000
IFF_TUN_EXCL: Final = 0x8000
IFF_MULTI_QUEUE: Final = 0x0100
IFF_PERSIST: Final = 0x0800

_NO_INTERFACE_DNS = (
    "interface DNS servers are Windows only: on Linux the resolver has them (with "
    "systemd-resolved: `resolvectl dns IFACE ADDRESS...`, `resolvectl revert IFACE`)"
)

TUN_F_CSUM: Final = 0x01
TUN_F_TSO4: Final = 0x02
TUN_F_TSO6: Final = 0x04
TUN_F_USO4: Final = 0x20
TUN_F_USO6: Final = 0x40

#: the largest MTU the kernel lets a TAP have (``MAX_MTU - dev->hard_header_len``)
TAP_MAX_MTU: Final = 65535 - 14

IFF_UP: Final = 0x1
IFF_RUNNING: Final = 0x40
IFF_LOWER_UP: Final = 0x10000

_IFREQ = struct.Struct("16sH22x")  # struct ifreq: name + ifr_flags, 40 bytes on every ABI we run
#: struct ifreq with a sockaddr_in: name, sin_family, sin_port, sin_addr (40 bytes)
_IFREQ_INET = struct.Struct("16sH2x4s16x")
#: ``include/uapi/linux/sockios.h`` (the same on every architecture)
SIOCGIFBRDADDR: Final = 0x8919
SIOCSIFBRDADDR: Final = 0x891A
_INT = struct.Struct("i")

#: the most queues the kernel gives a multi-queue device (``MAX_TAP_QUEUES``)
MAX_QUEUES: Final = 256

#: ``TUNSETOFFLOAD`` masks asked for, most capable first
OFFLOAD_TSO: Final = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
OFFLOAD_TSO_USO: Final = OFFLOAD_TSO | TUN_F_USO4 | TUN_F_USO6


def _ioctl(fd: int, request: int, arg: bytes | int) -> bytes | int:
    import fcntl

    return fcntl.ioctl(fd, request, arg)


def _c_int(ident: int) -> int:
    """A uid or gid as the C int ``fcntl.ioctl`` takes (the kernel reads a ``uid_t``)."""
    return ident - (1 << 32) if ident >= 1 << 31 else ident


def _device_error(exc: OSError, what: str) -> DeviceError:
    return DeviceError.from_oserror(exc, what)


def _open_refused(exc: OSError) -> DeviceError:
    """The error for ``/dev/net/tun`` refusing to open. ``EACCES`` is the node's mode refusing
    this user (0600 in some containers), which ``CAP_NET_ADMIN`` does not lift: the message
    names the mode and owner."""
    if exc.errno != errno.EACCES:
        return _device_error(exc, f"open {TUN_PATH}")
    try:
        st = os.stat(TUN_PATH)
    except OSError:
        return _device_error(exc, f"open {TUN_PATH}")
    return DevicePermissionError(
        errno.EACCES,
        f"open {TUN_PATH}: Permission denied — its mode {stat.filemode(st.st_mode)} (owner "
        f"{st.st_uid}, group {st.st_gid}) does not let this process read and write it, which "
        "CAP_NET_ADMIN does not change: run as root, or give the user access to the node "
        "(usually crw-rw-rw-); making a device also needs CAP_NET_ADMIN",
    )


def _open_queue_fd(name: str | None, flags: int) -> tuple[int, str]:
    """Open ``/dev/net/tun`` and ``TUNSETIFF``; return the fd and the kernel's name.

    Raises:
        ConfigError: ``name``, a ``%d`` template too, breaks the kernel's rules for interface
            names (:func:`~tunflow.netconfig.rtnetlink.check_ifname`).
    """
    raw = check_ifname(name) if name else b""
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise DeviceNotFoundError(
            errno.ENOENT, f"{TUN_PATH} does not exist: load the tun module (modprobe tun)"
        ) from exc
    except OSError as exc:
        raise _open_refused(exc) from exc
    try:
        ifr = _ioctl(fd, TUNSETIFF, _IFREQ.pack(raw, flags))
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.E2BIG:
            raise DeviceError(
                errno.E2BIG,
                f"TUNSETIFF {name!r}: the device has as many queues as the kernel allows "
                f"({MAX_QUEUES})",
            ) from exc
        if exc.errno == errno.EINVAL and name and flags & IFF_TUN_EXCL:
            # (made exclusively: no interface of the name was there — one made meanwhile is
            # EBUSY — so the kernel refused to make it)
            raise DeviceError(
                errno.EINVAL,
                f"TUNSETIFF {name!r}: the kernel refused to make an interface of this name "
                "(EINVAL; it refuses some names, 'all' and 'default' among them)",
            ) from exc
        if exc.errno in (errno.EINVAL, errno.EBUSY) and name:
            kind = _kind_not_tun(name)
            if kind is not None:
                raise DeviceBusyError(
                    exc.errno,
                    f"TUNSETIFF {name!r}: an interface named {name} exists and is not a TUN/TAP "
                    f"device{f' (it is a {kind})' if kind else ''}",
                ) from exc
        if exc.errno == errno.EINVAL and name:
            raise DeviceBusyError(
                errno.EINVAL,
                f"TUNSETIFF {name!r}: the interface exists with other flags — a TUN vs TAP "
                "mismatch, IFF_MULTI_QUEUE set on one side only, or it is not a tun device",
            ) from exc
        if exc.errno == errno.EBUSY and name:
            raise DeviceBusyError(
                errno.EBUSY,
                f"TUNSETIFF {name!r}: an interface of the name was made meanwhile by another process"
                if flags & IFF_TUN_EXCL
                else f"TUNSETIFF {name!r}: the device is already in use by another process",
            ) from exc
        raise _device_error(exc, f"TUNSETIFF {name or '(kernel-chosen name)'}") from exc
    assert isinstance(ifr, bytes)
    got = _IFREQ.unpack(ifr)[0].rstrip(b"\0").decode("utf-8", "surrogateescape")
    return fd, got


class LinuxInterface:
    """Configuration of one Linux tun/tap interface over rtnetlink, plus its queue factory."""

    def __init__(
        self,
        *,
        name: str,
        flags: int,
        offload: OffloadInfo,
        layer: Layer,
        created: bool,
    ) -> None:
        from .netlink import RtNetlink

        self._name = name
        self._flags = flags
        self.offload = offload
        self.layer = layer
        self.created = created
        # The namespace the device lives in; queues opened later are opened inside it.
        self._netns_fd = open_current()
        self._netns = current_inode()
        try:
            self._nl = RtNetlink()
        except BaseException:
            os.close(self._netns_fd)
            raise
        try:
            self._index = self._nl.link_by_name(name).index
        except OSError as exc:
            self._nl.close()
            os.close(self._netns_fd)
            raise _device_error(exc, f"look up {name}") from exc

    def __repr__(self) -> str:
        return f"<LinuxInterface {self._name} index={self._index}>"

    # -- queues ---------------------------------------------------------------------------------

    def wrap_queue(self, fd: int, *, close_fd: bool = True) -> FdQueue:
        return FdQueue(fd, close_fd=close_fd, vnet_hdr=self.offload.vnet_hdr, offload=self.offload)

    def open_queue(self) -> FdQueue:
        if not self._flags & IFF_MULTI_QUEUE:
            raise UnsupportedError(
                "try_clone needs a multi-queue device: build it with multi_queue(True)"
            )
        # TUNSETIFF acts in the calling thread's namespace: open the queue in the device's.
        with entered(self._netns_fd if current_inode() != self._netns else None):
            fd, _ = _open_queue_fd(self.name(), self._flags)
        try:
            if self.offload.vnet_hdr:
                _ioctl(fd, TUNSETOFFLOAD, self.offload.flags)
        except OSError as exc:
            os.close(fd)
            raise _device_error(exc, "TUNSETOFFLOAD on a new queue") from exc
        return self.wrap_queue(fd)

    def link_watch(self) -> Any:
        """A :class:`~tunflow.platform.linux.netlink.LinkWatch` on this interface, opened in
        its namespace."""
        from .netlink import LinkWatch

        with (
            self._op("watch the link"),
            entered(self._netns_fd if current_inode() != self._netns else None),
        ):
            return LinkWatch(self._index)

    # -- configuration --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _op(self, what: str) -> Iterator[None]:
        try:
            yield
        except (ConfigError, DeviceError):
            raise
        except OSError as exc:
            if self._nl.closed:  # the last queue was closed meanwhile, from another thread
                raise ClosedDeviceError(f"{what}: the device is closed") from exc
            if exc.errno == errno.ENODEV:
                raise DeviceNotFoundError(
                    exc.errno, f"{what}: interface {self._name} (index {self._index}) is gone"
                ) from exc
            raise _device_error(exc, f"{what} on {self._name}") from exc

    def name(self) -> str:
        with self._op("get name"):
            self._name = self._nl.link(self._index).name
        return self._name

    def set_name(self, name: str) -> None:
        with self._op(f"rename to {name!r}"):
            link = self._nl.link(self._index)
            try:
                # Linux 6.18 renames a running tun; a link renamed as it is keeps everything.
                self._rename(name)
            except OSError as exc:
                if exc.errno != errno.EBUSY or not link.flags & IFF_UP:
                    raise
                # An older kernel refuses to rename a running link (EBUSY); bringing it down
                # drops its IPv6 addresses and every route, so put them back afterwards.
                addrs = self._nl.addresses(self._index)
                routes = self._nl.routes(self._index)
                self._nl.set_link(self._index, up=False)
                try:
                    self._rename(name)
                finally:
                    with self._op("bring it up again and put back its addresses and routes"):
                        self._nl.set_link(self._index, up=True)
                        self._restore(addrs, routes)

    def _rename(self, name: str) -> None:
        """One rename request; a name the kernel refuses (``EINVAL``) is a ConfigError."""
        try:
            self._nl.set_link(self._index, name=name)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # (the name passed check_ifname: the kernel refused it as a name)
            raise ConfigError(
                f"rename {self._name} to {name!r}: the kernel refuses this name (EINVAL;"
                " it refuses some names, 'all' and 'default' among them)"
            ) from exc
        self._name = name

    def snapshot(self) -> _LinkState:
        """The link settings a build may change, and the addresses and routes that bringing
        the link down would drop: for :meth:`restore`."""
        with self._op("read the link"):
            link = self._nl.link(self._index)
            return _LinkState(
                link.mtu,
                link.txqlen,
                link.mac if self.layer is Layer.L2 else None,
                bool(link.flags & IFF_UP),
                self._nl.addresses(self._index),
                self._nl.routes(self._index),
                link.tun_owner,
                link.tun_group,
            )

    def restore(self, state: _LinkState, fd: int) -> None:
        """Put the link back as :meth:`snapshot` found it (MTU, txqueuelen, MAC, up or down,
        the addresses and routes a down link lost, and through the queue ``fd`` the owner and
        group). An owner or group the device did not have cannot be taken away again (the
        kernel has no ``TUNSETOWNER`` to none): that is logged, and stays."""
        with self._op("restore the link"):
            link = self._nl.link(self._index)
            if link.mtu != state.mtu:
                self._nl.set_link(self._index, mtu=state.mtu)
            if link.txqlen != state.txqlen:
                self._nl.set_link(self._index, txqlen=state.txqlen)
            if state.mac is not None and link.mac != state.mac:
                self._nl.set_link(self._index, mac=state.mac)
            if bool(link.flags & IFF_UP) != state.up:
                self._nl.set_link(self._index, up=state.up)
            self._restore(state.addresses, state.routes)
            for what, now, was, put_back in (
                ("owner", link.tun_owner, state.owner, self.set_owner),
                ("group", link.tun_group, state.group, self.set_group),
            ):
                if now == was:
                    continue
                if was is None:
                    log.warning(
                        "%s: the failed build set its %s to %s, which stays: the kernel cannot "
                        "take a TUN/TAP's %s away again",
                        self._name,
                        what,
                        now,
                        what,
                    )
                else:
                    put_back(fd, was)

    def _restore(self, addrs: list[IPv4Interface | IPv6Interface], routes: Sequence[Any]) -> None:
        # Link-local ones too (one the user added); the kernel's own is back already, made
        # again as it was when the link came up.
        have = set(self._nl.addresses(self._index))
        for a in addrs:
            if a not in have:
                with contextlib.suppress(FileExistsError):
                    self._nl.add_address(self._index, a)
        # The metric too: a route may share its prefix with the kernel's own prefix route
        # (10.0.0.0/24 metric 100 beside the kernel's 10.0.0.0/24).
        have_routes = {(r.destination, r.gateway, r.metric) for r in self._nl.routes(self._index)}
        for r in routes:
            dest, gw, metric = r.destination, r.gateway, r.metric
            if (dest, gw, metric) in have_routes or getattr(r, "protocol", None) in ("kernel", 2):
                continue
            with contextlib.suppress(FileExistsError):
                self._nl.add_route(self._index, dest, gateway=gw, metric=metric)

    def if_index(self) -> int:
        return self._index

    def mtu(self) -> int:
        with self._op("get MTU"):
            return self._nl.link(self._index).mtu

    def set_mtu(self, mtu: int) -> None:
        with self._op(f"set MTU {mtu}"):
            if self.layer is Layer.L2 and mtu > TAP_MAX_MTU:
                # (drivers/net/tun.c: a TAP's max_mtu leaves room for its Ethernet header)
                raise ConfigError(
                    f"MTU {mtu} is above a TAP's maximum of {TAP_MAX_MTU} (65535 less the "
                    "14-byte Ethernet header)"
                )
            check_mtu_keeps_ipv6(
                mtu,
                lambda: self._nl.addresses(self._index),
                " (the kernel would drop them); remove them first",
            )
            self._nl.set_link(self._index, mtu=mtu)

    def addresses(self) -> list[IPv4Interface | IPv6Interface]:
        with self._op("list addresses"):
            return self._nl.addresses(self._index)

    def address_peers(
        self,
    ) -> list[tuple[IPv4Interface | IPv6Interface, IPv4Address | IPv6Address | None]]:
        """Every address with its point-to-point peer (``None`` without one)."""
        with self._op("list addresses"):
            return [(a.interface, a.peer) for a in self._nl.address_details(self._index)]

    def add_address(
        self, iface: IPv4Interface | IPv6Interface, peer: IPv4Address | None = None
    ) -> None:
        with self._op(f"add address {iface}"):
            if isinstance(iface, IPv6Interface):
                check_mtu_takes_ipv6(iface, self._nl.link(self._index).mtu)
            try:
                self._nl.add_address(self._index, iface, peer=peer)
            except OSError as exc:
                # Without CAP_NET_ADMIN the kernel says EPERM; EACCES for an IPv6 address
                # means IPv6 is switched off on the link, which no capability changes.
                if exc.errno != errno.EACCES or not isinstance(iface, IPv6Interface):
                    raise
                raise DeviceError(
                    exc.errno,
                    f"add address {iface} on {self._name}: IPv6 is disabled on the interface "
                    f"(sysctl net.ipv6.conf.{self._name}.disable_ipv6=1; a new interface "
                    "takes net.ipv6.conf.default.disable_ipv6 of its namespace)",
                ) from exc
            if isinstance(iface, IPv6Interface):
                self._wait_ready(iface.ip)

    def _wait_ready(self, address: IPv6Address, timeout: float = 2.0) -> None:
        # The kernel installs an IPv6 address's local route from a work queue a moment after
        # RTM_NEWADDR returns; a packet written to the device before that is dropped
        # (Ip6InAddrErrors). Wait, briefly, until the address can receive — when the link is up.
        if not self._nl.link(self._index).flags & IFF_UP:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._nl.route_type(address) == RTN_LOCAL:
                    return
            except OSError:
                pass
            time.sleep(0.001)

    def remove_address(self, address: IPv4Address | IPv6Address) -> None:
        with self._op(f"remove address {address}"):
            self._nl.remove_address(self._index, address)

    def undo_address(
        self, iface: IPv4Interface | IPv6Interface, peer: IPv4Address | None = None
    ) -> None:
        """Remove exactly ``iface`` (with ``peer``), not merely the first address with its IP:
        what undoing a build's :meth:`add_address` needs."""
        with self._op(f"remove address {iface}"):
            # (an address without a peer has its own IP as IFA_ADDRESS)
            self._nl.remove_address(self._index, iface, peer=iface.ip if peer is None else peer)

    def routes(self) -> list[Route]:
        with self._op("list routes"):
            return [Route(r.destination, r.gateway, r.metric) for r in self._nl.routes(self._index)]

    def add_route(self, route: Route) -> None:
        with self._op(f"add route {route.destination}"):
            try:
                self._nl.add_route(
                    self._index, route.destination, gateway=route.gateway, metric=route.metric
                )
            except OSError as exc:
                if exc.errno == errno.ENETDOWN:
                    raise DeviceError(
                        exc.errno,
                        f"add route {route.destination} on {self._name}: the link is down "
                        "(the kernel refuses routes through a down link; enable it first)",
                    ) from exc
                raise

    def remove_route(self, route: Route) -> None:
        """Remove a route. The kernel reads a removal without a metric as "any metric" and
        removes the first route in metric order — its own prefix route (256), say. So without
        a metric, an IPv6 route at the kernel's default (what :meth:`add_route` made without
        one) goes first. Metric 0 is a route at 0 only (:meth:`RtNetlink.remove_route`)."""
        dest, gateway, metric = route.destination, route.gateway, route.metric
        with self._op(f"remove route {dest}"):
            try:
                if dest.version == 6 and metric is None:
                    try:
                        self._nl.remove_route(
                            self._index, dest, gateway=gateway, metric=IP6_RT_PRIO_USER
                        )
                        return
                    except OSError as exc:
                        if exc.errno != errno.ESRCH:
                            raise
                self._nl.remove_route(self._index, dest, gateway=gateway, metric=metric)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise
                # no such route — or no such interface: then ENODEV, "gone", from here
                self._nl.link(self._index)
                via = "" if gateway is None else f" via {gateway}"
                at = "" if route.metric is None else f" metric {route.metric}"
                raise DeviceError(
                    exc.errno, f"remove route: no route to {dest}{via}{at} through {self._name}"
                ) from exc

    def undo_route(self, route: Route) -> None:
        """Remove exactly the route :meth:`add_route` added, not merely the first to its
        destination through the link: a route added without a metric has the kernel's default,
        which a removal must name for IPv6 (IPv4's default, 0, sorts first anyway)."""
        metric = route.metric
        if metric is None and route.destination.version == 6:
            metric = IP6_RT_PRIO_USER
        self.remove_route(Route(route.destination, route.gateway, metric))

    def mac_address(self) -> bytes:
        if self.layer is not Layer.L2:
            raise UnsupportedError("a TUN (layer 3) device has no MAC address")
        with self._op("get MAC"):
            mac = self._nl.link(self._index).mac
        return mac or bytes(6)

    def set_mac_address(self, mac: bytes) -> None:
        if self.layer is not Layer.L2:
            raise UnsupportedError("a TUN (layer 3) device has no MAC address")
        with self._op("set MAC"):
            self._nl.set_link(self._index, mac=mac)

    def set_enabled(self, up: bool) -> None:
        with self._op("bring up" if up else "bring down"):
            self._nl.set_link(self._index, up=up)

    def is_running(self) -> bool:
        with self._op("get flags"):
            flags = self._nl.link(self._index).flags
        return bool(flags & IFF_UP) and bool(flags & IFF_RUNNING)

    def _inet_ioctl(self, request: int, address: bytes) -> bytes:
        """An ``AF_INET`` socket ioctl on this interface's ``ifreq`` (by its name now), made in
        the interface's namespace; the ``sin_addr`` the kernel answers."""
        import socket

        raw = self.name().encode("utf-8", "surrogateescape")
        with entered(self._netns_fd if current_inode() != self._netns else None):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        with sock:
            ifr = _ioctl(sock.fileno(), request, _IFREQ_INET.pack(raw, socket.AF_INET, address))
        assert isinstance(ifr, bytes)
        return bytes(_IFREQ_INET.unpack(ifr)[2])

    def broadcast(self) -> IPv4Address | None:
        """The broadcast address of the interface's first IPv4 address (``SIOCGIFBRDADDR``);
        ``None`` when it has none, or no IPv4 address."""
        with self._op("get broadcast address"):
            try:
                raw = self._inet_ioctl(SIOCGIFBRDADDR, bytes(4))
            except OSError as exc:
                if exc.errno != errno.EADDRNOTAVAIL:
                    raise
                return None
        ip = IPv4Address(raw)
        return None if ip.packed == bytes(4) else ip

    def set_broadcast(self, address: IPv4Address) -> None:
        """Set the broadcast address of the interface's first IPv4 address
        (``SIOCSIFBRDADDR``; ``0.0.0.0``: none). The kernel takes the address out and puts it
        back to change it, which drops its secondary addresses and, when it is the only one,
        every route through the interface: they are put back.

        The secondaries of its subnet are taken out first: with ``promote_secondaries`` on
        (systemd's default) the kernel would promote one in its place instead, and put the
        changed address back as a secondary behind it."""
        with self._op(f"set broadcast address {address}"):
            details = self._nl.address_details(self._index)
            routes = self._nl.routes(self._index)
            name = self.name()
            # the address the ioctl changes: the first IPv4 one under the interface's label
            target = next(
                (d for d in details if d.interface.version == 4 and d.label in (None, name)),
                None,
            )
            if target is not None and (target.broadcast or IPv4Address(0)) != address:
                for d in details:
                    if (
                        d.flags & IFA_F_SECONDARY
                        and d.interface.network == target.interface.network
                    ):
                        self._nl.remove_address(
                            self._index, d.interface, peer=d.peer or d.interface.ip
                        )
            try:
                self._inet_ioctl(SIOCSIFBRDADDR, address.packed)
            except OSError as exc:
                if exc.errno != errno.EADDRNOTAVAIL:
                    raise
                raise DeviceError(
                    exc.errno,
                    f"set broadcast address {address} on {self._name}: the interface has no "
                    "IPv4 address (add one first)",
                ) from exc
            finally:
                self._restore([d.interface for d in details], routes)

    def tx_queue_len(self) -> int:
        with self._op("get txqueuelen"):
            return self._nl.link(self._index).txqlen

    def set_tx_queue_len(self, length: int) -> None:
        with self._op(f"set txqueuelen {length}"):
            self._nl.set_link(self._index, txqlen=length)

    def mtu_v6(self) -> int:
        raise mtu_v6_unsupported()

    def set_mtu_v6(self, mtu: int) -> None:
        raise mtu_v6_unsupported()

    def set_metric(self, metric: int) -> None:
        raise UnsupportedError(
            "the interface metric is Windows only, not linux: a route's own metric is "
            "add_route(..., metric=)"
        )

    def set_associate_route(self, on: bool) -> None:
        raise UnsupportedError(ASSOCIATE_ROUTE_BSD_ONLY)

    def if_luid(self) -> int:
        raise UnsupportedError("the interface LUID (NET_LUID) is Windows only")

    def version(self) -> str:
        raise UnsupportedError("the driver version is Windows only (Wintun, tap-windows6)")

    def set_dns_servers(self, servers: tuple[IPv4Address | IPv6Address, ...]) -> None:
        raise UnsupportedError(_NO_INTERFACE_DNS)

    def clear_dns_servers(self, versions: tuple[int, ...]) -> None:
        raise UnsupportedError(_NO_INTERFACE_DNS)

    def set_persist(self, fd: int, persist: bool) -> None:
        self._tun_ioctl(fd, TUNSETPERSIST, int(persist), "TUNSETPERSIST")

    def set_owner(self, fd: int, uid: int) -> None:
        self._tun_ioctl(fd, TUNSETOWNER, _c_int(uid), f"TUNSETOWNER {uid}")

    def set_group(self, fd: int, gid: int) -> None:
        self._tun_ioctl(fd, TUNSETGROUP, _c_int(gid), f"TUNSETGROUP {gid}")

    def _tun_ioctl(self, fd: int, request: int, arg: int, what: str) -> None:
        """A ``TUNSET*`` ioctl on the queue ``fd``; a queue whose interface was deleted
        (``EBADFD``) raises :class:`~tunflow.DeviceNotFoundError`."""
        try:
            _ioctl(fd, request, arg)
        except OSError as exc:
            if exc.errno == errno.EBADFD:
                raise DeviceNotFoundError(
                    exc.errno, f"{what}: interface {self._name} (index {self._index}) is gone"
                ) from exc
            raise _device_error(exc, f"{what} on {self._name}") from exc

    def close(self) -> None:
        self._nl.close()
        if self._netns_fd >= 0:
            os.close(self._netns_fd)
            self._netns_fd = -1


def _negotiate_offload(fd: int) -> OffloadInfo:
    """Ask for TSO + USO, then TSO only; a kernel that refuses both gets offload off."""
    for mask in (OFFLOAD_TSO_USO, OFFLOAD_TSO):
        try:
            _ioctl(fd, TUNSETOFFLOAD, mask)
        except OSError:
            continue
        return OffloadInfo(vnet_hdr=True, flags=mask, tso=True, uso=bool(mask & TUN_F_USO4))
    return OffloadInfo(vnet_hdr=True, flags=0)


def _adopted_offload(fd: int, flags: int) -> OffloadInfo:
    """The offload of an adopted fd: TSO + USO for a TUN opened with ``IFF_VNET_HDR``; none for
    a TAP's (the split reads IP packets, not frames), whose ``TUN_F_*`` mask is cleared so the
    kernel segments and checksums what it hands over (the 10-byte header stays, zero)."""
    if not flags & IFF_VNET_HDR:
        return OffloadInfo()
    if flags & IFF_TAP:
        with contextlib.suppress(OSError):
            _ioctl(fd, TUNSETOFFLOAD, 0)
        return OffloadInfo(vnet_hdr=True, flags=0)
    return _negotiate_offload(fd)


class _LinkState(NamedTuple):
    mtu: int
    txqlen: int
    mac: bytes | None
    up: bool
    addresses: list[IPv4Interface | IPv6Interface]
    routes: list[Any]
    owner: int | None
    group: int | None


def open_device(config: DeviceConfig) -> tuple[LinuxInterface, FdQueue]:
    """Create (or attach to) the device ``config`` describes, in ``config.netns`` if set."""
    reject_windows_only(config, "Linux")
    if config.netns is None:
        return _open_device(config)
    with netns_entered(config.netns):
        return _open_device(config)


@contextlib.contextmanager
def netns_entered(netns: str) -> Iterator[None]:
    """Run the body in the network namespace ``netns`` (a name or a path); one that cannot be
    entered raises the typed error :func:`_netns_error` makes of the ``OSError``."""
    path = netns_path(netns)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise _netns_error(exc, netns, path) from exc
    try:
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(entered(fd))
            except OSError as exc:
                raise _netns_error(exc, netns, path) from exc
            yield
    finally:
        os.close(fd)


def _netns_error(exc: OSError, netns: str, path: str) -> Exception:
    """What entering the namespace ``netns`` (at ``path``) failing means."""
    code = exc.errno or 0
    if code == errno.ENOENT:
        return DeviceNotFoundError(code, f"no network namespace at {path}")
    if code in (errno.EPERM, errno.EACCES):
        return DevicePermissionError(
            code,
            f"enter network namespace {netns}: {exc.strerror} — this needs read access to "
            f"{path} and the CAP_SYS_ADMIN capability (setns)",
        )
    if code in (errno.EINVAL, errno.EISDIR, errno.ENOTDIR):
        return ConfigError(f"{path} is not a network namespace")
    return DeviceError(code, f"enter network namespace {netns}: {exc.strerror or exc}")


def _open_device(config: DeviceConfig) -> tuple[LinuxInterface, FdQueue]:
    """Create (or attach to) the device ``config`` describes and configure it.

    Raises:
        DevicePermissionError: without CAP_NET_ADMIN.
        DeviceNotFoundError: ``/dev/net/tun`` is missing, or ``attach`` and no such device.
        DeviceBusyError: the name exists with incompatible flags, or is in use.
        DeviceError: any other refusal, with errno.
        ConfigError: a value the kernel rejects in a way we can name.
    """
    flags = IFF_TAP if config.layer is Layer.L2 else IFF_TUN
    if not config.packet_information:
        flags |= IFF_NO_PI
    if config.multi_queue:
        flags |= IFF_MULTI_QUEUE
    if config.offload:
        flags |= IFF_VNET_HDR
    existed = bool(config.name) and "%" not in (config.name or "") and _link_exists(config.name)
    if config.attach and not existed:
        raise DeviceNotFoundError(errno.ENODEV, f"no interface named {config.name!r} to attach to")
    # Not there when looked for: made exclusively (IFF_TUN_EXCL, for this open only — the
    # queues cloned later attach), so one another process makes in between is refused, not
    # taken as ours — configured, and deleted at close.
    fd, name = _open_queue_fd(config.name, flags if existed else flags | IFF_TUN_EXCL)
    iface: LinuxInterface | None = None
    before: _LinkState | None = None
    added = Additions()
    persisted = False
    try:
        if config.offload:
            offload = _negotiate_offload(fd)
        else:
            offload = OffloadInfo()
            # The TUN_F_* mask belongs to the device, not the fd: a persistent device used with
            # offload before would otherwise hand this reader super-packets it cannot parse
            # (tun-rs PR #141).
            with contextlib.suppress(OSError):
                _ioctl(fd, TUNSETOFFLOAD, 0)
        iface = LinuxInterface(
            name=name, flags=flags, offload=offload, layer=config.layer, created=not existed
        )
        if existed:
            # someone else's device: what the build changes goes back as it was on failure
            before = iface.snapshot()
        for request, ident in ((TUNSETOWNER, config.owner), (TUNSETGROUP, config.group)):
            if ident is not None:
                _ioctl(fd, request, _c_int(ident))
        _configure(iface, config, added)
        if config.persist and not _is_persistent(fd):
            iface.set_persist(fd, True)
            persisted = True
        queue = iface.wrap_queue(fd)
    except BaseException as exc:
        if iface is not None:
            if persisted:  # (else a device this build created would outlive its fd)
                try:
                    iface.set_persist(fd, False)
                except Exception as undo_exc:  # (another error is on its way: logged)
                    log.warning(
                        "%s: could not clear persist after a failed build: %s", name, undo_exc
                    )
            if existed:  # (a device this build created goes away with its fd)
                added.undo(iface, name)
                if before is not None:
                    try:
                        iface.restore(before, fd)
                    except Exception as undo_exc:  # (another error is on its way: logged)
                        log.warning(
                            "%s: could not put back its link settings after a failed build: %s",
                            name,
                            undo_exc,
                        )
            iface.close()
        os.close(fd)
        if isinstance(exc, OSError) and not isinstance(exc, DeviceError):
            raise _device_error(exc, f"configure {name}") from exc
        raise
    return iface, queue


def _is_persistent(fd: int) -> bool:
    """The device of the queue ``fd`` is persistent (``IFF_PERSIST`` in ``TUNGETIFF``)."""
    ifr = _ioctl(fd, TUNGETIFF, bytes(_IFREQ.size))
    assert isinstance(ifr, bytes)
    return bool(_IFREQ.unpack(ifr)[1] & IFF_PERSIST)


def _kind_not_tun(name: str) -> str | None:
    """The kind of the link ``name`` (``""`` when it has none: a NIC, ``lo``) if it is there
    and not a TUN/TAP device; ``None`` if it is one, is not there, or cannot be asked."""
    from .netlink import RtNetlink

    try:
        with RtNetlink() as nl:
            kind = nl.link_by_name(name).kind
    except (OSError, ConfigError):
        return None
    return None if kind == "tun" else kind


def _link_exists(name: str | None) -> bool:
    # Not /sys/class/net: sysfs shows the namespace of whoever mounted it, while the device is
    # made in this thread's namespace. Ask rtnetlink from this thread.
    if not name:
        return False
    from .netlink import RtNetlink

    with RtNetlink() as nl:
        try:
            nl.link_by_name(name)
        except OSError:
            return False
    return True


def _configure(iface: LinuxInterface, config: DeviceConfig, added: Additions) -> None:
    if config.link_mtu is not None:
        iface.set_mtu(config.link_mtu)
    if config.tx_queue_len is not None:
        iface.set_tx_queue_len(config.tx_queue_len)
    if config.mac is not None:
        iface.set_mac_address(config.mac)
    # Up before the addresses: IPv6 addresses added to a down link are not usable until it
    # comes up, and the kernel finishes them asynchronously (see LinuxInterface._wait_ready).
    if config.enabled is not None:
        iface.set_enabled(config.enabled)
    add_addresses(iface, config, added)
    add_routes(iface, config, added)


#: what opening an rtnetlink socket meets where the process may not (systemd's
#: RestrictAddressFamilies=, a seccomp filter, an SELinux policy)
_NETLINK_REFUSED: Final = frozenset(
    {errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EPERM, errno.EACCES}
)


def _device_netns(fd: int) -> int | None:
    """An fd of the network namespace the tun fd's interface lives in (``TUNGETDEVNETNS``);
    ``None`` when the kernel does not say (before Linux 5.2, or without ``CAP_NET_ADMIN`` over
    that namespace)."""
    try:
        netns = _ioctl(fd, TUNGETDEVNETNS, 0)
    except OSError:
        return None
    assert isinstance(netns, int)
    os.set_inheritable(netns, False)
    return netns


def adopt_fd(
    fd: int, *, close_fd: bool, packet_information: bool = False, layer: Layer = Layer.L3
) -> tuple[LinuxInterface | None, FdQueue]:
    """Wrap an fd made elsewhere; if it is a tun fd, learn its interface for configuration.

    The caller says whether the fd carries the 4-byte ``tun_pi`` header:
    ``packet_information=True`` for an fd opened without ``IFF_NO_PI`` (its header is then
    handed over as it is, as ``DeviceBuilder.packet_information`` does). ``TUNGETIFF`` cannot
    tell (it reports ``IFF_NOFILTER``, of the same value as ``IFF_NO_PI``), but the interface's
    ``IFLA_TUN_PI`` can: where it is found, a word that differs from it is refused. ``layer``
    changes no framing here (neither a tun nor a tap fd has a header of its own); a tun fd's
    layer is learnt from ``TUNGETIFF``, the caller's taken for any other fd.

    The interface is looked up by name in the namespace the kernel says it lives in
    (``TUNGETDEVNETNS``), entered for the look-up as a build in ``netns`` is; one that cannot be
    entered leaves the fd without an interface, as does a process that may not open an
    rtnetlink socket. Where the kernel does not say, the calling thread's namespace is taken.

    Raises:
        ConfigError: the interface's framing is not what ``packet_information`` says (the fd is
            left as it was, the caller's).
    """
    try:
        ifr = _ioctl(fd, TUNGETIFF, bytes(_IFREQ.size))
    except OSError:
        return None, FdQueue(fd, close_fd=close_fd)
    assert isinstance(ifr, bytes)
    raw_name, reported = _IFREQ.unpack(ifr)
    name = raw_name.rstrip(b"\0").decode("utf-8", "surrogateescape")
    # Keep only the flags that describe the device; decide IFF_NO_PI from the caller's word.
    flags = reported & (IFF_TUN | IFF_TAP | IFF_MULTI_QUEUE | IFF_VNET_HDR)
    if not packet_information:
        flags |= IFF_NO_PI
    layer = Layer.L2 if flags & IFF_TAP else Layer.L3
    netns = _device_netns(fd)
    inside = False
    try:
        with entered(netns):
            inside = True
            iface = LinuxInterface(
                name=name, flags=flags, offload=OffloadInfo(), layer=layer, created=False
            )
    except OSError as exc:
        if inside and not isinstance(exc, DeviceError) and exc.errno not in _NETLINK_REFUSED:
            raise
        # not found, its namespace cannot be entered, or rtnetlink is refused (a sandbox):
        # the fd carries packets all the same
        log.debug("fd %d (%s) adopted without its interface's configuration: %s", fd, name, exc)
        offload = _adopted_offload(fd, flags)
        queue = FdQueue(
            fd, close_fd=close_fd, vnet_hdr=offload.vnet_hdr, offload=offload, layer=layer
        )
        return None, queue
    finally:
        if netns is not None:
            os.close(netns)
    try:
        with iface._op("read the link"):
            has_pi = iface._nl.link(iface._index).tun_pi
        if has_pi is not None and has_pi != packet_information:
            raise ConfigError(
                f"fd {fd} ({name}) was opened without IFF_NO_PI: each packet carries the 4-byte "
                "tun_pi header; adopt it with packet_information=True"
                if has_pi
                else f"fd {fd} ({name}) was opened with IFF_NO_PI: its packets carry no "
                "tun_pi header; adopt it without packet_information"
            )
        iface.offload = _adopted_offload(fd, flags)
    except BaseException:
        iface.close()
        raise
    return iface, iface.wrap_queue(fd, close_fd=close_fd)
