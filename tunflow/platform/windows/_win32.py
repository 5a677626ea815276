"""kernel32 bindings the Windows backends share: events, waits, overlapped file I/O, and the
mapping of Win32 error codes to :mod:`tunflow.errors`.

Types are fixed-width ctypes (``DWORD`` is ``c_uint32``, never ``c_ulong``, which is 8 bytes on
the Linux machines that run the unit tests), so the structures have Windows x64 layouts wherever
they are built. Functions are called with plain Python values (``int`` handles, ``str`` strings,
``ctypes.byref`` for pointers): real ctypes converts them through ``argtypes``, and the fake DLLs
of :mod:`tunflow.platform.fake` receive exactly what the real ones would.

Waiting: a queue waits with ``WaitForMultipleObjects`` on its data event, its shutdown event and
the caller's :class:`Win32Waker`. A handle must not be closed while a thread waits on it
(undefined behaviour), so the waker and the queues count their waiters and close their handles
only when the last one has left.
"""

from __future__ import annotations

import ctypes
import errno
import threading
from collections.abc import Sequence
from typing import Any, Final

from ...errors import (
    ClosedDeviceError,
    DeviceBusyError,
    DeviceError,
    DeviceExistsError,
    DeviceNotFoundError,
    DevicePermissionError,
)
from .._base import OffloadInfo
from .._syscalls import Syscalls

__all__ = [
    "Kernel32",
    "Win32Waker",
    "OVERLAPPED",
    "win_error",
    "bind",
    "DWORD",
    "BOOL",
    "HANDLE",
]

DWORD = ctypes.c_uint32
BOOL = ctypes.c_int32
HANDLE = ctypes.c_void_p

#: winerror.h
ERROR_SUCCESS: Final = 0
ERROR_FILE_NOT_FOUND: Final = 2
ERROR_PATH_NOT_FOUND: Final = 3
ERROR_ACCESS_DENIED: Final = 5
ERROR_INVALID_HANDLE: Final = 6
ERROR_INVALID_DATA: Final = 13
ERROR_SHARING_VIOLATION: Final = 32
ERROR_HANDLE_EOF: Final = 38
ERROR_INVALID_PARAMETER: Final = 87
ERROR_BUFFER_OVERFLOW: Final = 111
ERROR_MOD_NOT_FOUND: Final = 126
ERROR_BUSY: Final = 170
ERROR_ALREADY_EXISTS: Final = 183
ERROR_NO_MORE_ITEMS: Final = 259
ERROR_OPERATION_ABORTED: Final = 995
ERROR_IO_INCOMPLETE: Final = 996
ERROR_IO_PENDING: Final = 997
ERROR_NOT_FOUND: Final = 1168
ERROR_OBJECT_ALREADY_EXISTS: Final = 5010
#: winbase.h / synchapi.h
WAIT_OBJECT_0: Final = 0x0
WAIT_TIMEOUT: Final = 0x102
WAIT_FAILED: Final = 0xFFFFFFFF
INFINITE: Final = 0xFFFFFFFF
#: winnt.h / fileapi.h
GENERIC_READ: Final = 0x80000000
GENERIC_WRITE: Final = 0x40000000
OPEN_EXISTING: Final = 3
FILE_ATTRIBUTE_SYSTEM: Final = 0x4
FILE_FLAG_OVERLAPPED: Final = 0x40000000
#: handleapi.h: INVALID_HANDLE_VALUE, (HANDLE)-1 as ctypes returns it
INVALID_HANDLE_VALUE: Final = (1 << (8 * ctypes.sizeof(ctypes.c_void_p))) - 1

_NOT_FOUND = frozenset({ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND, ERROR_NOT_FOUND})
_EXISTS = frozenset({ERROR_ALREADY_EXISTS, ERROR_OBJECT_ALREADY_EXISTS})


class OVERLAPPED(ctypes.Structure):
    """minwinbase.h: ``OVERLAPPED`` (32 bytes on x64)."""

    _fields_ = [
        ("Internal", ctypes.c_size_t),
        ("InternalHigh", ctypes.c_size_t),
        ("Offset", DWORD),
        ("OffsetHigh", DWORD),
        ("hEvent", HANDLE),
    ]


