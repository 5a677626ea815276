"""tun-rs's ``AsyncDevice::new(sync_device)`` and ``into_fd()``: ``AsyncDevice.from_sync`` takes
a SyncDevice's queue over, ``into_fd`` gives the fd up; on the real kernel, asyncio, uvloop and
trio alike."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from typing import Any

import anyio
import pytest

from tests.helpers import (
    assert_a_new_socket_is_waited_on,
    first_udp,
    ipv4_udp,
    no_ipv6,
    sent_to_socket,
    udp_payload,
    udp_send,
    wait_until_polling,
)
from tunflow import (
    AsyncDevice,
    ClosedDeviceError,
    DeviceAttribute,
    DeviceBuilder,
    SyncDevice,
    UnsupportedError,
    testing,
)

pytestmark = [pytest.mark.needs_root]

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)


def _links(ns: testing.Netns) -> set[str]:
    return {link["ifname"] for link in ns.ip_json("link", "show")}


def _refuses_use(dev: SyncDevice) -> None:
    """``dev`` behaves as a closed device: packets, readiness and configuration raise."""
    with pytest.raises(ClosedDeviceError):
        dev.recv(timeout=0)
    with pytest.raises(ClosedDeviceError):
        dev.send(ipv4_udp("10.0.0.2", "10.0.0.1", 1, 2, b"x"))
    with pytest.raises(ClosedDeviceError):
        dev.recv_batch(timeout=0)
    with pytest.raises(ClosedDeviceError):
        dev.wait_readable(timeout=0)
    with pytest.raises(ClosedDeviceError):
        dev.name()
    assert dev.fileno() == -1
    dev.close()  # does nothing more


def _read_udp(fd: int, port: int, skip: int = 0) -> bytes:
    """The payload of the first UDP packet to ``port`` read from the raw fd (behind ``skip``
    bytes of header)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        parsed = udp_payload(os.read(fd, 65536)[skip:])
        if parsed and parsed[1] == port:
            return parsed[2]
    raise AssertionError(f"no packet to port {port} on fd {fd}")


# -- AsyncDevice.from_sync ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_from_sync_takes_the_queue_and_the_device_goes_with_aclose(
    netns: testing.Netns,
) -> None:
    sync = DeviceBuilder().ipv4("10.61.0.1", 24).build_sync()
    name = sync.name()
    fd = sync.fileno()
    udp_send("10.61.0.2", 5000, b"before")
    dev = AsyncDevice.from_sync(sync)
    async with dev:
        assert dev.fileno() == fd
        assert dev.extra(DeviceAttribute.name) == name
        assert dev.extra(DeviceAttribute.queue) == 0
        _refuses_use(sync)
        assert name in _links(netns)  # the SyncDevice's close undid nothing
        assert await first_udp(dev, 5000) == b"before"  # queued before the take-over
        udp_send("10.61.0.2", 5001, b"after")
        assert await first_udp(dev, 5001) == b"after"
        assert await sent_to_socket(dev, "10.61.0.2", "10.61.0.1", b"out") == b"out"
        assert await dev.name() == name
    assert name not in _links(netns)  # aclose did what the SyncDevice's close would have
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.anyio
async def test_from_sync_carries_a_split_super_packets_segments_on(
    netns: testing.Netns,
) -> None:
    no_ipv6(netns)
    sync = DeviceBuilder().offload().ipv4("10.61.1.1", 24).build_sync()
    if not sync.offload_info.uso:
        sync.close()
        pytest.skip("this kernel has no USO on TUN devices (Linux < 6.2)")
    gro = sync.gro
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, 100)
        s.sendto(bytes(range(100)) * 3, ("10.61.1.2", 9))  # one super-packet of 3
    first = udp_payload(sync.recv(timeout=10))
    assert first is not None and first[1] == 9
    async with AsyncDevice.from_sync(sync) as dev:
        assert dev.gro is gro and dev.offload_info == sync.offload_info
        with anyio.fail_after(5):
            rest = [udp_payload(await dev.receive()) for _ in range(2)]
        assert [p[1:] for p in rest if p] == [(9, bytes(range(100)))] * 2
        stats = dev.statistics()
        assert stats.rx_packets == 3 and stats.rx_super_packets == 1
        _refuses_use(sync)
        assert sync.gro is None


