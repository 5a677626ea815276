"""A SyncDevice used after ``close()`` says it is closed, not that it "was shut down" (which
``shutdown()`` alone says): try_clone, recv, send and configuration alike."""

from __future__ import annotations

import pytest

from tests.helpers import ipv4_udp
from tunflow import ClosedDeviceError, DeviceBuilder, testing

pytestmark = [pytest.mark.needs_root]


def test_after_close_the_error_says_closed(netns: testing.Netns) -> None:
    dev = DeviceBuilder().ipv4("10.61.8.1", 24).multi_queue(True).build_sync()
    dev.close()
    for call in (
        dev.try_clone,
        lambda: dev.recv(timeout=0),
        lambda: dev.send(ipv4_udp("10.61.8.2", "10.61.8.1", 1, 2, b"x")),
        lambda: dev.wait_readable(timeout=0),
    ):
        with pytest.raises(ClosedDeviceError, match=r"^the device is closed"):
            call()


def test_after_shutdown_alone_it_says_shut_down(netns: testing.Netns) -> None:
    with DeviceBuilder().ipv4("10.61.9.1", 24).multi_queue(True).build_sync() as dev:
        dev.shutdown()
        with pytest.raises(ClosedDeviceError, match="shut down"):
            dev.try_clone()
        with pytest.raises(ClosedDeviceError, match="shut down"):
            dev.recv(timeout=0)
