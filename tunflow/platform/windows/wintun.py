"""Windows TUN through Wintun (``wintun.dll``, loaded with ctypes), and its packet queue.

**Loading.** ``config.wintun_file`` when given; otherwise ``wintun.dll`` next to the program
(``sys.executable``'s directory, for frozen programs, then the script's), then the DLL search
path. A missing DLL is a :class:`~tunflow.DeviceNotFoundError` that names every path tried.

**Adapter.** ``WintunOpenAdapter`` when an adapter of that name exists *and* still has a network
interface; an adapter left over by a crashed process ("orphaned": it opens, but its LUID maps to
no interface — tun-rs issue #33) is closed and a fresh one created. ``WintunCreateAdapter`` is
tried up to 4 times (tun-rs's count: the driver install races on first use). An adapter this
process created is removed by ``WintunCloseAdapter`` when the device closes.

**Session.** ``WintunStartSession(ring_capacity)`` (a power of two in 128 KiB..64 MiB; default
4 MiB); ``WintunGetReadWaitEvent`` gives the event the queue waits on. Packets are bare IP.

**Queue.** :class:`WintunQueue` has no fd (``fileno() == -1``); the faces wait in
:meth:`WintunQueue.wait` — ``WaitForMultipleObjects`` on the read event, the queue's shutdown
event and the caller's :class:`~tunflow.platform.windows._win32.Win32Waker` — the sync face in
its own thread, the async face in an anyio worker thread.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import sys
import threading
import uuid
from typing import Any, Final

from ...errors import (
    ConfigError,
    DeviceBusyError,
    DeviceError,
    DeviceGoneError,
    DeviceNotFoundError,
    PacketTooLargeError,
    UnsupportedError,
)
from ...netconfig.device import DeviceConfig, Layer
from ...packet import HEADROOM, PacketBatch
from .._base import Buffer, read_too_large
from .._build import Additions
from .._syscalls import Syscalls
from ._win32 import (
    BOOL,
    ERROR_BUFFER_OVERFLOW,
    ERROR_HANDLE_EOF,
    ERROR_NO_MORE_ITEMS,
    HANDLE,
    HandleQueue,
    Kernel32,
    Win32Waker,
    bind,
    win_error,
)
from .interface import WindowsInterface, configure
from .iphlpapi import GUID, NET_LUID, IpHelper

__all__ = [
    "WintunApi",
    "WintunQueue",
    "WintunInterface",
    "load_wintun",
    "open_wintun",
    "DEFAULT_RING_CAPACITY",
    "MIN_RING_CAPACITY",
    "MAX_RING_CAPACITY",
]

#: wintun.h: WINTUN_MIN_RING_CAPACITY, WINTUN_MAX_RING_CAPACITY, WINTUN_MAX_IP_PACKET_SIZE
MIN_RING_CAPACITY: Final = 0x20000
MAX_RING_CAPACITY: Final = 0x4000000
MAX_IP_PACKET_SIZE: Final = 0xFFFF
#: 4 MiB: wireguard-go's ring size (tun-rs uses 2 MiB)
DEFAULT_RING_CAPACITY: Final = 0x400000
#: attempts at WintunCreateAdapter (tun-rs: 4)
CREATE_ATTEMPTS: Final = 4
#: how long close() waits for threads still inside the session before ending it
_CLOSE_GRACE: Final = 2.0

log = logging.getLogger("tunflow.platform.windows")
#: where :meth:`~tunflow.DeviceBuilder.wintun_log` sends Wintun's own messages
wintun_log: Final = logging.getLogger("tunflow.platform.windows.wintun")
#: wintun.h: WINTUN_LOGGER_LEVEL (WINTUN_LOG_INFO, _WARN, _ERR)
_LOG_LEVELS: Final = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR}
#: wintun.h: ``VOID (CALLBACK *WINTUN_LOGGER_CALLBACK)(WINTUN_LOGGER_LEVEL Level,
#: DWORD64 Timestamp, LPCWSTR Message)``
LOGGER_CALLBACK: Final = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)(
    None, ctypes.c_int32, ctypes.c_uint64, ctypes.c_wchar_p
)


def _log_message(level: int, timestamp: int, message: str | None) -> None:
    """Wintun's logger callback: one ``logging`` record per message (Wintun's timestamp, in
    100 ns since 1601, is not used: the record's time is when it arrived)."""
    try:
        wintun_log.log(
            _LOG_LEVELS.get(level, logging.ERROR),
            "Wintun: %s" if level in _LOG_LEVELS else f"Wintun (level {level}): %s",
            message or "",
        )
    except Exception:  # an exception must not unwind into wintun.dll
        pass


