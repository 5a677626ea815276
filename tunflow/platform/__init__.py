"""One backend per operating system: the only code that opens devices and makes device syscalls.

:func:`current` imports the running OS's backend lazily, so ``import tunflow`` never loads
another platform's code. Each backend module provides:

* ``open_device(config: DeviceConfig) -> tuple[Interface, Queue]``
* ``adopt_fd(fd: int, *, close_fd: bool, layer: Layer, **framing) -> tuple[Interface | None, Queue]``

(see :mod:`tunflow.platform._base` for :class:`Interface` and :class:`Queue`).
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from ..errors import PlatformNotSupportedError

__all__ = ["current", "current_name", "for_fd", "platform_name", "BACKENDS"]

#: platform name -> module implementing it
BACKENDS: dict[str, str] = {
    "linux": "tunflow.platform.linux",
    "darwin": "tunflow.platform.darwin",
    "freebsd": "tunflow.platform.freebsd",
    "openbsd": "tunflow.platform.openbsd",
    "netbsd": "tunflow.platform.netbsd",
    "windows": "tunflow.platform.windows",
    "android": "tunflow.platform.fd",
    "ios": "tunflow.platform.fd",
}

_override: str | None = None


def platform_name(sys_platform: str | None = None) -> str:
    """tunflow's name for ``sys_platform`` (default: the running one).

    ``linux*`` is ``linux`` (``android`` when Python runs on Android, which reports ``linux``
    before 3.13), ``darwin`` is macOS, ``ios`` is iOS/iPadOS (Python ≥ 3.13) and tvOS, ``freebsd14``
    and friends drop their version, ``win32`` and ``cygwin`` are ``windows``; anything else is
    returned unchanged (and has no backend).
    """
    p = sys.platform if sys_platform is None else sys_platform
    if p.startswith("linux"):
        if sys_platform is None and hasattr(sys, "getandroidapilevel"):
            return "android"
        return "linux"
    for prefix, name in (
        ("android", "android"),
        ("darwin", "darwin"),
        ("ios", "ios"),
        ("tvos", "ios"),
        ("freebsd", "freebsd"),
        ("openbsd", "openbsd"),
        ("netbsd", "netbsd"),
        ("win32", "windows"),
        ("cygwin", "windows"),
    ):
        if p.startswith(prefix):
            return name
    return p


def current_name() -> str:
    """The platform the backends act for: :func:`platform_name` of the running OS, or the one
    :func:`~tunflow.platform.fake.pretend_platform` names inside its block.

    Code outside :mod:`tunflow.platform` that must choose between a platform's ways (how routes
    are added, say) asks this rather than :data:`sys.platform`, so that the fake system-call
    layer reaches the same branch a real run on that platform takes.
    """
    return _override or platform_name()


def for_fd() -> ModuleType:
    """The backend that adopts fds: this OS's, or on any other Unix the generic fd backend
    (no configuration, no header).

    Raises:
        PlatformNotSupportedError: not a Unix and no backend.
    """
    try:
        return current()
    except PlatformNotSupportedError:
        if os.name != "posix":
            raise
        return importlib.import_module("tunflow.platform.fd")


def current() -> ModuleType:
    """The backend module for this OS.

    Raises:
        PlatformNotSupportedError: tunflow has no backend for it (the message says which
            platforms it has and that ``from_fd`` still works on any Unix).
    """
    name = current_name()
    module = BACKENDS.get(name)
    if module is None:
        raise PlatformNotSupportedError(
            f"tunflow has no device backend for {name!r} (it has: {', '.join(sorted(BACKENDS))}); "
            "on another Unix, adopt an fd you opened yourself with SyncDevice.from_fd()"
        )
    return importlib.import_module(module)
