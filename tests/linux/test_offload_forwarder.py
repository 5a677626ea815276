"""The offload forwarder on the real kernel: 256 MiB of TCP each way, v4 and v6, byte-identical.

Two namespaces reach each other only through their own TUN; ``examples/forwarder.py`` forwards
between the two TUNs. The far kernel checks every TCP checksum and the stream's SHA-256 is
compared end to end, so a wrong split, a wrong coalesce or a lost segment fails the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from tests.helpers import ROOT, Example
from tunflow import ClosedDeviceError, DeviceBuilder, SyncDevice, testing
from tunflow.offload import GROTable

pytestmark = [pytest.mark.needs_root, pytest.mark.slow]

MIB = 1 << 20
TRANSFER = ROOT / "tests" / "tcp_transfer.py"


def transfer(src: testing.Netns, dst: testing.Netns, address: str, nbytes: int) -> None:
    server = dst.popen(
        [sys.executable, "-u", str(TRANSFER), "server", address, "5301"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        client = src.run(
            sys.executable, str(TRANSFER), "client", address, "5301", str(nbytes), timeout=180
        )
        sent = client.stdout.split()
        received = server.communicate(timeout=60)[0].split()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert int(sent[0]) == nbytes
    assert received == sent, f"sent {sent}, received {received}"


def stats_of(ex: Example) -> dict[str, dict[str, object]]:
    ex.stop()
    out = {}
    for line in ex.lines:
        if line.startswith("{"):
            record = json.loads(line)
            out[record["device"]] = record
    assert set(out) == {"a", "b"}, ex.lines
    return out


@pytest.mark.parametrize(
    ("mode", "split"),
    [("sync", True), ("trio", True), ("asyncio", False), ("sync", False)],
    ids=["sync-split-gro", "trio-split-gro", "asyncio-whole", "sync-whole"],
)
def test_256_mib_each_way_byte_identical(mode: str, split: bool) -> None:
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        args = ["--netns-a", a.name, "--netns-b", b.name, "--mode", mode]
        if split:
            args.append("--split")
        with Example(a, "forwarder.py", *args) as ex:
            ready = ex.wait_for("ready")
            assert json.loads(ready.split(" ", 1)[1])["offload"]["vnet_hdr"] is True
            transfer(a, b, "10.101.2.1", 256 * MIB)  # A -> B over IPv4
            transfer(b, a, "10.101.1.1", 256 * MIB)  # B -> A over IPv4
            transfer(a, b, "fd01:2::1", 256 * MIB)  # A -> B over IPv6
            transfer(b, a, "fd01:1::1", 256 * MIB)  # B -> A over IPv6
            stats = stats_of(ex)
    # both directions carried super-packets from the kernel…
    assert stats["a"]["rx_super_packets"] > 0
    assert stats["b"]["rx_super_packets"] > 0
    # …and wrote super-packets to the far kernel: coalesced by GRO here, or passed whole
    for side in ("a", "b"):
        assert stats[side]["tx_super_packets"] > 0
        if split:
            assert stats[side]["tx_coalesced"] > 0
        assert stats[side]["rx_malformed"] == 0
        assert stats[side]["gro_disabled"] == 0


def test_recv_multiple_and_send_multiple_tun_rs_style() -> None:
    """tun-rs's batch calls over plain buffers, on an offload device with real TCP: 8 buffers
    are fewer than a super-packet's segments, and the rest waits for the next call."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        da = (
            DeviceBuilder()
            .netns(a.name)
            .ipv4("10.103.1.1", 24)
            .route("10.103.2.0/24")
            .offload()
            .build_sync()
        )
        db = (
            DeviceBuilder()
            .netns(b.name)
            .ipv4("10.103.2.1", 24)
            .route("10.103.1.0/24")
            .offload()
            .build_sync()
        )
        moved = {"a": 0, "b": 0}

        def pump(src: SyncDevice, dst: SyncDevice, key: str) -> None:
            bufs = [bytearray(10 + 1500) for _ in range(8)]
            sizes = [0] * 8
            table = GROTable()
            try:
                while True:
                    n = src.recv_multiple(bufs, sizes, 10)
                    packets = [
                        memoryview(buf)[: 10 + size]
                        for buf, size in zip(bufs[:n], sizes, strict=False)
                    ]
                    dst.send_multiple(table, packets, 10)
                    moved[key] += n
            except ClosedDeviceError:
                pass

        threads = [
            threading.Thread(target=pump, args=(da, db, "a")),
            threading.Thread(target=pump, args=(db, da, "b")),
        ]
        for t in threads:
            t.start()
        try:
            transfer(a, b, "10.103.2.1", 32 * MIB)
        finally:
            da.shutdown()
            db.shutdown()
            for t in threads:
                t.join(10)
            da.close()
            db.close()
        assert moved["a"] > 0 and moved["b"] > 0
        assert da.statistics().rx_super_packets > 0


def test_attach_without_offload_clears_the_device_mask(netns: testing.Netns) -> None:
    """tun-rs PR #141: the TUN_F_* mask belongs to the device; a later plain reader must not
    be handed super-packets."""
    name = testing.unique_name("p")
    with DeviceBuilder().name(name).persist().offload().ipv4("10.104.0.1", 24).build_sync():
        pass
    try:
        features = netns.run("ethtool", "-k", name).stdout
        assert "tcp-segmentation-offload: on" in features
        with DeviceBuilder().attach(name).build_sync() as plain:
            assert not plain.offload_info.vnet_hdr
            features = netns.run("ethtool", "-k", name).stdout
            assert "tcp-segmentation-offload: off" in features
    finally:
        netns.run("ip", "tuntap", "del", "dev", name, "mode", "tun")
