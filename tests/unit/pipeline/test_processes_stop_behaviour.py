"""Processes mode, parent side, against children faked with socket pairs: what the parent
makes of several workers' reports, and how it stops a worker (``stop``, its final report, a
kill for one that does not exit)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest

from tests.unit.pipeline.test_processes_behaviour import _FakeChildren, spawning
from tunflow.pipeline import (
    MemorySink,
    MemorySource,
    Pipeline,
    PortStatistics,
    StageSpec,
    StageStatistics,
    WorkerStatistics,
    _processes,
    open_pipeline,
)

pytestmark = pytest.mark.anyio


class _Process:
    """A worker process's ``Popen`` that runs until it is killed (it ignores ``stop``)."""

    pid = 4343

    def __init__(self, exits: bool) -> None:
        self.exited = exits
        self.killed = False

    def poll(self) -> int | None:
        return 0 if self.exited else None

    def kill(self) -> None:
        self.killed = self.exited = True

    def wait(self) -> int:
        assert self.exited, "waited for a worker process that was never killed"
        return 0


class _Workers(_FakeChildren):
    """As :class:`_FakeChildren`, each child's process a :class:`_Process` (in ``procs``),
    exiting at once unless ``hangs`` holds its index."""

    def __init__(self) -> None:
        super().__init__()
        self.procs: list[_Process] = []
        self.hangs: set[int] = set()


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Workers]:
    fake = _Workers()

    def process(index: int) -> _Process:
        proc = _Process(exits=index not in fake.hangs)
        fake.procs.append(proc)
        return proc

    with spawning(monkeypatch, fake, process):
        yield fake


def _report(index: int, packets: int) -> tuple[Any, Any, Any]:
    """A worker's counters: ``packets`` through stage ``stats`` and out of ``memory-out``."""
    stage = StageStatistics(
        "stats", "stats", packets, 100 * packets, packets, 100 * packets, 1, 0, None,
        {"error": index}, {"udp": packets}, {"rate": 1.5},
    )  # fmt: skip
    port = PortStatistics(
        "memory-out", "memory", 1, 2, 3, packets, 100 * packets, 1, {"kernel_refused_packet": 1}
    )
    worker = WorkerStatistics(index, "out", "memory-in", "memory-out", 4000 + index, 1, packets)
    return (stage,), (port,), (worker,)


def _opened() -> AbstractAsyncContextManager[Pipeline]:
    return open_pipeline(
        MemorySource([]),
        [StageSpec("stats")],
        MemorySink(),
        workers="processes",
        statistics_interval=30,
    )


async def test_statistics_sum_the_reports_of_every_worker_process(
    workers: _Workers,
) -> None:
    """ "``statistics()`` in the parent sums them": two workers writing to one sink (many
    queues, one UDP socket) are one port record holding both workers' counters, every field
    summed, as the stage's record is; each worker keeps its own record."""
    children = workers
    children.said.extend(
        [[("stats", _report(0, 3)), ("ready",)], [("stats", _report(1, 5)), ("ready",)]]
    )
    with anyio.fail_after(5):
        async with _opened() as p:
            s = p.statistics()
    port = s.port("memory-out")
    assert (port.rx_packets, port.rx_bytes, port.rx_batches) == (2, 4, 6)
    assert (port.tx_packets, port.tx_bytes, port.tx_batches) == (8, 800, 2)
    assert port.drops == {"kernel_refused_packet": 2}
    stage = s.stage("stats")
    assert (stage.packets_in, stage.bytes_out, stage.batches) == (8, 800, 2)
    assert stage.counters == {"udp": 8} and stage.drops == {"error": 1}
    assert stage.gauges == {"rate": 3.0}
    assert sorted((w.index, w.packets_in) for w in s.workers) == [(0, 3), (1, 5)]


async def test_a_stopped_worker_is_told_stop_and_its_final_report_counts(
    workers: _Workers,
) -> None:
    """Leaving the block sends a running worker ``stop``; the counters of the final report it
    answers with are what ``statistics()`` says afterwards (the packets it moved since its
    last periodic report are not lost)."""
    children = workers
    children.said.append([("stats", _report(0, 3)), ("ready",)])
    heard: list[Any] = []

    def worker() -> None:
        for _ in range(2):
            heard.append(_processes.receive_message_blocking(children.peers[0]))
        children.send(0, ("final", _report(0, 7)))
        children.peers[0].shutdown(socket.SHUT_WR)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, _opened() as p:
            assert p.statistics().stage("stats").packets_in == 3
            tg.start_soon(anyio.to_thread.run_sync, worker)
    assert heard == [("job",), ("stop",)]
    s = p.statistics()
    assert s.stage("stats").packets_in == 7
    assert s.port("memory-out").tx_packets == 7
    assert [w.packets_in for w in s.workers] == [7]


async def test_a_worker_that_does_not_stop_is_killed(
    workers: _Workers,
) -> None:
    """ "Worker processes are told to stop, get 0.6 s, and are killed and reaped otherwise":
    one that neither answers nor exits is killed, and the pipeline stops within a second."""
    children = workers
    children.hangs.add(0)
    children.said.append([("ready",)])
    with anyio.fail_after(5):
        async with _opened():
            pass
    assert children.procs[0].killed


async def test_a_worker_whose_lanes_end_leaves_its_final_counters(
    workers: _Workers,
) -> None:
    """A worker whose lanes all ended says ``final`` and exits: after ``run()`` returns,
    ``statistics()`` holds that report, not the periodic one before it."""
    children = workers
    children.said.append([("stats", _report(0, 3)), ("ready",), ("final", _report(0, 9))])
    with anyio.fail_after(5):
        p = Pipeline(MemorySource([]), [StageSpec("stats")], MemorySink(), workers="processes")
        await p.run()
    s = p.statistics()
    assert s.stage("stats").packets_in == 9
    assert [w.packets_in for w in s.workers] == [9]
