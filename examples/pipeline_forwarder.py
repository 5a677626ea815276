"""A filtering, counting forwarder between two namespaces, built from Python — the same objects
a TOML file describes.

    ip netns add fa; ip netns add fb
    sudo python examples/pipeline_forwarder.py fa fb [--workers processes] [--queues 2]
    ip netns exec fb iperf3 -s &  ip netns exec fa iperf3 -c 10.202.2.1

Namespace ``fa`` has 10.202.1.1/24 on its TUN and reaches 10.202.2.0/24 only through it; ``fb``
the reverse. A Tunnel joins the two TUNs through ``gro → filter → stats``; every second it prints
one JSON line of statistics; SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import signal

import anyio
import attrs

from tunflow import DeviceBuilder
from tunflow.pipeline import StageSpec, open_tunnel


def builder(ns: str, mine: str, theirs: str, queues: int) -> DeviceBuilder:
    b = (
        DeviceBuilder()
        .netns(ns)
        .ipv4(f"10.202.{mine}.1", 24)
        .route(f"10.202.{theirs}.0/24")
        .offload(True)
    )
    return b.multi_queue(True) if queues > 1 else b


async def main(args: argparse.Namespace) -> None:
    sides = []
    for ns, mine, theirs in ((args.netns_a, "1", "2"), (args.netns_b, "2", "1")):
        first = builder(ns, mine, theirs, args.queues).build_async()
        queues = [first]
        for _ in range(args.queues - 1):
            queues.append(await first.try_clone())  # opened in the device's namespace
        sides.append(queues)
    chain = [
        StageSpec("gro"),
        StageSpec("filter", {"rules": [{"action": "deny", "protocol": "udp", "dst_ports": [9]}]}),
        StageSpec("stats"),
    ]
    try:
        async with open_tunnel(sides[0], sides[1], chain, workers=args.workers) as tunnel:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with anyio.create_task_group() as tg:

                    async def report() -> None:
                        while True:
                            await anyio.sleep(1)
                            stats = attrs.asdict(tunnel.statistics())
                            print(json.dumps(stats["stages"]), flush=True)

                    tg.start_soon(report)
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        break
    finally:
        for queues in sides:
            for q in queues:
                await q.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("netns_a")
    parser.add_argument("netns_b")
    parser.add_argument("--workers", choices=("tasks", "processes"), default="tasks")
    parser.add_argument("--queues", type=int, default=1)
    anyio.run(main, parser.parse_args())
