"""``InterruptEvent``: a resettable interrupt for blocking ``SyncDevice`` calls (tun-rs's)."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import InterruptedCallError

if TYPE_CHECKING:
    from typing import Self

    from ..platform._base import Waker

__all__ = ["InterruptEvent"]


class InterruptEvent:
    """Interrupts the blocking :class:`~tunflow.SyncDevice` calls it is given, until reset.

    tun-rs's ``InterruptEvent`` with its ``recv_intr`` family: pass it as ``interrupt=`` to
    ``recv``, ``recv_into``, ``send``, ``recv_batch``, ``send_batch``, ``wait_readable`` or
    ``wait_writable`` (and their tun-rs-named kin). :meth:`trigger` — from any thread, a signal
    handler's thread included — wakes every such call blocked on it, on any device, and makes
    them and every later one given it raise :class:`~tunflow.InterruptedCallError` until
    :meth:`reset`. Unlike :meth:`SyncDevice.shutdown`, the device goes on working: calls without
    the event, or after the reset, read and write as before.

    Example::

        stop = InterruptEvent()
        signal.signal(signal.SIGINT, lambda *_: stop.trigger())
        try:
            while True:
                packet = dev.recv(interrupt=stop)
        except InterruptedCallError:
            stop.reset()  # Ctrl-C: the loop is over, the device is still usable

    The event needs a pipe (Unix) or an event handle (Windows) once it first waits with a
    device; :meth:`close` (or ``with``) releases it. Async code has no need of it: cancel the
    task instead.
    """

    def __init__(self) -> None:
        # (reentrant: a signal handler may trigger it in the main thread while that thread is
        # inside reset() or a wait's first use)
        self._lock = threading.RLock()
        self._value = 0
        self._waker: Waker | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"triggered={self.is_triggered}"
        return f"<InterruptEvent {state}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        waker = getattr(self, "_waker", None)
        if waker is not None:
            waker.close()

    @property
    def is_triggered(self) -> bool:
        """Whether :meth:`trigger` was called since the last :meth:`reset` (tun-rs
        ``is_trigger``)."""
        return self._value != 0

    @property
    def value(self) -> int:
        """The value the first :meth:`trigger` since the last reset gave; 0 when not triggered."""
        return self._value

    def trigger(self, value: int = 1) -> None:
        """Interrupt every call given this event, now and until :meth:`reset` (tun-rs
        ``trigger``/``trigger_value``). Idempotent: a later trigger keeps the first value.

        Raises:
            TypeError: ``value`` is not an ``int``.
            ValueError: ``value`` is 0 (that means "not triggered").
        """
        if type(value) is not int:  # (None or "" would read as triggered, yet stop nothing)
            raise TypeError(f"an InterruptEvent's value is an int, not {value!r}")
        if value == 0:
            raise ValueError("an InterruptEvent's value must not be 0")
        with self._lock:
            if self._value:
                return
            self._value = value
            if self._waker is not None:
                self._waker.wake()

    def reset(self) -> None:
        """Clear the trigger: calls given the event wait again (tun-rs ``reset``)."""
        with self._lock:
            # The waker before the value: a signal handler that triggers in between finds the
            # event still triggered and leaves it so. The other way round its trigger could
            # land between the two, and the drain eat its wake-up — triggered, with a quiet
            # waker that a blocked call sleeps on.
            if not self._value:
                return  # (nothing to drain: a trigger now wakes as usual)
            if self._waker is not None:
                self._waker.reset()
            self._value = 0

    def close(self) -> None:
        """Release the pipe or event handle. Idempotent. A call given the event afterwards,
        or waiting on it meanwhile (woken), raises :class:`ValueError`, as a closed file."""
        with self._lock:
            self._closed = True
            waker, self._waker = self._waker, None
        if waker is not None:
            waker.wake()  # (a wait on it ends: closing alone does not wake a Windows event's)
            waker.close()

    # -- for SyncDevice -----------------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise ValueError("the InterruptEvent is closed")
        if self._value:
            raise InterruptedCallError()

    def _waker_for(self, queue: Any) -> Waker:
        """The waker a queue's ``wait`` watches: made by the first queue it waits with, so it
        is of that platform's kind (a pipe, or a Windows event)."""
        with self._lock:
            if self._closed:
                raise ValueError("the InterruptEvent is closed")
            if self._waker is None:
                make_waker = getattr(queue, "make_waker", None)
                if make_waker is not None:
                    self._waker = make_waker()
                else:
                    from ..platform._unix import PipeWaker

                    self._waker = PipeWaker()
                if self._value:
                    self._waker.wake()
            return self._waker
