"""The seam between the non-Linux backends and the operating system.

Every system call the macOS, BSD, iOS/Android and Windows backends make goes through one
:class:`Syscalls` object, so the unit tests can hand them a recorder
(:class:`tunflow.platform.fake.FakeSyscalls`) that logs each call with its exact arguments and
answers from a script, and the same backend code runs on Linux CI without a BSD kernel.

:class:`RealSyscalls` is the implementation for the running OS. It imports OS-specific modules
(``fcntl``, ``ctypes``) only inside its methods, so this module is importable everywhere and
``import tunflow`` never touches another platform's code. Structures cross this boundary as
``bytes`` packed by the backends (``struct`` layouts that cite their OS header), never as
ctypes objects, except for the Windows DLL functions which take ctypes arguments as the DLLs do.

This module must not contain backend logic: no ioctl numbers, no structure layouts.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from ..errors import DeviceError, DevicePermissionError

__all__ = [
    "IfAddr",
    "Syscalls",
    "RealSyscalls",
    "CommandError",
    "current_syscalls",
    "install_syscalls",
    "oserror_to_device_error",
    "quiet_closer",
]


@attrs.frozen
class IfAddr:
    """One entry of ``getifaddrs(3)``; the sockaddrs are raw bytes in the OS's own layout.

    Attributes:
        name: the interface name.
        flags: the ``IFF_*`` flags.
        addr: ``ifa_addr`` (``None`` when the kernel gave none).
        netmask: ``ifa_netmask``.
        dstaddr: ``ifa_dstaddr`` (the point-to-point peer or broadcast address).
    """

    name: str
    flags: int
    addr: bytes | None
    netmask: bytes | None = None
    dstaddr: bytes | None = None


class CommandError(OSError):
    """A helper program (``ifconfig``, ``sh MAKEDEV``, ``netsh``) exited with an error."""


class Syscalls(Protocol):
    """The system calls the non-Linux backends make. Every method raises :class:`OSError`
    (with ``errno``) on failure, as the C call would set it."""

    def open(self, path: str, flags: int) -> int:
        """``open(2)``; returns the fd."""
        ...

    def close(self, fd: int) -> None:
        """``close(2)``."""
        ...

    def ioctl(self, fd: int, request: int, arg: bytes | int = 0) -> bytes | int:
        """``ioctl(2)``: with ``bytes`` the kernel's copy of the buffer is returned."""
        ...

    def socket(self, family: int, type_: int, proto: int) -> int:
        """``socket(2)``; returns the fd."""
        ...

    def connect(self, fd: int, address: bytes) -> None:
        """``connect(2)`` with a raw sockaddr."""
        ...

    def bind(self, fd: int, address: bytes) -> None:
        """``bind(2)`` with a raw sockaddr."""
        ...

    def getpeername(self, fd: int) -> bytes:
        """``getpeername(2)``; the raw sockaddr."""
        ...

    def getsockopt(self, fd: int, level: int, option: int, size: int) -> bytes:
        """``getsockopt(2)`` into a ``size``-byte buffer; the bytes the kernel filled."""
        ...

    def setsockopt(self, fd: int, level: int, option: int, value: bytes) -> None:
        """``setsockopt(2)``."""
        ...

    def read(self, fd: int, size: int) -> bytes:
        """``read(2)``; :class:`BlockingIOError` on ``EAGAIN``."""
        ...

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        """``write(2)``."""
        ...

    def readv(self, fd: int, buffers: Sequence[bytearray | memoryview]) -> int:
        """``readv(2)``."""
        ...

    def writev(self, fd: int, buffers: Sequence[bytes | bytearray | memoryview]) -> int:
        """``writev(2)``."""
        ...

    def fcntl(self, fd: int, cmd: int, arg: int = 0) -> int:
        """``fcntl(2)`` with an integer argument."""
        ...

    def if_nametoindex(self, name: str) -> int:
        """``if_nametoindex(3)``; :class:`OSError` (``ENXIO``) if there is no such interface."""
        ...

    def getifaddrs(self) -> list[IfAddr]:
        """``getifaddrs(3)``."""
        ...

    def sysctl(self, mib: Sequence[int]) -> bytes:
        """``sysctl(3)`` read of the whole value named by ``mib``."""
        ...

    def run(self, argv: Sequence[str], *, cwd: str | None = None) -> str:
        """Run a helper program; its stdout, or :class:`CommandError` naming its stderr."""
        ...

    def load_library(self, path: str) -> Any:
        """Load a DLL (Windows: ``WinDLL(path, use_last_error=True)``)."""
        ...

    def last_error(self) -> int:
        """The calling thread's Win32 ``GetLastError()`` after the last DLL call."""
        ...


