"""The engine with in-memory ports: order, statistics, error policy, bounded buffers, tunnels."""

from __future__ import annotations

import itertools
import os
import sys
import time
from typing import Any

import anyio
import attrs
import pytest

from tests.helpers import ipv4_udp
from tunflow import ConfigError
from tunflow.device import OffloadInfo
from tunflow.packet import PacketBatch
from tunflow.pipeline import (
    Direction,
    ErrorPolicy,
    Lane,
    MemorySink,
    MemorySource,
    Pipeline,
    Processor,
    StageBase,
    StageContext,
    StageError,
    StageSpec,
    Tunnel,
    open_pipeline,
    plan_whole,
)

pytestmark = pytest.mark.anyio


def packets(n: int, size: int = 64) -> list[bytes]:
    return [
        ipv4_udp("10.0.0.1", "10.0.0.2", 1000 + i % 100, 9, i.to_bytes(4, "big") + bytes(size))
        for i in range(n)
    ]


class Recorder(StageBase):
    plugin = "recorder"

    def __init__(self, name: str = "recorder", fail_on: int | None = None) -> None:
        super().__init__(name=name)
        self.seen: list[int] = []
        self.lanes: list[Lane] = []
        self.calls = 0
        self.fail_on = fail_on

    def bind(self, lane: Lane):  # type: ignore[no-untyped-def]
        self.lanes.append(lane)
        return self.process

    def process(self, batch: PacketBatch) -> PacketBatch:
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise RuntimeError("boom")
        self.seen.append(len(batch))
        return batch


class DropOdd(StageBase):
    plugin = "dropodd"

    def process(self, batch: PacketBatch) -> PacketBatch:
        keep = [i for i in range(len(batch)) if i % 2 == 0]
        self.drop("odd", len(batch) - len(keep))
        batch.keep(keep)
        return batch


async def test_order_and_counts() -> None:
    pk = packets(300)
    sink = MemorySink()
    rec = Recorder()
    p = Pipeline(MemorySource(pk, batch_size=32), [rec, DropOdd()], sink)
    await p.run()
    expected = [q for b in range(0, 300, 32) for j, q in enumerate(pk[b : b + 32]) if j % 2 == 0]
    assert sink.packets == expected
    s = p.statistics()
    assert [st.name for st in s.stages] == ["recorder", "dropodd"]
    r, d = s.stages
    assert (r.packets_in, r.packets_out, r.batches) == (300, 300, 10)
    assert r.bytes_in == sum(map(len, pk))
    assert (d.packets_in, d.packets_out) == (300, len(expected))
    assert d.drops == {"odd": 300 - len(expected)}
    assert s.workers[0].packets_out == len(expected)
    assert s.port("memory-out").tx_packets == len(expected)
    assert not s.running


async def test_a_lane_without_stages_counts_what_it_passes() -> None:
    # (such a lane only counts: no chain is run; the counters are a chain's)
    pk = packets(100, size=40)
    for stages in ([], [Recorder()]):
        sink = MemorySink()
        p = Pipeline(MemorySource(pk, batch_size=32), stages, sink)
        await p.run()
        assert sink.packets == pk
        w = p.statistics().workers[0]
        size = sum(map(len, pk))
        assert (w.batches, w.packets_in, w.bytes_in) == (4, 100, size)
        assert (w.packets_out, w.bytes_out, w.errors) == (100, size, 0)


async def test_error_policy_drop_counts_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    sink = MemorySink()
    rec = Recorder(fail_on=2)
    p = Pipeline(MemorySource(packets(40), batch_size=10), [rec], sink)
    await p.run()
    st = p.statistics().stages[0]
    assert st.errors == 1 and "boom" in (st.last_error or "")
    assert len(sink.packets) == 30
    assert sum("boom" in r.getMessage() for r in caplog.records) == 1


async def test_the_packets_of_a_batch_a_stage_raised_on_are_its_drops() -> None:
    """``errors`` counts batches; the packets of those batches were lost uncounted — a stage's
    packets in less out matched none of its drops. They are its ``drops["error"]``, as the
    worker's and the stage's counters see them, in both policies."""
    for policy, sent in (("drop", 20), ("stop", 10)):
        sink = MemorySink()
        rec, odd = Recorder(fail_on=2), DropOdd()
        p = Pipeline(MemorySource(packets(40), batch_size=10), [odd, rec], sink, on_error=policy)
        with anyio.fail_after(5):
            if policy == "stop":
                with pytest.raises(StageError):
                    await p.run()
            else:
                await p.run()
        s = p.statistics()
        r = s.stage("recorder")
        assert r.errors == 1 and r.drops == {"error": 5}
        assert r.packets_in - r.packets_out == r.dropped
        assert s.stage("dropodd").drops == {"odd": sent}
        assert len(sink.packets) == sent - 5


async def test_error_policy_stop_raises_stage_error() -> None:
    sink = MemorySink()
    p = Pipeline(
        MemorySource(packets(40), batch_size=10), [Recorder(fail_on=2)], sink, on_error="stop"
    )
    with pytest.raises(StageError) as info:
        await p.run()
    assert info.value.stage == "recorder"
    assert len(sink.packets) == 10


class Forgetful(StageBase):
    """A stage that forgot ``return batch`` on every other batch."""

    plugin = "forgetful"
    calls = 0

    def process(self, batch: PacketBatch) -> PacketBatch:
        self.calls += 1
        return batch if self.calls % 2 else None  # type: ignore[return-value]


