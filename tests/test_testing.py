from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading

import pytest

from tests.helpers import reap, sigterm_ignoring
from tunflow import testing

pytestmark = pytest.mark.needs_root


def test_netns_is_entered_and_removed() -> None:
    with testing.netns() as ns:
        name = ns.name
        assert name in testing.leftover_namespaces()
        links = {link["ifname"] for link in testing.ip_json("link", "show")}
        assert links == {"lo"}  # the thread sees the new namespace, not the host's
    assert name not in testing.leftover_namespaces()
    assert "lo" in {link["ifname"] for link in testing.ip_json("link", "show")}


def test_netns_removed_when_body_fails() -> None:
    with pytest.raises(ZeroDivisionError), testing.netns() as ns:
        name = ns.name
        1 / 0  # noqa: B018
    assert name not in testing.leftover_namespaces()


def test_veth_pair_connects(netns_pair: tuple[testing.Netns, testing.Netns]) -> None:
    a, b = netns_pair
    testing.veth_pair(a, b, "192.0.2.1/24", "192.0.2.2/24")
    a.run("ping", "-c", "1", "-W", "5", "192.0.2.2")


def test_unique_name_tells_apart_pids_equal_modulo_100000(monkeypatch: pytest.MonkeyPatch) -> None:
    # pid_max is 4194304 on most systems: pids 12345 and 112345 may run side by side, each
    # with its counter at 0.
    names = {}
    for pid in (12345, 112345, 2212345, 4194304):
        monkeypatch.setattr(testing.os, "getpid", lambda pid=pid: pid)
        monkeypatch.setattr(testing, "_counter", itertools.count())
        names[pid] = testing.unique_name("tun")
        assert len(names[pid].encode()) <= 15, names[pid]
    assert len(set(names.values())) == len(names), names
    for pid, name in names.items():
        assert [p for p in names if testing._ours(name, p)] == [pid], name


def test_owner_of_names_whose_counter_or_pid_holds_x() -> None:
    assert testing._owner("tftun02x5a_0") == int("02x5a", 36)
    assert testing._owner("tftun123x0x1") == 123
    assert testing._owner("tfx7x0") == 7
    assert testing._owner("tfn12345x") is None
    assert testing._owner("eth0") is None


@pytest.mark.parametrize("bad", ["a", "b"])
def test_veth_pair_with_a_bad_address_leaves_no_link(
    netns_pair: tuple[testing.Netns, testing.Netns], bad: str
) -> None:
    a, b = netns_pair
    addrs = {"a": "192.0.2.1/24", "b": "192.0.2.2/24", bad: "300.0.2.1/24"}
    with pytest.raises(RuntimeError, match=r"300\.0\.2\.1"):
        testing.veth_pair(a, b, addrs["a"], addrs["b"])
    for ns in (a, b):
        assert [link["ifname"] for link in ns.ip_json("link", "show")] == ["lo"]


def test_namespaces_of_a_killed_run_are_removed_by_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal\n"
            "from tunflow import testing\n"
            "with testing.netns(enter=False) as ns:\n"
            "    print(ns.name, flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    stale = killed.stdout.split()[0]
    # and one a killed process with this process's pid left (pids are reused)
    ours = f"{testing.PREFIX}n{testing._pid_tag(os.getpid())}zzzz"
    testing.run("ip", "netns", "add", ours)
    try:
        assert {stale, ours} <= set(testing.leftover_namespaces())
        monkeypatch.setattr(testing, "_swept", False, raising=False)
        with testing.netns(enter=False) as ns:
            left = set(testing.leftover_namespaces())
            assert ns.name in left
            assert not {stale, ours} & left
    finally:
        for name in (stale, ours):
            testing.run("ip", "netns", "del", name, check=False)


def test_netns_stops_a_process_still_running_at_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "STOP_GRACE", 2.0)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with testing.netns(enter=False) as ns:
            name = ns.name
            procs.append(ns.popen(["sleep", "300"]))
            procs.append(sigterm_ignoring(ns))
        assert [p.poll() for p in procs] == [-signal.SIGTERM, -signal.SIGKILL]
        assert name not in testing.leftover_namespaces()
        assert not os.path.exists(f"/run/netns/{name}")
    finally:
        reap(procs)


def test_namespaces_left_out_of_order_raise_and_leave_the_thread_home(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # two tasks of one event loop thread: A enters x, B enters y, A leaves first
    x, y = netns_pair
    host = os.stat("/proc/thread-self/ns/net").st_ino
    y_ino = os.stat(f"/run/netns/{y.name}").st_ino
    a, b = x.entered(), y.entered()
    a.__enter__()
    b.__enter__()
    with pytest.raises(RuntimeError, match=rf"{x.name}.*{y.name}.*reverse order"):
        a.__exit__(None, None, None)
    assert os.stat("/proc/thread-self/ns/net").st_ino == y_ino  # B is still in y
    b.__exit__(None, None, None)
    assert os.stat("/proc/thread-self/ns/net").st_ino == host


def _ns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _inodes_of_workers(n: int) -> list[int]:
    """The namespace of ``n`` trio worker threads at once (all busy together: ``n`` threads)."""
    import trio

    async def main() -> list[int]:
        inodes: list[int] = []
        barrier = threading.Barrier(n)

        def probe() -> None:
            barrier.wait(10)
            inodes.append(_ns_inode())

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(trio.to_thread.run_sync, probe)
        return inodes

    return trio.run(main)


def test_worker_threads_started_inside_a_namespace_leave_it_with_the_thread() -> None:
    n = threading.active_count() + 4  # more than trio's idle workers: new ones start inside
    host = _ns_inode()
    with testing.netns():
        inside = _ns_inode()
        assert inside in _inodes_of_workers(n)
    assert _inodes_of_workers(n) == [host] * n


def test_netns_fails_while_a_thread_is_still_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "STOP_GRACE", 0.2)
    done = threading.Event()
    with pytest.raises(RuntimeError, match="still in"), testing.netns() as ns:
        name = ns.name
        thread = threading.Thread(target=done.wait, args=(30,), name="stays")
        thread.start()
    done.set()
    thread.join(10)
    assert name not in testing.leftover_namespaces()


@pytest.mark.parametrize("kind", ["TUN", "é", "ab1", "a-"])
def test_unique_name_refuses_kinds_its_owner_check_cannot_read(kind: str) -> None:
    # uppercase or non-ASCII names escaped leftover_interfaces(pid) and the stale sweep, and
    # "é" is two bytes: a name over the 15-byte limit
    with pytest.raises(ValueError, match="letters"):
        testing.unique_name(kind)
