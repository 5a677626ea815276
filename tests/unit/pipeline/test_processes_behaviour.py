"""Processes mode without real worker processes: the parent's supervisor against children
faked with socket pairs, and a worker's ``_run`` in this process over memory ports."""

from __future__ import annotations

import contextlib
import pickle
import socket
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from tests.helpers import ipv4_udp
from tests.unit.pipeline.test_engine import _EndedProcess
from tunflow import ConfigError
from tunflow.packet import PacketBatch
from tunflow.pipeline import (
    MemorySink,
    MemorySource,
    Pipeline,
    StageBase,
    StageContext,
    StageError,
    StageSpec,
    _plugins,
    _ports,
    _processes,
    _worker,
)
from tunflow.pipeline._ports import PortHandle

pytestmark = pytest.mark.anyio


class _FakeChildren:
    """Worker processes faked with socket pairs: child ``i`` has already said ``said[i]``
    (messages; ``None`` hangs up) when the supervisor starts; ``peers[i]`` is its end."""

    def __init__(self) -> None:
        self.said: list[list[Any]] = []
        self.peers: list[socket.socket] = []

    def send(self, index: int, message: Any) -> None:
        for chunk in _processes._chunks(message):
            self.peers[index].send(chunk)


@contextlib.contextmanager
def spawning(
    monkeypatch: pytest.MonkeyPatch, fake: _FakeChildren, process: Callable[[int], Any]
) -> Iterator[None]:
    """Have the supervisor's workers be ``fake``'s children (``len(fake.said)`` of them), child
    ``i``'s process ``process(i)``; their ends are closed afterwards."""

    def spawn(self: Any, index: int, handles: Any, lanes: Any) -> Any:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        theirs.settimeout(5)
        fake.peers.append(theirs)
        for message in fake.said[index]:
            if message is None:
                theirs.shutdown(socket.SHUT_WR)
            else:
                fake.send(index, message)
        return _processes._Child(index, process(index), ours, _processes._chunks(("job",)))  # type: ignore[arg-type]

    monkeypatch.setattr(
        _processes.ProcessSupervisor, "_jobs", lambda self: [([], [])] * len(fake.said)
    )
    monkeypatch.setattr(_processes.ProcessSupervisor, "_spawn", spawn)
    try:
        yield
    finally:
        for peer in fake.peers:
            peer.close()


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> Iterator[_FakeChildren]:
    fake = _FakeChildren()
    with spawning(monkeypatch, fake, lambda index: _EndedProcess()):
        yield fake


def _pipeline() -> Pipeline:
    return Pipeline(MemorySource([]), [StageSpec("stats")], MemorySink(), workers="processes")


async def test_a_message_of_a_whole_number_of_chunks_arrives() -> None:
    """A job or report whose pickle fills its last chunk exactly is still one message: its
    last datagram says no more follow (the reader would wait for a chunk never sent)."""
    size = 2 * _processes._CHUNK
    message = next(
        m for m in (b"x" * n for n in range(size - 64, size)) if len(pickle.dumps(m)) == size
    )
    assert len(pickle.dumps(message)) == size
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_processes.send_message, a, message)
                assert await _processes.receive_message(b, []) == message
                tg.start_soon(_processes.send_message, a, ("stop",))
                assert await _processes.receive_message(b, []) == ("stop",)


class _FdPort:
    """A port a worker process could reopen: a made-up fd, never read or written here."""

    def __init__(self, name: str, fd: int) -> None:
        from tunflow.device import Layer, OffloadInfo

        self.name, self.fd = name, fd
        self.layer, self.mtu, self.offload, self.can_split = Layer.L3, 1500, OffloadInfo(), True

    def new_batch(self) -> PacketBatch:
        return PacketBatch(capacity=1 << 16)

    async def recv_batch(self, batch: PacketBatch, whole: bool) -> PacketBatch:
        raise AssertionError("not run")

    async def send_batch(self, batch: PacketBatch) -> None:
        raise AssertionError("not run")

    def statistics(self) -> _ports.PortStatistics:
        return _ports.PortStatistics(self.name, "device")

    def handle(self) -> PortHandle:
        return PortHandle("device", self.fd, self.name)

    def link(self) -> None:
        return None


