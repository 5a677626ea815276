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

from ._engine import Pipeline as Pipeline
from ._engine import PipelineStatistics as PipelineStatistics
from ._engine import StageError as StageError
from ._engine import Tunnel as Tunnel
from ._engine import WorkerError as WorkerError
from ._engine import WorkerMode as WorkerMode
from ._engine import WorkerStatistics as WorkerStatistics
from ._engine import open_pipeline as open_pipeline
from ._engine import open_tunnel as open_tunnel
from ._engine import plan_whole as plan_whole
from ._plugins import GROUP as GROUP
from ._plugins import OptionInfo as OptionInfo
from ._plugins import StagePlugin as StagePlugin
from ._plugins import available_stages as available_stages
from ._plugins import build_stage as build_stage
from ._plugins import converter as converter
from ._plugins import load_stage_class as load_stage_class
from ._plugins import refresh_plugins as refresh_plugins
from ._ports import DevicePort as DevicePort
from ._ports import MemorySink as MemorySink
from ._ports import MemorySource as MemorySource
from ._ports import Port as Port
from ._ports import PortHandle as PortHandle
from ._ports import PortStatistics as PortStatistics
from ._ports import SyncDevicePort as SyncDevicePort
from ._ports import TransportPort as TransportPort
from ._ports import as_ports as as_ports
from ._stage import Direction as Direction
from ._stage import ErrorPolicy as ErrorPolicy
from ._stage import Lane as Lane
from ._stage import NoOptions as NoOptions
from ._stage import Processor as Processor
from ._stage import Stage as Stage
from ._stage import StageBase as StageBase
from ._stage import StageContext as StageContext
from ._stage import StageSpec as StageSpec
from ._stage import StageStatistics as StageStatistics

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
