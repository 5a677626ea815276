"""AsyncDevice on the real kernel, identical on asyncio, uvloop and trio."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import subprocess
import threading
import time
from typing import Any

import anyio
import pytest

from tests.helpers import drain, first_udp, ipv4_udp, no_ipv6, sent_to_socket, udp_payload, udp_send
from tunflow import (
    AsyncDevice,
    ClosedDeviceError,
    DeviceAttribute,
    DeviceBuilder,
    DeviceError,
    DeviceGoneError,
    Layer,
    LinkDownError,
    LinkEvent,
    MalformedPacketError,
    PacketBatch,
    PacketTooLargeError,
    testing,
)

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


async def test_stream_receive_and_send(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.60.0.1", 24).build_async() as dev:
        assert isinstance(dev, anyio.abc.UnreliableObjectStream)
        udp_send("10.60.0.2", 5000, b"to the device")
        assert await first_udp(dev, 5000) == b"to the device"
        sent = await sent_to_socket(dev, "10.60.0.2", "10.60.0.1", b"from the device")
        assert sent == b"from the device"


async def test_readable_then_receive_nowait(netns: testing.Netns) -> None:
    # tun-rs's readable()/writable() followed by try_recv/try_send
    async with DeviceBuilder().ipv4("10.148.0.1", 24).build_async() as dev:
        with anyio.fail_after(10):
            await dev.writable()
            udp_send("10.148.0.2", 5000, b"ready")
            while True:
                await dev.readable()
                try:
                    packet = dev.receive_nowait()
                except anyio.WouldBlock:
                    continue
                parsed = udp_payload(packet)
                if parsed and parsed[1] == 5000:
                    break
        assert parsed[2] == b"ready"
        dev.send_nowait(ipv4_udp("10.148.0.2", "10.148.0.1", 1, 9, b"x"))
    async with DeviceBuilder().ipv4("10.149.0.1", 24).enable(False).build_async() as dev:
        with anyio.move_on_after(0.05) as scope:  # cancel-safe: nothing to read on a down link
            await dev.readable()
        assert scope.cancelled_caught

        async def close_soon() -> None:
            await anyio.sleep(0.1)
            await dev.aclose()

        async with anyio.create_task_group() as tg:
            tg.start_soon(close_soon)
            with anyio.fail_after(30), pytest.raises(ClosedDeviceError):
                await dev.readable()
        with pytest.raises(ClosedDeviceError):
            await dev.writable()


async def test_batches(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.61.0.1", 24).build_async() as dev:
        for i in range(40):
            udp_send("10.61.0.2", 5000, bytes([i]))
        got: list[bytes] = []
        with anyio.fail_after(10):
            while len(got) < 40:
                batch = await dev.recv_batch()
                got += [p[2] for p in map(udp_payload, batch.to_list()) if p and p[1] == 5000]
        assert sorted(got) == [bytes([i]) for i in range(40)]
        out = dev.new_batch()
        out.append(ipv4_udp("10.61.0.2", "10.61.0.1", 1, 9, b"x"))
        assert await dev.send_batch(out) == 1
        assert dev.statistics().rx_batches >= 1


async def test_aclose_wakes_a_blocked_receiver(netns: testing.Netns) -> None:
    dev = DeviceBuilder().ipv4("10.62.0.1", 24).build_async()
    caught: list[BaseException] = []

    async def receiver() -> None:
        try:
            while True:
                await dev.receive()
        except anyio.ClosedResourceError as exc:
            caught.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.sleep(0.2)
            await dev.aclose()
    assert len(caught) == 1
    assert isinstance(caught[0], ClosedDeviceError)
    with pytest.raises(anyio.ClosedResourceError):
        await dev.receive()


async def test_two_receivers_are_refused(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.63.0.1", 24).build_async() as dev:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def first() -> None:
                    while True:
                        await dev.receive()

                tg.start_soon(first)
                await anyio.sleep(0.2)
                with pytest.raises(anyio.BusyResourceError):
                    await dev.receive()
                tg.cancel_scope.cancel()


async def test_deleted_device_raises_broken_resource(netns: testing.Netns) -> None:
    name = testing.unique_name("g")
    async with DeviceBuilder().name(name).ipv4("10.64.0.1", 24).build_async() as dev:
        caught: list[BaseException] = []

        async def receiver() -> None:
            try:
                while True:
                    await dev.receive()
            except anyio.BrokenResourceError as exc:
                caught.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(receiver)
                await anyio.sleep(0.2)
                await anyio.run_process(netns.cmd("ip", "link", "del", name))
        assert len(caught) == 1
        assert isinstance(caught[0], DeviceGoneError)
        assert caught[0].errno is not None


async def test_a_device_deleted_right_after_a_wake_still_wakes_the_reader(
    netns: testing.Netns,
) -> None:
    # The reader is woken by a packet, reads until EAGAIN, and the device is deleted before the
    # loop polls again: that EPOLLERR, reported once by uvloop, must wake the next wait.
    from tunflow._readiness import ReadWaiter

    name = testing.unique_name("w")
    dev = DeviceBuilder().name(name).offload(False).ipv4("10.64.1.1", 24).build_sync()
    try:
        fd = dev.fileno()
        os.set_blocking(fd, False)
        waiter = ReadWaiter(fd)
        udp_send("10.64.1.2", 9, b"wake up")
        with anyio.fail_after(10):
            await waiter.wait()  # woken by the packet; from here on no await until the wait
            with contextlib.suppress(BlockingIOError):
                while True:
                    os.read(fd, 65536)
            # blocking on purpose: the loop must not poll between the read and the deletion
            subprocess.run(["ip", "link", "del", name], check=True)  # noqa: ASYNC221
            await waiter.wait()
        with pytest.raises(OSError) as gone:
            os.read(fd, 65536)
        assert gone.value.errno == errno.EBADFD
        waiter.close()
    finally:
        dev.close()


async def test_configuration_methods(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.65.0.1", 24).build_async() as dev:
        name = await dev.name()
        await dev.add_address_v4("10.65.1.1", 24)
        await dev.add_address_v6("fd65::1", 64)
        await dev.add_route("198.51.100.0/24")
        addrs = {str(a) for a in await dev.addresses()}
        assert {"10.65.0.1/24", "10.65.1.1/24", "fd65::1/64"} <= addrs
        assert "198.51.100.0/24" in {str(r.destination) for r in await dev.routes()}
        await dev.remove_address("10.65.1.1")
        await dev.set_mtu(1420)
        assert await dev.mtu() == 1420
        assert await dev.is_running()
        assert dev.if_index() == netns.ip_json("link", "show", name)[0]["ifindex"]
        assert dev.extra(DeviceAttribute.name) == name
        assert dev.extra(DeviceAttribute.index) == dev.if_index()
        assert dev.extra(DeviceAttribute.fileno) == dev.fileno()
        assert dev.extra(DeviceAttribute.layer) is Layer.L3
        assert dev.extra(DeviceAttribute.queue) == 0


async def test_multi_queue_clone(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.66.0.1", 24).multi_queue().build_async() as dev:
        clone = await dev.try_clone()
        async with clone:
            assert clone.extra(DeviceAttribute.queue) == 1
            assert await clone.name() == await dev.name()


def _tun_fds() -> int:
    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if os.path.realpath(f"/proc/self/fd/{fd}") == "/dev/net/tun")


async def test_a_cancelled_try_clone_opens_no_queue(netns: testing.Netns) -> None:
    # try_clone opened the queue, then met the cancellation at its checkpoint: the caller never
    # got the clone, whose queue stayed open — the kernel steering flows into it — until the
    # garbage collector found it
    async with DeviceBuilder().ipv4("10.66.1.1", 24).multi_queue().build_async() as dev:
        before = _tun_fds()
        caught: list[BaseException] = []
        with anyio.CancelScope() as scope:
            scope.cancel()
            try:
                await dev.try_clone()
            except anyio.get_cancelled_exc_class() as exc:
                caught.append(exc)  # (its frames, and what they hold, kept alive)
                raise
        assert caught
        assert _tun_fds() == before
        async with await dev.try_clone() as clone:
            assert _tun_fds() == before + 1
            assert await clone.name() == await dev.name()


async def test_receive_nowait(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.67.0.1", 24).build_async() as dev:
        drain(dev)
        udp_send("10.67.0.2", 5000, b"now")
        deadline = time.monotonic() + 5
        while True:
            try:
                packet = dev.receive_nowait()
            except anyio.WouldBlock:
                assert time.monotonic() < deadline
                await anyio.sleep(0.01)
                continue
            parsed = udp_payload(packet)
            if parsed and parsed[1] == 5000:
                break
        assert parsed[2] == b"now"


async def test_send_batch_without_checkpoint_is_not_one(netns: testing.Netns) -> None:
    # checkpoint=False: no cancellation check, no yield (a lane that read first has had its
    # checkpoint); the default is a checkpoint as every anyio call is
    async with DeviceBuilder().ipv4("10.62.0.1", 24).build_async() as dev:
        out = dev.new_batch()
        out.append(ipv4_udp("10.62.0.2", "10.62.0.1", 1, 9, b"x"))
        with anyio.CancelScope() as scope:
            scope.cancel()
            assert await dev.send_batch(out, checkpoint=False) == 1
            sent_anyway = True
            await dev.send_batch(out)
            raise AssertionError("a cancelled scope let a checkpointing send through")
        assert sent_anyway and scope.cancelled_caught
        assert dev.statistics().tx_packets == 1


async def test_a_cancelled_receive_reads_nothing_and_a_ready_one_still_yields(
    netns: testing.Netns, anyio_backend_name: str
) -> None:
    # The checkpoint comes before the read: a call in a cancelled scope raises with the
    # packet left in the queue; a call that finds a packet waiting still lets others run
    # (checked on asyncio, which runs ready tasks in order; trio shuffles them on purpose).
    async with DeviceBuilder().ipv4("10.61.0.1", 24).build_async() as dev:
        drain(dev)
        udp_send("10.61.0.2", 5001, b"kept")
        assert select.select([dev.fileno()], [], [], 5)[0], "the packet never arrived"
        received = dev.statistics().rx_packets
        with anyio.CancelScope() as scope:
            scope.cancel()
            await dev.recv_batch(dev.new_batch())
            raise AssertionError("a cancelled scope let recv_batch read")
        assert scope.cancelled_caught
        assert dev.statistics().rx_packets == received

        ran: list[str] = []

        async def other() -> None:
            ran.append("other")

        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
            batch = await dev.recv_batch(dev.new_batch())
            if anyio_backend_name == "asyncio":
                assert ran == ["other"], "recv_batch with a packet waiting did not yield"
        payloads = [udp_payload(bytes(p)) for p in batch]
        assert any(p and p[1] == 5001 and p[2] == b"kept" for p in payloads)


async def test_recv_into_refuses_a_buffer_that_could_cut_a_packet(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.68.0.1", 24).mtu(1400).build_async() as dev:
        udp_send("10.68.0.2", 5000, bytes(200))
        assert select.select([dev.fileno()], [], [], 5)[0], "nothing arrived"
        with pytest.raises(ValueError, match="max_size=1400"):
            await dev.recv_into(bytearray(50))  # refused before reading anything
        buf = bytearray(dev.max_size)
        with anyio.fail_after(10):
            while True:
                n = await dev.recv_into(buf)
                parsed = udp_payload(bytes(buf[:n]))
                if parsed and parsed[1] == 5000:
                    break
        assert n == 20 + 8 + 200 and parsed[2] == bytes(200)


async def test_a_write_on_a_down_link_is_not_a_broken_resource(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.69.0.1", 24).enable(False).build_async() as dev:
        packet = ipv4_udp("10.69.0.2", "10.69.0.1", 1, 9, b"x")
        with pytest.raises(LinkDownError, match="link is down") as info:
            await dev.send(packet)
        assert info.value.errno == errno.EIO and isinstance(info.value, DeviceError)
        assert not isinstance(info.value, anyio.BrokenResourceError)
        batch = dev.new_batch()
        batch.append(packet)
        batch.append(packet)
        assert await dev.send_batch(batch) == 2  # a batch: dropped and counted
        assert dev.statistics().tx_dropped == {"link_down": 2}
        await dev.enabled(True)
        await dev.send(packet)


async def test_configuration_after_aclose_is_a_closed_device(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.70.0.1", 24).multi_queue().build_async() as dev:
        clone = await dev.try_clone()
        await clone.aclose()
        with pytest.raises(ClosedDeviceError):
            await clone.mtu()
        with pytest.raises(ClosedDeviceError):
            await clone.add_route("198.51.100.0/24")
        assert await dev.mtu() == 1500
    with pytest.raises(ClosedDeviceError):
        await dev.name()
    with pytest.raises(ClosedDeviceError):
        await dev.set_mtu(1400)
    with pytest.raises(ClosedDeviceError):
        dev.if_index()


async def test_set_name_with_percent_d_reports_the_kernels_name(netns: testing.Netns) -> None:
    async with DeviceBuilder().name("tfa%d").build_async() as dev:
        assert dev.extra(DeviceAttribute.name) == "tfa0"
        await dev.set_name("tfd%d")
        assert dev.extra(DeviceAttribute.name) == await dev.name() == "tfd0"


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
async def test_at_rest_a_batch_waits_before_it_reads(
    netns: testing.Netns, offload: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a batch of one packet (a ping: the next one is a round trip away) the next
    # recv_batch waits for the device before it reads — no read that finds nothing — and
    # still takes at once a packet that came in between; after two it reads first again.
    no_ipv6(netns)
    async with DeviceBuilder().offload(offload).ipv4("10.69.0.1", 24).build_async() as dev:
        reads: list[int] = []
        nb_recv_batch = dev._nb_recv_batch

        def counted(batch: PacketBatch, whole: bool) -> int:
            reads.append(nb_recv_batch(batch, whole))
            return reads[-1]

        monkeypatch.setattr(dev, "_nb_recv_batch", counted)
        batch = dev.new_batch()

        async def receive(*payloads: bytes, before: bool) -> list[bytes]:
            batch.clear()
            reads.clear()
            if before:
                for p in payloads:
                    udp_send("10.69.0.2", 5000, p)
                assert select.select([dev.fileno()], [], [], 5)[0]
                await dev.recv_batch(batch)
            else:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(dev.recv_batch, batch)
                    await anyio.wait_all_tasks_blocked()
                    for p in payloads:
                        udp_send("10.69.0.2", 5000, p)
            return [udp_payload(bytes(p))[2] for p in batch]  # type: ignore[index]

        with anyio.fail_after(10):
            assert await receive(b"one", before=False) == [b"one"]
            assert await receive(b"two", before=True) == [b"two"]
            assert reads == [1]  # it waited first: the wait returned at once
            assert await receive(b"three", before=False) == [b"three"]
            assert reads == [1]
            time.sleep(0.05)  # noqa: ASYNC251 - both must be queued before the read
            assert await receive(b"four", b"five", before=True) == [b"four", b"five"]
            reads.clear()
            with anyio.move_on_after(0.05):
                await dev.recv_batch(batch)  # not at rest: it reads first
            assert reads[0] == 0


async def _one_packet_then_at_rest(dev: AsyncDevice, batch: PacketBatch, to: str) -> None:
    """A recv_batch waiting when one packet (to ``to``, routed into ``dev``) comes: it returns
    that lone packet, which puts the device at rest (its next receive waits first)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(dev.recv_batch, batch)
        await anyio.wait_all_tasks_blocked()
        udp_send(to, 5000, b"ping")
    assert len(batch) == 1


