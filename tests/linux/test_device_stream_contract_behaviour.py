"""AsyncDevice as an anyio stream: what anyio's stream contract asks, on the real kernel, on
asyncio, uvloop and trio."""

from __future__ import annotations

import contextlib
import select
from collections.abc import Awaitable, Callable

import anyio
import pytest
from anyio.streams.stapled import StapledObjectStream

from tests.helpers import drain, ipv4_udp, no_ipv6, udp_payload, udp_send
from tests.unit.test_readiness import _on_uvloop
from tunflow import AsyncDevice, DeviceAttribute, DeviceBuilder, DeviceGoneError, testing

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


async def test_readable_after_a_read_found_the_device_gone_returns(netns: testing.Netns) -> None:
    # uvloop reports the deletion (EPOLLERR) once, and libuv then drops its poll of the fd:
    # a readable() after the read that found the device gone waited for ever, while the
    # read it is to be followed by raises DeviceGoneError at once.
    no_ipv6(netns)
    name = testing.unique_name("s")
    async with DeviceBuilder().name(name).ipv4("10.211.0.1", 24).build_async() as dev:
        with anyio.fail_after(10):
            await anyio.run_process(netns.cmd("ip", "link", "del", name))
            for _ in range(2):
                await dev.readable()
                with pytest.raises(DeviceGoneError):
                    dev.receive_nowait()


async def test_a_receiver_woken_by_the_deletion_leaves_readiness_working(
    netns: testing.Netns,
) -> None:
    no_ipv6(netns)
    name = testing.unique_name("s")
    async with DeviceBuilder().name(name).ipv4("10.211.1.1", 24).build_async() as dev:
        drain(dev)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def receive() -> None:
                    with pytest.raises(DeviceGoneError):
                        await dev.receive()  # waits, and is woken by the deletion

                tg.start_soon(receive)
                await anyio.wait_all_tasks_blocked()
                await anyio.run_process(netns.cmd("ip", "link", "del", name))
            await dev.readable()
            await dev.writable()
            with pytest.raises(DeviceGoneError):
                await dev.send(ipv4_udp("10.211.1.2", "10.211.1.1", 1, 9, b"x"))


async def test_writable_after_readable_saw_the_device_gone(netns: testing.Netns) -> None:
    # uvloop: the poll libuv dropped on the deletion stayed filed under the fd, and
    # writable() (anyio.wait_writable) raised RuntimeError("... the handler is closed").
    no_ipv6(netns)
    name = testing.unique_name("s")
    async with DeviceBuilder().name(name).ipv4("10.211.2.1", 24).build_async() as dev:
        with anyio.fail_after(10):
            await anyio.run_process(netns.cmd("ip", "link", "del", name))
            await dev.readable()
            await dev.writable()
            with pytest.raises(DeviceGoneError):
                await dev.send(ipv4_udp("10.211.2.2", "10.211.2.1", 1, 9, b"x"))


def _receivers(dev: AsyncDevice) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "receive": dev.receive,
        "recv_into": lambda: dev.recv_into(bytearray(dev.max_size)),
        "recv_vectored": lambda: dev.recv_vectored([bytearray(20), bytearray(dev.max_size)]),
        "recv_batch": dev.recv_batch,
        "recv_multiple": lambda: dev.recv_multiple([bytearray(dev.max_size)] * 4, [0] * 4),
    }


@pytest.mark.parametrize(
    "how", ["receive", "recv_into", "recv_vectored", "recv_batch", "recv_multiple"]
)
async def test_a_receive_cancelled_with_a_packet_queued_leaves_it_queued(
    netns: testing.Netns, how: str
) -> None:
    # A zero-timeout scope entered with the packet already in the kernel's queue: the call
    # raises the cancellation before it reads, and the packet is the next one read.
    no_ipv6(netns)
    async with DeviceBuilder().ipv4("10.211.3.1", 24).build_async() as dev:
        call = _receivers(dev)[how]
        drain(dev)
        for i in range(20):
            udp_send("10.211.3.2", 5000, bytes([i]))
            assert select.select([dev.fileno()], [], [], 5)[0], "the packet never arrived"
            with anyio.move_on_after(0) as scope:
                await call()
            assert scope.cancelled_caught
            assert select.select([dev.fileno()], [], [], 0)[0], f"packet {i} lost"
            assert udp_payload(dev.receive_nowait())[1:] == (5000, bytes([i]))  # type: ignore[index]


async def test_a_waiting_receive_cancelled_as_its_packet_arrives_loses_nothing(
    netns: testing.Netns,
) -> None:
    # The receiver waits; the packet reaches the kernel's queue and the receiver's scope is
    # cancelled before the loop polls, after it woke the receiver, or after the receiver ran:
    # it either returned the packet or left it queued.
    no_ipv6(netns)
    async with DeviceBuilder().ipv4("10.211.4.1", 24).build_async() as dev:
        drain(dev)
        with anyio.fail_after(60):
            for i in range(50):
                got: list[bytes] = []
                scope = anyio.CancelScope()

                async def receiver(
                    scope: anyio.CancelScope = scope, got: list[bytes] = got
                ) -> None:
                    with scope:
                        got.append(await dev.receive())

                async with anyio.create_task_group() as tg:
                    tg.start_soon(receiver)
                    await anyio.wait_all_tasks_blocked()
                    udp_send("10.211.4.2", 5000, bytes([i]))
                    assert select.select([dev.fileno()], [], [], 5)[0]
                    for _ in range(i % 4):  # the loop polls, wakes the receiver, runs it
                        await anyio.lowlevel.cancel_shielded_checkpoint()
                    scope.cancel()
                if not got:
                    got.append(dev.receive_nowait())
                assert udp_payload(got[0])[1:] == (5000, bytes([i]))  # type: ignore[index]