@pytest.mark.anyio
async def test_from_sync_wakes_a_thread_blocked_in_the_sync_device(
    netns: testing.Netns,
) -> None:
    sync = DeviceBuilder().ipv4("10.61.2.1", 24).build_sync()
    raised: list[BaseException] = []

    def reader() -> None:
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:  # (past the kernel's own chatter)
                sync.recv(timeout=30)
        except BaseException as exc:
            raised.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    try:
        wait_until_polling(t)  # blocked in recv
        async with AsyncDevice.from_sync(sync) as dev:
            await anyio.to_thread.run_sync(t.join, 10)
            assert not t.is_alive()
            assert len(raised) == 1 and isinstance(raised[0], ClosedDeviceError)
            udp_send("10.61.2.2", 5000, b"still flows")
            assert await first_udp(dev, 5000) == b"still flows"
    finally:
        sync.close()
        t.join(10)


@pytest.mark.anyio
async def test_from_sync_refuses_a_closed_or_shut_down_device(netns: testing.Netns) -> None:
    closed = DeviceBuilder().build_sync()
    closed.close()
    with pytest.raises(ClosedDeviceError, match="closed"):
        AsyncDevice.from_sync(closed)
    with DeviceBuilder().build_sync() as shut:
        shut.shutdown()
        with pytest.raises(ClosedDeviceError, match="shut down"):
            AsyncDevice.from_sync(shut)
        assert shut.name()  # refused: nothing was taken, the device is as it was
    async with DeviceBuilder().build_async() as dev:
        with pytest.raises(TypeError, match="SyncDevice"):
            AsyncDevice.from_sync(dev)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_from_sync_takes_one_queue_of_a_multi_queue_device(netns: testing.Netns) -> None:
    with DeviceBuilder().multi_queue(True).ipv4("10.61.3.1", 24).build_sync() as first:
        name = first.name()
        clone = first.try_clone()
        async with AsyncDevice.from_sync(clone) as dev:
            assert dev.extra(DeviceAttribute.queue) == 1
            _refuses_use(clone)
            assert await dev.name() == name
            async with await dev.try_clone() as third:
                assert third.extra(DeviceAttribute.queue) == 2
        assert first.name() == name  # the other queue keeps the interface
        assert name in _links(netns)
    assert name not in _links(netns)


@pytest.mark.anyio
async def test_from_sync_of_a_borrowed_fd_leaves_it_open(netns: testing.Netns) -> None:
    with DeviceBuilder().build_sync() as owner:
        fd = owner.fileno()
        borrowed = SyncDevice.borrow_fd(fd)
        async with AsyncDevice.from_sync(borrowed) as dev:
            assert dev.fileno() == fd
            _refuses_use(borrowed)
        os.fstat(fd)  # still the owner's
        assert owner.name()


@pytest.mark.anyio
async def test_from_sync_carries_every_counter_on(netns: testing.Netns) -> None:
    sync = DeviceBuilder().ipv4("10.61.7.1", 24).enable(False).build_sync()
    packet = ipv4_udp("10.61.7.2", "10.61.7.1", 1, 9, b"x")
    batch = sync.new_batch()
    for _ in range(2):
        batch.append(packet)
    sync.send_batch(batch)  # the link is down: dropped and counted
    sync.enabled(True)
    sync.send(packet)
    udp_send("10.61.7.2", 5000, b"in")
    sync.recv_batch(sync.new_batch(), timeout=10)
    before = sync.statistics()
    assert before.tx_dropped == {"link_down": 2}
    assert before.tx_batches and before.rx_batches and before.tx_packets and before.rx_packets
    async with AsyncDevice.from_sync(sync) as dev:
        assert dev.statistics() == before
        await dev.enabled(False)
        await dev.send_batch(batch)
        assert dev.statistics().tx_dropped == {"link_down": 4}
        # the closed device's counters do not follow the face that took its queue
        assert sync.statistics().tx_dropped in ({}, {"link_down": 2})


