"""The engine: workers that run a chain of stages over batches, run to completion.

A *lane* is one worker's path: a source port, the chain (in order outbound, reversed inbound),
a sink port. One lane per source queue. A worker reads a batch, runs every stage on it, writes
it, and only then reads again — so a slow stage or sink slows its source, the kernel queue fills
and the kernel drops (and counts) the excess; memory stays bounded by construction. With
``buffer=N`` a lane is split into a reader task and a processing task joined by bounded memory
streams of batches (``N`` in flight, plus a free list), letting a read overlap a slow write.

Workers are tasks in one task group (``workers="tasks"``) or one OS process per lane group
(``workers="processes"``, see :mod:`._processes`), for parallelism past the GIL.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import os
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, NoReturn, TypeAlias, TypeVar

import anyio
import attrs
from anyio.abc import TaskGroup, TaskStatus

from .._readiness import LONE, NOTHING
from ..device import Layer
from ..errors import ConfigError, PluginError, TunflowError
from ..packet import PacketBatch
from ._linkstats import LinkStatsReader
from ._plugins import load_stage_class
from ._ports import (
    Endpoint,
    ExpressSink,
    ExpressSource,
    Port,
    PortStatistics,
    _DeviceQueuePort,
    as_ports,
    stands_for,
)
from ._stage import (
    Direction,
    ErrorPolicy,
    Lane,
    Processor,
    Stage,
    StageContext,
    StageSpec,
    StageStatistics,
    copy_map,
    sum_maps,
)

if TYPE_CHECKING:
    from ._processes import ProcessSupervisor

__all__ = [
    "Pipeline",
    "Tunnel",
    "PipelineStatistics",
    "WorkerStatistics",
    "WorkerMode",
    "StageError",
    "WorkerError",
    "open_pipeline",
    "open_tunnel",
]

log = logging.getLogger("tunflow.pipeline")

#: how long each stage's ``stop()`` may take when a pipeline ends
_STOP_TIMEOUT: Final = 0.5
#: the longest wait a stage's ``delay()`` may ask for (seconds)
_MAX_DELAY: Final = 3600.0

#: why a pipeline refuses devices of both layers
MIXED_LAYERS: Final = "a pipeline cannot join a TAP (L2) device to a TUN (L3) device"


def one_state_refusal(stages: Sequence[Any], processes: int) -> tuple[int, str] | None:
    """The first of ``stages`` that keeps one state for every lane, which ``processes`` worker
    processes cannot run, and why (to follow its name); ``None``: no such stage, or one
    process."""
    if processes > 1:
        for i, stage in enumerate(stages):
            if getattr(stage, "one_state", False):
                return i, (
                    f"keeps one state for every lane, which {processes} worker processes "
                    "would each build for themselves (each seeing only its own lanes): use "
                    "workers = 'tasks', or one queue"
                )
    return None


#: the most batches a lane's ``buffer`` holds in flight: each is a batch's memory (up to 1 MiB
#: on an offload device), all made as the lane starts — ``buffer = 100000000000`` allocated
#: until the kernel's OOM killer ended the process (a gigabyte a lane here)
MAX_BUFFER: Final = 1024

# per-stage counters of a lane: packets in, bytes in, packets out, bytes out, batches, errors,
# and the packets of the batches it raised on
_PIN, _BIN, _POUT, _BOUT, _BATCHES, _ERRORS, _LOST = range(7)
#: the drop reason of the packets of a batch a stage raised on
ERROR_DROP: Final = "error"


class WorkerMode(enum.Enum):
    """How a pipeline runs its workers."""

    #: one task per lane, all in the caller's event loop (one core)
    TASKS = "tasks"
    #: one OS process per source queue (real parallelism); stages are rebuilt from their specs
    PROCESSES = "processes"


class StageError(TunflowError):
    """A stage raised on a batch and its error policy is ``STOP``.

    Attributes:
        stage: the stage's name.
    """

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(message)
        self.stage = stage

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with ``stage`` (a keyword ``BaseException``'s pickling does not pass)."""
        return (functools.partial(type(self), stage=self.stage), self.args, self.__dict__)