async def test_a_device_deleted_at_rest_while_nobody_waits_is_noticed(netns: testing.Netns) -> None:
    # After a lone packet the next recv_batch waits before it reads. uvloop reports the
    # deletion (EPOLLERR) only once: if that comes while nobody waits, the next call must read
    # first and find the device gone, not wait for a report that never comes.
    no_ipv6(netns)
    name = testing.unique_name("r")
    async with DeviceBuilder().name(name).ipv4("10.69.1.1", 24).build_async() as dev:
        batch = dev.new_batch()
        with anyio.fail_after(10):
            await _one_packet_then_at_rest(dev, batch, "10.69.1.2")
            await anyio.run_process(netns.cmd("ip", "link", "del", name))  # the loop polls
            await anyio.sleep(0.1)
            batch.clear()
            with pytest.raises(DeviceGoneError):
                await dev.recv_batch(batch)


async def test_a_device_deleted_at_rest_fails_every_later_receive(netns: testing.Netns) -> None:
    # At rest a recv_batch waits before it reads. When the deletion (uvloop's only report of
    # it, EPOLLERR) wakes such a wait, its read raises DeviceGoneError — and so must every
    # later call: the next one used to wait first again, for a report that never comes.
    no_ipv6(netns)
    name = testing.unique_name("r")
    async with DeviceBuilder().name(name).ipv4("10.69.2.1", 24).build_async() as dev:
        batch = dev.new_batch()
        with anyio.fail_after(10):
            await _one_packet_then_at_rest(dev, batch, "10.69.2.2")
            batch.clear()
            caught: list[BaseException] = []

            async def receive() -> None:
                with pytest.raises(DeviceGoneError) as info:
                    await dev.recv_batch(batch)  # waits first, and is woken by the deletion
                caught.append(info.value)

            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                await anyio.wait_all_tasks_blocked()
                await anyio.run_process(netns.cmd("ip", "link", "del", name))
            assert caught
            for _ in range(2):
                with pytest.raises(DeviceGoneError):
                    await dev.recv_batch(batch)
            with pytest.raises(DeviceGoneError):
                await dev.receive()


