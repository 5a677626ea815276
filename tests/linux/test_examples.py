"""Every example in examples/ runs, in its own namespace, against the kernel's own tools."""

from __future__ import annotations

import ast
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import Example
from tunflow import testing
from tunflow.wireguard import PrivateKey

pytestmark = pytest.mark.needs_root


@pytest.mark.parametrize("backend", ["sync", "asyncio", "uvloop", "trio"])
def test_ping_example_answers_kernel_ping(backend: str) -> None:
    with testing.netns(enter=False) as ns, Example(ns, "ping.py", "--backend", backend) as ex:
        ex.wait_for("ready")
        ping4 = ns.run("ping", "-c", "3", "-i", "0.2", "-W", "5", "10.77.0.2", check=False)
        ping6 = ns.run("ping", "-6", "-c", "3", "-i", "0.2", "-W", "5", "fd77::2", check=False)
        assert ping4.returncode == 0, ping4.stdout + ping4.stderr
        assert "3 received" in ping4.stdout
        assert ping6.returncode == 0, ping6.stdout + ping6.stderr
        assert "3 received" in ping6.stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_tap_example_answers_arping_and_ping(backend: str) -> None:
    with testing.netns(enter=False) as ns:
        name = testing.unique_name("tap")
        with Example(ns, "tap_responder.py", "--name", name, "--backend", backend) as ex:
            line = ex.wait_for("ready")
            assert line.split()[1:] == [name, "02:00:00:81:00:01"]
            arp = ns.run("arping", "-c", "2", "-w", "10", "-I", name, "10.81.0.2", check=False)
            assert arp.returncode == 0, arp.stdout + arp.stderr
            assert "02:00:00:81:00:02" in arp.stdout.lower()
            ping = ns.run("ping", "-c", "2", "-i", "0.2", "-W", "5", "10.81.0.2", check=False)
            assert ping.returncode == 0, ping.stdout + ping.stderr
            # IPv6: neighbour solicitation answered, then echo (wait out DAD on fd81::1)
            deadline = time.monotonic() + 20
            while True:
                ping6 = ns.run("ping", "-6", "-c", "1", "-W", "2", "fd81::2", check=False)
                if ping6.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert ping6.returncode == 0, ping6.stdout + ping6.stderr


@pytest.mark.parametrize(
    ("script", "subnet"),
    [("read_sync.py", "10.78.0"), ("read_asyncio.py", "10.79.0"), ("read_trio.py", "10.80.0")],
)
def test_print_packets_examples(script: str, subnet: str) -> None:
    with testing.netns(enter=False) as ns, Example(ns, script) as ex:
        ex.wait_for("ready")
        sender = (
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for i in range(3): s.sendto(b'hi', ('{subnet}.2', 9))\n"
        )
        ns.run("python3", "-c", sender)
        # the kernel's own IPv6 chatter is printed too; wait for our three IPv4 datagrams
        for _ in range(3):
            ex.wait_for("30 bytes: 45")
        ex.stop()


def test_addresses_example() -> None:
    with testing.netns(enter=False) as ns, Example(ns, "addresses.py") as ex:
        ex.wait(timeout=30)
    after_removing = next(line for line in ex.lines if line.startswith("after removing:"))
    addrs = ast.literal_eval(after_removing.split(":", 1)[1].strip())
    assert {"10.82.0.1/24", "10.82.2.1/24", "fd82:1::1/64"} <= set(addrs)
    assert "10.82.1.1/24" not in addrs and "fd82::1/64" not in addrs
    routes = ast.literal_eval(
        next(line for line in ex.lines if line.startswith("routes:")).split(":", 1)[1].strip()
    )
    assert {"198.51.100.0/24", "2001:db8:82::/48"} <= set(routes)
    assert "203.0.113.0/24" not in routes


def test_multiqueue_example_spreads_flows() -> None:
    with (
        testing.netns(enter=False) as ns,
        Example(ns, "multiqueue.py", "--queues", "4", "--seconds", "4") as ex,
    ):
        ex.wait_for("ready")
        sender = (
            "import socket\n"
            "for port in range(41000, 41032):\n"
            "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "    s.bind(('0.0.0.0', port)); s.sendto(b'x', ('10.83.0.2', 9)); s.close()\n"
        )
        ns.run("python3", "-c", sender)
        ex.wait(timeout=30)
    line = next(line for line in ex.lines if line.startswith("per queue:"))
    per_queue = ast.literal_eval(line.split("per queue:")[1].split("total:")[0].strip())
    assert sum(per_queue.values()) >= 32
    assert len([q for q, n in per_queue.items() if n]) >= 2


