"""OpenBSD: ``/dev/tunN`` and ``/dev/tapN``, configured with the BSD ioctls.

**Creation.** The interface is made with ``SIOCIFCREATE`` (``_IOW('i', 122, …)``) unless it
exists, then its node is opened; OpenBSD ships only ``tun0``–``tun3`` nodes, so a missing one is
made with ``sh MAKEDEV tunN`` in ``/dev`` (as tun-rs does). Without a name the first unit that is
not an interface yet is used. OpenBSD cannot rename a tun.

**Framing.** An OpenBSD tun always prefixes each packet with a 4-byte address family (``AF_INET``
2, ``AF_INET6`` 24; there is no ``TUNSIFHEAD``); the queue removes it on read and adds it on write
unless ``packet_information(True)``.

**Close.** An interface this process created is destroyed with ``SIOCIFDESTROY`` (unless
``persist``). MTU uses OpenBSD's own ``SIOCGIFMTU``/``SIOCSIFMTU`` numbers (126/127); IPv6
addresses get no ``IN6_IFF_NODAD`` (OpenBSD dropped the flag). Needs root.
"""

from __future__ import annotations

import errno
import re
from typing import Any, Final

from ..errors import ConfigError, DeviceError, DeviceNotFoundError
from ..netconfig.device import DeviceConfig, Layer
from . import _bsd
from ._bsd import OPENBSD, BsdInterface
from ._syscalls import Syscalls, current_syscalls, oserror_to_device_error
from ._unix import FdQueue

__all__ = ["open_device", "adopt_fd", "OpenBsdInterface", "open_unit"]

FLAVOR: Final = OPENBSD
_MAX_UNITS: Final = 256


class OpenBsdInterface(BsdInterface):
    """An OpenBSD tun/tap interface."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(flavor=FLAVOR, **kwargs)


def pick_name(syscalls: Syscalls, prefix: str) -> str:
    """The first ``prefixN`` that is not an interface yet."""
    for unit in range(_MAX_UNITS):
        name = f"{prefix}{unit}"
        if not _bsd.interface_exists(syscalls, name):
            return name
    raise DeviceError(errno.ENOSPC, f"every {prefix}0..{prefix}{_MAX_UNITS - 1} is taken")


def open_unit(
    syscalls: Syscalls, flavor: _bsd.Flavor, config: DeviceConfig
) -> tuple[int, str, bool]:
    """Create (``SIOCIFCREATE``) and open ``tunN``/``tapN`` with the MAKEDEV fallback; return
    the fd, the name and whether this call created the interface. Shared with NetBSD."""
    prefix = "tap" if config.layer is Layer.L2 else "tun"
    if config.name is not None:
        if not re.fullmatch(rf"{prefix}\d+", config.name):
            raise ConfigError(
                f"{flavor.name} names {'TAP' if prefix == 'tap' else 'TUN'} devices {prefix}N "
                f"and cannot rename them; {config.name!r} is not possible"
            )
        name = config.name
    else:
        name = pick_name(syscalls, prefix)
    existed = _bsd.interface_exists(syscalls, name)
    if config.attach and not existed:
        raise DeviceNotFoundError(errno.ENXIO, f"no interface named {name!r} to attach to")
    created = False
    if not existed:
        try:
            _bsd.create_interface(syscalls, flavor, name)
            created = True
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise oserror_to_device_error(exc, f"SIOCIFCREATE {name}") from exc
    try:
        fd = _bsd.open_node(syscalls, flavor, name, makedev=True)
    except BaseException:
        if created:
            try:
                _bsd.destroy_interface(syscalls, flavor, name)
            except OSError:
                pass
        raise
    return fd, name, created


def open_device(
    config: DeviceConfig, *, syscalls: Syscalls | None = None
) -> tuple[OpenBsdInterface, FdQueue]:
    """Create (or attach to) ``tunN``/``tapN`` and configure it.

    Raises:
        ConfigError: a name that is not ``tunN``/``tapN``.
        UnsupportedError: a Linux-only option.
        DevicePermissionError: not root.
        DeviceBusyError: the device is open in another process.
        DeviceNotFoundError: ``attach`` and no such interface, or no node and no MAKEDEV.
        DeviceError: any other refusal, with errno.
    """
    _bsd.reject_linux_only(config, "OpenBSD")
    _bsd.check_lp64("OpenBSD")
    sys_ = syscalls or current_syscalls()
    fd, name, created = open_unit(sys_, FLAVOR, config)
    iface = OpenBsdInterface(
        syscalls=sys_, name=name, layer=config.layer, associate_route=config.associate_route
    )
    iface2, queue = _bsd.build_device(
        syscalls=sys_, config=config, fd=fd, iface=iface, created=created
    )
    assert isinstance(iface2, OpenBsdInterface)
    return iface2, queue


def adopt_fd(
    fd: int,
    *,
    close_fd: bool,
    packet_information: bool = False,
    layer: Layer = Layer.L3,
    syscalls: Syscalls | None = None,
) -> tuple[None, FdQueue]:
    """Wrap an OpenBSD tun fd (or with ``layer=Layer.L2`` a tap fd) made elsewhere; it is not
    configurable here."""
    return _bsd.adopt_tun_fd(
        syscalls or current_syscalls(),
        FLAVOR,
        fd,
        close_fd=close_fd,
        packet_information=packet_information,
        layer=layer,
    )
