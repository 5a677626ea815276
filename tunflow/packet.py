"""Packets and batches of packets, sans-I/O.

A :class:`PacketBatch` holds many packets in one ``bytearray`` arena: packet *i* is
``batch.buffer[batch.offsets[i] : batch.offsets[i] + batch.lengths[i]]``. There is no object per
packet; stages walk ``offsets``/``lengths`` and slice the one ``memoryview``. Every packet has
:data:`HEADROOM` bytes in front of it: room for its 10-byte virtio-net header, so an offload
device can read header and packet in one ``readv`` and write them back in one ``write``.

This module also holds the small header helpers a stage author needs (IP version, addresses,
protocol) and the Internet checksum. It must not import ``os``, ``socket`` or any event loop.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Final

from .errors import MalformedPacketError, PacketTooLargeError, TruncatedPacketError

__all__ = [
    "HEADROOM",
    "IDEAL_BATCH_SIZE",
    "MAX_PACKET_SIZE",
    "PACKET_INFORMATION_LENGTH",
    "PacketBatch",
    "ip_version",
    "validate_ip_packet",
    "checksum",
    "checksum_no_fold",
    "pseudo_header_checksum_no_fold",
    "checksum_update",
]

#: Bytes reserved in front of every packet of a batch (the virtio-net header's size).
HEADROOM: Final = 10
#: The batch size tun-rs and wireguard-go use; a 64 KiB super-packet with MSS ≥ 512 fits.
IDEAL_BATCH_SIZE: Final = 128
#: The largest IP packet (and the largest offload super-packet) the kernel hands over.
MAX_PACKET_SIZE: Final = 65535
#: The length of the header a device built with ``packet_information()`` keeps in front of
#: every packet, read and written (tun-rs's ``PACKET_INFORMATION_LENGTH``): Linux's
#: ``struct tun_pi`` (16 bits of flags, then the EtherType, big-endian: ``0x0800`` IPv4,
#: ``0x86DD`` IPv6), the 4-byte big-endian address family of macOS, iOS and the BSDs.
PACKET_INFORMATION_LENGTH: Final = 4

_ZERO_HEADROOM: Final = bytes(HEADROOM)


class PacketBatch:
    """Packets in one preallocated arena, with headroom before each.

    Args:
        capacity: size of the arena in bytes.
        max_packets: the most packets the batch takes (the readers stop there).

    The attributes are public on purpose; a stage's hot loop reads them directly:

    * ``buffer`` — the arena (a ``bytearray`` that never changes size);
    * ``view`` — a ``memoryview`` of ``buffer``;
    * ``offsets`` / ``lengths`` — where each packet starts and how long it is;
    * ``vnet_hdr`` — ``True`` when the :data:`HEADROOM` bytes before every packet hold a valid
      virtio-net header (offload devices and GRO produce such batches). When ``False`` the
      headroom is unspecified and a writer that needs headers zeroes it.

    Example:
        >>> batch = PacketBatch(capacity=4096)
        >>> batch.append(b"\\x45" + bytes(19))
        >>> len(batch), batch.lengths[0]
        (1, 20)
        >>> bytes(batch.packet(0)[:1])
        b'E'
    """

    __slots__ = ("buffer", "end", "lengths", "max_packets", "offsets", "view", "vnet_hdr")

    def __init__(self, capacity: int = 256 * 1024, max_packets: int = IDEAL_BATCH_SIZE) -> None:
        if capacity < HEADROOM + 1:
            raise ValueError(f"batch capacity must be at least {HEADROOM + 1} bytes")
        if max_packets < 1:
            raise ValueError("max_packets must be at least 1")
        self.buffer = bytearray(capacity)
        self.view = memoryview(self.buffer)
        self.offsets: list[int] = []
        self.lengths: list[int] = []
        #: first free byte of the arena
        self.end = 0
        self.max_packets = max_packets
        self.vnet_hdr = False

    def __len__(self) -> int:
        # (the per-batch paths of a tunnel write len(batch.offsets): this is a Python call,
        # a dozen of them a packet when each batch is one packet)
        return len(self.offsets)

    def __bool__(self) -> bool:
        return bool(self.offsets)

    def __iter__(self) -> Iterator[memoryview]:
        view = self.view
        for off, n in zip(self.offsets, self.lengths, strict=True):
            yield view[off : off + n]

    def __repr__(self) -> str:
        return (
            f"<PacketBatch {len(self.offsets)} packets, {self.nbytes} bytes, "
            f"{self.end}/{len(self.buffer)} used>"
        )

    @property
    def capacity(self) -> int:
        """Size of the arena in bytes."""
        return len(self.buffer)

    @property
    def nbytes(self) -> int:
        """Total bytes of the packets (headers in the headroom not counted)."""
        return sum(self.lengths)

    @property
    def full(self) -> bool:
        """Whether the batch holds ``max_packets`` packets."""
        return len(self.offsets) >= self.max_packets

    def room(self) -> int:
        """The largest packet that still fits (0 when none does)."""
        if len(self.offsets) >= self.max_packets:
            return 0
        return max(0, len(self.buffer) - self.end - HEADROOM)

    def packet(self, i: int) -> memoryview:
        """Packet ``i`` as a ``memoryview`` into the arena (no copy)."""
        off = self.offsets[i]
        return self.view[off : off + self.lengths[i]]

    def header(self, i: int) -> memoryview:
        """The :data:`HEADROOM` bytes before packet ``i`` (its virtio-net header)."""
        off = self.offsets[i]
        return self.view[off - HEADROOM : off]

    def with_header(self, i: int) -> memoryview:
        """Packet ``i`` preceded by its virtio-net header, as an offload device writes it."""
        off = self.offsets[i]
        return self.view[off - HEADROOM : off + self.lengths[i]]

    def reserve(self) -> int:
        """The offset at which the next packet would start; check :meth:`room` first."""
        return self.end + HEADROOM

    def commit(self, offset: int, length: int) -> None:
        """Record a packet of ``length`` bytes written in place at ``offset``.

        ``offset`` must be the value of :meth:`reserve` (or later in the free space).
        """
        self.offsets.append(offset)
        self.lengths.append(length)
        self.end = offset + length

    def append(self, data: bytes | bytearray | memoryview, header: bytes | None = None) -> None:
        """Copy ``data`` in as the next packet, optionally with its virtio-net ``header``.

        Raises:
            PacketTooLargeError: the packet does not fit in the free space of the arena.
            ValueError: ``header`` is not :data:`HEADROOM` (10) bytes; nothing is added.
            TypeError: ``data`` or ``header`` is a ``memoryview`` whose items are not single
                bytes (cast it to ``"B"``); nothing is added.
        """
        if header is not None and len(header) != HEADROOM:
            # (a slice of another length would resize the arena: a BufferError, mid-copy)
            raise ValueError(f"a virtio-net header is {HEADROOM} bytes, not {len(header)}")
        n = len(data)
        off = self.end + HEADROOM
        if off + n > len(self.buffer) or len(self.offsets) >= self.max_packets:
            raise PacketTooLargeError(
                f"a {n}-byte packet does not fit: {self.room()} bytes and "
                f"{self.max_packets - len(self.offsets)} slots left in the batch"
            )
        try:
            self.buffer[off : off + n] = data
        except BufferError:
            # more bytes than items: the slice would resize the arena, which its view pins
            raise _not_bytes(data) from None
        if header is not None:
            try:
                self.buffer[off - HEADROOM : off] = header
            except BufferError:
                raise _not_bytes(header, "header") from None
        elif self.vnet_hdr:
            self.buffer[off - HEADROOM : off] = _ZERO_HEADROOM
        self.offsets.append(off)
        self.lengths.append(n)
        self.end = off + n

    def extend(self, packets: Iterable[bytes | bytearray | memoryview]) -> None:
        """:meth:`append` each packet in turn."""
        for p in packets:
            self.append(p)

    def clear(self) -> None:
        """Forget every packet; the arena is reused."""
        self.offsets.clear()
        self.lengths.clear()
        self.end = 0
        self.vnet_hdr = False

    def keep(self, indices: Iterable[int]) -> None:
        """Keep only the packets at ``indices`` (ascending), in that order. No bytes move.

        Raises:
            ValueError: an index is out of range (a negative one too: not counted from the
                end), repeated, or out of order — which would keep a wrong packet, one packet
                twice or reorder the batch; the batch is left as it was.
        """
        idx = _kept_indices(indices, len(self.offsets))
        offsets, lengths = self.offsets, self.lengths
        self.offsets = [offsets[i] for i in idx]
        self.lengths = [lengths[i] for i in idx]

    def zero_headers(self) -> None:
        """Zero every packet's virtio-net header and mark the batch ``vnet_hdr``."""
        buf = self.buffer
        for off in self.offsets:
            buf[off - HEADROOM : off] = _ZERO_HEADROOM
        self.vnet_hdr = True

    def to_list(self) -> list[bytes]:
        """Copies of the packets as ``bytes`` (for tests and slow paths)."""
        view = self.view
        return [bytes(view[o : o + n]) for o, n in zip(self.offsets, self.lengths, strict=True)]


