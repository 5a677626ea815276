"""What tunflow's device faces cost per packet, against a bare ``os.read`` loop on the same fd.

    sudo .venv/bin/python benchmarks/device_overhead.py [--packets 20000] [--rounds 5]

Method: in a throw-away namespace, one TUN with a deep queue (``tx_queue_len``) is filled with
N small UDP packets routed into it while nobody reads; then one reader drains exactly those N
packets and is timed. The readers take turns on fresh fillings, round after round, so every
figure comes from the same run, the same packets and the same machine load; the report is the
median time per packet and its ratio to the bare loop. Readers:

* ``bare os.read``   — ``os.read(fd, 65536)`` until ``BlockingIOError`` (the floor);
* ``SyncDevice``     — ``recv_batch`` into a reused :class:`~tunflow.PacketBatch`;
* ``AsyncDevice/…``  — ``await recv_batch`` on asyncio, uvloop and trio;
* ``…receive()``     — one packet per ``await``, the plain stream API, for contrast.

Goal (issue 3): the async faces within 1.5x of the bare loop per packet.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tunflow import AsyncDevice, DeviceBuilder, SyncDevice, testing

DST = ("10.99.0.2", 9)


def fill(sock: socket.socket, n: int) -> None:
    payload = b"x" * 32
    send = sock.sendto
    for _ in range(n):
        send(payload, DST)


def drain_bare(fd: int, n: int) -> float:
    read = os.read
    got = 0
    t0 = time.perf_counter()
    while got < n:
        try:
            read(fd, 65536)
            got += 1
        except BlockingIOError:
            break
    dt = time.perf_counter() - t0
    assert got == n, f"bare loop read {got} of {n}"
    return dt


def drain_sync(dev: SyncDevice, n: int) -> float:
    batch = dev.new_batch()
    got = 0
    t0 = time.perf_counter()
    while got < n:
        batch.clear()
        got += len(dev.recv_batch(batch, timeout=5))
    dt = time.perf_counter() - t0
    assert got == n, f"SyncDevice read {got} of {n}"
    return dt


async def drain_async(dev: AsyncDevice, n: int, single: bool) -> float:
    batch = dev.new_batch()
    got = 0
    t0 = time.perf_counter()
    with anyio.fail_after(30):
        if single:
            while got < n:
                await dev.receive()
                got += 1
        else:
            while got < n:
                batch.clear()
                got += len(await dev.recv_batch(batch))
    return time.perf_counter() - t0


def quiesce(fd: int) -> None:
    """Drop whatever the kernel queued (its own IPv6 chatter) before a measured filling."""
    time.sleep(0.02)
    while True:
        try:
            os.read(fd, 65536)
        except BlockingIOError:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.packets
    results: dict[str, list[float]] = {}
    with testing.netns():
        dev = DeviceBuilder().ipv4("10.99.0.1", 24).tx_queue_len(max(1000, n + 1000)).build_sync()
        # no IPv6 chatter during a measurement
        with open(f"/proc/sys/net/ipv6/conf/{dev.name()}/disable_ipv6", "w") as f:
            f.write("1")
        fd = dev.fileno()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 24)

        def measure(label: str, reader: Callable[[], float]) -> None:
            quiesce(fd)
            fill(sock, n)
            time.sleep(0.05)  # let softirq finish queueing
            results.setdefault(label, []).append(reader() / n)

        def run_async(backend: str, options: dict[str, object], single: bool) -> float:
            async def go() -> float:
                adev = AsyncDevice.borrow_fd(fd)
                try:
                    return await drain_async(adev, n, single)
                finally:
                    await adev.aclose()

            return anyio.run(go, backend=backend, backend_options=options)

        readers: list[tuple[str, Callable[[], float]]] = [
            ("bare os.read loop", lambda: drain_bare(fd, n)),
            ("SyncDevice.recv_batch", lambda: drain_sync(dev, n)),
            ("AsyncDevice.recv_batch asyncio", lambda: run_async("asyncio", {}, False)),
            (
                "AsyncDevice.recv_batch uvloop",
                lambda: run_async("asyncio", {"use_uvloop": True}, False),
            ),
            ("AsyncDevice.recv_batch trio", lambda: run_async("trio", {}, False)),
            ("AsyncDevice.receive asyncio", lambda: run_async("asyncio", {}, True)),
            ("AsyncDevice.receive trio", lambda: run_async("trio", {}, True)),
        ]
        for _ in range(args.rounds):
            for label, reader in readers:
                measure(label, reader)
        sock.close()
        dev.close()

    base = statistics.median(results["bare os.read loop"])
    print(f"{n} packets per filling, {args.rounds} rounds, median per packet (lower is better)")
    print(f"{'reader':34s} {'ns/packet':>10s} {'Mpps':>7s} {'x bare':>7s}")
    for label, _ in readers:
        per = statistics.median(results[label])
        print(f"{label:34s} {per * 1e9:10.0f} {1e-6 / per:7.2f} {per / base:7.2f}")


if __name__ == "__main__":
    main()
