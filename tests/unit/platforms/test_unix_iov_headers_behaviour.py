"""FdQueue's framing headers at the edges: a family or virtio-net header added to (or read
with) a packet is never counted in the bytes written, and never pushes a vectored call of
``IOV_MAX`` buffers (which the device faces accept) past what one ``readv``/``writev`` takes."""

from __future__ import annotations

import socket

import pytest

from tunflow import Layer, SyncDevice
from tunflow.device._core import SharedInterface
from tunflow.packet import HEADROOM
from tunflow.platform._unix import IOV_MAX, FdQueue

AF_INET = b"\0\0\0\2"
PACKET = b"\x45\x00\x00\x1c" + bytes(24)


def _spread(data: bytes, n: int) -> list[memoryview]:
    """``data`` over ``n`` buffers: one byte each, the rest in the last."""
    views = [memoryview(data[i : i + 1]) for i in range(n - 1)]
    return [*views, memoryview(data[n - 1 :])]


@pytest.mark.parametrize("af_header", [False, True])
def test_a_vectored_read_into_iov_max_minus_one_buffers_gets_the_packet(
    pair: tuple[socket.socket, socket.socket], af_header: bool
) -> None:
    a, b = pair
    queue = FdQueue(b.fileno(), close_fd=False, af_header=af_header)
    packet = bytes([0x45]) + bytes(range(256)) * 8
    a.send(AF_INET + packet if af_header else packet)
    whole = memoryview(bytearray(IOV_MAX * 4))
    views = [whole[i * 4 : (i + 1) * 4] for i in range(IOV_MAX - 1)]
    assert queue.recv_vectored(views, 4 * len(views)) == len(packet)
    assert bytes(whole[: len(packet)]) == packet
    queue.close()


@pytest.mark.parametrize(("af_header", "vnet_hdr"), [(False, False), (True, False), (False, True)])
def test_a_vectored_write_of_iov_max_buffers_is_written(
    pair: tuple[socket.socket, socket.socket], af_header: bool, vnet_hdr: bool
) -> None:
    a, b = pair
    queue = FdQueue(b.fileno(), close_fd=False, af_header=af_header, vnet_hdr=vnet_hdr)
    packet = bytes([0x45]) + bytes(range(256)) * 8
    assert queue.send_vectored(_spread(packet, IOV_MAX)) == len(packet)
    head = AF_INET if af_header else bytes(HEADROOM) if vnet_hdr else b""
    assert a.recv(65536) == head + packet
    queue.close()


@pytest.mark.parametrize("vectored", [False, True])
def test_a_send_on_a_virtio_net_queue_returns_the_packet_s_bytes(
    pair: tuple[socket.socket, socket.socket], vectored: bool
) -> None:
    # SyncDevice.send returns "the bytes written" of the packet, and statistics count them:
    # the 10-byte virtio-net header tunflow puts before it is not the caller's
    a, b = pair
    queue = FdQueue(b.fileno(), close_fd=False, vnet_hdr=True)
    with SyncDevice(SharedInterface(None, Layer.L3, False), queue) as dev:
        if vectored:
            n = dev.send_vectored([PACKET[:20], PACKET[20:]], timeout=5)
        else:
            n = dev.send(PACKET, timeout=5)
        assert n == len(PACKET)
        assert a.recv(65536) == bytes(HEADROOM) + PACKET
        assert dev.statistics().tx_bytes == len(PACKET)