async def test_readable_notices_a_device_deleted_while_nobody_waits(netns: testing.Netns) -> None:
    # uvloop reports the deletion (EPOLLERR) only once. Right after readable() was woken by a
    # packet that report is passed over when nobody waits: readable() must then return (the
    # read finds the device gone), not wait for ever for a report that never comes.
    no_ipv6(netns)
    name = testing.unique_name("r")
    async with DeviceBuilder().name(name).ipv4("10.69.3.1", 24).build_async() as dev:
        with anyio.fail_after(10):
            udp_send("10.69.3.2", 5000, b"ping")
            await dev.readable()
            assert udp_payload(dev.receive_nowait())[2] == b"ping"  # type: ignore[index]
            netns.run("ip", "link", "del", name)
            await anyio.sleep(0.1)  # the loop polls
            await dev.readable()
            with pytest.raises(DeviceGoneError):
                dev.receive_nowait()
            with pytest.raises(DeviceGoneError):
                await dev.recv_batch()


async def test_writable_notices_a_deleted_device(netns: testing.Netns) -> None:
    # A down link's queue is not writable, and deleting the device wakes only its readers:
    # writable() waited for ever.
    name = testing.unique_name("r")
    async with DeviceBuilder().name(name).ipv4("10.166.1.1", 24).enable(False).build_async() as dev:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(dev.writable)
                await anyio.sleep(0.2)
                await anyio.run_process(netns.cmd("ip", "link", "del", name))
            with pytest.raises(DeviceGoneError):
                await dev.send(ipv4_udp("10.166.1.2", "10.166.1.1", 1, 9, b"x"))


