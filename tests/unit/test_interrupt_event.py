"""``InterruptEvent`` against a signal handler that triggers it in the middle of ``reset()`` (its
documented use): the event and its waker must agree afterwards, or a call blocked on the event
sleeps through the trigger (on the kernel in tests/linux/test_device_sync.py)."""

from __future__ import annotations

import os
import select
from typing import Any

import pytest

from tunflow import InterruptEvent
from tunflow.platform import _unix


def pipe_says(event: InterruptEvent) -> bool:
    waker: Any = event._waker
    return bool(select.select([waker.fileno()], [], [], 0)[0])


def reset_with_a_trigger_inside(event: InterruptEvent, monkeypatch: pytest.MonkeyPatch) -> None:
    """``event.reset()`` with a trigger (value 7) arriving as reset reads the pipe, as a signal
    handler's would."""
    real_read = os.read
    fired: list[bool] = []

    def read(fd: int, n: int) -> bytes:
        if not fired:  # a signal arrives while reset() drains the pipe
            fired.append(True)
            event.trigger(7)
        return real_read(fd, n)

    monkeypatch.setattr(_unix.os, "read", read)
    event.reset()
    monkeypatch.undo()


@pytest.mark.parametrize("triggered", [True, False])
def test_a_trigger_inside_reset_leaves_event_and_waker_agreeing(
    monkeypatch: pytest.MonkeyPatch, triggered: bool
) -> None:
    with InterruptEvent() as event:
        event._waker_for(object())  # (the pipe a wait makes)
        if triggered:
            event.trigger()
        reset_with_a_trigger_inside(event, monkeypatch)
        # triggered <=> the pipe wakes a blocked poll: neither a sleeper nor a spinner
        assert event.is_triggered == pipe_says(event)
        event.reset()
        assert not event.is_triggered and not pipe_says(event)
        event.trigger()
        assert event.is_triggered and pipe_says(event)


def test_a_trigger_value_is_a_nonzero_int() -> None:
    # None or "" would have read as triggered (is_triggered) yet let every call through
    with InterruptEvent() as event:
        for bad in (None, "", "1", 1.5, True):
            with pytest.raises(TypeError, match="int"):
                event.trigger(bad)  # type: ignore[arg-type]
        assert not event.is_triggered
        with pytest.raises(ValueError, match="not be 0"):
            event.trigger(0)
        event.trigger(-3)
        assert event.value == -3