def _lanes(engine: Any) -> list[list[tuple[str, str, str]]]:
    """Each worker process's lanes, as (direction, source, sink) port names."""
    jobs = _processes.ProcessSupervisor(engine, [])._jobs()
    out = []
    for handles, lanes in jobs:
        names = {h.fd: h.name for h in handles}
        assert [h.fd for h in handles] == sorted(names)  # each fd once
        out.append([(d, names[a], names[b]) for d, a, b in lanes])
    return out


def test_one_worker_process_per_source_queue_each_writing_to_its_own_sink_queue() -> None:
    """ "One OS process per source queue": a tunnel of two device queues and one transport runs
    two, the second with only the outbound lane of queue 1; a pipeline of two queues into two
    runs queue i into queue i, as the tasks mode does."""
    from tunflow.pipeline import Tunnel

    q0, q1, udp = _FdPort("tfa/0", 100), _FdPort("tfa/1", 101), _FdPort("udp", 102)
    tunnel = Tunnel([q0, q1], udp, [], workers="processes")
    assert _lanes(tunnel) == [
        [("out", "tfa/0", "udp"), ("in", "udp", "tfa/0")],
        [("out", "tfa/1", "udp")],
    ]
    r0, r1 = _FdPort("tfb/0", 103), _FdPort("tfb/1", 104)
    pipeline = Pipeline([q0, q1], [], [r0, r1], workers="processes")
    assert _lanes(pipeline) == [[("out", "tfa/0", "tfb/0")], [("out", "tfa/1", "tfb/1")]]


_ENDED = ("final", ((), (), ()))


async def test_a_stage_that_stops_a_worker_process_is_a_stage_error(
    children: _FakeChildren,
) -> None:
    """``on_error="stop"`` raises :class:`StageError` naming the stage in processes mode too,
    not the :class:`WorkerError` of a worker that failed."""
    children.said.append([("error", "stage", "stages[0] (boom): RuntimeError: x", "boom"), _ENDED])
    with anyio.fail_after(5), pytest.raises(StageError, match="RuntimeError: x") as info:
        await _pipeline().run()
    assert info.value.stage == "boom"


async def test_a_worker_that_reports_its_error_and_hangs_up_fails_with_that_error(
    children: _FakeChildren,
) -> None:
    """The error a worker reported stands when it then ends without a final report: not
    replaced by "exited without reporting"."""
    children.said.append([("error", "stage", "stages[0] (boom): RuntimeError: x", "boom"), None])
    with anyio.fail_after(5), pytest.raises(StageError):
        await _pipeline().run()


async def test_a_config_error_in_a_worker_process_is_a_config_error(
    children: _FakeChildren,
) -> None:
    children.said.append([("error", "config", "stages[0] (boom): bad option", None), _ENDED])
    with anyio.fail_after(5), pytest.raises(ConfigError, match="bad option"):
        await _pipeline().run()


async def test_the_pipeline_runs_once_every_worker_process_is_ready(
    children: _FakeChildren,
) -> None:
    """One worker ready and another still starting: ``open_pipeline`` waits for the other."""
    from tunflow.pipeline import open_pipeline

    children.said.extend([[("ready",)], []])
    told = False

    async def ready_later() -> None:
        nonlocal told
        while len(children.peers) < 2:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        await anyio.sleep(0.3)
        told = True
        children.send(1, ("ready",))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ready_later)
            async with open_pipeline(
                MemorySource([]), [StageSpec("stats")], MemorySink(), workers="processes"
            ) as p:
                assert told
                assert p.statistics().running


