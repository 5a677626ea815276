"""Offload glue between an ``IFF_VNET_HDR`` queue and the device faces.

With offload the kernel hands a reader TCP/UDP *super-packets* of up to 64 KiB, each behind a
10-byte virtio-net header, and accepts them back. Python pays per system call, so this is how
tunflow moves gigabits: fewer, larger packets.

* :class:`OffloadRx` turns what the queue reads into what the caller asked for: packets
  *whole* (super-packets with their header in the batch headroom, for pipelines that carry them
  end to end) or *split* into MTU-sized packets with complete checksums (the default, so every
  platform yields the same bare IP packets). A split that runs out of room keeps the rest for
  the next call — nothing is lost.
* :class:`OffloadTx` coalesces plain packets with a :class:`~tunflow.offload.GROTable` before
  writing, and handles a kernel that refuses GSO writes with ``EINVAL`` (a known kernel
  regression, tailscale/tailscale#13041; or a USO write of more segments than the kernel takes):
  the refused super-packet is split and written as plain packets, and the event is counted.
  When the refused super-packet was one the table coalesced, coalescing of its protocol — TCP
  or UDP, not both — is turned off for the device; one a caller passed through whole (a
  pipeline carrying a peer's super-packets end to end) changes nothing.
"""

from __future__ import annotations

import errno
from typing import Final

from ..errors import MalformedPacketError, OffloadError, PacketError, PacketTooLargeError
from ..offload import (
    VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    GROTable,
    gso_segment_count,
    gso_split,
    gso_split_size,
)
from ..packet import HEADROOM, IDEAL_BATCH_SIZE, MAX_PACKET_SIZE, PacketBatch
from ..platform._base import OffloadInfo, Queue
from ..platform._unix import scatter

__all__ = ["OffloadRx", "OffloadTx", "split_for_plain_queue", "zero_headers_only"]

_RAW_CAPACITY: Final = 1 << 20
_TCP_GSO: Final = frozenset({VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6})
_UDP_GSO: Final = frozenset({VIRTIO_NET_HDR_GSO_UDP, VIRTIO_NET_HDR_GSO_UDP_L4})
_ZERO_HEADER: Final = bytes(HEADROOM)
#: The most segments a refused super-packet not coalesced here (a caller's, passed through
#: whole) is split into; one of more is dropped instead. Far above what a TCP/IP stack makes
#: (64 KiB at Linux's smallest MSS, 48 bytes: 1366 segments; UDP GSO: 64 or 128), while a
#: peer's super-packet of one-byte segments would cost ~0.2 s of CPU a split.
MAX_REFUSED_SEGMENTS: Final = 4096