async def test_aclose_as_a_writable_recheck_ends_is_a_closed_device(
    netns: testing.Netns, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wait for writability looks again every WRITE_RECHECK seconds. An aclose() in the
    # event-loop turn that recheck ended found the wait cancelled already and woke nothing:
    # the waiter polled the closed device's fd, -1 — ValueError, not ClosedDeviceError. A
    # recheck at every turn makes that turn come at once (trio: every try; asyncio, uvloop:
    # some in ten).
    import tunflow.device._async

    monkeypatch.setattr(tunflow.device._async, "WRITE_RECHECK", 0)

    async def waiter(dev: AsyncDevice, caught: list[BaseException]) -> None:
        try:
            await dev.writable()
        except Exception as exc:
            caught.append(exc)

    for i in range(30):
        dev = DeviceBuilder().ipv4("10.166.2.1", 24).enable(False).build_async()
        caught: list[BaseException] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter, dev, caught)
                for _ in range(3 + i % 4):
                    await anyio.lowlevel.checkpoint()
                await dev.aclose()
        assert len(caught) == 1 and isinstance(caught[0], ClosedDeviceError), caught


async def test_a_closed_sink_met_in_an_express_step_is_not_called_the_devices(
    netns: testing.Netns, anyio_backend: Any
) -> None:
    """``_express_wait`` (a lane's wait at rest) says "the device was closed" only when it
    was: a closed resource the step met on the way out (the lane's sink) comes out as it is."""
    if anyio_backend[0] == "trio":
        pytest.skip("trio has no reader callbacks: the step is never called")

    def step() -> bool:
        raise anyio.ClosedResourceError("the sink's")

    async with DeviceBuilder().ipv4("10.241.3.1", 24).build_async() as dev:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, udp_send, "10.241.3.2", 9, b"x")
                with pytest.raises(anyio.ClosedResourceError, match="the sink's") as caught:
                    await dev._express_wait(step)
        assert not isinstance(caught.value, ClosedDeviceError)


