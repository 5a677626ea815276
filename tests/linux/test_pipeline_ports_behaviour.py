"""Ports over the queues of one multi-queue device: one record per queue."""

from __future__ import annotations

import anyio
import pytest

from tests.helpers import udp_send
from tunflow import DeviceBuilder, testing
from tunflow.pipeline import MemorySink, as_ports, open_pipeline

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_each_queue_of_a_device_is_its_own_port(netns: testing.Netns) -> None:
    """A list of a device's queues is one port per queue, named ``<device>/<queue>``, and the
    pipeline's statistics keep one record per queue (the queues' counters are not folded
    into the first one's)."""
    name = testing.unique_name("mq")
    first = DeviceBuilder().name(name).ipv4("10.240.9.1", 24).multi_queue(True).build_async()
    async with first, await first.try_clone() as second:
        queues = [first, second]
        assert [p.name for p in as_ports(queues)] == [f"{name}/0", f"{name}/1"]
        async with open_pipeline(queues, [], MemorySink()) as p:
            for port in range(9000, 9032):  # flows over both queues, with near certainty
                udp_send("10.240.9.2", port, b"x")
            with anyio.fail_after(5):
                while sum(w.packets_in for w in p.statistics().workers) < 32:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            s = p.statistics()
    assert [q.name for q in s.ports] == [f"{name}/0", f"{name}/1", "memory-out"]
    assert sum(s.port(f"{name}/{i}").rx_packets for i in (0, 1)) >= 32
