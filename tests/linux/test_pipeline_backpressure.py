"""Backpressure: a sink slowed to a trickle under a 30-second flood. Memory stays flat, the source
stops reading (it reads only what the sink takes), and the kernel's drops show in statistics."""

from __future__ import annotations

import sys
import time

import anyio
import pytest

from tunflow import DeviceBuilder, testing
from tunflow.pipeline import DevicePort, MemorySink, StageSpec, open_pipeline

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio, pytest.mark.slow]

FLOOD_SECONDS = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


FLOOD = r"""
import socket, sys, time
end = time.monotonic() + float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = bytes(1000)
n = 0
while time.monotonic() < end:
    for port in range(3000, 3016):
        try:
            s.sendto(payload, (sys.argv[1], port))
            n += 1
        except OSError:
            pass
print(n)
"""


async def test_slow_sink_keeps_memory_flat_and_the_kernel_drops(netns: testing.Netns) -> None:
    dev = DeviceBuilder().name(testing.unique_name("bp")).ipv4("10.220.0.1", 24).tx_queue_len(500)
    source = dev.build_async()
    # A trickle: 20 batches a second, kept as counts only.
    sink = MemorySink(delay=0.05, keep=0)
    batch_packets = 64
    samples: list[int] = []
    try:
        port = DevicePort(source, max_packets=batch_packets)
        async with open_pipeline(port, [StageSpec("stats")], sink, name="bp") as p:
            flood = await anyio.open_process(
                netns.cmd(sys.executable, "-c", FLOOD, "10.220.0.2", str(FLOOD_SECONDS))
            )
            async with flood:
                start = time.monotonic()
                while time.monotonic() - start < FLOOD_SECONDS:
                    await anyio.sleep(1.0)
                    samples.append(rss_kib())
                    mid = p.statistics()
                sent_text = (await flood.stdout.receive()).decode() if flood.stdout else "0"
                await flood.wait()
            stats = p.statistics()
    finally:
        await source.aclose()
    sent = int(sent_text.split()[0])
    read = stats.port(stats.ports[0].name).rx_packets
    written = stats.workers[0].packets_out
    dropped = stats.kernel_drops
    print(
        f"sent {sent}, read {read}, written {written}, kernel drops {dropped}, "
        f"RSS KiB min {min(samples[3:])} max {max(samples[3:])}"
    )
    # The flood was real and the sink a trickle.
    assert sent > 100_000, sent
    assert written <= FLOOD_SECONDS * 20 * batch_packets * 1.2
    # The source read only what the sink took (one batch in hand at most).
    assert read - written <= batch_packets
    assert read < sent / 10
    # The kernel dropped the rest, and the pipeline's statistics say so.
    (name,) = dropped
    assert dropped[name] > sent / 2
    assert mid.kernel_drops[name] > 0
    # Flat memory: after a warm-up, RSS moves by less than 4 MiB over the flood.
    steady = samples[3:]
    assert max(steady) - min(steady) < 4096, samples