#: the callback handed to WintunSetLogger; it lives as long as the process, since Wintun may
#: call it from any thread until the logger is reset
_LOGGER: Final = LOGGER_CALLBACK(_log_message)
_logger_lock = threading.Lock()
_logger_users = 0


def logger_on(api: WintunApi) -> None:
    """Route Wintun's messages to :data:`wintun_log` (``WintunSetLogger``; process-wide),
    counting the devices that asked."""
    global _logger_users
    with _logger_lock:
        api.set_logger(_LOGGER)
        _logger_users += 1


def logger_off(api: WintunApi) -> None:
    """One device less wants Wintun's messages; the last resets the logger (NULL)."""
    global _logger_users
    with _logger_lock:
        _logger_users -= 1
        if _logger_users == 0:
            api.set_logger(None)


class WintunApi:
    """The wintun.dll functions (wintun.h), bound with their prototypes."""

    def __init__(self, dll: Any, syscalls: Syscalls) -> None:
        self.sys = syscalls
        self._dll = dll
        p = ctypes.POINTER
        u32 = ctypes.c_uint32
        self.CreateAdapter = bind(
            dll, "WintunCreateAdapter", HANDLE, [ctypes.c_wchar_p, ctypes.c_wchar_p, p(GUID)]
        )
        self.OpenAdapter = bind(dll, "WintunOpenAdapter", HANDLE, [ctypes.c_wchar_p])
        self.CloseAdapter = bind(dll, "WintunCloseAdapter", None, [HANDLE])
        self.GetAdapterLUID = bind(dll, "WintunGetAdapterLUID", None, [HANDLE, p(NET_LUID)])
        self.GetRunningDriverVersion = bind(dll, "WintunGetRunningDriverVersion", u32, [])
        self.StartSession = bind(dll, "WintunStartSession", HANDLE, [HANDLE, u32])
        self.EndSession = bind(dll, "WintunEndSession", None, [HANDLE])
        self.GetReadWaitEvent = bind(dll, "WintunGetReadWaitEvent", HANDLE, [HANDLE])
        self.ReceivePacket = bind(dll, "WintunReceivePacket", ctypes.c_void_p, [HANDLE, p(u32)])
        self.ReleaseReceivePacket = bind(
            dll, "WintunReleaseReceivePacket", None, [HANDLE, ctypes.c_void_p]
        )
        self.AllocateSendPacket = bind(
            dll, "WintunAllocateSendPacket", ctypes.c_void_p, [HANDLE, u32]
        )
        self.SendPacket = bind(dll, "WintunSendPacket", None, [HANDLE, ctypes.c_void_p])

    def set_logger(self, callback: Any) -> None:
        """``WintunSetLogger`` (bound on first use: only wintun_log() needs it); ``None``
        resets it, passed as a NULL ``LOGGER_CALLBACK`` (ctypes refuses ``None`` for a
        function-pointer argument)."""
        fn = bind(self._dll, "WintunSetLogger", None, [LOGGER_CALLBACK])
        fn(callback if callback is not None else LOGGER_CALLBACK())

    def delete_driver(self) -> None:
        """``WintunDeleteDriver`` (bound on first use): remove the Wintun driver from the
        system if no adapter uses it any more. Its refusal (one still does, in this process or
        another) is logged as a warning, not raised: this runs as the device closes."""
        fn = bind(self._dll, "WintunDeleteDriver", BOOL, [])
        if not fn():
            err = self.sys.last_error()
            log.warning(
                "WintunDeleteDriver refused (Win32 error %d): %s",
                err,
                win_error(err, "delete the Wintun driver"),
            )

    def luid(self, adapter: int) -> int:
        luid = NET_LUID()
        self.GetAdapterLUID(adapter, ctypes.byref(luid))
        return int(luid.Value)

    def driver_version(self) -> str:
        version = int(self.GetRunningDriverVersion())
        if not version:
            # wintun.h, WintunGetRunningDriverVersion: "If the function fails, the return value
            # is zero. To get extended error information, call GetLastError" (ERROR_FILE_NOT_FOUND:
            # Wintun not loaded) — not a version 0.0
            raise win_error(self.sys.last_error(), "WintunGetRunningDriverVersion")
        return f"{version >> 16}.{version & 0xFFFF}"


