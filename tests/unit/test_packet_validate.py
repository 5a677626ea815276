"""validate_ip_packet on packets built by scapy (an IP stack we did not write)."""

from __future__ import annotations

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
