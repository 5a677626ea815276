"""FdQueue batch reads that hold no packet: skipped (as FdQueue.recv documents), never handed
out as a packet of nonsense length."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from tunflow.packet import HEADROOM, PacketBatch
from tunflow.platform._unix import FdQueue


@pytest.fixture
def pair() -> Iterator[tuple[int, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    fd = a.detach()
    try:
        yield fd, b
    finally:
        b.close()
        os.close(fd)


def test_a_read_shorter_than_the_virtio_header_is_skipped(pair: tuple[int, socket.socket]) -> None:
    fd, peer = pair
    queue = FdQueue(fd, close_fd=False, vnet_hdr=True)
    packet = b"\x45" + bytes(39)
    peer.send(bytes(5))
    peer.send(bytes(HEADROOM) + packet)
    batch = PacketBatch()
    assert queue.recv_batch(batch, 1500) == 1
    assert batch.to_list() == [packet]
    queue.close()


def test_a_family_header_alone_is_skipped(pair: tuple[int, socket.socket]) -> None:
    fd, peer = pair
    queue = FdQueue(fd, close_fd=False, af_header=True)
    packet = b"\x45" + bytes(39)
    peer.send(b"\0\0\0\x02")
    peer.send(b"\0\0\0\x02" + packet)
    batch = PacketBatch()
    assert queue.recv_batch(batch, 1500) == 1
    assert batch.to_list() == [packet]
    queue.close()
