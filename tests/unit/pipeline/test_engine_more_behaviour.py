"""The engine when a source port is closed under it."""

from __future__ import annotations

import anyio
import pytest

from tests.helpers import ipv4_udp
from tunflow.packet import PacketBatch
from tunflow.pipeline import MemorySink, MemorySource, Pipeline

pytestmark = pytest.mark.anyio


class _ClosingSource(MemorySource):
    """Hands out its packets, then reads as a port closed meanwhile does."""

    async def recv_batch(self, batch: PacketBatch, whole: bool) -> PacketBatch:
        if not self.remaining:
            raise anyio.ClosedResourceError
        return await super().recv_batch(batch, whole)


@pytest.mark.parametrize("buffer", [0, 2])
async def test_a_source_closed_under_its_lane_ends_the_lane_not_the_pipeline(buffer: int) -> None:
    """A port's read raising ``anyio.ClosedResourceError`` ("the port was closed") ends its
    lane as the end of a source does: ``run()`` returns, every packet read before is written
    (with a buffer, those in flight too), and the pipeline does not fail with the closing."""
    packets = [ipv4_udp("10.0.0.1", "10.0.0.2", 1000, 9, bytes([i])) for i in range(7)]
    sink = MemorySink()
    p = Pipeline(_ClosingSource(packets, batch_size=2), [], sink, buffer=buffer)
    with anyio.fail_after(5):
        await p.run()
    assert sink.packets == packets
    worker = p.statistics().workers[0]
    assert (worker.packets_out, worker.unprocessed) == (7, 0)
