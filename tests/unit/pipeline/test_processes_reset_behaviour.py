"""Processes mode: a worker that ends while a message of the parent's is still unread on its
socket (a ``stop`` sent as its stage failed, or as its lanes ended). Linux then reports
``ECONNRESET`` to the parent once — before the messages the worker sent last, which are
still queued: its ``error`` and its ``final`` counters."""

from __future__ import annotations

import socket
from typing import Any

import anyio
import pytest

from tests.unit.pipeline.test_engine import _EndedProcess
from tests.unit.pipeline.test_processes_stop_behaviour import _report
from tunflow.pipeline import (
    MemorySink,
    MemorySource,
    Pipeline,
    StageError,
    StageSpec,
    _processes,
)

pytestmark = pytest.mark.anyio


def _send(sock: socket.socket, message: Any) -> None:
    for chunk in _processes._chunks(message):
        sock.send(chunk)


async def test_receive_message_reads_what_a_peer_sent_before_it_closed_on_unread_data() -> None:
    """The peer's last message and then the end of file — not ``None`` at once, which lost
    the message (the reset is reported before the data queued ahead of it)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        ours.setblocking(False)
        _send(theirs, ("final", "counters"))
        ours.send(_processes._STOP)  # never read: the peer has stopped reading
        theirs.close()
        with anyio.fail_after(5):
            assert await _processes.receive_message(ours, []) == ("final", "counters")
            assert await _processes.receive_message(ours, []) is None


@pytest.fixture
def closed_on_unread(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """Worker processes that have said their messages (``said[i]``) and closed their socket
    with a message of the parent's unread, as a worker that stopped on its own does when the
    parent's ``stop`` crossed its ``final``."""
    said: list[list[Any]] = []

    def spawn(self: Any, index: int, handles: Any, lanes: Any) -> Any:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        for message in said[index]:
            _send(theirs, message)
        ours.send(_processes._STOP)
        theirs.close()
        # (its job long sent: a send to the closed socket would take the reset first)
        return _processes._Child(index, _EndedProcess(), ours, [])  # type: ignore[arg-type]

    monkeypatch.setattr(_processes.ProcessSupervisor, "_jobs", lambda self: [([], [])] * len(said))
    monkeypatch.setattr(_processes.ProcessSupervisor, "_spawn", spawn)
    return said


async def test_a_worker_that_closed_on_unread_data_still_counts(
    closed_on_unread: list[list[Any]],
) -> None:
    """Its final report is what ``statistics()`` says, and its end is not taken for a worker
    that "exited without reporting" (a ``WorkerError``)."""
    closed_on_unread.append([("stats", _report(0, 3)), ("ready",), ("final", _report(0, 9))])
    p = Pipeline(MemorySource([]), [StageSpec("stats")], MemorySink(), workers="processes")
    with anyio.fail_after(5):
        await p.run()
    s = p.statistics()
    assert s.stage("stats").packets_in == 9
    assert [w.packets_in for w in s.workers] == [9]


async def test_a_worker_whose_stage_failed_reports_the_error_and_its_counters(
    closed_on_unread: list[list[Any]],
) -> None:
    """A stage with policy ``stop`` that raised in the worker: the pipeline raises
    ``StageError`` naming it, and ``statistics()`` keeps the worker's final counters (the
    error among them)."""
    closed_on_unread.append(
        [
            ("ready",),
            ("error", "stage", "stage 'stats' raised ValueError: boom", "stats"),
            ("final", _report(0, 9)),
        ]
    )
    p = Pipeline(MemorySource([]), [StageSpec("stats")], MemorySink(), workers="processes")
    with anyio.fail_after(5), pytest.raises(StageError, match="boom") as caught:
        await p.run()
    assert caught.value.stage == "stats"
    s = p.statistics()
    assert s.stage("stats").packets_in == 9
    assert [w.packets_in for w in s.workers] == [9]
