"""The ``capture`` stage at its edges: partial (offload) checksums, lanes of both layers, one
stage in two pipelines, and a stage started again."""

from __future__ import annotations

import struct
from pathlib import Path

import anyio
import pytest

from tests.helpers import ipv4_udp
from tests.unit.pipeline.test_stages import batch_of, pcap_records, read_pcap
from tunflow import ConfigError
from tunflow.device import Layer
from tunflow.offload import VIRTIO_NET_HDR_F_NEEDS_CSUM, pseudo_header_sum
from tunflow.packet import PacketBatch, checksum
from tunflow.pipeline import Lane, MemorySink, MemorySource, Pipeline, StageContext
from tunflow_plugins.capture import CaptureStage
from tunflow_plugins.pcap import LINKTYPE_RAW

PKT = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")  # 28 bytes
FRAME = bytes(60)


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


def test_lanes_of_both_layers_are_refused_not_written_into_one_file(tmp_path: Path) -> None:
    # a TUN's packets and a TAP's frames in one file of one link type: the frames were
    # written as raw IP (or the packets as Ethernet), garbage to every reader
    path = tmp_path / "m.pcap"
    p = Pipeline(
        [MemorySource([PKT] * 3), MemorySource([FRAME] * 3, layer=Layer.L2)],
        [CaptureStage(path=str(path))],
        [MemorySink(), MemorySink(layer=Layer.L2)],
    )
    with pytest.raises(ConfigError, match="link type"):
        anyio.run(p.run)
    assert read_pcap(path) == (LINKTYPE_RAW, [])


def test_a_lane_filtered_out_by_direction_may_be_of_the_other_layer(tmp_path: Path) -> None:
    stage = CaptureStage(path=str(tmp_path / "d.pcap"), direction="in")
    stage.bind(Lane(layer=Layer.L3))
    stage.bind(Lane(layer=Layer.L2))  # outbound: not captured, so no second link type


def test_a_tap_lane_after_a_tun_lane_is_refused_when_both_are_captured(tmp_path: Path) -> None:
    stage = CaptureStage(path=str(tmp_path / "d.pcap"))
    stage.bind(Lane(layer=Layer.L3))
    with pytest.raises(ConfigError, match="one link type"):
        stage.bind(Lane(layer=Layer.L2))


def test_one_stage_in_two_pipelines_writes_both_into_one_file(tmp_path: Path) -> None:
    # the second start opened the file again (truncating it) and leaked the first handle; the
    # first pipeline's stop closed the file, and the second's next batch made it anew, empty
    path = tmp_path / "s.pcap"
    stage = CaptureStage(path=str(path))
    slow = MemorySink(delay=0.1)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(Pipeline(MemorySource([PKT] * 4, batch_size=1), [stage], slow).run)
            await Pipeline(MemorySource([PKT] * 2, batch_size=1), [stage], MemorySink()).run()

    anyio.run(main)
    assert len(read_pcap(path)[1]) == 6
    assert stage.statistics().counters["files"] == 1
    fds = Path("/proc/self/fd")
    assert not [fd for fd in fds.iterdir() if fd.resolve() == path]  # closed, both handles


def test_pipelines_of_two_layers_cannot_share_one_capture(tmp_path: Path) -> None:
    path = tmp_path / "s.pcap"
    stage = CaptureStage(path=str(path))
    errors: list[BaseException] = []

    async def tap() -> None:
        try:
            await Pipeline(
                MemorySource([FRAME], layer=Layer.L2), [stage], MemorySink(layer=Layer.L2)
            ).run()
        except ConfigError as exc:
            errors.append(exc)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(
                Pipeline(MemorySource([PKT] * 3, batch_size=1), [stage], MemorySink(delay=0.1)).run
            )
            await tap()

    anyio.run(main)
    assert [type(e) for e in errors] == [ConfigError]
    assert read_pcap(path) == (LINKTYPE_RAW, [PKT] * 3)


@pytest.mark.anyio
async def test_a_capture_started_again_after_its_file_failed_captures_again(
    tmp_path: Path,
) -> None:
    stage = CaptureStage(path=str(tmp_path / "a.pcap"))
    await stage.start(StageContext())
    stage._fail(OSError(28, "No space left on device"))  # as a full disk would
    await stage.stop()
    await stage.start(StageContext())
    stage.bind(Lane())(batch_of([PKT]))
    await stage.stop()
    assert read_pcap(tmp_path / "a.pcap")[1] == [PKT]


@pytest.mark.anyio
async def test_a_capture_started_again_in_a_worker_process_keeps_its_name(
    tmp_path: Path,
) -> None:
    stage = CaptureStage(path=str(tmp_path / "c.pcap"))
    for _ in range(2):
        await stage.start(StageContext(process_index=1))
        await stage.stop()
    assert [p.name for p in stage.files] == ["c.w1.pcap", "c.w1.pcap"]
