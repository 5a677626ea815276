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
