"""tunflow's *native fast mode*: one AEAD call per offload super-packet. NOT WireGuard.

Between two tunflow peers a whole TUN offload super-packet — its 10-byte virtio-net header and
up to 64 KiB of packet — is sealed with ONE AEAD call, instead of WireGuard's one ChaCha20-
Poly1305 call per ≤ MTU packet (≈ 1.2 µs of fixed cost each). Format version 1 seals with
AES-256-GCM, whose cost per byte is a third of ChaCha20-Poly1305's on CPUs with AES instructions
(version 0 used ChaCha20-Poly1305; a peer of the other version drops the messages as
malformed). The keys come from the same WireGuard handshake (see
:data:`~.session.NATIVE_KEY_LABEL`); counter, replay window and nonce space are separate from the
WireGuard ones. A WireGuard implementation drops these messages as an unknown
type; only peers configured with ``native_mode=True`` on both sides use them.

Wire format
-----------
The sealed message (ciphertext ‖ tag, 26 bytes longer than the packet) is cut into N ≤ 255
*fragments*, each one UDP datagram::

    offset  size  field
    0       1     type = 0x7F (WireGuard uses 1-4 followed by three zero bytes)
    1       1     fragment index, 0 … N-1
    2       1     fragment count N, 1 … 255
    3       1     version = 1 (AES-256-GCM; 0 was ChaCha20-Poly1305)
    4       4     receiver index (LE; same place as in WireGuard transport messages)
    8       8     counter (LE; the AEAD nonce is 32 zero bits ‖ counter, as in WireGuard)
    16      2     chunk size C (LE): bytes of sealed message in every fragment but the last
    18      2     reserved = 0
    20      …     bytes [index·C, min((index+1)·C, len)) of the sealed message

The AEAD's associated data is this 20-byte header with the index byte set to 0, so every field
but the index is authenticated and fragments of different messages cannot be mixed. The
plaintext is ``virtio_net_hdr (10 bytes) ‖ super-packet`` without padding.

All fragments of one message except the last have the same size (20 + C), and the sender writes
them back to back, so one message is one ``UDP_SEGMENT`` send and arrives as one ``UDP_GRO``
read when nothing is lost or reordered — as long as it fits the kernel's 65507-byte limit of one
send: a typical TCP super-packet (≤ 63.5 KiB, 45 fragments for C = 1432) does; the largest
(64 KiB, 46 fragments) takes two sends. The receiver reassembles by (receiver index, counter) in any order, keeps at most
:data:`MAX_PARTIAL_MESSAGES` incomplete messages per session (the oldest is dropped), checks the
replay window before the AEAD — fragment by fragment, before a message's first fragment is
stored; a whole run of one read, once its headers are found to be one message's and its chunks
copied together — and again after it, and loses the whole message if any fragment is lost:
there is no retransmission (the inner TCP retransmits, as over WireGuard).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator
from itertools import repeat
from typing import Final

from ...datagram import UDP_MAX_GSO_BYTES, UDP_MAX_SEGMENTS
from ...packet import HEADROOM, MAX_PACKET_SIZE, PacketBatch
from ._crypto import InvalidTag
from .constants import MESSAGE_NATIVE, REJECT_AFTER_MESSAGES, TAG_SIZE
from .datagrams import Address, DatagramBatch
from .replay import WINDOW_SIZE
from .session import Session

__all__ = [
    "NATIVE_HEADER",
    "NATIVE_HEADER_SIZE",
    "NATIVE_VERSION",
    "MAX_NATIVE_PLAINTEXT",
    "MAX_SEALED_SIZE",
    "MIN_FRAGMENT_SIZE",
    "MAX_PARTIAL_MESSAGES",
    "OpenResult",
    "is_native",
    "fragment_count",
    "seal_native",
    "seal_native_gathered",
    "SendSlots",
    "open_native",
    "open_native_run",
    "open_native_scattered",
]

NATIVE_HEADER: Final = struct.Struct("<BBBBIQHH")
NATIVE_HEADER_SIZE: Final = 20
NATIVE_VERSION: Final = 1
#: virtio-net header plus the largest super-packet.
MAX_NATIVE_PLAINTEXT: Final = HEADROOM + MAX_PACKET_SIZE
MAX_SEALED_SIZE: Final = MAX_NATIVE_PLAINTEXT + TAG_SIZE
_MIN_CHUNK: Final = -(-MAX_SEALED_SIZE // 255)
#: The smallest fragment (datagram) size that fits a maximal message in 255 fragments.
MIN_FRAGMENT_SIZE: Final = NATIVE_HEADER_SIZE + _MIN_CHUNK
#: Incomplete messages kept per session while their fragments arrive.
MAX_PARTIAL_MESSAGES: Final = 8
_COUNTER: Final = struct.Struct("<Q")
_unpack_header: Final = NATIVE_HEADER.unpack_from
_ZERO_HDR: Final = bytes(HEADROOM)
_INDICES: Final = bytes(range(256))
_LAYOUTS: dict[tuple[int, int], tuple[list[slice], list[slice], list[slice]]] = {}


def _consume(it: Iterator[object]) -> None:
    deque(it, maxlen=0)


def _layout(chunk: int, count: int) -> tuple[list[slice], list[slice], list[slice]]:
    """Where headers and chunks of a ``count``-fragment message go (relative to its start),
    and where the chunks come from in the sealed message (all but the last chunk)."""
    key = (chunk, count)
    layout = _LAYOUTS.get(key)
    if layout is None:
        step = chunk + NATIVE_HEADER_SIZE
        layout = (
            [slice(k * step, k * step + NATIVE_HEADER_SIZE) for k in range(count)],
            [slice(k * step + NATIVE_HEADER_SIZE, (k + 1) * step) for k in range(count - 1)],
            [slice(k * chunk, (k + 1) * chunk) for k in range(count - 1)],
        )
        if len(_LAYOUTS) >= 1024:  # bounded: a few chunk sizes x at most 255 counts
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    return layout


class OpenResult:
    """What :func:`open_native` did with a fragment (plain ints: this is the hot path)."""

    COMPLETE: Final = 1  #: a message completed and its packet was appended
    INCOMPLETE: Final = 0  #: the fragment was stored; more are needed
    MALFORMED: Final = -1  #: bad header or length
    REPLAY: Final = -2  #: the counter was already accepted or is outside the window
    BAD_AEAD: Final = -3  #: the reassembled message did not authenticate
    NO_ROOM: Final = -4  #: the output batch is full (the fragment was not consumed)


def is_native(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` looks like a native fast-mode fragment (type byte 0x7F)."""
    return len(data) >= NATIVE_HEADER_SIZE and data[0] == MESSAGE_NATIVE