async def test_a_stage_returning_no_batch_fails_as_that_stage() -> None:
    sink = MemorySink()
    p = Pipeline(MemorySource(packets(40), batch_size=10), [Forgetful(), Recorder()], sink)
    await p.run()  # on_error="drop": those batches are dropped, the pipeline goes on
    forgetful, recorder = p.statistics().stages
    assert forgetful.errors == 2 and recorder.errors == 0 and len(sink.packets) == 20
    assert forgetful.last_error == (
        "TypeError: stage 'forgetful' returned NoneType, not a PacketBatch "
        "(a process() without 'return batch'?)"
    )
    p = Pipeline(MemorySource(packets(40), batch_size=10), [Forgetful()], sink, on_error="stop")
    with pytest.raises(StageError, match="'forgetful' returned NoneType") as info:
        await p.run()
    assert info.value.stage == "forgetful" and isinstance(info.value.__cause__, TypeError)


async def test_stage_on_error_overrides_pipeline_policy() -> None:
    stage = Recorder(fail_on=1)
    stage.on_error = ErrorPolicy.STOP
    with pytest.raises(StageError):
        await Pipeline(MemorySource(packets(5)), [stage], MemorySink()).run()


async def test_a_stage_policy_given_by_name_is_that_policy() -> None:
    """A stage's ``on_error = "stop"`` (as a pipeline's or a StageSpec's is given) stops the
    pipeline: compared to the enum, the string was ignored and the batch silently dropped."""
    stage = Recorder(fail_on=1)
    stage.on_error = "stop"  # type: ignore[assignment]
    with anyio.fail_after(5), pytest.raises(StageError):
        await Pipeline(MemorySource(packets(5)), [stage], MemorySink()).run()
    bad = Recorder()
    bad.on_error = "explode"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"stages\[0\] \(recorder\): on_error must be"):
        Pipeline(MemorySource(packets(5)), [bad], MemorySink())


class FailingStart(StageBase):
    plugin = "failingstart"

    async def start(self, context: StageContext) -> None:
        raise FileNotFoundError(2, "No such file or directory", "/proc/nonexistent/x.pcap")


class FailingBind(StageBase):
    plugin = "failingbind"

    def bind(self, lane: Lane) -> Processor:
        raise ValueError("cannot bind")


class FailingSink(MemorySink):
    async def send_batch(self, batch: PacketBatch) -> None:
        raise OSError(5, "the sink broke")


@pytest.mark.parametrize(
    ("where", "buffer", "error"),
    [
        ("start", 0, FileNotFoundError),
        ("bind", 0, ValueError),
        ("sink", 2, OSError),
        ("sink", 0, OSError),
    ],
)
async def test_a_failure_is_raised_as_itself_not_in_a_group(
    where: str, buffer: int, error: type[Exception]
) -> None:
    """A stage's start() or bind(), or a sink behind a buffer, raising inside the engine's task
    groups: run() and open_pipeline raise that error, not an ExceptionGroup around it."""

    def parts() -> tuple[MemorySource, list[StageBase], MemorySink]:
        stages: list[StageBase] = {"start": [FailingStart()], "bind": [FailingBind()]}.get(
            where, []
        )
        return MemorySource(packets(5)), stages, FailingSink() if where == "sink" else MemorySink()

    with anyio.fail_after(5):
        with pytest.raises(error) as info:
            await Pipeline(*parts(), buffer=buffer).run()
        assert type(info.value) is error
        with pytest.raises(error) as info:
            async with open_pipeline(*parts(), buffer=buffer):
                await anyio.sleep(5)
        assert type(info.value) is error


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()], ids=["exit", "ctrl-c"])
async def test_exit_and_ctrl_c_in_the_block_come_out_unwrapped(exc: BaseException) -> None:
    # sys.exit(3) in the block must still end the program with status 3, and Ctrl-C (trio
    # raises KeyboardInterrupt in the sleeping task) be caught by `except KeyboardInterrupt`
    with anyio.fail_after(5), pytest.raises(type(exc)) as info:
        async with open_pipeline(MemorySource(packets(5)), [], MemorySink()):
            raise exc
    assert info.value is exc


async def test_a_cancelled_pipeline_block_still_ends_quietly() -> None:
    with anyio.fail_after(5):
        with anyio.move_on_after(0.2) as scope:
            async with open_pipeline(MemorySource(packets(5)), [], MemorySink()):
                await anyio.sleep_forever()
        assert scope.cancelled_caught


def test_a_worker_reports_each_error_of_a_group() -> None:
    from tunflow.pipeline._worker import _describe

    group = ExceptionGroup(
        "in a TaskGroup", [OSError(5, "EIO"), ExceptionGroup("x", [KeyError(1)])]
    )
    assert _describe(group) == "OSError: [Errno 5] EIO; KeyError: 1"
    assert _describe(ValueError("bad")) == "ValueError: bad"


@pytest.mark.parametrize("buffer", [0, 1, 3])
async def test_bounded_buffers_stop_the_source(buffer: int) -> None:
    """A stalled sink: the source reads at most ``buffer + 2`` batches (+1 being written)."""
    src = MemorySource(packets(10_000), batch_size=8)
    sink = MemorySink(delay=3600)
    async with open_pipeline(src, [], sink, buffer=buffer) as p:
        await anyio.sleep(0.3)
        read = p.statistics().port("memory-in").rx_batches
        assert 10_000 - src.remaining == read * 8
        assert 1 <= read <= buffer + 2
        await anyio.sleep(0.2)
        assert p.statistics().port("memory-in").rx_batches == read  # still stopped


