"""Each built-in stage on real kernel traffic between two namespaces joined by a pipeline."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import anyio
import dpkt
import pytest

from tunflow import testing
from tunflow.pipeline import StageSpec, open_tunnel

from .pipeline_topology import (
    B4,
    Receiver,
    close_all,
    devices,
    random_bytes,
    send_udp,
    sha256,
    tcp_transfer,
)

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # every backend is covered by the shutdown tests; traffic is the point here


async def test_filter_blocks_what_its_rules_say(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    a, b = netns_pair
    qa, qb = await devices(a, b)
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
    try:
        async with open_tunnel(qa, qb, [StageSpec("filter", {"rules": rules})]) as t:
            with Receiver(b, [7000, 7001]) as rx:
                for port in (7000, 7001):
                    await anyio.to_thread.run_sync(
                        send_udp, a, B4, port, [f"{port}-{i}".encode() for i in range(20)], 0.001
                    )
                await anyio.sleep(0.5)
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
    finally:
        await close_all(qa, qb)


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
    qa, qb = await devices(a, b)
    path = tmp_path / "cap.pcap"
    payloads = [f"packet {i}".encode() * (1 + i % 5) for i in range(60)]
    chain = [StageSpec("capture", {"path": str(path), "direction": "out"}), StageSpec("stats")]
    try:
        async with open_tunnel(qa, qb, chain):
            with Receiver(b, [7100]) as rx:
                await anyio.to_thread.run_sync(send_udp, a, B4, 7100, payloads, 0.001)
                await anyio.sleep(0.5)
        assert [d for _, d in rx.got[7100]] == payloads
    finally:
        await close_all(qa, qb)
    check_capture(path, payloads)


async def test_ratelimit_holds_its_rate(netns_pair: tuple[testing.Netns, testing.Netns]) -> None:
    a, b = netns_pair
    qa, qb = await devices(a, b)
    rate = 400_000  # bytes/s of IP packets; the sender offers about twice that
    size = 1000
    chain = [StageSpec("ratelimit", {"rate": rate, "burst": 20_000})]
    try:
        async with open_tunnel(qa, qb, chain) as t:
            with Receiver(b, [7200]) as rx:
                await anyio.to_thread.run_sync(send_udp, a, B4, 7200, [bytes(size)] * 2400, 1 / 800)
                await anyio.sleep(0.3)
            s = t.statistics().stage("ratelimit")
    finally:
        await close_all(qa, qb)
    times = [ts for ts, _ in rx.got[7200]]
    assert s.drops.get("rate", 0) > 0
    start = times[0] + 0.5  # past the initial burst
    window = [ts for ts in times if ts >= start]
    measured = (len(window) - 1) * (size + 28) / (window[-1] - window[0])
    assert abs(measured - rate) / rate < 0.10, f"measured {measured:.0f} B/s for {rate}"


@pytest.mark.parametrize("chain", [["gso"], ["gro"], ["gso", "gro"], ["gso", "filter", "gro"]])
async def test_gro_gso_keep_data_byte_identical(
    netns_pair: tuple[testing.Netns, testing.Netns], chain: list[str]
) -> None:
    a, b = netns_pair
    qa, qb = await devices(a, b, offload=True)
    data = random_bytes(8 << 20)
    try:
        async with open_tunnel(qa, qb, [StageSpec(n) for n in chain]) as t:
            with anyio.fail_after(90):
                digest = await anyio.to_thread.run_sync(tcp_transfer, a, b, data)
            stats = t.statistics()
    finally:
        await close_all(qa, qb)
    assert digest == sha256(data)
    if "gso" in chain:
        assert stats.stage("gso").counters.get("segments", 0) > 0
    if chain == ["gro"]:
        # the source reads whole super-packets: nothing to coalesce, and no copy either
        assert stats.stage("gro").packets_in > 0


async def test_udp_through_offload_devices_and_gso(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    a, b = netns_pair
    qa, qb = await devices(a, b, offload=True)
    payloads = [bytes([i]) * (100 + 37 * i) for i in range(40)]
    try:
        async with open_tunnel(qa, qb, [StageSpec("gso"), StageSpec("gro")]):
            with Receiver(b, [7300]) as rx:
                await anyio.to_thread.run_sync(send_udp, a, B4, 7300, payloads, 0.001)
                await anyio.sleep(0.5)
    finally:
        await close_all(qa, qb)
    assert [d for _, d in rx.got[7300]] == payloads