async def test_a_lone_write_races_no_close_from_another_thread(netns: testing.Netns) -> None:
    # The express path writes a lone packet without holding the fd only where a close from
    # another thread is handed to this loop (the device's reader has it). A device only
    # written to has no such loop: its close in another thread releases the fd at once, and
    # a write past the closed check hit a closed fd (EBADF; ~30 % of tries) — or, had the
    # number been reused meanwhile, another file. Now such a write holds the fd: it finds
    # the device closed, never EBADF.
    import asyncio
    import threading

    no_ipv6(netns)
    packet = ipv4_udp("10.69.3.1", "10.69.3.2", 1, 9, b"x")
    outcomes: dict[str, int] = {}
    deadline = time.monotonic() + 60
    for _ in range(100):
        if time.monotonic() > deadline:
            break
        dev = DeviceBuilder().name(testing.unique_name("w")).ipv4("10.69.3.1", 24).build_async()
        batch = PacketBatch()
        batch.append(packet)

        def close_elsewhere(dev: AsyncDevice = dev) -> None:
            time.sleep(0.002)
            asyncio.run(dev.aclose())

        closer = threading.Thread(target=close_elsewhere)
        closer.start()
        stop = time.monotonic() + 2
        try:
            while time.monotonic() < stop and dev._express_send(batch):
                pass
            outcome = "closed" if dev._closed else "still open"
        except ClosedDeviceError:
            outcome = "closed"
        except OSError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        closer.join(5)
        await dev.aclose()
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert list(outcomes) == ["closed"], outcomes


