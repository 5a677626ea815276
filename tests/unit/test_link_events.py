"""The link-event tracker over a scripted watch: what the kernel's notifications become (the
kernel itself in tests/linux/test_device_sync.py and test_device_async.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tunflow import (
    ClosedDeviceError,
    DeviceError,
    DeviceNotFoundError,
    LinkEvent,
    UnsupportedError,
)
from tunflow.device._links import open_tracker

UP_RUNNING = 0x1 | 0x40


class Link:
    def __init__(self, flags: int, mtu: int) -> None:
        self.flags, self.mtu = flags, mtu


class Watch:
    def __init__(self) -> None:
        self.script: list[list[Any]] = []
        self.removed = False
        self.closed = False

    def changes(self) -> list[Any]:
        return self.script.pop(0) if self.script else []

    def fileno(self) -> int:
        return -1 if self.closed else 99

    def close(self) -> None:
        self.closed = True


class Iface:
    def __init__(self) -> None:
        self.watch = Watch()
        self.running, self.mtu_now = True, 1500

    def link_watch(self) -> Watch:
        return self.watch

    def is_running(self) -> bool:
        return self.running

    def mtu(self) -> int:
        return self.mtu_now


def test_changes_become_events_once_each() -> None:
    iface = Iface()
    tracker = open_tracker(iface)
    assert list(tracker.pending) == [LinkEvent("up", 1500)]
    tracker.pending.clear()
    # repeated notifications of one state (operstate, carrier…) are one event; admin-up
    # without RUNNING (no carrier yet) is not "up"
    iface.watch.script = [
        [Link(0, 1500), Link(0, 1500), Link(0x1, 1500), Link(UP_RUNNING, 1500)],
        [Link(UP_RUNNING, 9000), Link(UP_RUNNING, 9000)],
    ]
    tracker.absorb()
    tracker.absorb()
    assert list(tracker.pending) == [
        LinkEvent("down", 1500),
        LinkEvent("up", 1500),
        LinkEvent("mtu", 9000),
    ]
    tracker.pending.clear()
    # dropped notifications (ENOBUFS): the state is asked afresh
    iface.running, iface.mtu_now = False, 1280
    iface.watch.script = [[None]]
    tracker.absorb()
    assert list(tracker.pending) == [LinkEvent("down", 1280), LinkEvent("mtu", 1280)]
    tracker.pending.clear()
    # the deletion is the last event; nothing after it
    iface.watch.removed = True
    tracker.absorb()
    assert list(tracker.pending) == [LinkEvent("removed", 1280)] and tracker.ended
    tracker.absorb()
    assert len(tracker.pending) == 1


def test_a_down_link_starts_down_and_a_failed_start_closes_the_watch() -> None:
    iface = Iface()
    iface.running = False
    assert list(open_tracker(iface).pending) == [LinkEvent("down", 1500)]

    class Gone(Iface):
        def mtu(self) -> int:
            raise OSError(19, "No such device")

    gone = Gone()
    with pytest.raises(OSError):
        open_tracker(gone)
    assert gone.watch.closed


def test_only_linux_has_link_events() -> None:
    # (the BSD, macOS and Windows interfaces have no link_watch)
    with pytest.raises(UnsupportedError, match="Linux only"):
        open_tracker(object())


def test_a_deletion_among_dropped_notifications_is_still_the_removal() -> None:
    # ENOBUFS may drop the RTM_DELLINK itself: asking afresh then finds no interface, and
    # nothing more will ever come for it — that is the removal, not a wait for ever
    iface = Iface()
    tracker = open_tracker(iface)
    tracker.pending.clear()

    def gone() -> bool:
        raise DeviceNotFoundError(19, "get flags: interface tun0 (index 7) is gone")

    iface.is_running = gone  # type: ignore[method-assign]
    iface.watch.script = [[None]]
    tracker.absorb()
    assert list(tracker.pending) == [LinkEvent("removed", 1500)] and tracker.ended


def test_notifications_read_with_a_drop_do_not_take_the_state_back() -> None:
    # the kernel reports ENOBUFS before the notifications it still had queued, which are
    # older than those it dropped: after many quick changes the state asked afresh was
    # followed by the queued ones, and the last event (the MTU a program goes by) was stale
    iface = Iface()
    tracker = open_tracker(iface)
    tracker.pending.clear()
    iface.mtu_now = 1899
    iface.watch.script = [[None, Link(UP_RUNNING, 1300), Link(UP_RUNNING, 1301)]]
    tracker.absorb()
    assert list(tracker.pending) == [LinkEvent("mtu", 1899)]
    tracker.pending.clear()
    iface.watch.script = [[Link(UP_RUNNING, 1899), Link(0, 1899)]]  # then read as they come
    tracker.absorb()
    assert list(tracker.pending) == [LinkEvent("down", 1899)]


def test_a_refused_fresh_look_after_dropped_notifications_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # asking afresh failed otherwise than "no such device": the dropped changes were skipped
    # without a word, and a link gone down meanwhile was never reported
    iface = Iface()
    tracker = open_tracker(iface)
    tracker.pending.clear()

    def refused() -> bool:
        raise DeviceError(105, "get flags on tun0: No buffer space available")

    iface.is_running = refused  # type: ignore[method-assign]
    iface.watch.script = [[None]]
    with caplog.at_level(logging.WARNING, logger="tunflow.device"):
        tracker.absorb()
    assert not tracker.pending and not tracker.ended
    assert "No buffer space" in caplog.text
    # the next notification carries the whole state again
    iface.watch.script = [[Link(0, 1500)]]
    tracker.absorb()
    assert list(tracker.pending) == [LinkEvent("down", 1500)]


def test_a_device_closed_as_the_state_is_asked_afresh_ends_the_events() -> None:
    # (closed from another thread): ClosedDeviceError escaped from the iteration, which a
    # closed device ends
    iface = Iface()
    tracker = open_tracker(iface)
    tracker.pending.clear()

    def closed() -> bool:
        raise ClosedDeviceError("get flags: the device is closed")

    iface.is_running = closed  # type: ignore[method-assign]
    iface.watch.script = [[None]]
    tracker.absorb()
    assert not tracker.pending and tracker.ended