class WorkerError(TunflowError):
    """A worker process failed (it exited, or reported an error).

    Attributes:
        exception_type: the name of the class of the error the worker reported (what a stage's
            ``start()`` raised, ``"KeyError"``; ``"ExceptionGroup"`` for several at once);
            ``None`` when it reported none (it exited, or sent what was not its protocol).
        exception_module: that class's module (``"builtins"``), or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        exception_type: str | None = None,
        exception_module: str | None = None,
    ) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.exception_module = exception_module


@attrs.frozen
class WorkerStatistics:
    """Counters of one worker (one lane).

    Attributes:
        index: the worker's number (its source queue).
        direction: ``"out"`` or ``"in"``.
        source: the source port's name.
        sink: the sink port's name.
        pid: the process running it.
        batches: batches read.
        packets_in: packets read.
        bytes_in: their bytes.
        packets_out: packets written (a batch whose write raised or was cancelled — the
            pipeline stopped while it waited for the sink — is not counted, though the sink
            may have written part of it).
        bytes_out: their bytes.
        errors: batches dropped because a stage raised.
        unprocessed: packets read that no stage saw: in flight in the lane's buffer
            (``buffer`` > 0) when it stopped.
    """

    index: int
    direction: str
    source: str
    sink: str
    pid: int
    batches: int = 0
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    errors: int = 0
    unprocessed: int = 0


@attrs.frozen
class PipelineStatistics:
    """A snapshot of a pipeline or tunnel.

    Attributes:
        name: the pipeline's name.
        mode: ``"tasks"`` or ``"processes"``.
        running: the workers are running.
        stages: one record per stage, in chain order.
        ports: one record per port (device queue, transport).
        workers: one record per worker (lane).
        kernel_drops: per interface, the packets the kernel dropped because its queue to us was
            full (``tx_dropped`` of a TUN/TAP: the source did not read fast enough).
        errors: the stages' ``errors``, summed: batches dropped because a stage raised, and
            raises of a stage's ``on_timer()`` or ``delay()``.
    """

    name: str
    mode: str
    running: bool
    stages: tuple[StageStatistics, ...]
    ports: tuple[PortStatistics, ...]
    workers: tuple[WorkerStatistics, ...]
    kernel_drops: Mapping[str, int] = attrs.field(factory=dict, converter=copy_map)

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.stages)

    def stage(self, name: str) -> StageStatistics:
        """The record of the stage called ``name``.

        Raises:
            KeyError: no such stage.
        """
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def port(self, name: str) -> PortStatistics:
        """The record of the port called ``name``.

        Raises:
            KeyError: no such port.
        """
        for p in self.ports:
            if p.name == name:
                return p
        raise KeyError(name)


class _RunningLane:
    """Runtime state of one lane in this process."""

    def __init__(
        self,
        index: int,
        direction: Direction,
        source: Port,
        sink: Port,
        stages: Sequence[Stage],
        whole: bool,
    ) -> None:
        self.index = index
        self.direction = direction
        self.source = source
        self.sink = sink
        self.stages = list(stages)
        self.whole = whole
        self.processors: list[Processor] = []
        self.counters = [[0, 0, 0, 0, 0, 0, 0] for _ in stages]
        self.io = [0, 0, 0, 0, 0, 0]  # batches, pin, bin, pout, bout, errors
        #: packets read into the buffer that the chain never took (the lane stopped)
        self.unprocessed = 0
        self.sink_lock: anyio.Lock | None = None
        self.delays = [s for s in stages if _paces(s)]

    def lane(self) -> Lane:
        l2 = Layer.L2 in (self.source.layer, self.sink.layer)
        return Lane(
            direction=self.direction,
            worker=self.index,
            layer=Layer.L2 if l2 else Layer.L3,
            mtu=min(self.source.mtu, self.sink.mtu),
            source_offload=self.source.offload,
            sink_offload=self.sink.offload,
        )

    def statistics(self) -> WorkerStatistics:
        b, pin, bin_, pout, bout, err = self.io
        return WorkerStatistics(
            self.index,
            self.direction.value,
            self.source.name,
            self.sink.name,
            os.getpid(),
            b,
            pin,
            bin_,
            pout,
            bout,
            err,
            self.unprocessed,
        )


def _paces(stage: Stage) -> bool:
    # Only stages that override StageBase.delay() are asked after each batch.
    from ._stage import StageBase

    fn = getattr(type(stage), "delay", None)
    return fn is not None and fn is not StageBase.delay


def plan_whole(chain: Sequence[Stage], source: Port, sink: Port) -> bool:
    """Whether ``source`` may hand out super-packets whole for this chain and sink.

    Walks the chain: a stage that ``splits`` (gso) makes packets plain, one that ``coalesces``
    (gro) may make super-packets, one that ``needs_mtu_packets`` must not see them, and a sink
    without offload must not either. Reads are whole when that works, else split by the source.

    Raises:
        ConfigError: no reading mode works (a coalescing stage feeds something that needs plain
            packets; or the source cannot split) — the message says which stage to add.
    """

    def conflict(whole: bool) -> str | None:
        state = whole
        for st in chain:
            if getattr(st, "splits", False):
                state = False
            elif getattr(st, "needs_mtu_packets", False) and state:
                return f"stage {st.name!r}"
            if getattr(st, "coalesces", False) and sink.offload.vnet_hdr:
                state = True  # a coalescing stage only coalesces for a sink that takes it
        if state and not sink.offload.vnet_hdr:
            return f"sink {sink.name!r}"
        return None

    if not source.offload.vnet_hdr:
        what = conflict(False)
        if what is None:
            return False
        raise ConfigError(
            f"{what} needs MTU-sized packets but a coalescing stage before it makes super-packets;"
            " put a 'gso' stage in between"
        )
    what = conflict(True)
    if what is None:
        return True
    if not source.can_split:
        raise ConfigError(
            f"{what} needs MTU-sized packets and source {source.name!r} hands out super-packets;"
            " put a 'gso' stage before it"
        )
    what = conflict(False)
    if what is not None:
        raise ConfigError(
            f"{what} needs MTU-sized packets but a coalescing stage before it makes super-packets;"
            " put a 'gso' stage in between"
        )
    return False


def _positive_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value > 0


def _unique_names(stages: Sequence[Stage]) -> None:
    """Number repeated names (``stats``, ``stats#2``); refuse one stage object in two places.

    Raises:
        ConfigError: a stage object is in the chain twice (it would be renamed in both places
            and count each batch twice: a stage keeps its own state), or a stage whose name
            cannot be set repeats an earlier stage's.
    """
    places: dict[int, int] = {}
    for i, st in enumerate(stages):
        first = places.setdefault(id(st), i)
        if first != i:
            raise ConfigError(
                f"stages[{i}] is the same object as stages[{first}]: make one per place"
            )
    given = {st.name for st in stages}  # (kept by their stages: numbering goes round them)
    used: set[str] = set()
    for i, st in enumerate(stages):
        name = st.name
        if name in used:
            # the first number no stage has or was given ("a#2" may be a stage's own name)
            n = 2
            while f"{name}#{n}" in used or f"{name}#{n}" in given:
                n += 1
            try:
                st.name = f"{name}#{n}"
            except AttributeError:
                # (two stages of one name would share their statistics and error records)
                raise ConfigError(
                    f"stages[{i}] is named {name!r} as an earlier stage is, and its name cannot"
                    " be changed: give it a name of its own"
                ) from None
            name = st.name
        used.add(name)


def _as_stage(item: Stage | StageSpec, index: int) -> Stage:
    if isinstance(item, StageSpec):
        from ._plugins import build_stage

        return build_stage(item, path=f"stages[{index}]")
    if not isinstance(item, Stage):
        raise ConfigError(f"stages[{index}]: {item!r} is not a Stage or a StageSpec")
    return item


class _Engine:
    """What :class:`Pipeline` and :class:`Tunnel` share."""

    def __init__(
        self,
        name: str,
        flows: Sequence[tuple[Direction, list[Port], list[Port]]],
        stages: Sequence[Stage | StageSpec],
        *,
        workers: WorkerMode | str,
        on_error: ErrorPolicy | str,
        buffer: int,
        statistics_interval: float,
        worker_base: int = 0,
        kernel_links: bool = True,
        process_index: int | None = None,
    ) -> None:
        self.name = name
        self._process_index = process_index
        self.mode = WorkerMode(workers)
        self.on_error = ErrorPolicy.of(on_error)
        if type(buffer) is not int or not 0 <= buffer <= MAX_BUFFER:
            raise ConfigError(f"buffer must be an int 0..{MAX_BUFFER} (batches), not {buffer!r}")
        self.buffer = buffer
        if not _positive_number(statistics_interval):
            raise ConfigError(
                "statistics_interval must be a positive number of seconds, "
                f"not {statistics_interval!r}"
            )
        self.statistics_interval = statistics_interval
        self._specs: list[StageSpec | None] = []
        built: list[Stage] = []
        for i, item in enumerate(stages):
            if self.mode is WorkerMode.PROCESSES:
                spec = item if isinstance(item, StageSpec) else getattr(item, "spec", None)
                if not isinstance(spec, StageSpec):
                    raise ConfigError(
                        f"stages[{i}]: {item!r} cannot be rebuilt in a worker process; "
                        "build it from a StageSpec or a registered plugin"
                    )
                try:
                    load_stage_class(spec.plugin)
                except PluginError as exc:
                    raise ConfigError(
                        f"stages[{i}]: {item!r} cannot be rebuilt in a worker process: {exc}"
                    ) from None
                self._specs.append(spec)
            built.append(_as_stage(item, i))
        _unique_names(built)
        self.stages = built
        # each stage's own policy, a name ("stop") taken as the policy: compared to the enum, a
        # string never matched and was silently the pipeline's
        self._policies: dict[int, ErrorPolicy] = {}
        for i, st in enumerate(built):
            own = getattr(st, "on_error", None)
            if own is not None:
                try:
                    self._policies[id(st)] = ErrorPolicy.of(own)
                except ConfigError as exc:
                    raise ConfigError(f"stages[{i}] ({st.name}): {exc}") from None
        self._flows = [(d, list(src), list(dst)) for d, src, dst in flows]
        device_layers = {
            p.layer
            for _, src, dst in self._flows
            for p in (*src, *dst)
            if isinstance(p, _DeviceQueuePort)
        }
        if len(device_layers) > 1:
            raise ConfigError(MIXED_LAYERS)
        if self.mode is WorkerMode.PROCESSES:
            processes = max((len(src) for _, src, _ in self._flows), default=0)
            refused = one_state_refusal(built, processes)
            if refused is not None:
                i, why = refused
                raise ConfigError(f"stages[{i}] ({built[i].name}) {why}")
        self._lanes: list[_RunningLane] = []
        for direction, sources, sinks in self._flows:
            chain = self.stages if direction is Direction.OUTBOUND else self.stages[::-1]
            shared = len(sinks) < len(sources)
            locks = [anyio.Lock() for _ in sinks] if shared else []
            for i, source in enumerate(sources):
                sink = sinks[i % len(sinks)]
                lane = _RunningLane(
                    worker_base + i, direction, source, sink, chain, plan_whole(chain, source, sink)
                )
                if shared:
                    lane.sink_lock = locks[i % len(sinks)]
                self._lanes.append(lane)
        self._running = False
        self._started = False
        self._failure: BaseException | None = None
        self._cancel: anyio.CancelScope | None = None
        self._logged: set[str] = set()
        self._last_errors: dict[str, str] = {}
        self._hook_errors: dict[str, int] = {}
        self._procs: ProcessSupervisor | None = None  # in processes mode
        self._links = LinkStatsReader(
            [p.link() for _, src, dst in self._flows for p in (*src, *dst)] if kernel_links else []
        )  # its socket is opened by run() and closed when run() ends: none for an unrun pipeline

    # -- statistics -----------------------------------------------------------------------

    def statistics(self) -> PipelineStatistics:
        """A snapshot of every stage, port and worker (and the kernel's drops)."""
        kernel = self._links.tx_dropped()
        if self._procs is not None:
            stages, ports, workers = self._procs.statistics(self.stages, self._ports())
        else:
            stages = self._stage_statistics()
            ports = tuple(p.statistics() for p in self._ports())
            workers = tuple(lane.statistics() for lane in self._lanes)
        return PipelineStatistics(
            self.name, self.mode.value, self._running, stages, ports, workers, kernel
        )

    def _ports(self) -> list[Port]:
        # By name: a device given as both source and sink is wrapped twice but is one queue.
        seen: dict[str, Port] = {}
        for _, src, dst in self._flows:
            for p in (*src, *dst):
                seen.setdefault(p.name, p)
        return list(seen.values())

    def _stage_statistics(self) -> tuple[StageStatistics, ...]:
        totals: dict[int, list[int]] = {id(st): [0] * 7 for st in self.stages}
        for lane in self._lanes:
            for st, c in zip(lane.stages, lane.counters, strict=True):
                t = totals[id(st)]
                for k in range(7):
                    t[k] += c[k]
        out = []
        for st in self.stages:
            own = st.statistics()
            t = totals[id(st)]
            out.append(
                attrs.evolve(
                    own,
                    name=st.name,
                    plugin=own.plugin or getattr(st, "plugin", ""),
                    packets_in=own.packets_in + t[_PIN],
                    bytes_in=own.bytes_in + t[_BIN],
                    packets_out=own.packets_out + t[_POUT],
                    bytes_out=own.bytes_out + t[_BOUT],
                    batches=own.batches + t[_BATCHES],
                    errors=own.errors + t[_ERRORS] + self._hook_errors.get(st.name, 0),
                    last_error=own.last_error or self._last_errors.get(st.name),
                    drops=sum_maps(own.drops, {ERROR_DROP: t[_LOST]}) if t[_LOST] else own.drops,
                )
            )
        return tuple(out)

    # -- running --------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled or until every source ends; ``task_status.started()`` once every
        worker runs (use with ``TaskGroup.start``).

        Raises:
            StageError: a stage with policy ``STOP`` raised.
            WorkerError: a worker process failed (the message names its error, its
                ``exception_type`` the error's class): in processes mode, what a stage's
                ``start()`` or ``bind()`` raised comes as this.
            ConfigError: the stages cannot be rebuilt in worker processes; a stage's
                ``timer_interval`` is not a positive number of seconds.
            OSError: a device or transport failed (e.g. ``DeviceGoneError``).
            RuntimeError: the pipeline was already run.
            Exception: whatever a stage's ``start()`` or ``bind()`` raised. Errors come as
                themselves; only several at once come as an ``ExceptionGroup``.
        """
        if self._started:
            raise RuntimeError(f"{self.name} was already run; make a new one")
        self._started = True
        try:
            self._links.open()
            if self.mode is WorkerMode.PROCESSES:
                await self._run_processes(task_status)
            else:
                await self._run_tasks(task_status, self._process_index)
        except BaseExceptionGroup as group:  # a stage's start() or bind() raised in a task group
            _raise_single(group)
        finally:
            self._running = False
            self._links.close()
        if self._failure is not None:
            raise self._failure

    async def _run_processes(self, task_status: TaskStatus[None]) -> None:
        from ._processes import ProcessSupervisor

        specs = [s for s in self._specs if s is not None]
        self._procs = ProcessSupervisor(self, specs)
        try:
            await self._procs.run(task_status, self._set_running)
        except (WorkerError, StageError) as exc:
            self._failure = exc

    def _set_running(self) -> None:
        self._running = True

    def _remote(self) -> Any:
        """StageContext.remote: the transport at the network end of the first lane."""
        if not self._lanes:
            return None
        lane = self._lanes[0]
        port = lane.sink if lane.direction is Direction.OUTBOUND else lane.source
        return getattr(port, "transport", None)

    async def _run_tasks(
        self, task_status: TaskStatus[None], process_index: int | None = None
    ) -> None:
        started: list[Stage] = []
        try:
            async with anyio.create_task_group() as tg:
                self._cancel = tg.cancel_scope
                context = StageContext(
                    pipeline=self.name,
                    layer=self._lanes[0].lane().layer if self._lanes else Layer.L3,
                    mtu=self._lanes[0].lane().mtu if self._lanes else 1500,
                    workers=len(self._lanes),
                    process_index=process_index,
                    start_soon=tg.start_soon,
                    remote=self._remote(),
                )
                for st in self.stages:
                    start = getattr(st, "start", None)
                    if start is not None:
                        await start(context)
                    started.append(st)
                for lane in self._lanes:
                    lane.processors = []
                    for st in lane.stages:
                        bind = getattr(st, "bind", None)
                        processor = bind(lane.lane()) if bind else st.process
                        if not callable(processor):
                            # (else a bare TypeError from the first batch, naming nothing)
                            raise TypeError(
                                f"stage {st.name!r}: bind() must return a callable taking a "
                                f"batch and returning one, not {processor!r}"
                            )
                        lane.processors.append(processor)
                for st in self.stages:
                    interval = getattr(st, "timer_interval", None)
                    if interval and not _positive_number(interval):
                        # (anyio's bare ValueError or TypeError from the timer task once running)
                        raise ConfigError(
                            f"stage {st.name!r}: timer_interval must be a positive number of "
                            f"seconds, not {interval!r}"
                        )
                    if interval:
                        tg.start_soon(self._timer, st, interval)
                async with anyio.create_task_group() as lanes:
                    for lane in self._lanes:
                        lanes.start_soon(self._lane_main, lane)
                    self._running = True
                    task_status.started()
                tg.cancel_scope.cancel()  # every lane ended: stop the timers
        finally:
            self._running = False
            with anyio.CancelScope(shield=True):
                for st in reversed(started):
                    stop = getattr(st, "stop", None)
                    if stop is None:
                        continue
                    # each its own time: one slow stop() must not skip the others' (a capture
                    # left unflushed and open)
                    with anyio.move_on_after(_STOP_TIMEOUT) as late:
                        try:
                            await stop()
                        except Exception:
                            log.exception("stage %s failed to stop", st.name)
                    if late.cancelled_caught:
                        log.warning("stage %s did not stop within %s s", st.name, _STOP_TIMEOUT)

    async def _timer(self, stage: Stage, interval: float) -> None:
        on_timer = stage.on_timer  # type: ignore[attr-defined]
        while True:
            await anyio.sleep(interval)
            try:
                await on_timer()
            except Exception as exc:
                try:
                    self._stage_failed(stage, None, exc, "on_timer()")
                except StageError:
                    return  # recorded; the pipeline is stopping

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        if self._cancel is not None:
            self._cancel.cancel()

    def _stage_failed(
        self, stage: Stage, counters: list[int] | None, exc: Exception, hook: str | None = None
    ) -> None:
        """Count and record ``exc`` from ``stage`` — from a batch (``counters``: the lane's
        counters of the stage) or from a ``hook`` — and apply the stage's error policy."""
        if counters is not None:
            counters[_ERRORS] += 1
        else:
            self._hook_errors[stage.name] = self._hook_errors.get(stage.name, 0) + 1
        text = f"{type(exc).__name__}: {exc}"
        self._last_errors[stage.name] = text
        policy = self._policies.get(id(stage), self.on_error)
        if policy is ErrorPolicy.STOP:
            err = StageError(f"stage {stage.name!r} raised {text}", stage=stage.name)
            err.__cause__ = exc
            self._fail(err)
            raise err
        if stage.name not in self._logged:
            self._logged.add(stage.name)
            where = "on a batch (dropped;" if hook is None else f"in {hook} ("
            log.error(
                "stage %s raised %s later errors are only counted): %s",
                stage.name,
                where,
                "".join(traceback.format_exception(exc)).rstrip(),
            )

    async def _lane_main(self, lane: _RunningLane) -> None:
        try:
            try:
                if self.buffer:
                    await self._lane_buffered(lane)
                else:
                    await self._lane_loop(lane)
            except ExceptionGroup as group:  # from the reader and processor tasks of a buffer
                _raise_single(group)
        except StageError:
            pass  # recorded by _stage_failed; the whole pipeline stops
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        except Exception as exc:
            self._fail(exc)

    def _run_chain(self, lane: _RunningLane, batch: PacketBatch) -> PacketBatch | None:
        """Run the chain on ``batch``; the batch to write, or ``None`` if nothing is left."""
        io = lane.io
        n = len(batch.offsets)
        nb = sum(batch.lengths)
        io[0] += 1
        io[1] += n
        io[2] += nb
        out = batch
        for proc, c, st in zip(lane.processors, lane.counters, lane.stages, strict=True):
            c[_PIN] += n
            c[_BIN] += nb
            c[_BATCHES] += 1
            try:
                out = proc(out)
                if not isinstance(out, PacketBatch):
                    raise TypeError(
                        f"stage {st.name!r} returned {type(out).__name__}, not a PacketBatch "
                        "(a process() without 'return batch'?)"
                    )
            except Exception as exc:
                io[5] += 1
                c[_LOST] += n
                self._stage_failed(st, c, exc)
                return None
            n = len(out)
            nb = sum(out.lengths) if n else 0
            c[_POUT] += n
            c[_BOUT] += nb
            if not n:
                return None
        io[3] += n
        io[4] += nb
        return out

    async def _pace(self, lane: _RunningLane) -> None:
        for st in lane.delays:
            try:
                d = st.delay()  # type: ignore[attr-defined]
                if not d <= _MAX_DELAY:
                    if not math.isfinite(d):  # (NaN, inf: a wait for ever is a fault)
                        raise ValueError(f"delay() returned {d!r} seconds")
                    d = _MAX_DELAY  # (a shaper's long debt: an hour a batch)
            except Exception as exc:
                # the stage's fault, as a raise from process() is: its policy decides
                self._stage_failed(st, None, exc, "delay()")
                continue
            if d > 0:
                await anyio.sleep(d)

    async def _lane_loop(self, lane: _RunningLane) -> None:
        source, sink, lock = lane.source, lane.sink, lane.sink_lock
        recv, send = source.recv_batch, sink.send_batch
        whole = lane.whole
        batch = source.new_batch()
        # with no stage between source and sink (a tunnel's lanes) a batch is only counted
        run_chain = self._run_chain if lane.processors else _pass_through
        pace = lane.delays
        express = _express(lane, batch) if run_chain is _pass_through and lock is None else None
        if express is not None:
            at_rest, serve, step = express
        while True:
            batch.clear()
            if express is not None and at_rest(batch):
                # lone packets go through in the reader callback, this task sleeps
                await serve(step)
                if not batch.offsets:
                    await recv(batch, whole)
            else:
                await recv(batch, whole)
            out = run_chain(lane, batch)
            if out is not None:
                try:
                    if lock is None:
                        await send(out)
                    else:
                        async with lock:
                            await send(out)
                except BaseException:
                    _unsent(lane, out)
                    raise
            if pace:
                await self._pace(lane)

    async def _lane_buffered(self, lane: _RunningLane) -> None:
        # Bounded both ways: ``buffer`` filled batches in flight, one being read, one being
        # processed; the reader waits for a free batch, which is the backpressure.
        n = self.buffer
        free_send, free_recv = anyio.create_memory_object_stream[PacketBatch](n + 2)
        full_send, full_recv = anyio.create_memory_object_stream[PacketBatch](n)
        for _ in range(n + 2):
            free_send.send_nowait(lane.source.new_batch())
        held = [0]  # packets read and not yet taken by the processor

        async def reader() -> None:
            # free_recv stays open until the processor is done: when the source ends, the
            # processor still passes on the batches in flight and hands each one back
            async with full_send:
                recv, whole = lane.source.recv_batch, lane.whole
                async for batch in free_recv:
                    batch.clear()
                    try:
                        await recv(batch, whole)
                    except (anyio.EndOfStream, anyio.ClosedResourceError):
                        return
                    held[0] += len(batch)
                    await full_send.send(batch)

        async def processor() -> None:
            async with full_recv, free_send:
                sink, lock = lane.sink, lane.sink_lock
                async for batch in full_recv:
                    held[0] -= len(batch)
                    out = self._run_chain(lane, batch)
                    if out is not None:
                        try:
                            if lock is None:
                                await sink.send_batch(out)
                            else:
                                async with lock:
                                    await sink.send_batch(out)
                        except BaseException:
                            _unsent(lane, out)
                            raise
                    await free_send.send(batch)
                    if lane.delays:
                        await self._pace(lane)

        try:
            async with free_recv, anyio.create_task_group() as tg:
                tg.start_soon(reader)
                tg.start_soon(processor)
        finally:
            # (stopped, or a stage or the sink failed: what was in flight is lost)
            lane.unprocessed += held[0]


#: ``(ready, wait, step)`` of :func:`_express`
_Express: TypeAlias = tuple[
    Callable[[PacketBatch], bool],
    Callable[[Callable[[], bool]], Awaitable[None]],
    Callable[[], bool],
]


def _express(lane: _RunningLane, batch: PacketBatch) -> _Express | None:
    """The express path of a lane without stages between two of tunflow's own ports (a
    tunnel's lanes: device and WireGuard port), or ``None``.

    At rest — the last read found one packet and then nothing: a ping, a request, its answer
    — the lane's task does not wake for the next packet. The source's reader callback reads
    it, counts it as the lane would and hands it to the sink, which sends it without waiting
    (:meth:`ReadWaiter.serve <tunflow._readiness.ReadWaiter.serve>`). Whatever else the read
    brings (several packets, something only the task's path handles, an error) wakes the
    task with it: from there on the lane runs as usual until it is at rest again. Only on
    event loops with reader callbacks (asyncio, uvloop; not trio).

    Returns ``(ready, wait, step)``: ``ready(batch)`` says whether to ``await wait(step)``
    instead of reading; after it, ``batch`` holds what the task is to send (or nothing: read
    as usual).
    """
    if not (
        stands_for(lane.source, "_express_source", "recv_batch")
        and stands_for(lane.sink, "_express_sink", "send_batch")
    ):
        return None  # not tunflow's own ports, or a subclass's own recv_batch or send_batch
    source: ExpressSource | None = lane.source._express_source()  # type: ignore[attr-defined]
    send: ExpressSink | None = lane.sink._express_sink()  # type: ignore[attr-defined]
    if source is None or send is None:
        return None
    ready, wait, recv = source
    whole = lane.whole

    def step() -> bool:
        got = recv(batch, whole)
        if got == LONE:
            if not send(batch):
                return False  # the task sends it
            _pass_through(lane, batch)  # (counted once sent: else the task counts it)
            batch.clear()
            return True
        # NOTHING: wait on; MORE: the task passes them on as a batch it read; DECLINED: the
        # task reads
        return got == NOTHING

    return ready, wait, step


def _pass_through(lane: _RunningLane, batch: PacketBatch) -> PacketBatch:
    """``_run_chain`` of a lane without stages: the lane's counters, and the batch as it is
    (a third of the lines: a lone packet crosses two such lanes per end of a tunnel)."""
    io = lane.io
    n = len(batch.offsets)
    nb = sum(batch.lengths)
    io[0] += 1
    io[1] += n
    io[2] += nb
    io[3] += n
    io[4] += nb
    return batch


def _unsent(lane: _RunningLane, out: PacketBatch) -> None:
    """Take back from the lane's ``packets_out`` and ``bytes_out`` the batch ``out``, counted
    by the chain, whose write raised or was cancelled (waiting for a shared sink, say)."""
    lane.io[3] -= len(out.offsets)
    lane.io[4] -= sum(out.lengths)


class Pipeline(_Engine):
    """Source → stages → sink, one worker per source queue.

    Args:
        source: an :class:`~tunflow.AsyncDevice` or :class:`~tunflow.SyncDevice` (one queue), a
            list of the queues of one multi-queue device, a
            :class:`~tunflow.transport.Transport`, or any :class:`Port`.
        stages: :class:`Stage` instances or :class:`StageSpec` descriptions, in order.
        sink: where batches go (same kinds as ``source``). With fewer sink queues than source
            queues, workers share sinks (one write at a time).
        name: for statistics and logs.
        direction: what the stages are told (``Direction.OUTBOUND`` by default).
        workers: ``"tasks"`` (default) or ``"processes"``.
        on_error: ``"drop"`` (default) or ``"stop"`` (see :class:`ErrorPolicy`).
        buffer: batches in flight between a worker's reader and its chain (0: none — the worker
            reads only after writing; at most :data:`MAX_BUFFER`, 1024).
        statistics_interval: how often worker processes report their counters (seconds).

    Raises:
        ConfigError: an endpoint that is not a port, a stage that is not a stage, a chain that
            cannot carry the source's packets to the sink.
        PluginError: a :class:`StageSpec` names a missing plugin.

    Example:
        >>> import anyio
        >>> from tunflow.pipeline import MemorySink, MemorySource, Pipeline
        >>> sink = MemorySink()
        >>> p = Pipeline(MemorySource([b"\\x45" + bytes(19)] * 5, batch_size=2), [], sink)
        >>> anyio.run(p.run)
        >>> len(sink.packets), p.statistics().workers[0].batches
        (5, 3)
    """

    def __init__(
        self,
        source: Endpoint,
        stages: Sequence[Stage | StageSpec] = (),
        sink: Endpoint | None = None,
        *,
        name: str = "pipeline",
        direction: Direction | str = Direction.OUTBOUND,
        workers: WorkerMode | str = WorkerMode.TASKS,
        on_error: ErrorPolicy | str = ErrorPolicy.DROP,
        buffer: int = 0,
        statistics_interval: float = 0.5,
    ) -> None:
        if sink is None:
            raise ConfigError("a pipeline needs a sink")
        direction = Direction(direction)
        super().__init__(
            name,
            [(direction, as_ports(source), as_ports(sink))],
            stages,
            workers=workers,
            on_error=on_error,
            buffer=buffer,
            statistics_interval=statistics_interval,
        )


class Tunnel(_Engine):
    """Two pipelines sharing one chain: local → stages → remote, and remote → stages reversed →
    local.

    ``local`` is usually a device (its queues), ``remote`` a transport or another device (the
    offload forwarder is a tunnel of two devices). Each stage instance sees both directions;
    :meth:`StageBase.bind` tells it which one a worker runs.

    Args:
        local: the local side (device, queues, port).
        remote: the remote side.
        stages: in outbound order.
        name: as :class:`Pipeline`.
        workers: as :class:`Pipeline`.
        on_error: as :class:`Pipeline`.
        buffer: as :class:`Pipeline`.
        statistics_interval: as :class:`Pipeline`.

    Raises:
        As :class:`Pipeline`.
    """

    def __init__(
        self,
        local: Endpoint,
        remote: Endpoint,
        stages: Sequence[Stage | StageSpec] = (),
        *,
        name: str = "tunnel",
        workers: WorkerMode | str = WorkerMode.TASKS,
        on_error: ErrorPolicy | str = ErrorPolicy.DROP,
        buffer: int = 0,
        statistics_interval: float = 0.5,
    ) -> None:
        a, b = as_ports(local), as_ports(remote)
        super().__init__(
            name,
            [(Direction.OUTBOUND, a, b), (Direction.INBOUND, b, a)],
            stages,
            workers=workers,
            on_error=on_error,
            buffer=buffer,
            statistics_interval=statistics_interval,
        )


E = TypeVar("E", bound=_Engine)


class _Opened(Generic[E]):
    """An async context manager that runs an engine in its own task group."""

    def __init__(self, engine: E) -> None:
        self._engine = engine
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> E:
        tg = self._tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(self._engine.run)
        except BaseException as exc:
            tg.cancel_scope.cancel()
            try:
                await tg.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                _raise_single(group)
            raise
        return self._engine

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg = self._tg
        if tg is None:
            raise RuntimeError("__aexit__ without __aenter__")
        tg.cancel_scope.cancel()
        try:
            return await tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            _raise_single(group)


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            out.extend(_leaves(e))
        else:
            out.append(e)
    return out


def _raise_single(group: BaseExceptionGroup[Any]) -> NoReturn:
    """Raise the one error inside ``group``, however deeply task groups nested it, as itself
    (its own cause kept, the groups not shown); a group of several errors as it is. That one
    may be ``SystemExit`` (``sys.exit()`` keeps its status) or ``KeyboardInterrupt`` (trio
    raises Ctrl-C in a task), never a cancellation: that is its scope's to catch."""
    leaves = _leaves(group)
    if len(leaves) == 1 and isinstance(leaves[0], (Exception, KeyboardInterrupt, SystemExit)):
        raise leaves[0] from leaves[0].__cause__
    raise group


def open_pipeline(
    source: Endpoint,
    stages: Sequence[Stage | StageSpec] = (),
    sink: Endpoint | None = None,
    *,
    name: str = "pipeline",
    direction: Direction | str = Direction.OUTBOUND,
    workers: WorkerMode | str = WorkerMode.TASKS,
    on_error: ErrorPolicy | str = ErrorPolicy.DROP,
    buffer: int = 0,
    statistics_interval: float = 0.5,
) -> AbstractAsyncContextManager[Pipeline]:
    """Start a :class:`Pipeline` in a task group of its own; stop it when the block ends.

    ``async with open_pipeline(dev, [stage], transport) as p:`` — the block runs once every
    worker runs; leaving it cancels them and waits (< 1 s) for everything to close.

    Args:
        source: as :class:`Pipeline`.
        stages: as :class:`Pipeline`.
        sink: as :class:`Pipeline`.
        name: as :class:`Pipeline`.
        direction: as :class:`Pipeline`.
        workers: as :class:`Pipeline`.
        on_error: as :class:`Pipeline`.
        buffer: as :class:`Pipeline`.
        statistics_interval: as :class:`Pipeline`.

    Returns:
        An async context manager yielding the :class:`Pipeline`.

    Raises:
        As :class:`Pipeline` and :meth:`Pipeline.run`.
    """
    return _Opened(
        Pipeline(
            source,
            stages,
            sink,
            name=name,
            direction=direction,
            workers=workers,
            on_error=on_error,
            buffer=buffer,
            statistics_interval=statistics_interval,
        )
    )


def open_tunnel(
    local: Endpoint,
    remote: Endpoint,
    stages: Sequence[Stage | StageSpec] = (),
    *,
    name: str = "tunnel",
    workers: WorkerMode | str = WorkerMode.TASKS,
    on_error: ErrorPolicy | str = ErrorPolicy.DROP,
    buffer: int = 0,
    statistics_interval: float = 0.5,
) -> AbstractAsyncContextManager[Tunnel]:
    """Start a :class:`Tunnel`, as :func:`open_pipeline` starts a pipeline.

    Args:
        local: as :class:`Tunnel`.
        remote: as :class:`Tunnel`.
        stages: as :class:`Tunnel`.
        name: as :class:`Tunnel`.
        workers: as :class:`Tunnel`.
        on_error: as :class:`Tunnel`.
        buffer: as :class:`Tunnel`.
        statistics_interval: as :class:`Tunnel`.

    Returns:
        An async context manager yielding the :class:`Tunnel`.

    Raises:
        As :class:`Tunnel` and :meth:`Tunnel.run`.
    """
    return _Opened(
        Tunnel(
            local,
            remote,
            stages,
            name=name,
            workers=workers,
            on_error=on_error,
            buffer=buffer,
            statistics_interval=statistics_interval,
        )
    )