@pytest.mark.parametrize("stages", [0, 1])
async def test_batches_in_a_buffer_when_the_lane_stops_are_counted(stages: int) -> None:
    """A stalled sink, ``buffer=3``: the batches read into the buffer, never processed, were
    counted nowhere once the pipeline stopped — read by the source, in no stage's or the
    worker's counts. They are the worker's ``unprocessed`` packets."""
    src = MemorySource(packets(10_000), batch_size=8)
    async with open_pipeline(src, [Recorder()] * stages, MemorySink(delay=3600), buffer=3) as p:
        await anyio.sleep(0.3)
    s = p.statistics()
    read, w = s.port("memory-in").rx_packets, s.workers[0]
    assert w.packets_in == 8 and w.unprocessed == 4 * 8  # one processed, four in flight
    assert read == w.packets_in + w.unprocessed


@pytest.mark.parametrize("stages", [0, 1])
@pytest.mark.parametrize("buffer", [0, 3])
async def test_a_batch_the_sink_never_wrote_is_not_counted_as_written(
    stages: int, buffer: int
) -> None:
    """Two workers share a stalled sink: one is mid-write, the other waits for the sink's
    lock, when the pipeline stops. Neither batch was written, yet both were counted in the
    workers' ``packets_out`` (counted before the write)."""
    sources = [MemorySource(packets(1000), batch_size=8, name=f"q{i}") for i in range(2)]
    sink = MemorySink(delay=3600)
    async with open_pipeline(sources, [Recorder()] * stages, sink, buffer=buffer) as p:
        await anyio.sleep(0.3)
    s = p.statistics()
    assert s.port("memory-out").tx_packets == 0
    assert [(w.packets_out, w.bytes_out) for w in s.workers] == [(0, 0), (0, 0)]
    assert [w.packets_in for w in s.workers] == [8, 8]


async def test_slow_sink_paces_the_source() -> None:
    src = MemorySource(packets(2000), batch_size=10)
    sink = MemorySink(delay=0.01)
    async with open_pipeline(src, [], sink, buffer=2) as p:
        await anyio.sleep(0.5)
        s = p.statistics()
        written = s.port("memory-out").tx_batches
        assert written > 5
        assert s.port("memory-in").rx_batches <= written + 4


@pytest.mark.parametrize("interval", [-1, float("nan"), "1"])
async def test_a_bad_timer_interval_is_a_config_error_naming_the_stage(interval: object) -> None:
    """Before anything runs, the stage stopped again: it was anyio's bare ValueError or
    TypeError from the timer task, with the pipeline already running."""
    stopped: list[str] = []

    class Ticker(StageBase):
        plugin = "ticker"
        timer_interval = interval  # type: ignore[assignment]

        async def stop(self) -> None:
            stopped.append(self.name)

    sink = MemorySink()
    with anyio.fail_after(5), pytest.raises(ConfigError, match="'ticker': timer_interval must"):
        async with open_pipeline(MemorySource(packets(5)), [Ticker()], sink):
            await anyio.sleep(5)
    assert stopped == ["ticker"] and not sink.packets


async def test_a_bind_that_returns_no_processor_is_named_before_any_batch() -> None:
    """It was "'NoneType' object is not callable" from the first batch, naming no stage."""
    stopped: list[str] = []

    class Forgetful(StageBase):
        plugin = "forgetful"

        def bind(self, lane: Any) -> Any:
            self.process_for = lane  # (set up per-lane state, then forget the return)

        async def stop(self) -> None:
            stopped.append(self.name)

    sink = MemorySink()
    with anyio.fail_after(5), pytest.raises(TypeError, match="'forgetful': bind\\(\\) must"):
        async with open_pipeline(MemorySource(packets(5)), [Forgetful()], sink):
            await anyio.sleep(5)
    assert stopped == ["forgetful"] and not sink.packets


class Pacer(StageBase):
    plugin = "pacer"

    def delay(self) -> float:
        return 0.001


@pytest.mark.parametrize("buffer", [1, 3])
@pytest.mark.parametrize("pace", [False, True], ids=["plain", "paced"])
async def test_a_buffered_lane_ends_with_its_source_and_passes_on_every_batch(
    buffer: int, pace: bool
) -> None:
    """The source ends while batches are still in flight: run() returns (it raised
    BrokenResourceError, the reader having closed the free list under the processor) and every
    packet reaches the sink (a paced processor lost those still in flight)."""
    sink = MemorySink()
    stages: list[StageBase] = [Pacer()] if pace else []
    with anyio.fail_after(10):
        await Pipeline(MemorySource(packets(40), batch_size=4), stages, sink, buffer=buffer).run()
    assert len(sink.packets) == 40


async def test_tunnel_runs_the_chain_reversed_inbound() -> None:
    order: list[tuple[str, str]] = []

    class Tag(StageBase):
        plugin = "tag"

        def bind(self, lane: Lane):  # type: ignore[no-untyped-def]
            def process(batch: PacketBatch) -> PacketBatch:
                order.append((lane.direction.value, self.name))
                return batch

            return process

    class Both:
        """A port that is a source (then ends) and a sink."""

        def __init__(self, name: str, pk: list[bytes]) -> None:
            self.src = MemorySource(pk, name=name)
            self.sink = MemorySink(name=name)
            self.name, self.layer, self.mtu = name, self.src.layer, 1500
            self.offload, self.can_split = OffloadInfo(), True

        def new_batch(self) -> PacketBatch:
            return self.src.new_batch()

        async def recv_batch(self, batch: PacketBatch, whole: bool) -> PacketBatch:
            return await self.src.recv_batch(batch, whole)

        async def send_batch(self, batch: PacketBatch) -> None:
            await self.sink.send_batch(batch)

        def statistics(self):  # type: ignore[no-untyped-def]
            return attrs.evolve(self.sink.statistics(), rx_packets=self.src.statistics().rx_packets)

        def handle(self) -> None:
            return None

        def link(self) -> None:
            return None

    local, remote = Both("local", packets(3)), Both("remote", packets(2))
    t = Tunnel(local, remote, [Tag(name="a"), Tag(name="b")])
    await t.run()
    out = [n for d, n in order if d == "out"]
    inn = [n for d, n in order if d == "in"]
    assert out == ["a", "b"] and inn == ["b", "a"]
    assert len(remote.sink.packets) == 3 and len(local.sink.packets) == 2
    dirs = {w.direction for w in t.statistics().workers}
    assert dirs == {"out", "in"}


