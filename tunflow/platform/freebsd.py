"""FreeBSD: ``/dev/tunN`` and ``/dev/tapN`` (if_tuntap), configured with the BSD ioctls.

**Creation.** ``tunN``/``tapN`` opens that node (devfs creates the interface on first open);
no name opens the cloning device ``/dev/tun`` (``/dev/tap``) and asks the kernel which unit it
made with ``FIODGNAME``; any other name clones a unit and renames it with ``SIOCSIFNAME`` (as
wireguard-go does). A TUN is switched to ``TUNSIFHEAD`` so every packet carries a 4-byte address
family (``AF_INET`` 2, ``AF_INET6`` 28) and both IP versions flow; the queue removes it on read
and adds it on write unless ``packet_information(True)``.

**Close.** FreeBSD keeps a tun interface after its device closes; one this process created is
destroyed with ``SIOCIFDESTROY`` (unless ``persist``). Addresses: ``SIOCAIFADDR``
(``_IOW('i', 43, …)``, 68-byte ``ifaliasreq``) and ``SIOCAIFADDR_IN6``; routes through
``PF_ROUTE``. Needs root.
"""

from __future__ import annotations

import errno
import re
import struct
from typing import Any, Final

from ..errors import ConfigError, DeviceError, DeviceNotFoundError
from ..netconfig.device import DeviceConfig, Layer
from ..netconfig.ioctl import BSD
from . import _bsd
from ._bsd import FREEBSD, BsdInterface
from ._syscalls import Syscalls, current_syscalls, oserror_to_device_error
from ._unix import FdQueue

__all__ = ["open_device", "adopt_fd", "FreeBsdInterface", "TUNSIFHEAD", "FIODGNAME"]

FLAVOR: Final = FREEBSD
#: net/if_tun.h: TUNSIFHEAD = _IOW('t', 96, int)
TUNSIFHEAD: Final = BSD.iow(ord("t"), 96, 4)
#: sys/filio.h: struct fiodgname_arg {int len; void *buf;} (16 bytes on LP64);
#: FIODGNAME = _IOW('f', 120, struct fiodgname_arg)
_FIODGNAME_ARG = struct.Struct("=i4xQ")
FIODGNAME: Final = BSD.iow(ord("f"), 120, _FIODGNAME_ARG.size)
#: sys/sockio.h: SIOCSIFNAME = _IOW('i', 40, struct ifreq) — ifr_data points at the new name
SIOCSIFNAME: Final = BSD.iow(ord("i"), 40, FREEBSD.ifreq_size)