def win_error(code: int, what: str) -> DeviceError:
    """The :class:`DeviceError` for Win32 error ``code``; permission errors name Administrator."""
    text = _describe(code)
    if code == ERROR_ACCESS_DENIED:
        exc: DeviceError = DevicePermissionError(
            errno.EACCES,
            f"{what}: access denied (Win32 error 5) — this needs Administrator: run it from an "
            "elevated prompt",
        )
    elif code in _NOT_FOUND:
        exc = DeviceNotFoundError(errno.ENOENT, f"{what}: {text} (Win32 error {code})")
    elif code in _EXISTS:
        exc = DeviceExistsError(errno.EEXIST, f"{what}: {text} (Win32 error {code})")
    elif code in (ERROR_BUSY, ERROR_SHARING_VIOLATION):
        exc = DeviceBusyError(errno.EBUSY, f"{what}: {text} (Win32 error {code})")
    else:
        exc = DeviceError(errno.EIO, f"{what}: {text} (Win32 error {code})")
    exc.winerror = code  # type: ignore[attr-defined]
    return exc


def _describe(code: int) -> str:
    fmt = getattr(ctypes, "FormatError", None)
    if fmt is not None:
        try:
            return str(fmt(code)).strip()
        except Exception:
            pass
    return {
        ERROR_FILE_NOT_FOUND: "not found",
        ERROR_NOT_FOUND: "element not found",
        ERROR_ACCESS_DENIED: "access denied",
        ERROR_OBJECT_ALREADY_EXISTS: "the object already exists",
        ERROR_ALREADY_EXISTS: "already exists",
        ERROR_INVALID_PARAMETER: "the parameter is incorrect",
    }.get(code, "system error")


