"""The cost of waiting for readability: ``anyio.wait_readable`` against tunflow's ReadWaiter.

Two tasks bounce one datagram over a socketpair; every hop is one non-blocking read that finds
nothing, one wait, one read. Printed: µs per round trip (two waits) on each event loop, and
the ratio. This is the wait every device and transport read loop does per batch — per packet
under light load (a ping crosses four)::

    .venv/bin/python benchmarks/waits.py [--rounds 20000]
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tunflow._readiness import ReadWaiter


async def bounce(rounds: int, kind: str) -> float:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    wa, wb = ReadWaiter(a.fileno()), ReadWaiter(b.fileno())

    def waiter(s: socket.socket, w: ReadWaiter) -> Callable[[], Awaitable[None]]:
        if kind == "anyio":
            return lambda: anyio.wait_readable(s)
        return w.wait

    wait_a, wait_b = waiter(a, wa), waiter(b, wb)

    async def echo() -> None:
        for _ in range(rounds):
            while True:
                try:
                    data = b.recv(64)
                    break
                except BlockingIOError:
                    await wait_b()
            b.send(data)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(echo)
            await anyio.wait_all_tasks_blocked()
            t0 = time.perf_counter()
            for _ in range(rounds):
                a.send(b"x")
                while True:
                    try:
                        a.recv(64)
                        break
                    except BlockingIOError:
                        await wait_a()
            return (time.perf_counter() - t0) / rounds
    finally:
        wa.close()
        wb.close()
        a.close()
        b.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=20000)
    args = p.parse_args()
    loops: list[tuple[str, str, dict[str, object]]] = [("asyncio", "asyncio", {})]
    try:
        import uvloop  # noqa: F401

        loops.append(("uvloop", "asyncio", {"use_uvloop": True}))
    except ImportError:
        pass
    try:
        import trio  # noqa: F401

        loops.append(("trio", "trio", {}))
    except ImportError:
        pass
    print(f"round trips of one datagram over a socketpair, {args.rounds} rounds, best of 3")
    print("| event loop | anyio.wait_readable µs | ReadWaiter µs | ratio |")
    print("| --- | --- | --- | --- |")
    for name, backend, options in loops:
        best = {}
        for kind in ("anyio", "waiter"):
            best[kind] = min(
                anyio.run(bounce, args.rounds, kind, backend=backend, backend_options=options)
                for _ in range(3)
            )
        ratio = best["anyio"] / best["waiter"]
        print(f"| {name} | {best['anyio'] * 1e6:.1f} | {best['waiter'] * 1e6:.1f} | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