async def test_link_events_follow_the_link(netns: testing.Netns) -> None:
    # wireguard-go's Events(): the state now, then up/down/MTU changes, then the deletion
    name = testing.unique_name("le")
    async with DeviceBuilder().name(name).ipv4("10.66.0.1", 24).build_async() as dev:
        seen: list[tuple[str, int]] = []
        with anyio.fail_after(30):
            async with await dev.link_events() as events:
                steps = [
                    ("link", "set", name, "down"),
                    ("link", "set", name, "up"),
                    ("link", "set", name, "mtu", "1400"),
                    ("link", "del", name),
                ]
                async for event in events:
                    seen.append((event.kind, event.mtu))
                    if steps:
                        await anyio.run_process(netns.cmd("ip", *steps.pop(0)))
        assert seen == [
            ("up", 1500),
            ("down", 1500),
            ("up", 1500),
            ("mtu", 1400),
            ("down", 1400),  # (a deletion takes a running link down first)
            ("removed", 1400),
        ]


async def test_aclose_ends_a_link_event_iteration(netns: testing.Netns) -> None:
    # a queue of a multi-queue device closes while the interface lives on (another queue
    # holds it): no "removed" comes, and the task iterating its link events waited for ever
    dev = DeviceBuilder().multi_queue().ipv4("10.70.0.1", 24).build_async()
    async with await dev.try_clone() as other:
        events = await dev.link_events()
        seen: list[str] = []

        async def watch() -> None:
            async for event in events:
                seen.append(event.kind)
            seen.append("ended")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                await anyio.sleep(0.2)
                await dev.aclose()
        assert seen == ["up", "ended"]
        assert [event async for event in events] == []  # and stays ended
        assert events._tracker.watch.fileno() == -1  # its socket went with the device
        await events.aclose()
        with pytest.raises(ClosedDeviceError):
            await dev.link_events()
        async with await other.link_events() as events:
            assert (await events.__anext__()).kind == "up"