class RealSyscalls:
    """:class:`Syscalls` for the running operating system.

    OS-specific modules are imported lazily in each method, so constructing one is free and
    safe on every platform; calling a method the OS lacks raises :class:`OSError`.
    """

    def __init__(self) -> None:
        self._libc_handle: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "<RealSyscalls>"

    # -- helpers ----------------------------------------------------------------------------

    def _libc(self) -> Any:
        import ctypes

        with self._lock:
            if self._libc_handle is None:
                self._libc_handle = ctypes.CDLL(None, use_errno=True)
            return self._libc_handle

    @staticmethod
    def _raise_errno(what: str) -> None:
        import ctypes

        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")

    # -- files and ioctls -------------------------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        return os.open(path, flags)

    def close(self, fd: int) -> None:
        os.close(fd)

    def ioctl(self, fd: int, request: int, arg: bytes | int = 0) -> bytes | int:
        import fcntl

        return fcntl.ioctl(fd, request, arg)

    def fcntl(self, fd: int, cmd: int, arg: int = 0) -> int:
        import fcntl

        return fcntl.fcntl(fd, cmd, arg)

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        return os.write(fd, data)

    def readv(self, fd: int, buffers: Sequence[bytearray | memoryview]) -> int:
        return os.readv(fd, buffers)

    def writev(self, fd: int, buffers: Sequence[bytes | bytearray | memoryview]) -> int:
        return os.writev(fd, buffers)

    # -- sockets with raw sockaddrs (AF_SYSTEM, AF_NDRV, PF_ROUTE have no Python address) ----

    def socket(self, family: int, type_: int, proto: int) -> int:
        libc = self._libc()
        fd = int(libc.socket(family, type_, proto))
        if fd < 0:
            self._raise_errno("socket")
        return fd

    def _sockaddr_call(self, name: str, fd: int, address: bytes) -> None:
        import ctypes

        buf = ctypes.create_string_buffer(address, len(address))
        if int(getattr(self._libc(), name)(fd, buf, len(address))) != 0:
            self._raise_errno(name)

    def connect(self, fd: int, address: bytes) -> None:
        self._sockaddr_call("connect", fd, address)

    def bind(self, fd: int, address: bytes) -> None:
        self._sockaddr_call("bind", fd, address)

    def getpeername(self, fd: int) -> bytes:
        import ctypes

        buf = ctypes.create_string_buffer(256)
        size = ctypes.c_uint32(256)
        if int(self._libc().getpeername(fd, buf, ctypes.byref(size))) != 0:
            self._raise_errno("getpeername")
        return buf.raw[: size.value]

    def getsockopt(self, fd: int, level: int, option: int, size: int) -> bytes:
        import ctypes

        buf = ctypes.create_string_buffer(size)
        length = ctypes.c_uint32(size)
        if int(self._libc().getsockopt(fd, level, option, buf, ctypes.byref(length))) != 0:
            self._raise_errno("getsockopt")
        return buf.raw[: length.value]

    def setsockopt(self, fd: int, level: int, option: int, value: bytes) -> None:
        import ctypes

        buf = ctypes.create_string_buffer(value, len(value))
        if int(self._libc().setsockopt(fd, level, option, buf, len(value))) != 0:
            self._raise_errno("setsockopt")

    # -- interfaces ---------------------------------------------------------------------------

    def if_nametoindex(self, name: str) -> int:
        import socket

        return socket.if_nametoindex(name)

    def getifaddrs(self) -> list[IfAddr]:
        import ctypes

        class _IfAddrs(ctypes.Structure):
            pass

        # struct ifaddrs (<ifaddrs.h>): the same leading fields on Darwin, the BSDs and glibc.
        _IfAddrs._fields_ = [
            ("ifa_next", ctypes.POINTER(_IfAddrs)),
            ("ifa_name", ctypes.c_char_p),
            ("ifa_flags", ctypes.c_uint),
            ("ifa_addr", ctypes.c_void_p),
            ("ifa_netmask", ctypes.c_void_p),
            ("ifa_dstaddr", ctypes.c_void_p),
            ("ifa_data", ctypes.c_void_p),
        ]
        libc = self._libc()
        head = ctypes.POINTER(_IfAddrs)()
        if int(libc.getifaddrs(ctypes.byref(head))) != 0:
            self._raise_errno("getifaddrs")
        out: list[IfAddr] = []
        try:
            node = head
            while bool(node):  # a NULL ctypes pointer is false
                entry = node.contents
                out.append(
                    IfAddr(
                        name=(entry.ifa_name or b"").decode(errors="replace"),
                        flags=int(entry.ifa_flags),
                        addr=_sockaddr_at(entry.ifa_addr),
                        netmask=_sockaddr_at(entry.ifa_netmask),
                        dstaddr=_sockaddr_at(entry.ifa_dstaddr),
                    )
                )
                node = entry.ifa_next
        finally:
            libc.freeifaddrs(head)
        return out

    def sysctl(self, mib: Sequence[int]) -> bytes:
        import ctypes

        libc = self._libc()
        name = (ctypes.c_int * len(mib))(*mib)
        for _ in range(3):  # the table may grow between the size query and the read
            size = ctypes.c_size_t(0)
            if int(libc.sysctl(name, len(mib), None, ctypes.byref(size), None, 0)) != 0:
                self._raise_errno("sysctl")
            size.value += size.value // 8 + 256
            buf = ctypes.create_string_buffer(size.value)
            if int(libc.sysctl(name, len(mib), buf, ctypes.byref(size), None, 0)) == 0:
                return buf.raw[: size.value]
            if ctypes.get_errno() != errno.ENOMEM:
                self._raise_errno("sysctl")
        raise OSError(errno.ENOMEM, "sysctl: the table kept growing")

    # -- helper programs and DLLs -------------------------------------------------------------

    def run(self, argv: Sequence[str], *, cwd: str | None = None) -> str:
        import subprocess

        proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()
            raise CommandError(
                errno.EIO, f"{' '.join(argv)} exited with {proc.returncode}: {detail}"
            )
        return proc.stdout

    def load_library(self, path: str) -> Any:
        import ctypes

        windll = getattr(ctypes, "WinDLL", None)
        if windll is None:
            raise OSError(errno.ENOSYS, f"cannot load {path}: not Windows")
        return windll(path, use_last_error=True)

    def last_error(self) -> int:
        import ctypes

        get = getattr(ctypes, "get_last_error", None)
        return int(get()) if get is not None else 0