class OffloadRx:
    """Reads whole packets from a vnet-header queue and hands them out whole or split."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self._raw = PacketBatch(capacity=_RAW_CAPACITY, max_packets=IDEAL_BATCH_SIZE)
        self._raw.vnet_hdr = True
        self._i = 0  # next raw packet to hand out
        self._seg = 0  # next segment of raw packet _i (0 when none handed out yet)
        self._one = PacketBatch(capacity=256 * 1024, max_packets=IDEAL_BATCH_SIZE)
        self._one_i = 0
        #: super-packets (GSO type not none) read from the kernel
        self.super_packets = 0
        #: packets read from the kernel that could not be parsed (dropped)
        self.malformed = 0

    def _fill(self) -> bool:
        """Read more from the kernel once everything read before is handed out."""
        raw = self._raw
        if self._i < len(raw):
            return True
        raw.clear()
        raw.vnet_hdr = True
        self._i = self._seg = 0
        n = self._queue.recv_batch(raw, MAX_PACKET_SIZE)
        if n:
            self.count_super_packets(raw, 0)
        return n > 0

    def count_super_packets(self, batch: PacketBatch, start: int) -> None:
        """Count the super-packets among the packets of ``batch`` from ``start`` (as read)."""
        view = batch.view
        for off in batch.offsets[start:]:
            if view[off - HEADROOM + 1] != VIRTIO_NET_HDR_GSO_NONE:
                self.super_packets += 1

    def pending(self) -> bool:
        """Whether packets read from the kernel are still to be handed out."""
        return self._i < len(self._raw.offsets) or self._one_i < len(self._one.offsets)

    def recv_whole(self, out: PacketBatch) -> int:
        """Append whole packets, headers in their headroom; leftovers of a split go first."""
        if self._i < len(self._raw.offsets) or self._one_i < len(self._one.offsets):
            # (pending(), inline: this runs once per read) Something half-handed-out: finish
            # it split, so no packet is lost or repeated.
            return self.recv_split(out)
        before = len(out.offsets)
        n = self._queue.recv_batch(out, MAX_PACKET_SIZE)
        if n:
            self.count_super_packets(out, before)
        return n

    def recv_split(self, out: PacketBatch) -> int:
        """Append plain packets (segments of super-packets, checksums complete) to ``out``."""
        added = self._take_single_leftovers(out)
        raw = self._raw
        view = raw.view
        while True:
            if self._i >= len(raw) and not self._fill():
                return added
            off = raw.offsets[self._i]
            n = raw.lengths[self._i]
            if view[off - HEADROOM] == 0 and view[off - HEADROOM + 1] == VIRTIO_NET_HDR_GSO_NONE:
                # Plain packet, checksum complete: copy it over as it is.
                if out.room() < n:
                    return added
                out.append(view[off : off + n])
                added += 1
                self._i += 1
                continue
            src = view[off - HEADROOM : off + n]
            before = len(out)
            try:
                total = gso_segment_count(src)
                nxt = gso_split(src, out, start=self._seg)
            except PacketTooLargeError:
                # (``out`` is empty: the split returns early otherwise) it stays the next one;
                # the caller says so, and learns the MTU raised outside tunflow
                return added
            except (PacketError, OffloadError):
                # The kernel should never hand us these; drop and count, never raise.
                self.malformed += 1
                self._i += 1
                self._seg = 0
                continue
            added += len(out) - before
            if nxt < total:
                self._seg = nxt
                return added
            self._i += 1
            self._seg = 0

    def _take_single_leftovers(self, out: PacketBatch) -> int:
        one = self._one
        added = 0
        while self._one_i < len(one) and out.room() >= one.lengths[self._one_i]:
            out.append(one.packet(self._one_i))
            self._one_i += 1
            added += 1
        return added

    def _next_one(self) -> int:
        """The index in ``_one`` of the next plain packet; :class:`BlockingIOError` when none
        is waiting."""
        one = self._one
        if self._one_i >= len(one):
            one.clear()
            self._one_i = 0
            if not self.recv_split(one):
                raise BlockingIOError(errno.EAGAIN, "no packet waiting")
        return self._one_i

    def recv_one(self) -> bytes:
        """One plain packet; :class:`BlockingIOError` when none is waiting."""
        i = self._next_one()
        p = self._one.packet(i).tobytes()
        self._one_i = i + 1
        return p

    def recv_one_into(self, view: memoryview) -> int:
        """One plain packet into ``view``; its length.

        Raises:
            BlockingIOError: none is waiting.
            PacketTooLargeError: the packet is larger than ``view``; it stays the next one.
        """
        i = self._next_one()
        n = self._one.lengths[i]
        if n > len(view):
            raise PacketTooLargeError(
                f"a {n}-byte packet does not fit a {len(view)}-byte buffer (it stays queued)"
            )
        view[:n] = self._one.packet(i)
        self._one_i = i + 1
        return n

    def recv_one_vectored(self, views: list[memoryview], room: int) -> int:
        """One plain packet across ``views`` (``room`` bytes in all); its length. Raises as
        :meth:`recv_one_into`."""
        i = self._next_one()
        n = self._one.lengths[i]
        if n > room:
            raise PacketTooLargeError(
                f"a {n}-byte packet does not fit buffers of {room} bytes (it stays queued)"
            )
        scatter(self._one.packet(i), views)
        self._one_i = i + 1
        return n


class OffloadTx:
    """Coalesces plain batches for a vnet-header queue and survives ``EINVAL`` on GSO writes."""

    def __init__(self, offload: OffloadInfo) -> None:
        #: the GRO rules; ``tcp``/``udp`` may be switched off at run time
        self.table = GROTable(tcp=True, udp=offload.uso)
        self._uso = offload.uso
        self._out = PacketBatch(capacity=_RAW_CAPACITY, max_packets=IDEAL_BATCH_SIZE)
        #: kernel refusals of a GSO write, each written split instead
        self.refusals = 0
        #: ...of which refusals of a super-packet coalesced here (each turned its protocol's
        #: coalescing off)
        self.gro_disabled = 0
        #: ...of which TCP super-packets, and UDP ones (a GSO type that is neither counts in
        #: ``gro_disabled`` only and turns both off)
        self.gro_disabled_tcp = 0
        self.gro_disabled_udp = 0
        # whether the kernel refused a GSO write of the protocol: then no table coalesces it
        # for this device again (the next refusal would cost a split and a second write)
        self._refused_tcp = False
        self._refused_udp = False

    @property
    def gro_enabled(self) -> bool:
        return self.table.tcp or bool(self.table.udp)

    def prepare(self, batch: PacketBatch, table: GROTable | None = None) -> PacketBatch:
        """The batch to write: ``batch`` itself if it has headers (or GRO is off), else the
        coalesced copy (by ``table``, default the device's; a protocol the kernel refused a
        GSO write of is left out whatever the table says; a table's ``udp=None`` is the
        device's USO)."""
        gro = table if table is not None else self.table
        tcp = gro.tcp and not self._refused_tcp
        udp = (self._uso if gro.udp is None else gro.udp) and not self._refused_udp
        if batch.vnet_hdr or not (tcp or udp) or len(batch.offsets) < 2:
            return batch
        out = self._out
        if out.capacity < batch.end or out.max_packets < len(batch):
            out = self._out = PacketBatch(
                capacity=max(out.capacity, batch.end), max_packets=max(len(batch), IDEAL_BATCH_SIZE)
            )
        if tcp == gro.tcp and udp == gro.udp:
            gro.coalesce(batch, out)
        else:  # a caller's table (or the device's, switched back on): this write without it
            switches = gro.tcp, gro.udp
            gro.tcp, gro.udp = tcp, udp
            try:
                gro.coalesce(batch, out)
            finally:
                gro.tcp, gro.udp = switches
        return out

    def is_gso(self, batch: PacketBatch, i: int) -> bool:
        """Whether packet ``i`` of ``batch`` is written as a GSO super-packet."""
        return (
            batch.vnet_hdr
            and batch.view[batch.offsets[i] - HEADROOM + 1] != VIRTIO_NET_HDR_GSO_NONE
        )

    def refused(self, batch: PacketBatch, i: int) -> PacketBatch:
        """Packet ``i`` of ``batch`` was refused with ``EINVAL``: return plain packets to write
        instead (its segments), after turning coalescing off for its protocol if ``batch`` is
        what :meth:`prepare` coalesced.

        A super-packet passed through whole (a caller's batch with headers) changes nothing:
        turning coalescing off would not spare the next such one (those are never coalesced),
        and any sender whose packets reach the device — a peer whose super-packets a pipeline
        carries end to end — could turn it off for all traffic. A kernel that refuses GSO
        writes refuses the table's own next, at the cost of one more split.

        A refused UDP super-packet (USO: more segments than the kernel takes in one write, say)
        says nothing about TCP, and a refused TCP one nothing about UDP: only the protocol of
        the refused one is turned off.

        A header the split cannot follow (an unknown GSO type, a zero segment size, offsets
        out of the packet), or a packet of one segment, changes nothing: the refusal was the
        packet's, not the kernel's.

        Raises:
            MalformedPacketError: the packet carried no GSO — the kernel refused the packet
                itself — or a GSO header the split cannot follow.
            OffloadError: the header cannot be split either, or it is a caller's super-packet
                of more than :data:`MAX_REFUSED_SEGMENTS` segments (not split: dropped).
        """
        if not self.is_gso(batch, i):
            raise MalformedPacketError("write: the kernel refused the packet (EINVAL)")
        # split first: a header the split cannot follow is the packet's fault (a caller's
        # batch with headers), which says nothing about the kernel, and changes nothing here
        src = batch.with_header(i)
        count = gso_segment_count(src)
        if count > MAX_REFUSED_SEGMENTS and batch is not self._out:
            # (one coalesced here has no more segments than the packets it was made of)
            raise OffloadError(
                f"a refused super-packet of {count} segments (more than "
                f"{MAX_REFUSED_SEGMENTS}) is not split"
            )
        # Room for every segment at once (a refused super-packet may have more than 128), from
        # its own headers: every segment repeats them, and IPv6 extension headers may make
        # them far longer than a TCP/IP header.
        fallback = PacketBatch(capacity=gso_split_size(src), max_packets=count)
        fallback.vnet_hdr = True
        if gso_split(src, fallback) < count:  # pragma: no cover - sized above
            raise OffloadError("could not split a refused super-packet")
        self.refusals += 1
        if count < 2 or batch is not self._out:
            # not a super-packet GRO made (passed through whole, or one segment, which GRO
            # never makes): nothing learnt, GRO stays on
            return fallback
        gso_type = batch.view[batch.offsets[i] - HEADROOM + 1] & ~VIRTIO_NET_HDR_GSO_ECN
        if gso_type in _TCP_GSO:
            self.gro_disabled_tcp += 1
            self._refused_tcp = True
        elif gso_type in _UDP_GSO:
            self.gro_disabled_udp += 1
            self._refused_udp = True
        else:  # no GSO type GRO makes: nothing to learn about either protocol, both off
            self._refused_tcp = self._refused_udp = True
        self.gro_disabled += 1
        if self._refused_tcp:
            self.table.tcp = False
        if self._refused_udp:
            self.table.udp = False
        return fallback


def split_for_plain_queue(batch: PacketBatch) -> tuple[PacketBatch, int]:
    """``batch`` (``vnet_hdr`` set) as a queue without offload takes it: super-packets split
    and partial checksums completed (the kernel would do both behind a vnet-header queue; a
    plain one writes the bare packet, which nothing accepts), plain packets as they are; and
    how many packets had a header the split cannot follow (left out). ``batch`` itself when
    every header is zero."""
    view = batch.view
    offsets, lengths = batch.offsets, batch.lengths
    if all(view[off - HEADROOM : off] == _ZERO_HEADER for off in offsets):
        return batch, 0
    sizes: list[tuple[int, int]] = []  # (segments, arena bytes) per packet; (0, 0): left out
    for off, n in zip(offsets, lengths, strict=True):
        src = view[off - HEADROOM : off + n]
        try:
            sizes.append((gso_segment_count(src), gso_split_size(src)))
        except (PacketError, OffloadError):
            sizes.append((0, 0))
    out = PacketBatch(
        capacity=max(HEADROOM + 1, sum(b for _, b in sizes)),
        max_packets=max(1, sum(k for k, _ in sizes)),
    )
    dropped = 0
    for off, n, (k, _) in zip(offsets, lengths, sizes, strict=True):
        if k:
            gso_split(view[off - HEADROOM : off + n], out)
        else:
            dropped += 1
    return out, dropped


def zero_headers_only(batch: PacketBatch) -> tuple[PacketBatch, int]:
    """``batch`` (``vnet_hdr`` set) as a TAP or packet-information queue without offload takes
    it: the packets whose header is zero, and how many others were left out — such a queue
    writes the bare packet, so a partial checksum would go out as it is and a super-packet as
    one oversized frame, and :func:`split_for_plain_queue` reads IP packets, not frames nor
    packets behind a 4-byte header. ``batch`` itself when every header is zero."""
    view = batch.view
    zero = [
        (off, n)
        for off, n in zip(batch.offsets, batch.lengths, strict=True)
        if view[off - HEADROOM : off] == _ZERO_HEADER
    ]
    if len(zero) == len(batch.offsets):
        return batch, 0
    out = PacketBatch(capacity=batch.capacity, max_packets=max(1, len(zero)))
    for off, n in zero:
        out.append(view[off : off + n])
    return out, len(batch.offsets) - len(zero)