async def test_stage_specs_are_built_from_plugins() -> None:
    sink = MemorySink()
    p = Pipeline(
        MemorySource(packets(10)),
        [StageSpec("stats"), StageSpec("stats"), StageSpec("filter", {"default": "deny"})],
        sink,
    )
    await p.run()
    names = [s.name for s in p.statistics().stages]
    assert names == ["stats", "stats#2", "filter"]
    assert p.statistics().stage("filter").drops == {"default": 10}
    assert sink.packets == []


async def test_processes_mode_needs_transferable_ports() -> None:
    p = Pipeline(MemorySource(packets(1)), [StageSpec("stats")], MemorySink(), workers="processes")
    with pytest.raises(ConfigError, match="worker process"):
        await p.run()


class _EndedProcess:
    """A worker process's ``Popen`` that has already exited."""

    pid = 4242

    def poll(self) -> int:
        return 0

    def kill(self) -> None:
        pass

    def wait(self) -> int:
        return 0


async def test_a_worker_process_that_ends_before_ready_holds_up_no_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker whose lanes ended before it said ``ready`` reports only ``final``: the parent
    waited for every worker's ``ready`` (or every one's end), so with another worker running,
    ``open_pipeline`` never entered its block and ``run()`` never said it started."""
    import socket

    from tunflow.pipeline import _processes

    peers: list[socket.socket] = []
    said = [[("ready",)], [("final", ((), (), ()))]]

    def spawn(self: Any, index: int, handles: Any, lanes: Any) -> Any:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        peers.append(theirs)
        for message in said[index]:
            theirs.send(_processes._chunks(message)[0])
        return _processes._Child(index, _EndedProcess(), ours, _processes._chunks(("job",)))  # type: ignore[arg-type]

    monkeypatch.setattr(_processes.ProcessSupervisor, "_jobs", lambda self: [([], [])] * 2)
    monkeypatch.setattr(_processes.ProcessSupervisor, "_spawn", spawn)
    try:
        with anyio.fail_after(5):
            async with open_pipeline(
                MemorySource([]), [StageSpec("stats")], MemorySink(), workers="processes"
            ) as p:
                assert p.statistics().running
    finally:
        for peer in peers:
            peer.close()


@pytest.mark.parametrize(
    "said",
    [
        b"\x00not a pickle",
        b"\x00" + __import__("pickle").dumps(("hello",)),
        b"\x00" + __import__("pickle").dumps(("error", "stage")),
        b"\x00" + __import__("pickle").dumps(("stats", None)),
        b"\x00" + __import__("pickle").dumps(7),
    ],
    ids=["not-a-pickle", "unknown-kind", "short-error", "stats-not-counters", "not-a-tuple"],
)
async def test_a_worker_message_the_parent_cannot_read_is_a_worker_error(
    monkeypatch: pytest.MonkeyPatch, said: bytes
) -> None:
    """A message from a worker that does not unpickle, or is not one of the protocol's, came
    out of ``run()`` as a raw exception (``UnpicklingError``, ``ValueError``, ``TypeError``)
    or was ignored; it is a ``WorkerError`` naming the worker, which is stopped."""
    import socket

    from tunflow.pipeline import WorkerError, _processes

    peers: list[socket.socket] = []

    def spawn(self: Any, index: int, handles: Any, lanes: Any) -> Any:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        peers.append(theirs)
        theirs.send(said)
        return _processes._Child(index, _EndedProcess(), ours, _processes._chunks(("job",)))  # type: ignore[arg-type]

    monkeypatch.setattr(_processes.ProcessSupervisor, "_jobs", lambda self: [([], [])])
    monkeypatch.setattr(_processes.ProcessSupervisor, "_spawn", spawn)
    p = Pipeline(MemorySource([]), [StageSpec("stats")], MemorySink(), workers="processes")
    try:
        with anyio.fail_after(5), pytest.raises(WorkerError, match="worker process 0"):
            await p.run()
        p.statistics()
    finally:
        for peer in peers:
            peer.close()


def test_processes_mode_needs_stage_specs() -> None:
    with pytest.raises(ConfigError, match="rebuilt"):
        Pipeline(MemorySource([]), [Recorder()], MemorySink(), workers="processes")


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        Pipeline(MemorySource([]), [], None)
    with pytest.raises(ConfigError):
        Pipeline(object(), [], MemorySink())
    with pytest.raises(ConfigError):
        Pipeline(MemorySource([]), [object()], MemorySink())  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        Pipeline(MemorySource([]), [], MemorySink(), buffer=-1)
    with pytest.raises(ConfigError, match=r"0\.\.1024"):  # (all made at the start: memory)
        Pipeline(MemorySource([]), [], MemorySink(), buffer=1025)
    with pytest.raises(ValueError):
        Pipeline(MemorySource([]), [], MemorySink(), workers="threads")


async def test_run_twice_is_refused() -> None:
    p = Pipeline(MemorySource([]), [], MemorySink())
    await p.run()
    with pytest.raises(RuntimeError):
        await p.run()


class _Flags(StageBase):
    plugin = "flags"

    def __init__(self, *, mtu: bool = False, splits: bool = False, coalesces: bool = False) -> None:
        super().__init__(name="flags")
        self.needs_mtu_packets = mtu  # type: ignore[misc]
        self.splits = splits  # type: ignore[misc]
        self.coalesces = coalesces  # type: ignore[misc]


def test_plan_whole() -> None:
    offload_src = MemorySource([], vnet_hdr=True)
    offload_src.can_split = True
    plain_sink = MemorySink()
    offload_sink = MemorySink(accepts_super_packets=True)
    # nothing needs plain packets and the sink takes super-packets: read whole
    assert plan_whole([], offload_src, offload_sink) is True
    # a sink without offload: the source splits
    assert plan_whole([], offload_src, plain_sink) is False
    # a stage that needs MTU-sized packets after gso: whole reads still work
    chain = [_Flags(splits=True), _Flags(mtu=True)]
    assert plan_whole(chain, offload_src, offload_sink) is True
    assert plan_whole([_Flags(mtu=True)], offload_src, offload_sink) is False
    # gro before a stage that needs plain packets, with nothing to split: an error
    with pytest.raises(ConfigError, match="gso"):
        plan_whole([_Flags(coalesces=True), _Flags(mtu=True)], offload_src, offload_sink)
    # a source that cannot split
    offload_src.can_split = False
    with pytest.raises(ConfigError, match="gso"):
        plan_whole([], offload_src, plain_sink)


async def test_open_pipeline_cancels_quickly() -> None:
    src = MemorySource(packets(1) * 10**6, batch_size=64)
    with anyio.fail_after(5):
        async with open_pipeline(src, [StageSpec("stats")], MemorySink(keep=0)) as p:
            await anyio.sleep(0.1)
            assert p.statistics().running
    assert not p.statistics().running


def test_direction_values() -> None:
    assert Direction("in") is Direction.INBOUND


class FailingTimer(StageBase):
    plugin = "failingtimer"
    timer_interval = 0.01

    async def on_timer(self) -> None:
        raise OSError("disk full")


async def test_timer_errors_follow_the_policy() -> None:
    src = MemorySource(packets(1) * 10**5, batch_size=8)
    with anyio.fail_after(5):
        async with open_pipeline(src, [FailingTimer()], MemorySink(keep=0)) as p:
            await anyio.sleep(0.1)
            st = p.statistics().stages[0]
            assert st.errors >= 1 and "disk full" in (st.last_error or "")
    stage = FailingTimer()
    stage.on_error = ErrorPolicy.STOP
    with anyio.fail_after(5), pytest.raises(StageError, match="disk full"):
        await Pipeline(
            MemorySource(packets(1) * 10**6, batch_size=8), [stage], MemorySink(keep=0)
        ).run()


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


class LinkedSource(MemorySource):
    """A memory source that says it stands for the loopback interface (kernel drop counters)."""

    def link(self) -> tuple[int, str] | None:
        return (1, "lo")


@pytest.mark.skipif(sys.platform != "linux", reason="kernel drop counters are read on Linux")
def test_no_netlink_socket_outside_run() -> None:
    before = open_fds()
    unrun = Pipeline(LinkedSource(packets(3)), [], MemorySink())
    assert open_fds() == before  # constructed, never run: nothing open
    assert unrun.statistics().kernel_drops == {}
    assert open_fds() == before
    del unrun
    p = Pipeline(LinkedSource(packets(3)), [], MemorySink())
    anyio.run(p.run)
    assert "lo" in p.statistics().kernel_drops  # the socket was open while it ran
    assert open_fds() == before


@pytest.mark.parametrize("interval", [0, -1, 0.0, True, "1"])
def test_statistics_interval_must_be_positive(interval: object) -> None:
    with pytest.raises(ConfigError, match="statistics_interval must be a positive number"):
        Pipeline(MemorySource(packets(1)), [], MemorySink(), statistics_interval=interval)  # type: ignore[arg-type]


def test_records_own_their_maps_and_merges_sum_them() -> None:
    from tunflow.pipeline import PortStatistics, StageStatistics

    drops = {"rate": 2}
    s = StageStatistics("s", drops=drops, counters={"a": 1}, gauges={"pps": 1.5})
    drops["rate"] = 99  # the caller's dict, changed afterwards
    merged = s.merge(StageStatistics("s", drops={"rate": 3, "x": 1}, gauges={"pps": 0.5}))
    assert (s.drops, merged.drops) == ({"rate": 2}, {"rate": 5, "x": 1})
    assert (merged.counters, merged.gauges) == ({"a": 1}, {"pps": 2.0})
    p = PortStatistics("p", "device", 1, drops={"malformed": 1})
    total = p.merge(PortStatistics("p", "device", 2, drops={"malformed": 2, "other": 1}))
    assert (total.rx_packets, total.drops) == (3, {"malformed": 3, "other": 1})


def test_device_port_drops_count_what_the_kernel_refused_and_what_did_not_split() -> None:
    from tunflow.device import DeviceStatistics
    from tunflow.pipeline._ports import _device_stats

    class Stub:
        def __init__(self, stats: DeviceStatistics) -> None:
            self.stats = stats

        def statistics(self) -> DeviceStatistics:
            return self.stats

    refused = DeviceStatistics(tx_packets=5, tx_dropped={"kernel_refused_packet": 2})
    both = DeviceStatistics(rx_malformed=1, tx_dropped={"kernel_refused_packet": 3})
    assert _device_stats("d/0", Stub(refused)).drops == {"kernel_refused_packet": 2}  # type: ignore[arg-type]
    assert _device_stats("d/0", Stub(both)).drops == {  # type: ignore[arg-type]
        "malformed": 1,
        "kernel_refused_packet": 3,
    }
    assert _device_stats("d/0", Stub(DeviceStatistics())).drops == {}  # type: ignore[arg-type]


def test_records_are_frozen_all_the_way_yet_plain_to_serialise() -> None:
    import json
    import pickle

    from tunflow.pipeline import PortStatistics, StageStatistics

    s = StageStatistics("s", drops={"rate": 2}, counters={"a": 1}, gauges={"pps": 1.5})
    for change in (
        lambda: s.drops.__setitem__("rate", 0),  # type: ignore[index]
        lambda: s.counters.update(a=5),  # type: ignore[attr-defined]
        lambda: s.gauges.pop("pps"),  # type: ignore[attr-defined]
        lambda: s.drops.clear(),  # type: ignore[attr-defined]
    ):
        with pytest.raises(TypeError, match="frozen record"):
            change()
    assert s.drops == {"rate": 2} and s.counters == {"a": 1}
    back = pickle.loads(pickle.dumps(s))  # worker processes send records this way
    assert back == s and back.drops == {"rate": 2}
    with pytest.raises(TypeError):
        back.drops["x"] = 1  # type: ignore[index]
    assert json.loads(json.dumps(attrs.asdict(s)))["drops"] == {"rate": 2}
    p = PortStatistics("p", "device", drops={"malformed": 1})
    with pytest.raises(TypeError):
        p.drops["malformed"] = 0  # type: ignore[index]
    assert StageSpec("stats", {"interval": 1.0}).options == {"interval": 1.0}


def test_an_express_shortcut_stands_for_its_method_only_in_the_class_that_made_both() -> None:
    """The pipeline engine relays a packet at rest through a port's express shortcut only
    where the shortcut and ``recv_batch``/``send_batch`` come from one class: a subclass that
    overrides the method alone is not bypassed; one that overrides both keeps its shortcut."""
    from tunflow.pipeline._ports import stands_for

    class Port:
        def send_batch(self) -> None: ...

        def _express_sink(self) -> None: ...

    class Counting(Port):
        def send_batch(self) -> None: ...

    class Both(Counting):
        def _express_sink(self) -> None: ...

    class Plain:
        def send_batch(self) -> None: ...

    assert stands_for(Port(), "_express_sink", "send_batch")
    assert not stands_for(Counting(), "_express_sink", "send_batch")
    assert stands_for(Both(), "_express_sink", "send_batch")
    assert not stands_for(Plain(), "_express_sink", "send_batch")


def test_a_stage_spec_takes_its_error_policy_by_name() -> None:
    # a string was kept as it came: the engine compares policies, so "stop" was never stop,
    # and any string was taken
    assert StageSpec("stats", on_error="stop").on_error is ErrorPolicy.STOP
    assert StageSpec("stats", on_error=ErrorPolicy.DROP).on_error is ErrorPolicy.DROP
    with pytest.raises(ConfigError, match="on_error must be"):
        StageSpec("stats", on_error="bogus")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="on_error must be"):
        Pipeline(MemorySource([]), [], MemorySink(), on_error="bogus")  # type: ignore[arg-type]


def test_every_stage_stops_however_long_another_takes() -> None:
    # the stop() hooks shared one 0.5 s: a slow one left the others not called
    stopped: list[str] = []

    class Slow(StageBase):
        plugin = "slow"

        def process(self, batch: PacketBatch) -> PacketBatch:
            return batch

        async def stop(self) -> None:
            await anyio.sleep(2)

    class Quick(Slow):
        plugin = "quick"

        async def stop(self) -> None:
            stopped.append(self.name)

    # stops run last stage first: the slow one before the quick one
    p = Pipeline(MemorySource(packets(4), batch_size=2), [Quick(), Slow()], MemorySink())
    anyio.run(p.run)
    assert stopped == ["quick"]


@pytest.mark.parametrize("bad", ["raise", float("nan"), float("inf")])
def test_a_stage_whose_delay_fails_is_a_stage_error_under_its_policy(bad: object) -> None:
    # a raise from delay() left the pipeline with the raw exception, whatever on_error said;
    # NaN or inf waited for ever (or raised in anyio.sleep)
    class Pacer(StageBase):
        plugin = "pacer"

        def process(self, batch: PacketBatch) -> PacketBatch:
            return batch

        def delay(self) -> float:
            if bad == "raise":
                raise ValueError("no delay today")
            return bad  # type: ignore[return-value]

    sink = MemorySink()
    p = Pipeline(MemorySource(packets(10), batch_size=2), [Pacer()], sink)
    anyio.run(p.run)
    assert len(sink.packets) == 10
    assert p.statistics().stage("pacer").errors >= 1
    with pytest.raises(StageError):
        stop = Pipeline(
            MemorySource(packets(10), batch_size=2), [Pacer()], MemorySink(), on_error="stop"
        )
        anyio.run(stop.run)


def test_a_finite_delay_past_the_longest_wait_is_waited_up_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a shaper's long debt (1 pps, a batch of super-packets: hours) was taken for a fault:
    # counted as the stage's error and not waited at all
    from tunflow.pipeline import _engine

    monkeypatch.setattr(_engine, "_MAX_DELAY", 0.05)
    asked: list[float] = []

    class Pacer(StageBase):
        plugin = "pacer"

        def process(self, batch: PacketBatch) -> PacketBatch:
            return batch

        def delay(self) -> float:
            asked.append(time.monotonic())
            return 1e6

    sink = MemorySink()
    p = Pipeline(MemorySource(packets(6), batch_size=2), [Pacer()], sink, on_error="stop")
    anyio.run(p.run)
    assert len(sink.packets) == 6 and p.statistics().stage("pacer").errors == 0
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(asked))  # (waited, each time)


def test_one_stage_object_in_two_places_is_refused() -> None:
    # both places were renamed "stats#2" and counted every batch twice
    from tunflow_plugins.stats import StatsStage

    stats = StatsStage()
    with pytest.raises(ConfigError, match=r"stages\[1\] is the same object as stages\[0\]"):
        Pipeline(MemorySource(packets(2)), [stats, stats], MemorySink())


async def test_a_worker_process_that_dies_at_once_is_reported_with_its_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its end of the socket closes before the process is reaped: the parent read ``poll()``
    at once and said "exited without reporting", without the status that tells why."""
    import socket
    import subprocess
    import sys

    from tunflow.pipeline import WorkerError, _processes

    procs: list[subprocess.Popen[bytes]] = []

    def spawn(self: Any, index: int, handles: Any, lanes: Any) -> Any:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; time.sleep(0.2); sys.exit(3)"]
        )
        procs.append(proc)
        theirs.close()  # (hung up: what a child that dies does first)
        return _processes._Child(index, proc, ours, _processes._chunks(("job",)))

    monkeypatch.setattr(_processes.ProcessSupervisor, "_jobs", lambda self: [([], [])])
    monkeypatch.setattr(_processes.ProcessSupervisor, "_spawn", spawn)
    p = Pipeline(MemorySource([]), [StageSpec("stats")], MemorySink(), workers="processes")
    try:
        with anyio.fail_after(10), pytest.raises(WorkerError, match="with status 3"):
            await p.run()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