def _larger_copy(batch: PacketBatch, capacity: int, max_packets: int) -> PacketBatch:
    """A new batch of ``capacity`` bytes and ``max_packets`` slots holding ``batch``'s packets
    (their headers too) at the same offsets: for a writer whose batch ran out of room."""
    end = batch.end
    new = PacketBatch(capacity, max_packets)
    new.buffer[:end] = batch.view[:end]
    new.offsets = batch.offsets.copy()
    new.lengths = batch.lengths.copy()
    new.end = end
    new.vnet_hdr = batch.vnet_hdr
    return new


def _not_bytes(value: object, what: str = "data") -> TypeError:
    """The error for a buffer whose items are not single bytes (its ``len`` is not its size)."""
    if isinstance(value, memoryview):
        return TypeError(
            f"{what} is a memoryview of format {value.format!r} and shape {value.shape}: "
            "pass bytes, or a one-dimensional memoryview cast to 'B'"
        )
    return TypeError(f"{what} must be bytes or a one-dimensional buffer of bytes")


def _kept_indices(indices: Iterable[int], count: int) -> list[int] | tuple[int, ...] | range:
    """``indices`` as a sequence, checked to ascend (each once) within ``0 … count - 1``.

    Raises:
        ValueError: an index is out of range, repeated or out of order.
    """
    idx = indices if isinstance(indices, list | tuple | range) else list(indices)
    if idx:
        # ascending, so the ends bound them all (~3 µs for 128 indices, most of it the
        # ascending check of a list; a range is checked at once)
        if isinstance(idx, range):
            ascending = idx.step > 0 or len(idx) == 1
        else:
            ascending = all(map(operator.lt, idx, islice(idx, 1, None)))
        if not ascending or idx[0] < 0 or idx[-1] >= count:
            shown = list(idx[:8]) + (["..."] if len(idx) > 8 else [])
            raise ValueError(
                f"keep: indices must ascend, each once, each below {count}; got "
                f"{', '.join(map(str, shown))}"
            )
    return idx


