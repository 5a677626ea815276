"""ratelimit, capture, stats, gro and gso without root."""

from __future__ import annotations

import errno
import io
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import dpkt
import pytest
from scapy.utils import RawPcapReader

from tests.helpers import ipv4_udp, ipv6_udp
from tests.unit.offload_packets import IP4_A, IP4_B, IP6_A, IP6_B, tcp_super_packet
from tunflow import ConfigError
from tunflow.device import Layer, OffloadInfo
from tunflow.offload import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    GROTable,
    VirtioNetHdr,
    gso_segment_count,
    gso_split,
)
from tunflow.packet import PacketBatch
from tunflow.pipeline import (
    Direction,
    Lane,
    MemorySink,
    MemorySource,
    Pipeline,
    StageBase,
    StageContext,
    StageSpec,
    build_stage,
)
from tunflow_plugins import ratelimit as rl
from tunflow_plugins.capture import CaptureStage
from tunflow_plugins.gro import GROStage
from tunflow_plugins.gso import GSOStage
from tunflow_plugins.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter
from tunflow_plugins.ratelimit import RateLimitStage, parse_rate
from tunflow_plugins.stats import StatsStage


def split_all(src: bytes) -> list[bytes]:
    """Every segment of ``src``, split straight with :func:`gso_split`."""
    out = PacketBatch(capacity=1 << 22, max_packets=1 << 16)
    assert gso_split(src, out) == gso_segment_count(src)
    return out.to_list()


def batch_of(packets: list[bytes]) -> PacketBatch:
    b = PacketBatch(capacity=1 << 20, max_packets=1024)
    b.extend(packets)
    return b


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(rl.time, "monotonic", c)
    return c


def test_parse_rate() -> None:
    assert parse_rate("20mbit") == (2.5e6, "bytes")
    assert parse_rate("2.5MB/s") == (2.5e6, "bytes")
    assert parse_rate("1kpps") == (1000.0, "packets")
    assert parse_rate(100) == (100.0, "bytes")
    for bits in ("20mbit", "20mbps", "20Mbps", "20000kbit", "20000kbps", "0.02gbps"):
        assert parse_rate(bits) == pytest.approx((2.5e6, "bytes")), bits
    for bad in ("fast", "-1mbit", "0", True, float("inf"), float("nan"), "1e999", "1e308gbit"):
        with pytest.raises(ValueError):
            parse_rate(bad)  # type: ignore[arg-type]


def test_police_holds_the_rate(clock: Clock) -> None:
    stage = RateLimitStage(rate=100_000, burst=10_000)  # bytes/s
    proc = stage.bind(Lane())
    pkt = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes(972))  # 1000 bytes
    passed = 0
    for _ in range(200):  # 2 s of offered 500 kB/s in 10 ms steps
        clock.now += 0.01
        passed += len(proc(batch_of([pkt] * 5)))
    # 2 s at 100 kB/s plus the 10 kB bucket
    assert 200 <= passed <= 212
    assert stage.statistics().drops["rate"] == 1000 - passed


def test_police_packets_per_second(clock: Clock) -> None:
    stage = RateLimitStage(rate="50pps", burst="5pps")
    proc = stage.bind(Lane())
    passed = 0
    for _ in range(100):
        clock.now += 0.01
        passed += len(proc(batch_of([b"\x45" + bytes(19)] * 3)))
    assert 50 <= passed <= 56


def wire_packets(batch: PacketBatch) -> int:
    """What ``batch`` is on the wire: every super-packet counted by its segments."""
    return sum(gso_segment_count(batch.with_header(i)) for i in range(len(batch)))


@pytest.mark.parametrize("per_flow", [False, True])
def test_police_packets_per_second_charges_super_packets_their_segments(
    clock: Clock, per_flow: bool
) -> None:
    sup = tcp_super_packet(IP4_A, IP4_B, 45 * 1000, 1000)  # 45 packets on the wire
    stage = RateLimitStage(rate="10pps", burst="10pps", per_flow=per_flow)
    proc = stage.bind(Lane())
    passed = 0
    for _ in range(100):  # 10 s of ten super-packets a second: 4500 wire packets offered
        clock.now += 0.1
        passed += wire_packets(proc(super_batch(sup)))
    # 10 s at 10 packets/s, the bucket of 10, and at most one super-packet of debt
    assert 45 <= passed <= 100 + 10 + 45
    assert stage.statistics().drops["rate"] >= 100 - 3


