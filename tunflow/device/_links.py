"""Link events: the device going up or down, its MTU changing, its deletion (wireguard-go's
``tun.Device.Events()``; tun-rs has none). Linux only: the kernel's ``RTNLGRP_LINK``."""

from __future__ import annotations

import collections
import logging
import select
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio
import attrs

from ..errors import ClosedDeviceError, DeviceNotFoundError, UnsupportedError

if TYPE_CHECKING:
    from typing import Self

    from ._interrupt import InterruptEvent

__all__ = ["LinkEvent", "LinkEvents", "AsyncLinkEvents"]

_log = logging.getLogger("tunflow.device")

_IFF_UP = 0x1
_IFF_RUNNING = 0x40


@attrs.frozen
class LinkEvent:
    """What happened to the device's link.

    Attributes:
        kind: ``"up"`` (up and running: packets flow), ``"down"``, ``"mtu"`` (the MTU changed,
            to :attr:`mtu`) or ``"removed"`` (the interface was deleted, or moved to another network
            namespace, where the device's configuration calls no longer find it; the last
            event).
        mtu: the MTU when it happened.
    """

    kind: Literal["up", "down", "mtu", "removed"]
    mtu: int


class _Tracker:
    """Turns the kernel's link notifications into :class:`LinkEvent`\\ s: the state when the
    watch began first, then each change of up/down or MTU, then the removal."""

    def __init__(self, watch: Any, iface: Any) -> None:
        self.watch = watch
        self._iface = iface
        self.pending: collections.deque[LinkEvent] = collections.deque()
        self.ended = False
        #: notifications were dropped: the state is to be asked afresh (:meth:`ask`)
        self.stale = False
        # the state as the watch began (its socket already open, so no change is missed)
        try:
            running, mtu = iface.is_running(), iface.mtu()
        except BaseException:
            watch.close()
            raise
        self._running, self._mtu = running, mtu
        self.pending.append(LinkEvent("up" if running else "down", mtu))

    def absorb(self) -> None:
        """Read what the kernel sent and queue the events it means; after dropped notifications,
        ask the kernel afresh (:meth:`ask`: blocking netlink calls)."""
        self.read()
        if self.stale and not self.ended:
            self.settle(self.ask())

    def read(self) -> None:
        """Read what the kernel sent and queue the events it means. Notifications dropped (not
        read in time) set :attr:`stale`: :meth:`settle` with what :meth:`ask` answers."""
        if self.ended:
            return
        changes = self.watch.changes()
        if any(link is None for link in changes):
            # notifications were dropped: those read with the report (the kernel gives it
            # before what it had queued) are older than the dropped ones, so they would take
            # the state back — ask afresh instead
            self.stale = True
            changes = []
        for link in changes:
            self._note(link.flags & (_IFF_UP | _IFF_RUNNING) == _IFF_UP | _IFF_RUNNING, link.mtu)
        if self.watch.removed:
            self._end()

    def ask(self) -> tuple[bool, int] | Literal["gone", "closed"] | None:
        """The link's state asked from the kernel (blocking netlink calls): whether it is up and
        running, and its MTU; ``"gone"``: the interface is; ``"closed"``: the device is;
        ``None``: the kernel refused otherwise (logged)."""
        try:
            return self._iface.is_running(), self._iface.mtu()
        except DeviceNotFoundError:
            return "gone"
        except ClosedDeviceError:
            return "closed"
        except OSError as exc:
            _log.warning(
                "link events: the state after notifications the kernel dropped could not be "
                "asked (%s): a change may be missing until the next one",
                exc,
            )
            return None

    def settle(self, asked: tuple[bool, int] | Literal["gone", "closed"] | None) -> None:
        """Queue what :meth:`ask` answered, after dropped notifications."""
        self.stale = False
        if self.ended:
            return
        if asked == "gone":
            # deleted: its RTM_DELLINK may have been among the dropped, and nothing more will
            # come for the interface
            self._end()
        elif asked == "closed":
            self.ended = True
        elif asked is not None:
            self._note(*asked)

    def _note(self, running: bool, mtu: int) -> None:
        if running != self._running:
            self._running = running
            self.pending.append(LinkEvent("up" if running else "down", mtu))
        if mtu != self._mtu:
            self._mtu = mtu
            self.pending.append(LinkEvent("mtu", mtu))

    def _end(self) -> None:
        self.pending.append(LinkEvent("removed", self._mtu))
        self.ended = True

    def close(self) -> None:
        self.ended = True
        self.watch.close()


