"""The ``capture`` stage and its pcap writer at their edges: option bounds, rotation at exactly
``max_bytes``, the timer's flush, counters while it runs and after the file fails, and a
writer's file cut back at a full disk."""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.helpers import ipv4_udp
from tests.unit.pipeline.test_stages import batch_of, pcap_records, read_pcap, scapy_pcap
from tunflow import ConfigError
from tunflow.device import Layer
from tunflow.packet import PacketBatch
from tunflow.pipeline import Lane, MemorySink, MemorySource, Pipeline, StageContext, StageSpec
from tunflow_plugins.capture import CaptureStage
from tunflow_plugins.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter

PKT = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")  # 28 bytes


@pytest.mark.parametrize(
    "options",
    [{"max_bytes": -1}, {"max_files": -1}, {"snaplen": 63}, {"snaplen": 262145}],
)
def test_options_past_their_bounds_are_refused(options: dict[str, int], tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        StageSpec("capture", {"path": str(tmp_path / "c.pcap"), **options}).build()


@pytest.mark.parametrize("snaplen", [64, 262144])
def test_the_snaplen_bounds_are_taken(snaplen: int, tmp_path: Path) -> None:
    StageSpec("capture", {"path": str(tmp_path / "c.pcap"), "snaplen": snaplen}).build()


def test_a_file_rotates_when_it_reaches_max_bytes_exactly(tmp_path: Path) -> None:
    # the header and two records are exactly max_bytes: each batch of two gets a file
    stage = StageSpec(
        "capture", {"path": str(tmp_path / "r.pcap"), "max_bytes": 24 + 2 * (16 + len(PKT))}
    ).build()
    anyio.run(Pipeline(MemorySource([PKT] * 6, batch_size=2), [stage], MemorySink()).run)
    files = sorted(tmp_path.glob("r-*.pcap"))
    assert [len(read_pcap(f)[1]) for f in files] == [2, 2, 2]


@pytest.mark.anyio
async def test_the_timer_hands_the_file_what_was_gathered(tmp_path: Path) -> None:
    stage = CaptureStage(path=str(tmp_path / "t.pcap"))
    await stage.start(StageContext())
    stage.bind(Lane())(batch_of([PKT] * 3))
    await stage.on_timer()
    assert (tmp_path / "t.pcap").stat().st_size == 24 + 3 * (16 + len(PKT))
    await stage.stop()


@pytest.mark.anyio
async def test_counters_say_what_is_captured_while_it_runs(tmp_path: Path) -> None:
    stage = CaptureStage(path=str(tmp_path / "t.pcap"))
    await stage.start(StageContext())
    stage.bind(Lane())(batch_of([PKT] * 3))
    c = stage.statistics().counters
    assert (c["packets"], c["bytes"]) == (3, 24 + 3 * (16 + len(PKT)))
    await stage.stop()


@pytest.mark.anyio
async def test_plain_packets_of_a_vnet_hdr_batch_get_a_stamp_each(tmp_path: Path) -> None:
    b = PacketBatch(capacity=1 << 16, max_packets=8)
    b.vnet_hdr = True
    for i in range(3):
        b.append(ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes([i])), header=bytes(10))
    stage = CaptureStage(path=str(tmp_path / "v.pcap"))
    await stage.start(StageContext())
    stage.bind(Lane())(b)
    await stage.stop()
    stamps = [t for t, _ in pcap_records(tmp_path / "v.pcap")]
    assert len(stamps) == 3 and stamps == sorted(set(stamps))


def test_packets_passed_on_after_the_file_failed_are_all_counted() -> None:
    # /dev/full takes no header: the capture stops as it starts, the traffic goes on
    p = Pipeline(
        MemorySource([PKT] * 15, batch_size=5),
        [StageSpec("capture", {"path": "/dev/full"})],
        sink := MemorySink(),
    )
    anyio.run(p.run)
    assert len(sink.packets) == 15
    assert p.statistics().stage("capture").counters["not_captured"] == 15


@pytest.mark.anyio
async def test_a_file_that_cannot_be_made_refuses_the_start(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"")
    stage = CaptureStage(path=str(tmp_path / "plain" / "c.pcap"))  # under a file
    with pytest.raises(OSError):
        await stage.start(StageContext())


@pytest.mark.anyio
async def test_a_tap_lane_writes_ethernet_without_a_start(tmp_path: Path) -> None:
    stage = CaptureStage(path=str(tmp_path / "e.pcap"))
    stage.bind(Lane(layer=Layer.L2))(batch_of([bytes(60)]))
    await stage.stop()
    assert read_pcap(tmp_path / "e.pcap") == (LINKTYPE_ETHERNET, [bytes(60)])


class Full(io.BytesIO):
    """Takes ``room`` bytes in all, then says the disk is full."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data: Any) -> int:
        n = min(len(data), self.room - self.tell())
        if n <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(bytes(data[:n]))


def test_a_header_cut_short_leaves_an_empty_file() -> None:
    f = Full(room=10)
    with pytest.raises(OSError):
        PcapWriter(f, LINKTYPE_RAW)
    assert f.getvalue() == b""


def test_a_disk_full_right_after_a_record_keeps_that_record(tmp_path: Path) -> None:
    f = Full(room=24 + 2 * (16 + len(PKT)))
    w = PcapWriter(f, LINKTYPE_RAW)
    for i in range(3):
        w.write(PKT, 10**9 + i)
    with pytest.raises(OSError):
        w.flush()
    assert (w.packets, w.lost) == (2, 1)
    path = tmp_path / "f.pcap"
    path.write_bytes(f.getvalue())
    assert len(scapy_pcap(path)[1]) == 2


def test_a_writer_goes_on_whole_after_a_failed_flush(tmp_path: Path) -> None:
    """Each failed flush cuts the file back to its own last whole record, the ones before kept."""
    rec = 16 + len(PKT)
    f = Full(room=24 + rec + 5)
    w = PcapWriter(f, LINKTYPE_RAW)
    w.write(PKT, 1)
    w.write(PKT, 2)
    with pytest.raises(OSError):
        w.flush()
    f.room = 24 + 2 * rec + 5  # some room again, then full again
    w.write(PKT, 3)
    w.write(PKT, 4)
    with pytest.raises(OSError):
        w.flush()
    path = tmp_path / "f.pcap"
    path.write_bytes(f.getvalue())
    assert [t for t, _ in pcap_records(path)] == [1, 3]
    assert (w.packets, w.lost, w.bytes_written) == (2, 2, 24 + 2 * rec)


@pytest.mark.anyio
@pytest.mark.parametrize("max_bytes", [0, 10_000])
async def test_each_worker_process_writes_files_of_its_own(tmp_path: Path, max_bytes: int) -> None:
    names = []
    for index in (0, 3):
        stage = CaptureStage(path=str(tmp_path / "c.pcap"), max_bytes=max_bytes)
        await stage.start(StageContext(process_index=index))
        await stage.stop()
        names += [p.name for p in stage.files]
    if max_bytes:
        assert names == ["c.w0-0000.pcap", "c.w3-0000.pcap"]
    else:
        assert names == ["c.w0.pcap", "c.w3.pcap"]