def test_vpn_pair_example_carries_ping_through_its_tunnel() -> None:
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, "192.168.66.1/24", "192.168.66.2/24")
        names = [testing.unique_name("vpa"), testing.unique_name("vpb")]
        args = (a.name, b.name, "192.168.66.2", "--names", *names, "--seconds", "30")
        with Example(a, "vpn_pair.py", *args) as ex:
            ex.wait_for("ready")
            ping = a.run("ping", "-c", "3", "-i", "0.2", "-W", "5", "10.66.0.2", check=False)
            assert ping.returncode == 0, ping.stdout + ping.stderr
            assert "3 received" in ping.stdout
            ex.stop()
        counters = [line for line in ex.lines if line.startswith(tuple(names))]
        assert len(counters) == 2, (ex.lines, ex.stderr)
        for line in counters:
            messages_in = int(line.split(": ")[1].split()[0])
            assert messages_in >= 3, line  # three echoes (or replies), and keepalives


@pytest.mark.parametrize("backends", [("asyncio", "trio"), ("trio", "asyncio")])
def test_own_vpn_example_pair_carries_ping_and_stops_clean(
    backends: tuple[str, str], tmp_path: Path
) -> None:
    keys = [PrivateKey.generate(), PrivateKey.generate()]
    for key, file in zip(keys, ("a.key", "b.key"), strict=True):
        (tmp_path / file).write_text(key.to_base64())
    pub_a, pub_b = (k.public_key().to_base64() for k in keys)
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, "192.168.67.1/24", "192.168.67.2/24")
        names = [testing.unique_name("ova"), testing.unique_name("ovb")]
        side_b = (
            *("--private-key", str(tmp_path / "b.key"), "--peer", pub_a, "--listen-port", "51820"),
            *("--allowed-ips", "10.67.0.1/32,fd67::1/128", "--address", "10.67.0.2/24"),
            *("--address", "fd67::2/64", "--address", "10.68.0.2/32"),
            *("--name", names[1], "--backend", backends[1]),
        )
        side_a = (
            *("--private-key", str(tmp_path / "a.key"), "--peer", pub_b),
            *("--endpoint", "192.168.67.2:51820"),
            # 10.68.0.0/24 is outside A's addresses: routed into the device
            *("--allowed-ips", "10.67.0.2/32,fd67::2/128,10.68.0.0/24"),
            *("--address", "10.67.0.1/24", "--address", "fd67::1/64"),
            *("--name", names[0], "--backend", backends[0]),
        )
        with Example(b, "own_vpn.py", *side_b) as eb, Example(a, "own_vpn.py", *side_a) as ea:
            eb.wait_for("ready")
            ea.wait_for("ready")
            ea.wait_for("HandshakeCompleted")
            for addr in ("10.67.0.2", "fd67::2", "10.68.0.2"):
                ping = a.run("ping", "-c", "2", "-i", "0.2", "-W", "5", addr, check=False)
                assert ping.returncode == 0, (addr, ping.stdout, ping.stderr, ea.lines, eb.lines)
            assert ea.proc is not None
            ea.proc.send_signal(signal.SIGINT)  # Ctrl-C on one side, SIGTERM on the other
            ea.wait(timeout=30)
            eb.stop()
        for ex, ns, name in ((ea, a, names[0]), (eb, b, names[1])):
            assert ex.proc is not None and ex.proc.returncode == 0, ex.stderr
            assert "Traceback" not in ex.stderr and "Warning" not in ex.stderr, ex.stderr
            counters = next(line for line in ex.lines if line.startswith(f"{name}:"))
            assert int(counters.split(": ")[1].split()[0]) >= 6, counters  # the pings, each way
            gone = ns.run("ip", "link", "show", name, check=False)
            assert gone.returncode != 0, gone.stdout  # the device went with the program