def test_police_plain_packets_still_pass_beside_a_super_packet(clock: Clock) -> None:
    sup = tcp_super_packet(IP4_A, IP4_B, 45 * 1000, 1000)
    plain = tcp_super_packet(IP4_A, IP4_B, 100, 1000)  # one segment
    stage = RateLimitStage(rate="100pps", burst="50pps")
    proc = stage.bind(Lane())
    out = proc(super_batch(sup, plain, sup))
    assert wire_packets(out) == 46  # the first super-packet and the small one; 4 tokens left
    assert stage.statistics().drops["rate"] == 1


def test_police_plain_packets_after_a_super_packet_keep_the_debt(clock: Clock) -> None:
    sup = tcp_super_packet(IP4_A, IP4_B, 45 * 1000, 1000)
    plain = [b"\x45" + bytes(19)] * 10
    stage = RateLimitStage(rate="10pps", burst="10pps")
    proc = stage.bind(Lane())
    assert wire_packets(proc(super_batch(sup))) == 45  # from a full bucket: 35 of debt
    assert stage.gauges()["tokens"] == -35
    assert len(proc(batch_of(plain))) == 0
    assert stage.statistics().drops == {"rate": 10}  # ten dropped, not 45
    assert stage.gauges()["tokens"] == -35  # and the debt still owed
    clock.now += 4.0  # 40 tokens: the debt paid, 5 left
    assert len(proc(batch_of(plain))) == 5
    assert stage.statistics().drops == {"rate": 15}
    assert stage.gauges()["tokens"] == pytest.approx(0)


@pytest.mark.parametrize("per_flow", [False, True])
def test_police_a_bucket_under_one_packet_passes_a_packet_from_a_full_one(
    clock: Clock, per_flow: bool
) -> None:
    """A packet dearer than the whole bucket passes from a full one: with ``burst = "0.5p"``
    plain packets all went to ``drops["rate"]`` for ever (per flow and in bytes they passed)."""
    stage = RateLimitStage(rate="2pps", burst="0.5p", per_flow=per_flow)
    proc = stage.bind(Lane())
    pkt = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    passed = 0
    for _ in range(34):  # 10 s of a packet every 0.3 s: one in two passes, at 0.6 s apart
        clock.now += 0.3
        passed += len(proc(batch_of([pkt])))
    assert 15 <= passed <= 20
    assert len(proc(batch_of([pkt] * 3))) <= 1


@pytest.mark.anyio
async def test_shape_packets_per_second_charges_super_packets(clock: Clock) -> None:
    sup = tcp_super_packet(IP4_A, IP4_B, 45 * 1000, 1000)
    stage = RateLimitStage(rate="10pps", burst="5pps", mode="shape")
    assert len(stage.bind(Lane())(super_batch(sup))) == 1
    assert stage.delay() == pytest.approx(4.0)  # 40 packets of debt at 10 a second


def test_per_flow_buckets(clock: Clock) -> None:
    stage = RateLimitStage(rate="10pps", burst="1pps", per_flow=True, max_flows=2)
    proc = stage.bind(Lane())
    a = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    b = ipv4_udp("10.0.0.1", "10.0.0.2", 3, 4, b"")
    c = ipv4_udp("10.0.0.1", "10.0.0.2", 5, 6, b"")
    out = proc(batch_of([a, a, b, b, c, b"\x45"]))
    assert out.to_list() == [a, b]
    s = stage.statistics()
    assert s.drops == {"rate": 2, "flow_table_full": 1, "malformed:truncated": 1}
    assert s.counters["flows"] == 2


@pytest.mark.anyio
async def test_shape_delays_instead_of_dropping(clock: Clock) -> None:
    stage = RateLimitStage(rate=1000, burst=1000, mode="shape")
    proc = stage.bind(Lane())
    out = proc(batch_of([bytes(500)] * 4))  # 2000 bytes: 1000 of debt
    assert len(out) == 4
    assert stage.delay() == pytest.approx(1.0)
    clock.now += 0.5
    assert stage.delay() == pytest.approx(0.5)
    clock.now += 0.6
    assert stage.delay() == 0.0


def test_ratelimit_bad_options() -> None:
    with pytest.raises(ConfigError, match="rate"):
        StageSpec("ratelimit", {"rate": "fast"}).build()
    with pytest.raises(ConfigError, match="global"):
        StageSpec("ratelimit", {"rate": 10, "mode": "shape", "per_flow": True}).build()
    with pytest.raises(ConfigError, match="burst"):
        StageSpec("ratelimit", {"rate": "10pps", "burst": 100}).build()
    for rate in (float("inf"), "1e999"):
        with pytest.raises(ConfigError, match="must be positive and finite"):
            StageSpec("ratelimit", {"rate": rate}).build()
    for idle in (-1, 0):
        with pytest.raises(ConfigError, match=f"idle_timeout must be positive .*, not {idle}"):
            StageSpec("ratelimit", {"rate": 10, "per_flow": True, "idle_timeout": idle}).build()


