"""Work off the event loop that a cancelled task gives up on at once."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio

__all__ = ["in_daemon_thread"]

_T = TypeVar("_T")


async def in_daemon_thread(func: Callable[[], _T], name: str = "tunflow worker") -> _T:
    """``func()`` in a daemon thread of its own, given up on when cancelled.

    For work that may take seconds and must not hold up a way down: a reload's name lookups
    (with the DNS unreachable, wg's retries take a minute and more), a ``set=1`` of tens of MiB
    parsed, thousands of peers' keys checked. ``anyio.to_thread`` would hold the cancelled task
    until the call ends — it cannot be cancelled, and even abandoned its worker thread is one
    the interpreter waits for on exit — and systemd's stop timeout would then kill the process
    before it removed its routes, rules, DNS and hooks' changes. A daemon thread is left to
    itself instead (``func`` must change nothing the caller keeps using once it has given up);
    it tells the loop it is done through a socket pair.
    """
    result: list[_T] = []
    error: list[BaseException] = []
    wake, done = socket.socketpair()

    def run() -> None:
        try:
            result.append(func())
        except BaseException as exc:  # handed to the waiting task
            error.append(exc)
        finally:
            with contextlib.suppress(OSError):  # closed: the task gave up waiting
                done.send(b"x")
            done.close()

    try:
        try:
            threading.Thread(target=run, name=name, daemon=True).start()
        except BaseException:
            done.close()  # no thread to close it
            raise
        await anyio.wait_readable(wake)
    finally:
        wake.close()
    if error:
        raise error[0]
    return result[0]