def fragment_count(plaintext_length: int, fragment_size: int) -> int:
    """How many fragments a message of ``plaintext_length`` (header + packet) needs."""
    chunk = fragment_size - NATIVE_HEADER_SIZE
    return -(-(plaintext_length + TAG_SIZE) // chunk)


def seal_native(
    session: Session,
    message: bytes | bytearray | memoryview,
    out: DatagramBatch,
    address: Address | None,
    fragment_size: int,
    scratch: bytearray,
) -> int:
    """Seal one ``virtio_net_hdr ‖ super-packet`` with one AEAD call and append its fragments.

    Args:
        session: the session (its native key and counter are used).
        message: the 10-byte virtio-net header followed by the packet, e.g.
            ``batch.with_header(i)``; at most :data:`MAX_NATIVE_PLAINTEXT` bytes.
        out: the datagrams go here, back to back, each with ``address``.
        address: the peer's endpoint.
        fragment_size: datagram size of every fragment but the last (≥
            :data:`MIN_FRAGMENT_SIZE`).
        scratch: a buffer of at least :data:`MAX_SEALED_SIZE` bytes, reused between calls.

    Returns:
        The number of fragments appended; 0 when ``out`` has no room or the counter is
        exhausted (nothing was written and the counter did not move).

    Raises:
        ValueError: ``message`` is too long or too short, or ``fragment_size`` too small.
    """
    sealed_len, chunk = _sizes(message, fragment_size)
    return _seal_into_arena(
        session, message, out, address, fragment_size, scratch, sealed_len, chunk
    )


def _sizes(message: bytes | bytearray | memoryview, fragment_size: int) -> tuple[int, int]:
    """``(sealed length, chunk size)`` of ``message`` cut for ``fragment_size``.

    Raises:
        ValueError: ``message`` is too long or too short, or ``fragment_size`` too small.
    """
    plen = len(message)
    if plen < HEADROOM or plen > MAX_NATIVE_PLAINTEXT:
        raise ValueError(f"native message of {plen} bytes (must be 10 … {MAX_NATIVE_PLAINTEXT})")
    if fragment_size < MIN_FRAGMENT_SIZE or fragment_size - NATIVE_HEADER_SIZE > 0xFFFF:
        raise ValueError(
            f"fragment size {fragment_size} is outside"
            f" {MIN_FRAGMENT_SIZE}…{NATIVE_HEADER_SIZE + 0xFFFF}"
        )
    return plen + TAG_SIZE, fragment_size - NATIVE_HEADER_SIZE


def _seal(
    session: Session,
    message: bytes | bytearray | memoryview,
    count: int,
    chunk: int,
    sealed: memoryview,
) -> bytes:
    """Seal ``message`` into ``sealed`` under the session's next native counter; return the
    first fragment's header (index 0: the associated data)."""
    counter = session.native_send_counter
    header = NATIVE_HEADER.pack(
        MESSAGE_NATIVE, 0, count, NATIVE_VERSION, session.remote_index, counter, chunk, 0
    )
    nonce = session._native_nonce
    _COUNTER.pack_into(nonce, 4, counter)
    session.native_seal(nonce, message, header, sealed)
    session.native_send_counter = counter + 1
    return header


def _seal_into_arena(
    session: Session,
    message: bytes | bytearray | memoryview,
    out: DatagramBatch,
    address: Address | None,
    fragment_size: int,
    scratch: bytearray,
    sealed_len: int,
    chunk: int,
) -> int:
    """:func:`seal_native` after its checks."""
    if session.native_send_counter >= REJECT_AFTER_MESSAGES:
        return 0
    count = -(-sealed_len // chunk)
    need = sealed_len + NATIVE_HEADER_SIZE * count
    pos = out.end
    if pos + need > len(out.buffer):
        return 0
    sview = memoryview(scratch)
    header = _seal(session, message, count, chunk, sview[:sealed_len])
    obuf = out.buffer
    step = fragment_size
    # Headers and chunks are copied into place by map() over precomputed slices — C loops, no
    # bytecode per fragment (~25 % less than a Python loop of slice copies) — then every index
    # byte is set in one strided write.
    heads, dsts, srcs = _layout(chunk, count)
    ov = out.view[pos : pos + need]
    put = ov.__setitem__
    _consume(map(put, heads, repeat(header, count)))
    _consume(map(put, dsts, map(sview.__getitem__, srcs)))
    src = chunk * (count - 1)
    p = step * (count - 1) + NATIVE_HEADER_SIZE
    ov[p : p + sealed_len - src] = sview[src:sealed_len]
    if count > 1:
        obuf[pos + 1 : pos + step * (count - 1) + 2 : step] = _INDICES[:count]
    out.offsets.extend(range(pos, pos + step * count, step))
    out.lengths.extend([step] * (count - 1))
    out.lengths.append(NATIVE_HEADER_SIZE + sealed_len - chunk * (count - 1))
    out.addresses.extend([address] * count)
    out.end = pos + need
    return count


class SendSlots:
    """Buffers that sealed messages are sent from in place, for :func:`seal_native_gathered`.

    Slot ``k`` holds the ``k``-th message of a batch: its sealed bytes and its fragment
    headers. The parts lists that interleave them (header, chunk, header, chunk…) are views
    into these fixed buffers, so they are made once per slot and layout and reused.

    Args:
        count: messages per batch (a batch with more is sent in several rounds).
    """

    __slots__ = (
        "_header_views",
        "_layouts",
        "_sealed_views",
        "headers",
        "scratch",
        "sealed",
        "used",
    )

    def __init__(self, count: int = 16) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.sealed = [bytearray(MAX_SEALED_SIZE) for _ in range(count)]
        self.headers = [bytearray(NATIVE_HEADER_SIZE * 255) for _ in range(count)]
        #: for one-fragment messages, sealed here and copied into the batch's arena
        self.scratch = bytearray(MAX_SEALED_SIZE)
        #: slots taken in the current batch (reset when its batch has no gathered groups)
        self.used = 0
        self._sealed_views = [memoryview(b) for b in self.sealed]
        self._header_views = [memoryview(b) for b in self.headers]
        self._layouts: dict[tuple[int, int, int], list[list[memoryview]]] = {}

    def __len__(self) -> int:
        return len(self.sealed)

    def parts(self, slot: int, chunk: int, count: int) -> list[list[memoryview]]:
        """The parts of a ``count``-fragment message in ``slot``, one list per send (at most
        :data:`~tunflow.datagram.UDP_MAX_SEGMENTS` fragments and
        :data:`~tunflow.datagram.UDP_MAX_GSO_BYTES` bytes each); the last chunk, whose size
        varies, is left out: the caller appends it to the last list."""
        key = (slot, chunk, count)
        layout = self._layouts.get(key)
        if layout is None:
            hv, sv = self._header_views[slot], self._sealed_views[slot]
            step = chunk + NATIVE_HEADER_SIZE
            per_send = min(UDP_MAX_SEGMENTS, UDP_MAX_GSO_BYTES // step)
            layout = []
            for first in range(0, count, per_send):
                group: list[memoryview] = []
                for k in range(first, min(count, first + per_send)):
                    group.append(hv[k * NATIVE_HEADER_SIZE : (k + 1) * NATIVE_HEADER_SIZE])
                    if k < count - 1:
                        group.append(sv[k * chunk : (k + 1) * chunk])
                layout.append(group)
            if len(self._layouts) >= 1024:  # bounded: a few chunk sizes x 255 counts x slots
                self._layouts.clear()
            self._layouts[key] = layout
        return layout


def seal_native_gathered(
    session: Session,
    message: bytes | bytearray | memoryview,
    out: DatagramBatch,
    address: Address | None,
    fragment_size: int,
    slots: SendSlots | None = None,
) -> int:
    """:func:`seal_native` without cutting: the fragments go to ``out`` as gathered groups.

    A message of one fragment is written into ``out``'s arena as :func:`seal_native` does
    (runs of small messages to one peer then share a ``UDP_SEGMENT`` send); the transport
    sends arena datagrams and gathered groups in the order they were added.

    The message is sealed into the next free slot of ``slots`` — by default ``out``'s own
    (:attr:`~tunflow.datagram.DatagramBatch.gather_slots`, made on first use), so two batches
    never share one — and its headers are written beside it; ``out`` gets lists of parts that
    a gathering ``sendmsg`` turns into exactly the datagrams :func:`seal_native` writes — the
    same bytes on the wire, without copying the sealed message into place (the cut costs about
    as much as the AEAD). ``out`` must be made with ``gather=True``; slots given explicitly
    must serve only ``out`` until it was sent and cleared.

    Returns:
        The number of fragments added; 0 when every slot is taken or the counter is exhausted
        (nothing was written and the counter did not move).

    Raises:
        ValueError: as :func:`seal_native`, or ``out`` takes no gathered groups.
    """
    sealed_len, chunk = _sizes(message, fragment_size)
    if not out.gather:
        raise ValueError("out takes no gathered groups (make it with gather=True)")
    if slots is None:
        slots = out.gather_slots
        if slots is None:
            slots = out.gather_slots = SendSlots()
    if sealed_len <= chunk:
        # one fragment (an ACK, a small datagram): into the arena, where runs of them to one
        # peer share a UDP_SEGMENT send; the copy is small
        return _seal_into_arena(
            session, message, out, address, fragment_size, slots.scratch, sealed_len, chunk
        )
    if not out.gathered:
        slots.used = 0  # the batch was sent and cleared: every slot is free
    slot = slots.used
    if slot >= len(slots) or session.native_send_counter >= REJECT_AFTER_MESSAGES:
        return 0
    slots.used = slot + 1
    count = -(-sealed_len // chunk)
    sview = slots._sealed_views[slot]
    header = _seal(session, message, count, chunk, sview[:sealed_len])
    hbuf = slots.headers[slot]
    hbuf[: NATIVE_HEADER_SIZE * count] = header * count
    if count > 1:
        hbuf[1 : NATIVE_HEADER_SIZE * count : NATIVE_HEADER_SIZE] = _INDICES[:count]
    layout = slots.parts(slot, chunk, count)
    tail = sview[chunk * (count - 1) : sealed_len]
    step = fragment_size
    if len(layout) == 1:
        out.add_gathered([*layout[0], tail], NATIVE_HEADER_SIZE * count + sealed_len, step, address)
    else:
        per_send = min(UDP_MAX_SEGMENTS, UDP_MAX_GSO_BYTES // step)
        for group in layout[:-1]:
            out.add_gathered(group, step * per_send, step, address)
        rest = count - per_send * (len(layout) - 1)
        last_len = NATIVE_HEADER_SIZE * rest + sealed_len - chunk * (count - rest)
        out.add_gathered([*layout[-1], tail], last_len, step, address)
    return count


#: AEAD tries a stored message gets after its first failed (each a genuine copy of a forged
#: fragment may bring; few, as a tiny forged fragment can ask for one over up to 64 KiB)
_MAX_RETRIES: Final = 2


class _Partial:
    """A message's fragments so far. Nothing in them is authenticated until the AEAD opens the
    whole: a forged fragment may be among them (see :func:`open_native`)."""

    __slots__ = ("buffer", "chunk", "count", "have", "last_len", "missing", "retries")

    def __init__(self, count: int, chunk: int) -> None:
        self.buffer = bytearray(count * chunk)
        self.count = count
        self.chunk = chunk
        self.have = 0
        self.missing = count
        self.last_len = 0
        #: AEAD tries after the whole failed its first (at most :data:`_MAX_RETRIES`)
        self.retries = 0


def _would_accept(session: Session, counter: int) -> bool:
    w = session.native_replay
    if counter >= w.limit:
        return False
    highest = w.highest
    if counter > highest:
        return True
    if highest - counter > WINDOW_SIZE:
        return False
    return not (w._ring[(counter >> 6) & 127] >> (counter & 63)) & 1


def open_native(
    session: Session, fragment: bytes | bytearray | memoryview, out: PacketBatch
) -> int:
    """Take one fragment for ``session``; when its message is complete, open it into ``out``.

    The completed packet is appended to ``out`` with its virtio-net header in the headroom, and
    ``out`` is switched to ``vnet_hdr`` mode (earlier packets get zero headers).

    Args:
        session: the session named by the fragment's receiver index (caller looked it up).
        fragment: the whole datagram.
        out: where the opened super-packet goes.

    Returns:
        An :class:`OpenResult` code.
    """
    n = len(fragment)
    if n <= NATIVE_HEADER_SIZE:
        return OpenResult.MALFORMED
    typ, index, count, version, _receiver, counter, chunk, reserved = _unpack_header(fragment)
    data_len = n - NATIVE_HEADER_SIZE
    if (
        index >= count
        or data_len > chunk
        or (data_len != chunk and index != count - 1)
        # every fragment's header, not only the first to arrive (the order must not matter)
        or typ != MESSAGE_NATIVE
        or version != NATIVE_VERSION
        or reserved
    ):
        return OpenResult.MALFORMED
    partials = session.native_partial
    entry = partials.get(counter)
    if entry is None:
        # the first fragment of a message: validate the rest of the header, check the
        # replay window before spending memory on it
        if chunk < _MIN_CHUNK or (count - 1) * chunk >= MAX_SEALED_SIZE:
            return OpenResult.MALFORMED
        if not _would_accept(session, counter):
            return OpenResult.REPLAY
        if count == 1:
            return _finish(
                session, memoryview(fragment)[NATIVE_HEADER_SIZE:], count, counter, chunk, out
            )
        if len(partials) >= MAX_PARTIAL_MESSAGES:
            del partials[next(iter(partials))]
            session.native_evicted += 1  # counted as dropped (incomplete) by the caller
        entry = partials[counter] = _Partial(count, chunk)
    elif entry.count != count or entry.chunk != chunk:
        # Fragments of one counter that disagree on the message's shape: one side is forged
        # (nothing is authenticated before the whole opens). The newest wins — a forged
        # fragment sent ahead of the message (its counter is easy to guess) must not make the
        # genuine fragments refused.
        if chunk < _MIN_CHUNK or (count - 1) * chunk >= MAX_SEALED_SIZE:
            return OpenResult.MALFORMED
        if count == 1:
            del partials[counter]
            return _finish(
                session, memoryview(fragment)[NATIVE_HEADER_SIZE:], count, counter, chunk, out
            )
        entry = partials[counter] = _Partial(count, chunk)
    bit = 1 << index
    start = index * chunk
    if entry.have & bit:
        if entry.missing:
            # a second copy: the newest is kept (the first may have been forged; if this one
            # is, the AEAD refuses the whole and a later copy may still mend it)
            entry.buffer[start : start + data_len] = memoryview(fragment)[NATIVE_HEADER_SIZE:]
            if index == count - 1:
                entry.last_len = data_len
            return OpenResult.INCOMPLETE
        if entry.retries:
            # the whole failed its AEAD: this copy may be the genuine one of a forged fragment;
            # try again (each try is an AEAD over the whole message, which a one-byte last
            # fragment can ask for: after _MAX_RETRIES the entry goes)
            entry.buffer[start : start + data_len] = memoryview(fragment)[NATIVE_HEADER_SIZE:]
            if index == count - 1:
                entry.last_len = data_len
        # else: every fragment is here and the message found no room in ``out`` before
        # (NO_ROOM, the fragment not consumed): this is the caller's retry
    else:
        entry.buffer[start : start + data_len] = memoryview(fragment)[NATIVE_HEADER_SIZE:]
        entry.have |= bit
        entry.missing -= 1
        if index == count - 1:
            entry.last_len = data_len
        if entry.missing:
            return OpenResult.INCOMPLETE
    total = (count - 1) * chunk + entry.last_len
    result = _finish(session, memoryview(entry.buffer)[:total], count, counter, chunk, out)
    if result == OpenResult.BAD_AEAD:
        retried = entry.retries
        if retried < _MAX_RETRIES:
            # kept (until newer messages push it out): a forged fragment may have spoilt it,
            # and the genuine copy may still come
            entry.retries += 1
        else:
            del partials[counter]
        if retried:
            return OpenResult.INCOMPLETE  # the message's failure was counted once already
    elif result != OpenResult.NO_ROOM:
        del partials[counter]
    return result


def open_native_run(
    session: Session,
    view: memoryview,
    offset: int,
    count: int,
    stride: int,
    last_length: int,
    out: PacketBatch,
    scratch: bytearray,
) -> int | None:
    """Open a message whose ``count`` fragments lie back to back from ``offset`` (the shape
    one ``UDP_GRO`` read of one ``UDP_SEGMENT`` send has), without storing fragments one by
    one: each header is checked against the first (all fields but the index) while its chunk
    is copied into ``scratch``, then one AEAD call opens the message into ``out``.

    Args:
        session: the session the first fragment's receiver index names.
        view: the datagram arena.
        offset: where fragment 0 starts.
        count: the fragment count of its header (≥ 2).
        stride: the size of every fragment but the last (header + chunk).
        last_length: the size of the last fragment.
        out: where the opened super-packet goes.
        scratch: at least :data:`MAX_SEALED_SIZE` bytes, reused between calls.

    Returns:
        An :class:`OpenResult` code, or ``None`` when the run is not one clean message (a
        header differs, a bad first header): then feed the fragments to :func:`open_native`
        one by one. Whatever was stored for its counter before (a forged fragment sent ahead
        of it, or a copy) does not stop a whole run from opening, and is dropped when it
        does.
    """
    typ, index, n, version, _receiver, counter, chunk, reserved = _unpack_header(view, offset)
    if (
        typ != MESSAGE_NATIVE
        or index
        or n != count
        or version != NATIVE_VERSION
        or reserved
        or stride != NATIVE_HEADER_SIZE + chunk
        or chunk < _MIN_CHUNK
        or not NATIVE_HEADER_SIZE < last_length <= stride
        or (count - 1) * chunk + last_length - NATIVE_HEADER_SIZE > MAX_SEALED_SIZE
    ):
        return None
    # a bytearray on the left: its comparison is one memcmp (a memoryview's goes byte by byte)
    tail = bytearray(view[offset + 2 : offset + NATIVE_HEADER_SIZE])
    p = offset + stride
    dst = chunk
    scratch[:chunk] = view[offset + NATIVE_HEADER_SIZE : offset + stride]
    for k in range(1, count):
        if view[p + 1] != k or tail != view[p + 2 : p + NATIVE_HEADER_SIZE] or view[p] != typ:
            return None
        n_bytes = chunk if k < count - 1 else last_length - NATIVE_HEADER_SIZE
        scratch[dst : dst + n_bytes] = view[
            p + NATIVE_HEADER_SIZE : p + NATIVE_HEADER_SIZE + n_bytes
        ]
        dst += n_bytes
        p += stride
    # (only now: a replayed first fragment followed by another message's fragments is not this
    # message, and must not take them with it)
    if not _would_accept(session, counter):
        return OpenResult.REPLAY
    return _finish_whole(session, memoryview(scratch)[:dst], count, counter, chunk, out)


def open_native_scattered(
    session: Session,
    headers: memoryview,
    bodies: memoryview,
    count: int,
    last_length: int,
    out: PacketBatch,
) -> int | None:
    """Open a message whose ``count`` fragments a scatter read split apart: their 20-byte
    headers back to back in ``headers``, their chunks back to back in ``bodies`` — so the
    sealed message is already contiguous and is opened where it lies (no copy at all).

    Args:
        session: the session the first header's receiver index names.
        headers: ``count`` headers, 20 bytes each.
        bodies: the chunks (at least ``(count - 1) * chunk + last_length - 20`` bytes).
        count: how many fragments were read.
        last_length: the size of the last fragment (header included).
        out: where the opened super-packet goes.

    Returns:
        An :class:`OpenResult` code, or ``None`` when the fragments are not exactly one whole
        message in order (the caller then rebuilds the datagrams and uses :func:`open_native`).
    """
    if count < 1 or len(headers) < NATIVE_HEADER_SIZE * count:
        return None
    typ, index, n, version, _receiver, counter, chunk, reserved = _unpack_header(headers, 0)
    if (
        typ != MESSAGE_NATIVE
        or index
        or n != count
        or version != NATIVE_VERSION
        or reserved
        or chunk < _MIN_CHUNK
        or not NATIVE_HEADER_SIZE < last_length <= NATIVE_HEADER_SIZE + chunk
        or (count - 1) * chunk >= MAX_SEALED_SIZE
    ):
        return None
    if count > 1:
        # every header equals the first but for its index: three operations, not a loop
        size = NATIVE_HEADER_SIZE * count
        expected = bytearray(headers[:NATIVE_HEADER_SIZE]) * count
        expected[1:size:NATIVE_HEADER_SIZE] = _INDICES[:count]
        if expected != headers[:size]:  # bytearray first: one memcmp, not a byte-wise walk
            return None
    if not _would_accept(session, counter):
        return OpenResult.REPLAY
    total = (count - 1) * chunk + last_length - NATIVE_HEADER_SIZE
    if len(bodies) < total:
        return None
    return _finish_whole(session, bodies[:total], count, counter, chunk, out)


def _finish_whole(
    session: Session, sealed: memoryview, count: int, counter: int, chunk: int, out: PacketBatch
) -> int:
    """:func:`_finish` for a message whose fragments all came at once: what was stored for its
    counter before (a forged fragment sent ahead, or a copy) is dropped once it opens."""
    result = _finish(session, sealed, count, counter, chunk, out)
    partials = session.native_partial
    if result == OpenResult.COMPLETE:
        partials.pop(counter, None)
    elif result == OpenResult.BAD_AEAD:
        # kept as the fragments would have been one by one (a forged copy of one of them may
        # have taken its place in the read; the genuine copy may still come)
        if counter not in partials and len(partials) >= MAX_PARTIAL_MESSAGES:
            del partials[next(iter(partials))]
            session.native_evicted += 1
        entry = partials[counter] = _Partial(count, chunk)
        entry.buffer[: len(sealed)] = sealed
        entry.have = (1 << count) - 1
        entry.missing = 0
        entry.last_len = len(sealed) - (count - 1) * chunk
        entry.retries = 1
    return result


def _finish(
    session: Session, sealed: memoryview, count: int, counter: int, chunk: int, out: PacketBatch
) -> int:
    plen = len(sealed) - TAG_SIZE
    if plen < HEADROOM or plen > MAX_NATIVE_PLAINTEXT:
        return OpenResult.MALFORMED  # (before the room: a batch never has room for too much)
    dst = out.end + HEADROOM
    if dst + plen - HEADROOM > len(out.buffer) or len(out.offsets) >= out.max_packets:
        return OpenResult.NO_ROOM
    aad = NATIVE_HEADER.pack(
        MESSAGE_NATIVE, 0, count, NATIVE_VERSION, session.local_index, counter, chunk, 0
    )
    nonce = bytearray(12)
    _COUNTER.pack_into(nonce, 4, counter)
    try:
        session.native_open(nonce, sealed, aad, out.view[dst - HEADROOM : dst - HEADROOM + plen])
    except InvalidTag:
        return OpenResult.BAD_AEAD
    if not session.native_replay.check(counter):
        return OpenResult.REPLAY
    if not out.vnet_hdr:
        out.zero_headers()  # (only now: a message that did not open leaves ``out`` as it was)
    out.commit(dst, plen - HEADROOM)
    return OpenResult.COMPLETE