def wintun_candidates(wintun_file: str | None) -> list[str]:
    """Where ``wintun.dll`` is looked for, in order."""
    if wintun_file:
        return [wintun_file]
    out: list[str] = []
    for base in (
        os.path.dirname(sys.executable),
        os.path.dirname(os.path.abspath(sys.argv[0] or ".")),
    ):
        path = os.path.join(base, "wintun.dll")
        if path not in out:
            out.append(path)
    out.append("wintun.dll")
    return out


def load_wintun(syscalls: Syscalls, wintun_file: str | None) -> WintunApi:
    """Load wintun.dll (see :func:`wintun_candidates`).

    Raises:
        DeviceNotFoundError: no candidate loads; the message names each path tried.
        UnsupportedError: the DLL that loads lacks a function of wintun.h's API (a Wintun
            older than 0.14, whose adapters came from pools, or not Wintun at all).
    """
    tried: list[str] = []
    for path in wintun_candidates(wintun_file):
        try:
            dll = syscalls.load_library(path)
        except OSError as exc:
            tried.append(f"{path} ({exc.strerror or exc})")
            continue
        try:
            return WintunApi(dll, syscalls)
        except AttributeError as exc:
            raise UnsupportedError(
                f"{path} is not a wintun.dll tunflow can use ({exc}): tunflow needs Wintun 0.14 "
                "or later; download it from https://www.wintun.net"
            ) from None
    raise DeviceNotFoundError(
        errno.ENOENT,
        "wintun.dll could not be loaded from " + "; ".join(tried) + ". Download it from "
        "https://www.wintun.net and put the DLL for this CPU next to your program, or pass its "
        "path with DeviceBuilder().wintun_file(...)",
    )


def _first_free_name(iphlp: IpHelper) -> str:
    for unit in range(1000):
        name = f"tun{unit}"
        try:
            iphlp.alias_to_luid(name)
        except DeviceNotFoundError:
            return name
    raise DeviceError(errno.ENOSPC, "no free tunN adapter name")


def open_or_create_adapter(
    api: WintunApi, iphlp: IpHelper, name: str, tunnel_type: str, guid: uuid.UUID | None = None
) -> tuple[int, bool]:
    """The adapter named ``name`` (reused if healthy, else created with the GUID ``guid``, the
    system's choice when ``None``); and whether we created it."""
    handle = api.OpenAdapter(name)
    if handle:
        try:
            iphlp.luid_to_index(api.luid(int(handle)))
        except DeviceError:
            # Orphaned: the adapter outlived its interface (a crashed owner). Start afresh.
            api.CloseAdapter(int(handle))
        else:
            return int(handle), False
    requested = GUID.from_uuid(guid) if guid is not None else None
    last = 0
    for _ in range(CREATE_ATTEMPTS):
        handle = api.CreateAdapter(
            name, tunnel_type, ctypes.byref(requested) if requested is not None else None
        )
        if handle:
            return int(handle), True
        last = api.sys.last_error()
        if last == 5:  # ERROR_ACCESS_DENIED will not change on retry
            break
    raise win_error(last, f"WintunCreateAdapter {name!r}")


class WintunInterface(WindowsInterface):
    """A Wintun adapter: TUN, up while its session runs."""

    def __init__(self, *, api: WintunApi, **kwargs: Any) -> None:
        super().__init__(layer=Layer.L3, driver="wintun", **kwargs)
        self.api = api

    def version(self) -> str:
        """The running Wintun driver's ``major.minor`` (``WintunGetRunningDriverVersion``)."""
        with self.op("get the Wintun driver version"):
            return self.api.driver_version()

    def set_enabled(self, up: bool) -> None:
        if not up:
            raise UnsupportedError(
                "a Wintun adapter is up while its session runs; close the device to take it down"
            )


