"""SyncDevice wake-ups: ``close()`` from another thread wakes a blocked ``recv`` (as
``shutdown()`` does), a shut-down device's ``wait_readable`` raises even with split segments
waiting, and a PipeWaker held by two waits stays open until the last one lets go."""

from __future__ import annotations

import os
import select
import socket
import threading

import pytest

from tests.unit.offload_packets import IP4_A, IP4_B, tcp_super_packet
from tests.unit.test_device_offload import ScriptedQueue, device as offload_device
from tunflow import ClosedDeviceError, Layer, SyncDevice
from tunflow.device._core import SharedInterface
from tunflow.platform._unix import FdQueue, PipeWaker


@pytest.mark.parametrize("stop", ["close", "shutdown"])
def test_close_or_shutdown_from_another_thread_wakes_a_blocked_recv(
    pair: tuple[socket.socket, socket.socket], stop: str
) -> None:
    # SyncDevice.close: "Shut down, then release the queue" — shutdown wakes every blocked
    # recv, which raises ClosedDeviceError at once, not when its timeout runs out
    _, b = pair
    dev = SyncDevice(SharedInterface(None, Layer.L3, False), FdQueue(b.fileno(), close_fd=False))
    outcome: list[BaseException | bytes] = []
    blocked = threading.Event()

    def receive() -> None:
        blocked.set()
        try:
            outcome.append(dev.recv(timeout=30))
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=receive)
    t.start()
    try:
        assert blocked.wait(10)
        t.join(0.2)  # (in its wait by now)
        getattr(dev, stop)()
        t.join(10)
        assert not t.is_alive(), f"{stop}() left recv asleep"
        assert len(outcome) == 1 and isinstance(outcome[0], ClosedDeviceError), outcome
    finally:
        dev.close()
        t.join(30)


def test_wait_readable_on_a_shut_down_device_raises_with_split_segments_waiting() -> None:
    # wait_readable: "ClosedDeviceError: the device was shut down, before or during the wait"
    # — segments of a split super-packet waiting in the device do not make it True
    queue = ScriptedQueue()
    dev = offload_device(queue)
    queue.incoming.append(tcp_super_packet(IP4_A, IP4_B, 3 * 500, 500))
    dev.recv(timeout=0)
    assert dev.wait_readable(timeout=0)
    dev.shutdown()
    with pytest.raises(ClosedDeviceError):
        dev.wait_readable(timeout=0)


def test_a_closed_waker_stays_open_until_the_last_wait_holding_it_lets_go() -> None:
    # PipeWaker: "a wait holds the pipe, and the last one out closes it"
    waker = PipeWaker()
    fd = waker.acquire()
    assert waker.acquire() == fd
    waker.wake()
    waker.close()
    waker.release()
    # the second wait still polls the pipe: open, and still woken
    assert waker.fileno() == fd
    os.fstat(fd)
    assert select.select([fd], [], [], 0)[0] == [fd]
    waker.release()
    assert waker.fileno() == -1
    assert waker.acquire() == -1
