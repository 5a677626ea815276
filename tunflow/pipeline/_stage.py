"""Stages: the ``Stage`` protocol, a base class, their statistics and how to describe one.

A stage is CPU work on a *batch*: ``process(batch) -> batch`` is a plain function (no ``await``
on the hot path). It may filter the batch in place (:meth:`PacketBatch.keep`), rewrite bytes,
or return another batch it owns (GRO and GSO write into a batch of their own). Lifetime hooks
(``start``/``stop``), timers and pacing are optional and async.

This module holds no I/O and no event-loop code besides the hook signatures.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Protocol, TypeVar, runtime_checkable

import attrs

from ..device import Layer, OffloadInfo
from ..errors import ConfigError
from ..packet import PacketBatch

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "Direction",
    "ErrorPolicy",
    "Lane",
    "Processor",
    "Stage",
    "StageBase",
    "StageContext",
    "StageSpec",
    "StageStatistics",
    "NoOptions",
]

_N = TypeVar("_N", int, float)

#: What a bound stage is on the hot path: a batch in, a batch out.
Processor = Callable[[PacketBatch], PacketBatch]


class Direction(enum.Enum):
    """Which way a batch flows through a chain.

    In a :class:`~tunflow.pipeline.Tunnel`, *outbound* runs from the local side (a device) to the
    remote side (a transport, or another device) through the stages in order; *inbound* runs back
    through them in reverse order, like layers of middleware.
    """

    OUTBOUND = "out"
    INBOUND = "in"


class ErrorPolicy(enum.Enum):
    """What a pipeline does when a stage raises on a batch.

    * ``DROP`` — count the error (``StageStatistics.errors``, ``last_error``; the batch's
      packets in ``drops["error"]``), log the first one of each stage, drop that batch and go on;
    * ``STOP`` — stop the whole pipeline and raise :class:`~tunflow.pipeline.StageError`.

    Malformed *packets* are not errors: stages count them by reason and drop them.
    """

    DROP = "drop"
    STOP = "stop"

    @classmethod
    def of(cls, value: ErrorPolicy | str) -> ErrorPolicy:
        """``value`` as a policy: one already, or its name (``"drop"``, ``"stop"``).

        Raises:
            ConfigError: neither.
        """
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"on_error must be 'drop' or 'stop', not {value!r}") from None


def _policy(value: ErrorPolicy | str | None) -> ErrorPolicy | None:
    return None if value is None else ErrorPolicy.of(value)


@attrs.frozen
class Lane:
    """One worker's path through a chain, in one direction: what :meth:`Stage.bind` is told.

    Attributes:
        direction: which way batches flow on this lane.
        worker: the worker's index (the source queue it reads).
        layer: ``L3`` (IP packets) or ``L2`` (Ethernet frames).
        mtu: the smaller of the lane's source's and sink's MTU (1500 when neither says).
        source_offload: what the source hands out (``vnet_hdr`` batches may carry super-packets).
        sink_offload: what the sink accepts (``vnet_hdr``: super-packets and GRO on write).
    """

    direction: Direction = Direction.OUTBOUND
    worker: int = 0
    layer: Layer = Layer.L3
    mtu: int = 1500
    source_offload: OffloadInfo = attrs.field(factory=OffloadInfo)
    sink_offload: OffloadInfo = attrs.field(factory=OffloadInfo)


@attrs.frozen
class StageContext:
    """What :meth:`Stage.start` is told about the pipeline it runs in.

    Attributes:
        pipeline: the pipeline's name (for log messages and file names).
        layer: ``L3`` or ``L2``.
        mtu: the smaller of the source's and the sink's MTU (a packet that is to reach the
            sink whole fits both; the first lane's, as each lane's :attr:`Lane.mtu`).
        workers: how many workers run the chain in this process.
        process_index: which worker process this is (``None`` in tasks mode).
        start_soon: start a background task in the pipeline's task group; it is cancelled
            when the pipeline stops.
        remote: the network side — what the first outbound lane writes to, or the first
            inbound lane reads from (a transport: ``send_batch_nowait``) — for a stage that
            must send before anything arrives (a VPN's first handshake); ``None`` when that
            side is not a transport.
    """

    pipeline: str = "pipeline"
    layer: Layer = Layer.L3
    mtu: int = 1500
    workers: int = 1
    process_index: int | None = None
    start_soon: Callable[..., Any] | None = None
    remote: Any = None


class _FrozenDict(dict[str, Any]):
    """A dict that refuses changes: the mappings held by the pipeline's frozen records.

    Still a ``dict`` — ``==``, JSON, :func:`attrs.asdict` and pickling (records travel to and
    from worker processes) work as on any dict — where a ``MappingProxyType`` would not pickle.
    """

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("the mappings of a frozen record cannot change (copy it with dict())")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type[_FrozenDict], tuple[dict[str, Any]]]:
        return (type(self), (dict(self),))


def copy_map(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A record's own read-only copy of a mapping (the attrs converter of every mapping field of
    the pipeline's records): the caller's dict may change afterwards, the record's cannot."""
    return _FrozenDict(value or ())


def sum_maps(a: Mapping[str, _N], b: Mapping[str, _N]) -> dict[str, _N]:
    """Key by key sums of two mappings of counts (the merge of two workers' records)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


@attrs.frozen
class StageStatistics:
    """Counters of one stage, summed over every worker (and every worker process).

    Attributes:
        name: the stage's name in its pipeline.
        plugin: the plugin it was built from.
        packets_in: packets given to the stage.
        bytes_in: their bytes.
        packets_out: packets it passed on.
        bytes_out: their bytes.
        batches: batches it processed.
        errors: batches on which it raised (and which were dropped), and raises of its
            ``on_timer()`` and ``delay()``.
        last_error: the last such exception, as text.
        drops: packets it dropped, by reason (``"malformed:truncated"``, ``"denied"``…); the
            packets of the batches it raised on are ``"error"``.
        counters: stage-specific counts (per filter rule, files written…).
        gauges: stage-specific measurements (rates, fill levels).
    """

    name: str
    plugin: str = ""
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    batches: int = 0
    errors: int = 0
    last_error: str | None = None
    drops: Mapping[str, int] = attrs.field(factory=dict, converter=copy_map)
    counters: Mapping[str, int] = attrs.field(factory=dict, converter=copy_map)
    gauges: Mapping[str, float] = attrs.field(factory=dict, converter=copy_map)

    @property
    def dropped(self) -> int:
        """All packets dropped, whatever the reason."""
        return sum(self.drops.values())

    def merge(self, other: StageStatistics) -> StageStatistics:
        """The sum of two records of the same stage (gauges: the sum too, e.g. rates)."""
        return StageStatistics(
            name=self.name,
            plugin=self.plugin or other.plugin,
            packets_in=self.packets_in + other.packets_in,
            bytes_in=self.bytes_in + other.bytes_in,
            packets_out=self.packets_out + other.packets_out,
            bytes_out=self.bytes_out + other.bytes_out,
            batches=self.batches + other.batches,
            errors=self.errors + other.errors,
            last_error=other.last_error or self.last_error,
            drops=sum_maps(self.drops, other.drops),
            counters=sum_maps(self.counters, other.counters),
            gauges=sum_maps(self.gauges, other.gauges),
        )


@attrs.frozen
class StageSpec:
    """A stage described by data: its plugin name and options, as in a TOML file.

    Pipelines in *processes* mode rebuild every stage from its spec in each worker process.

    Attributes:
        plugin: the entry-point name in the ``tunflow.stages`` group (``"filter"``).
        options: the plugin's options (checked against the plugin's ``Options`` class).
        name: the stage's name in statistics (default: the plugin name, numbered if repeated).
        on_error: overrides the pipeline's :class:`ErrorPolicy` for this stage.

    Example:
        >>> StageSpec("ratelimit", {"rate": "10mbit"}).plugin
        'ratelimit'
    """

    plugin: str
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=copy_map)
    name: str | None = None
    # (a string is taken as a policy's name: the engine compares policies, not strings)
    on_error: ErrorPolicy | None = attrs.field(default=None, converter=_policy)

    def build(self) -> Stage:
        """Load the plugin and build the stage (see :func:`~tunflow.pipeline.build_stage`)."""
        from ._plugins import build_stage

        return build_stage(self)


@runtime_checkable
class Stage(Protocol):
    """What a pipeline needs of a stage.

    Required: :attr:`name`, :meth:`process` and :meth:`statistics`. Optional (found with
    ``getattr``; :class:`StageBase` provides them all): ``plugin``, ``spec``,
    ``needs_mtu_packets``, ``splits``, ``coalesces``, ``one_state``, ``on_error``, ``bind(lane)``,
    ``async start(context)``, ``async stop()``, ``timer_interval`` + ``async on_timer()`` and
    ``delay() -> float`` (seconds the worker should wait before its next batch: a shaper's
    backpressure).

    One stage instance serves every worker of a pipeline in tasks mode (they run in one thread
    and ``process`` never awaits, so no locks are needed); :meth:`StageBase.bind` gives each
    worker and direction its own processor where per-worker scratch space is needed. In
    processes mode each worker process builds its own instance from :attr:`StageBase.spec`.
    """

    name: str

    def process(self, batch: PacketBatch) -> PacketBatch:
        """Work on ``batch``; return it (changed in place) or a batch the stage owns."""
        ...

    def statistics(self) -> StageStatistics:
        """The stage's own counters (drops by reason, counters, gauges)."""
        ...


