"""``send()`` of a packet in a buffer whose items are not bytes (an ``array('I')``, a
``memoryview`` cast to ``'I'``, a ctypes char array): checked as its bytes, as
``send_vectored`` and ``recv_into`` take such a buffer, and written; still refused when its
bytes are not a packet."""

from __future__ import annotations

import array
import ctypes
import socket
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from tests.helpers import ipv4_udp
from tunflow import DeviceBuilder, MalformedPacketError, testing

pytestmark = pytest.mark.needs_root

PACKET = ipv4_udp("10.63.0.2", "10.63.0.1", 1, 6000, b"wide")  # 32 bytes

BUFFERS: dict[str, Callable[[bytes], Any]] = {
    "array-I": lambda b: array.array("I", b),
    "memoryview-cast-I": lambda b: memoryview(bytearray(b)).cast("I"),
    "ctypes-char-array": lambda b: ctypes.create_string_buffer(b, len(b)),
}


def _listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.63.0.1", 6000))
    s.settimeout(5)
    return s


@pytest.mark.parametrize("offload", [False, True])
@pytest.mark.parametrize("kind", sorted(BUFFERS))
def test_sync_send_of_a_buffer_of_other_items(
    netns: testing.Netns, offload: bool, kind: str
) -> None:
    # was: MalformedPacketError "IP version nibble is 33554436" (array('I'), the check read
    # 4-byte items), or TypeError "a packet is a bytes-like object ..., not c_char_Array_32"
    builder = DeviceBuilder().ipv4("10.63.0.1", 24).offload(offload)
    with builder.build_sync() as dev, _listener() as s:
        assert dev.send(BUFFERS[kind](PACKET)) == len(PACKET)
        assert s.recv(100) == b"wide"


@pytest.mark.parametrize("kind", sorted(BUFFERS))
def test_a_buffer_of_other_items_that_is_no_packet_is_still_refused(
    netns: testing.Netns, kind: str
) -> None:
    bad = b"\x75" + PACKET[1:]  # version nibble 7
    with DeviceBuilder().ipv4("10.63.0.1", 24).build_sync() as dev:
        with pytest.raises(MalformedPacketError, match="version nibble is 7,"):
            dev.send(BUFFERS[kind](bad))
        short = PACKET[:-4]  # total length 32, 28 bytes given
        with pytest.raises(MalformedPacketError, match="only 28 bytes"):
            dev.send(BUFFERS[kind](short))


def test_async_send_of_a_buffer_of_other_items(netns: testing.Netns) -> None:
    async def main() -> None:
        async with DeviceBuilder().ipv4("10.63.0.1", 24).build_async() as dev:
            with _listener() as s:
                s.setblocking(False)
                await dev.send(array.array("I", PACKET))
                with anyio.fail_after(5):
                    await anyio.wait_readable(s)
                assert s.recv(100) == b"wide"

    anyio.run(main)