class _Boom(StageBase):
    """Raises on every batch."""

    plugin = "boom"

    def process(self, batch: PacketBatch) -> PacketBatch:
        raise RuntimeError("boom")


class _Unstartable(StageBase):
    """Refuses to start."""

    plugin = "unstartable"

    async def start(self, context: StageContext) -> None:
        raise ConfigError("no room for this stage")


async def _run_worker(
    monkeypatch: pytest.MonkeyPatch, stages: list[StageSpec], n: int, **job: Any
) -> tuple[int, list[Any], MemorySink]:
    """A worker's ``_run`` here, its one lane from ``n`` packets in memory to a sink: its
    exit status and what it said."""
    monkeypatch.setitem(_plugins._loaded, "boom", _Boom)
    monkeypatch.setitem(_plugins._loaded, "unstartable", _Unstartable)
    packets = [ipv4_udp("10.0.0.1", "10.0.0.2", 1000, 9, bytes(32)) for _ in range(n)]
    sink = MemorySink(name="out")
    ports: dict[int, Any] = {1000: MemorySource(packets, batch_size=4, name="in"), 1001: sink}
    monkeypatch.setattr(_ports, "open_port_handle", lambda h: ports[h.fd])
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        ours.setblocking(False)
        job = {
            "index": 3,
            "name": "p",
            "handles": [PortHandle("device", 1000, "in"), PortHandle("device", 1001, "out")],
            "lanes": [("out", 1000, 1001)],
            "stages": stages,
            "on_error": "drop",
            "buffer": 0,
            "interval": 30.0,
            **job,
        }
        with anyio.fail_after(10):
            status = await _worker._run(ours, job)
        ours.shutdown(socket.SHUT_WR)
        said = []
        while (message := _processes.receive_message_blocking(theirs)) is not None:
            said.append(message)
    return status, said, sink


async def test_a_worker_stopped_by_a_stage_reports_a_stage_error_then_its_counters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    status, said, _ = await _run_worker(
        monkeypatch, [StageSpec("stats"), StageSpec("boom")], 8, on_error="stop"
    )
    assert status == 1
    kinds = [m[0] for m in said]
    assert kinds[-2:] == ["error", "final"], said
    _, what, text, stage = said[-2]
    assert (what, stage) == ("stage", "boom") and "boom" in text
    stages, _, workers = said[-1][1]
    assert [s.name for s in stages] == ["stats", "boom"] and stages[1].errors == 1
    assert [w.index for w in workers] == [3]


async def test_a_worker_whose_lanes_end_reports_its_final_counters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    status, said, sink = await _run_worker(monkeypatch, [StageSpec("stats")], 10)
    assert status == 0 and len(sink.packets) == 10
    assert said[-1][0] == "final" and not any(m[0] == "error" for m in said)
    stages, ports, _ = said[-1][1]
    assert stages[0].packets_in == 10
    assert {p.name: (p.rx_packets, p.tx_packets) for p in ports} == {"in": (10, 0), "out": (0, 10)}


async def test_a_stage_a_worker_cannot_build_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    status, said, _ = await _run_worker(monkeypatch, [StageSpec("no-such-stage")], 1)
    assert status == 2
    assert said[0][:2] == ("error", "config") and "no-such-stage" in said[0][2]


async def test_a_stage_that_refuses_to_start_in_a_worker_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stage's ``start()`` raising: the error as itself (a ConfigError), not a worker's."""
    status, said, _ = await _run_worker(monkeypatch, [StageSpec("unstartable")], 1)
    assert status == 2
    errors = [m for m in said if m[0] == "error"]
    assert errors == [("error", "config", "no room for this stage", None)], said


async def test_a_worker_that_ends_with_its_final_report_and_exits_is_no_failure(
    children: _FakeChildren,
) -> None:
    """A worker whose lanes all ended says ``final`` and exits: ``run()`` returns, it is not
    a worker that "exited without reporting"."""
    children.said.append([_ENDED, None])
    with anyio.fail_after(5):
        await _pipeline().run()
