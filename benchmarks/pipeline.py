"""What a pipeline's chain costs on the offload forwarder, and what worker processes add.

    sudo .venv/bin/python benchmarks/pipeline.py [--quick] [--duration 5] [--reps 3]

Topology (tun-rs's forwarder benchmark): two network namespaces, each reaching the other only
through its own offload TUN; one forwarder process copies batches between the two TUNs — a
:class:`~tunflow.pipeline.Tunnel` of two devices — and iperf3 measures TCP throughput from one
namespace to the other. Forwarders, each in a fresh process, taking turns round after round so
every figure comes from the same run and machine load:

* ``raw loop``      — two tasks doing ``recv_batch(whole=True)`` / ``send_batch`` by hand;
* ``tunnel, bare``  — a Tunnel with no stages (the engine itself);
* ``tunnel, gro → filter → stats`` — the chain the issue names (a filter with three rules that
  every packet is checked against, then the default).

Then, on 4-queue devices with ``iperf3 -P 4``: the same chain with task workers (one process)
and with worker processes (one per queue). Reports medians in Gbit/s and the ratios.
Goal (issue 5): the chain costs under 10 % against the bare tunnel.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHAIN = [
    ("gro", {}),
    (
        "filter",
        {
            "rules": [
                {"action": "deny", "protocol": "udp", "dst_ports": [9999]},
                {"action": "deny", "protocol": "icmp", "icmp_types": [13, 14]},
                {"action": "deny", "src": ["192.0.2.0/24"]},
            ]
        },
    ),
    ("stats", {}),
]


# -- the forwarder, run in a child process ------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    import anyio

    from tunflow import DeviceBuilder, testing
    from tunflow.pipeline import StageSpec, open_tunnel

    def builder(ns: str, side: str) -> DeviceBuilder:
        mine, theirs = ("1", "2") if side == "a" else ("2", "1")
        b = (
            DeviceBuilder()
            .netns(ns)
            .name(f"tfbench{side}")
            .ipv4(f"10.240.{mine}.1", 24)
            .route(f"10.240.{theirs}.0/24")
            .offload(True)
            .tx_queue_len(1000)
        )
        return b.multi_queue(True) if args.queues > 1 else b

    async def main() -> None:
        queues = []
        for ns, side in ((args.netns_a, "a"), (args.netns_b, "b")):
            first = builder(ns, side).build_async()
            qs = [first]
            for _ in range(args.queues - 1):
                with testing.Netns(ns).entered():  # a queue opens in the device's namespace
                    qs.append(await first.try_clone())
            queues.append(qs)
        qa, qb = queues
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            if args.serve == "raw":

                async def pump(src: Any, dst: Any) -> None:
                    batch = src.new_batch()
                    while True:
                        batch.clear()
                        await src.recv_batch(batch, whole=True)
                        await dst.send_batch(batch)

                async with anyio.create_task_group() as tg:
                    for x, y in zip(qa, qb, strict=True):
                        tg.start_soon(pump, x, y)
                        tg.start_soon(pump, y, x)
                    print("ready", flush=True)
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        break
            else:
                stages = [StageSpec(n, o) for n, o in CHAIN] if args.serve == "chain" else []
                async with open_tunnel(qa, qb, stages, workers=args.workers) as t:
                    print("ready", flush=True)
                    async for _ in signals:
                        break
                    s = t.statistics()
                    print(
                        json.dumps({"stages": [[st.name, st.packets_in] for st in s.stages]}),
                        flush=True,
                    )
        for d in (*qa, *qb):
            await d.aclose()

    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": args.uvloop})


# -- the driver -----------------------------------------------------------------------------


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)


def measure(
    label: str, args: argparse.Namespace, *, serve: str, queues: int, workers: str, streams: int
) -> float:
    cmd = [
        sys.executable,
        __file__,
        "--serve",
        serve,
        "--netns-a",
        args.netns_a,
        "--netns-b",
        args.netns_b,
        "--queues",
        str(queues),
        "--workers",
        workers,
    ]
    if args.uvloop:
        cmd.append("--uvloop")
    fwd = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert fwd.stdout is not None
        line = fwd.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"{label}: the forwarder did not start ({line!r})")
        time.sleep(0.5 if workers == "tasks" else 1.0)
        out = sh(
            "ip",
            "netns",
            "exec",
            args.netns_a,
            "iperf3",
            "-c",
            "10.240.2.1",
            "-t",
            str(args.duration),
            "-P",
            str(streams),
            "-J",
        ).stdout
        gbps = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        fwd.send_signal(signal.SIGTERM)
        try:
            fwd.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            fwd.kill()
            fwd.communicate()
    return float(gbps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (2 s, 1 round)")
    parser.add_argument("--duration", type=float, default=5.0, help="iperf3 seconds per test")
    parser.add_argument("--reps", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument("--uvloop", action="store_true", help="run the forwarder on uvloop")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--netns-a", help=argparse.SUPPRESS)
    parser.add_argument("--netns-b", help=argparse.SUPPRESS)
    parser.add_argument("--queues", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--workers", default="tasks", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    if args.quick:
        args.duration, args.reps = 2.0, 1
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark makes namespaces and TUN devices")
    tag = os.getpid() % 100000
    args.netns_a, args.netns_b = f"tfbench{tag}a", f"tfbench{tag}b"
    server = None
    try:
        for ns in (args.netns_a, args.netns_b):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", args.netns_b, "iperf3", "-s"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        single = [
            ("raw loop", "raw", "tasks"),
            ("tunnel, bare", "bare", "tasks"),
            ("tunnel, gro → filter → stats", "chain", "tasks"),
        ]
        multi = [
            ("4 queues, chain, task workers", "chain", "tasks"),
            ("4 queues, chain, worker processes", "chain", "processes"),
        ]
        results: dict[str, list[float]] = {label: [] for label, _, _ in single + multi}
        for _ in range(args.reps):
            for label, serve_kind, workers in single:
                results[label].append(
                    measure(label, args, serve=serve_kind, queues=1, workers=workers, streams=1)
                )
            for label, serve_kind, workers in multi:
                results[label].append(
                    measure(label, args, serve=serve_kind, queues=4, workers=workers, streams=4)
                )
        med = {k: statistics.median(v) for k, v in results.items()}
        print(
            f"TCP through the offload forwarder, iperf3 {args.duration:g} s, median of "
            f"{args.reps} ({'uvloop' if args.uvloop else 'asyncio'}, {os.cpu_count()} cores)"
        )
        for label, _, _ in single + multi:
            runs = " ".join(f"{x:.2f}" for x in results[label])
            print(f"  {label:36s} {med[label]:6.2f} Gbit/s   [{runs}]")
        bare = med["tunnel, bare"]
        chain = med["tunnel, gro → filter → stats"]
        print(f"  engine vs raw loop:        {bare / med['raw loop']:.2f}x")
        print(
            f"  chain vs bare tunnel:      {chain / bare:.2f}x  (cost {100 * (1 - chain / bare):.1f} %)"
        )
        print(
            "  processes vs tasks (4 q):  "
            f"{med['4 queues, chain, worker processes'] / med['4 queues, chain, task workers']:.2f}x"
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        for ns in (args.netns_a, args.netns_b):
            sh("ip", "netns", "del", ns, check=False)


if __name__ == "__main__":
    main()
