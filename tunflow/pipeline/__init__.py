"""The pipeline engine: stages over batches of packets, between devices and transports.

* :class:`Stage` / :class:`StageBase` — CPU work on a batch (``process(batch) -> batch``), with
  optional async ``start``/``stop``/timer hooks and its own :class:`StageStatistics`.
* :class:`Pipeline` — source → stages → sink, one worker per source queue;
  :class:`Tunnel` — the same chain both ways between a local and a remote side.
* Workers run as tasks (default) or as one OS process per queue (``workers="processes"``).
* Stages are plugins of the ``tunflow.stages`` entry-point group (:func:`available_stages`).

Example:
    >>> import anyio
    >>> from tunflow.pipeline import MemorySink, MemorySource, open_pipeline
    >>> async def main() -> None:
    ...     sink = MemorySink()
    ...     async with open_pipeline(MemorySource([b"\\x45" + bytes(19)]), [], sink) as p:
    ...         await anyio.sleep(0.05)
    ...     print(len(sink.packets), p.statistics().workers[0].packets_out)
    >>> anyio.run(main)
    1 1
"""

from ._engine import (
    Pipeline as Pipeline,
    PipelineStatistics as PipelineStatistics,
    StageError as StageError,
    Tunnel as Tunnel,
    WorkerError as WorkerError,
    WorkerMode as WorkerMode,
    WorkerStatistics as WorkerStatistics,
    open_pipeline as open_pipeline,
    open_tunnel as open_tunnel,
    plan_whole as plan_whole,
)
from ._plugins import (
    GROUP as GROUP,
    OptionInfo as OptionInfo,
    StagePlugin as StagePlugin,
    available_stages as available_stages,
    build_stage as build_stage,
    converter as converter,
    load_stage_class as load_stage_class,
    refresh_plugins as refresh_plugins,
)
from ._ports import (
    DevicePort as DevicePort,
    Endpoint as Endpoint,
    MemorySink as MemorySink,
    MemorySource as MemorySource,
    Port as Port,
    PortHandle as PortHandle,
    PortStatistics as PortStatistics,
    SyncDevicePort as SyncDevicePort,
    TransportPort as TransportPort,
    as_ports as as_ports,
)
from ._stage import (
    Direction as Direction,
    ErrorPolicy as ErrorPolicy,
    Lane as Lane,
    NoOptions as NoOptions,
    Processor as Processor,
    Stage as Stage,
    StageBase as StageBase,
    StageContext as StageContext,
    StageSpec as StageSpec,
    StageStatistics as StageStatistics,
)

__all__ = [
    # engine
    "Pipeline",
    "Tunnel",
    "open_pipeline",
    "open_tunnel",
    "WorkerMode",
    "ErrorPolicy",
    "Direction",
    "plan_whole",
    # stages
    "Stage",
    "StageBase",
    "StageSpec",
    "StageContext",
    "Lane",
    "Processor",
    "NoOptions",
    # statistics
    "PipelineStatistics",
    "StageStatistics",
    "PortStatistics",
    "WorkerStatistics",
    # ports
    "Port",
    "PortHandle",
    "DevicePort",
    "SyncDevicePort",
    "TransportPort",
    "MemorySource",
    "MemorySink",
    "Endpoint",
    "as_ports",
    # plugins
    "GROUP",
    "StagePlugin",
    "OptionInfo",
    "available_stages",
    "load_stage_class",
    "build_stage",
    "refresh_plugins",
    "converter",
    # errors
    "StageError",
    "WorkerError",
]