class WintunQueue(HandleQueue):
    """The packet queue of a Wintun session (see the module docstring)."""

    def __init__(
        self,
        api: WintunApi,
        kernel32: Kernel32,
        session: int,
        read_event: int,
    ) -> None:
        super().__init__(kernel32, read_event)
        self._api = api
        self._session = session
        #: packets a batch read had no room for whole (longer than max_size): dropped
        self.rx_truncated = 0

    def __repr__(self) -> str:
        return f"<WintunQueue session={self._session:#x}{' closed' if self._closed else ''}>"

    # Every call into the session counts itself in (HandleQueue._enter), so close() ends the
    # session only once no thread is inside it (a ring freed under a thread is undefined).

    def _receive(self) -> tuple[int, int]:
        size = ctypes.c_uint32(0)
        ptr = self._api.ReceivePacket(self._session, ctypes.byref(size))
        if not ptr:
            err = self._api.sys.last_error()
            if err == ERROR_NO_MORE_ITEMS:
                raise BlockingIOError(errno.EAGAIN, "no packet waiting")
            if err == ERROR_HANDLE_EOF:
                raise DeviceGoneError(errno.ENODEV, "read: the Wintun adapter is terminating")
            raise win_error(err, "WintunReceivePacket")
        return int(ptr), int(size.value)

    def recv(self, max_size: int) -> bytes:
        """The next packet; one larger than ``max_size`` (the MTU raised outside tunflow) is
        dropped, counted in :attr:`rx_truncated` and raised as :class:`PacketTooLargeError`, as
        :class:`~tunflow.platform._unix.FdQueue` does — never handed out cut."""
        self._enter()
        try:
            ptr, size = self._receive()
            try:
                if size > max_size:
                    self.rx_truncated += 1
                    raise read_too_large(size, max_size)
                return ctypes.string_at(ptr, size)
            finally:
                self._api.ReleaseReceivePacket(self._session, ptr)
        finally:
            self._leave()

    def recv_into(self, buf: memoryview) -> int:
        packet = self.recv(len(buf))
        buf[: len(packet)] = packet
        return len(packet)

    def recv_batch(self, batch: PacketBatch, max_size: int) -> int:
        self._enter()
        count = 0
        try:
            while len(batch.offsets) < batch.max_packets and batch.room() >= max_size:
                try:
                    ptr, size = self._receive()
                except BlockingIOError:
                    break
                except Exception:
                    if count:
                        return count
                    raise
                try:
                    if size > batch.room():
                        # Longer than max_size (the MTU was raised outside tunflow) and no
                        # room left for it whole: drop and count it, never hand it out cut.
                        self.rx_truncated += 1
                        continue
                    off = batch.end + HEADROOM
                    batch.buffer[off : off + size] = ctypes.string_at(ptr, size)
                    batch.commit(off, size)
                    count += 1
                finally:
                    self._api.ReleaseReceivePacket(self._session, ptr)
        finally:
            self._leave()
        return count

    def _send(self, packet: Buffer) -> int:
        n = len(packet)
        if n > MAX_IP_PACKET_SIZE:
            raise PacketTooLargeError(
                f"Wintun carries packets of at most {MAX_IP_PACKET_SIZE} bytes"
            )
        ptr = self._api.AllocateSendPacket(self._session, n)
        if not ptr:
            err = self._api.sys.last_error()
            if err == ERROR_BUFFER_OVERFLOW:
                raise BlockingIOError(errno.EAGAIN, "the Wintun ring is full")
            if err == ERROR_HANDLE_EOF:
                raise DeviceGoneError(errno.ENODEV, "write: the Wintun adapter is terminating")
            raise win_error(err, "WintunAllocateSendPacket")
        data = packet if isinstance(packet, bytes) else bytes(packet)
        ctypes.memmove(ptr, data, n)
        self._api.SendPacket(self._session, ptr)
        return n

    def send(self, packet: Buffer) -> int:
        self._enter()
        try:
            return self._send(packet)
        finally:
            self._leave()

    def send_batch(self, batch: PacketBatch, start: int = 0) -> int:
        self._enter()
        i = start
        try:
            while i < len(batch):
                try:
                    self._send(batch.packet(i))
                except BlockingIOError:
                    if i == start:
                        raise
                    break
                i += 1
        finally:
            self._leave()
        return i

    def wait(
        self,
        writable: bool,
        timeout: float | None,
        waker: Win32Waker | None,
        interrupt: Win32Waker | None = None,
    ) -> bool:
        """Block until a packet can be read; ``False`` on timeout, wake or close.

        Wintun signals no "ring has room" event, so a writer polls: the wait lasts at most
        5 ms (or ``timeout``) and then says "try again" (tun-rs backs off 1–10 ms).
        """
        self._enter()
        wake = waker.acquire() if waker is not None else None
        intr = interrupt.acquire() if interrupt is not None else None
        try:
            extra = [h for h in (wake, intr) if h]
            if writable:
                pause = 0.005 if timeout is None else min(timeout, 0.005)
                index = self._k32.wait_any([self._shutdown, *extra], pause)
                return index is None
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
        stuck = self._begin_close(_CLOSE_GRACE)
        if stuck is None:
            return
        if stuck:
            # A thread is still inside the session (it cannot be, unless a DLL call hangs):
            # leak the session rather than free it under that thread.
            return
        self._api.EndSession(self._session)
        self._k32.close_handle(self._shutdown)


