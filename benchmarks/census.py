"""A census of the Python each ``tunflow up`` end runs per ping, at one or more git revisions.

Run as root (network namespaces)::

    .venv/bin/python benchmarks/census.py                               # the working tree
    .venv/bin/python benchmarks/census.py --rev a94c9f0 --rev HEAD      # two revisions
    .venv/bin/python benchmarks/census.py --rev HEAD --modes wg --backend asyncio --top 40

Two throw-away namespaces joined by a veth pair (``tunflow.testing``), a ``tunflow up`` in
each (10.77.0.1/.2 over 192.168.77.1/.2, MTU 1420, IPv6 off as in ``benchmarks/vpn.py``), in
WireGuard mode (``wg``) and native mode (``native``). Each process runs ``tunflow.cli`` under
a small wrapper (this file, ``--child``) that installs a ``sys.settrace`` tracer in the main
thread on one real-time signal and removes it on another, then writes what it counted: the
line events and the frames entered (calls, and coroutines and generators resumed), per
function. Between the two signals ``ping`` sends ``--count`` pings ``--interval`` seconds
apart (after ten to warm up: handshake, ARP), so each end encrypts one packet and decrypts
one per ping. What the timer task runs (frames with ``_run_timers`` on their stack: its 1 s
tick, whatever falls in the window) is counted apart. The rest does not depend on the host's
speed and repeats between runs to 0.1 line per ping (a timer deadline armed or not; on
plain asyncio the loop's own wake-ups for the tick); a lost ping would show, and the script
says when pings were lost. Only the main thread is traced; ``tunflow up`` relays on it.

Each revision runs from its own ``git worktree`` (``.``: the working tree's changes on
``HEAD``), chosen with ``PYTHONPATH`` and ``PYTHONSAFEPATH`` as ``benchmarks/vpn_ab.py``
does, and checked to import its own tree. Printed: lines and frames per ping at each end
(``A`` pings, ``B`` answers), for each revision and mode, and the functions whose lines per
ping differ most between the first revision and each later one.

Figures of 2026-11-30 (100 pings 50 ms apart; per end per ping, A / B; timer task apart)::

                             uvloop (default)              plain asyncio
                          lines          frames         lines          frames
    wg      a94c9f0   473.2 / 472.3   72.2 / 72.2   592.1 / 591.5   89.0 / 89.1
            32438cb   478.2 / 477.3   72.2 / 72.2   597.4 / 596.5   89.1 / 89.1
    native  a94c9f0   517.3 / 516.4   81.2 / 81.2   636.5 / 636.0   98.1 / 98.2
            32438cb   522.3 / 521.4   81.2 / 81.2   641.2 / 641.6   98.0 / 98.3

The five lines more are all a17a6d6's: ``UDPTransport.drained`` bumped where a read meets
EAGAIN (one line) and four in ``WireGuardPort._note_load`` comparing it on every receive,
a lone one (never ``backlogged``) included. Looking at ``drained`` only for a backlogged
receive keeps the same row of backlogged receives for one line instead of four (475.1).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
START, STOP = signal.SIGRTMIN + 5, signal.SIGRTMIN + 6
UA, UB = "192.168.77.1", "192.168.77.2"
OA, OB = "10.77.0.1", "10.77.0.2"
MTU = 1420
MODES = ("wg", "native")


# -- in each tunflow up process ------------------------------------------------------------


def child(out: str, argv: list[str]) -> None:
    """Run ``tunflow.cli`` with ``argv``; count the main thread's lines and frames between a
    ``START`` and a ``STOP`` signal and write them to ``out`` (JSON) on ``STOP``."""
    import runpy

    lines: dict[CodeType, int] = {}
    calls: dict[CodeType, int] = {}
    timer_lines: dict[CodeType, int] = {}
    timer_calls: dict[CodeType, int] = {}

    def local(frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
        if event == "line":
            code = frame.f_code
            lines[code] = lines.get(code, 0) + 1
        return local

    def timer_local(frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
        if event == "line":
            code = frame.f_code
            timer_lines[code] = timer_lines.get(code, 0) + 1
        return timer_local

    def tracer(frame: FrameType, event: str, arg: Any) -> Callable[..., Any] | None:
        if event != "call":
            return None
        code = frame.f_code
        f: FrameType | None = frame
        while f is not None:
            if f.f_code.co_name == "_run_timers":
                timer_calls[code] = timer_calls.get(code, 0) + 1
                return timer_local
            f = f.f_back
        calls[code] = calls.get(code, 0) + 1
        return local

    def start(signum: int, frame: FrameType | None) -> None:
        for counts in (lines, calls, timer_lines, timer_calls):
            counts.clear()
        Path(out + ".on").touch()
        sys.settrace(tracer)

    def stop(signum: int, frame: FrameType | None) -> None:
        sys.settrace(None)
        lines.pop(stop.__code__, None)
        calls.pop(stop.__code__, None)

        def by_function(counts: dict[CodeType, int]) -> dict[str, int]:
            got: dict[str, int] = {}
            for code, n in counts.items():
                key = f"{code.co_filename}:{code.co_qualname}"
                got[key] = got.get(key, 0) + n
            return got

        tmp = out + ".tmp"
        got = {
            "lines": by_function(lines),
            "calls": by_function(calls),
            "timer_lines": by_function(timer_lines),
            "timer_calls": by_function(timer_calls),
        }
        Path(tmp).write_text(json.dumps(got))
        os.replace(tmp, out)

    signal.signal(START, start)
    signal.signal(STOP, stop)
    sys.argv = ["tunflow", *argv]
    runpy.run_module("tunflow.cli", run_name="__main__", alter_sys=True)


# -- the census ------------------------------------------------------------------------------


def keypair() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    raw = serialization.Encoding.Raw
    key = X25519PrivateKey.generate()
    priv = key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    pub = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    return base64.b64encode(priv).decode(), base64.b64encode(pub).decode()


def wait_for(what: str, ok: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def census(
    tree: Path, mode: str, backend: str | None, count: int, interval: float, tmp: Path
) -> dict[str, dict[str, dict[str, int]]]:
    """One census of ``tree``'s ``tunflow up`` in ``mode``: ``{"A"|"B": {"lines"|"calls":
    {"path:function": count}}}`` over ``count`` pings from A to B, paths relative to
    ``tree`` (or to ``site-packages``)."""
    from tunflow import testing

    keys = {"A": keypair(), "B": keypair()}
    extra = ("--backend", backend) if backend else ()
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        for ns in (a, b):
            ns.run(
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            )
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24")
        ends = {"A": (a, OA, UA, "B", OB, UB), "B": (b, OB, UB, "A", OA, UA)}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        outs: dict[str, Path] = {}
        devs: dict[str, str] = {}
        for end, (ns, mine, _, peer, paddr, under) in ends.items():
            dev = testing.unique_name("t")
            conf = tmp / f"{dev}.conf"
            conf.write_text(
                f"[Interface]\nPrivateKey = {keys[end][0]}\nListenPort = 51820\n"
                f"Address = {mine}/24\nMTU = {MTU}\n\n[Peer]\nPublicKey = {keys[peer][1]}\n"
                f"AllowedIPs = {paddr}/32\nEndpoint = {under}:51820\n"
                + ("Native = true\n" if mode == "native" else "")
            )
            outs[end] = tmp / f"{dev}.json"
            devs[end] = dev
            argv = [sys.executable, str(HERE / "census.py"), "--child", str(outs[end])]
            log = open(tmp / f"{dev}.log", "wb")  # noqa: SIM115 - lives with the process
            procs[end] = ns.popen(
                [*argv, "up", str(conf), "-q", *extra],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
            log.close()

        def is_up(end: str) -> bool:
            if procs[end].poll() is not None:
                log = (tmp / f"{devs[end]}.log").read_text(errors="replace").strip()
                raise RuntimeError(f"tunflow up ({end}) ended: {log[-2000:]}")
            ns = ends[end][0]
            return ns.run("ip", "link", "show", devs[end], check=False).returncode == 0

        for end in ends:
            wait_for(f"{devs[end]} in {ends[end][0].name}", functools.partial(is_up, end), 20)
        wait_for(
            f"{OB} through the tunnel",
            lambda: a.run("ping", "-n", "-q", "-c1", "-W1", OB, check=False).returncode == 0,
            20,
        )
        a.run("ping", "-n", "-q", "-c", "10", "-i", str(interval), "-W", "2", OB, check=False)
        time.sleep(0.5)
        for end in procs:
            procs[end].send_signal(START)
        for end in procs:
            wait_for(f"{end}'s tracer", Path(str(outs[end]) + ".on").exists, 10)
        time.sleep(0.2)
        done = a.run(
            *("ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "2", OB),
            check=False,
            timeout=count * (interval + 0.5) + 10,
        )
        time.sleep(0.2)
        for end in procs:
            procs[end].send_signal(STOP)
        for end in procs:
            wait_for(f"{end}'s counts", outs[end].exists, 10)
        got = f" {count} received"
        if got not in done.stdout:
            print(f"  ({mode}: not every ping answered: {done.stdout.strip()})", file=sys.stderr)
    return {end: relative(json.loads(outs[end].read_text()), tree) for end in ends}


def relative(counts: dict[str, dict[str, int]], tree: Path) -> dict[str, dict[str, int]]:
    """``counts`` with each file named relative to ``tree`` or to its ``site-packages``."""
    roots = [f"{tree.resolve()}/", f"{tree}/"]

    def name(key: str) -> str:
        for root in roots:
            if key.startswith(root):
                return key[len(root) :]
        if "site-packages/" in key:
            return "~/" + key.rsplit("site-packages/", 1)[1]
        return key

    out: dict[str, dict[str, int]] = {}
    for kind, by_key in counts.items():
        merged: dict[str, int] = {}
        for key, n in by_key.items():
            merged[name(key)] = merged.get(name(key), 0) + n
        out[kind] = merged
    return out


# -- report ----------------------------------------------------------------------------------


def report(
    results: dict[tuple[str, str], dict[str, dict[str, dict[str, int]]]],
    revs: list[str],
    modes: list[str],
    count: int,
    top: int,
) -> str:
    rows = [f"{'':8}{'':12}{'lines (A / B)':>18}{'frames (A / B)':>18}{'timer task':>18}"]
    for mode in modes:
        for i, rev in enumerate(revs):
            r = results[(rev, mode)]
            lines = " / ".join(f"{sum(r[e]['lines'].values()) / count:.1f}" for e in "AB")
            frames = " / ".join(f"{sum(r[e]['calls'].values()) / count:.1f}" for e in "AB")
            timers = " / ".join(f"{sum(r[e]['timer_lines'].values()) / count:.1f}" for e in "AB")
            rows.append(f"{mode if i == 0 else '':8}{rev:12}{lines:>18}{frames:>18}{timers:>18}")
    for mode in modes:
        base = results[(revs[0], mode)]
        for rev in revs[1:]:
            other = results[(rev, mode)]
            rows.append(f"\n{mode}: lines per ping per end, {revs[0]} → {rev} (A, B; top {top})")
            keys = {k for r in (base, other) for e in "AB" for k in r[e]["lines"]}

            def per(r: dict[str, dict[str, dict[str, int]]], e: str, k: str) -> float:
                return r[e]["lines"].get(k, 0) / count

            diffs = sorted(
                (
                    (sum(per(other, e, k) - per(base, e, k) for e in "AB"), k)
                    for k in keys
                    if any(per(other, e, k) != per(base, e, k) for e in "AB")
                ),
                key=lambda d: (-abs(d[0]), d[1]),
            )
            if not diffs:
                rows.append("  no function differs")
            for _, k in diffs[:top]:
                cells = "  ".join(f"{per(base, e, k):6.2f} → {per(other, e, k):6.2f}" for e in "AB")
                rows.append(f"  {cells}  {k}")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument(
        "--rev",
        action="append",
        help="a git revision; repeat to compare (default: the working tree, '.')",
    )
    p.add_argument("--modes", default="wg,native", help="wg, native or both (comma-separated)")
    p.add_argument("--backend", choices=["uvloop", "asyncio", "trio"], help="tunflow up --backend")
    p.add_argument("--count", type=int, default=100, help="pings counted")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between pings")
    p.add_argument("--top", type=int, default=25, help="functions listed per comparison")
    p.add_argument("--dump", type=Path, help="write every count to this JSON file")
    args = p.parse_args()
    if os.geteuid():
        print("needs root (network namespaces, TUN devices)", file=sys.stderr)
        return 1
    modes = [m for m in args.modes.split(",") if m]
    if bad := [m for m in modes if m not in MODES]:
        p.error(f"unknown mode {bad[0]!r} (wg, native)")
    revs = args.rev or ["."]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import tempfile

    import vpn_ab

    results: dict[tuple[str, str], dict[str, dict[str, dict[str, int]]]] = {}
    with tempfile.TemporaryDirectory(prefix="tfcensus.") as tmpdir, contextlib.ExitStack() as st:
        trees = {rev: st.enter_context(vpn_ab.checkout(rev)) for rev in revs}
        for rev in revs:
            vpn_ab.use_tree(trees[rev])
            for mode in modes:
                print(f"[{rev} {mode}]", file=sys.stderr, flush=True)
                results[(rev, mode)] = census(
                    trees[rev], mode, args.backend, args.count, args.interval, Path(tmpdir)
                )
    if args.dump:
        args.dump.write_text(
            json.dumps({f"{rev} {mode}": r for (rev, mode), r in results.items()}, indent=1)
        )
    print(report(results, revs, modes, args.count, args.top))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3:])
    else:
        sys.path[:0] = [str(HERE), str(HERE.parent)]
        sys.exit(main())
