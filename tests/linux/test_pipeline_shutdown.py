"""Cancelling a busy pipeline: back in under a second, nothing left behind — no task, thread,
process, fd or interface — on asyncio, uvloop and trio, with task and process workers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import anyio
import pytest

from tests.helpers import child_processes
from tunflow import DeviceBuilder, testing
from tunflow.pipeline import StageSpec, open_pipeline

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


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


# UDP as fast as one process can send (64 flows, so every queue gets its share), at a lower
# priority than the pipeline: the pipeline stays busy, but stopping it never waits for a core
# the load generator holds.
FLOOD = r"""
import os, socket, sys
os.nice(10)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = bytes(200)
while True:
    for port in range(2000, 2064):
        try:
            s.sendto(payload, (sys.argv[1], port))
        except OSError:
            pass
"""


@contextlib.contextmanager
def flood(dst: str) -> Iterator[None]:
    """The flood, from this thread's namespace, until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", FLOOD, dst])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("workers", ["tasks", "processes"])
async def test_cancel_busy_pipeline(netns: testing.Netns, workers: str) -> None:
    src = DeviceBuilder().name(testing.unique_name("s")).ipv4("10.210.0.1", 24).multi_queue(True)
    sink = DeviceBuilder().name(testing.unique_name("k")).ipv4("10.211.0.1", 24).multi_queue(True)
    async with contextlib.AsyncExitStack() as stack:  # the devices close even if a check fails
        a0 = src.build_async()
        stack.push_async_callback(a0.aclose)
        a1 = await a0.try_clone()
        stack.push_async_callback(a1.aclose)
        b0 = sink.build_async()
        stack.push_async_callback(b0.aclose)
        b1 = await b0.try_clone()
        stack.push_async_callback(b1.aclose)
        chain = [StageSpec("filter"), StageSpec("stats")]
        with flood("10.210.0.2"):
            tasks_before = len(anyio.get_running_tasks())
            threads_before = {t.ident for t in threading.enumerate()}
            fds_before = open_fds()
            children_before = child_processes()  # the flood's among them
            async with open_pipeline([a0, a1], chain, [b0, b1], workers=workers) as p:
                with anyio.fail_after(20):
                    while p.statistics().stages[1].packets_in < 2000:  # noqa: ASYNC110 - polls counters
                        await anyio.sleep(0.05)
                if workers == "processes":
                    assert len(child_processes() - children_before) == 2
                t0 = time.monotonic()  # from here: cancelling and waiting for every worker
            elapsed = time.monotonic() - t0
        # From the issue: cancelling a busy pipeline returns in under a second.
        assert elapsed < 1.0, f"stopping took {elapsed:.3f} s"
        stats = p.statistics()
        assert not stats.running and stats.stages[1].packets_in >= 2000
        # nothing left behind
        assert len(anyio.get_running_tasks()) == tasks_before
        assert new_threads(threads_before) == []
        assert child_processes() - children_before == set()
        assert open_fds() == fds_before
    links = [link["ifname"] for link in netns.ip_json("link", "show")]
    assert links == ["lo"]
