"""Batches of UDP datagrams in one contiguous arena, sans-I/O.

:class:`DatagramBatch` is the transport-side twin of :class:`tunflow.packet.PacketBatch`: the
encrypt path writes header and ciphertext of each datagram straight into ``buffer``, back to back
with no gaps, so a run of equal-sized datagrams to one address is one slice a transport can hand
to ``sendmsg`` with ``UDP_SEGMENT`` (:meth:`DatagramBatch.gso_groups`). The decrypt path reads
datagrams from it, e.g. a ``UDP_GRO`` read registered with :meth:`DatagramBatch.add_segments`.

Addresses are whatever the transport uses (``(host, port)`` tuples); each datagram carries one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from ...errors import PacketTooLargeError

__all__ = ["Address", "DatagramBatch", "UDP_MAX_SEGMENTS"]

#: A UDP endpoint, ``(host, port)`` as the socket module gives it.
Address = tuple[str, int]
#: The most segments Linux accepts in one ``UDP_SEGMENT`` send.
UDP_MAX_SEGMENTS: Final = 64


class DatagramBatch:
    """Datagrams packed back to back in one preallocated ``bytearray``.

    Args:
        capacity: size of the arena in bytes.

    Attributes (public for hot loops, as in :class:`~tunflow.packet.PacketBatch`):
        buffer: the arena; ``view`` is a ``memoryview`` of it.
        offsets / lengths: where each datagram starts and how long it is.
        addresses: each datagram's peer address (the destination when sending, the source
            when receiving).
        end: the first free byte.

    Example:
        >>> b = DatagramBatch(4096)
        >>> b.append(b"abc", ("192.0.2.1", 51820))
        >>> b.append(b"def", ("192.0.2.1", 51820))
        >>> b.gso_groups()
        [(('192.0.2.1', 51820), 0, 6, 3)]
    """

    __slots__ = ("addresses", "buffer", "end", "lengths", "offsets", "view")

    def __init__(self, capacity: int = 256 * 1024) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.buffer = bytearray(capacity)
        self.view = memoryview(self.buffer)
        self.offsets: list[int] = []
        self.lengths: list[int] = []
        self.addresses: list[Any] = []
        self.end = 0

    def __len__(self) -> int:
        return len(self.offsets)

    def __bool__(self) -> bool:
        return bool(self.offsets)

    def __iter__(self) -> Iterator[tuple[memoryview, Any]]:
        view = self.view
        for off, n, addr in zip(self.offsets, self.lengths, self.addresses, strict=True):
            yield view[off : off + n], addr

    def __repr__(self) -> str:
        return f"<DatagramBatch {len(self.offsets)} datagrams, {self.end}/{len(self.buffer)} bytes>"

    @property
    def capacity(self) -> int:
        """Size of the arena in bytes."""
        return len(self.buffer)

    def room(self) -> int:
        """Bytes still free at the end of the arena."""
        return len(self.buffer) - self.end

    def datagram(self, i: int) -> memoryview:
        """Datagram ``i`` as a ``memoryview`` into the arena (no copy)."""
        off = self.offsets[i]
        return self.view[off : off + self.lengths[i]]

    def append(self, data: bytes | bytearray | memoryview, address: Any) -> None:
        """Copy ``data`` in as the next datagram.

        Raises:
            PacketTooLargeError: it does not fit in the free space.
        """
        n = len(data)
        off = self.end
        if off + n > len(self.buffer):
            raise PacketTooLargeError(f"a {n}-byte datagram does not fit: {self.room()} bytes left")
        self.buffer[off : off + n] = data
        self.offsets.append(off)
        self.lengths.append(n)
        self.addresses.append(address)
        self.end = off + n

    def commit(self, offset: int, length: int, address: Any) -> None:
        """Record a datagram of ``length`` bytes already written at ``offset`` (≥ :attr:`end`)."""
        self.offsets.append(offset)
        self.lengths.append(length)
        self.addresses.append(address)
        self.end = offset + length

    def add_segments(self, offset: int, total: int, segment_size: int, address: Any) -> int:
        """Register a ``UDP_GRO`` read: ``total`` bytes at ``offset`` cut every ``segment_size``.

        The transport reads into :attr:`buffer` at :attr:`end` and calls this with the
        ``UDP_GRO`` control message's segment size (or ``total`` when there was none).

        Returns:
            The number of datagrams added.

        Raises:
            ValueError: the region is outside the arena or ``segment_size`` is not positive.
        """
        if segment_size <= 0 or offset < 0 or offset + total > len(self.buffer):
            raise ValueError("segments outside the arena or non-positive segment size")
        count = 0
        pos, stop = offset, offset + total
        while pos < stop:
            n = min(segment_size, stop - pos)
            self.offsets.append(pos)
            self.lengths.append(n)
            self.addresses.append(address)
            pos += n
            count += 1
        self.end = max(self.end, stop)
        return count

    def clear(self) -> None:
        """Forget every datagram; the arena is reused."""
        self.offsets.clear()
        self.lengths.clear()
        self.addresses.clear()
        self.end = 0

    def to_list(self) -> list[tuple[bytes, Any]]:
        """Copies of the datagrams with their addresses (for tests and slow paths)."""
        view = self.view
        return [
            (bytes(view[o : o + n]), a)
            for o, n, a in zip(self.offsets, self.lengths, self.addresses, strict=True)
        ]

    def gso_groups(self, max_segments: int = UDP_MAX_SEGMENTS) -> list[tuple[Any, int, int, int]]:
        """Group datagrams for ``UDP_SEGMENT`` sends.

        A group is consecutive datagrams to the same address, contiguous in the arena, all of
        one size except a shorter last one, at most ``max_segments`` long — exactly what one
        ``sendmsg`` with ``UDP_SEGMENT=segment_size`` sends.

        Returns:
            ``(address, offset, length, segment_size)`` per group; send
            ``view[offset:offset + length]``. A group of one datagram has
            ``segment_size == length`` (send it without ``UDP_SEGMENT``).
        """
        groups: list[tuple[Any, int, int, int]] = []
        offs, lens, addrs = self.offsets, self.lengths, self.addresses
        n = len(offs)
        i = 0
        while i < n:
            addr, start, seg = addrs[i], offs[i], lens[i]
            end = start + seg
            j = i + 1
            if seg > 0:
                while j < n and j - i < max_segments:
                    if offs[j] != end or lens[j] > seg or addrs[j] != addr:
                        break
                    end += lens[j]
                    j += 1
                    if lens[j - 1] < seg:
                        break
            groups.append((addr, start, end - start, seg))
            i = j
        return groups
