"""Windows TAP through tap-windows6 (the OpenVPN ``tap0901`` driver): overlapped file I/O.

tunflow attaches to an **existing** tap-windows6 adapter, found by its name: the IP Helper API
gives its LUID and GUID (``ConvertInterfaceAliasToLuid``, ``ConvertInterfaceLuidToGuid``) and the
device is ``\\\\.\\Global\\{GUID}.tap``, opened with ``CreateFileW`` for overlapped I/O. Creating
adapters (tun-rs does it with SetupAPI) is not done here: make one with the driver's
``tapctl.exe create --name NAME`` or OpenVPN's installer.

On open: ``TAP_WIN_IOCTL_GET_VERSION``, ``TAP_WIN_IOCTL_GET_MAC``, then
``TAP_WIN_IOCTL_SET_MEDIA_STATUS`` 1 ("cable connected"; 0 on :meth:`set_enabled(False)`). The
ioctl numbers are ``CTL_CODE(FILE_DEVICE_UNKNOWN, n, METHOD_BUFFERED, FILE_ANY_ACCESS)`` as
``tap-windows.h`` defines them. Frames are whole Ethernet frames; one overlapped read is kept
pending and the queue's :meth:`TapQueue.wait` waits on its event.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import struct
import threading
from typing import Any, Final

from ...errors import (
    ConfigError,
    DeviceError,
    DeviceGoneError,
    UnsupportedError,
)
from ...netconfig.device import DeviceConfig, Layer
from ...packet import HEADROOM, PacketBatch
from .._base import Buffer, read_too_large
from .._build import Additions
from .._syscalls import Syscalls
from ._win32 import (
    FILE_ATTRIBUTE_SYSTEM,
    FILE_FLAG_OVERLAPPED,
    GENERIC_READ,
    GENERIC_WRITE,
    OVERLAPPED,
    HandleQueue,
    Kernel32,
    Win32Waker,
)
from .interface import WindowsInterface, configure
from .iphlpapi import IpHelper

__all__ = [
    "ctl_code",
    "TAP_WIN_IOCTL_GET_MAC",
    "TAP_WIN_IOCTL_GET_VERSION",
    "TAP_WIN_IOCTL_GET_MTU",
    "TAP_WIN_IOCTL_SET_MEDIA_STATUS",
    "TapInterface",
    "TapQueue",
    "open_tap",
]

#: winioctl.h: FILE_DEVICE_UNKNOWN, METHOD_BUFFERED, FILE_ANY_ACCESS
FILE_DEVICE_UNKNOWN: Final = 0x22
METHOD_BUFFERED: Final = 0
FILE_ANY_ACCESS: Final = 0


def ctl_code(device_type: int, function: int, method: int, access: int) -> int:
    """winioctl.h ``CTL_CODE``: ``(DeviceType << 16) | (Access << 14) | (Function << 2) | Method``."""
    return (device_type << 16) | (access << 14) | (function << 2) | method


def _tap_code(request: int) -> int:
    # tap-windows.h: TAP_WIN_CONTROL_CODE(request, method) =
    #   CTL_CODE(FILE_DEVICE_UNKNOWN, request, method, FILE_ANY_ACCESS)
    return ctl_code(FILE_DEVICE_UNKNOWN, request, METHOD_BUFFERED, FILE_ANY_ACCESS)


#: tap-windows.h: TAP_WIN_IOCTL_GET_MAC (1), GET_VERSION (2), GET_MTU (3), SET_MEDIA_STATUS (6)
TAP_WIN_IOCTL_GET_MAC: Final = _tap_code(1)
TAP_WIN_IOCTL_GET_VERSION: Final = _tap_code(2)
TAP_WIN_IOCTL_GET_MTU: Final = _tap_code(3)
TAP_WIN_IOCTL_SET_MEDIA_STATUS: Final = _tap_code(6)
#: tap-windows.h: USERMODEDEVICEDIR and TAP_WIN_SUFFIX
USERMODEDEVICEDIR: Final = "\\\\.\\Global\\"
TAP_WIN_SUFFIX: Final = ".tap"
#: Ethernet header + the largest frame body tun-rs reads (14 + 65536)
READ_SIZE: Final = 14 + 65536
_ULONG = struct.Struct("<I")


class TapInterface(WindowsInterface):
    """A tap-windows6 adapter: TAP, with its MAC and media status from the driver."""

    def __init__(
        self,
        *,
        kernel32: Kernel32,
        handle: int,
        mac: bytes,
        version: tuple[int, int, int],
        **kwargs: Any,
    ) -> None:
        super().__init__(layer=Layer.L2, driver="tap-windows6", **kwargs)
        self._k32 = kernel32
        self._handle = handle
        self._mac = mac
        #: what ``TAP_WIN_IOCTL_GET_VERSION`` answered when the device was opened
        self.version_info = version
        self._media = False

    def version(self) -> str:
        """The driver's ``major.minor``, with `` (debug)`` for a debug build.

        ``TAP_WIN_IOCTL_GET_VERSION`` answers three ULONGs: ``TAP_DRIVER_MAJOR_VERSION``,
        ``TAP_DRIVER_MINOR_VERSION`` and 1 for a debug (``DBG``) build of the driver, else 0
        (tap-windows6 src/device.c; OpenVPN prints them as "Version %d.%d %s" with "(DEBUG)"):
        the third is not a patch number, so it is not printed as one.
        """
        major, minor, debug = self.version_info
        return f"{major}.{minor}{' (debug)' if debug else ''}"

    def mac_address(self) -> bytes:
        return self._mac

    def set_enabled(self, up: bool) -> None:
        with self.op("set media status"):
            self._k32.device_io_control(
                self._handle, TAP_WIN_IOCTL_SET_MEDIA_STATUS, _ULONG.pack(int(up)), 0
            )
        self._media = up

    def is_running(self) -> bool:
        return self._media


class TapQueue(HandleQueue):
    """Overlapped reads and writes on the tap-windows6 device handle; ``fileno() == -1``."""

    def __init__(self, kernel32: Kernel32, handle: int) -> None:
        events: list[int] = []
        try:
            events.append(kernel32.create_event(manual_reset=True))
            super().__init__(kernel32, events[0])
            events.append(self._shutdown)
            self._write_event = kernel32.create_event(manual_reset=True)
            events.append(self._write_event)
            self._handle = handle
            self._buf = ctypes.create_string_buffer(READ_SIZE)
            self._read_ov = OVERLAPPED()
            self._read_ov.hEvent = self._read_event
            self._write_ov = OVERLAPPED()
            self._write_ov.hEvent = self._write_event
            self._write_lock = threading.Lock()
            self._ready: bytes | None = None
            self._pending = False
            #: frames a batch read had no room for whole (longer than max_size): dropped
            self.rx_truncated = 0
            self._start_read()
        except BaseException:
            # (the caller closes the device handle; a refused first read left nothing pending)
            for event in events:
                kernel32.close_handle(event)
            raise

    def _start_read(self) -> None:
        self._k32.reset_event(self._read_event)
        n = self._k32.read_file(self._handle, self._buf, READ_SIZE, self._read_ov)
        if n is None:
            self._pending = True
        else:
            self._ready = self._buf.raw[:n]

    def _take(self) -> bytes:
        if self._ready is None and self._pending:
            try:
                n = self._k32.overlapped_result(self._handle, self._read_ov, wait=False)
            except DeviceError as exc:
                raise DeviceGoneError(errno.ENODEV, f"read: {exc.strerror}") from exc
            if n is not None:
                self._pending = False
                self._ready = self._buf.raw[:n]
        if self._ready is None:
            raise BlockingIOError(errno.EAGAIN, "no frame waiting")
        frame, self._ready = self._ready, None
        self._start_read()
        return frame

    def recv(self, max_size: int) -> bytes:
        """The next frame; one larger than ``max_size`` (the MTU raised outside tunflow) is
        dropped, counted in :attr:`rx_truncated` and raised as :class:`PacketTooLargeError`, as
        :class:`~tunflow.platform._unix.FdQueue` does — never handed out cut."""
        self._enter()
        try:
            frame = self._take()
        finally:
            self._leave()
        if len(frame) > max_size:
            self.rx_truncated += 1
            raise read_too_large(len(frame), max_size, "frame")
        return frame

    def recv_into(self, buf: memoryview) -> int:
        frame = self.recv(len(buf))
        buf[: len(frame)] = frame
        return len(frame)

    def recv_batch(self, batch: PacketBatch, max_size: int) -> int:
        count = 0
        while len(batch.offsets) < batch.max_packets and batch.room() >= max_size:
            try:
                frame = self.recv(READ_SIZE)
            except BlockingIOError:
                break
            if len(frame) > batch.room():
                # Longer than max_size (the MTU was raised outside tunflow) and no room left
                # for it whole: drop and count it, never hand it out cut.
                self.rx_truncated += 1
                continue
            off = batch.end + HEADROOM
            batch.buffer[off : off + len(frame)] = frame
            batch.commit(off, len(frame))
            count += 1
        return count

    def send(self, packet: Buffer) -> int:
        self._enter()
        try:
            # One OVERLAPPED (and event) serves every write, and an OVERLAPPED belongs to one
            # I/O until it completes: writers from several threads take turns.
            with self._write_lock:
                self._k32.reset_event(self._write_event)
                return self._k32.write_file(self._handle, bytes(packet), self._write_ov)
        finally:
            self._leave()

    def send_batch(self, batch: PacketBatch, start: int = 0) -> int:
        for i in range(start, len(batch)):
            self.send(batch.packet(i))
        return len(batch)

    def wait(
        self,
        writable: bool,
        timeout: float | None,
        waker: Win32Waker | None,
        interrupt: Win32Waker | None = None,
    ) -> bool:
        """Writes complete synchronously, so only reads wait; ``False`` on timeout/wake/close."""
        if writable:
            return True
        self._enter()
        wake = waker.acquire() if waker is not None else None
        intr = interrupt.acquire() if interrupt is not None else None
        try:
            if self._ready is not None:
                return True
            extra = [h for h in (wake, intr) if h]
            index = self._k32.wait_any([self._read_event, self._shutdown, *extra], timeout)
            return index == 0
        finally:
            if wake:
                assert waker is not None
                waker.release()
            if intr:
                assert interrupt is not None
                interrupt.release()
            self._leave()

    def close(self) -> None:
        if self._begin_close(2.0) is None:
            return
        if self._pending:
            # The pending read writes into self._buf: cancel it and let it finish first.
            self._k32.cancel_io(self._handle, self._read_ov)
            # ERROR_OPERATION_ABORTED is the expected answer; nothing else can be done on close.
            with contextlib.suppress(DeviceError):
                self._k32.overlapped_result(self._handle, self._read_ov, wait=True)
            self._pending = False
        self._k32.close_handle(self._handle)
        for event in (self._read_event, self._write_event, self._shutdown):
            self._k32.close_handle(event)


def open_tap(config: DeviceConfig, syscalls: Syscalls) -> tuple[TapInterface, TapQueue]:
    """Open the existing tap-windows6 adapter ``config.name`` and configure it."""
    if config.name is None:
        raise ConfigError(
            "a Windows TAP device needs the name of an existing tap-windows6 adapter "
            "(create one with `tapctl.exe create --name NAME`)"
        )
    if config.persist:
        raise UnsupportedError("tunflow does not create tap-windows6 adapters; they persist anyway")
    if config.delete_driver:
        raise UnsupportedError(
            "delete_driver removes the Wintun driver; tunflow does not install or remove "
            "tap-windows6 (its installer does)"
        )
    if config.device_guid is not None:
        raise UnsupportedError(
            "device_guid is the GUID a Wintun adapter is created with; a tap-windows6 adapter "
            "keeps the GUID it was installed with"
        )
    k32 = Kernel32(syscalls)
    iphlp = IpHelper(syscalls)
    luid = iphlp.alias_to_luid(config.name)
    guid = iphlp.luid_to_guid(luid)
    path = f"{USERMODEDEVICEDIR}{guid}{TAP_WIN_SUFFIX}"
    handle = k32.create_file(
        path, GENERIC_READ | GENERIC_WRITE, FILE_ATTRIBUTE_SYSTEM | FILE_FLAG_OVERLAPPED
    )
    iface: TapInterface | None = None
    added = Additions()
    try:
        raw = k32.device_io_control(handle, TAP_WIN_IOCTL_GET_VERSION, b"", 12)
        version = struct.unpack("<III", raw.ljust(12, b"\0"))
        mac = k32.device_io_control(handle, TAP_WIN_IOCTL_GET_MAC, b"", 6)
        iface = TapInterface(
            syscalls=syscalls,
            iphlp=iphlp,
            luid=luid,
            kernel32=k32,
            handle=handle,
            mac=mac,
            version=(version[0], version[1], version[2]),
        )
        configure(iface, config, added)  # enabled (the default) sets the media status to 1
        queue = TapQueue(k32, handle)
    except BaseException:
        if iface is not None:
            added.undo(iface, str(config.name))
        k32.close_handle(handle)
        raise
    return iface, queue