@pytest.mark.parametrize("mode", ["police", "shape"])
def test_one_global_bucket_is_refused_across_worker_processes(mode: str) -> None:
    """Each worker process built its own bucket: four queues in processes mode let four times
    the rate through (80 packets where tasks mode passed 20, with a burst of 20)."""
    sources = [MemorySource([], name=f"q{i}") for i in range(4)]
    rate = StageSpec("ratelimit", {"rate": "10pps", "mode": mode})
    with pytest.raises(ConfigError, match=r"stages\[0\] \(ratelimit\) keeps one state"):
        Pipeline(sources, [rate], MemorySink(), workers="processes")
    Pipeline(sources[:1], [rate], MemorySink(), workers="processes")  # one process: one bucket
    # a flow stays on its queue, so per flow each process's buckets are the flows' own
    per_flow = StageSpec("ratelimit", {"rate": "10pps", "per_flow": True})
    Pipeline(sources, [per_flow], MemorySink(), workers="processes")


def read_pcap(path: Path) -> tuple[int, list[bytes]]:
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        return reader.datalink(), [bytes(buf) for _, buf in reader]


@pytest.mark.parametrize("on_error", ["drop", "stop"])
def test_a_capture_that_cannot_write_stops_capturing_not_the_traffic(on_error: str) -> None:
    # /dev/full: each batch over the file's buffer raised OSError, which the engine took for
    # the stage failing — the batch dropped (16 of 2000 got through), or the pipeline stopped
    pk = [b"\x45\x00\x05\xdc" + bytes(1496)] * 2000
    sink = MemorySink()
    p = Pipeline(
        MemorySource(pk, batch_size=64),
        [StageSpec("capture", {"path": "/dev/full"})],
        sink,
        on_error=on_error,
    )
    anyio.run(p.run)
    assert len(sink.packets) == 2000
    s = p.statistics().stage("capture")
    assert s.errors == 0 and s.counters["not_captured"] > 0


@pytest.mark.parametrize("path", ["", "a\0b"])
def test_a_capture_path_that_names_no_file_is_refused(path: str) -> None:
    # (checked only at start: "" opened the directory ".", a NUL was open()'s ValueError out
    # of tunflow run, a traceback)
    with pytest.raises(ConfigError, match="does not name a file"):
        StageSpec("capture", {"path": path}).build()


def test_capture_writes_what_passes(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    pk = [ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes([i])) for i in range(50)]
    pk.append(ipv6_udp("fd00::1", "fd00::2", 1, 2, b"six"))
    p = Pipeline(
        MemorySource(pk, batch_size=16), [StageSpec("capture", {"path": str(path)})], MemorySink()
    )
    anyio.run(p.run)
    linktype, got = read_pcap(path)
    assert linktype == LINKTYPE_RAW and got == pk
    assert p.statistics().stage("capture").counters["packets"] == 51
    if shutil.which("tshark"):
        out = subprocess.run(
            ["tshark", "-r", str(path), "-T", "fields", "-e", "udp.payload"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out[:3] == ["00", "01", "02"] and out[-1] == b"six".hex()


def test_capture_rotates(tmp_path: Path) -> None:
    pk = [ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes(200))] * 100
    stage = StageSpec(
        "capture", {"path": str(tmp_path / "r.pcap"), "max_bytes": 5000, "max_files": 3}
    ).build()
    anyio.run(Pipeline(MemorySource(pk, batch_size=10), [stage], MemorySink()).run)
    files = sorted(tmp_path.glob("r-*.pcap"))
    opened = stage.statistics().counters["files"]
    assert opened > 3
    assert [f.name for f in files] == [f"r-{i:04d}.pcap" for i in range(opened - 3, opened)]
    for f in files:
        assert read_pcap(f)[1] and f.stat().st_size <= 5000 + 10 * 260


def test_capture_started_again_goes_on_after_the_files_there(tmp_path: Path) -> None:
    # a restarted capture began at -0000 again: it wrote over the last run's first files and
    # left its higher-numbered ones outside max_files for good
    pk = [ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes(200))] * 100
    options = {"path": str(tmp_path / "r.pcap"), "max_bytes": 5000, "max_files": 4}
    (tmp_path / "r-0002.pcap").write_bytes(b"older")
    (tmp_path / "r-0011.pcap").write_bytes(b"old")
    (tmp_path / "r-0012.pcap").mkdir()  # not a file: not counted
    (tmp_path / "r-x013.pcap").write_bytes(b"not ours")
    (tmp_path / "q-0020.pcap").write_bytes(b"not ours")
    stage = StageSpec("capture", options).build()
    anyio.run(Pipeline(MemorySource(pk[:10], batch_size=10), [stage], MemorySink()).run)
    assert stage.files == [
        tmp_path / "r-0002.pcap",
        tmp_path / "r-0011.pcap",
        tmp_path / "r-0013.pcap",
    ]
    assert (tmp_path / "r-0011.pcap").read_bytes() == b"old"
    stage = StageSpec("capture", options).build()
    anyio.run(Pipeline(MemorySource(pk, batch_size=10), [stage], MemorySink()).run)
    opened = stage.statistics().counters["files"]
    assert opened >= 4  # (the earlier run's three files all went)
    files = sorted(p.name for p in tmp_path.glob("r-0*.pcap") if p.is_file())
    assert files == [f"r-{i:04d}.pcap" for i in range(14 + opened - 4, 14 + opened)]
    assert (tmp_path / "r-x013.pcap").exists() and (tmp_path / "q-0020.pcap").exists()


