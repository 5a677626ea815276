"""GRO coalescing: packets whose length fields disagree with their bytes, headers-only segments
and the 64 KiB cap, on the general path and on the fast paths for trusted TCP."""

from __future__ import annotations

import struct

import pytest

from tunflow.offload import VIRTIO_NET_HDR_F_NEEDS_CSUM, GROTable
from tunflow.packet import HEADROOM, PacketBatch

from .offload_packets import (
    ACK,
    IP4_A,
    IP4_B,
    IP6_A,
    IP6_B,
    tcp4_packet,
    tcp6_packet,
    udp6_packet,
    vnet_hdr,
)
from .test_offload_gro import assert_outputs, merged_model, run_gro


def _ipv6_payload_length(p: bytes, delta: int) -> bytes:
    b = bytearray(p)
    (plen,) = struct.unpack_from(">H", b, 4)
    struct.pack_into(">H", b, 4, plen + delta)
    return bytes(b)


def _table(verify: bool) -> GROTable:
    table = GROTable(tcp=True, udp=True)
    table.verify_checksums = verify
    return table


@pytest.mark.parametrize("verify", [True, False], ids=["verified", "trusted"])
@pytest.mark.parametrize("delta", [-4, 4], ids=["shorter", "longer"])
def test_ipv6_tcp_segment_whose_payload_length_is_not_its_bytes_goes_alone(
    verify: bool, delta: int
) -> None:
    # Its TCP checksum verifies over the bytes that are there; but the kernel's IPv6 stack
    # would trim (or drop) it by its payload length, and merged, the bytes past that length
    # would become stream data. The kernel's ipv6_gro_receive flushes such a packet too.
    pkts = [tcp6_packet(IP6_A, IP6_B, ACK, 100, 1 + 100 * k) for k in range(4)]
    pkts[1] = _ipv6_payload_length(pkts[1], delta)
    out, table = run_gro(pkts, _table(verify))
    assert_outputs(out, pkts, [(0,), (1,), (2, 3)])
    assert table.statistics().invalid_checksum == 0


@pytest.mark.parametrize("verify", [True, False], ids=["verified", "trusted"])
def test_ipv6_udp_datagram_whose_payload_length_is_not_its_bytes_goes_alone(
    verify: bool,
) -> None:
    # Its UDP length and checksum are right for the bytes there; its IPv6 payload length is
    # not. It goes out alone and ends its flow's item: the datagrams after it must not join
    # the one before it (overtaking it).
    pkts = [udp6_packet(IP6_A, IP6_B, 100, start=100 * k) for k in range(5)]
    pkts[2] = _ipv6_payload_length(pkts[2], -4)
    out, _ = run_gro(pkts, _table(verify))
    assert_outputs(out, pkts, [(0, 1), (2,), (3, 4)])


# -- the fast paths (checksums trusted, TCP of one IP version) -----------------------------


def _flow(count: int, mss: int, *, last: int = 0) -> list[bytes]:
    """``count`` in-order segments of one IPv4 flow, the last of ``last`` bytes when given."""
    return [
        tcp4_packet(IP4_A, IP4_B, ACK, last if last and i == count - 1 else mss, 1 + mss * i)
        for i in range(count)
    ]


def _trusted(pkts: list[bytes]) -> tuple[PacketBatch, GROTable]:
    return run_gro(pkts, _table(False))


@pytest.mark.parametrize("count", [4, 20], ids=["short batch", "uniform batch"])
def test_a_headers_only_segment_after_a_run_goes_alone(count: int) -> None:
    # A window update (a pure ACK with the run's ACK number) right after the data: it carries
    # no payload, so there is nothing to merge — absorbed into the super-packet, the new
    # window would be lost. It goes out as it came, as the general classifier sends it.
    mss = 1000
    pkts = _flow(count, mss)
    pkts.append(tcp4_packet(IP4_A, IP4_B, ACK, 0, 1 + mss * count))
    out, table = _trusted(pkts)
    assert_outputs(out, pkts, [tuple(range(count)), (count,)])
    assert table.statistics().coalesced == count - 1


