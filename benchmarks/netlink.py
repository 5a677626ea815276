"""What configuring an interface costs: tunflow's RtNetlink vs pyroute2 vs the ``ip`` command.

    sudo .venv/bin/python benchmarks/netlink.py [--addresses 100] [--rounds 5]

Method: in a throw-away namespace, one veth link. Each round, every tool in turn adds N IPv6
/128 addresses (no DAD), lists the link's addresses (with the N present) several times, and
removes the N again; the link is empty between tools, so all three do the same work on the
same kernel under the same load. The report is the median over rounds of µs per operation
and its ratio to RtNetlink. Tools:

* ``RtNetlink``   — :class:`tunflow.platform.linux.netlink.RtNetlink`, one socket kept open;
* ``pyroute2``    — ``pyroute2.IPRoute`` (the sync API), one instance kept open; listing
  reads each message's address and prefix length so both give comparable values;
* ``ip``          — one ``ip`` subprocess per operation (``ip -j addr show`` + ``json.loads``
  for the listing): what shelling out costs.

Import time of ``pyroute2`` is measured once in a fresh interpreter. Two shared cores make
absolute numbers noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv6Interface
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tunflow import testing
from tunflow.platform.linux.netlink import RtNetlink

Ops = tuple[Callable[[IPv6Interface], None], Callable[[], int], Callable[[IPv6Interface], None]]


def rtnetlink_ops(nl: RtNetlink, index: int) -> Ops:
    def add(iface: IPv6Interface) -> None:
        nl.add_address(index, iface)

    def listing() -> int:
        return len(nl.addresses(index))

    def remove(iface: IPv6Interface) -> None:
        nl.remove_address(index, iface)

    return add, listing, remove


def pyroute2_ops(ipr: Any, index: int) -> Ops:
    def add(iface: IPv6Interface) -> None:
        # flags=IFA_F_NODAD, as RtNetlink sends
        ipr.addr("add", index=index, address=str(iface.ip), prefixlen=128, flags=0x02)

    def listing() -> int:
        return len([(m.get_attr("IFA_ADDRESS"), m["prefixlen"]) for m in ipr.get_addr(index=index)])

    def remove(iface: IPv6Interface) -> None:
        ipr.addr("del", index=index, address=str(iface.ip), prefixlen=128)

    return add, listing, remove


def ip_ops(name: str) -> Ops:
    def add(iface: IPv6Interface) -> None:
        subprocess.run(["ip", "addr", "add", str(iface), "dev", name, "nodad"], check=True)

    def listing() -> int:
        out = subprocess.run(
            ["ip", "-j", "addr", "show", "dev", name], check=True, capture_output=True, text=True
        ).stdout
        return len(json.loads(out)[0]["addr_info"])

    def remove(iface: IPv6Interface) -> None:
        subprocess.run(["ip", "addr", "del", str(iface), "dev", name], check=True)

    return add, listing, remove


def one_round(ops: Ops, ifaces: list[IPv6Interface], lists: int) -> tuple[float, float, float, int]:
    add, listing, remove = ops
    t0 = time.perf_counter()
    for iface in ifaces:
        add(iface)
    t1 = time.perf_counter()
    for _ in range(lists):
        got = listing()
    t2 = time.perf_counter()
    for iface in ifaces:
        remove(iface)
    t3 = time.perf_counter()
    assert got >= len(ifaces), f"listed {got} addresses, expected at least {len(ifaces)}"
    n = len(ifaces)
    return (t1 - t0) / n * 1e6, (t2 - t1) / lists * 1e6, (t3 - t2) / n * 1e6, got


def import_ms(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--addresses", type=int, default=100, help="addresses per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lists", type=int, default=20, help="listings per round")
    args = parser.parse_args()

    from pyroute2 import IPRoute

    ifaces = [IPv6Interface(f"2001:db8:b::{i + 1}/128") for i in range(args.addresses)]
    results: dict[str, list[tuple[float, float, float, int]]] = {
        "RtNetlink": [],
        "pyroute2": [],
        "ip": [],
    }
    with testing.netns():
        name, peer = testing.unique_name("b"), testing.unique_name("c")
        testing.run("ip", "link", "add", name, "type", "veth", "peer", "name", peer)
        with RtNetlink() as nl, IPRoute() as ipr:
            index = nl.link_by_name(name).index
            nl.set_link(index, up=True)
            tools = {
                "RtNetlink": rtnetlink_ops(nl, index),
                "pyroute2": pyroute2_ops(ipr, index),
                "ip": ip_ops(name),
            }
            baseline = len(nl.addresses(index))
            for _ in range(args.rounds):
                for tool, ops in tools.items():
                    results[tool].append(one_round(ops, ifaces, args.lists))
                    assert len(nl.addresses(index)) == baseline, f"{tool} left addresses"

    base = [statistics.median(r[i] for r in results["RtNetlink"]) for i in range(3)]
    print(
        f"{args.addresses} IPv6 addresses per round, {args.rounds} rounds, "
        f"{args.lists} listings of {results['RtNetlink'][0][3]} addresses per round; "
        "median µs per operation (ratio to RtNetlink)\n"
    )
    print(f"{'tool':<10} {'add':>18} {'list':>20} {'remove':>18}")
    for tool, rows in results.items():
        cells = []
        for i in range(3):
            us = statistics.median(r[i] for r in rows)
            cells.append(f"{us:10.1f} ({us / base[i]:5.1f}x)")
        print(f"{tool:<10} {cells[0]:>18} {cells[1]:>20} {cells[2]:>18}")
    print(f"\nimport pyroute2.IPRoute: {import_ms('pyroute2'):.0f} ms (fresh interpreter)")
    print(
        "import RtNetlink:       "
        f"{import_ms('tunflow.platform.linux.netlink'):.0f} ms (fresh interpreter, with tunflow)"
    )


if __name__ == "__main__":
    main()
