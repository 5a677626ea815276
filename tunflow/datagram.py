"""Batches of UDP datagrams in one contiguous arena, sans-I/O: :class:`DatagramBatch`.

The one datagram batch of tunflow: transports receive into it and send from it, the WireGuard
core encrypts into it and decrypts from it, and pipeline stages see it where a batch crosses
the network side of a :class:`~tunflow.pipeline.Tunnel`.

It is a :class:`~tunflow.packet.PacketBatch` with two differences that batching UDP needs:

* **no headroom** — datagrams are written back to back, so a run of equal-sized datagrams to
  one address is one contiguous slice a transport hands to a single ``sendmsg`` with
  ``UDP_SEGMENT`` (:meth:`DatagramBatch.gso_groups`), and one ``UDP_GRO`` read lands as a run
  of datagrams in place (:meth:`DatagramBatch.add_segments`);
* **an address per datagram** — where it came from, or where it goes (``None``: a connected
  transport's peer).

A batch made with ``gather=True`` also takes *gathered* groups (:meth:`DatagramBatch.add_gathered`):
datagrams that stay in their writer's buffers as a list of parts and go out with one gathering
``sendmsg``, so a writer that would otherwise interleave headers and data by copying (tunflow's
native fast mode) copies nothing.

This module must not import ``os``, ``socket`` or any event loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from .errors import PacketTooLargeError
from .packet import PacketBatch, _kept_indices, _not_bytes

__all__ = [
    "Address",
    "DatagramBatch",
    "UDP_MAX_SEGMENTS",
    "UDP_MAX_GSO_BYTES",
]

#: A UDP endpoint, ``(host, port)``. Transports normalise IPv6 4-tuples and IPv4-mapped IPv6
#: addresses to this form, so one peer always has one address.
Address = tuple[str, int]
#: The most segments Linux accepts in one ``UDP_SEGMENT`` send (``UDP_MAX_SEGMENTS``).
UDP_MAX_SEGMENTS: Final = 64
#: The most payload bytes in one ``UDP_SEGMENT`` send: the IPv4 limit (65535 - 20 - 8); a
#: larger send fails with ``EMSGSIZE``.
UDP_MAX_GSO_BYTES: Final = 65507
#: Default datagram limit of a batch: high enough never to bind before the arena does.
_MAX_DATAGRAMS: Final = 1 << 16


class DatagramBatch(PacketBatch):
    """Datagrams packed back to back in one preallocated ``bytearray``, each with an address.

    Args:
        capacity: size of the arena in bytes.
        max_packets: the most datagrams the batch takes (readers stop there; by default the
            arena is always full first).

    The attributes are public for hot loops, as in :class:`~tunflow.packet.PacketBatch`:
    ``buffer``/``view`` (the arena), ``offsets``/``lengths`` (where each datagram starts and
    how long it is), ``addresses`` (each datagram's peer: the source after a receive, the
    destination for a send; ``None`` is a connected transport's peer), ``end`` (the first
    free byte) and ``origin`` (the transport a received batch came from, so an answer can go
    back the same way — a pipeline stage answering a handshake uses it; ``None`` otherwise). There is no headroom: :meth:`header`, :meth:`with_header` and
    :meth:`zero_headers` raise, and ``vnet_hdr`` is always ``False``.

    Example:
        >>> b = DatagramBatch(4096)
        >>> b.append(b"abc", address=("192.0.2.1", 51820))
        >>> b.append(b"def", address=("192.0.2.1", 51820))
        >>> b.gso_groups()
        [(('192.0.2.1', 51820), 0, 6, 3)]
        >>> b.to_pairs()
        [(b'abc', ('192.0.2.1', 51820)), (b'def', ('192.0.2.1', 51820))]
    """

    __slots__ = (
        "_gathered_at",
        "addresses",
        "gather",
        "gather_slots",
        "gathered",
        "gathered_bytes",
        "origin",
    )

    def __init__(
        self, capacity: int = 256 * 1024, max_packets: int = _MAX_DATAGRAMS, *, gather: bool = False
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        if max_packets < 1:
            raise ValueError("max_packets must be at least 1")
        self.buffer = bytearray(capacity)
        self.view = memoryview(self.buffer)
        self.offsets: list[int] = []
        self.lengths: list[int] = []
        self.end = 0
        self.max_packets = max_packets
        self.vnet_hdr = False
        self.addresses: list[Any] = []
        self.origin: Any = None
        #: whether writers may hand datagrams over as gathered groups (:meth:`add_gathered`)
        self.gather = gather
        #: gathered groups, ``(address, parts, length, segment_size)``, sent after the arena's
        self.gathered: list[tuple[Any, list[memoryview], int, int]] = []
        #: the bytes in :attr:`gathered`
        self.gathered_bytes = 0
        #: buffers a gathering writer keeps its groups' bytes in, owned by this batch so two
        #: batches never share them (tunflow's native mode keeps its ``SendSlots`` here)
        self.gather_slots: Any = None
        # how many arena datagrams preceded each gathered group: the sending order
        self._gathered_at: list[int] = []

    def __repr__(self) -> str:
        return f"<DatagramBatch {len(self.offsets)} datagrams, {self.end}/{len(self.buffer)} bytes>"

    # -- space -------------------------------------------------------------------------------

    def room(self) -> int:
        """The largest datagram that still fits (0 when the batch is full)."""
        if len(self.offsets) >= self.max_packets:
            return 0
        return len(self.buffer) - self.end

    def reserve(self) -> int:
        """The offset at which the next datagram would start (:attr:`end`: no headroom)."""
        return self.end

    # -- access ------------------------------------------------------------------------------

    def datagram(self, i: int) -> memoryview:
        """Datagram ``i`` as a ``memoryview`` into the arena (no copy)."""
        off = self.offsets[i]
        return self.view[off : off + self.lengths[i]]

    def address(self, i: int) -> Any:
        """The peer of datagram ``i`` (``None``: a connected transport's peer)."""
        return self.addresses[i]

    def header(self, i: int) -> memoryview:
        """Datagrams have no headroom.

        Raises:
            TypeError: always.
        """
        raise TypeError("a DatagramBatch has no headroom (datagrams are back to back)")

    def with_header(self, i: int) -> memoryview:
        """Datagrams have no headroom.

        Raises:
            TypeError: always.
        """
        raise TypeError("a DatagramBatch has no headroom (datagrams are back to back)")

    def zero_headers(self) -> None:
        """Datagrams have no headroom.

        Raises:
            TypeError: always.
        """
        raise TypeError("a DatagramBatch has no virtio-net headers to zero")

    # -- adding ------------------------------------------------------------------------------

    def append(
        self,
        data: bytes | bytearray | memoryview,
        header: bytes | None = None,
        *,
        address: Any = None,
    ) -> None:
        """Copy ``data`` in as the next datagram, for (or from) ``address``.

        Args:
            data: the datagram.
            header: must be ``None`` (a datagram has no virtio-net header); it is here so a
                :class:`DatagramBatch` can stand wherever a ``PacketBatch`` is written.
            address: its peer.

        Raises:
            PacketTooLargeError: it does not fit in the free space, or the batch is full.
            TypeError: ``header`` was given (an address passed by position lands there), or
                ``data`` is a ``memoryview`` whose items are not single bytes.
        """
        if header is not None:
            raise TypeError("a datagram has no virtio-net header; pass its peer as address=")
        n = len(data)
        off = self.end
        if off + n > len(self.buffer) or len(self.offsets) >= self.max_packets:
            raise PacketTooLargeError(f"a {n}-byte datagram does not fit: {self.room()} bytes left")
        try:
            self.buffer[off : off + n] = data
        except BufferError:
            # more bytes than items: the slice would resize the arena, which its view pins
            raise _not_bytes(data) from None
        self.offsets.append(off)
        self.lengths.append(n)
        self.addresses.append(address)
        self.end = off + n

    def extend(self, packets: Iterable[bytes | bytearray | memoryview]) -> None:
        """:meth:`append` each datagram, without an address."""
        for p in packets:
            self.append(p)

    def commit(self, offset: int, length: int, address: Any = None) -> None:
        """Record a datagram of ``length`` bytes already written at ``offset`` (≥ :attr:`end`)."""
        self.offsets.append(offset)
        self.lengths.append(length)
        self.addresses.append(address)
        self.end = offset + length

    def add_gathered(
        self, parts: list[memoryview], length: int, segment_size: int, address: Any
    ) -> None:
        """Add a group of datagrams that stays in its writer's buffers.

        ``parts``, joined, are ``length`` bytes: datagrams of ``segment_size`` bytes back to back
        (the last may be shorter) — one ``sendmsg`` with ``UDP_SEGMENT`` gathers them, so they
        must fit one: at most :data:`UDP_MAX_SEGMENTS` datagrams and :data:`UDP_MAX_GSO_BYTES`
        bytes. The writer keeps the buffers unchanged until the batch was sent and cleared.
        They are not datagrams of the arena: ``len(batch)`` does not count them.

        Raises:
            ValueError: the group is empty, too large, or the batch was not made with
                ``gather=True``.
        """
        if not self.gather:
            raise ValueError("this batch takes no gathered groups (make it with gather=True)")
        if (
            length <= 0
            or segment_size <= 0
            or length > max(segment_size, UDP_MAX_GSO_BYTES)
            or -(-length // segment_size) > UDP_MAX_SEGMENTS
        ):
            raise ValueError(f"a gathered group of {length} bytes in {segment_size}-byte segments")
        self.gathered.append((address, parts, length, segment_size))
        self._gathered_at.append(len(self.offsets))
        self.gathered_bytes += length

    def add_segments(self, offset: int, total: int, segment_size: int, address: Any) -> int:
        """Register a ``UDP_GRO`` read: ``total`` bytes at ``offset`` cut every ``segment_size``.

        The transport reads into :attr:`buffer` at :attr:`end` and calls this with the
        ``UDP_GRO`` control message's segment size (or ``total`` when there was none).

        Returns:
            The number of datagrams added.

        Raises:
            ValueError: the region starts before :attr:`end` (over datagrams already in the
                batch), reaches past the arena or has a negative length, or ``segment_size``
                is not positive; nothing is added.
        """
        if segment_size <= 0 or offset < self.end or total < 0 or offset + total > len(self.buffer):
            raise ValueError(
                f"add_segments: {total} bytes at {offset} in {segment_size}-byte segments do not "
                f"lie in the free space {self.end}-{len(self.buffer)} of the arena"
            )
        if total <= segment_size:
            # the common case of a read without GRO: no loop
            self.offsets.append(offset)
            self.lengths.append(total)
            self.addresses.append(address)
            self.end = offset + total
            return 1
        stop = offset + total
        full, last = divmod(total, segment_size)
        self.offsets.extend(range(offset, stop, segment_size))
        self.lengths.extend([segment_size] * full)
        count = full
        if last:
            self.lengths.append(last)
            count += 1
        self.addresses.extend([address] * count)
        self.end = stop
        return count

    # -- removing ----------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every datagram and the transport they came from (``origin``); the arena
        is reused."""
        self.offsets.clear()
        self.lengths.clear()
        self.addresses.clear()
        self.end = 0
        self.vnet_hdr = False
        self.origin = None
        if self.gathered:
            self.gathered.clear()
            self._gathered_at.clear()
            self.gathered_bytes = 0

    def keep(self, indices: Iterable[int]) -> None:
        """Keep only the datagrams at ``indices`` (ascending), with their addresses.

        Raises:
            ValueError: the batch has gathered groups (their place among the datagrams would
                be lost), or an index is out of range (a negative one too), repeated or out of
                order — :meth:`gso_groups` takes the arena's datagrams to be in ascending
                order and would send the bytes between them; the batch is left as it was.
        """
        if self.gathered:
            raise ValueError("keep() on a batch with gathered groups")
        idx = _kept_indices(indices, len(self.offsets))
        offsets, lengths, addrs = self.offsets, self.lengths, self.addresses
        self.offsets = [offsets[i] for i in idx]
        self.lengths = [lengths[i] for i in idx]
        self.addresses = [addrs[i] for i in idx]

    # -- reading out -------------------------------------------------------------------------

    def to_pairs(self) -> list[tuple[bytes, Any]]:
        """Copies of the datagrams with their addresses (for tests and slow paths)."""
        view = self.view
        return [
            (bytes(view[o : o + n]), a)
            for o, n, a in zip(self.offsets, self.lengths, self.addresses, strict=True)
        ]

    def send_groups(
        self, max_segments: int = UDP_MAX_SEGMENTS, max_bytes: int = UDP_MAX_GSO_BYTES
    ) -> list[tuple[Any, Any, int, int]]:
        """Everything to send, in the order it was added: :meth:`gso_groups` of the arena's
        datagrams with the :attr:`gathered` groups in their places (``(address, parts,
        length, segment_size)``: the second item is a list of parts instead of an offset).

        Example:
            >>> b = DatagramBatch(64, gather=True)
            >>> b.append(b"first", address=("192.0.2.1", 1))
            >>> b.add_gathered([memoryview(b"sec"), memoryview(b"ond")], 6, 6, ("192.0.2.1", 1))
            >>> b.append(b"third", address=("192.0.2.1", 1))
            >>> [g[1] if isinstance(g[1], int) else b"".join(g[1]) for g in b.send_groups()]
            [0, b'second', 5]
        """
        if not self.gathered:
            arena: list[tuple[Any, Any, int, int]] = self.gso_groups(max_segments, max_bytes)
            return arena
        groups: list[tuple[Any, Any, int, int]] = []
        prev = 0
        for at, group in zip(self._gathered_at, self.gathered, strict=True):
            if at > prev:
                groups += self.gso_groups(max_segments, max_bytes, start=prev, stop=at)
                prev = at
            groups.append(group)
        if prev < len(self.offsets):
            groups += self.gso_groups(max_segments, max_bytes, start=prev)
        return groups

    def gso_groups(
        self,
        max_segments: int = UDP_MAX_SEGMENTS,
        max_bytes: int = UDP_MAX_GSO_BYTES,
        *,
        start: int = 0,
        stop: int | None = None,
    ) -> list[tuple[Any, int, int, int]]:
        """Group datagrams for ``UDP_SEGMENT`` sends.

        A group is consecutive datagrams to the same address, contiguous in the arena, all of
        one size except a shorter last one, at most ``max_segments`` long and ``max_bytes``
        in total — exactly what one ``sendmsg`` with ``UDP_SEGMENT=segment_size`` sends.
        ``start``/``stop`` limit it to datagrams ``start … stop - 1``. Gathered groups are not
        included: :meth:`send_groups` places them among these.

        Returns:
            ``(address, offset, length, segment_size)`` per group; send
            ``view[offset:offset + length]``. A group of one datagram has
            ``segment_size == length`` (send it without ``UDP_SEGMENT``).
        """
        offs, lens, addrs = self.offsets, self.lengths, self.addresses
        n = len(offs) if stop is None else min(stop, len(offs))
        if n == start + 1:
            # one datagram (a ping, a lone ACK): its own group, without the search below
            seg = lens[start]
            return [(addrs[start], offs[start], seg, seg)]
        groups: list[tuple[Any, int, int, int]] = []
        i = start
        while i < n:
            addr, start, seg = addrs[i], offs[i], lens[i]
            if seg <= 0:
                groups.append((addr, start, seg, seg))
                i += 1
                continue
            limit = min(n, i + max_segments, i + max_bytes // seg)
            # The longest run of datagrams of exactly ``seg`` bytes from i, found with list
            # comparisons (C loops) by doubling then halving, instead of one Python step per
            # datagram: a native message is ~45 equal fragments.
            m = 1
            step = 1
            while i + m + step <= limit and lens[i + m : i + m + step] == [seg] * step:
                m += step
                step *= 2
            while step > 1:
                step //= 2
                if i + m + step <= limit and lens[i + m : i + m + step] == [seg] * step:
                    m += step
            # equal-sized, increasing offsets: contiguous exactly when the last one fits
            while m > 1 and offs[i + m - 1] != start + seg * (m - 1):
                m = _contiguous_prefix(offs, i, m, seg)
            if m > 1 and addrs[i : i + m].count(addr) != m:
                m = _same_address_prefix(addrs, i, m, addr)
            end = start + seg * m
            j = i + m
            # a shorter last datagram may close the group (not an empty one: it would add no
            # bytes, and not be sent)
            if (
                j < n
                and j < i + max_segments
                and offs[j] == end
                and 0 < lens[j] < seg
                and end + lens[j] - start <= max_bytes
                and (addrs[j] is addr or addrs[j] == addr)
            ):
                end += lens[j]
                j += 1
            groups.append((addr, start, end - start, seg))
            i = j
        return groups


def _contiguous_prefix(offs: list[int], i: int, m: int, seg: int) -> int:
    start = offs[i]
    k = 1
    while k < m and offs[i + k] == start + seg * k:
        k += 1
    return k


def _same_address_prefix(addrs: list[Any], i: int, m: int, addr: Any) -> int:
    k = 1
    while k < m and (addrs[i + k] is addr or addrs[i + k] == addr):
        k += 1
    return k