@attrs.frozen
class NoOptions:
    """The options of a stage that takes none."""


class StageBase:
    """A convenient base for stages: options, drop counters, and every optional hook.

    Subclasses set :attr:`plugin` (their entry-point name), an attrs ``Options`` class and
    implement :meth:`process` (or :meth:`bind` when each worker needs its own scratch).

    Args:
        options: an instance of the stage's ``Options`` class; or leave it out and give the
            options as keywords, checked the same way a TOML file's are.
        name: the name in statistics (default: :attr:`plugin`).

    Raises:
        ConfigError: an option is missing, unknown or of the wrong type.

    Example:
        >>> import attrs
        >>> class Count(StageBase):
        ...     plugin = "count"
        ...
        ...     @attrs.frozen
        ...     class Options:
        ...         limit: int = 10
        ...
        ...     def process(self, batch):
        ...         if len(batch) > self.options.limit:
        ...             self.drop("over_limit", len(batch) - self.options.limit)
        ...             batch.keep(range(self.options.limit))
        ...         return batch
        >>> Count(limit=2).options
        Count.Options(limit=2)
    """

    #: the entry-point name of the plugin
    plugin: ClassVar[str] = ""
    #: one line for ``tunflow stages``
    summary: ClassVar[str] = ""
    #: the attrs class of the options
    Options: ClassVar[type] = NoOptions
    #: the stage parses packets that must be at most one MTU (no GSO super-packets)
    needs_mtu_packets: ClassVar[bool] = False
    #: the stage turns super-packets into MTU-sized packets (``gso``)
    splits: ClassVar[bool] = False
    #: the stage may produce super-packets (``gro``)
    coalesces: ClassVar[bool] = False
    #: every lane must share the stage's one state (a VPN protocol's sessions: the handshake a
    #: lane starts is answered on another; a global rate limit's bucket): more than one worker
    #: process is refused (a class attribute, or set per instance by the options)
    one_state: bool = False
    #: seconds between :meth:`on_timer` calls; ``None``: no timer
    timer_interval: float | None = None

    def __init__(self, options: Any = None, /, *, name: str | None = None, **kwargs: Any):
        if options is None:
            from ._plugins import structure_options

            options = structure_options(type(self), kwargs)
        elif kwargs:
            raise TypeError("give the options as one Options object or as keywords, not both")
        elif not isinstance(options, self.Options):
            raise TypeError(
                f"{type(self).__name__} expects a {self.Options.__name__}, not {options!r}"
            )
        self.options = options
        self.name: str = name or self.plugin or type(self).__name__.lower()
        #: overrides the pipeline's error policy for this stage
        self.on_error: ErrorPolicy | None = None
        self._drops: dict[str, int] = {}
        self._counters: dict[str, int] = {}
        self._unbound: Processor | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, name: str | None = None) -> Self:
        """Build from a mapping of options (what the plugin registry calls).

        Raises:
            ConfigError: the options do not fit the ``Options`` class; its ``path`` names
                the bad key.
        """
        from ._plugins import structure_options

        return cls(structure_options(cls, options), name=name)

    @property
    def spec(self) -> StageSpec:
        """How to build this stage again elsewhere (a worker process)."""
        from ._plugins import unstructure_options

        return StageSpec(
            self.plugin, unstructure_options(self.options), name=self.name, on_error=self.on_error
        )

    # -- the hot path ---------------------------------------------------------------------

    def process(self, batch: PacketBatch) -> PacketBatch:
        """Work on ``batch`` and return the result. The default passes it on unchanged."""
        return batch

    def bind(self, lane: Lane) -> Processor:
        """The processor one worker uses in one direction; default: :meth:`process`.

        Override to keep scratch batches per worker or to specialise on the direction. A batch
        a processor returns that it owns must stay valid until that processor's next call.
        """
        return self.process

    def _unbound_processor(self) -> Processor:
        """``bind(Lane())``, built on the first call and kept: what :meth:`process` runs in a
        stage whose work lives in :meth:`bind` (its scratch batches are reused from one call to
        the next, as in a lane). Only for a subclass that overrides :meth:`bind`."""
        proc = self._unbound
        if proc is None:
            proc = self._unbound = self.bind(Lane())
        return proc

    def drop(self, reason: str, count: int = 1) -> None:
        """Count ``count`` packets dropped for ``reason``."""
        self._drops[reason] = self._drops.get(reason, 0) + count

    def count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to a stage-specific counter."""
        self._counters[counter] = self._counters.get(counter, 0) + n

    # -- lifetime -------------------------------------------------------------------------

    async def start(self, context: StageContext) -> None:
        """Called once before the first batch (open files, start timers)."""

    async def stop(self) -> None:
        """Called once after the last batch, also on cancellation (keep it short)."""

    async def on_timer(self) -> None:
        """Called :attr:`timer_interval` seconds after the start, then that long after each
        return, while the pipeline runs (cancelled when it stops: one that waits for deadlines
        of its own may run until then)."""

    def delay(self) -> float:
        """Seconds the worker should wait before reading its next batch (0: none; at most
        an hour is waited per batch; NaN or infinity is the stage's fault)."""
        return 0.0

    # -- statistics -----------------------------------------------------------------------

    def gauges(self) -> Mapping[str, float]:
        """Stage-specific measurements for :meth:`statistics` (default: none)."""
        return {}

    def statistics(self) -> StageStatistics:
        """Drops by reason, counters and gauges (the pipeline adds packets and bytes)."""
        return StageStatistics(
            name=self.name,
            plugin=self.plugin,
            drops=self._drops,
            counters=self._counters,
            gauges=self.gauges(),
        )