async def test_a_link_moved_to_another_namespace_is_removed(netns: testing.Netns) -> None:
    # gone from the namespace watched (and configured): the kernel says RTM_DELLINK there
    name = testing.unique_name("lm")
    with testing.netns(enter=False) as other:
        async with DeviceBuilder().name(name).ipv4("10.71.0.1", 24).build_async() as dev:
            events = await dev.link_events()
            with anyio.fail_after(10):
                assert (await events.__anext__()).kind == "up"
                move = netns.cmd("ip", "link", "set", name, "netns", other.name)
                await anyio.run_process(move)
                assert [e.kind async for e in events] == ["down", "removed"]
            await events.aclose()


async def test_the_state_asked_after_dropped_link_events_leaves_the_event_loop_free(
    netns: testing.Netns,
) -> None:
    # after the kernel dropped notifications (ENOBUFS) the state was asked afresh with
    # blocking netlink calls in the event loop's thread: another thread's call on the
    # device's netlink socket (a long dump), or the kernel's rtnl lock, stalled every task
    name = testing.unique_name("lb")
    async with DeviceBuilder().name(name).ipv4("10.72.0.1", 24).build_async() as dev:
        nl = dev._iface()._nl
        async with await dev.link_events() as events:
            with anyio.fail_after(10):
                assert await events.__anext__() == LinkEvent("up", 1500)
            # more changes than the socket holds, none read meanwhile: the kernel drops some
            script = "".join(f"link set {name} mtu {1300 + i}\n" for i in range(600))
            await anyio.run_process(netns.cmd("ip", "-batch", "-"), input=script.encode())
            held, loop_ran = threading.Event(), threading.Event()
            saw: list[bool] = []

            def hold() -> None:  # (another thread's call on the netlink socket, slow)
                with nl._lock:
                    held.set()
                    saw.append(loop_ran.wait(5))

            async def tick() -> None:
                await anyio.sleep(0.1)
                loop_ran.set()

            t = threading.Thread(target=hold)
            t.start()
            try:
                assert await anyio.to_thread.run_sync(held.wait, 10)
                with anyio.fail_after(20):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(tick)
                        event = await events.__anext__()
            finally:
                loop_ran.set()
                t.join(10)
        assert saw == [True], "the event loop stood still while the state was asked"
        assert event == LinkEvent("mtu", 1899)  # (asked afresh: notifications were dropped)


