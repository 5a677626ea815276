"""``gso``: split GSO super-packets into MTU-sized packets with complete checksums.

Wraps :func:`tunflow.offload.gso_split`. Put it before a stage that needs real packets or a sink
without offload; a batch without super-packets passes through untouched (no copy), so on an
inbound path of plain datagrams it costs one look at each header. A super-packet whose headers
do not add up is dropped and counted (``malformed:<error>``).
"""

from __future__ import annotations

from tunflow.errors import MalformedPacketError, OffloadError, PacketTooLargeError
from tunflow.offload import gso_segment_count, gso_split
from tunflow.packet import HEADROOM, PacketBatch
from tunflow.pipeline import Lane, Processor, StageBase

__all__ = ["GSOStage"]

# Bytes a segment adds beyond its share of the payload: headroom plus repeated headers (an
# IPv6 header with extension headers and a TCP header with options stay well within this).
_PER_SEGMENT = HEADROOM + 256


class GSOStage(StageBase):
    """Split super-packets (GSO) into plain MTU-sized packets.

    Statistics: ``counters`` ``split`` (super-packets split) and ``segments`` (packets made).
    """

    plugin = "gso"
    summary = "split GSO super-packets into MTU-sized packets with complete checksums"
    splits = True

    def process(self, batch: PacketBatch) -> PacketBatch:
        return self.bind(Lane())(batch)

    def bind(self, lane: Lane) -> Processor:
        spare: list[PacketBatch] = []
        drop = self.drop
        counters = self._counters

        def process(batch: PacketBatch) -> PacketBatch:
            if not batch.vnet_hdr:
                return batch
            buf = batch.buffer
            offsets = batch.offsets
            if not any(buf[off - HEADROOM] | buf[off - HEADROOM + 1] for off in offsets):
                batch.vnet_hdr = False  # plain packets: flags and GSO type are all zero
                return batch
            view = batch.view
            counts: list[int] = []
            total = 0
            for i, off in enumerate(offsets):
                if buf[off - HEADROOM] | buf[off - HEADROOM + 1]:
                    try:
                        c = gso_segment_count(view[off - HEADROOM : off + batch.lengths[i]])
                    except (MalformedPacketError, OffloadError) as exc:
                        drop("malformed:" + type(exc).__name__)
                        c = -1
                else:
                    c = 0
                counts.append(c)
                total += max(c, 1)
            need = batch.end + total * _PER_SEGMENT
            out = spare[0] if spare else None
            if out is None or out.capacity < need or out.max_packets < total:
                out = PacketBatch(capacity=need, max_packets=max(total, 128))
                spare[:] = [out]
            out.clear()
            split = segments = 0
            for i, off in enumerate(offsets):
                c = counts[i]
                if c == 0:
                    out.append(view[off : off + batch.lengths[i]])
                elif c > 0:
                    try:
                        gso_split(view[off - HEADROOM : off + batch.lengths[i]], out)
                    except (MalformedPacketError, OffloadError, PacketTooLargeError) as exc:
                        drop("malformed:" + type(exc).__name__)
                        continue
                    split += 1
                    segments += c
            counters["split"] = counters.get("split", 0) + split
            counters["segments"] = counters.get("segments", 0) + segments
            return out

        return process
