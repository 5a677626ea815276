"""Entering a network namespace for the duration of a call (``setns`` on the calling thread).

Interfaces, tun queues and netlink sockets belong to the namespace of the thread that makes
them, and keep it afterwards; so a device can be made in another namespace by entering it for
the build only. Needs CAP_SYS_ADMIN.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["setns", "entered", "current_inode", "open_current", "netns_path"]

_CLONE_NEWNET = 0x40000000
_libc: Any = None
_lock = threading.Lock()


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace ``fd`` refers to."""
    global _libc
    setns_fn = getattr(os, "setns", None)  # Python >= 3.12
    if setns_fn is not None:
        setns_fn(fd, _CLONE_NEWNET)
        return
    with _lock:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def open_current() -> int:
    """An fd (close-on-exec) referring to the calling thread's network namespace."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def current_inode() -> int:
    """The inode of the calling thread's network namespace (equal inodes: same namespace)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def netns_path(name_or_path: str) -> str:
    """``/run/netns/NAME`` for a name made by ``ip netns add``; a path is kept as it is."""
    return name_or_path if "/" in name_or_path else f"/run/netns/{name_or_path}"


@contextlib.contextmanager
def entered(target: int | str | None) -> Iterator[None]:
    """Run the body in the namespace ``target`` (an open fd or a path); ``None``: stay."""
    if target is None:
        yield
        return
    own = open_current()
    try:
        fd = target if isinstance(target, int) else os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_ino == os.fstat(own).st_ino:
                yield
                return
            setns(fd)
            try:
                yield
            finally:
                setns(own)
        finally:
            if not isinstance(target, int):
                os.close(fd)
    finally:
        os.close(own)