def _ring_capacity(config: DeviceConfig) -> int:
    capacity = config.ring_capacity or DEFAULT_RING_CAPACITY
    if capacity & (capacity - 1) or not MIN_RING_CAPACITY <= capacity <= MAX_RING_CAPACITY:
        raise ConfigError(
            f"ring_capacity {capacity} must be a power of two in "
            f"{MIN_RING_CAPACITY}..{MAX_RING_CAPACITY} (wintun.h)"
        )
    return capacity


def _check_guid(iphlp: IpHelper, luid: int, name: str, wanted: uuid.UUID) -> None:
    """Refuse to reuse the adapter ``name`` when its GUID is not ``wanted``."""
    have = iphlp.luid_to_guid(luid).to_uuid()
    if have != wanted:
        raise DeviceBusyError(
            errno.EBUSY,
            f"the Wintun adapter {name!r} exists with the GUID {{{str(have).upper()}}}, not the "
            f"requested {{{str(wanted).upper()}}}: close what uses it, or pick another name",
        )


def open_wintun(config: DeviceConfig, syscalls: Syscalls) -> tuple[WintunInterface, WintunQueue]:
    """Create (or reuse) a Wintun adapter, start a session and configure the interface."""
    capacity = _ring_capacity(config)
    if config.persist:
        raise UnsupportedError(
            "WintunCloseAdapter removes the adapters it created; persist is not possible"
        )
    api = load_wintun(syscalls, config.wintun_file)
    k32 = Kernel32(syscalls)
    iphlp = IpHelper(syscalls)
    if config.wintun_log:
        logger_on(api)  # before the adapter calls, so that their messages are logged too
    try:
        adapter, created = _adapter(config, api, iphlp)
    except BaseException:
        if config.wintun_log:
            logger_off(api)
        raise
    session = 0
    iface: WintunInterface | None = None
    added = Additions()
    try:
        luid = api.luid(adapter)
        if config.device_guid is not None and not created:
            _check_guid(iphlp, luid, config.name or "", config.device_guid)
        session = int(api.StartSession(adapter, capacity) or 0)
        if not session:
            raise win_error(syscalls.last_error(), "WintunStartSession")
        read_event = int(api.GetReadWaitEvent(session) or 0)
        if not read_event:
            raise win_error(syscalls.last_error(), "WintunGetReadWaitEvent")
        iface = WintunInterface(syscalls=syscalls, iphlp=iphlp, luid=luid, api=api)
        configure(iface, config, added)
        queue = WintunQueue(api, k32, session, read_event)
    except BaseException:
        if iface is not None and not created:
            added.undo(iface, str(config.name))
        if session:
            api.EndSession(session)
        api.CloseAdapter(adapter)  # removes the adapter (and its addresses) if we created it
        if config.delete_driver:
            api.delete_driver()
        if config.wintun_log:
            logger_off(api)
        raise
    # (run newest first: the adapter is closed, the driver deleted, then the logger reset)
    if config.wintun_log:
        iface.add_cleanup(lambda: logger_off(api))
    if config.delete_driver:
        iface.add_cleanup(api.delete_driver)
    iface.add_cleanup(lambda: api.CloseAdapter(adapter))
    return iface, queue


def _adapter(config: DeviceConfig, api: WintunApi, iphlp: IpHelper) -> tuple[int, bool]:
    """The adapter handle the build uses, and whether it was created for it."""
    if config.attach:
        handle = api.OpenAdapter(config.name)
        if not handle:
            # wintun.h: NULL, and GetLastError says why — ERROR_NOT_FOUND when no adapter has
            # the name (WireGuard/wintun api/adapter.c, WintunOpenAdapter: "Failed to find
            # matching adapter name"); any other code (ERROR_ACCESS_DENIED without
            # Administrator, a SetupAPI failure) is that error, not "no such adapter".
            raise win_error(api.sys.last_error(), f"open the Wintun adapter {config.name!r}")
        return int(handle), False
    name = config.name or _first_free_name(iphlp)
    return open_or_create_adapter(
        api, iphlp, name, config.description or "tunflow", config.device_guid
    )