async def test_stapled_and_pumped_through_a_memory_stream(netns: testing.Netns) -> None:
    # "reachable through stream wrappers": anyio's StapledObjectStream over the device both
    # ways, its attributes through it, and its aclose (the device's, twice) idempotent
    no_ipv6(netns)
    dev = DeviceBuilder().ipv4("10.211.5.1", 24).mtu(1400).build_async()
    # (typed for ObjectStream halves; the device is an UnreliableObjectStream, as a UDP socket)
    stream: StapledObjectStream[bytes] = StapledObjectStream(dev, dev)  # type: ignore[arg-type]
    assert stream.extra(DeviceAttribute.mtu) == 1400
    assert stream.extra(DeviceAttribute.fileno) == dev.fileno()
    drain(dev)
    send, receive = anyio.create_memory_object_stream[bytes](4)

    async def pump() -> None:
        async with send:
            with contextlib.suppress(anyio.ClosedResourceError):
                async for packet in stream:
                    await send.send(packet)

    with anyio.fail_after(10):
        async with receive, anyio.create_task_group() as tg:
            tg.start_soon(pump)
            for i in range(8):
                udp_send("10.211.5.2", 5000, bytes([i]))
            got = [udp_payload(await receive.receive())[2] for _ in range(8)]  # type: ignore[index]
            await stream.send(ipv4_udp("10.211.5.2", "10.211.5.1", 1, 9, b"x"))
            await stream.aclose()
    assert got == [bytes([i]) for i in range(8)]
    assert dev.statistics().tx_packets == 1
    with pytest.raises(anyio.ClosedResourceError):
        await stream.receive()


async def test_every_receiver_that_found_the_device_gone_leaves_readable_working(
    netns: testing.Netns,
) -> None:
    no_ipv6(netns)
    name = testing.unique_name("s")
    async with DeviceBuilder().name(name).ipv4("10.211.6.1", 24).build_async() as dev:
        with anyio.fail_after(10):
            await anyio.run_process(netns.cmd("ip", "link", "del", name))
            # each renews the registration uvloop dropped on the deletion (see
            # test_readable_after_a_read_found_the_device_gone_returns)
            for receive in _receivers(dev).values():
                await dev.readable()
                with pytest.raises(DeviceGoneError):
                    await receive()


async def test_readable_after_a_passed_over_report_waits_once_a_read_found_nothing(
    netns: testing.Netns,
) -> None:
    # uvloop reported the fd to nobody right after a wake (its only report, if of an error):
    # readable() says readable without waiting, and re-arms — once a read found nothing, the
    # next readable() waits again instead of spinning
    if not _on_uvloop():
        pytest.skip("only uvloop passes a report over (selector loops report every turn)")
    no_ipv6(netns)
    name = testing.unique_name("s")
    async with DeviceBuilder().name(name).ipv4("10.211.7.1", 24).build_async() as dev:
        drain(dev)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(dev.recv_batch)
                await anyio.wait_all_tasks_blocked()
                udp_send("10.211.7.2", 5000, b"x")
        dev._reader._ready()  # the loop reports the fd to nobody, right after the wake
        await dev.readable()
        with pytest.raises(anyio.WouldBlock):
            dev.receive_nowait()
        with anyio.move_on_after(0.3) as scope:
            await dev.readable()  # nothing there: this one waits
        assert scope.cancelled_caught


async def test_recv_batch_after_readable_saw_the_deletion_raises(netns: testing.Netns) -> None:
    # what woke readable() is read by the recv_batch that follows, which must not wait first
    # (uvloop reported the deletion once, to that readable())
    no_ipv6(netns)
    name = testing.unique_name("s")
    async with DeviceBuilder().name(name).ipv4("10.211.9.1", 24).build_async() as dev:
        drain(dev)
        with anyio.fail_after(10):
            udp_send("10.211.9.2", 5000, b"x")
            assert len(await dev.recv_batch()) == 1  # a lone packet: the next call waits first
            async with anyio.create_task_group() as tg:
                tg.start_soon(dev.readable)
                await anyio.wait_all_tasks_blocked()
                await anyio.run_process(netns.cmd("ip", "link", "del", name))
            with pytest.raises(DeviceGoneError):
                await dev.recv_batch()


async def test_readable_after_writable_saw_the_device_gone(netns: testing.Netns) -> None:
    # writable() dropped the poll uvloop closed on the deletion: readable() is woken again
    no_ipv6(netns)
    name = testing.unique_name("s")
    async with DeviceBuilder().name(name).ipv4("10.211.10.1", 24).build_async() as dev:
        with anyio.fail_after(10):
            await anyio.run_process(netns.cmd("ip", "link", "del", name))
            await dev.readable()
            await dev.writable()
            await dev.readable()
            with pytest.raises(DeviceGoneError):
                dev.receive_nowait()