def test_a_rotation_that_cannot_make_its_file_names_that_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the warning named the file before it (the last one made), the error the right one

    class Obstacle(StageBase):
        """Makes the name of the next file a directory once the capture has started (one there
        before would be numbered past)."""

        plugin = "obstacle"

        def process(self, batch: PacketBatch) -> PacketBatch:
            (tmp_path / "r-0001.pcap").mkdir(exist_ok=True)  # the next file cannot be made
            return batch

    pk = [ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes(200))] * 100
    stage = StageSpec("capture", {"path": str(tmp_path / "r.pcap"), "max_bytes": 5000}).build()
    sink = MemorySink()
    with caplog.at_level("WARNING", logger="tunflow"):
        anyio.run(Pipeline(MemorySource(pk, batch_size=10), [Obstacle(), stage], sink).run)
    assert len(sink.packets) == 100  # the traffic went on
    [warning] = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert warning.startswith(f"capture {tmp_path / 'r-0001.pcap'}: cannot write (Is a direct")


@pytest.mark.anyio
async def test_capture_tap_linktype_and_segments(tmp_path: Path) -> None:
    stage = CaptureStage(path=tmp_path / "t.pcap")  # a Path, as a str
    await stage.start(StageContext(layer=Layer.L2))
    stage.bind(Lane(layer=Layer.L2))(batch_of([bytes(60)]))
    await stage.stop()
    assert read_pcap(tmp_path / "t.pcap")[0] == LINKTYPE_ETHERNET


def tcp_segments(n: int, size: int = 1000) -> list[bytes]:
    out = []
    for i in range(n):
        tcp = dpkt.tcp.TCP(
            sport=5000,
            dport=80,
            seq=1000 + i * size,
            ack=1,
            flags=dpkt.tcp.TH_ACK,
            data=bytes([i]) * size,
        )
        ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=6, id=i, data=tcp)
        out.append(bytes(ip))
    return out


def test_gro_then_gso_round_trip_is_byte_identical() -> None:
    pk = tcp_segments(20)
    offload = OffloadInfo(vnet_hdr=True, tso=True)
    gro = GROStage()
    merged = gro.bind(Lane(sink_offload=offload))(batch_of(pk))
    assert merged.vnet_hdr and len(merged) < len(pk)
    assert gro.statistics().counters["coalesced"] > 0
    gso = GSOStage()
    split = gso.bind(Lane())(merged)
    assert not split.vnet_hdr
    back = [dpkt.ip.IP(p) for p in split.to_list()]
    assert b"".join(bytes(ip.data.data) for ip in back) == b"".join(
        bytes(dpkt.ip.IP(p).data.data) for p in pk
    )
    assert gso.statistics().counters["segments"] == len(split)


def test_gro_passes_through_without_offload_sink_and_small_batches() -> None:
    gro = GROStage()
    b = batch_of(tcp_segments(5))
    assert gro.bind(Lane())(b) is b  # sink without offload
    one = batch_of(tcp_segments(1))
    assert gro.bind(Lane(sink_offload=OffloadInfo(vnet_hdr=True)))(one) is one


@pytest.mark.parametrize("bad", [0, -3])
def test_gro_max_segments_below_one_is_a_config_error(bad: int) -> None:
    # found when the options are checked (``tunflow check``), not when a lane binds the stage
    with pytest.raises(ConfigError, match=f"must be at least 1, not {bad}") as info:
        build_stage(StageSpec("gro", {"max_segments": bad}), path="stages[2]")
    assert info.value.path == "stages[2].options.max_segments"
    assert GROStage(max_segments=1).options.max_segments == 1


