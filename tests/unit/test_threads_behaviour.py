"""``in_daemon_thread``: the call's result or exception, and a cancelled wait given up at once."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from tunflow._threads import in_daemon_thread

pytestmark = pytest.mark.anyio


async def test_the_result_and_the_exception_of_the_call() -> None:
    with anyio.fail_after(10):
        assert await in_daemon_thread(lambda: threading.current_thread().daemon) is True

        def fail() -> None:
            raise LookupError("no such peer")

        with pytest.raises(LookupError, match="no such peer"):
            await in_daemon_thread(fail)


async def test_a_cancelled_wait_gives_up_on_the_call_at_once() -> None:
    release = threading.Event()
    try:
        start = time.monotonic()
        with anyio.move_on_after(0.05):
            await in_daemon_thread(lambda: release.wait(30))
        assert time.monotonic() - start < 10  # not the call's 30 s
    finally:
        release.set()