@pytest.mark.anyio
async def test_a_from_sync_that_fails_leaves_no_fd_open(
    netns: testing.Netns, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync = DeviceBuilder().ipv4("10.61.8.1", 24).build_sync()
    name = sync.name()
    fd = sync.fileno()

    def refused(self: AsyncDevice, other: SyncDevice) -> None:
        raise RuntimeError("take-over refused")

    monkeypatch.setattr(AsyncDevice, "_take_state", refused)
    with pytest.raises(RuntimeError, match="take-over refused"):
        AsyncDevice.from_sync(sync)
    _refuses_use(sync)
    with pytest.raises(OSError):
        os.fstat(fd)  # the queue went with the failed take-over, not leaked
    assert name not in _links(netns)


# -- into_fd -----------------------------------------------------------------------------------


def test_into_fd_gives_the_fd_and_the_interface_lives_until_it_is_closed(
    netns: testing.Netns,
) -> None:
    dev = DeviceBuilder().ipv4("10.61.4.1", 24).build_sync()
    name = dev.name()
    fd = dev.into_fd()
    try:
        _refuses_use(dev)
        assert name in _links(netns)
        addrs = netns.ip_json("addr", "show", "dev", name)[0]["addr_info"]
        assert "10.61.4.1" in {a["local"] for a in addrs}  # nothing undone
        udp_send("10.61.4.2", 5000, b"raw read")
        assert _read_udp(fd, 5000) == b"raw read"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("10.61.4.1", 6000))
            s.settimeout(5)
            os.write(fd, ipv4_udp("10.61.4.2", "10.61.4.1", 1, 6000, b"raw write"))
            assert s.recv(100) == b"raw write"
        assert name in _links(netns)
    finally:
        os.close(fd)
    assert name not in _links(netns)  # not persistent: gone with its fd


def test_into_fd_of_a_persistent_device_keeps_it(netns: testing.Netns) -> None:
    name = testing.unique_name("hnd")
    fd = DeviceBuilder().name(name).persist().build_sync().into_fd()
    os.close(fd)
    try:
        assert name in _links(netns)  # persist was not undone
    finally:
        netns.run("ip", "link", "del", name)


def test_into_fd_of_an_offload_device_carries_the_virtio_net_header(
    netns: testing.Netns,
) -> None:
    dev = DeviceBuilder().offload().ipv4("10.61.5.1", 24).build_sync()
    fd = dev.into_fd()
    try:
        udp_send("10.61.5.2", 5000, b"behind a header")
        assert _read_udp(fd, 5000, skip=10) == b"behind a header"
    finally:
        os.close(fd)


def test_into_fd_gives_an_adopted_fd_back_in_its_blocking_mode(netns: testing.Netns) -> None:
    with DeviceBuilder().build_sync() as owner:
        fd = os.dup(owner.fileno())
        os.set_blocking(fd, True)
        adopted = SyncDevice.from_fd(fd)
        assert not os.get_blocking(fd)
        assert adopted.into_fd() == fd
        try:
            assert os.get_blocking(fd)
        finally:
            os.close(fd)


def test_into_fd_wakes_a_thread_blocked_in_recv(netns: testing.Netns) -> None:
    dev = DeviceBuilder().build_sync()
    raised: list[BaseException] = []

    def reader() -> None:
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:  # (past the kernel's own chatter)
                dev.recv(timeout=30)
        except BaseException as exc:
            raised.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    wait_until_polling(t)  # blocked in recv
    fd = dev.into_fd()
    try:
        t.join(10)
        assert not t.is_alive()
        assert len(raised) == 1 and isinstance(raised[0], ClosedDeviceError)
        os.fstat(fd)
    finally:
        os.close(fd)


