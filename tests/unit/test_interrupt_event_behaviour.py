"""``InterruptEvent``'s waker against the event: triggered exactly when the pipe wakes a blocked
poll, whenever the pipe was made, and released by close (see test_interrupt_event.py)."""

from __future__ import annotations

import pytest

from tests.unit.test_interrupt_event import pipe_says, reset_with_a_trigger_inside
from tunflow import InterruptEvent


def test_a_pipe_made_after_the_trigger_wakes_at_once() -> None:
    # a trigger landing between a call's check and its first wait finds no pipe yet: the pipe
    # made then must be awake, or the call sleeps through the trigger
    with InterruptEvent() as event:
        event.trigger(5)
        event._waker_for(object())
        assert pipe_says(event)


def test_a_reset_of_an_untriggered_event_leaves_a_later_trigger_waking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a signal handler's trigger while an untriggered event is reset: whatever reset does, a
    # trigger after it must wake a blocked poll
    with InterruptEvent() as event:
        event._waker_for(object())
        reset_with_a_trigger_inside(event, monkeypatch)
        assert event.is_triggered == pipe_says(event)
        event.trigger()
        assert event.is_triggered and pipe_says(event)


def test_close_releases_the_pipe_and_makes_no_new_one() -> None:
    event = InterruptEvent()
    waker = event._waker_for(object())
    assert waker.fileno() >= 0
    event.close()
    assert waker.fileno() == -1  # the pipe is closed
    # a call that checked the event just before the close: no new pipe, a ValueError
    with pytest.raises(ValueError, match="closed"):
        event._waker_for(object())
    assert event._waker is None
