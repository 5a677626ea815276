"""GSO splitting: super-packets whose lengths disagree are refused before anything is written."""

from __future__ import annotations

import struct

import pytest

from tunflow.errors import MalformedPacketError, TruncatedPacketError
from tunflow.offload import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    gso_segment_count,
    gso_split,
    gso_split_into,
)
from tunflow.packet import PacketBatch

from .offload_packets import (
    IP6_A,
    IP6_B,
    UDP,
    ipv6_header,
    tcp_super_packet,
    udp_datagram,
    udp_super_packet,
    vnet_hdr,
)


def _with_ipv6_payload_length(src: bytes, delta: int) -> bytes:
    """The super-packet ``src`` (virtio-net header + IPv6 packet) with its payload length field
    ``delta`` away from the bytes that follow the fixed header."""
    b = bytearray(src)
    (plen,) = struct.unpack_from(">H", b, 10 + 4)
    struct.pack_into(">H", b, 10 + 4, plen + delta)
    return bytes(b)


@pytest.mark.parametrize(
    ("delta", "exc"),
    [(-1, MalformedPacketError), (-100, MalformedPacketError), (1, TruncatedPacketError)],
    ids=["trailing byte", "trailing segment", "truncated"],
)
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_ipv6_payload_length_that_is_not_the_bytes_read_is_refused(
    proto: str, delta: int, exc: type[Exception]
) -> None:
    # As for IPv4's total length: bytes past the payload length are not the packet's, and a
    # split that took them as payload would hand the stack data the sender never sent.
    make = tcp_super_packet if proto == "tcp" else udp_super_packet
    src = _with_ipv6_payload_length(make(IP6_A, IP6_B, 300, 100, v6=True), delta)
    with pytest.raises(exc):
        gso_segment_count(src)
    out = PacketBatch(capacity=4096)
    with pytest.raises(exc):
        gso_split(src, out)
    assert len(out) == 0 and out.end == 0
    with pytest.raises(exc):
        gso_split_into(src, [bytearray(4096)], [0], 10)


@pytest.mark.parametrize("rtype", [0, 2, 4])
def test_ipv6_routing_header_too_short_for_an_address_is_refused(rtype: int) -> None:
    # With segments left the TCP/UDP checksum covers the final destination (RFC 8200 8.1),
    # which an 8-byte routing header (no room for an address) cannot hold: not read from the
    # bytes after it.
    l4 = udp_datagram(IP6_A[0], IP6_B[0], 1, 1, bytes(300))
    rh = bytes([UDP, 0, rtype, 1]) + bytes(4)
    pkt = ipv6_header(43, len(rh) + len(l4), IP6_A[0], IP6_B[0]) + rh + l4
    src = vnet_hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4, 56, 100, 48, 6) + pkt
    with pytest.raises(MalformedPacketError):
        gso_segment_count(src)
    with pytest.raises(MalformedPacketError):
        gso_split(src, PacketBatch(capacity=4096))