def ip_version(packet: bytes | bytearray | memoryview) -> int:
    """The IP version nibble of ``packet`` (4 or 6), or 0 for an empty packet."""
    return packet[0] >> 4 if len(packet) else 0


def validate_ip_packet(
    packet: bytes | bytearray | memoryview, mtu: int | None = None, length: int | None = None
) -> None:
    """Check that ``packet`` is a whole IPv4 or IPv6 packet before it is written to a TUN.

    Checks the version nibble, the minimum header length and that the length fields agree with
    the buffer, so a caller gets a message naming the problem instead of the kernel's bare
    ``EINVAL``.

    ``length``: the whole packet's length when ``packet`` holds only its start — at least its
    first 40 bytes, or all of it when shorter (a packet in several buffers).

    Raises:
        MalformedPacketError: the version nibble is not 4 or 6, or a length field is wrong.
        TruncatedPacketError: the buffer is shorter than the header says.
        PacketTooLargeError: longer than ``mtu`` (when given) or 65535 bytes.
    """
    n = len(packet) if length is None else length
    if n == 0:
        raise TruncatedPacketError("empty packet")
    if n > MAX_PACKET_SIZE:
        raise PacketTooLargeError(f"{n}-byte packet exceeds the IP maximum of {MAX_PACKET_SIZE}")
    if mtu is not None and n > mtu:
        raise PacketTooLargeError(f"{n}-byte packet exceeds the device MTU of {mtu}")
    v = packet[0] >> 4
    if v == 4:
        if n < 20:
            raise TruncatedPacketError(
                f"IPv4 packet of {n} bytes is shorter than its 20-byte header"
            )
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20:
            raise MalformedPacketError(f"IPv4 header length {ihl} is below 20")
        total = (packet[2] << 8) | packet[3]
        if total < ihl:
            raise MalformedPacketError(f"IPv4 total length {total} is below header length {ihl}")
        if total > n:
            raise TruncatedPacketError(f"IPv4 total length {total} but only {n} bytes given")
        if total != n:
            raise MalformedPacketError(f"IPv4 total length {total} but {n} bytes given")
    elif v == 6:
        if n < 40:
            raise TruncatedPacketError(
                f"IPv6 packet of {n} bytes is shorter than its 40-byte header"
            )
        plen = (packet[4] << 8) | packet[5]
        if 40 + plen > n:
            raise TruncatedPacketError(f"IPv6 payload length {plen} but only {n - 40} bytes follow")
        if 40 + plen != n:
            raise MalformedPacketError(f"IPv6 payload length {plen} but {n - 40} bytes follow")
    else:
        raise MalformedPacketError(f"IP version nibble is {v}, not 4 or 6")