class FreeBsdInterface(BsdInterface):
    """A FreeBSD tun/tap interface; unlike the other BSDs it can be renamed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(flavor=FLAVOR, **kwargs)

    def set_name(self, name: str) -> None:
        import ctypes

        # ifr_data points at a NUL-terminated name of at most IFNAMSIZ bytes (the kernel's
        # copyinstr); a longer one is a ConfigError, as for every other ifreq name.
        new = ctypes.create_string_buffer(_bsd.ifreq_name(name), _bsd.IFNAMSIZ)
        # ifr_data is a pointer in the ifreq union; the buffer must outlive the ioctl.
        payload = struct.pack("=Q", ctypes.addressof(new))
        with self.op(f"rename to {name!r}"):
            self.ioctl_ifreq(SIOCSIFNAME, payload)
        self._name = name


def device_name(syscalls: Syscalls, fd: int) -> str:
    """The devfs name of the device open on ``fd`` (``FIODGNAME``), e.g. ``tun3``."""
    import ctypes

    buf = ctypes.create_string_buffer(64)
    syscalls.ioctl(fd, FIODGNAME, _FIODGNAME_ARG.pack(len(buf), ctypes.addressof(buf)))
    return buf.value.decode()


def _interface_names(syscalls: Syscalls) -> set[str]:
    return {entry.name for entry in syscalls.getifaddrs()}


def _cloned_unit(syscalls: Syscalls, before: set[str], prefix: str) -> str | None:
    """The one ``prefixN`` that appeared since ``before`` (to undo a clone whose name we could
    not ask for), or ``None``."""
    try:
        new = [n for n in _interface_names(syscalls) - before if n.startswith(prefix)]
    except OSError:
        return None
    return new[0] if len(new) == 1 else None


def open_device(
    config: DeviceConfig, *, syscalls: Syscalls | None = None
) -> tuple[FreeBsdInterface, FdQueue]:
    """Create (or attach to) ``tunN``/``tapN`` and configure it.

    Raises:
        ConfigError: attaching needs a ``tunN``/``tapN`` name.
        UnsupportedError: a Linux-only option.
        DevicePermissionError: not root.
        DeviceBusyError: the device is open in another process.
        DeviceNotFoundError: ``attach`` and no such interface, or no if_tuntap driver.
        DeviceError: any other refusal, with errno.
    """
    _bsd.reject_linux_only(config, "FreeBSD")
    _bsd.check_lp64("FreeBSD")
    sys_ = syscalls or current_syscalls()
    prefix = "tap" if config.layer is Layer.L2 else "tun"
    unit_name = config.name is not None and re.fullmatch(rf"{prefix}\d+", config.name)
    rename_to: str | None = None
    before: set[str] = set()
    if unit_name:
        assert config.name is not None
        name = config.name
        existed = _bsd.interface_exists(sys_, name)
        if config.attach and not existed:
            raise DeviceNotFoundError(errno.ENXIO, f"no interface named {name!r} to attach to")
        fd = _bsd.open_node(sys_, FLAVOR, name, makedev=False)
        created = not existed
    else:
        if config.attach:
            raise ConfigError(f"attaching on FreeBSD needs the {prefix}N name of the device node")
        try:
            before = _interface_names(sys_)
        except OSError as exc:
            raise oserror_to_device_error(exc, "list interfaces") from exc
        fd = _bsd.open_node(sys_, FLAVOR, prefix, makedev=False)
        created = True
        rename_to = config.name
        name = ""
    try:
        if not name:
            name = device_name(sys_, fd)
        if config.layer is Layer.L3:
            # Multi-family mode: both IPv4 and IPv6, each packet behind its address family.
            sys_.ioctl(fd, TUNSIFHEAD, struct.pack("=i", 1))
        iface = FreeBsdInterface(
            syscalls=sys_,
            name=name,
            layer=config.layer,
            associate_route=config.associate_route,
        )
        if rename_to is not None:
            iface.set_name(rename_to)
    except BaseException as exc:
        _bsd.close_quietly(sys_, fd)
        if created and not name:
            name = _cloned_unit(sys_, before, prefix) or ""
        if created and name:
            try:
                _bsd.destroy_interface(sys_, FLAVOR, name)
            except OSError:
                pass
        if isinstance(exc, OSError) and not isinstance(exc, DeviceError):
            raise oserror_to_device_error(exc, f"set up /dev/{name or prefix}") from exc
        raise
    iface2, queue = _bsd.build_device(
        syscalls=sys_, config=config, fd=fd, iface=iface, created=created
    )
    assert isinstance(iface2, FreeBsdInterface)
    return iface2, queue


def adopt_fd(
    fd: int,
    *,
    close_fd: bool,
    packet_information: bool = False,
    layer: Layer = Layer.L3,
    syscalls: Syscalls | None = None,
) -> tuple[None, FdQueue]:
    """Wrap a tun fd in ``TUNSIFHEAD`` mode (or with ``layer=Layer.L2`` a tap fd) made
    elsewhere; it is not configurable here."""
    return _bsd.adopt_tun_fd(
        syscalls or current_syscalls(),
        FLAVOR,
        fd,
        close_fd=close_fd,
        packet_information=packet_information,
        layer=layer,
    )