def _sockaddr_at(address: int | None) -> bytes | None:
    """Copy the sockaddr at ``address``: ``sa_len`` bytes on BSD/Darwin, by family on Linux."""
    import ctypes

    if not address:
        return None
    head = ctypes.string_at(address, 2)
    if sys.platform.startswith("linux"):
        family = int.from_bytes(head, sys.byteorder)
        size = {2: 16, 10: 28, 17: 20}.get(family, 16)
    else:
        size = max(head[0], 2)
    return ctypes.string_at(address, size)


# -- the instance backends use when none is passed ------------------------------------------

_installed: Syscalls | None = None
_real: RealSyscalls | None = None


def quiet_closer(syscalls: Syscalls, fd: int) -> Callable[[], None]:
    """A closer of ``fd`` through ``syscalls`` (so the fake layer sees every close) that, as
    :class:`~tunflow.platform._unix.FdQueue`'s own close, takes ``EBADF`` for "closed outside
    tunflow already" — an adopted fd its maker closed first — rather than raising it."""

    def close() -> None:
        try:
            syscalls.close(fd)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise

    return close


def current_syscalls() -> Syscalls:
    """The :class:`Syscalls` backends use by default: the installed one, else the real one."""
    global _real
    if _installed is not None:
        return _installed
    if _real is None:
        _real = RealSyscalls()
    return _real


def install_syscalls(syscalls: Syscalls | None) -> Syscalls | None:
    """Make ``syscalls`` the default (``None``: back to the real one); return the previous.

    Tests use :func:`tunflow.platform.fake.pretend_platform` rather than calling this.
    """
    global _installed
    previous = _installed
    _installed = syscalls
    return previous


def oserror_to_device_error(exc: OSError, what: str, *, privilege: str = "root") -> DeviceError:
    """The :class:`DeviceError` for an :class:`OSError` from a non-Linux backend.

    ``EPERM``/``EACCES`` become a :class:`DevicePermissionError` whose message names the
    privilege the OS wants (``root`` on macOS and the BSDs, ``Administrator`` on Windows) instead
    of Linux's ``CAP_NET_ADMIN``.
    """
    if isinstance(exc, DeviceError):
        return exc
    code = exc.errno or 0
    if code in DevicePermissionError.errnos:
        hint = "run it as root (sudo)" if privilege == "root" else f"run it as {privilege}"
        return DevicePermissionError(
            code, f"{what}: {exc.strerror or exc} — this needs {privilege}: {hint}"
        )
    return DeviceError.from_oserror(exc, what)