# --- Internet checksum (RFC 1071) -------------------------------------------------------------
#
# Why ``int.from_bytes(data, "big") % 0xFFFF``: 2**16 ≡ 1 (mod 0xFFFF), so a buffer read as one
# big-endian integer is congruent to the sum of its 16-bit words, and one's-complement addition
# *is* addition modulo 0xFFFF except that it never yields 0 for a non-zero sum (it yields 0xFFFF,
# "negative zero"). Both steps run in C; benchmarks/checksum.py measures this at 8-10x the speed
# of ``sum(memoryview.cast("H"))`` or ``array``/``struct`` word sums. CPython's ``% small_int``
# costs ~1.1 ns/byte (one hardware division per 30-bit digit) against ~0.2 ns/byte for a shift
# and an add, so long buffers are first folded in halves (``hi + lo`` at a 16-bit-aligned split
# keeps the residue) down to ``_FOLD_BITS``; that is ~15 % faster at 1500 bytes and ~40 % at 64 KiB.

#: Fold by halves while the integer is wider than this (bits); measured in benchmarks/checksum.py.
_FOLD_BITS: Final = 4096
#: a ``bytes.translate`` table keeping each byte's high nibble (an IP version, a data offset)
_HIGH_NIBBLE: Final = bytes(b & 0xF0 for b in range(256))


@functools.lru_cache(maxsize=64)  # bounded: GSO traffic uses a handful of sizes
def _mask(bits: int) -> int:
    return (1 << bits) - 1


def _sum16(data: bytes | bytearray | memoryview) -> int:
    """Sum of ``data`` as big-endian 16-bit words, reduced into 0..0xFFFF (0 only if all zero)."""
    n = len(data)
    x = int.from_bytes(data, "big")
    if not x:
        return 0
    bits = n << 3
    while bits > _FOLD_BITS:
        half = (bits >> 1) & ~15
        x = (x >> half) + (x & _mask(half))
        bits = half + 1
    if n & 1:
        # An odd trailing byte is the high byte of a last word: the padded buffer is x * 256.
        x <<= 8
    return x % 0xFFFF or 0xFFFF