def test_into_fd_returns_once_a_woken_thread_let_go_of_the_fd(netns: testing.Netns) -> None:
    """A thread blocked in recv holds the fd; into_fd wakes it and returns only after it let
    go: an adopted blocking fd is blocking again already, and nothing of the device touches
    the fd (its mode, say) once it is the caller's."""
    for _ in range(5):  # (the woken thread lets go soon after into_fd: most rounds catch it)
        with DeviceBuilder().build_sync() as owner:
            fd = os.dup(owner.fileno())
            os.set_blocking(fd, True)
            dev = SyncDevice.from_fd(fd)
            t = threading.Thread(target=_recv_until_closed, args=(dev,))
            t.start()
            try:
                wait_until_polling(t)  # blocked in recv
                assert dev.into_fd() == fd
                assert os.get_blocking(fd)
                os.set_blocking(fd, False)  # the caller's choice, from now on
                t.join(10)
                assert not t.is_alive()
                assert not os.get_blocking(fd)
            finally:
                dev.close()
                t.join(10)
                os.close(fd)


def _recv_until_closed(dev: SyncDevice) -> None:
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:  # (past the kernel's own chatter)
            dev.recv(timeout=30)
    except ClosedDeviceError:
        pass


def test_into_fd_refusals(netns: testing.Netns) -> None:
    closed = DeviceBuilder().build_sync()
    closed.close()
    with pytest.raises(ClosedDeviceError):
        closed.into_fd()
    with DeviceBuilder().build_sync() as dev:
        dev.shutdown()
        with pytest.raises(ClosedDeviceError, match="shut down"):
            dev.into_fd()
    with DeviceBuilder().build_sync() as owner:
        borrowed = SyncDevice.borrow_fd(owner.fileno())
        with pytest.raises(UnsupportedError, match="borrow"):
            borrowed.into_fd()
        assert borrowed.name() == owner.name()  # refused: still usable
        borrowed.close()
        os.fstat(owner.fileno())


@pytest.mark.anyio
async def test_async_into_fd_of_a_borrowed_fd_is_refused(netns: testing.Netns) -> None:
    with DeviceBuilder().build_sync() as owner:
        async with AsyncDevice.borrow_fd(owner.fileno()) as borrowed:
            with pytest.raises(UnsupportedError, match="borrow"):
                borrowed.into_fd()
            assert await borrowed.name() == owner.name()  # refused: still usable
        os.fstat(owner.fileno())


def test_into_fd_twice(netns: testing.Netns) -> None:
    dev = DeviceBuilder().build_sync()
    fd = dev.into_fd()
    try:
        with pytest.raises(ClosedDeviceError):
            dev.into_fd()
    finally:
        os.close(fd)


@pytest.mark.anyio
async def test_async_into_fd(netns: testing.Netns) -> None:
    dev = DeviceBuilder().ipv4("10.61.6.1", 24).build_async()
    name = await dev.name()
    got: list[Any] = []

    async def receiver() -> None:
        try:
            while True:  # (past the kernel's own chatter)
                await dev.receive()
        except ClosedDeviceError as exc:
            got.append(exc)

    fd = -1
    try:
        with anyio.fail_after(10):  # (a receiver into_fd did not wake would wait for ever)
            async with anyio.create_task_group() as tg:
                tg.start_soon(receiver)
                await anyio.wait_all_tasks_blocked()  # blocked in receive
                fd = dev.into_fd()
        assert len(got) == 1
        assert dev.fileno() == -1
        with pytest.raises(ClosedDeviceError):
            await dev.name()
        with pytest.raises(ClosedDeviceError):
            dev.into_fd()
        await dev.aclose()  # nothing more
        udp_send("10.61.6.2", 5000, b"raw")
        assert _read_udp(fd, 5000) == b"raw"
        assert name in _links(netns)
    finally:
        await dev.aclose()
        if fd >= 0:
            os.close(fd)
    assert name not in _links(netns)
    await assert_a_new_socket_is_waited_on()  # the event loop let go of the number
