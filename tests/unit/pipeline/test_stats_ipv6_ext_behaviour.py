"""The ``stats`` stage counts an IPv6 packet by its transport protocol, past extension headers."""

from __future__ import annotations

from tests.helpers import ipv6_udp
from tests.unit.pipeline.test_stages import batch_of
from tunflow.pipeline import Lane
from tunflow_plugins.stats import StatsStage


def behind(packet: bytes, kind: int) -> bytes:
    """``packet`` (IPv6) with one 8-byte extension header of ``kind`` before its payload."""
    if kind == 44:  # a first fragment: offset 0, more fragments
        ext = bytes([packet[6], 0, 0, 1]) + bytes(4)
    else:  # hop-by-hop (0), routing (43), destination options (60): padding only
        ext = bytes([packet[6], 0, 1, 4]) + bytes(4)
    length = len(packet) - 40 + len(ext)
    return packet[:4] + length.to_bytes(2, "big") + bytes([kind]) + packet[7:40] + ext + packet[40:]


def counters(packets: list[bytes]) -> dict[str, int]:
    stage = StatsStage()
    stage.bind(Lane())(batch_of(packets))
    return dict(stage.statistics().counters)


def test_a_udp_packet_behind_extension_headers_counts_as_udp() -> None:
    # an MLD report, for one, is ICMPv6 behind a hop-by-hop header: it counted as "other"
    udp = ipv6_udp("fd00::1", "fd00::2", 1, 2, b"x" * 20)
    packets = [behind(udp, kind) for kind in (0, 43, 60, 44)] + [behind(behind(udp, 60), 0)]
    c = counters(packets)
    assert (c["ipv6"], c["udp"], c["other"], c["not_ip"]) == (5, 5, 0, 0)


def test_a_packet_whose_extension_headers_run_past_it_counts_as_other() -> None:
    udp = ipv6_udp("fd00::1", "fd00::2", 1, 2, b"")
    cut = bytearray(behind(udp, 0))
    cut[41] = 200  # a hop-by-hop header 1608 bytes long, in a 56-byte packet
    c = counters([bytes(cut), udp])
    assert (c["ipv6"], c["udp"], c["other"]) == (2, 1, 1)
