"""Forward packets between two TUN devices in two network namespaces — tun-rs's benchmark topology.

    ip netns add fa; ip netns add fb
    sudo python examples/forwarder.py --netns-a fa --netns-b fb --mode trio
    ip netns exec fb iperf3 -s &
    ip netns exec fa iperf3 -c 10.101.2.1

Namespace A has ``tfa`` 10.101.1.1/24 (+ fd01:1::1/64) and reaches B's networks only through it;
namespace B has ``tfb`` 10.101.2.1/24 (+ fd01:2::1/64) and reaches A's only through it. This
program reads every packet from one TUN and writes it to the other, both ways.

With ``--offload`` (the default) the kernel hands over TCP super-packets of up to 64 KiB. By
default they are forwarded *whole*, header and all, and the far kernel segments them: a few
system calls per 64 KiB. ``--split`` splits them into MTU-sized packets and coalesces them again
with GRO before writing (what a pipeline does when a stage needs real packets). ``--mode`` picks
the blocking face (two threads) or the async one on asyncio, uvloop or trio (two tasks).

On SIGINT/SIGTERM it stops and prints one JSON line of statistics per direction.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

import anyio
import attrs

from tunflow import AsyncDevice, ClosedDeviceError, DeviceBuilder, SyncDevice


def builders(args: argparse.Namespace) -> tuple[DeviceBuilder, DeviceBuilder]:
    def side(ns: str, name: str, mine: str, theirs: str) -> DeviceBuilder:
        return (
            DeviceBuilder()
            .netns(ns)
            .name(name)
            .mtu(args.mtu)
            .ipv4(f"10.101.{mine}.1", 24)
            .ipv6(f"fd01:{mine}::1", 64)
            .route(f"10.101.{theirs}.0/24")
            .route(f"fd01:{theirs}::/64")
            .offload(args.offload)
            .tx_queue_len(1000)
        )

    return side(args.netns_a, "tfa", "1", "2"), side(args.netns_b, "tfb", "2", "1")


def report(a: Any, b: Any) -> None:
    for label, dev in (("a", a), ("b", b)):
        stats = attrs.asdict(dev.statistics())
        print(json.dumps({"device": label, **stats}), flush=True)


# -- blocking: one thread per direction -------------------------------------------------------


def pump_sync(src: SyncDevice, dst: SyncDevice, whole: bool) -> None:
    batch = src.new_batch()
    try:
        while True:
            batch.clear()
            src.recv_batch(batch, whole=whole)
            dst.send_batch(batch)
    except ClosedDeviceError:
        pass


def run_sync(args: argparse.Namespace) -> None:
    ba, bb = builders(args)
    a, b = ba.build_sync(), bb.build_sync()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    whole = not args.split
    threads = [
        threading.Thread(target=pump_sync, args=(a, b, whole), daemon=True),
        threading.Thread(target=pump_sync, args=(b, a, whole), daemon=True),
    ]
    for t in threads:
        t.start()
    print("ready", json.dumps({"offload": attrs.asdict(a.offload_info)}), flush=True)
    stop.wait()
    a.shutdown()
    b.shutdown()
    for t in threads:
        t.join()
    report(a, b)
    a.close()
    b.close()


# -- async: one task per direction ------------------------------------------------------------


async def pump_async(src: AsyncDevice, dst: AsyncDevice, whole: bool) -> None:
    batch = src.new_batch()
    while True:
        batch.clear()
        await src.recv_batch(batch, whole=whole)
        await dst.send_batch(batch)


async def run_async(args: argparse.Namespace) -> None:
    ba, bb = builders(args)
    async with ba.build_async() as a, bb.build_async() as b:
        whole = not args.split
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump_async, a, b, whole)
                tg.start_soon(pump_async, b, a, whole)
                print("ready", json.dumps({"offload": attrs.asdict(a.offload_info)}), flush=True)
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    break
        report(a, b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--netns-a", required=True)
    parser.add_argument("--netns-b", required=True)
    parser.add_argument("--mode", choices=["sync", "asyncio", "uvloop", "trio"], default="sync")
    parser.add_argument("--offload", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--split", action="store_true", help="split super-packets, GRO on write")
    parser.add_argument("--mtu", type=int, default=1500)
    args = parser.parse_args()
    if args.mode == "sync":
        run_sync(args)
    else:
        options = {"use_uvloop": True} if args.mode == "uvloop" else {}
        backend = "trio" if args.mode == "trio" else "asyncio"
        anyio.run(run_async, args, backend=backend, backend_options=options)
    sys.exit(0)


if __name__ == "__main__":
    main()
