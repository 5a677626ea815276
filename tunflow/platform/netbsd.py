"""NetBSD: ``/dev/tunN`` and ``/dev/tap`` (cloning) or ``/dev/tapN``, with the BSD ioctls.

**Creation.** TUN: ``SIOCIFCREATE`` then ``/dev/tunN`` (made with ``sh MAKEDEV`` if missing),
switched to ``TUNSIFHEAD`` (``_IOW('t', 66, int)``) so each packet carries a 4-byte address
family (``AF_INET`` 2, ``AF_INET6`` 24) — removed on read and added on write unless
``packet_information(True)``. TAP: without a name the cloning ``/dev/tap`` makes a fresh unit
whose name ``TAPGIFNAME`` reports (the kernel destroys it when the fd closes); a named ``tapN`` is
created like a tun.

**Differences.** ``struct ifreq`` is 144 bytes on NetBSD (its union holds a
``sockaddr_storage``), so every ``ifreq`` ioctl number differs from the other BSDs';
``SIOCAIFADDR_IN6`` is ``_IOW('i', 107, …)``; routing messages are ``RTM_VERSION`` 4. NetBSD has
no ``SIOCSIFLLADDR``: setting a TAP's MAC is not supported here. Needs root.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from ..errors import DeviceError, UnsupportedError
from ..netconfig.device import DeviceConfig, Layer
from ..netconfig.ioctl import BSD
from . import _bsd
from ._bsd import IFNAMSIZ, NETBSD, BsdInterface
from ._syscalls import Syscalls, current_syscalls, oserror_to_device_error
from ._unix import FdQueue
from .openbsd import open_unit

__all__ = ["open_device", "adopt_fd", "NetBsdInterface", "TUNSIFHEAD", "TAPGIFNAME"]

FLAVOR: Final = NETBSD
#: net/if_tun.h (NetBSD): TUNSIFHEAD = _IOW('t', 66, int)
TUNSIFHEAD: Final = BSD.iow(ord("t"), 66, 4)
#: net/if_tap.h (NetBSD): TAPGIFNAME = _IOR('e', 0, struct ifreq)
TAPGIFNAME: Final = BSD.ior(ord("e"), 0, NETBSD.ifreq_size)


class NetBsdInterface(BsdInterface):
    """A NetBSD tun/tap interface."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(flavor=FLAVOR, **kwargs)


def _open_cloned_tap(syscalls: Syscalls) -> tuple[int, str]:
    fd = _bsd.open_node(syscalls, FLAVOR, "tap", makedev=False)
    try:
        out = syscalls.ioctl(fd, TAPGIFNAME, bytes(FLAVOR.ifreq_size))
        assert isinstance(out, bytes)
        return fd, out[:IFNAMSIZ].split(b"\0", 1)[0].decode()
    except BaseException as exc:
        _bsd.close_quietly(syscalls, fd)  # the kernel destroys a cloned tap with its last fd
        if isinstance(exc, OSError) and not isinstance(exc, DeviceError):
            raise oserror_to_device_error(exc, "TAPGIFNAME") from exc
        raise


def open_device(
    config: DeviceConfig, *, syscalls: Syscalls | None = None
) -> tuple[NetBsdInterface, FdQueue]:
    """Create (or attach to) a tun/tap and configure it.

    Raises:
        ConfigError: a name that is not ``tunN``/``tapN``.
        UnsupportedError: a Linux-only option, or a MAC address (no ``SIOCSIFLLADDR``).
        DevicePermissionError: not root.
        DeviceBusyError: the device is open in another process.
        DeviceNotFoundError: ``attach`` and no such interface, or no node and no MAKEDEV.
        DeviceError: any other refusal, with errno.
    """
    _bsd.reject_linux_only(config, "NetBSD")
    _bsd.check_lp64("NetBSD")
    if config.mac is not None:
        raise UnsupportedError("NetBSD has no SIOCSIFLLADDR: a TAP's MAC cannot be set here")
    sys_ = syscalls or current_syscalls()
    destroy_on_close = True
    if config.layer is Layer.L2 and config.name is None:
        fd, name = _open_cloned_tap(sys_)
        created = True
        destroy_on_close = False  # the cloning device takes the interface with it
    else:
        fd, name, created = open_unit(sys_, FLAVOR, config)
    if config.layer is Layer.L3:
        try:
            sys_.ioctl(fd, TUNSIFHEAD, struct.pack("=i", 1))
        except OSError as exc:
            _bsd.close_quietly(sys_, fd)
            if created:
                try:
                    _bsd.destroy_interface(sys_, FLAVOR, name)
                except OSError:
                    pass
            raise oserror_to_device_error(exc, f"TUNSIFHEAD on {name}") from exc
    iface = NetBsdInterface(
        syscalls=sys_, name=name, layer=config.layer, associate_route=config.associate_route
    )
    iface2, queue = _bsd.build_device(
        syscalls=sys_,
        config=config,
        fd=fd,
        iface=iface,
        created=created,
        destroy_on_close=destroy_on_close,
    )
    assert isinstance(iface2, NetBsdInterface)
    return iface2, queue


def adopt_fd(
    fd: int,
    *,
    close_fd: bool,
    packet_information: bool = False,
    syscalls: Syscalls | None = None,
) -> tuple[None, FdQueue]:
    """Wrap a NetBSD tun fd in ``TUNSIFHEAD`` mode made elsewhere; not configurable here."""
    return _bsd.adopt_tun_fd(
        syscalls or current_syscalls(),
        FLAVOR,
        fd,
        close_fd=close_fd,
        packet_information=packet_information,
    )
