"""FdQueue batch reads at their bounds: a batch takes at most ``max_packets``, with or without
the 4-byte family header, and a batch read that fails part way hands out what it read, with
the batch left whole for the caller to go on with (append, read more into it)."""

from __future__ import annotations

import errno
import os
import socket
import tty

import pytest

from tunflow import DeviceGoneError, Layer, PacketBatch, SyncDevice
from tunflow.device._core import SharedInterface
from tunflow.platform._unix import FdQueue

AF_INET = b"\0\0\0\2"


def _packet(i: int, size: int = 60) -> bytes:
    return bytes([0x45, i]) + bytes(size - 2)


@pytest.mark.parametrize("af_header", [False, True])
def test_a_batch_read_takes_at_most_max_packets(
    pair: tuple[socket.socket, socket.socket], af_header: bool
) -> None:
    a, b = pair
    queue = FdQueue(b.fileno(), close_fd=False, af_header=af_header)
    packets = [_packet(i) for i in range(5)]
    for p in packets:
        a.send(AF_INET + p if af_header else p)
    batch = PacketBatch(max_packets=3)
    assert queue.recv_batch(batch, 1500) == 3
    assert batch.to_list() == packets[:3]
    batch.clear()
    assert queue.recv_batch(batch, 1500) == 2
    assert batch.to_list() == packets[3:]
    queue.close()


@pytest.mark.parametrize("af_header", [False, True])
def test_recv_many_on_a_queue_with_more_waiting_hands_out_max_packets(
    pair: tuple[socket.socket, socket.socket], af_header: bool
) -> None:
    a, b = pair
    queue = FdQueue(b.fileno(), close_fd=False, af_header=af_header)
    packets = [_packet(i) for i in range(4)]
    for p in packets:
        a.send(AF_INET + p if af_header else p)
    with SyncDevice(SharedInterface(None, Layer.L3, False), queue) as dev:
        assert dev.recv_many(2, timeout=5) == packets[:2]
        assert dev.recv_many(2, timeout=5) == packets[2:]


def _hanging_up(af_header: bool, packet: bytes) -> int:
    """A pty master holding ``packet`` (framed), whose other end has closed: a read gets the
    packet, the next fails with ``EIO``."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.write(slave, AF_INET + packet if af_header else packet)
    os.close(slave)
    return master


@pytest.mark.parametrize("af_header", [False, True])
def test_a_batch_read_failing_after_a_packet_hands_it_out_and_raises_next(
    af_header: bool,
) -> None:
    # FdQueue: the error of a read after packets "shows again on the next call"; the packets
    # read first are the caller's
    packet = _packet(1)
    queue = FdQueue(_hanging_up(af_header, packet), af_header=af_header)
    batch = PacketBatch()
    try:
        assert queue.recv_batch(batch, 1500) == 1
        assert batch.to_list() == [packet]
        with pytest.raises(DeviceGoneError) as caught:
            queue.recv_batch(batch, 1500)
        assert caught.value.errno == errno.EIO
        assert batch.to_list() == [packet]
    finally:
        queue.close()


@pytest.mark.parametrize("af_header", [False, True])
def test_a_batch_a_failed_read_returned_goes_on_after_its_packets(af_header: bool) -> None:
    # a packet appended to the batch recv_batch returned lands after the packets read, and
    # leaves them as they were
    packet = _packet(1)
    queue = FdQueue(_hanging_up(af_header, packet), af_header=af_header)
    try:
        with SyncDevice(SharedInterface(None, Layer.L3, False), queue) as dev:
            batch = dev.recv_batch(timeout=5)
            reply = _packet(2, 80)
            batch.append(reply)
            assert batch.to_list() == [packet, reply]
            assert batch.nbytes == len(packet) + len(reply)
    finally:
        queue.close()
