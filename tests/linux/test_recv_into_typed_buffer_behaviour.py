"""``recv_into`` into a writable buffer whose items are not bytes (an ``array('I')``, a
``memoryview`` cast to ``'I'``): sized and filled by bytes, with and without offload, on both
faces."""

from __future__ import annotations

import array
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from tests.helpers import udp_payload, udp_send
from tunflow import DeviceBuilder, testing

pytestmark = pytest.mark.needs_root

BUFFERS: dict[str, Callable[[], Any]] = {
    # 1600 bytes: room for a 1500-byte packet, in 400 items
    "array-I": lambda: array.array("I", bytes(1600)),
    "memoryview-cast-I": lambda: memoryview(bytearray(1600)).cast("I"),
}


def _payload_in(buf: Any, n: int, port: int) -> bytes | None:
    parsed = udp_payload(bytes(memoryview(buf).cast("B")[:n]))
    return parsed[2] if parsed and parsed[1] == port else None


@pytest.mark.parametrize("offload", [False, True])
@pytest.mark.parametrize("kind", sorted(BUFFERS))
def test_sync_recv_into_a_buffer_of_wider_items(
    netns: testing.Netns, offload: bool, kind: str
) -> None:
    # was: ValueError "this one has 400" (items, not bytes) for 1600 bytes; with offload a
    # large enough one raised "memoryview assignment: lvalue and rvalue have different
    # structures"
    builder = DeviceBuilder().ipv4("10.59.0.1", 24).offload(offload)
    with builder.build_sync() as dev:
        buf = BUFFERS[kind]()
        udp_send("10.59.0.2", 5000, b"wide")
        for _ in range(20):
            n = dev.recv_into(buf, timeout=5)
            if (payload := _payload_in(buf, n, 5000)) is not None:
                break
        assert payload == b"wide"


@pytest.mark.parametrize("offload", [False, True])
def test_async_recv_into_a_buffer_of_wider_items(netns: testing.Netns, offload: bool) -> None:
    async def main() -> None:
        builder = DeviceBuilder().ipv4("10.59.0.1", 24).offload(offload)
        async with builder.build_async() as dev:
            buf = array.array("I", bytes(1600))
            udp_send("10.59.0.2", 5001, b"wide")
            with anyio.fail_after(10):
                while True:
                    n = await dev.recv_into(buf)
                    if (payload := _payload_in(buf, n, 5001)) is not None:
                        break
            assert payload == b"wide"

    anyio.run(main)
