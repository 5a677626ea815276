"""The ``capture`` stage at its edges: partial (offload) checksums."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.helpers import ipv4_udp
from tests.unit.pipeline.test_stages import pcap_records
from tunflow.offload import VIRTIO_NET_HDR_F_NEEDS_CSUM, pseudo_header_sum
from tunflow.packet import PacketBatch, checksum
from tunflow.pipeline import Lane, StageContext
from tunflow_plugins.capture import CaptureStage


def partial_udp() -> bytes:
    """A UDP packet as an offload TUN hands it over: the pseudo-header sum in its checksum."""
    pkt = bytearray(ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"hello"))
    pkt[26:28] = checksum(b"", pseudo_header_sum(pkt, 17, len(pkt) - 20)).to_bytes(2, "big")
    return bytes(pkt)


def udp_checksum_ok(pkt: bytes) -> bool:
    return checksum(pkt[20:], pseudo_header_sum(pkt, 17, len(pkt) - 20)) == 0xFFFF


@pytest.mark.anyio
@pytest.mark.parametrize("segments", [True, False])
async def test_a_partial_checksum_is_completed_in_the_file_with_segments_only(
    tmp_path: Path, segments: bool
) -> None:
    pkt = partial_udp()
    b = PacketBatch(capacity=1 << 16, max_packets=8)
    b.vnet_hdr = True
    b.append(pkt, header=struct.pack("<BBHHHH", VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 20, 6))
    stage = CaptureStage(path=str(tmp_path / "c.pcap"), segments=segments)
    await stage.start(StageContext())
    stage.bind(Lane())(b)
    await stage.stop()
    [(_, written)] = pcap_records(tmp_path / "c.pcap")
    # segments: as on the wire; without: as the device handed it over (tcpdump's view)
    assert udp_checksum_ok(written) is segments
    assert written == pkt or segments
    assert b.to_list() == [pkt]  # the packet passed on keeps its partial checksum
