"""Waiting for one fd to become readable, with the fd registered once, not once per wait.

``anyio.wait_readable`` on asyncio and uvloop registers the fd with the event loop for every
wait and removes it after (two ``epoll_ctl`` calls and the selector's bookkeeping), behind
anyio's backend dispatch. A device or socket that is waited on again and again — a packet
pipeline's read loop — pays that on every batch, and under light load on every packet: a
ping crosses four such waits. :class:`ReadWaiter` keeps the fd registered between waits:

* the loop's reader callback wakes the waiting task, if one waits;
* the callback right after a wake is ignored: the loop may have polled it before the woken
  task read the data (a level-triggered loop calls again next turn if data is still there).
  asyncio's selector loops run such a callback after the task, when it waits again; uvloop
  runs callbacks as it polls, so there one that comes while the task waits again is new — and
  must wake it: uvloop reports an error on the fd (``EPOLLERR``: a TUN device deleted under its
  reader) only once;
* a callback with nobody waiting (data arrived while the task was busy) unregisters the fd, so
  a level-triggered loop does not spin; the next wait registers it again — unless it is the
  one right after a wake, which is passed over: on uvloop ``ReadWaiter.armed`` is then
  ``False`` until the next wait (what was reported may have been its only report of an error,
  so read before waiting);
* uvloop (libuv) stops polling an fd that reports an error (``EPOLLERR``: a connected UDP
  socket's pending ICMP error) and closes its handle for it, after one call of the callback;
  the handle stays filed under the fd, so waits would never be woken again (and
  ``add_reader`` raises ``RuntimeError`` until ``remove_reader``). The owner calls
  :meth:`ReadWaiter.renew` when a read or write returns such an error — the registration is
  made afresh (on uvloop; a selector loop keeps polling, trio's waits start afresh). A TUN
  fd reports an error only once its device is gone, and reads fail for good — yet a wait
  after that (``readable()``) would never be woken, and ``add_writer`` on the fd raises
  ``RuntimeError``: the device renews when a read finds it gone;
* :meth:`ReadWaiter.serve` waits as :meth:`~ReadWaiter.wait` does but calls a step in the
  reader callback, and wakes the task only when the step asks: a tunnel's lane relays a
  packet at rest without its task waking (no future, no task step, no coroutine frames —
  ~0.1 ms less on a ping's round trip here; see the pipeline engine's ``_express``);
* :meth:`ReadWaiter.close` unregisters it and wakes a waiter with
  ``anyio.ClosedResourceError``. The fd must be closed only after that: pass the closing as
  ``close(then=...)`` — from another thread (a finalizer) both happen on the loop's thread, so
  the loop never unregisters a new fd that reused the number.

A round trip of two waits costs 1.4× less on asyncio and 2.4× less on uvloop than with
``anyio.wait_readable`` (``benchmarks/waits.py``); on other event loops (trio) this is
``anyio.wait_readable``.
The fd must not be waited on through another mechanism at the same time (asyncio keeps one
reader per fd).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio

if TYPE_CHECKING:
    import asyncio

__all__ = ["ReadWaiter"]

# What a port's express receive (a step of ReadWaiter.serve, see the pipeline engine) did:
#: read nothing, on purpose (busy, no room, state only the task's path handles): the task reads
DECLINED: Final = -1
#: nothing was waiting
NOTHING: Final = 0
#: one packet, with nothing left behind: the step may send it itself
LONE: Final = 1
#: packets (or one, with more to hand out) that the task sends, then reads on as usual
MORE: Final = 2


class ReadWaiter:
    """Waits for ``fd`` to become readable; one task at a time.

    Example:
        >>> import socket
        >>> a, b = socket.socketpair()
        >>> async def main():
        ...     waiter = ReadWaiter(b.fileno())
        ...     a.send(b"x")
        ...     await waiter.wait()
        ...     data = b.recv(1)
        ...     waiter.close(then=b.close)
        ...     return data
        >>> anyio.run(main)
        b'x'
        >>> a.close()
    """

    __slots__ = (
        "_closed",
        "_future",
        "_loop",
        "_registered",
        "_repeats",
        "_skip",
        "_step",
        "_waiting",
        "armed",
        "fd",
    )

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._loop: asyncio.AbstractEventLoop | None = None
        self._future: asyncio.Future[None] | None = None
        self._registered = False
        self._waiting = False
        self._skip = False
        # a selector loop: reports a readable (or failed) fd on every turn, and may run a
        # callback it polled before the woken task read after that task
        self._repeats = False
        self._closed = False
        self._step: Callable[[], bool] | None = None
        #: Whether a wait now is woken by whatever the fd has already, without a read first.
        #: A wait normally follows a read that found nothing; a caller may wait *instead* of
        #: such a read (the next packet is most likely a round trip away) only while this is
        #: ``True``: nothing was reported and passed over since the last wait began (uvloop
        #: reports an error on the fd only once; a read finds it. A selector loop reports the
        #: fd on every turn while it is readable or failed, and trio's waits start afresh).
        self.armed = True

    def __repr__(self) -> str:
        return f"<ReadWaiter fd={self.fd}{' closed' if self._closed else ''}>"

    async def wait(self) -> None:
        """Wait until the fd is readable (a cancellation point, as ``anyio.wait_readable``).

        Raises:
            anyio.ClosedResourceError: :meth:`close` was called (before or during the wait).
            anyio.BusyResourceError: another task is waiting already.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        if self._waiting:
            raise anyio.BusyResourceError("waiting for readability of")
        # what was passed over has been seen by the read before this wait (see ``armed``)
        self.armed = True
        get = _get_running_loop
        try:
            loop = get() if get is not None else _running_loop()
        except RuntimeError:  # not asyncio: trio
            await anyio.wait_readable(self.fd)
            return
        if loop is not self._loop:
            self._unregister()
            self._loop = loop
            self._skip = False
            self._repeats = _selector_loop(loop)
        if not self._registered:
            loop.add_reader(self.fd, self._ready)
            self._registered = True
        future = self._future = loop.create_future()
        self._waiting = True
        try:
            await future
        finally:
            self._waiting = False
            if self._future is future:
                self._future = None

    @property
    def serves(self) -> bool:
        """Whether :meth:`serve` calls its step: the last wait ran on an asyncio loop (on
        trio, or before any wait, it would only wait)."""
        return self._loop is not None and not self._closed

    async def serve(self, step: Callable[[], bool]) -> None:
        """Wait as :meth:`wait` does, but on asyncio and uvloop call ``step()`` from the
        event loop's reader callback each time the fd is readable meanwhile, and return
        only once it returns ``False`` (an exception it raises is raised here).

        ``step`` is the work a wake would start, done without waking the task at all — no
        future set, no task step, no coroutine frames resumed: what a tunnel's lane does
        with a lone packet at rest (see the pipeline engine). It must not block and must
        read until the fd has nothing (or return ``False``: the caller reads). On trio this
        is :meth:`wait`: ``step`` is never called.
        """
        # (``None`` unless another task serves: a wait refused as busy leaves that one's step)
        previous = self._step
        self._step = step
        try:
            await self.wait()
        finally:
            self._step = previous

    def _ready(self) -> None:
        future = self._future
        if self._skip and (future is None or self._repeats):
            # polled before the woken task could read: if data is still there, the loop
            # calls again on its next turn
            self._skip = False
            if future is None and not self._repeats:
                # uvloop reports an error on the fd only once (a selector loop on every turn)
                self.armed = False
            return
        if future is not None:
            step = self._step
            if step is not None and not future.done():
                try:
                    handled = step()
                except Exception as exc:
                    self._future = None
                    self._skip = True
                    future.set_exception(exc)
                    return
                if handled:
                    # done here, the fd read until it had nothing: the task waits on
                    self._skip = False
                    return
            self._future = None
            self._skip = True
            if not future.done():
                future.set_result(None)
        else:
            # readable while nobody waits: stop the loop from calling us every turn
            self._unregister()

    def renew(self) -> None:
        """Register the fd afresh, because a read or write on it returned an error the fd
        reported (a connected UDP socket's pending ICMP error: ``ECONNREFUSED``…).

        On uvloop that report (``EPOLLERR``) was the last: libuv stops polling the fd and
        uvloop closes its handle for it, so without this no wait would be woken again. Does
        nothing where the registration lives on (selector loops) or there is none (trio,
        nothing registered, closed). A wait in progress stays (an error a send met while
        another task waits).
        """
        loop = self._loop
        if not self._registered or self._repeats or self._closed or loop is None:
            return
        self._registered = False
        # a new registration: nothing was polled before the woken task read
        self._skip = False
        if loop.is_closed():
            return
        # (uvloop: drops the dead handle, so add_reader makes a new one)
        loop.remove_reader(self.fd)
        if self._waiting:
            loop.add_reader(self.fd, self._ready)
            self._registered = True

    def _unregister(self) -> None:
        loop = self._loop
        if self._registered and loop is not None:
            self._registered = False
            if not loop.is_closed():
                loop.remove_reader(self.fd)

    def close(self, then: Callable[[], object] | None = None) -> None:
        """Unregister the fd, wake a waiting task with ``anyio.ClosedResourceError``, then
        call ``then`` (typically what closes the fd). Idempotent (``then`` runs each time).

        In the loop's thread, or while the loop runs nowhere (stopped or closed), all of it
        happens now. From another thread while the loop runs (a finalizer, another loop's), it
        is handed to the loop, so the fd is not closed — and its number not
        reused — before the loop let go of it.
        """
        self._closed = True
        future: Any = self._future
        self._future = None

        def finish() -> None:
            self._unregister()
            if future is not None and not future.done():
                future.set_exception(anyio.ClosedResourceError())
            if then is not None:
                then()

        loop = self._loop
        # (a loop running nowhere — stopped, not closed — would never run what is handed to
        # it, even when another loop runs in this thread)
        here = loop is None or loop.is_closed() or not loop.is_running()
        if not here:
            try:
                here = _running_loop() is loop
            except RuntimeError:
                pass
        if here:
            finish()
            return
        assert loop is not None
        try:
            loop.call_soon_threadsafe(finish)
        except RuntimeError:  # the loop closed meanwhile: nothing is registered any more
            self._registered = False
            if then is not None:
                then()


#: ``asyncio.get_running_loop`` once asyncio has been seen (a call less per wait)
_get_running_loop: Callable[[], asyncio.AbstractEventLoop] | None = None


def _running_loop() -> asyncio.AbstractEventLoop:
    # asyncio is imported by whoever runs an asyncio loop; importing it here would import it
    # for trio programs too (and it is not importable everywhere tunflow is)
    global _get_running_loop
    module: Any = sys.modules.get("asyncio")
    if module is None:
        raise RuntimeError("no asyncio event loop")
    _get_running_loop = module.get_running_loop
    loop: asyncio.AbstractEventLoop = module.get_running_loop()
    return loop


def _selector_loop(loop: asyncio.AbstractEventLoop) -> bool:
    module: Any = sys.modules.get("asyncio.selector_events")
    return module is not None and isinstance(loop, module.BaseSelectorEventLoop)
