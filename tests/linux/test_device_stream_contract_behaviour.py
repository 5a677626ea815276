"""AsyncDevice as an anyio stream: what anyio's stream contract asks, on the real kernel, on
asyncio, uvloop and trio."""

from __future__ import annotations

import anyio
import pytest

from tests.helpers import ipv4_udp, no_ipv6
from tunflow import AsyncDevice, DeviceBuilder, DeviceGoneError, testing

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


def _drain(dev: AsyncDevice) -> None:
    while True:
        try:
            dev.receive_nowait()
        except anyio.WouldBlock:
            return


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
        _drain(dev)
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
