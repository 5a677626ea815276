"""The blocking link-event iterator's timeout: "TimeoutError: nothing happened within the
timeout" — an event that did happen within it is returned, even with the timeout at zero
(scripted watch and device, as in test_link_events_behaviour.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.test_link_events import Iface, Link
from tests.unit.test_link_events_behaviour import Device, HeldWatch
from tunflow import LinkEvent
from tunflow.device._links import LinkEvents, open_tracker


class ReadWatch(HeldWatch):
    """A watch whose changes are read off its socket, as the kernel's are."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.fileno())
        self.sock = sock

    def changes(self) -> list[Any]:
        self.sock.recv(64)
        return super().changes()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_an_event_ready_as_a_zero_timeout_runs_out_is_returned(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    iface = Iface()
    iface.watch = ReadWatch(b)
    tracker = open_tracker(iface)
    tracker.pending.clear()
    iface.watch.script = [[Link(0x1, 1500)]]  # admin-up, no carrier: "down"
    a.send(b"x")  # the watch's socket is readable: a notification waits
    with LinkEvents(tracker, Device(), 0, None) as events:
        assert next(events) == LinkEvent("down", 1500)
        with pytest.raises(TimeoutError):
            next(events)
