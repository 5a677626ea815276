"""DatagramBatch held to its docstrings: the origin of a new batch, gso_groups' start/stop."""

from __future__ import annotations

import pytest

from tunflow.datagram import DatagramBatch

PEER = ("192.0.2.1", 51820)


def test_a_new_batch_has_no_origin() -> None:
    # ``origin`` is the transport a received batch came from, "None otherwise": the WireGuard
    # stage answers through any origin that is not None
    assert DatagramBatch(64).origin is None
    assert DatagramBatch(64, gather=True).origin is None


def test_gso_groups_stop_past_the_last_datagram_is_the_last_datagram() -> None:
    b = DatagramBatch(4096)
    for size in (100, 100, 60):
        b.append(bytes(size), address=PEER)
    whole = [(PEER, 0, 260, 100)]
    assert b.gso_groups() == whole
    assert b.gso_groups(stop=3) == whole
    assert b.gso_groups(stop=10) == whole
    assert b.gso_groups(start=2, stop=10) == [(PEER, 200, 60, 60)]
    assert b.gso_groups(start=1, stop=2) == [(PEER, 100, 100, 100)]


def test_a_gathered_group_of_no_segment_size_is_a_value_error() -> None:
    b = DatagramBatch(64, gather=True)
    for length, seg in ((100, 0), (100, -1), (0, 100), (-1, 100)):
        with pytest.raises(ValueError, match="gathered group"):
            b.add_gathered([memoryview(bytes(max(length, 0)))], length, seg, PEER)
    assert b.gathered == [] and b.gathered_bytes == 0


def test_datagram_and_address_read_datagram_i() -> None:
    b = DatagramBatch(4096)
    b.append(b"first", address=PEER)
    b.append(b"the second", address=("2001:db8::1", 7))
    b.append(b"3")
    assert [bytes(b.datagram(i)) for i in range(3)] == [b"first", b"the second", b"3"]
    assert [b.address(i) for i in range(3)] == [PEER, ("2001:db8::1", 7), None]
    assert bytes(b.datagram(-1)) == b"3" and b.address(-2) == ("2001:db8::1", 7)


def test_a_gathered_group_of_64_segments_and_a_short_tail_is_refused() -> None:
    # add_gathered: "at most UDP_MAX_SEGMENTS datagrams" — 64 full segments and a shorter last
    # one are 65, more than one UDP_SEGMENT send carries
    b = DatagramBatch(64, gather=True)
    with pytest.raises(ValueError, match="gathered group"):
        b.add_gathered([memoryview(bytes(641))], 641, 10, PEER)
    b.add_gathered([memoryview(bytes(640))], 640, 10, PEER)
    assert b.gathered_bytes == 640


def test_clear_forgets_the_origin() -> None:
    # clear: "Forget every datagram and the transport they came from (origin)"
    b = DatagramBatch(64)
    b.append(b"x", address=PEER)
    b.origin = object()
    b.clear()
    assert b.origin is None and len(b) == 0