class LinkEvents:
    """The link events of a :class:`~tunflow.SyncDevice`, as a blocking iterator (from
    :meth:`~tunflow.SyncDevice.link_events`).

    The first event is the state when the watch began (``"up"`` or ``"down"``); the iteration
    ends after ``"removed"``, when the device is shut down, or on :meth:`close` (from any
    thread: it wakes the one waiting). ``with`` (or :meth:`close`) releases the netlink socket.
    """

    def __init__(
        self,
        tracker: _Tracker,
        device: Any,
        timeout: float | None,
        interrupt: InterruptEvent | None,
    ) -> None:
        from ..platform import _unix

        # close() from another thread wakes the one iterating: a poll sleeps on through the
        # close of its socket (the kernel holds the file while it waits)
        try:
            closer = _unix.PipeWaker()
        except BaseException:
            tracker.close()  # (out of fds: the watch's socket goes too)
            raise
        self._closer = closer
        self._tracker = tracker
        self._device = device
        self._timeout = timeout
        self._interrupt = interrupt

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> LinkEvent:
        """The next event, waiting for it.

        Raises:
            StopIteration: after ``"removed"``, or the device was shut down.
            TimeoutError: nothing happened within the ``timeout`` given.
            InterruptedCallError: the ``interrupt`` given was triggered.
        """
        from ..platform._unix import poll_wait

        tracker = self._tracker
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while not tracker.pending:
            if tracker.ended or self._device._shutdown:
                raise StopIteration
            if self._interrupt is not None:
                self._interrupt._check()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            # (a pipe: link events are Linux only)
            intr: Any = None
            if self._interrupt is not None:
                intr = self._interrupt._waker_for(self._device._queue)
            # (held: a close() from another thread leaves the socket open until this lets go)
            fd = tracker.watch.acquire()
            if fd < 0:
                raise StopIteration  # closed
            try:
                ready = poll_wait(
                    fd, select.POLLIN, remaining, self._device._waker, None, intr, self._closer
                )
                if ready:
                    try:
                        tracker.absorb()
                    except OSError:
                        if tracker.ended:  # closed meanwhile, from another thread
                            raise StopIteration from None
                        raise
            finally:
                tracker.watch.release()
            # (past the deadline with nothing of this link's: also when the socket was ready
            # with notifications about other links, which may keep coming faster than this loop)
            if not tracker.pending and deadline is not None and time.monotonic() >= deadline:
                if self._device._shutdown:
                    raise StopIteration
                if self._interrupt is not None:
                    self._interrupt._check()
                raise TimeoutError("no link event within the timeout")
        return tracker.pending.popleft()

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
        if getattr(self, "_closer", None) is not None:
            self.close()

    def close(self) -> None:
        """Stop watching (the iteration ends, in another thread too). Idempotent."""
        self._tracker.ended = True
        self._closer.wake()
        self._tracker.close()
        self._closer.close()


class AsyncLinkEvents:
    """The link events of an :class:`~tunflow.AsyncDevice`, as an async iterator (from
    :meth:`~tunflow.AsyncDevice.link_events`).

    The first event is the state when the watch began (``"up"`` or ``"down"``); the iteration
    ends after ``"removed"``, when the device is closed, or on :meth:`aclose` (each wakes a task
    waiting for an event). Cancel the task to stop waiting; ``async with`` (or :meth:`aclose`,
    or closing the device) releases the netlink socket. One task iterates at a time: a second
    waiting at once gets :exc:`anyio.BusyResourceError` (open a second watch for a second
    task).
    """

    def __init__(self, tracker: _Tracker) -> None:
        self._tracker = tracker
        self._asking = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> LinkEvent:
        tracker = self._tracker
        await anyio.lowlevel.checkpoint()
        while not tracker.pending:
            if tracker.stale and not tracker.ended:
                # (in a worker thread, as the device's configuration calls: the kernel's rtnl
                # lock, or another thread's call on the device's netlink socket, may stall it)
                if self._asking:
                    raise anyio.BusyResourceError("reading link events")
                self._asking = True
                try:
                    tracker.settle(await anyio.to_thread.run_sync(tracker.ask))
                finally:
                    self._asking = False
                continue
            fd = tracker.watch.fileno()
            if tracker.ended or fd < 0:
                raise StopAsyncIteration
            try:
                await anyio.wait_readable(fd)
            except anyio.ClosedResourceError:
                raise StopAsyncIteration from None
            tracker.read()
        return tracker.pending.popleft()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop watching (the iteration ends). Idempotent."""
        self._close()

    def _close(self) -> None:
        """:meth:`aclose`, called in the event loop's thread (also as the device closes)."""
        tracker = self._tracker
        fd = tracker.watch.fileno()
        if fd >= 0 and not tracker.ended:
            anyio.notify_closing(fd)
        tracker.close()


def open_tracker(iface: Any) -> _Tracker:
    """Start watching ``iface``'s link.

    Raises:
        UnsupportedError: not on this platform (Linux only).
    """
    link_watch = getattr(iface, "link_watch", None)
    if link_watch is None:
        raise UnsupportedError("link events are Linux only (the kernel's netlink)")
    return _Tracker(link_watch(), iface)