class DropAll(StageBase):
    plugin = "dropall"

    def process(self, batch: PacketBatch) -> PacketBatch:
        self.drop("all", len(batch))
        batch.keep([])
        return batch


async def test_a_batch_a_stage_emptied_goes_no_further() -> None:
    """Nothing left: no later stage sees the batch and the sink is not written to."""
    sink, rec = MemorySink(), Recorder()
    p = Pipeline(MemorySource(packets(20), batch_size=5), [DropAll(), rec], sink)
    with anyio.fail_after(5):
        await p.run()
    s = p.statistics()
    assert rec.seen == [] and s.stage("recorder").batches == 0
    assert sink.batches == [] and s.port("memory-out").tx_batches == 0
    w = s.workers[0]
    assert (w.batches, w.packets_in, w.packets_out, w.bytes_out) == (4, 20, 0, 0)


async def test_bytes_out_are_those_of_what_a_stage_kept() -> None:
    """A filtering stage's ``bytes_out`` (and the next stage's ``bytes_in``, the worker's
    ``bytes_out``) are the bytes of the packets it kept, not of those it was given."""
    pk = [p + bytes(i) for i, p in enumerate(packets(30, size=10))]  # each its own size
    sink = MemorySink()
    p = Pipeline(MemorySource(pk, batch_size=8), [DropOdd(), Recorder()], sink)
    with anyio.fail_after(5):
        await p.run()
    s = p.statistics()
    written = sum(map(len, sink.packets))
    assert s.stage("dropodd").bytes_out == written == s.stage("recorder").bytes_in
    assert s.stage("recorder").bytes_out == written == s.workers[0].bytes_out