@pytest.mark.parametrize("delta", [-4, 4], ids=["shorter", "longer"])
@pytest.mark.parametrize("count", [4, 20], ids=["short batch", "uniform batch"])
def test_a_last_segment_whose_ip_length_is_not_its_bytes_goes_alone(count: int, delta: int) -> None:
    # The short last segment of a run, its IPv4 total length not its length (padding after
    # it, or bytes missing): merged, the kernel would take wrong bytes as stream data.
    pkts = _flow(count, 1000, last=300)
    b = bytearray(pkts[-1])
    struct.pack_into(">H", b, 2, len(b) + delta)
    pkts[-1] = bytes(b)
    out, _ = _trusted(pkts)
    assert_outputs(out, pkts, [tuple(range(count - 1)), (count - 1,)])


@pytest.mark.parametrize("count", [4, 20], ids=["short batch", "uniform batch"])
def test_a_short_last_segment_that_makes_exactly_65535_bytes_joins(count: int) -> None:
    # "the result stays within 65535 bytes": 65535 itself is within.
    mss = (65535 - 40) // count + 1
    last = 65535 - 40 - mss * (count - 1)
    assert 0 < last < mss
    pkts = _flow(count, mss, last=last)
    out, table = _trusted(pkts)
    assert_outputs(out, pkts, [tuple(range(count))])
    assert out.lengths == [65535]
    assert table.statistics().too_large == 0
    out, table = run_gro(pkts, _table(True))  # the general way agrees
    assert out.lengths == [65535]


@pytest.mark.parametrize("count", [5, 20], ids=["short batch", "uniform batch"])
def test_a_segment_with_its_own_virtio_header_passes_through_mid_run(count: int) -> None:
    # "Packets of src that already carry a non-zero virtio-net header are passed through with
    # it": also one that continues its flow's run on the fast paths. Merged, its NEEDS_CSUM
    # (its checksum field holding a partial sum) would be lost.
    pkts = _flow(count, 1000)
    src = PacketBatch(capacity=1 << 20, max_packets=128)
    src.vnet_hdr = True
    src.extend(pkts)
    src.zero_headers()
    mid = count // 2
    own = vnet_hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start=20, csum_offset=16)
    src.buffer[src.offsets[mid] - HEADROOM : src.offsets[mid]] = own
    table = _table(False)
    out = PacketBatch(capacity=1 << 20, max_packets=128)
    table.coalesce(src, out)
    assert len(out) == 3
    assert bytes(out.packet(1)) == pkts[mid]
    assert bytes(out.header(1)) == own
    for i, group in ((0, pkts[:mid]), (2, pkts[mid + 1 :])):
        assert (bytes(out.header(i)), bytes(out.packet(i))) == merged_model(group)


# -- UDP: what ends a flow's item, and when UDP is coalesced at all -------------------------


def _ipv6_first_fragment(p: bytes) -> bytes:
    """The UDP/IPv6 datagram ``p`` as the first fragment of a larger one: a fragment header
    (offset 0, more fragments) between the IPv6 and the UDP header."""
    b = bytearray(p[:40]) + bytes([17, 0, 0, 1]) + b"\x12\x34\x56\x78" + p[40:]
    b[6] = 44
    struct.pack_into(">H", b, 4, len(b) - 40)
    return bytes(b)


def test_an_ipv6_first_fragment_ends_its_flows_item() -> None:
    # It goes out alone (a fragment never coalesces); the flow's datagrams after it must not
    # join the item before it, or they would overtake it.
    pkts = [udp6_packet(IP6_A, IP6_B, 100, start=100 * k) for k in range(5)]
    pkts[2] = _ipv6_first_fragment(pkts[2])
    out, _ = run_gro(pkts)
    assert_outputs(out, pkts, [(0, 1), (2,), (3, 4)])


def test_a_table_used_alone_leaves_udp_alone_by_default() -> None:
    # "udp: None (the default): ... used alone (coalesce) it leaves UDP alone".
    pkts = [udp6_packet(IP6_A, IP6_B, 100, start=100 * k) for k in range(3)]
    pkts += [tcp4_packet(IP4_A, IP4_B, ACK, 100, 1 + 100 * k) for k in range(2)]
    table = GROTable()
    assert table.udp is None
    out, _ = run_gro(pkts, table)
    assert_outputs(out, pkts, [(0,), (1,), (2,), (3, 4)])
