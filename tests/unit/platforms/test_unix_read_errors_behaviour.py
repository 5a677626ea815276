"""FdQueue read errors as the device faces raise them: a read the kernel fails with ``EIO`` is
the device gone (``LinkDownError`` is for writes to a down link only), and a read refused with
``EINVAL`` is the device refusing the read, not a bad packet of the caller's."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator

import pytest

from tunflow import (
    DeviceError,
    DeviceGoneError,
    Layer,
    LinkDownError,
    PacketBatch,
    PacketError,
    SyncDevice,
)
from tunflow.device._core import SharedInterface
from tunflow.platform._unix import FdQueue


@pytest.fixture
def hung_up() -> Iterator[int]:
    """A pty master whose other end closed: every read fails with ``EIO``."""
    master, slave = os.openpty()
    os.close(slave)
    try:
        yield master
    finally:
        os.close(master)


READS: dict[str, Callable[[FdQueue], object]] = {
    "recv": lambda q: q.recv(1500),
    "recv_into": lambda q: q.recv_into(memoryview(bytearray(1500))),
    "recv_vectored": lambda q: q.recv_vectored([memoryview(bytearray(1500))], 1500),
    "recv_batch": lambda q: q.recv_batch(PacketBatch(), 1500),
}


@pytest.mark.parametrize("af_header", [False, True])
@pytest.mark.parametrize("read", list(READS))
def test_a_read_failing_with_eio_is_the_device_gone_not_a_down_link(
    hung_up: int, read: str, af_header: bool
) -> None:
    queue = FdQueue(hung_up, close_fd=False, af_header=af_header)
    with pytest.raises(DeviceGoneError) as caught:
        READS[read](queue)
    assert caught.value.errno == errno.EIO
    assert not isinstance(caught.value, LinkDownError)
    queue.close()


def test_recv_on_a_device_whose_reads_fail_with_eio_raises_device_gone(hung_up: int) -> None:
    # docs/devices.md: a device gone under a reader raises DeviceGoneError; "the link is down"
    # (LinkDownError) is what a send() to a down link raises
    queue = FdQueue(hung_up, close_fd=False)
    with SyncDevice(SharedInterface(None, Layer.L3, False), queue) as dev:
        with pytest.raises(DeviceGoneError) as caught:
            dev.recv(timeout=5)
        assert not isinstance(caught.value, LinkDownError)
        assert "the link is down" not in str(caught.value)


@pytest.mark.parametrize("read", ["recv_into", "recv_vectored"])
def test_a_read_the_kernel_refuses_with_einval_is_a_device_error_not_a_packet_error(
    read: str,
) -> None:
    # an eventfd refuses a read of less than 8 bytes (EINVAL): the read, not a packet the
    # caller handed over, is at fault, so it is an OSError (DeviceError), not a PacketError
    fd = os.eventfd(1)
    queue = FdQueue(fd, close_fd=True)
    small = memoryview(bytearray(4))
    with pytest.raises(DeviceError) as caught:
        if read == "recv_into":
            queue.recv_into(small)
        else:
            queue.recv_vectored([small], len(small))
    assert caught.value.errno == errno.EINVAL
    assert not isinstance(caught.value, PacketError)
    queue.close()
