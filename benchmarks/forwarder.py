"""iperf3 through tunflow's TUN↔TUN forwarder, beside a plain veth pair, in one run.

    sudo .venv/bin/python benchmarks/forwarder.py [--seconds 5] [--reps 3] [--quick]

The topology is tun-rs's benchmark (tun-rs-notes §6.1): two namespaces that reach each other
only through their own TUN, and one process (``examples/forwarder.py``) forwarding between the
two TUNs. One TCP stream, A → B. Rows:

* veth direct — the same two namespaces joined by a veth pair: the ceiling;
* tunflow, no offload — one packet per read and write (sync face);
* tunflow, offload — super-packets forwarded whole: sync, and async on asyncio, uvloop, trio;
* tunflow, offload + split/GRO — split into MTU packets and coalesced again (sync).

Candidates take turns, rep after rep, so load changes hit them alike; each figure is the median
of the reps. Goals (issue 4): offload ≥ 4× no offload, and ≥ 50 % of veth direct.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tunflow import testing  # noqa: E402

FORWARDER = ROOT / "examples" / "forwarder.py"


def iperf(client: testing.Netns, server: testing.Netns, address: str, seconds: float) -> float:
    srv = server.popen(
        ["iperf3", "-s", "-1", "-B", address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # until the server listens
            probe = client.run(
                "iperf3", "-c", address, "-t", str(seconds), "-J", check=False, timeout=seconds + 30
            )
            try:
                result = json.loads(probe.stdout)
                return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9
            except (ValueError, KeyError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"iperf3 failed: {probe.stdout[-500:]} {probe.stderr[-500:]}"
                    ) from None
                time.sleep(0.2)
    finally:
        srv.kill()
        srv.wait()


def run_veth(seconds: float) -> float:
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, "10.102.0.1/24", "10.102.0.2/24", mtu=1500)
        return iperf(a, b, "10.102.0.2", seconds)


def run_forwarder(seconds: float, *args: str) -> float:
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        cmd = a.cmd(sys.executable, str(FORWARDER), "--netns-a", a.name, "--netns-b", b.name, *args)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError(
                    f"forwarder did not start: {line} {proc.stderr.read() if proc.stderr else ''}"
                )
            return iperf(a, b, "10.101.2.1", seconds)
        finally:
            proc.terminate()
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


CANDIDATES: list[tuple[str, tuple[str, ...] | None]] = [
    ("veth direct (ceiling)", None),
    ("tunflow no offload (sync)", ("--mode", "sync", "--no-offload")),
    ("tunflow offload whole (sync)", ("--mode", "sync")),
    ("tunflow offload whole (asyncio)", ("--mode", "asyncio")),
    ("tunflow offload whole (uvloop)", ("--mode", "uvloop")),
    ("tunflow offload whole (trio)", ("--mode", "trio")),
    ("tunflow offload split+GRO (sync)", ("--mode", "sync", "--split")),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 s, 1 rep: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.reps = 1.0, 1
    results: dict[str, list[float]] = {name: [] for name, _ in CANDIDATES}
    for rep in range(args.reps):
        for name, fwd_args in CANDIDATES:
            gbps = (
                run_veth(args.seconds)
                if fwd_args is None
                else run_forwarder(args.seconds, *fwd_args)
            )
            results[name].append(gbps)
            print(f"rep {rep + 1}: {name}: {gbps:.2f} Gbit/s", file=sys.stderr, flush=True)
    median = {name: statistics.median(v) for name, v in results.items()}
    veth = median["veth direct (ceiling)"]
    plain = median["tunflow no offload (sync)"]
    print(f"\niperf3, 1 TCP stream, {args.seconds:g} s, median of {args.reps}")
    print(f"{'path':36s} {'Gbit/s':>8s} {'x no offload':>13s} {'% of veth':>10s}")
    for name, _ in CANDIDATES:
        g = median[name]
        print(f"{name:36s} {g:8.2f} {g / plain:13.2f} {100 * g / veth:9.0f}%")


if __name__ == "__main__":
    main()
