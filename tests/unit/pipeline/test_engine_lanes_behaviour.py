"""The engine's arguments, what it tells stages about their lanes, its stop hooks, its errors."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from tests.helpers import ipv4_udp
from tunflow import ConfigError
from tunflow.packet import PacketBatch
from tunflow.pipeline import (
    Lane,
    MemorySink,
    MemorySource,
    Pipeline,
    StageBase,
    StageContext,
    open_pipeline,
    plan_whole,
)
from tunflow.pipeline._engine import _raise_single

pytestmark = pytest.mark.anyio


def packets(n: int) -> list[bytes]:
    return [ipv4_udp("10.0.0.1", "10.0.0.2", 1000, 9, bytes([i])) for i in range(n)]


class Told(StageBase):
    """Records what the engine tells it: its context and the lanes it is bound to."""

    plugin = "told"

    def __init__(self) -> None:
        super().__init__(name="told")
        self.contexts: list[StageContext] = []
        self.lanes: list[Lane] = []

    async def start(self, context: StageContext) -> None:
        self.contexts.append(context)

    def bind(self, lane: Lane):  # type: ignore[no-untyped-def]
        self.lanes.append(lane)
        return self.process

    def process(self, batch: PacketBatch) -> PacketBatch:
        return batch


@pytest.mark.parametrize("buffer", [True, 2.0, "2"])
def test_a_buffer_that_is_not_an_int_is_a_config_error(buffer: object) -> None:
    """``buffer`` is a count of batches: ``True``, ``2.0`` or ``"2"`` is refused before anything
    runs, not anyio's bare ``ValueError`` from the lane's task once running."""
    with pytest.raises(ConfigError, match="buffer must be an int"):
        Pipeline(MemorySource([]), [], MemorySink(), buffer=buffer)  # type: ignore[arg-type]


@pytest.mark.parametrize(("source_mtu", "sink_mtu"), [(9000, 1400), (1280, 1500)])
async def test_stages_are_told_the_smaller_mtu_of_source_and_sink(
    source_mtu: int, sink_mtu: int
) -> None:
    """``Lane.mtu`` and ``StageContext.mtu``: the smaller of the source's and the sink's MTU,
    whichever of the two it is."""
    stage = Told()
    source = MemorySource(packets(2), mtu=source_mtu)
    await Pipeline(source, [stage], MemorySink(mtu=sink_mtu)).run()
    smaller = min(source_mtu, sink_mtu)
    assert [c.mtu for c in stage.contexts] == [smaller]
    assert [lane.mtu for lane in stage.lanes] == [smaller]


async def test_stages_are_told_how_many_workers_run_the_chain() -> None:
    """``StageContext.workers``: one per source queue, every lane of the pipeline."""
    stage = Told()
    sources = [MemorySource(packets(2), name=f"q{i}") for i in range(3)]
    await Pipeline(sources, [stage], MemorySink()).run()
    assert [c.workers for c in stage.contexts] == [3]
    assert sorted(lane.worker for lane in stage.lanes) == [0, 1, 2]


async def test_a_stop_hook_that_never_returns_holds_up_the_end_only_briefly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stage whose ``stop()`` never returns: leaving ``open_pipeline`` still ends within the
    second the docs promise (each ``stop()`` is given half a second), the other stages are
    stopped, and the late one is named in a warning."""
    stopped: list[str] = []

    class Stuck(StageBase):
        plugin = "stuck"

        def process(self, batch: PacketBatch) -> PacketBatch:
            return batch

        async def stop(self) -> None:
            await anyio.sleep_forever()

    class Quick(Stuck):
        plugin = "quick"

        async def stop(self) -> None:
            stopped.append(self.name)

    caplog.set_level(logging.WARNING, logger="tunflow.pipeline")
    source = MemorySource(packets(4), batch_size=2)
    async with open_pipeline(source, [Quick(), Stuck()], MemorySink()):
        await anyio.sleep(0.05)
        began = time.monotonic()
    assert time.monotonic() - began < 5
    assert stopped == ["quick"]
    assert "stage stuck did not stop" in caplog.text


class Coalescing(StageBase):
    plugin = "coalescing"
    coalesces = True

    def process(self, batch: PacketBatch) -> PacketBatch:
        return batch


class NeedsMtu(Coalescing):
    plugin = "needs-mtu"
    coalesces = False
    needs_mtu_packets = True


@pytest.mark.parametrize("offload_source", [False, True])
def test_a_coalescing_stage_before_a_plain_sink_makes_no_super_packets(
    offload_source: bool,
) -> None:
    """A ``gro`` stage coalesces only for a sink that takes super-packets; before a plain sink
    (a transport, a TUN without offload) it passes batches on untouched, so nothing after it,
    the sink or a stage that needs MTU-sized packets, needs a ``gso`` in front: the lane reads
    split packets, no ``ConfigError``."""
    source = MemorySource([], vnet_hdr=offload_source)
    source.can_split = True
    assert plan_whole([Coalescing()], source, MemorySink()) is False
    assert plan_whole([Coalescing(), NeedsMtu()], source, MemorySink()) is False


def test_several_errors_at_once_come_as_a_group_of_them_all() -> None:
    """Errors come as themselves; only several at once come as an ``ExceptionGroup`` (the
    first of them alone would hide the others)."""
    first, second = OSError(5, "EIO"), KeyError(1)
    group = ExceptionGroup("in a TaskGroup", [first, ExceptionGroup("inner", [second])])
    with pytest.raises(ExceptionGroup) as info:
        _raise_single(group)
    assert info.value is group
    only = ExceptionGroup("outer", [ExceptionGroup("inner", [first])])
    with pytest.raises(OSError) as single:
        _raise_single(only)
    assert single.value is first
