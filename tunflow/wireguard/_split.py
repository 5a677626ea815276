"""Cutting super-packets read whole (virtio-net headers in the headroom) into MTU-sized
packets with complete checksums, for a WireGuard-mode peer among native ones: the runtime's
port and the ``wireguard`` stage both do it."""

from __future__ import annotations

from typing import Final

from ..errors import MalformedPacketError, OffloadError, PacketTooLargeError
from ..offload import VIRTIO_NET_HDR_GSO_NONE, gso_segment_count, gso_split, gso_split_size
from ..packet import HEADROOM, PacketBatch, _larger_copy

#: The most bytes the segments of one batch's super-packets, split for a WireGuard peer
#: among native ones, may take (16 super-packets of 64 KiB cut into 48-byte TCP segments,
#: the smallest MSS Linux sends, take 2.4 MiB); what does not fit is dropped and counted
_SPLIT_LIMIT: Final = 16 << 20


def _split_whole(
    batch: PacketBatch, start: int, out: PacketBatch | None, limit: int = _SPLIT_LIMIT
) -> tuple[PacketBatch, int, int]:
    """Packets ``start…`` of ``batch`` (read whole, virtio-net headers in the headroom) as
    MTU-sized packets with complete checksums, in ``out`` — made anew when missing or too
    small, and grown (up to ``limit`` bytes) while the segments need more: super-packets are
    cut by :func:`~tunflow.offload.gso_split`, plain packets copied.

    Returns ``out`` (a new batch when it was made or grown), the packets dropped as malformed
    (super-packets that do not split) and the packets that found no room within ``limit``.
    """
    offsets, lengths = batch.offsets, batch.lengths
    need = (batch.end - offsets[start] if start < len(offsets) else 0) * 2 + (1 << 16)
    if out is None or out.capacity < need:
        out = PacketBatch(capacity=need, max_packets=8192)
    out.clear()
    view = batch.view
    malformed = lost = 0
    for off, n in zip(offsets[start:], lengths[start:], strict=True):
        if view[off - HEADROOM + 1] == VIRTIO_NET_HDR_GSO_NONE and not view[off - HEADROOM]:
            try:
                out.append(view[off : off + n])
            except PacketTooLargeError:
                out = _grown(out, n + HEADROOM, 1, limit)
                if out.room() < n:
                    lost += 1
                    continue
                out.append(view[off : off + n])
            continue
        src = view[off - HEADROOM : off + n]
        try:
            i = gso_split(src, out)
            # (it stops early only when the next segment, at most ``n`` bytes, found no room)
            while out.room() < n:
                count = gso_segment_count(src)
                if i == count:
                    break
                grown = _grown(out, gso_split_size(src), count - i, limit)
                if grown is out:
                    lost += count - i
                    break
                out = grown
                i = gso_split(src, out, start=i)
        except (MalformedPacketError, OffloadError, PacketTooLargeError):
            malformed += 1
    return out, malformed, lost


def _grown(out: PacketBatch, nbytes: int, packets: int, limit: int) -> PacketBatch:
    """A copy of ``out`` with room for ``nbytes`` and ``packets`` more (at least twice its
    size, at most ``limit`` bytes); ``out`` itself when it cannot grow."""
    capacity = min(limit, max(2 * out.capacity, out.end + nbytes + HEADROOM))
    if capacity <= out.capacity:
        return out
    return _larger_copy(out, capacity, max(2 * out.max_packets, len(out.offsets) + packets))
