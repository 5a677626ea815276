"""A timer task's wait between a WireGuard protocol object's deadlines."""

from __future__ import annotations

import anyio

__all__ = ["DeadlineWait"]


class DeadlineWait:
    """What a timer task sleeps on between deadlines: :meth:`sleep` until the next one, cut
    short by :meth:`wake` — the protocol's :meth:`~tunflow.wireguard.WireGuard.on_earlier_timer`
    hook, called when a deadline is set before every other. Used in the event loop's thread."""

    __slots__ = ("_moved",)

    def __init__(self) -> None:
        self._moved: anyio.Event | None = None

    def wake(self) -> None:
        """Have the task read the next deadline again."""
        if self._moved is not None:
            self._moved.set()

    async def sleep(self, deadline: float | None, now: float, longest: float | None = None) -> None:
        """Sleep until ``deadline`` (``None``: none; at most ``longest`` seconds, when given), or
        until :meth:`wake`. ``deadline`` was read after any wake-up already taken: a wake-up
        before this call is not waited for again."""
        moved = self._moved
        if moved is None or moved.is_set():
            moved = self._moved = anyio.Event()
        wait = None if deadline is None else deadline - now
        if longest is not None:
            wait = longest if wait is None else min(wait, longest)
        with anyio.move_on_after(None if wait is None else max(wait, 1e-3)):
            await moved.wait()