def bind(dll: Any, name: str, restype: Any, argtypes: Sequence[Any]) -> Any:
    """``dll.name`` with its prototype set (``AttributeError`` if the DLL lacks it)."""
    fn = getattr(dll, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


class Kernel32:
    """The kernel32 functions the backends call, bound once per device."""

    def __init__(self, syscalls: Syscalls) -> None:
        self.sys = syscalls
        dll = syscalls.load_library("kernel32.dll")
        p = ctypes.POINTER
        self._CreateEventW = bind(
            dll, "CreateEventW", HANDLE, [ctypes.c_void_p, BOOL, BOOL, ctypes.c_wchar_p]
        )
        self._SetEvent = bind(dll, "SetEvent", BOOL, [HANDLE])
        self._ResetEvent = bind(dll, "ResetEvent", BOOL, [HANDLE])
        self._CloseHandle = bind(dll, "CloseHandle", BOOL, [HANDLE])
        self._WaitForMultipleObjects = bind(
            dll, "WaitForMultipleObjects", DWORD, [DWORD, p(HANDLE), BOOL, DWORD]
        )
        self._CreateFileW = bind(
            dll,
            "CreateFileW",
            HANDLE,
            [ctypes.c_wchar_p, DWORD, DWORD, ctypes.c_void_p, DWORD, DWORD, HANDLE],
        )
        self._DeviceIoControl = bind(
            dll,
            "DeviceIoControl",
            BOOL,
            [
                HANDLE,
                DWORD,
                ctypes.c_void_p,
                DWORD,
                ctypes.c_void_p,
                DWORD,
                p(DWORD),
                p(OVERLAPPED),
            ],
        )
        self._ReadFile = bind(
            dll, "ReadFile", BOOL, [HANDLE, ctypes.c_void_p, DWORD, p(DWORD), p(OVERLAPPED)]
        )
        self._WriteFile = bind(
            dll, "WriteFile", BOOL, [HANDLE, ctypes.c_void_p, DWORD, p(DWORD), p(OVERLAPPED)]
        )
        self._GetOverlappedResult = bind(
            dll, "GetOverlappedResult", BOOL, [HANDLE, p(OVERLAPPED), p(DWORD), BOOL]
        )
        self._CancelIoEx = bind(dll, "CancelIoEx", BOOL, [HANDLE, p(OVERLAPPED)])

    def last_error(self) -> int:
        return self.sys.last_error()

    # -- events -------------------------------------------------------------------------------

    def create_event(self, *, manual_reset: bool, initial: bool = False) -> int:
        handle = self._CreateEventW(None, int(manual_reset), int(initial), None)
        if not handle:
            raise win_error(self.last_error(), "CreateEventW")
        return int(handle)

    def set_event(self, handle: int) -> None:
        if not self._SetEvent(handle):
            raise win_error(self.last_error(), "SetEvent")

    def reset_event(self, handle: int) -> None:
        self._ResetEvent(handle)

    def close_handle(self, handle: int) -> None:
        self._CloseHandle(handle)

    def wait_any(self, handles: Sequence[int], timeout: float | None) -> int | None:
        """``WaitForMultipleObjects(any)``: the index of a signalled handle, ``None`` on timeout."""
        ms = INFINITE if timeout is None else max(0, min(int(timeout * 1000 + 0.999), INFINITE - 1))
        array = (HANDLE * len(handles))(*handles)
        result = int(self._WaitForMultipleObjects(len(handles), array, 0, ms))
        if result == WAIT_TIMEOUT:
            return None
        if result == WAIT_FAILED or not WAIT_OBJECT_0 <= result < WAIT_OBJECT_0 + len(handles):
            raise win_error(self.last_error(), "WaitForMultipleObjects")
        return result - WAIT_OBJECT_0

    # -- files --------------------------------------------------------------------------------

    def create_file(self, path: str, access: int, flags: int) -> int:
        handle = self._CreateFileW(path, access, 0, None, OPEN_EXISTING, flags, None)
        if handle is None or int(handle) == INVALID_HANDLE_VALUE:
            raise win_error(self.last_error(), f"CreateFileW {path}")
        return int(handle)

    def device_io_control(self, handle: int, code: int, data: bytes, out_size: int) -> bytes:
        """A synchronous ``DeviceIoControl`` (the device must complete it without I/O)."""
        inbuf = ctypes.create_string_buffer(data, max(len(data), 1))
        outbuf = ctypes.create_string_buffer(max(out_size, 1))
        returned = DWORD(0)
        ov = OVERLAPPED()
        event = self.create_event(manual_reset=True)
        ov.hEvent = event
        try:
            ok = self._DeviceIoControl(
                handle,
                code,
                ctypes.byref(inbuf) if data else None,
                len(data),
                ctypes.byref(outbuf) if out_size else None,
                out_size,
                ctypes.byref(returned),
                ctypes.byref(ov),
            )
            if not ok:
                err = self.last_error()
                if err != ERROR_IO_PENDING:
                    raise win_error(err, f"DeviceIoControl {code:#x}")
                if not self._GetOverlappedResult(
                    handle, ctypes.byref(ov), ctypes.byref(returned), 1
                ):
                    raise win_error(self.last_error(), f"DeviceIoControl {code:#x}")
        finally:
            self.close_handle(event)
        return outbuf.raw[: returned.value]

    def read_file(self, handle: int, buffer: Any, size: int, ov: OVERLAPPED) -> int | None:
        """Start an overlapped read; its length if it completed at once, ``None`` if pending."""
        done = DWORD(0)
        if self._ReadFile(handle, ctypes.byref(buffer), size, ctypes.byref(done), ctypes.byref(ov)):
            return int(done.value)
        err = self.last_error()
        if err == ERROR_IO_PENDING:
            return None
        raise win_error(err, "ReadFile")

    def write_file(self, handle: int, data: bytes, ov: OVERLAPPED) -> int:
        """An overlapped write, waited for (a TAP write completes as soon as NDIS takes it)."""
        buf = ctypes.create_string_buffer(data, len(data))
        done = DWORD(0)
        if self._WriteFile(
            handle, ctypes.byref(buf), len(data), ctypes.byref(done), ctypes.byref(ov)
        ):
            return int(done.value)
        err = self.last_error()
        if err != ERROR_IO_PENDING:
            raise win_error(err, "WriteFile")
        if not self._GetOverlappedResult(handle, ctypes.byref(ov), ctypes.byref(done), 1):
            raise win_error(self.last_error(), "WriteFile")
        return int(done.value)

    def overlapped_result(self, handle: int, ov: OVERLAPPED, *, wait: bool) -> int | None:
        """The length of a finished overlapped operation, ``None`` while it is still pending."""
        done = DWORD(0)
        if self._GetOverlappedResult(handle, ctypes.byref(ov), ctypes.byref(done), int(wait)):
            return int(done.value)
        err = self.last_error()
        if err == ERROR_IO_INCOMPLETE:
            return None
        raise win_error(err, "GetOverlappedResult")

    def cancel_io(self, handle: int, ov: OVERLAPPED | None = None) -> None:
        self._CancelIoEx(handle, ctypes.byref(ov) if ov is not None else None)


class Win32Waker:
    """A manual-reset event that wakes threads blocked in a queue's ``wait``.

    :meth:`close` may be called while an abandoned worker thread still waits on the event (the
    async face does that on cancellation); the handle is then closed by the last waiter on its
    way out, never under it.
    """

    def __init__(self, kernel32: Kernel32) -> None:
        self._k32 = kernel32
        self._handle = kernel32.create_event(manual_reset=True)
        # (reentrant: a signal handler may shutdown() or trigger in the main thread while that
        # thread holds it, in a wait's acquire() or release())
        self._lock = threading.RLock()
        self._users = 0
        self._closed = False
        self.woken = False

    def __repr__(self) -> str:
        return f"<Win32Waker handle={self._handle:#x} woken={self.woken}>"

    def wake(self) -> None:
        with self._lock:
            self.woken = True
            if self._handle:
                self._k32.set_event(self._handle)

    def reset(self) -> None:
        """Make it unwoken again (an :class:`~tunflow.InterruptEvent` is reusable)."""
        with self._lock:
            self.woken = False
            if self._handle:
                self._k32.reset_event(self._handle)

    def acquire(self) -> int | None:
        """The event handle for one wait (``None`` once closed); pair with :meth:`release`."""
        with self._lock:
            if self._closed or not self._handle:
                return None
            self._users += 1
            return self._handle

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._closed and self._users == 0:
                self._close_locked()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._users == 0:
                self._close_locked()

    def _close_locked(self) -> None:
        handle, self._handle = self._handle, 0
        if handle:
            self._k32.close_handle(handle)


class HandleQueue:
    """What the Wintun and tap-windows6 queues share: not pollable (``fileno() == -1``), a
    read event to wait on, a shutdown event, and a count of the threads inside a call so that
    :meth:`_begin_close` frees handles only once no thread can still be using them."""

    def __init__(self, kernel32: Kernel32, read_event: int) -> None:
        self.offload = OffloadInfo()
        self._k32 = kernel32
        self._read_event = read_event
        self._shutdown = kernel32.create_event(manual_reset=True)
        self._cond = threading.Condition()
        self._inside = 0
        self._closed = False

    def fileno(self) -> int:
        return -1

    def wait_handle(self) -> int | None:
        return self._read_event

    def make_waker(self) -> Win32Waker:
        return Win32Waker(self._k32)

    def _enter(self) -> None:
        with self._cond:
            if self._closed:
                raise ClosedDeviceError("the device is closed")
            self._inside += 1

    def _leave(self) -> None:
        with self._cond:
            self._inside -= 1
            if self._inside == 0:
                self._cond.notify_all()

    def _begin_close(self, grace: float) -> int | None:
        """Mark closed, wake every waiter and wait up to ``grace`` s for the threads inside to
        leave; the number still inside (``None`` if already closed)."""
        with self._cond:
            if self._closed:
                return None
            self._closed = True
        self._k32.set_event(self._shutdown)
        with self._cond:
            self._cond.wait_for(lambda: self._inside == 0, timeout=grace)
            return self._inside
