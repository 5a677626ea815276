"""tunflow.testing as a user's own test suite meets it: worker threads, failures, leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

from tests.helpers import reap, sigterm_ignoring
from tunflow import testing

pytestmark = pytest.mark.needs_root


def _ns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


@pytest.mark.parametrize("options", [{}, {"use_uvloop": True}], ids=["asyncio", "uvloop"])
def test_an_anyio_worker_started_inside_on_asyncio_does_not_keep_the_namespace(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]
) -> None:
    # anyio keeps an idle worker thread for later to_thread calls; started inside, it stayed
    # there, and leaving the namespace raised "threads still in the deleted namespace"
    monkeypatch.setattr(testing, "STOP_GRACE", 1.0)
    host = _ns_inode()

    async def main() -> tuple[str, int, int]:
        with testing.netns() as ns:
            inside = await anyio.to_thread.run_sync(_ns_inode)
        return ns.name, inside, await anyio.to_thread.run_sync(_ns_inode)

    name, inside, after = anyio.run(main, backend="asyncio", backend_options=options)
    assert inside != host
    assert after == host
    assert name not in testing.leftover_namespaces()


def test_an_interrupt_while_waiting_for_processes_kills_those_still_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C (or a pytest timeout) during the SIGTERM grace left a process that ignores
    # SIGTERM running - and with it the deleted namespace
    monkeypatch.setattr(testing, "STOP_GRACE", 30.0)
    procs: list[subprocess.Popen[bytes]] = []
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    try:
        with pytest.raises(KeyboardInterrupt), testing.netns(enter=False) as ns:
            name = ns.name
            stubborn = sigterm_ignoring(ns)
            procs.append(stubborn)
            timer.start()
        assert stubborn.poll() == -signal.SIGKILL
        assert name not in testing.leftover_namespaces()
    finally:
        timer.cancel()
        reap(procs)