def test_gso_passes_plain_batches_and_drops_malformed() -> None:
    gso = GSOStage()
    proc = gso.bind(Lane())
    plain = batch_of(tcp_segments(3))
    assert proc(plain) is plain
    src = batch_of(tcp_segments(10))
    out = PacketBatch(capacity=1 << 20)
    GROTable().coalesce(src, out)
    out.buffer[out.offsets[0] - 9] = 99  # an unknown GSO type
    result = proc(out)
    assert gso.statistics().drops
    assert len(result) == len(out) - 1


@pytest.mark.anyio
async def test_stats_counts_protocols_and_rates() -> None:
    stage = StatsStage(interval=0.05)
    pk = [ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")] * 3 + [
        ipv6_udp("fd00::1", "fd00::2", 1, 2, b"")
    ]
    stage.bind(Lane())(batch_of(pk))
    await anyio.sleep(0.01)
    await stage.on_timer()
    s = stage.statistics()
    assert s.counters["ipv4"] == 3 and s.counters["ipv6"] == 1 and s.counters["udp"] == 4
    assert s.gauges["pps"] > 0


def super_batch(*supers: bytes) -> PacketBatch:
    """A ``vnet_hdr`` batch of super-packets (virtio header + IP packet each)."""
    b = PacketBatch(capacity=1 << 20, max_packets=64)
    b.vnet_hdr = True
    for s in supers:
        b.append(s[10:], header=s[:10])
    return b


# A 1 KiB hop-by-hop header (Pad1 options): every segment repeats it.
HBH_1K = bytes([6, 127]) + bytes(1022)


def test_gso_splits_every_segment_of_a_super_packet_with_long_headers() -> None:
    big = tcp_super_packet(IP6_A, IP6_B, 9000, 1000, v6=True, ext_headers=HBH_1K, ext_first=0)
    assert gso_segment_count(big) == 9
    small = tcp_super_packet(IP4_A, IP4_B, 3000, 1000)
    gso = GSOStage()
    out = gso.bind(Lane())(super_batch(big, small, big))
    got = out.to_list()
    assert got == split_all(big) + split_all(small) + split_all(big)
    assert len(got) == 21 and all(len(p) == 40 + 1024 + 20 + 1000 for p in got[:9])
    counters = gso.statistics().counters
    assert counters == {"split": 3, "segments": 21}


def test_gso_counts_a_packet_with_only_its_checksum_to_complete_as_no_split() -> None:
    # an offload TUN hands out many such packets (NEEDS_CSUM, GSO type NONE): each was counted
    # a super-packet split
    udp = bytearray(ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"payload"))
    udp[26:28] = b"\0\0"  # the checksum the kernel left to complete
    hdr = VirtioNetHdr(flags=VIRTIO_NET_HDR_F_NEEDS_CSUM, csum_start=20, csum_offset=6)
    small = tcp_super_packet(IP4_A, IP4_B, 3000, 1000)
    gso = GSOStage()
    out = gso.bind(Lane())(super_batch(hdr.encode() + bytes(udp), small))
    assert len(out) == 4
    assert gso.statistics().counters == {"split": 1, "segments": 4}


def test_gso_grows_its_batch_rather_than_lose_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunflow_plugins import gso as gso_module

    monkeypatch.setattr(gso_module, "_split_size", lambda n, c, cs: 0)  # a wrong estimate
    big = tcp_super_packet(IP6_A, IP6_B, 90_000 // 2, 500, v6=True, ext_headers=HBH_1K)
    gso = GSOStage()
    got = gso.bind(Lane())(super_batch(big)).to_list()
    assert got == split_all(big)
    assert gso.statistics().counters["segments"] == len(got) == 90


def pcap_records(path: Path) -> list[tuple[int, bytes]]:
    """``(timestamp in ns, packet)`` per record of a nanosecond pcap file, read by hand (dpkt
    gives float seconds, too coarse to tell nanoseconds apart)."""
    data = path.read_bytes()
    at, out = 24, []
    while at < len(data):
        sec, ns, cut, _ = struct.unpack_from("<IIII", data, at)
        out.append((sec * 1_000_000_000 + ns, data[at + 16 : at + 16 + cut]))
        at += 16 + cut
    return out


@pytest.mark.anyio
async def test_capture_writes_every_segment_with_its_own_timestamp(tmp_path: Path) -> None:
    # 1200 segments: more than the capture's scratch batch holds at once.
    many = tcp_super_packet(IP4_A, IP4_B, 60_000, 50)
    long_headers = tcp_super_packet(IP6_A, IP6_B, 9000, 1000, v6=True, ext_headers=HBH_1K)
    plain = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"plain")
    batch = super_batch(many, long_headers)
    batch.append(plain)
    stage = CaptureStage(path=str(tmp_path / "s.pcap"))
    await stage.start(StageContext())
    stage.bind(Lane())(batch)
    await stage.stop()
    records = pcap_records(tmp_path / "s.pcap")
    assert [p for _, p in records] == split_all(many) + split_all(long_headers) + [plain]
    stamps = [t for t, _ in records]
    assert stamps == sorted(set(stamps))  # one nanosecond apart, none shared
    assert stage.statistics().counters["packets"] == 1200 + 9 + 1


