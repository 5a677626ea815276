"""The blocking link-event iterator's timeout holds while notifications about *other* links
keep its socket readable (a host where containers make and remove veths all the time)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.unit.test_link_events import Iface
from tests.unit.test_link_events_behaviour import Device, HeldWatch
from tunflow.device._links import LinkEvents, open_tracker


@pytest.fixture
def readable() -> Iterator[socket.socket]:
    """A socket that stays readable: what is sent to it is never read."""
    a, b = socket.socketpair()
    a.send(b"x")
    yield b
    a.close()
    b.close()


def test_notifications_about_other_links_do_not_stretch_the_timeout(
    readable: socket.socket,
) -> None:
    # The wait raised TimeoutError only after a poll that found nothing to read: with
    # notifications arriving faster than the loop turns, none of them about this link, it
    # never returned. (Here the socket stays readable and every notification is another link's.)
    iface = Iface()
    iface.watch = HeldWatch(readable.fileno())
    tracker = open_tracker(iface)
    tracker.pending.clear()
    outcome: list[BaseException] = []

    def wait() -> None:
        with LinkEvents(tracker, Device(), 0.2, None) as events:
            try:
                next(events)
            except BaseException as exc:  # (recorded for the main thread)
                outcome.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(30)
    assert not waiter.is_alive(), "a 0.2 s timeout still waiting after 30 s"
    assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError), outcome
