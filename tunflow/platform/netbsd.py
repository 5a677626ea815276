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
no ``SIOCSIFLLADDR``: a TAP's MAC is set the way tap(4) documents and ``ifconfig tapN link MAC
active`` does it, by adding an active link-layer address (``SIOCALIFADDR`` on a ``PF_LINK``
socket). Needs root.
"""

from __future__ import annotations

import errno
import struct
from typing import Any, Final

from ..errors import DeviceError, UnsupportedError
from ..netconfig.device import DeviceConfig, Layer
from ..netconfig.ioctl import BSD
from . import _bsd
from ._bsd import AF_LINK, IFNAMSIZ, NETBSD, BsdInterface, ifreq_name
from ._syscalls import Syscalls, current_syscalls, oserror_to_device_error
from ._unix import FdQueue
from .openbsd import open_unit

__all__ = [
    "open_device",
    "adopt_fd",
    "NetBsdInterface",
    "TUNSIFHEAD",
    "TAPGIFNAME",
    "SIOCALIFADDR",
    "SIOCDLIFADDR",
    "IFLR_ACTIVE",
    "if_laddrreq",
]

FLAVOR: Final = NETBSD
#: net/if_tun.h (NetBSD): TUNSIFHEAD = _IOW('t', 66, int)
TUNSIFHEAD: Final = BSD.iow(ord("t"), 66, 4)
#: net/if_tap.h (NetBSD): TAPGIFNAME = _IOR('e', 0, struct ifreq)
TAPGIFNAME: Final = BSD.ior(ord("e"), 0, NETBSD.ifreq_size)
#: net/if.h: struct if_laddrreq — iflr_name[IFNAMSIZ], u_int flags, u_int prefixlen, then the
#: sockaddr_storage addr and dstaddr (128 bytes each, at 24 and 152): 280 bytes
IF_LADDRREQ_SIZE: Final = 280
#: sys/sockio.h: SIOCALIFADDR = _IOW('i', 28, struct if_laddrreq)
SIOCALIFADDR: Final = BSD.iow(ord("i"), 28, IF_LADDRREQ_SIZE)
#: sys/sockio.h: SIOCDLIFADDR = _IOW('i', 30, struct if_laddrreq)
SIOCDLIFADDR: Final = BSD.iow(ord("i"), 30, IF_LADDRREQ_SIZE)
#: net/if.h: IFLR_ACTIVE — make the added link-layer address the interface's active one
IFLR_ACTIVE: Final = 0x4000
_SDL_HEAD = struct.Struct("=BBHBBBB")  # net/if_dl.h: sockaddr_dl up to sdl_slen (8 bytes)


def if_laddrreq(name: str, mac: bytes, flags: int = IFLR_ACTIVE) -> bytes:
    """``struct if_laddrreq`` for ``SIOCALIFADDR``, as ifconfig's ``link MAC active`` fills it:
    ``addr`` is a ``sockaddr_dl`` with no name, index or type, only the address (``sdl_len``
    8 + 6), ``prefixlen`` and ``dstaddr`` are zero."""
    sdl = _SDL_HEAD.pack(_SDL_HEAD.size + len(mac), AF_LINK, 0, 0, 0, len(mac), 0) + mac
    body = ifreq_name(name) + struct.pack("=II", flags, 0) + sdl.ljust(128, b"\0")
    return body.ljust(IF_LADDRREQ_SIZE, b"\0")


class NetBsdInterface(BsdInterface):
    """A NetBSD tun/tap interface."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(flavor=FLAVOR, **kwargs)

    def set_mac_address(self, mac: bytes, *, name: str | None = None) -> None:
        """Add ``mac`` as the active link-layer address: ``SIOCALIFADDR`` with ``IFLR_ACTIVE``
        on a ``PF_LINK`` socket (tap(4); what ``ifconfig tapN link MAC active`` sends). The
        kernel keeps the previous address on the interface as an inactive one."""
        if self.layer is not Layer.L2:
            raise UnsupportedError("a TUN (layer 3) device has no MAC address")
        request = if_laddrreq(name or self.name(), mac)
        with self.op("set MAC"), self.control_socket(AF_LINK) as fd:
            self.sys.ioctl(fd, SIOCALIFADDR, request)

    def _put_back_mac(self, mac: bytes, current: bytes, name: str) -> None:
        """Make ``mac`` (still on the interface, inactive) the active address again, then delete
        ``current``, the one the build added (``SIOCDLIFADDR``; the kernel refuses, ``EBUSY``, to
        delete the factory address, which then stays inactive)."""
        self.set_mac_address(mac, name=name)
        with self.op("delete the link address"), self.control_socket(AF_LINK) as fd:
            try:
                self.sys.ioctl(fd, SIOCDLIFADDR, if_laddrreq(name, current, 0))
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise


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
        UnsupportedError: a Linux-only option.
        DevicePermissionError: not root.
        DeviceBusyError: the device is open in another process.
        DeviceNotFoundError: ``attach`` and no such interface, or no node and no MAKEDEV.
        DeviceError: any other refusal, with errno.
    """
    _bsd.reject_linux_only(config, "NetBSD")
    _bsd.check_lp64("NetBSD")
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
    layer: Layer = Layer.L3,
    syscalls: Syscalls | None = None,
) -> tuple[None, FdQueue]:
    """Wrap a NetBSD tun fd in ``TUNSIFHEAD`` mode (or with ``layer=Layer.L2`` a tap fd) made
    elsewhere; not configurable here."""
    return _bsd.adopt_tun_fd(
        syscalls or current_syscalls(),
        FLAVOR,
        fd,
        close_fd=close_fd,
        packet_information=packet_information,
        layer=layer,
    )