@pytest.mark.parametrize(
    ("plugin", "options", "builder"),
    [
        ("gso", {}, "bind"),
        ("ratelimit", {"rate": "1mbit"}, "bind"),
        ("ratelimit", {"rate": "1mbit", "per_flow": True}, "bind"),
        ("stats", {}, "bind"),
        ("capture", {"path": "CAPTURE"}, "bind"),
        ("filter", {"rules": [{"action": "allow", "protocol": "udp"}]}, "_processor"),
    ],
)
def test_process_outside_a_pipeline_builds_its_processor_once(
    plugin: str, options: dict[str, object], builder: str, tmp_path: Path
) -> None:
    if options.get("path") == "CAPTURE":
        options = {"path": str(tmp_path / "p.pcap")}
    stage = StageSpec(plugin, options).build()
    real = getattr(stage, builder)
    calls: list[object] = []

    def counting(*args: object) -> object:
        calls.append(args)
        return real(*args)

    setattr(stage, builder, counting)
    pk = [ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"x")] * 3
    for _ in range(3):
        assert len(stage.process(batch_of(pk))) == 3
    anyio.run(stage.stop)  # type: ignore[attr-defined]  # (capture closes its file)
    assert len(calls) == 1


def test_stats_on_a_tap_reads_the_ethertype_and_vlan_tags() -> None:
    macs = bytes(range(12))
    udp4 = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"v4")
    udp6 = ipv6_udp("fd00::1", "fd00::2", 1, 2, b"v6")
    arp = macs + b"\x08\x06" + bytes.fromhex("0001080006040001") + bytes(20)  # ARP request
    frames = [
        macs + b"\x08\x00" + udp4,  # plain
        macs + b"\x81\x00\x00\x07\x08\x00" + udp4,  # one VLAN tag
        macs + b"\x88\xa8\x00\x07\x81\x00\x00\x08\x86\xdd" + udp6,  # QinQ
        arp,
        macs + b"\x81\x00\x00",  # a VLAN tag cut short
    ]
    stage = StatsStage()
    stage.bind(Lane(layer=Layer.L2))(batch_of(frames))
    c = stage.statistics().counters
    assert (c["ipv4"], c["ipv6"], c["udp"], c["not_ip"], c["other"]) == (2, 1, 3, 2, 0)


def test_stats_counts_a_packet_too_short_for_its_ip_header_as_not_ip() -> None:
    """A packet shorter than its version's fixed header is not an IP packet to count: under
    20 bytes was ``not_ip`` whatever its version, but an IPv6 one of 20-39 bytes (its header is
    40) counted as IPv6 and by the protocol read from its cut-short header."""
    udp4 = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    udp6 = ipv6_udp("fd00::1", "fd00::2", 1, 2, b"")
    pk = [udp4, udp6, udp4[:19], udp6[:19], udp6[:20], udp6[:39]]
    for layer, head in ((Layer.L3, b""), (Layer.L2, bytes(12) + b"\x86\xdd")):
        stage = StatsStage()
        stage.bind(Lane(layer=layer))(batch_of([head + p for p in pk]))
        c = stage.statistics().counters
        assert (c["ipv4"], c["ipv6"], c["udp"], c["not_ip"], c["other"]) == (1, 1, 2, 4, 0)


def test_parse_rate_binary_units() -> None:
    assert parse_rate("1KiB") == (1024.0, "bytes")
    assert parse_rate("2MiB/s") == (2.0 * 1024**2, "bytes")
    assert parse_rate("1gib") == (1024.0**3, "bytes")


def test_default_burst_is_a_tenth_of_a_second_of_rate_with_a_floor() -> None:
    # as the option's help says: 0.1 s of rate, at least 64 KiB or 1 packet
    assert RateLimitStage(rate="100mbit").burst == pytest.approx(1.25e6)
    assert RateLimitStage(rate="1mbit").burst == 65536
    assert RateLimitStage(rate="1000pps").burst == pytest.approx(100)
    assert RateLimitStage(rate="5pps").burst == 1