async def test_a_worker_counts_the_batches_its_stages_raised_on() -> None:
    # WorkerStatistics.errors: batches dropped because a stage raised
    p = Pipeline(MemorySource(packets(40), batch_size=10), [Recorder(fail_on=2)], MemorySink())
    with anyio.fail_after(5):
        await p.run()
    w = p.statistics().workers[0]
    assert (w.errors, w.packets_in, w.packets_out) == (1, 40, 30)


async def test_only_the_first_error_of_a_stage_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    # docs/pipeline.md: "the first error of each stage is logged"; the rest only counted
    class Always(StageBase):
        plugin = "always"

        def process(self, batch: PacketBatch) -> PacketBatch:
            raise RuntimeError("boom")

    with anyio.fail_after(5):
        p = Pipeline(MemorySource(packets(40), batch_size=10), [Always()], MemorySink())
        await p.run()
    assert p.statistics().stage("always").errors == 4
    assert sum("boom" in r.getMessage() for r in caplog.records) == 1


async def test_memory_ports_keep_to_their_batch_size_and_keep() -> None:
    # batch_size: packets per batch; keep: the most packets kept, later ones counted only
    sink = MemorySink(keep=3)
    with anyio.fail_after(5):
        await Pipeline(MemorySource(packets(10), batch_size=4), [], sink).run()
    assert sink.batches == [4] and len(sink.packets) == 3  # (the rest counted only)
    assert sink.statistics().tx_packets == 10


