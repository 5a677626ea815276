"""PacketBatch refusing what it cannot hold, before anything is copied."""

from __future__ import annotations

import array
from collections.abc import Iterator

import pytest

from tunflow.datagram import DatagramBatch
from tunflow.errors import PacketTooLargeError
from tunflow.packet import HEADROOM, PacketBatch


@pytest.mark.parametrize("size", [0, 4, HEADROOM + 1])
def test_a_header_not_of_the_headroom_size_is_refused_and_nothing_added(size: int) -> None:
    # a slice of another length resized the arena: a cryptic BufferError, mid-copy
    batch = PacketBatch(capacity=4096, max_packets=4)
    batch.vnet_hdr = True
    batch.append(b"\x45" + bytes(19), header=bytes(HEADROOM))
    before = (batch.end, list(batch.offsets), len(batch.buffer))
    with pytest.raises(ValueError, match="virtio-net header is 10 bytes"):
        batch.append(b"\x45" + bytes(19), header=bytes(size))
    assert (batch.end, list(batch.offsets), len(batch.buffer)) == before
    batch.append(b"\x45" + bytes(39), header=bytes(HEADROOM))  # and the batch goes on
    assert batch.lengths == [20, 40]


def _id(value: object) -> str:
    return "an iterator" if isinstance(value, Iterator) else repr(value)


def _five() -> PacketBatch:
    batch = PacketBatch(capacity=4096, max_packets=8)
    batch.extend(bytes([0x45, k]) + bytes(18) for k in range(5))
    return batch


@pytest.mark.parametrize("kind", [PacketBatch, DatagramBatch])
@pytest.mark.parametrize(
    "data",
    [
        memoryview(array.array("H", range(10))),
        memoryview(bytes(20)).cast("B", (4, 5)),
        array.array("I", range(5)),
    ],
    ids=["memoryview-H", "memoryview-2d", "array-I"],
)
def test_append_refuses_a_buffer_whose_items_are_not_bytes(
    kind: type[PacketBatch], data: memoryview
) -> None:
    # len() counts items, not bytes: the copy resized the arena and failed with a BufferError
    # that blamed "existing exports"
    batch = kind(capacity=4096, max_packets=4)
    batch.append(b"\x45" + bytes(19))
    before = (batch.end, list(batch.offsets), list(batch.lengths), len(batch.buffer))
    with pytest.raises(TypeError, match="bytes"):
        batch.append(data)
    assert (batch.end, list(batch.offsets), list(batch.lengths), len(batch.buffer)) == before
    batch.append(memoryview(data).cast("B"))
    assert batch.to_list()[1] == memoryview(data).tobytes()


def test_append_refuses_a_header_whose_items_are_not_bytes() -> None:
    batch = PacketBatch(capacity=4096, max_packets=4)
    with pytest.raises(TypeError, match="header is a memoryview of format 'H'"):
        batch.append(b"\x45" + bytes(19), header=memoryview(array.array("H", range(10))))  # type: ignore[arg-type]
    assert (batch.end, batch.offsets, batch.lengths) == (0, [], [])


@pytest.mark.parametrize(
    "indices",
    [
        [0, 5],
        [5],
        [-1],
        [0, -1],
        [1, 1],
        [0, 2, 2, 3],
        [3, 1],
        (2, 0),
        range(6),
        range(-1, 2),
        range(4, -1, -1),
        range(0, 7, 3),
        iter([1, 0]),
    ],
    ids=_id,
)
def test_keep_refuses_indices_out_of_range_repeated_or_unordered(indices: object) -> None:
    # a negative index kept a packet from the end, a repeated one the same packet twice (one
    # arena slice, two packets), unordered ones reordered the batch: all refused, nothing changed
    batch = _five()
    before = (list(batch.offsets), list(batch.lengths), batch.end, batch.to_list())
    with pytest.raises(ValueError, match="keep"):
        batch.keep(indices)  # type: ignore[arg-type]
    assert (list(batch.offsets), list(batch.lengths), batch.end, batch.to_list()) == before


