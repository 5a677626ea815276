"""The exceptions tunflow raises.

Two families, kept apart as h11 keeps ``LocalProtocolError`` and ``RemoteProtocolError`` apart:

* *your call was wrong* — :class:`ConfigError` (a bad name, address, MTU…), :class:`PacketError`
  for a packet you asked tunflow to send, :class:`UnsupportedError`;
* *the system said no* — :class:`DeviceError` and its subclasses, which are :class:`OSError`
  subclasses that keep ``errno``, so ``except PermissionError`` or ``except OSError`` keep
  working.

Stream states reuse anyio's vocabulary: a device closed or shut down locally raises
:class:`ClosedDeviceError` (an :class:`anyio.ClosedResourceError`), a device that vanished
under a reader raises :class:`DeviceGoneError` (an :class:`anyio.BrokenResourceError`). The sync
and async faces raise the same classes, so one ``except`` clause serves both.

Hostile or malformed packets arriving *inside* a pipeline are never raised: stages count them by
reason and drop them.
"""

from __future__ import annotations

import errno as _errno
from typing import ClassVar

import anyio

__all__ = [
    "TunflowError",
    "ConfigError",
    "UnsupportedError",
    "PlatformNotSupportedError",
    "DeviceError",
    "DevicePermissionError",
    "DeviceNotFoundError",
    "DeviceExistsError",
    "DeviceBusyError",
    "ClosedDeviceError",
    "InterruptedCallError",
    "DeviceGoneError",
    "LinkDownError",
    "PacketError",
    "MalformedPacketError",
    "TruncatedPacketError",
    "PacketTooLargeError",
    "OffloadError",
    "PluginError",
    "HandshakeError",
]


class TunflowError(Exception):
    """Base class of every error tunflow defines."""


class ConfigError(TunflowError, ValueError):
    """A configuration value is invalid: the message names the value and the rule it broke.

    Raised by :class:`~tunflow.DeviceBuilder` before any system call, by run-time configuration
    methods given a bad argument, and by the TOML loader (then :attr:`path` says where).
    """

    def __init__(self, message: str, *, path: str | None = None, file: str | None = None) -> None:
        self.path = path
        self.file = file
        where = ""
        if file is not None:
            where = f"{file}: "
        if path is not None:
            where += f"{path}: "
        super().__init__(where + message)


class UnsupportedError(TunflowError, NotImplementedError):
    """The operation does not exist for this device or platform (e.g. a MAC on a TUN)."""


class PlatformNotSupportedError(UnsupportedError):
    """tunflow has no backend for the running operating system."""


class DeviceError(TunflowError, OSError):
    """The operating system refused a device operation. ``errno`` is kept.

    Build a specific subclass from an :class:`OSError` with :meth:`from_oserror`.
    """

    #: errno values that map to this class in :meth:`from_oserror`.
    errnos: ClassVar[frozenset[int]] = frozenset()

    @staticmethod
    def from_oserror(exc: OSError, what: str) -> DeviceError:
        """The most specific :class:`DeviceError` for ``exc``, with ``what`` in its message."""
        code = exc.errno or 0
        for cls in (DevicePermissionError, DeviceNotFoundError, DeviceExistsError, DeviceBusyError):
            if code in cls.errnos:
                return cls(code, cls.describe(what, exc))
        return DeviceError(code, f"{what}: {exc.strerror or exc}")

    @classmethod
    def describe(cls, what: str, exc: OSError) -> str:
        return f"{what}: {exc.strerror or exc}"


class DevicePermissionError(DeviceError, PermissionError):
    """The process lacks the privilege the operation needs (on Linux, ``CAP_NET_ADMIN``)."""

    errnos = frozenset({_errno.EPERM, _errno.EACCES})

    @classmethod
    def describe(cls, what: str, exc: OSError) -> str:
        return (
            f"{what}: {exc.strerror or exc} — this needs the CAP_NET_ADMIN capability "
            "(run as root, or grant it with `setcap cap_net_admin+ep` or an ambient capability)"
        )


class DeviceNotFoundError(DeviceError, FileNotFoundError):
    """The interface (or ``/dev/net/tun``) does not exist."""

    errnos = frozenset({_errno.ENODEV, _errno.ENOENT, _errno.ENXIO})


class DeviceExistsError(DeviceError, FileExistsError):
    """The address, route or interface name already exists."""

    errnos = frozenset({_errno.EEXIST})


class DeviceBusyError(DeviceError):
    """The device exists with incompatible flags or is in use (``EBUSY``/``EINVAL`` on attach)."""

    errnos = frozenset({_errno.EBUSY})


class ClosedDeviceError(TunflowError, anyio.ClosedResourceError):
    """The device was closed or shut down by this process.

    ``SyncDevice.shutdown()`` makes a blocked and every later ``recv``/``send`` raise this;
    ``AsyncDevice.aclose()`` makes a blocked receiver raise it. It is an
    :class:`anyio.ClosedResourceError`, so async code can catch the anyio class.
    """


class InterruptedCallError(TunflowError, InterruptedError):
    """A blocking ``SyncDevice`` call given an :class:`~tunflow.InterruptEvent` was interrupted
    by it (tun-rs's ``ErrorKind::Interrupted`` from ``recv_intr`` and its kin).

    The device is untouched: reset the event and call again. An :class:`InterruptedError`, and
    so an :class:`OSError` (``errno`` is ``EINTR``).
    """

    def __init__(self, message: str = "interrupted by the InterruptEvent") -> None:
        super().__init__(_errno.EINTR, message)


class DeviceGoneError(DeviceError, anyio.BrokenResourceError):
    """The device vanished under a reader or writer (deleted with ``ip link del``, say).

    An :class:`OSError` (``errno`` is usually ``EBADFD``) and an
    :class:`anyio.BrokenResourceError`.
    """


class LinkDownError(DeviceError):
    """A write while the link is down (``ip link set … down``, ``enabled(False)``): the device
    is still there, and writes work again once it is up (Linux's tun refuses them, ``EIO``).

    A single ``send`` raises it. A batch write does not: what is left of the batch is dropped
    and counted in ``DeviceStatistics.tx_dropped["link_down"]``, as the kernel drops what is
    routed to a down link — in a batch it is data, and a tunnel's peer goes on sending while a
    network manager cycles the link.
    """


class PacketError(TunflowError, ValueError):
    """A packet you asked tunflow to handle is not acceptable."""


class MalformedPacketError(PacketError):
    """The bytes are not a packet of the kind expected (bad version nibble, bad lengths…)."""


class TruncatedPacketError(MalformedPacketError):
    """The packet is shorter than its headers say it is."""


class PacketTooLargeError(PacketError):
    """The packet is larger than the device or buffer can carry."""


class OffloadError(TunflowError):
    """A GSO/GRO operation could not complete (e.g. a super-packet needs more segments)."""


class PluginError(TunflowError):
    """A stage plugin could not be found, loaded or configured; the message names it.

    :attr:`missing_extra` is set when the plugin lacks only a module that one of its
    distribution's extras installs: ``"tunflow[vpn]"``, say — the plugin is not broken,
    that extra is not installed.
    """

    def __init__(self, message: str, *, missing_extra: str | None = None) -> None:
        super().__init__(message)
        self.missing_extra = missing_extra


class HandshakeError(TunflowError):
    """A WireGuard handshake message was rejected."""