def checksum_no_fold(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The one's-complement sum of ``data`` as 16-bit big-endian words, not yet folded.

    An odd trailing byte counts as the high byte of a last word. The result is ``initial`` plus a
    value in ``0..0xFFFF`` (``0`` only for all-zero data), so sums of several buffers may be added
    before :func:`checksum` folds them.

    Args:
        data: the bytes to sum.
        initial: an unfolded sum to add (for example a pseudo-header sum).

    Returns:
        The unfolded sum, a non-negative ``int``.

    Example:
        >>> hex(checksum(b"", checksum_no_fold(b"\\x01\\x02\\x01")))
        '0x202'
    """
    return initial + _sum16(data)


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The folded 16-bit one's-complement sum of ``data`` plus ``initial`` (not complemented).

    Store ``~checksum(...) & 0xFFFF`` in a header; a received header verifies when
    ``checksum(header) == 0xFFFF``.

    Args:
        data: the bytes to sum.
        initial: an unfolded sum to add (any non-negative ``int``).

    Returns:
        The folded sum in ``0..0xFFFF``; ``0`` only when ``data`` and ``initial`` are all zero,
        ``0xFFFF`` for a non-zero sum that is a multiple of 0xFFFF (as an end-around-carry adder).

    Example:
        >>> hex(checksum(b"\\x01\\x02\\x01\\x02\\x01\\x02", 0x1000))
        '0x1306'
    """
    # _sum16 inlined: a call costs ~30 % of a 20-byte header's checksum (benchmarks/checksum.py).
    n = len(data)
    x = int.from_bytes(data, "big")
    if x:
        bits = n << 3
        while bits > _FOLD_BITS:
            half = (bits >> 1) & ~15
            x = (x >> half) + (x & _mask(half))
            bits = half + 1
        if n & 1:
            x <<= 8
        s = initial + (x % 0xFFFF or 0xFFFF)
    else:
        s = initial
    # Folding with end-around carries maps any s > 0 onto 1..0xFFFF, congruent modulo 0xFFFF.
    return (s - 1) % 0xFFFF + 1 if s > 0xFFFF else s


def pseudo_header_checksum_no_fold(
    protocol: int, src: bytes | memoryview, dst: bytes | memoryview, length: int
) -> int:
    """The unfolded sum of the TCP/UDP pseudo-header (IPv4 or IPv6, by address length).

    Args:
        protocol: the IP protocol number (6 for TCP, 17 for UDP).
        src: the source address, 4 or 16 bytes.
        dst: the destination address, 4 or 16 bytes.
        length: the TCP/UDP length (header plus payload).

    Returns:
        An unfolded sum to pass as ``initial`` to :func:`checksum`.

    Example:
        >>> hex(checksum(b"", pseudo_header_checksum_no_fold(6, bytes([192, 168, 1, 1]),
        ...                                                  bytes([192, 168, 1, 2]), 1492)))
        '0x892e'
    """
    # Each address read as one integer is congruent to the sum of its words and non-zero exactly
    # when they are, so the plain sum is a valid unfolded representative: no division needed.
    return int.from_bytes(src, "big") + int.from_bytes(dst, "big") + protocol + length


def checksum_update(field: int, old: int, new: int) -> int:
    """Patch a stored checksum after one 16-bit word changed (RFC 1624, eqn. 3).

    Saves re-summing a packet when a stage rewrites a port, a TTL/protocol word or half an
    address (call once per changed word).

    Args:
        field: the checksum as stored in the header (already complemented).
        old: the 16-bit word before the change.
        new: the 16-bit word after it.

    Returns:
        The new value for the checksum field.

    Example:
        >>> hdr = bytearray.fromhex("4500003c1c4640004006 0000 ac100a63ac100a0c")
        >>> hdr[10:12] = (~checksum(hdr) & 0xFFFF).to_bytes(2, "big")
        >>> old = int.from_bytes(hdr[8:10], "big"); hdr[8] -= 1  # TTL 64 -> 63
        >>> f = checksum_update(int.from_bytes(hdr[10:12], "big"), old, int.from_bytes(hdr[8:10], "big"))
        >>> hdr[10:12] = f.to_bytes(2, "big"); checksum(hdr)
        65535
    """
    s = (~field & 0xFFFF) + (~old & 0xFFFF) + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
