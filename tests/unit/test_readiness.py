"""ReadWaiter: one registration across waits, woken by data or by close, on every backend."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import anyio
import pytest

from tests.helpers import assert_a_new_socket_is_waited_on
from tunflow._readiness import ReadWaiter

pytestmark = pytest.mark.anyio


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


async def test_wakes_on_data_many_times(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    got = []
    with anyio.fail_after(10):
        for i in range(50):
            a.send(bytes([i]))
            await waiter.wait()
            got.append(b.recv(10))
    assert got == [bytes([i]) for i in range(50)]
    waiter.close()


async def test_data_while_nobody_waits_does_not_spin(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    a.send(b"1")
    await waiter.wait()
    # the datagram is left unread and nobody waits: the loop must keep running other tasks
    ticks = 0
    with anyio.move_on_after(0.2):
        while True:
            ticks += 1
            await anyio.sleep(0.01)
    assert ticks >= 5
    await waiter.wait()  # still readable: returns at once
    assert b.recv(10) == b"1"
    waiter.close()


async def test_close_wakes_a_waiter_and_later_waits(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, b = pair
    waiter = ReadWaiter(b.fileno())
    caught: list[BaseException] = []

    async def wait() -> None:
        try:
            await waiter.wait()
        except anyio.ClosedResourceError as exc:
            caught.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            waiter.close()
            anyio.notify_closing(b)  # what the device does too (trio's wait is anyio's)
    assert len(caught) == 1
    with pytest.raises(anyio.ClosedResourceError):
        await waiter.wait()
    waiter.close()  # idempotent


async def test_one_waiter_at_a_time(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    errors: list[BaseException] = []

    async def second() -> None:
        try:
            await waiter.wait()
        except anyio.BusyResourceError as exc:
            errors.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter.wait)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            a.send(b"x")
    assert len(errors) == 1
    waiter.close()


async def test_cancelled_wait_leaves_it_usable(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    with anyio.move_on_after(0.05) as scope:
        await waiter.wait()
    assert scope.cancelled_caught
    a.send(b"y")
    with anyio.fail_after(10):
        await waiter.wait()
    assert b.recv(10) == b"y"
    waiter.close()


def test_survives_a_new_event_loop() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    waiter = ReadWaiter(b.fileno())

    async def once(data: bytes) -> bytes:
        a.send(data)
        with anyio.fail_after(10):
            await waiter.wait()
        return b.recv(10)

    try:
        assert anyio.run(once, b"first") == b"first"
        assert anyio.run(once, b"second") == b"second"  # registered again in the new loop
    finally:
        waiter.close()
        a.close()
        b.close()


async def test_no_wake_ups_without_data(pair: tuple[socket.socket, socket.socket]) -> None:
    # data trickles in from another thread while the task reads after every wake: each wake
    # must find data (a callback the loop queued before the read must not wake the next wait)
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    received = spurious = 0

    def trickle() -> None:
        for _ in range(100):
            a.send(b"x")
            time.sleep(0.001)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, trickle)
            while received < 100:
                await waiter.wait()
                got = 0
                with contextlib.suppress(BlockingIOError):
                    while True:
                        b.recv(10)
                        got += 1
                received += got
                spurious += not got
    waiter.close()
    assert spurious == 0


async def test_a_second_waiter_is_refused_until_the_first_resumed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter.wait)
            await anyio.wait_all_tasks_blocked()
            a.send(b"x")
            waiter._ready()  # the loop calls back; the first waiter has not resumed yet
            with pytest.raises(anyio.BusyResourceError):
                await waiter.wait()
    waiter.close()


async def test_close_from_another_thread_closes_the_fd_on_the_loop(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    a.send(b"1")
    with anyio.fail_after(10):
        await waiter.wait()
    assert b.recv(10) == b"1"
    # a finalizer in another thread: the fd must outlive the loop's registration
    await anyio.to_thread.run_sync(waiter.close, b.close)
    with anyio.fail_after(10):
        while b.fileno() != -1:  # noqa: ASYNC110 - polling a plain socket's state, no event
            await anyio.sleep(0.001)
    # a new socket that may well get the old number is waited on normally
    await assert_a_new_socket_is_waited_on()


def _on_uvloop() -> bool:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return type(loop).__module__.startswith("uvloop")


async def test_a_report_passed_over_while_nobody_waits_disarms_until_the_next_wait(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # ``armed`` tells a caller whether it may wait instead of reading first: not after uvloop
    # reported the fd to nobody and the report was passed over (it may have been its only
    # report of an error); a wait, which follows a read, arms it again
    if not _on_uvloop():
        pytest.skip("selector loops report the fd on every turn, trio's waits start afresh")
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    assert waiter.armed
    a.send(b"1")
    with anyio.fail_after(10):
        await waiter.wait()
        assert b.recv(10) == b"1"
        waiter._ready()  # the loop reports the fd again before anyone waits: passed over
        assert not waiter.armed
        a.send(b"2")
        await waiter.wait()
    assert waiter.armed
    assert b.recv(10) == b"2"
    waiter.close()


async def test_renewed_after_an_error_the_fd_reported() -> None:
    # A connected UDP socket reports an ICMP error (EPOLLERR) until a read or send takes it;
    # uvloop stops polling it then, for good. The owner renews the registration when it meets
    # the error: after a read that took it (nobody waits), or a send (while a task waits).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        where = probe.getsockname()  # closed: ICMP port unreachable
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.connect(where)
        s.setblocking(False)
        waiter = ReadWaiter(s.fileno())
        with anyio.fail_after(10):
            # taken by the read after a wake
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter.wait)
                await anyio.wait_all_tasks_blocked()
                s.send(b"into the void")
            with pytest.raises(ConnectionRefusedError):
                s.recv(100)
            waiter.renew()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.bind(where)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiter.wait)
                    await anyio.wait_all_tasks_blocked()
                    peer.sendto(b"1", s.getsockname())
                assert s.recv(100) == b"1"
            # taken by a send while a task waits (reported to nobody, right after a wake)
            s.send(b"into the void")
            await anyio.sleep(0.1)  # the loop polls the socket meanwhile
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.bind(where)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiter.wait)
                    await anyio.wait_all_tasks_blocked()
                    with pytest.raises(ConnectionRefusedError):
                        s.send(b"2")
                    waiter.renew()
                    peer.sendto(b"3", s.getsockname())
                assert s.recv(100) == b"3"
        waiter.close()


# -- serve: work done in the reader callback, the task asleep -----------------------------------


def _on_trio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return True
    return False


async def test_serve_steps_in_the_callback_until_the_step_wants_the_task(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    assert not waiter.serves  # nothing waited yet
    got: list[bytes] = []
    resumed: list[int] = []

    def step() -> bool:
        data = b.recv(10)
        got.append(data)
        return data != b"stop"  # True: handled, the task sleeps on

    async def feed() -> None:
        for i in range(5):
            a.send(bytes([i]))
            await anyio.sleep(0.02)
        a.send(b"stop")

    with anyio.fail_after(10):
        a.send(b"first")
        await waiter.wait()  # on asyncio this registers the fd: from now on serve steps
        assert b.recv(10) == b"first"
        assert waiter.serves is not _on_trio()
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            await waiter.serve(step)
            resumed.append(len(got))
            if _on_trio():
                # no callbacks there: serve is a wait, and the caller reads
                assert got == []
                while b.recv(10) != b"stop":
                    await waiter.wait()
            tg.cancel_scope.cancel()
    if not _on_trio():
        # six datagrams, six steps, and the task resumed once: after the one it was wanted for
        assert got == [bytes([i]) for i in range(5)] + [b"stop"]
        assert resumed == [6]
    waiter.close()


async def test_serve_raises_what_the_step_raised_and_stays_usable(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    if _on_trio():
        pytest.skip("trio has no reader callbacks: serve never steps")
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    a.send(b"x")
    await waiter.wait()
    b.recv(10)

    def step() -> bool:
        b.recv(10)
        raise ValueError("bad packet")

    with anyio.fail_after(10):
        a.send(b"y")
        with pytest.raises(ValueError, match="bad packet"):
            await waiter.serve(step)
        # the step is gone: a plain wait is woken as usual
        a.send(b"z")
        await waiter.wait()
        assert b.recv(10) == b"z"
    waiter.close()


async def test_a_cancelled_serve_no_longer_steps(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    waiter = ReadWaiter(b.fileno())
    a.send(b"x")
    await waiter.wait()
    b.recv(10)
    steps = 0

    def step() -> bool:
        nonlocal steps
        steps += 1
        return True

    with anyio.move_on_after(0.1):
        await waiter.serve(step)
    a.send(b"after")
    with anyio.fail_after(10):
        await waiter.wait()
    assert steps == 0
    assert b.recv(10) == b"after"
    waiter.close()


async def test_close_wakes_a_serving_task(pair: tuple[socket.socket, socket.socket]) -> None:
    _, b = pair
    waiter = ReadWaiter(b.fileno())
    caught: list[BaseException] = []

    async def serve() -> None:
        try:
            await waiter.serve(lambda: True)
        except anyio.ClosedResourceError as exc:
            caught.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            await anyio.wait_all_tasks_blocked()
            waiter.close()
            anyio.notify_closing(b)
    assert len(caught) == 1
