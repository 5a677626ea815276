"""DatagramBatch: appends, GRO reads, and gso_groups against a one-step-per-datagram reference."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from tunflow.datagram import UDP_MAX_GSO_BYTES, DatagramBatch
from tunflow.packet import PacketBatch


def reference_groups(b: DatagramBatch, max_segments: int, max_bytes: int) -> list[Any]:
    groups = []
    offs, lens, addrs = b.offsets, b.lengths, b.addresses
    i = 0
    while i < len(offs):
        addr, start, seg = addrs[i], offs[i], lens[i]
        end, j = start + seg, i + 1
        if seg > 0:
            while j < min(len(offs), i + max_segments):
                ln = lens[j]
                if offs[j] != end or ln > seg or end + ln - start > max_bytes or addrs[j] != addr:
                    break
                if ln == 0:  # an empty datagram is a send of its own
                    break
                end += ln
                j += 1
                if ln < seg:
                    break
        groups.append((addr, start, end - start, seg))
        i = j
    return groups


datagrams = st.lists(
    st.tuples(
        st.sampled_from([1452, 1452, 1452, 1452, 100, 60, 0, 1452, 3000]),
        st.sampled_from([0, 0, 0, 0, 7]),  # a gap before it
        st.sampled_from([("192.0.2.1", 1), ("192.0.2.1", 1), ("192.0.2.2", 2)]),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(datagrams, st.sampled_from([64, 45, 3, 1]), st.sampled_from([UDP_MAX_GSO_BYTES, 5000, 1452]))
def test_gso_groups_match_the_reference(
    items: list[Any], max_segments: int, max_bytes: int
) -> None:
    b = DatagramBatch(1 << 20)
    pos = 0
    for size, gap, addr in items:
        pos += gap
        b.commit(pos, size, addr)
        pos += size
    groups = b.gso_groups(max_segments, max_bytes)
    assert groups == reference_groups(b, max_segments, max_bytes)
    # each group is the sends of -(-length // seg) datagrams (an empty one: one): all of them
    assert sum(-(-n // seg) if seg > 0 else 1 for _, _, n, seg in groups) == len(b)


def test_an_empty_datagram_does_not_close_a_group() -> None:
    """Sent in a group as its "shorter last" one, an empty datagram adds no bytes: it was lost."""
    b = DatagramBatch(4096)
    for data in (b"ab", b"ab", b""):
        b.append(data, address=("192.0.2.1", 1))
    assert b.gso_groups() == [(("192.0.2.1", 1), 0, 4, 2), (("192.0.2.1", 1), 4, 0, 0)]


def test_append_commit_segments_keep_clear() -> None:
    b = DatagramBatch(4096)
    assert isinstance(b, PacketBatch) and not b.vnet_hdr
    b.append(b"abc", address=("h", 1))
    b.commit(b.reserve(), 0, ("h", 2))
    assert b.add_segments(3, 10, 4, ("h", 3)) == 3
    assert b.lengths == [3, 0, 4, 4, 2] and b.end == 13
    assert b.to_pairs()[0] == (b"abc", ("h", 1))
    b.keep([0, 4])
    assert b.addresses == [("h", 1), ("h", 3)]
    with pytest.raises(TypeError, match="address="):
        b.append(b"x", ("h", 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        b.header(0)
    b.clear()
    assert not b and b.end == 0 and b.room() == 4096


@pytest.mark.parametrize(
    "indices",
    [[4], [-1], [1, 1], [0, 3, 2, 3], [3, 1], (2, 0), range(5), range(4, -1, -1), iter([1, 0])],
    ids=lambda v: "an iterator" if isinstance(v, Iterator) else repr(v),
)
def test_keep_refuses_indices_out_of_range_repeated_or_unordered(indices: Any) -> None:
    # taken as Python indices, [0, 3, 2, 3] kept offsets 0, 30, 20, 30: gso_groups saw equal
    # sizes ending where a contiguous run would and sent bytes 0-40, the dropped datagram 1 too
    b = DatagramBatch(4096)
    for i in range(4):
        b.append(bytes([i]) * 10, address=("192.0.2.1", 1))
    before = (list(b.offsets), list(b.lengths), list(b.addresses), b.end)
    with pytest.raises(ValueError, match="keep"):
        b.keep(indices)
    assert (list(b.offsets), list(b.lengths), list(b.addresses), b.end) == before
    b.keep(iter([0, 3]))
    assert b.to_pairs() == [(bytes(10), ("192.0.2.1", 1)), (b"\x03" * 10, ("192.0.2.1", 1))]


@pytest.mark.parametrize(
    ("offset", "total", "segment_size"),
    [(10, 10, 10), (0, 40, 10), (20, -5, 10), (20, 0, 0), (20, 4077, 10), (-1, 1, 1)],
)
def test_add_segments_refuses_a_region_outside_the_free_space(
    offset: int, total: int, segment_size: int
) -> None:
    # a region over datagrams already added made two datagrams of the same bytes (and offsets
    # out of order for gso_groups), a negative total a datagram of negative length
    b = DatagramBatch(4096)
    b.append(bytes(10), address=("192.0.2.1", 1))
    b.append(bytes(10), address=("192.0.2.1", 1))
    before = (list(b.offsets), list(b.lengths), list(b.addresses), b.end)
    with pytest.raises(ValueError, match="add_segments"):
        b.add_segments(offset, total, segment_size, ("192.0.2.1", 1))
    assert (list(b.offsets), list(b.lengths), list(b.addresses), b.end) == before
    assert b.add_segments(20, 25, 10, ("192.0.2.1", 2)) == 3
    assert b.lengths == [10, 10, 10, 10, 5] and b.end == 45
