"""Device edges: reads that carry no packet, on a fake macOS kernel (utun's 4-byte family
header) and on adopted datagram fds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tunflow import DeviceBuilder, SyncDevice
from tunflow.platform._unix import FdQueue
from tunflow.platform.fake import pretend_platform

# an IPv4 echo request
PACKET = bytes.fromhex("4500001c00004000400100000a0000020a0000010800f7ff00000000")
AF_INET = b"\0\0\0\2"
#: reads that hold no packet: the family header alone, or less of it
NO_PACKET = [AF_INET, b"\0\0\0", b"\0"]


@pytest.fixture
def utun() -> Iterator[tuple[SyncDevice, Any]]:
    with pretend_platform("darwin") as fake:
        dev = DeviceBuilder().ipv4("10.0.0.1", 24).build_sync()
        yield dev, fake
        dev.close()


def _inject_junk_then_packet(fake: Any, fd: int) -> None:
    for junk in NO_PACKET:
        fake.inject(fd, junk)
    fake.inject(fd, AF_INET + PACKET)


def test_a_read_without_a_packet_is_skipped_by_recv_as_by_recv_batch(
    utun: tuple[SyncDevice, Any],
) -> None:
    # recv handed out b"" for each (an "empty packet", counted in rx_packets) and recv_into 0,
    # where recv_batch / recv_many skip such a read
    dev, fake = utun
    _inject_junk_then_packet(fake, dev.fileno())
    assert dev.recv(timeout=1) == PACKET
    _inject_junk_then_packet(fake, dev.fileno())
    buf = bytearray(dev.max_size)
    assert dev.recv_into(buf, timeout=1) == len(PACKET) and bytes(buf[: len(PACKET)]) == PACKET
    _inject_junk_then_packet(fake, dev.fileno())
    head, rest = bytearray(20), bytearray(dev.max_size)
    assert dev.recv_vectored([head, rest], timeout=1) == len(PACKET)
    _inject_junk_then_packet(fake, dev.fileno())
    assert dev.recv_many(8, timeout=1) == [PACKET]
    stats = dev.statistics()
    assert (stats.rx_packets, stats.rx_bytes) == (4, 4 * len(PACKET))


def test_a_read_without_a_packet_alone_is_nothing_to_read(
    utun: tuple[SyncDevice, Any],
) -> None:
    dev, fake = utun
    fake.inject(dev.fileno(), AF_INET)
    with pytest.raises(TimeoutError):
        dev.recv(timeout=0.05)
    fake.inject(dev.fileno(), AF_INET)
    with pytest.raises(TimeoutError):
        dev.recv_into(bytearray(dev.max_size), timeout=0.05)
    assert dev.statistics().rx_packets == 0


@pytest.mark.anyio
async def test_the_async_face_skips_a_read_without_a_packet() -> None:
    fake: Any
    with pretend_platform("darwin") as fake:
        dev = DeviceBuilder().ipv4("10.0.0.1", 24).build_async()
        try:
            _inject_junk_then_packet(fake, dev.fileno())
            with anyio.fail_after(5):
                assert await dev.receive() == PACKET
            _inject_junk_then_packet(fake, dev.fileno())
            buf = bytearray(dev.max_size)
            with anyio.fail_after(5):
                assert await dev.recv_into(buf) == len(PACKET)
            fake.inject(dev.fileno(), AF_INET)
            with pytest.raises(anyio.WouldBlock):
                dev.receive_nowait()
            assert dev.statistics().rx_packets == 2
        finally:
            await dev.aclose()


@pytest.mark.parametrize("af_header", [False, True])
def test_an_empty_datagram_on_an_adopted_fd_is_skipped_by_recv(af_header: bool) -> None:
    # the fd-adopting path (iOS, Android, a parent process's socket): an empty datagram is
    # not the end (see test_fdqueue); recv_batch skips it, recv returned it as b""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    head = AF_INET if af_header else b""
    q = FdQueue(b.fileno(), close_fd=False, af_header=af_header)
    try:
        a.send(b"")
        a.send(head + PACKET)
        assert q.recv(2048) == PACKET
        a.send(b"")
        a.send(head + PACKET)
        assert q.recv_into(memoryview(bytearray(2048))) == len(PACKET)
        a.send(b"")
        with pytest.raises(BlockingIOError):
            q.recv(2048)
    finally:
        q.close()
        a.close()
        b.close()


def test_from_fd_on_a_datagram_socket_skips_an_empty_datagram() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    dev = SyncDevice.borrow_fd(b.fileno())
    try:
        a.send(b"")
        a.send(PACKET)
        assert dev.recv(timeout=1) == PACKET
    finally:
        dev.close()
        a.close()
        b.close()
