"""PacketBatch refusing what it cannot hold, before anything is copied."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
