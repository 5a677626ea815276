"""DatagramBatch: appends, GRO reads, and gso_groups against a one-step-per-datagram reference."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from tunflow.datagram import UDP_MAX_GSO_BYTES, DatagramBatch
from tunflow.errors import PacketTooLargeError
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


def test_the_batch_is_full_at_max_packets_or_the_arenas_last_byte() -> None:
    b = DatagramBatch(10, max_packets=3)
    b.append(b"abcd", address=("192.0.2.1", 1))
    b.append(b"efghij", address=("192.0.2.1", 1))  # the arena's last byte: it fits
    assert b.end == 10 and b.room() == 0
    with pytest.raises(PacketTooLargeError):
        b.append(b"k", address=("192.0.2.1", 1))
    b = DatagramBatch(4096, max_packets=2)
    b.append(b"a")
    assert b.room() == 4095
    b.append(b"b")
    assert b.room() == 0  # bytes to spare, but no datagram more
    with pytest.raises(PacketTooLargeError):
        b.append(b"c")
    assert b.to_list() == [b"a", b"b"]


def test_a_gro_read_may_fill_the_arena_to_its_last_byte() -> None:
    b = DatagramBatch(100)
    b.append(bytes(10))
    assert b.add_segments(10, 90, 30, ("192.0.2.1", 1)) == 3
    assert b.end == 100 and b.lengths == [10, 30, 30, 30]


def test_keep_refuses_a_batch_with_gathered_groups() -> None:
    # the groups' places among the datagrams (the sending order) would no longer hold
    b = DatagramBatch(1024, gather=True)
    b.append(b"first")
    b.add_gathered([memoryview(b"second")], 6, 6, None)
    b.append(b"third")
    with pytest.raises(ValueError, match="gathered"):
        b.keep([1])
    assert b.to_list() == [b"first", b"third"] and len(b.gathered) == 1


def test_a_cleared_gathered_batch_is_used_again_in_order() -> None:
    b = DatagramBatch(1024, gather=True)
    for _ in range(2):
        b.append(b"first", address=("192.0.2.1", 1))
        b.add_gathered([memoryview(b"sec"), memoryview(b"ond")], 6, 6, ("192.0.2.1", 1))
        b.append(b"third!", address=("192.0.2.1", 1))
        groups = b.send_groups()
        assert [(g[1], g[2]) if isinstance(g[1], int) else b"".join(g[1]) for g in groups] == [
            (0, 5),
            b"second",
            (5, 6),
        ]
        b.clear()


def test_equal_addresses_group_as_one_peer_whatever_the_objects() -> None:
    # a sender builds each datagram's address anew: equal tuples, not the same object; the
    # run a, a', b, a'' is cut at the other peer, not at the first tuple that is not ``a``
    b = DatagramBatch(4096)
    for host in ("192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.1"):
        b.append(bytes(100), address=(host, int("51820")))
    assert b.addresses[0] is not b.addresses[1]
    assert b.gso_groups() == [
        (("192.0.2.1", 51820), 0, 200, 100),
        (("192.0.2.2", 51820), 200, 100, 100),
        (("192.0.2.1", 51820), 300, 100, 100),
    ]


def test_a_shorter_last_datagram_closes_a_group_of_exactly_the_byte_limit() -> None:
    # 45 x 1452 + 167 = 65507 bytes: one UDP_SEGMENT send takes it (at most, not below)
    b = DatagramBatch(1 << 17)
    for size in [1452] * 45 + [167, 167]:
        b.append(bytes(size), address=("192.0.2.1", 1))
    assert b.gso_groups() == [
        (("192.0.2.1", 1), 0, UDP_MAX_GSO_BYTES, 1452),
        (("192.0.2.1", 1), UDP_MAX_GSO_BYTES, 167, 167),
    ]


def test_a_gathered_group_may_be_one_send_at_most() -> None:
    b = DatagramBatch(1024, gather=True)
    b.add_gathered([memoryview(bytes(64 * 100))], 64 * 100, 100, None)  # 64 segments
    b.add_gathered([memoryview(bytes(UDP_MAX_GSO_BYTES))], UDP_MAX_GSO_BYTES, 1452, None)
    # one datagram goes without UDP_SEGMENT: only the protocol's limit (IPv6: 65527 bytes)
    b.add_gathered([memoryview(bytes(65527))], 65527, 65527, None)
    for length, seg in ((65 * 100, 100), (64 * 1100, 1100), (UDP_MAX_GSO_BYTES + 1, 1452)):
        with pytest.raises(ValueError, match="gathered group"):
            b.add_gathered([memoryview(bytes(length))], length, seg, None)
    assert [g[2] for g in b.gathered] == [6400, UDP_MAX_GSO_BYTES, 65527]
