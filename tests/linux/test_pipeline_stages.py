"""Each built-in stage on real kernel traffic between two namespaces joined by a pipeline."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import anyio
import dpkt
import pytest

from tests.helpers import ipv4_udp
from tunflow import testing
from tunflow.pipeline import MemorySink, MemorySource, Pipeline, StageSpec, Tunnel, open_tunnel

from .pipeline_topology import (
    B4,
    PacedSender,
    Receiver,
    devices,
    random_bytes,
    send_udp,
    sha256,
    tcp_transfer,
    wait_until,
)

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # every backend is covered by the shutdown tests; traffic is the point here


async def test_filter_blocks_what_its_rules_say(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    a, b = netns_pair
    rules = [
        {
            "action": "deny",
            "direction": "out",
            "protocol": "udp",
            "dst_ports": [7000],
            "name": "udp7000",
        },
        {
            "action": "deny",
            "direction": "out",
            "protocol": "icmp",
            "icmp_types": [8],
            "name": "ping",
        },
        {"action": "allow", "protocol": "udp", "name": "udp"},
    ]
    async with (
        devices(a, b) as (qa, qb),
        open_tunnel(qa, qb, [StageSpec("filter", {"rules": rules})]) as t,
    ):
        with Receiver(b, [7000, 7001]) as rx:
            for port in (7000, 7001):
                await anyio.to_thread.run_sync(
                    send_udp, a, B4, port, [f"{port}-{i}".encode() for i in range(20)], 0.001
                )
            # Port 7000's datagrams went first on the same path: once 7001's are all in, the
            # filter has judged every one of them.
            await wait_until(lambda: len(rx.got[7001]) >= 20, "the datagrams to port 7001")
        assert rx.got[7000] == []
        assert [d for _, d in rx.got[7001]] == [f"7001-{i}".encode() for i in range(20)]
        ping = await anyio.to_thread.run_sync(
            lambda: a.run("ping", "-c", "2", "-W", "1", "-i", "0.2", B4, check=False)
        )
        assert ping.returncode != 0
        # TCP matches no rule: the default (allow) lets it through, both ways
        digest = await anyio.to_thread.run_sync(tcp_transfer, a, b, b"hello" * 1000)
        assert digest == sha256(b"hello" * 1000)
        s = t.statistics().stage("filter")
        assert s.counters["udp7000"] == 20 and s.counters["udp"] >= 20
        assert s.counters["ping"] >= 2
        assert s.drops["denied"] >= 22


def check_capture(path: Path, payloads: list[bytes]) -> None:
    """The capture holds exactly ``payloads`` to port 7100, for dpkt and for tshark."""
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == 101  # LINKTYPE_RAW
        udp = [
            ip.data.data
            for ip in (dpkt.ip.IP(buf) for _, buf in reader if buf[0] >> 4 == 4)
            if isinstance(ip.data, dpkt.udp.UDP) and ip.data.dport == 7100
        ]
    assert udp == payloads
    if shutil.which("tshark"):
        out = subprocess.run(
            [
                "tshark",
                "-r",
                str(path),
                "-Y",
                "udp.dstport == 7100",
                "-T",
                "fields",
                "-e",
                "udp.payload",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.split()
        assert [bytes.fromhex(h) for h in out] == payloads


async def test_capture_matches_the_packets_sent(
    netns_pair: tuple[testing.Netns, testing.Netns], tmp_path: Path
) -> None:
    a, b = netns_pair
    path = tmp_path / "cap.pcap"
    payloads = [f"packet {i}".encode() * (1 + i % 5) for i in range(60)]
    chain = [StageSpec("capture", {"path": str(path), "direction": "out"}), StageSpec("stats")]
    async with devices(a, b) as (qa, qb):
        async with open_tunnel(qa, qb, chain):
            with Receiver(b, [7100]) as rx:
                await anyio.to_thread.run_sync(send_udp, a, B4, 7100, payloads, 0.001)
                await wait_until(lambda: len(rx.got[7100]) >= len(payloads), "every datagram")
        assert [d for _, d in rx.got[7100]] == payloads
    check_capture(path, payloads)  # the tunnel stopped: the capture is flushed and closed


@pytest.mark.parametrize("max_bytes", [0, 20_000])
def test_a_full_disk_leaves_whole_capture_files_and_counts_what_they_lost(
    tmp_path: Path, max_bytes: int
) -> None:
    # A 64 KiB tmpfs fills part way through a 64 KiB write: the buffered file left its last
    # record cut (tshark: 'cut short in the middle of a packet', dpkt a short packet), the
    # counters said 0 packets and 0 bytes though the file held 178 records, and the records
    # buffered when it failed (174) were counted as neither packets nor not_captured.
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        pk = [ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes(300 + i % 50)) for i in range(2000)]
        opts: dict[str, object] = {"path": str(disk / "c.pcap"), "max_bytes": max_bytes}
        sink = MemorySink()
        p = Pipeline(MemorySource(pk, batch_size=64), [StageSpec("capture", opts)], sink)
        anyio.run(p.run)
        assert len(sink.packets) == 2000  # the traffic went on
        counters = p.statistics().stage("capture").counters
        files = sorted(disk.iterdir())
        assert files and counters["files"] == len(files)
        records = 0
        for f in files:
            with open(f, "rb") as r:
                got = [bytes(buf) for _, buf in dpkt.pcap.Reader(r)]
            assert got == pk[records : records + len(got)], f.name  # whole, in order
            records += len(got)
            if shutil.which("tshark"):
                subprocess.run(["tshark", "-r", str(f)], capture_output=True, check=True)
        assert counters["packets"] == records > 0
        assert counters["bytes"] == sum(f.stat().st_size for f in files)
        assert counters["not_captured"] == 2000 - records
    finally:
        subprocess.run(["umount", str(disk)], check=True)


async def measure_rate(t: Tunnel, sender: PacedSender, window: float) -> tuple[float, str]:
    """Bytes per second through the ratelimit stage over ``window`` seconds, from its own
    counters sampled in the event loop that runs it; and why the machine looked too busy for a
    fair measurement ("" when it did not)."""
    t0, out0, sent0 = time.monotonic(), t.statistics().stage("ratelimit").bytes_out, sender.sent
    lag = 0.0
    while time.monotonic() - t0 < window:
        before = time.monotonic()
        await anyio.sleep(0.01)
        lag = max(lag, time.monotonic() - before - 0.01)
    t1, out1, sent1 = time.monotonic(), t.statistics().stage("ratelimit").bytes_out, sender.sent
    measured = (out1 - out0) / (t1 - t0)
    offered = (sent1 - sent0) * WIRE / (t1 - t0)
    busy = []
    if lag > 0.05:  # more than the bucket holds (20 kB = 50 ms of rate): tokens were lost
        busy.append(f"the event loop stalled for {lag * 1000:.0f} ms")
    if offered < 1.5 * RATE:  # the bucket could have run dry: not a test of the limit
        busy.append(f"the sender offered only {offered:.0f} B/s")
    return measured, "; ".join(busy)


RATE = 400_000  # bytes/s of IP packets
WIRE = 1000 + 28  # a datagram of 1000 bytes as an IP packet


async def test_ratelimit_holds_its_rate(netns_pair: tuple[testing.Netns, testing.Netns]) -> None:
    a, b = netns_pair
    chain = [StageSpec("ratelimit", {"rate": RATE, "burst": 20_000})]
    async with devices(a, b) as (qa, qb), open_tunnel(qa, qb, chain) as t:
        # Twice the rate offered; over a 4 s window the 20 kB bucket is 1.25 % of what passes.
        with PacedSender(a, B4, 7200, bytes(WIRE - 28), 2 * RATE / WIRE) as sender:
            await anyio.sleep(1.0)  # past the initial burst, the sender in its stride
            measured, busy = await measure_rate(t, sender, 4.0)
            if busy:  # measure once more before judging the limiter by an overloaded box
                measured, busy = await measure_rate(t, sender, 4.0)
        drops = t.statistics().stage("ratelimit").drops.get("rate", 0)
    assert drops > 0
    assert abs(measured - RATE) / RATE < 0.10, f"measured {measured:.0f} B/s for {RATE} ({busy})"


@pytest.mark.parametrize("chain", [["gso"], ["gro"], ["gso", "gro"], ["gso", "filter", "gro"]])
async def test_gro_gso_keep_data_byte_identical(
    netns_pair: tuple[testing.Netns, testing.Netns], chain: list[str]
) -> None:
    a, b = netns_pair
    data = random_bytes(8 << 20)
    async with (
        devices(a, b, offload=True) as (qa, qb),
        open_tunnel(qa, qb, [StageSpec(n) for n in chain]) as t,
    ):
        with anyio.fail_after(90):
            digest = await anyio.to_thread.run_sync(tcp_transfer, a, b, data)
        stats = t.statistics()
    assert digest == sha256(data)
    if "gso" in chain:
        assert stats.stage("gso").counters.get("segments", 0) > 0
    if chain == ["gro"]:
        # The source reads whole super-packets: the data crossed as super-packets (far more
        # bytes per packet than an MTU)...
        (out,) = [w for w in stats.workers if w.direction == "out"]
        assert out.bytes_in / out.packets_in > 3 * 1500, out
        # ...which GRO passes on as they are: it merged nothing and made no super-packet.
        gro = stats.stage("gro").counters
        assert gro["coalesced"] == 0 and gro["gso_packets"] == 0, gro


async def test_udp_through_offload_devices_and_gso(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    a, b = netns_pair
    payloads = [bytes([i]) * (100 + 37 * i) for i in range(40)]
    async with (
        devices(a, b, offload=True) as (qa, qb),
        open_tunnel(qa, qb, [StageSpec("gso"), StageSpec("gro")]),
    ):
        with Receiver(b, [7300]) as rx:
            await anyio.to_thread.run_sync(send_udp, a, B4, 7300, payloads, 0.001)
            await wait_until(lambda: len(rx.got[7300]) >= len(payloads), "every datagram")
    assert [d for _, d in rx.got[7300]] == payloads