@pytest.mark.parametrize(
    ("indices", "kept"),
    [
        ([], []),
        ([4], [4]),
        ([0, 2, 4], [0, 2, 4]),
        ((1, 3), [1, 3]),
        (range(5), [0, 1, 2, 3, 4]),
        (range(1, 5, 2), [1, 3]),
        (range(3, 3), []),
        (range(2, 1, -1), [2]),
        (iter([0, 3]), [0, 3]),
    ],
    ids=_id,
)
def test_keep_keeps_ascending_indices(indices: object, kept: list[int]) -> None:
    batch = _five()
    packets = batch.to_list()
    batch.keep(indices)  # type: ignore[arg-type]
    assert batch.to_list() == [packets[k] for k in kept]


# --- capacity, slots and headroom --------------------------------------------------------------


def test_the_smallest_arena_holds_one_byte_after_its_headroom() -> None:
    batch = PacketBatch(capacity=HEADROOM + 1, max_packets=1)
    assert batch.room() == 1
    batch.append(b"\x45")
    with pytest.raises(ValueError, match="at least 11"):
        PacketBatch(capacity=HEADROOM)


def test_a_packet_that_exactly_fills_the_arena_fits_and_then_nothing_does() -> None:
    batch = PacketBatch(capacity=2 * HEADROOM + 40, max_packets=4)
    assert batch.room() == HEADROOM + 40
    batch.append(bytes(20))
    assert batch.room() == 20  # the next packet's headroom is taken off
    batch.append(bytes(20))
    assert batch.end == batch.capacity and batch.room() == 0
    with pytest.raises(PacketTooLargeError):
        batch.append(b"\x45")


def test_max_packets_bounds_append_room_and_full() -> None:
    batch = PacketBatch(capacity=4096, max_packets=2)
    batch.append(bytes(20))
    assert not batch.full and batch.room() > 0
    batch.append(bytes(20))
    assert batch.full and batch.room() == 0
    with pytest.raises(PacketTooLargeError, match="0 slots left"):
        batch.append(bytes(20))
    assert len(batch) == 2


def test_headers_sit_in_the_headroom_and_a_batch_with_vnet_hdr_zeroes_them() -> None:
    batch = PacketBatch(capacity=4096, max_packets=4)
    batch.append(b"\x45" + bytes(19), header=bytes(range(1, 11)))
    assert bytes(batch.header(0)) == bytes(range(1, 11))
    assert bytes(batch.with_header(0)) == bytes(range(1, 11)) + b"\x45" + bytes(19)
    batch.buffer[batch.reserve() - HEADROOM : batch.reserve()] = b"\xff" * HEADROOM  # stale
    batch.vnet_hdr = True
    batch.append(b"\x60" + bytes(39))  # no header given: zeroed, not left stale
    assert bytes(batch.header(1)) == bytes(HEADROOM)
    batch.clear()
    assert not batch.vnet_hdr and len(batch) == 0 and batch.end == 0


def test_commit_records_a_packet_written_in_place() -> None:
    batch = PacketBatch(capacity=4096, max_packets=4)
    off = batch.reserve()
    batch.buffer[off : off + 20] = b"\x45" + bytes(19)
    batch.commit(off, 20)
    assert batch.end == off + 20 and batch.reserve() == off + 20 + HEADROOM
    batch.append(b"\x46" + bytes(23))
    assert batch.to_list() == [b"\x45" + bytes(19), b"\x46" + bytes(23)]


def test_a_larger_copy_keeps_packets_headers_and_vnet_hdr() -> None:
    from tunflow.packet import _larger_copy

    batch = PacketBatch(capacity=128, max_packets=2)
    batch.vnet_hdr = True
    batch.append(b"\x45" + bytes(19), header=b"\x01" * HEADROOM)
    new = _larger_copy(batch, 4096, 8)
    assert new.vnet_hdr and new.to_list() == batch.to_list()
    assert bytes(new.header(0)) == b"\x01" * HEADROOM
    assert (new.capacity, new.max_packets, new.end) == (4096, 8, batch.end)