def test_per_flow_bucket_refills_only_up_to_the_burst(clock: Clock) -> None:
    stage = RateLimitStage(rate="10pps", burst="2pps", per_flow=True)
    proc = stage.bind(Lane())
    a = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    assert len(proc(batch_of([a]))) == 1
    clock.now += 100.0  # idle long enough for 1000 tokens: the bucket holds 2
    assert len(proc(batch_of([a] * 10))) == 2


def test_per_flow_idle_buckets_are_forgotten(clock: Clock) -> None:
    stage = RateLimitStage(rate="10pps", per_flow=True, idle_timeout=5)
    proc = stage.bind(Lane())
    a = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    b = ipv4_udp("10.0.0.1", "10.0.0.2", 3, 4, b"")
    proc(batch_of([a, b]))
    clock.now += 3.0
    proc(batch_of([a]))
    clock.now += 3.0  # b idle for 6 s, a for 3
    anyio.run(stage.on_timer)
    assert stage.gauges()["flows"] == 1
    clock.now += 6.0
    anyio.run(stage.on_timer)
    assert stage.gauges()["flows"] == 0


def test_segment_costs_of_a_super_packet_whose_headers_do_not_add_up() -> None:
    sup = tcp_super_packet(IP4_A, IP4_B, 45 * 1000, 1000)
    bad = VirtioNetHdr.decode(sup[:10])
    bad = VirtioNetHdr(  # csum_start past the IPv4 header: gso_segment_count refuses it
        flags=bad.flags,
        gso_type=bad.gso_type,
        hdr_len=bad.hdr_len,
        gso_size=bad.gso_size,
        csum_start=24,
        csum_offset=bad.csum_offset,
    )
    costs = rl.segment_costs(super_batch(bad.encode() + sup[10:], sup))
    assert costs is not None and costs[1] == 45
    assert 45 <= costs[0] <= 46  # its length over gso_size, rounded up


@pytest.mark.anyio
async def test_stats_rates_are_per_second_over_the_last_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tunflow_plugins import stats as stats_module

    c = Clock()
    monkeypatch.setattr(stats_module.time, "monotonic", c)
    stage = StatsStage()
    proc = stage.bind(Lane())
    proc(batch_of([bytes(100)] * 10))
    c.now += 2.0
    await stage.on_timer()
    assert stage.gauges() == {"pps": 5.0, "bps": 10 * 100 * 8 / 2}
    proc(batch_of([bytes(50)] * 4))
    c.now += 1.0
    await stage.on_timer()
    assert stage.gauges() == {"pps": 4.0, "bps": 4 * 50 * 8}


def scapy_pcap(path: Path) -> tuple[RawPcapReader, list[tuple[bytes, object]]]:
    """The reader (its header fields) and ``(data, metadata)`` records of a pcap file, read by
    scapy."""
    reader = RawPcapReader(str(path))
    try:
        return reader, list(reader)
    finally:
        reader.close()


@pytest.mark.anyio
async def test_capture_header_and_snaplen_as_a_pcap_reader_sees_them(tmp_path: Path) -> None:
    # the nanosecond magic, the file's snaplen, records cut to it with their wire length kept
    # (through write_many, and through write for a plain packet of a vnet_hdr batch)
    long = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes(200))
    short = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"x")
    stage = CaptureStage(path=str(tmp_path / "s.pcap"), snaplen=100)
    await stage.start(StageContext())
    proc = stage.bind(Lane())
    before = time.time_ns()
    proc(batch_of([long, short]))
    mixed = super_batch(tcp_super_packet(IP4_A, IP4_B, 100, 1000))
    mixed.append(long)
    proc(mixed)
    await stage.stop()
    reader, records = scapy_pcap(tmp_path / "s.pcap")
    assert reader.nano and reader.linktype == LINKTYPE_RAW and reader.snaplen == 100
    got = [(data, meta.caplen, meta.wirelen) for data, meta in records]  # type: ignore[attr-defined]
    assert got[:2] == [(long[:100], 100, len(long)), (short, len(short), len(short))]
    assert got[3] == (long[:100], 100, len(long))
    sec, ns = records[0][1].sec, records[0][1].usec  # type: ignore[attr-defined]
    assert 0 <= sec * 10**9 + ns - before < 60 * 10**9


