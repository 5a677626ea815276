"""validate_ip_packet on packets built by scapy (an IP stack we did not write)."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6

from tunflow.errors import MalformedPacketError, PacketTooLargeError, TruncatedPacketError
from tunflow.packet import validate_ip_packet


def v4(payload: int = 8, **fields: int) -> bytes:
    return bytes(IP(src="192.0.2.1", dst="192.0.2.2", **fields) / UDP() / bytes(payload - 8))


def v6(payload: int = 8, **fields: int) -> bytes:
    return bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", **fields) / UDP() / bytes(payload - 8))


def test_whole_packets_pass_up_to_the_mtu_and_the_ip_maximum() -> None:
    for packet in (v4(), v4(options=b"\x01" * 4), v6(), v4(65535 - 20), v6(65535 - 40)):
        validate_ip_packet(packet)
    validate_ip_packet(v4(100 - 20), mtu=100)  # exactly the MTU
    with pytest.raises(PacketTooLargeError, match="MTU of 99"):
        validate_ip_packet(v4(100 - 20), mtu=99)
    with pytest.raises(PacketTooLargeError, match="65535"):
        validate_ip_packet(v4(), length=65536)


@pytest.mark.parametrize(
    ("packet", "error", "match"),
    [
        (v4(ihl=4), MalformedPacketError, "header length 16"),
        (v4() + b"\0", MalformedPacketError, "IPv4 total length 28 but 29"),
        (v4()[:-1], TruncatedPacketError, "IPv4 total length 28 but only 27"),
        (v6() + b"\0", MalformedPacketError, "IPv6 payload length 8 but 9"),
        (v6()[:-1], TruncatedPacketError, "IPv6 payload length 8 but only 7"),
        (v6()[:39], TruncatedPacketError, "40-byte header"),
        (v6()[:20], TruncatedPacketError, "40-byte header"),
    ],
)
def test_bad_headers(packet: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        validate_ip_packet(packet)


def _ipv4_header(ihl_words: int, total: int) -> bytes:
    """A bare IPv4 header (20 bytes) whose IHL and total length fields say what is asked."""
    return struct.pack(
        ">BBHHHBBH4s4s", 0x40 | ihl_words, 0, total, 0, 0, 64, 17, 0, bytes(4), bytes(4)
    )


@pytest.mark.parametrize("words", [0, 1, 4])
def test_an_ipv4_header_length_below_five_words_is_malformed(words: int) -> None:
    # RFC 791: the minimum value of IHL for a correct header is 5
    with pytest.raises(MalformedPacketError, match="header length"):
        validate_ip_packet(_ipv4_header(words, 20))


def test_an_ipv4_total_length_below_its_header_length_is_malformed() -> None:
    # IHL 6 (24 bytes) and a total length of 20 that equals the buffer: still no packet
    with pytest.raises(MalformedPacketError, match="below header length"):
        validate_ip_packet(_ipv4_header(6, 20))


def test_an_ipv4_buffer_shorter_than_the_fixed_header_is_truncated() -> None:
    with pytest.raises(TruncatedPacketError, match="19 bytes"):
        validate_ip_packet(v4()[:19])


def test_the_start_of_a_packet_is_checked_against_the_whole_length() -> None:
    # (a packet in several buffers: its first 40 bytes and the length of all of them)
    for packet in (v4(1400 - 20), v6(1280 - 40)):
        validate_ip_packet(packet[:40], length=len(packet))
    with pytest.raises(TruncatedPacketError):
        validate_ip_packet(v4(1400 - 20)[:40], length=1399)
