"""Link events' documented meaning of "up", and the blocking iterator's end when a shutdown or
an interrupt comes as its timeout runs out (scripted watch and device; the kernel in
tests/linux/test_device_sync.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.test_link_events import UP_RUNNING, Iface, Link, Watch
from tunflow import InterruptedCallError, InterruptEvent, LinkEvent
from tunflow.device._links import LinkEvents, open_tracker


def test_up_means_up_and_running() -> None:
    # "up (up and running: packets flow)": admin-up without carrier, or RUNNING while
    # admin-down, is "down"
    iface = Iface()
    tracker = open_tracker(iface)
    tracker.pending.clear()
    iface.watch.script = [[Link(0x1, 1500)], [Link(UP_RUNNING, 1500)], [Link(0x40, 1500)]]
    tracker.absorb()
    assert list(tracker.pending) == [LinkEvent("down", 1500)]
    tracker.absorb()
    tracker.absorb()
    assert list(tracker.pending) == [
        LinkEvent("down", 1500),
        LinkEvent("up", 1500),
        LinkEvent("down", 1500),
    ]


class HeldWatch(Watch):
    """A watch with a quiet socket to poll; ``during`` runs as a wait takes it."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.during: Any = None

    def acquire(self) -> int:
        if self.during is not None:
            self.during()
        return self.fd

    def release(self) -> None:
        pass


class Device:
    _shutdown = False
    _waker = None
    _queue = None


@pytest.fixture
def quiet() -> Iterator[socket.socket]:
    a, b = socket.socketpair()
    yield b
    a.close()
    b.close()


def _events(
    quiet: socket.socket, interrupt: InterruptEvent | None
) -> tuple[LinkEvents, HeldWatch, Device]:
    iface = Iface()
    watch = iface.watch = HeldWatch(quiet.fileno())
    tracker = open_tracker(iface)
    tracker.pending.clear()
    device = Device()
    return LinkEvents(tracker, device, 0, interrupt), watch, device


def test_a_shutdown_during_the_last_wait_ends_the_iteration(quiet: socket.socket) -> None:
    # "StopIteration: ... the device was shut down", even as the timeout ran out
    events, watch, device = _events(quiet, None)
    with events:
        watch.during = lambda: setattr(device, "_shutdown", True)
        with pytest.raises(StopIteration):
            next(events)


def test_an_interrupt_during_the_last_wait_is_the_interrupt(quiet: socket.socket) -> None:
    # "InterruptedCallError: the interrupt given was triggered", not the timeout it came with
    with InterruptEvent() as stop:
        events, watch, _ = _events(quiet, stop)
        with events:
            watch.during = stop.trigger
            with pytest.raises(InterruptedCallError):
                next(events)