def test_the_largest_buffer_is_taken() -> None:
    # (test_bad_arguments refuses 1025)
    Pipeline(MemorySource([]), [], MemorySink(), buffer=1024)  # the documented most


def test_a_one_state_stage_is_refused_from_two_worker_processes_on_either_side() -> None:
    rate = StageSpec("ratelimit", {"rate": "10pps"})
    two = [MemorySource([], name=f"q{i}") for i in range(2)]
    with pytest.raises(ConfigError, match=r"stages\[0\] \(ratelimit\) keeps one state"):
        Pipeline(two, [rate], MemorySink(), workers="processes")
    # a tunnel of two device queues and one transport runs two worker processes
    with pytest.raises(ConfigError, match=r"stages\[0\] \(ratelimit\) keeps one state"):
        Tunnel(two, MemorySource([], name="wan"), [rate], workers="processes")


class ConcurrentSink(MemorySink):
    """A stalled sink that records each write it starts, by its name."""

    def __init__(self, name: str, writing: list[str]) -> None:
        super().__init__(name=name, delay=3600)
        self.writing = writing

    async def send_batch(self, batch: PacketBatch) -> None:
        self.writing.append(self.name)
        await super().send_batch(batch)


async def test_lanes_write_to_every_sink_queue_and_take_turns_only_on_their_own() -> None:
    # four source queues, two sink queues: two workers per sink, one write at a time on each,
    # the two sinks written at once
    writing: list[str] = []
    sinks = [ConcurrentSink(f"out{i}", writing) for i in range(2)]
    sources = [MemorySource(packets(100), batch_size=4, name=f"q{i}") for i in range(4)]
    async with open_pipeline(sources, [], sinks):
        with anyio.fail_after(5):
            while len(writing) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        await anyio.sleep(0.1)
        assert sorted(writing) == ["out0", "out1"]  # (one waits for its sink on each)
    assert all(s.statistics().tx_batches == 0 for s in sinks)  # (each was cancelled mid-write)