def test_a_failed_flush_keeps_whole_records_of_packets_cut_to_the_snaplen(tmp_path: Path) -> None:
    class Full(io.BytesIO):
        """Takes ``room`` bytes, then says the disk is full."""

        room = 24 + 3 * (16 + 64) + 30

        def write(self, data: Any) -> int:
            n = min(len(data), self.room - self.tell())
            chunk = bytes(data[:n])
            # (``data``, a view of the writer's buffer, stays in the traceback: the writer
            # raised BufferError over this OSError when it resized that buffer)
            if n <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(chunk)

    f = Full()
    w = PcapWriter(f, LINKTYPE_RAW, snaplen=64)
    for i in range(5):
        w.write(bytes([0x45, i]) + bytes(198), 10**9 + i)
    with pytest.raises(OSError):
        w.flush()
    path = tmp_path / "full.pcap"
    path.write_bytes(f.getvalue()[: f.tell()])
    _, records = scapy_pcap(path)
    assert [data[:2] for data, _ in records] == [bytes([0x45, i]) for i in range(3)]
    assert (w.packets, w.lost, w.bytes_written) == (3, 2, path.stat().st_size)


@pytest.mark.anyio
async def test_capture_of_one_direction_leaves_the_other_out(tmp_path: Path) -> None:
    stage = CaptureStage(path=str(tmp_path / "d.pcap"), direction="in")
    await stage.start(StageContext())
    pk = [ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"in")]
    stage.bind(Lane(direction=Direction.INBOUND))(batch_of(pk))
    stage.bind(Lane(direction=Direction.OUTBOUND))(batch_of([b"\x45" + bytes(19)]))
    await stage.stop()
    assert read_pcap(tmp_path / "d.pcap")[1] == pk


@pytest.mark.anyio
async def test_capture_hands_the_file_what_passes_64_kib_before_stop(tmp_path: Path) -> None:
    stage = CaptureStage(path=str(tmp_path / "f.pcap"))
    await stage.start(StageContext())
    proc = stage.bind(Lane())
    proc(batch_of([b"\x45" + bytes(999)] * 10))
    assert (tmp_path / "f.pcap").stat().st_size == 24  # gathered, not yet written
    proc(batch_of([b"\x45" + bytes(999)] * 60))
    assert (tmp_path / "f.pcap").stat().st_size == 24 + 70 * 1016
    await stage.stop()


@pytest.mark.anyio
async def test_capture_without_segments_writes_super_packets_as_they_are(tmp_path: Path) -> None:
    sup = tcp_super_packet(IP4_A, IP4_B, 3000, 1000)
    stage = CaptureStage(path=str(tmp_path / "g.pcap"), segments=False)
    await stage.start(StageContext())
    stage.bind(Lane())(super_batch(sup))
    await stage.stop()
    assert read_pcap(tmp_path / "g.pcap")[1] == [sup[10:]]


def test_capture_goes_on_after_a_rotated_file_of_five_digits(tmp_path: Path) -> None:
    (tmp_path / "r-9999.pcap").write_bytes(b"old")
    (tmp_path / "r-10000.pcap").write_bytes(b"old")
    stage = StageSpec("capture", {"path": str(tmp_path / "r.pcap"), "max_bytes": 5000}).build()
    pk = [ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")]
    anyio.run(Pipeline(MemorySource(pk), [stage], MemorySink()).run)
    assert stage.files[-1] == tmp_path / "r-10001.pcap"
    assert (tmp_path / "r-10000.pcap").read_bytes() == b"old"


def udp_datagrams(n: int, size: int = 1000) -> list[bytes]:
    return [ipv4_udp("10.0.0.1", "10.0.0.2", 5000, 53, bytes([i]) * size) for i in range(n)]


@pytest.mark.parametrize(
    ("options", "offload", "packets", "expected"),
    [
        ({}, OffloadInfo(vnet_hdr=True, tso=True), tcp_segments(20), 1),
        ({"tcp": False}, OffloadInfo(vnet_hdr=True, tso=True), tcp_segments(20), 20),
        ({"max_segments": 2}, OffloadInfo(vnet_hdr=True, tso=True), tcp_segments(20), 10),
        ({}, OffloadInfo(vnet_hdr=True, tso=True, uso=True), udp_datagrams(20), 1),
        ({}, OffloadInfo(vnet_hdr=True, tso=True), udp_datagrams(20), 20),  # no USO: no UDP
    ],
)
def test_gro_options_and_the_sink_s_uso(
    options: dict[str, object], offload: OffloadInfo, packets: list[bytes], expected: int
) -> None:
    gro = StageSpec("gro", options).build()
    assert len(gro.bind(Lane(sink_offload=offload))(batch_of(packets))) == expected


def test_gso_clears_vnet_hdr_of_a_batch_of_plain_packets() -> None:
    # a batch read with virtio headers that holds no super-packet goes on as plain packets
    b = batch_of(tcp_segments(3))
    b.vnet_hdr = True
    out = GSOStage().bind(Lane())(b)
    assert out.to_list() == tcp_segments(3) and not out.vnet_hdr
