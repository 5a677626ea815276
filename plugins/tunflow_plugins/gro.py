"""``gro``: coalesce plain TCP (and UDP) packets into super-packets for an offload device.

Wraps :class:`tunflow.offload.GROTable`. Super-packets already in a batch pass through with their
headers; a batch with fewer than two plain packets is passed on untouched (no copy). The stage
only coalesces for a sink that takes super-packets (an offload device); before any other sink
it passes batches on unchanged, so one chain serves both directions of a tunnel.
"""

from __future__ import annotations

from typing import Any

import attrs

from tunflow.errors import ConfigError
from tunflow.offload import GROTable
from tunflow.packet import HEADROOM, PacketBatch
from tunflow.pipeline import Lane, Processor, StageBase, StageStatistics

__all__ = ["GROStage", "GROOptions"]


def _at_least_one(_inst: object, attr: attrs.Attribute[Any], value: int) -> None:
    # (GROTable refuses less; found here, `tunflow check` finds it, not the first bind())
    if value < 1:
        raise ConfigError(f"must be at least 1, not {value!r}", path=attr.name)


@attrs.frozen
class GROOptions:
    """Options of the ``gro`` stage."""

    tcp: bool = attrs.field(default=True, metadata={"help": "coalesce TCP segments"})
    udp: bool = attrs.field(
        default=True, metadata={"help": "coalesce UDP datagrams when the sink has USO"}
    )
    max_segments: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(_at_least_one),
        metadata={"help": "most packets merged into one (default: the 64 KiB cap)"},
    )


def _passthrough(batch: PacketBatch) -> PacketBatch:
    return batch


class GROStage(StageBase):
    """Coalesce plain packets into super-packets (GRO) before an offload device.

    Statistics: ``counters`` ``coalesced`` (packets merged into another), ``gso_packets``
    (super-packets made), ``invalid_checksum`` (kept apart: bad checksum), ``too_large``.
    """

    plugin = "gro"
    summary = "coalesce TCP/UDP packets into super-packets (GRO) for an offload device"
    Options = GROOptions
    coalesces = True

    def __init__(self, options: Any = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self._tables: list[GROTable] = []

    def process(self, batch: PacketBatch) -> PacketBatch:
        return batch  # without a lane the sink is unknown: coalescing is left to bind()

    def bind(self, lane: Lane) -> Processor:
        opts: GROOptions = self.options
        sink = lane.sink_offload
        if not sink.vnet_hdr:
            return _passthrough
        table = GROTable(tcp=opts.tcp, udp=opts.udp and sink.uso, max_segments=opts.max_segments)
        self._tables.append(table)
        spare: list[PacketBatch] = []

        def process(batch: PacketBatch) -> PacketBatch:
            n = len(batch)
            if n < 2:
                return batch
            if batch.vnet_hdr:
                # Only plain packets (no flags, no GSO type) can merge; skip the copy otherwise.
                buf = batch.buffer
                plain = 0
                for off in batch.offsets:
                    if not (buf[off - HEADROOM] | buf[off - HEADROOM + 1]):
                        plain += 1
                if plain < 2:
                    return batch
            out = spare[0] if spare else None
            if out is None or out.capacity < batch.end or out.max_packets < n:
                out = PacketBatch(capacity=max(batch.capacity, batch.end), max_packets=max(n, 128))
                spare[:] = [out]
            table.coalesce(batch, out)
            return out

        return process

    def statistics(self) -> StageStatistics:
        stats = super().statistics()
        counters = {"coalesced": 0, "gso_packets": 0, "invalid_checksum": 0, "too_large": 0}
        for t in self._tables:
            s = t.statistics()
            counters["coalesced"] += s.coalesced
            counters["gso_packets"] += s.gso_packets
            counters["invalid_checksum"] += s.invalid_checksum
            counters["too_large"] += s.too_large
        return attrs.evolve(stats, counters=counters)