def test_a_device_port_refuses_batches_of_no_packets() -> None:
    from tunflow.device import Layer
    from tunflow.pipeline import SyncDevicePort

    class Stub:
        layer, offload_info = Layer.L3, OffloadInfo()

        def if_index(self) -> int:
            return 1

        def name(self) -> str:
            return "stub"

        def mtu(self) -> int:
            return 1500

    for bad in (0, -1):
        with pytest.raises(ConfigError, match="max_packets must be at least 1"):
            SyncDevicePort(Stub(), max_packets=bad)  # type: ignore[arg-type]
    assert SyncDevicePort(Stub(), max_packets=1).name == "stub/0"  # type: ignore[arg-type]


class Counted(StageBase):
    plugin = "counted"

    def __init__(self, name: str, fail: bool = False) -> None:
        super().__init__(name=name)
        self.fail = fail
        self.asked = 0

    def process(self, batch: PacketBatch) -> PacketBatch:
        return batch

    def delay(self) -> float:
        self.asked += 1
        if self.fail:
            raise ValueError("no delay today")
        return 0.0


@pytest.mark.parametrize("buffer", [0, 2])
async def test_every_stage_is_asked_its_delay_after_every_batch(buffer: int) -> None:
    # one stage's failing delay() does not spare the stages after it theirs
    broken, fine = Counted("broken", fail=True), Counted("fine")
    sink = MemorySink()
    p = Pipeline(MemorySource(packets(12), batch_size=3), [broken, fine], sink, buffer=buffer)
    with anyio.fail_after(5):
        await p.run()
    assert len(sink.packets) == 12
    assert (broken.asked, fine.asked) == (4, 4)
    assert p.statistics().stage("broken").errors == 4


async def test_stages_start_in_chain_order_and_stop_last_first() -> None:
    # a stage whose start() raised is not stopped, nor are those after it (never started)
    said: list[str] = []

    class Hooks(StageBase):
        plugin = "hooks"

        def __init__(self, name: str, fail: bool = False) -> None:
            super().__init__(name=name)
            self.fail = fail

        async def start(self, context: object) -> None:
            said.append(f"start {self.name}")
            if self.fail:
                raise OSError("cannot start")

        async def stop(self) -> None:
            said.append(f"stop {self.name}")

    with anyio.fail_after(5):
        await Pipeline(
            MemorySource(packets(4)), [Hooks("a"), Hooks("b"), Hooks("c")], MemorySink()
        ).run()
    assert said == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    said.clear()
    chain = [Hooks("a"), Hooks("b", fail=True), Hooks("c")]
    with anyio.fail_after(5), pytest.raises(OSError, match="cannot start"):
        await Pipeline(MemorySource(packets(4)), chain, MemorySink()).run()
    assert said == ["start a", "start b", "stop a"]


async def test_the_error_that_stopped_the_pipeline_is_the_one_raised() -> None:
    """A second failure met while the lanes stop (a sink that fails as it is cancelled) does
    not replace the error that stopped them."""

    class Fragile(MemorySink):
        async def send_batch(self, batch: PacketBatch) -> None:
            try:
                await anyio.sleep_forever()
            finally:
                raise OSError("closed under me")

    class FailsOnLaneZero(StageBase):
        plugin = "lanezero"

        def bind(self, lane: Lane) -> Processor:
            calls = itertools.count()

            def process(batch: PacketBatch) -> PacketBatch:
                if lane.worker == 0 and next(calls) == 1:
                    raise RuntimeError("boom")
                return batch

            return process

    sources = [MemorySource(packets(10), batch_size=2, name=f"q{i}") for i in range(2)]
    sinks = [MemorySink(name="out0"), Fragile(name="out1")]
    with anyio.fail_after(5), pytest.raises(StageError, match="boom"):
        await Pipeline(sources, [FailsOnLaneZero()], sinks, on_error="stop").run()


async def test_a_stage_is_told_the_transport_its_outbound_lane_writes_to() -> None:
    told: list[StageContext] = []

    class Remote(MemorySink):
        transport = object()

    class Told(StageBase):
        plugin = "told"

        async def start(self, context: StageContext) -> None:
            told.append(context)

    sink = Remote()
    with anyio.fail_after(5):
        await Pipeline(MemorySource(packets(2)), [Told()], sink).run()
    assert told[0].remote is Remote.transport