async def test_set_network_address_async(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.67.0.1", 24).ipv4("10.68.0.1", 24).build_async() as dev:
        await dev.set_network_address("10.69.0.1", 24)
        assert [str(a) for a in await dev.addresses() if a.version == 4] == ["10.69.0.1/24"]


async def test_every_receive_counts_exactly_what_it_handed_out(netns: testing.Netns) -> None:
    # (as the sync face's test: a batch appended to counts only its own packets)
    async with DeviceBuilder().ipv4("10.175.0.1", 24).build_async() as dev:
        for i in range(3):
            udp_send("10.175.0.2", 5000, bytes(10 + i))
        with anyio.fail_after(10):
            handed = [len(await dev.receive())]
            handed.append(await dev.recv_into(bytearray(dev.max_size)))
            handed.append(await dev.recv_vectored([bytearray(20), bytearray(dev.max_size)]))
            batch = dev.new_batch()
            for _ in range(2):
                start = len(batch)
                udp_send("10.175.0.2", 5000, bytes(50))
                await dev.recv_batch(batch)
                assert len(batch) > start
                handed += batch.lengths[start:]
        stats = dev.statistics()
        assert (stats.rx_packets, stats.rx_bytes, stats.rx_batches) == (
            len(handed),
            sum(handed),
            2,
        )


async def test_a_task_receiving_refuses_readiness_and_reads_of_another(
    netns: testing.Netns,
) -> None:
    # nothing arrives on a down link: the first task stays in its wait
    async with DeviceBuilder().ipv4("10.176.0.1", 24).enable(False).build_async() as dev:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(dev.receive)
                await anyio.sleep(0.2)
                with pytest.raises(anyio.BusyResourceError):
                    await dev.readable()
                with pytest.raises(anyio.BusyResourceError):
                    await dev.recv_batch()
                with pytest.raises(anyio.BusyResourceError):  # (the refusals left it taken)
                    dev.receive_nowait()
                tg.cancel_scope.cancel()
        with pytest.raises(anyio.WouldBlock):
            dev.receive_nowait()  # free again


async def test_send_nowait_checks_the_packet_as_send_does(netns: testing.Netns) -> None:
    async with DeviceBuilder().ipv4("10.177.0.1", 24).mtu(1400).build_async() as dev:
        with pytest.raises(PacketTooLargeError):
            dev.send_nowait(ipv4_udp("10.177.0.2", "10.177.0.1", 1, 2, bytes(2000)))
        with pytest.raises(MalformedPacketError, match="version nibble"):
            dev.send_nowait(b"\x00\x01\x02\x03")
        dev.send_nowait(ipv4_udp("10.177.0.2", "10.177.0.1", 1, 2, b"x"))
        assert dev.statistics().tx_packets == 1


async def test_a_batch_without_room_after_a_lone_packet_raises_at_once(
    netns: testing.Netns,
) -> None:
    # recv_batch waits first only when the call would not raise at once: a batch without
    # room raises ValueError now, not once a packet arrives
    no_ipv6(netns)
    name = testing.unique_name("s")
    async with DeviceBuilder().name(name).ipv4("10.211.8.1", 24).build_async() as dev:
        drain(dev)
        with anyio.fail_after(10):
            udp_send("10.211.8.2", 5000, b"x")
            batch = await dev.recv_batch()
            assert len(batch) == 1
            full = PacketBatch(max_packets=1)
            full.append(ipv4_udp("10.211.8.2", "10.211.8.1", 1, 9, b"y"))
            with pytest.raises(ValueError, match="no room"):
                await dev.recv_batch(full)  # nothing is queued: a wait would be for ever
