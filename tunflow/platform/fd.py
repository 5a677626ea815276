"""Android and iOS: devices adopted from an fd the OS's VPN API made, never created here.

* **Android** — ``VpnService.Builder().establish().getFd()`` is a plain TUN fd: bare IP packets,
  no header (meh/rust-tun PR #30).
* **iOS / tvOS** — ``NEPacketTunnelProvider``'s utun socket: every packet carries the 4-byte
  big-endian address family of Darwin (``AF_INET`` 2, ``AF_INET6`` 30), removed on read and added
  on write unless ``packet_information=True``. Since iOS 16 the fd is no longer reachable through
  ``packetFlow.value(forKeyPath: "socket.fileDescriptor")``; :func:`find_utun_fd` finds it the way
  WireGuardKit does.

The OS configures these devices (addresses, routes, DNS, MTU come from ``VpnService.Builder`` or
``NEPacketTunnelNetworkSettings``), so :func:`adopt_fd` returns no interface and every
configuration method of the device raises :class:`~tunflow.UnsupportedError`.
"""

from __future__ import annotations

import struct
from typing import Final

from ..errors import UnsupportedError
from ..netconfig.device import DeviceConfig, Layer
from ._syscalls import Syscalls, current_syscalls, quiet_closer
from ._unix import FdQueue

__all__ = ["open_device", "adopt_fd", "find_utun_fd", "framing_for"]

#: sys/socket.h (Darwin): AF_SYSTEM; sys/sys_domain.h: AF_SYS_CONTROL
AF_SYSTEM: Final = 32
AF_SYS_CONTROL: Final = 2
#: Darwin's AF_INET6, the value iOS writes in the packet header
IOS_AF_INET6: Final = 30
#: sys/kern_control.h: struct sockaddr_ctl {u_char sc_len; u_char sc_family;
#: u_int16_t ss_sysaddr; u_int32_t sc_id; u_int32_t sc_unit; u_int32_t sc_reserved[5];}
_SOCKADDR_CTL_HEAD = struct.Struct("=BBHII")
#: WireGuardKit scans fds 0...1024 (inclusive)
UTUN_SCAN_LIMIT: Final = 1024


def _platform(platform: str | None) -> str:
    if platform is not None:
        return platform
    from . import current_name

    return current_name()


def framing_for(platform: str, *, packet_information: bool) -> dict[str, object]:
    """:class:`FdQueue` framing: iOS's 4-byte family header, none on Android (or other Unix)."""
    if platform == "ios":
        return {
            "af_header": not packet_information,
            "af_framed": True,
            "af_inet": 2,
            "af_inet6": IOS_AF_INET6,
        }
    return {}


def open_device(config: DeviceConfig, *, syscalls: Syscalls | None = None) -> tuple[None, None]:
    """Always raises: on Android and iOS only the OS's VPN API creates TUN devices.

    Raises:
        UnsupportedError: naming ``SyncDevice.from_fd`` / ``AsyncDevice.from_fd``.
    """
    platform = _platform(None)
    source = {
        "android": "VpnService.Builder().establish().detachFd()",
        "ios": "your NEPacketTunnelProvider (see tunflow.platform.fd.find_utun_fd())",
    }.get(platform, "the program that made the TUN device")
    raise UnsupportedError(
        f"tunflow cannot create devices on {platform}: the OS's VPN API does. Get the fd from "
        f"{source} and adopt it with SyncDevice.from_fd(fd) or AsyncDevice.from_fd(fd)"
    )


def adopt_fd(
    fd: int,
    *,
    close_fd: bool,
    packet_information: bool = False,
    layer: Layer = Layer.L3,
    syscalls: Syscalls | None = None,
    platform: str | None = None,
) -> tuple[None, FdQueue]:
    """Wrap ``fd``: no header on Android, the 4-byte family header on iOS (none for
    ``layer=Layer.L2``: bare Ethernet frames). No interface: the device's configuration methods
    raise :class:`~tunflow.UnsupportedError`.

    Raises:
        UnsupportedError: ``packet_information`` on Android, whose TUN fds carry no header,
            or on iOS with ``layer=Layer.L2`` (bare Ethernet frames).
    """
    name = _platform(platform)
    if packet_information and name == "android":
        raise UnsupportedError(
            "an Android VpnService fd carries no packet-information header to keep: "
            "adopt it without packet_information"
        )
    if packet_information and layer is Layer.L2 and name == "ios":
        raise UnsupportedError(
            "an iOS fd adopted as Layer.L2 carries no packet-information header (its frames "
            "are bare Ethernet): adopt it without packet_information"
        )
    sys_ = syscalls or current_syscalls()
    framing = framing_for(name, packet_information=packet_information) if layer is Layer.L3 else {}
    # closed by its maker first (an Android ParcelFileDescriptor that still owned it): quiet
    closer = quiet_closer(sys_, fd) if close_fd else None
    queue = FdQueue(fd, close_fd=False, on_close=closer, **framing)  # type: ignore[arg-type]
    return None, queue


def find_utun_fd(syscalls: Syscalls | None = None, *, limit: int = UTUN_SCAN_LIMIT) -> int | None:
    """The fd of the utun socket an iOS/macOS packet tunnel extension was given, or ``None``.

    WireGuardKit's method (tun-rs's ``utun_fd``): for each fd 0…``limit``, ``getpeername`` must
    return a ``sockaddr_ctl`` of family ``AF_SYSTEM`` whose ``sc_id`` is the control id of
    ``com.apple.net.utun_control`` — learnt with ``CTLIOCGINFO`` on the first such fd, since a
    sandboxed extension may not open ``PF_SYSTEM`` sockets itself.

    Example:
        >>> fd = find_utun_fd()                                   # doctest: +SKIP
        >>> device = SyncDevice.from_fd(fd)                       # doctest: +SKIP
    """
    from .darwin import utun_ctl_id

    sys_ = syscalls or current_syscalls()
    ctl_id: int | None = None
    for fd in range(limit + 1):
        try:
            raw = sys_.getpeername(fd)
        except OSError:
            continue  # not open, not a socket, not connected
        if len(raw) < _SOCKADDR_CTL_HEAD.size:
            continue
        _len, family, sysaddr, sc_id, _unit = _SOCKADDR_CTL_HEAD.unpack_from(raw)
        if family != AF_SYSTEM or sysaddr != AF_SYS_CONTROL:
            continue
        if ctl_id is None:
            try:
                ctl_id = utun_ctl_id(sys_, fd)
            except OSError:
                continue
        if sc_id == ctl_id:
            return fd
    return None
