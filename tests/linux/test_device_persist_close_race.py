"""persist() / owner() / group() hold the queue fd for their ioctl, as every I/O call does: a
close() from another thread between the call reading the fd and using it must not release
the number (the OS may give it to another file — another device's queue — meanwhile)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import tun_info
from tunflow import ClosedDeviceError, DeviceBuilder, SyncDevice, testing

pytestmark = pytest.mark.needs_root


def _close_during(dev: SyncDevice, method: str) -> list[bool]:
    """Make the interface's ``method`` close ``dev`` from another thread first, then run; what
    it found of the fd it was given (open or not)."""
    iface: Any = dev._shared.interface
    real: Callable[..., None] = getattr(iface, method)
    fd_open: list[bool] = []

    def racing(fd: int, value: Any) -> None:
        closer = threading.Thread(target=dev.close)
        closer.start()
        closer.join(5)
        try:
            os.fstat(fd)
            fd_open.append(True)
        except OSError:
            fd_open.append(False)
        real(fd, value)

    setattr(iface, method, racing)
    return fd_open


@pytest.mark.parametrize(
    ("method", "call"),
    [
        ("set_persist", lambda dev: dev.persist()),
        ("set_owner", lambda dev: dev.owner(1234)),
        ("set_group", lambda dev: dev.group(1234)),
    ],
)
def test_a_close_meanwhile_does_not_release_the_fd_under_the_ioctl(
    netns: testing.Netns, method: str, call: Callable[[SyncDevice], None]
) -> None:
    name = testing.unique_name("pr")
    dev = DeviceBuilder().name(name).build_sync()
    fd_open = _close_during(dev, method)
    try:
        call(dev)  # done on the fd it held, before the close let it go
    except ClosedDeviceError:
        pass
    assert fd_open == [True]
    if method == "set_persist":
        assert tun_info(netns, name)["persist"] is True
        netns.run("ip", "link", "del", name)
