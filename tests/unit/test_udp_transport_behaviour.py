"""What the UDP transport, its statistics and DatagramBatch promise, in the corners the other
transport tests left open (found by mutating the code: each test here fails on a change the
rest of the suite let through)."""

from __future__ import annotations

import errno
import os
import socket
import sys

import anyio
import pytest

from tests.unit.test_udp_transport import payloads, receive
from tunflow import ConfigError, testing
from tunflow.transport import (
    UDP_OFFLOAD_ENV,
    DatagramBatch,
    TransportStatistics,
    UDPTransport,
    parse_endpoint,
)

pytestmark = pytest.mark.anyio

LINUX = sys.platform.startswith("linux")


# -- configuration ------------------------------------------------------------------------


def test_an_empty_arena_is_refused() -> None:
    with pytest.raises(ValueError):
        DatagramBatch(0)


# -- statistics ---------------------------------------------------------------------------


async def test_statistics_are_a_snapshot_not_a_live_view() -> None:
    async with UDPTransport.bind("127.0.0.1:0") as t:
        out = DatagramBatch()
        out.extend(payloads(2, 10))  # unconnected: nowhere to go
        await t.send_batch(out)
        before = t.statistics()
        await t.send_batch(out)
        assert before.drops == {"no_address": 2}
        assert t.statistics().drops == {"no_address": 4}


def test_merged_statistics_add_up_and_take_the_later_offloads() -> None:
    earlier = TransportStatistics(1, 10, 1, 2, 20, 2, 1, 2, True, True, {"refused": 1, "x": 2})
    later = TransportStatistics(3, 30, 3, 4, 40, 4, 3, 4, False, False, {"refused": 5})
    merged = earlier.merge(later)
    assert merged == TransportStatistics(
        4, 40, 4, 6, 60, 6, 4, 6, False, False, {"refused": 6, "x": 2}
    )
    assert earlier.drops == {"refused": 1, "x": 2}  # (neither record changed)
