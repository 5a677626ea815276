"""``gso``: split GSO super-packets into MTU-sized packets with complete checksums.

Wraps :func:`tunflow.offload.gso_split`. Put it before a stage that needs real packets or a sink
without offload; a batch without super-packets passes through untouched (no copy), so on an
inbound path of plain datagrams it costs one look at each header. A super-packet whose headers
do not add up is dropped and counted (``malformed:<error>``).
"""

from __future__ import annotations

from tunflow.errors import MalformedPacketError, OffloadError, PacketTooLargeError
from tunflow.offload import (
    VIRTIO_NET_HDR_GSO_NONE,
    decode_vnet_hdr,
    gso_segment_count,
    gso_split,
)
from tunflow.packet import HEADROOM, PacketBatch
from tunflow.pipeline import Lane, Processor, StageBase

__all__ = ["GSOStage"]

# The longest TCP header (data offset 15 words); a UDP header is 8 bytes.
_MAX_L4_HEADER = 60


def _split_size(length: int, segments: int, csum_start: int) -> int:
    """Arena bytes the ``segments`` packets split from a ``length``-byte IP packet take, at most.

    Every segment repeats the headers — ``csum_start`` bytes of IP and extension headers (which
    :func:`gso_segment_count` checked lie exactly before the transport header) plus a transport
    header of at most 60 bytes — and has its headroom; the payload is shared out once.
    """
    return length + segments * (csum_start + _MAX_L4_HEADER + HEADROOM)


def _grow(out: PacketBatch, capacity: int, max_packets: int) -> PacketBatch:
    """A larger batch holding ``out``'s packets (with their headroom), for a split that ran out
    of room (not expected: the size is an upper bound; kept so nothing is ever lost)."""
    bigger = PacketBatch(capacity=capacity, max_packets=max_packets)
    bigger.vnet_hdr = out.vnet_hdr
    for i in range(len(out)):
        bigger.append(out.packet(i), header=bytes(out.header(i)))
    return bigger


class GSOStage(StageBase):
    """Split super-packets (GSO) into plain MTU-sized packets.

    Statistics: ``counters`` ``split`` (super-packets split) and ``segments`` (packets made,
    a packet whose checksum was only completed — no GSO type — among them).
    """

    plugin = "gso"
    summary = "split GSO super-packets into MTU-sized packets with complete checksums"
    splits = True

    def process(self, batch: PacketBatch) -> PacketBatch:
        return self._unbound_processor()(batch)

    def bind(self, lane: Lane) -> Processor:
        spare: list[PacketBatch] = []
        drop = self.drop
        counters = self._counters

        def process(batch: PacketBatch) -> PacketBatch:
            if not batch.vnet_hdr:
                return batch
            buf = batch.buffer
            offsets = batch.offsets
            lengths = batch.lengths
            if not any(buf[off - HEADROOM] | buf[off - HEADROOM + 1] for off in offsets):
                batch.vnet_hdr = False  # plain packets: flags and GSO type are all zero
                return batch
            view = batch.view
            counts: list[int] = []
            slots = 0
            need = 0
            for i, off in enumerate(offsets):
                n = lengths[i]
                if buf[off - HEADROOM] | buf[off - HEADROOM + 1]:
                    try:
                        c = gso_segment_count(view[off - HEADROOM : off + n])
                    except (MalformedPacketError, OffloadError) as exc:
                        drop("malformed:" + type(exc).__name__)
                        c = -1
                    else:
                        need += _split_size(n, c, decode_vnet_hdr(buf, off - HEADROOM)[4])
                else:
                    c = 0
                    need += HEADROOM + n
                counts.append(c)
                slots += max(c, 1)
            out = spare[0] if spare else None
            if out is None or out.capacity < need or out.max_packets < slots:
                out = PacketBatch(capacity=max(need, 1 << 16), max_packets=max(slots, 128))
                spare[:] = [out]
            out.clear()
            split = segments = 0
            for i, off in enumerate(offsets):
                c = counts[i]
                if c == 0:
                    out.append(view[off : off + lengths[i]])
                elif c > 0:
                    src = view[off - HEADROOM : off + lengths[i]]
                    try:
                        done = gso_split(src, out)
                        while done < c:  # out of room: grow (keeping what is there) and go on
                            out = _grow(out, 2 * out.capacity, out.max_packets + slots)
                            spare[:] = [out]
                            done = gso_split(src, out, start=done)
                    except (MalformedPacketError, OffloadError, PacketTooLargeError) as exc:
                        drop("malformed:" + type(exc).__name__)
                        continue
                    # (a packet with only a checksum to complete is one segment, no split)
                    split += buf[off - HEADROOM + 1] != VIRTIO_NET_HDR_GSO_NONE
                    segments += done
            counters["split"] = counters.get("split", 0) + split
            counters["segments"] = counters.get("segments", 0) + segments
            return out

        return process
