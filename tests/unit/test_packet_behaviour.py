"""PacketBatch and the header helpers, held to what their docstrings say."""

from __future__ import annotations

import pytest

from tests.unit.test_packet_validate import _ipv4_header
from tunflow.errors import MalformedPacketError, TruncatedPacketError
from tunflow.packet import HEADROOM, PacketBatch, ip_version, validate_ip_packet


def test_a_batch_that_takes_no_packet_is_refused() -> None:
    # a reader bounded by max_packets = 0 would read nothing, batch after batch
    with pytest.raises(ValueError, match="max_packets must be at least 1"):
        PacketBatch(capacity=4096, max_packets=0)
    assert PacketBatch(capacity=4096, max_packets=1).max_packets == 1


def test_zero_headers_zeroes_every_header_and_marks_the_batch() -> None:
    batch = PacketBatch(capacity=4096, max_packets=4)
    batch.append(b"\x45" + bytes(19), header=b"\x01" * HEADROOM)
    batch.append(b"\x60" + bytes(39), header=b"\x02" * HEADROOM)
    assert not batch.vnet_hdr
    batch.zero_headers()
    assert batch.vnet_hdr
    assert [bytes(batch.header(i)) for i in range(2)] == [bytes(HEADROOM)] * 2
    assert batch.to_list() == [b"\x45" + bytes(19), b"\x60" + bytes(39)]


@pytest.mark.parametrize(
    ("packet", "version"),
    [(b"", 0), (b"\x45" + bytes(19), 4), (bytearray(b"\x60" + bytes(39)), 6), (b"\x10", 1)],
)
def test_ip_version_is_the_high_nibble_or_0_for_an_empty_packet(
    packet: bytes | bytearray, version: int
) -> None:
    assert ip_version(packet) == version
    assert ip_version(memoryview(packet)) == version


def test_an_ipv4_packet_one_byte_short_of_its_header_is_truncated_whatever_it_claims() -> None:
    # 19 bytes whose total length says 19: shorter than the fixed header, so truncated (not a
    # length field below the header's, which would be malformed)
    packet = bytearray(_ipv4_header(5, 19)[:19])
    with pytest.raises(TruncatedPacketError, match="19 bytes is shorter than its 20-byte header"):
        validate_ip_packet(packet)


def test_an_empty_packet_is_truncated_not_an_index_error() -> None:
    for packet in (b"", bytearray(), memoryview(b"")):
        with pytest.raises(TruncatedPacketError, match="empty packet"):
            validate_ip_packet(packet)


@pytest.mark.parametrize("nibble", [0, 5, 7, 15])
def test_a_version_other_than_4_or_6_is_malformed(nibble: int) -> None:
    # 40 bytes whose payload length (bytes 4-5) is 0: a whole IPv6 packet but for its version
    packet = bytes([nibble << 4]) + bytes(39)
    with pytest.raises(MalformedPacketError, match=f"IP version nibble is {nibble}, not 4 or 6"):
        validate_ip_packet(packet)
    validate_ip_packet(b"\x60" + bytes(39))
