"""ReadWaiter's documented promises that tests/unit/test_readiness.py does not pin: no spinning
on data nobody waits for, one registration across waits, a cancelled serve steps no more, and a
close from another thread handed to the loop."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tests.unit.test_readiness import _on_trio, _on_uvloop
from tunflow._readiness import ReadWaiter

pytestmark = pytest.mark.anyio


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


class CountingWaiter(ReadWaiter):
    """Counts the loop's reader callbacks."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self.calls = 0

    def _ready(self) -> None:
        self.calls += 1
        super()._ready()


async def test_data_nobody_waits_for_stops_the_callbacks(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # "a callback with nobody waiting unregisters the fd, so a level-triggered loop does not
    # spin": a datagram left unread costs a callback or two, not one every loop turn
    a, b = pair
    waiter = CountingWaiter(b.fileno())
    a.send(b"1")
    with anyio.fail_after(10):
        await waiter.wait()
    for _ in range(20):  # many loop turns with the datagram still unread
        await anyio.sleep(0.005)
    assert waiter.calls <= 4
    assert b.recv(10) == b"1"
    waiter.close()


async def test_the_fd_is_registered_once_across_waits(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the point of the class: the fd stays registered between waits that read what woke them
    if _on_trio() or _on_uvloop():
        pytest.skip("a selector loop's add_reader is the one that can be counted")
    loop = asyncio.get_running_loop()
    added: list[int] = []
    real = loop.add_reader

    def add_reader(fd: int, callback: Any, *args: Any) -> None:
        added.append(fd)
        real(fd, callback, *args)

    monkeypatch.setattr(loop, "add_reader", add_reader)
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    with anyio.fail_after(10):
        for i in range(20):
            a.send(bytes([i]))
            await waiter.wait()
            assert b.recv(10) == bytes([i])
    assert added == [b.fileno()]
    waiter.close()


async def test_a_cancelled_serve_steps_no_more(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # the step runs "each time the fd is readable meanwhile": not for a callback the loop
    # polled after the serve was cancelled but before its task saw the cancellation
    if _on_trio():
        pytest.skip("trio has no reader callbacks: serve never steps")
    _, b = pair
    waiter = ReadWaiter(b.fileno())
    steps: list[int] = []

    def step() -> bool:
        steps.append(1)
        return True

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter.serve, step)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
            waiter._ready()  # the loop's callback, run before the cancelled task resumes
    assert steps == []
    waiter.close()


async def test_a_close_from_another_thread_is_handed_to_the_loop(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # "from another thread (a finalizer) both happen on the loop's thread, so the loop never
    # unregisters a new fd that reused the number"
    if _on_trio():
        pytest.skip("trio's waits register nothing between them")
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    ran_in: list[int] = []
    with anyio.fail_after(10):
        a.send(b"x")
        await waiter.wait()
        assert waiter.serves
        await anyio.to_thread.run_sync(
            lambda: waiter.close(then=lambda: ran_in.append(threading.get_ident()))
        )
        while not ran_in:  # noqa: ASYNC110 - a callback the loop runs, no event to wait on
            await anyio.sleep(0.001)
    assert ran_in == [threading.get_ident()]
    # closed: serve would neither step nor wait
    assert not waiter.serves
    with pytest.raises(anyio.ClosedResourceError):
        await waiter.serve(lambda: True)


async def test_a_serve_refused_as_busy_leaves_the_serving_tasks_step(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # "one task at a time": a second serve raises BusyResourceError and changes nothing — the
    # first goes on calling its step without waking
    if _on_trio():
        pytest.skip("trio has no reader callbacks: serve never steps")
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    a.send(b"0")
    with anyio.fail_after(10):
        await waiter.wait()
    assert b.recv(10) == b"0"
    steps: list[bytes] = []

    def step() -> bool:
        steps.append(b.recv(10))
        return True

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter.serve, step)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BusyResourceError):
                await waiter.serve(lambda: False)
            a.send(b"1")
            while not steps:  # noqa: ASYNC110 - a callback the loop runs, no event to wait on
                await anyio.sleep(0.001)
            tg.cancel_scope.cancel()
    assert steps == [b"1"]
    waiter.close()


async def test_a_wait_that_could_not_register_the_fd_leaves_close_nothing_to_fail(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # a wait whose add_reader raised (a bad fd) raises that and waits on nothing: a close after
    # it must not set ClosedResourceError on a future nobody awaits ("Future exception was
    # never retrieved", reported by the loop)
    if _on_trio():
        pytest.skip("trio's waits register nothing between them")
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    _, b = pair
    fd = os.dup(b.fileno())
    waiter = ReadWaiter(fd)
    os.close(fd)
    with pytest.raises((OSError, ValueError)):
        await waiter.wait()
    waiter.close()
    gc.collect()
    assert reported == []


async def test_a_cancelled_wait_is_no_wake(pair: tuple[socket.socket, socket.socket]) -> None:
    # ``armed`` turns False only for a report passed over right after a wake: data coming
    # after a cancelled wait, with nobody waiting, is not that
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    with anyio.move_on_after(0.05):
        await waiter.wait()
    a.send(b"x")
    for _ in range(10):  # loop turns with the datagram unread and nobody waiting
        await anyio.sleep(0.005)
    assert waiter.armed
    with anyio.fail_after(10):
        await waiter.wait()
    assert b.recv(10) == b"x"
    waiter.close()


async def test_a_close_in_the_turn_a_wait_was_cancelled_raises_nothing(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # the waiting task is cancelled and the waiter closed before that task resumes: the close
    # succeeds and the task ends cancelled
    _, b = pair
    waiter = ReadWaiter(b.fileno())
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter.wait)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
            waiter.close()
            anyio.notify_closing(b)


async def test_a_close_in_the_loops_thread_happens_now(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # "In the loop's thread all of it happens now"
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    a.send(b"x")
    with anyio.fail_after(10):
        await waiter.wait()
    ran: list[int] = []
    waiter.close(then=lambda: ran.append(1))
    assert ran == [1]


def test_a_close_handed_to_a_loop_that_closed_meanwhile_still_calls_then() -> None:
    # from another thread, the loop running when looked at and closed before the hand-over:
    # nothing is registered any more, and the fd is closed all the same
    class Closing:
        def is_closed(self) -> bool:
            return False

        def is_running(self) -> bool:
            return True

        def call_soon_threadsafe(self, callback: Any) -> None:
            raise RuntimeError("Event loop is closed")

    waiter = ReadWaiter(-1)
    waiter._loop = Closing()  # type: ignore[assignment]
    ran: list[int] = []
    waiter.close(then=lambda: ran.append(1))
    assert ran == [1]
    assert not waiter.serves
