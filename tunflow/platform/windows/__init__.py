"""The Windows backend: TUN through Wintun, TAP through tap-windows6, configuration through the
IP Helper API.

Nothing here runs at import time that needs Windows: the DLLs are loaded (through the
:class:`~tunflow.platform._syscalls.Syscalls` seam) when a device is opened, so the unit tests
drive this code on Linux with fake DLLs.

Windows handles are not pollable fds, so the queues have ``fileno() == -1``: the sync face
blocks in ``queue.wait`` (``WaitForMultipleObjects``) in the calling thread, and the async face
runs that wait in an anyio worker thread which ``aclose()`` or a cancellation frees by firing
the waker (ecosystem notes §15).
"""

from __future__ import annotations

from typing import Any

from ...errors import UnsupportedError
from ...netconfig.device import DeviceConfig, Layer
from .._syscalls import Syscalls, current_syscalls
from .interface import WindowsInterface, reject_unsupported

__all__ = ["open_device", "adopt_fd"]


def open_device(
    config: DeviceConfig, *, syscalls: Syscalls | None = None
) -> tuple[WindowsInterface, Any]:
    """Create (or reuse) a Wintun adapter (TUN) or open a tap-windows6 adapter (TAP).

    Raises:
        ConfigError: a bad ring capacity, or a TAP without the adapter's name.
        UnsupportedError: an option Windows does not have.
        DeviceNotFoundError: wintun.dll missing (the message names the paths tried), or no
            such tap-windows6 adapter.
        DevicePermissionError: not Administrator.
        DeviceError: any other refusal, with the Win32 error code.
    """
    reject_unsupported(config)
    sys_ = syscalls or current_syscalls()
    if config.layer is Layer.L2:
        from .tap import open_tap

        return open_tap(config, sys_)
    from .wintun import open_wintun

    return open_wintun(config, sys_)


def adopt_fd(
    fd: int, *, close_fd: bool, packet_information: bool = False, layer: Layer = Layer.L3
) -> tuple[None, None]:
    """Always raises: Windows devices are handles, not fds.

    Raises:
        UnsupportedError: use :class:`~tunflow.DeviceBuilder` instead.
    """
    raise UnsupportedError(
        "Windows has no TUN file descriptors to adopt: build the device with DeviceBuilder "
        "(Wintun for TUN, an existing tap-windows6 adapter for TAP)"
    )
