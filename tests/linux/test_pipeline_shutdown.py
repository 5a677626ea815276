"""Cancelling a busy pipeline: back in under a second, nothing left behind — no task, thread,
process, fd or interface — on asyncio, uvloop and trio, with task and process workers."""

from __future__ import annotations

import os
import threading
import time

import anyio
import pytest

from tunflow import DeviceBuilder, testing
from tunflow.pipeline import StageSpec, open_pipeline

from .pipeline_topology import in_netns

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


def child_processes() -> list[int]:
    """Processes whose parent is this one (zombies included)."""
    me = str(os.getpid())
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                out.append(int(entry))
    return out


def new_threads(before: set[int | None]) -> list[str]:
    """Threads started since ``before``, except trio's own: anyio's pytest runner drives trio in
    guest mode, where trio waits for I/O in a thread of its thread cache ("Trio thread N")."""
    return [
        t.name
        for t in threading.enumerate()
        if t.ident not in before and not t.name.startswith("Trio thread")
    ]


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


class Flood:
    """UDP sent as fast as a thread can into the source TUN (spread over 64 flows)."""

    def __init__(self, ns: testing.Netns, dst: str) -> None:
        self._stop = threading.Event()
        self._ns, self._dst = ns, dst
        self.sent = 0
        self._thread = threading.Thread(target=lambda: in_netns(ns, self._run))

    def _run(self) -> None:
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            payload = bytes(200)
            while not self._stop.is_set():
                for port in range(2000, 2064):
                    try:
                        s.sendto(payload, (self._dst, port))
                    except OSError:
                        pass
                self.sent += 64
                time.sleep(0)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("workers", ["tasks", "processes"])
async def test_cancel_busy_pipeline(netns: testing.Netns, workers: str) -> None:
    src = DeviceBuilder().name(testing.unique_name("s")).ipv4("10.210.0.1", 24).multi_queue(True)
    sink = DeviceBuilder().name(testing.unique_name("k")).ipv4("10.211.0.1", 24).multi_queue(True)
    a0 = src.build_async()
    a1 = await a0.try_clone()
    b0 = sink.build_async()
    b1 = await b0.try_clone()
    tasks_before = len(anyio.get_running_tasks())
    threads_before = {t.ident for t in threading.enumerate()}
    fds_before = open_fds()
    children_before = set(child_processes())
    chain = [StageSpec("filter"), StageSpec("stats")]
    with Flood(netns, "10.210.0.2") as flood:
        async with open_pipeline([a0, a1], chain, [b0, b1], workers=workers) as p:
            with anyio.fail_after(20):
                while p.statistics().stages[1].packets_in < 2000:  # noqa: ASYNC110 - polls counters
                    await anyio.sleep(0.05)
            if workers == "processes":
                assert len(set(child_processes()) - children_before) == 2
            t0 = time.monotonic()
        elapsed = time.monotonic() - t0
    assert flood.sent > 2000
    assert elapsed < 1.0, f"stopping took {elapsed:.3f} s"
    stats = p.statistics()
    assert not stats.running and stats.stages[1].packets_in >= 2000
    # nothing left behind
    assert len(anyio.get_running_tasks()) == tasks_before
    assert new_threads(threads_before) == []
    assert set(child_processes()) - children_before == set()
    assert open_fds() == fds_before
    for d in (a0, a1, b0, b1):
        await d.aclose()
    links = [link["ifname"] for link in netns.ip_json("link", "show")]
    assert links == ["lo"]
