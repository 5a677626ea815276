"""AsyncLinkEvents with two tasks at once: the second is refused, the first goes on."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import anyio
import pytest

from tests.unit.test_link_events import UP_RUNNING, Iface, Link, Watch
from tunflow import LinkEvent
from tunflow.device._links import AsyncLinkEvents, open_tracker

pytestmark = pytest.mark.anyio


class SocketWatch(Watch):
    """A scripted watch readable when its socket pair's other end has written."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel, self.sock = socket.socketpair()

    def changes(self) -> list[object]:
        self.sock.recv(64)
        return super().changes()

    def fileno(self) -> int:
        return -1 if self.closed else self.sock.fileno()


@pytest.fixture
def watch() -> Iterator[SocketWatch]:
    w = SocketWatch()
    yield w
    w.kernel.close()
    w.sock.close()


def _events(watch: SocketWatch, iface: Iface | None = None) -> AsyncLinkEvents:
    iface = iface or Iface()
    iface.watch = watch
    events = AsyncLinkEvents(open_tracker(iface))
    events._tracker.pending.clear()  # (the state as the watch began)
    return events


async def test_a_second_task_waiting_for_an_event_is_busy(watch: SocketWatch) -> None:
    events = _events(watch)
    got: list[LinkEvent] = []

    async def first() -> None:
        got.append(await events.__anext__())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BusyResourceError):
                await events.__anext__()
            watch.script = [[Link(0, 1500)]]
            watch.kernel.send(b"x")
    assert got == [LinkEvent("down", 1500)]
    await events.aclose()


async def test_a_second_task_while_the_state_is_asked_afresh_is_busy(
    watch: SocketWatch,
) -> None:
    # after notifications the kernel dropped, the state is asked in a worker thread
    asking, answer = threading.Event(), threading.Event()

    class SlowIface(Iface):
        def is_running(self) -> bool:
            if self.watch.script == [] and self.mtu_now == 1280:
                asking.set()
                answer.wait(5)
            return self.running

    iface = SlowIface()
    events = _events(watch, iface)
    iface.running, iface.mtu_now = False, 1280
    got: list[LinkEvent] = []

    async def first() -> None:
        got.append(await events.__anext__())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            watch.script = [[None]]  # dropped notifications
            watch.kernel.send(b"x")
            tg.start_soon(first)
            await anyio.to_thread.run_sync(asking.wait, 5)
            with pytest.raises(anyio.BusyResourceError):
                await events.__anext__()
            answer.set()
    assert got == [LinkEvent("down", 1280)]
    assert await events.__anext__() == LinkEvent("mtu", 1280)
    await events.aclose()


async def test_a_refused_second_task_leaves_the_first_watching(watch: SocketWatch) -> None:
    events = _events(watch)
    send, receive = anyio.create_memory_object_stream[LinkEvent](10)

    async def first() -> None:
        async with send:
            async for event in events:
                await send.send(event)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, receive:
            tg.start_soon(first)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BusyResourceError):
                await events.__anext__()
            for flags, kind in ((0, "down"), (UP_RUNNING, "up")):
                watch.script = [[Link(flags, 1500)]]
                watch.kernel.send(b"x")
                assert await receive.receive() == LinkEvent(kind, 1500)  # type: ignore[arg-type]
            watch.removed = True
            watch.kernel.send(b"x")
            assert [e async for e in receive] == [LinkEvent("removed", 1500)]
