"""tunflow at two git revisions, side by side: interleaved rounds of one measurement.

Run as root (network namespaces)::

    .venv/bin/python benchmarks/vpn_ab.py bab53df                      # ping, WireGuard mode
    .venv/bin/python benchmarks/vpn_ab.py bab53df HEAD --test tcp1 --candidates tunflow-native
    .venv/bin/python benchmarks/vpn_ab.py v0.1 . --rounds 10 --count 300

A change to the data path is measured here before it lands: the same ``benchmarks/vpn.py``
candidate (``tunflow-wg``, ``tunflow-native``…) runs from each revision in turn, the order
alternating every round, so the drifts of a shared host fall on both sides alike. Each
revision is checked out with ``git worktree add --detach`` in a temporary directory (removed
afterwards) and its tunflow runs from there; ``.`` stands for the working tree as it is.
Printed: every round's figures, the medians, and in how many rounds the second revision was
ahead (lower round trip, higher throughput).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import vpn


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """A copy of ``rev``'s tree (``.``: ``HEAD`` with the working tree's changes) for as long
    as the block runs; both sides are such copies in the same place."""
    where = Path(tempfile.mkdtemp(prefix="tfab."))
    git = ["git", "-C", str(vpn.ROOT)]
    base = "HEAD" if rev == "." else rev
    subprocess.run([*git, "worktree", "add", "--detach", "-q", str(where), base], check=True)
    try:
        if rev == ".":
            diff = subprocess.run([*git, "diff", "HEAD"], capture_output=True, check=True).stdout
            if diff:
                subprocess.run(["git", "-C", str(where), "apply"], input=diff, check=True)
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(vpn.ROOT), "worktree", "remove", "--force", str(where)],
            check=False,
        )


def use_tree(tree: Path) -> None:
    """Make the tunflow processes spawned from now on import ``tree``'s code, and check that
    they do. ``PYTHONPATH`` alone is not enough: ``python -m`` puts the working directory
    first, so run from the repository it would load the working tree's tunflow on both sides
    (``PYTHONSAFEPATH`` turns that off)."""
    os.environ["PYTHONPATH"] = f"{tree}{os.pathsep}{tree / 'plugins'}"
    os.environ["PYTHONSAFEPATH"] = "1"
    code = "import tunflow, tunflow.wireguard.runtime as r; print(tunflow.__file__, r.__file__)"
    got = subprocess.run(
        [vpn.PY, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    if not all(Path(f).resolve().is_relative_to(tree.resolve()) for f in got):
        raise RuntimeError(f"tunflow would not run from {tree}: {got}")


def measure(
    tree: Path, candidate: str, test: str, count: int, tmp: Path, interval: float = 0.05
) -> float:
    """One round of ``test`` through ``candidate`` running ``tree``'s tunflow."""
    use_tree(tree)
    cand = vpn.Candidate(candidate, tmp)
    try:
        vpn.underlay()
        cand.start()
        vpn.wait_ping(cand.target)
        vpn.quiet_wait(10.0)
        if test == "ping":
            vpn.ping_rtt(cand.target, 10, interval)  # warm: handshakes, ARP
            return vpn.ping_rtt(cand.target, count, interval)
        res = vpn.iperf(cand, test, 8.0, tmp)
        return res.get("gbps", res.get("kpps", float("nan")))
    finally:
        cand.stop()
        vpn.teardown()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("base", help="a git revision (the first side)")
    p.add_argument("head", nargs="?", default=".", help="the second side (default: working tree)")
    p.add_argument("--candidates", default="tunflow-wg", help="benchmarks/vpn.py candidates")
    p.add_argument("--test", default="ping", choices=["ping", "tcp1", "tcp4", "udp64", "bidir"])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--count", type=int, default=200, help="pings a round")
    p.add_argument("--ping-interval", type=float, default=0.05, help="seconds between pings")
    args = p.parse_args()
    if os.geteuid():
        print("needs root (network namespaces, TUN devices)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    candidates = [c for c in args.candidates.split(",") if c]
    lower_is_better = args.test == "ping"
    with (
        tempfile.TemporaryDirectory(prefix="tfab.") as tmpdir,
        vpn.bench_lock(3600),
        checkout(args.base) as base,
        checkout(args.head) as head,
    ):
        sides = {"base": base, "head": head}
        for cand in candidates:
            got: dict[str, list[float]] = {"base": [], "head": []}
            for r in range(args.rounds):
                for side in ("base", "head") if r % 2 == 0 else ("head", "base"):
                    got[side].append(
                        measure(
                            sides[side],
                            cand,
                            args.test,
                            args.count,
                            Path(tmpdir),
                            args.ping_interval,
                        )
                    )
                vpn.log(
                    f"{cand} round {r + 1}: base {got['base'][-1]:.3f}, head {got['head'][-1]:.3f}"
                )
            ahead = sum(
                (h < b) if lower_is_better else (h > b)
                for b, h in zip(got["base"], got["head"], strict=True)
            )
            mb, mh = statistics.median(got["base"]), statistics.median(got["head"])
            unit = "ms" if lower_is_better else ("kpps" if args.test == "udp64" else "Gbit/s")
            print(
                f"{cand} {args.test}: {args.base} {mb:.3f} → {args.head} {mh:.3f} {unit} "
                f"(medians of {args.rounds} rounds; {args.head} ahead in {ahead})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
