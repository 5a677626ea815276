"""FdQueue on plain fds (socket pairs stand in for a device): framing-independent behaviour."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import select
import socket
import threading
from collections.abc import Callable, Iterator

import anyio
import pytest

from tunflow import (
    AsyncDevice,
    ClosedDeviceError,
    DeviceError,
    DeviceGoneError,
    Layer,
    PacketBatch,
    PacketTooLargeError,
)
from tunflow.device._core import SharedInterface
from tunflow.platform import _unix
from tunflow.platform._unix import FdQueue


@pytest.mark.parametrize("af_header", [False, True])
def test_nothing_to_read_is_would_block_not_an_error(
    pair: tuple[socket.socket, socket.socket], af_header: bool
) -> None:
    _, b = pair
    q = FdQueue(b.fileno(), close_fd=False, af_header=af_header)
    with pytest.raises(BlockingIOError):
        q.recv_into(memoryview(bytearray(2048)))
    with pytest.raises(BlockingIOError):
        q.recv(2048)
    assert q.recv_batch(PacketBatch(), 2048) == 0
    q.close()


@pytest.mark.parametrize(("af_header", "vnet_hdr"), [(False, False), (True, False), (False, True)])
def test_a_full_queue_is_would_block_not_an_error(
    pair: tuple[socket.socket, socket.socket], af_header: bool, vnet_hdr: bool
) -> None:
    a, _ = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    q = FdQueue(a.fileno(), close_fd=False, af_header=af_header, vnet_hdr=vnet_hdr)
    packet = b"\x45" + bytes(999)
    with pytest.raises(BlockingIOError):
        for _ in range(10_000):
            q.send(packet)
    q.close()


def test_header_removed_on_read_and_added_on_write(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    q = FdQueue(b.fileno(), close_fd=False, af_header=True, af_inet=2, af_inet6=30)
    a.send(b"\x00\x00\x00\x02" + b"\x45" + bytes(19))
    assert q.recv(100) == b"\x45" + bytes(19)
    q.send(b"\x60" + bytes(39))
    assert a.recv(100) == b"\x00\x00\x00\x1e" + b"\x60" + bytes(39)
    q.close()


def test_close_waits_for_the_operation_using_the_fd(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, b = pair
    fd = os.dup(b.fileno())
    q = FdQueue(fd)
    held = q._enter()  # an operation in another thread, mid-way
    q.close()
    assert q.closed and q.fileno() == -1
    os.fstat(held)  # still ours: nobody else can be handed this number yet
    with pytest.raises(ClosedDeviceError):
        q.recv(100)
    q._leave()  # the last user releases it
    with pytest.raises(OSError) as info:
        os.fstat(held)
    assert info.value.errno == errno.EBADF


@pytest.mark.parametrize("af_header", [False, True])
def test_a_batch_read_cut_short_is_dropped_and_counted(
    pair: tuple[socket.socket, socket.socket], af_header: bool
) -> None:
    # A packet larger than the room left (the MTU raised behind our back) comes out of the
    # read cut to that room; it must be dropped, not handed out as a packet.
    a, b = pair
    q = FdQueue(b.fileno(), close_fd=False, af_header=af_header)
    header = b"\x00\x00\x00\x02" if af_header else b""
    a.send(header + b"\x45" + bytes(4999))
    a.send(header + b"\x45" + bytes(99))
    batch = PacketBatch(capacity=3000, max_packets=8)
    assert q.recv_batch(batch, 1400) == 1
    assert batch.to_list() == [b"\x45" + bytes(99)]
    assert q.rx_truncated == 1
    q.close()


def test_kernel_refusal_of_one_packet_is_raw_in_batches(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _ = pair
    q = FdQueue(a.fileno(), close_fd=False)
    batch = PacketBatch(capacity=1 << 20)
    batch.append(bytes(300_000))  # larger than a unix datagram may be: EMSGSIZE
    with pytest.raises(OSError) as info:
        q.send_batch(batch)
    assert info.value.errno == errno.EMSGSIZE  # raw: the device face skips and counts it
    q.close()


def _narrow_device(sock: socket.socket) -> AsyncDevice:
    """An async device over ``sock`` with a 4 KiB send buffer: a batch of a few packets fills it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return AsyncDevice(
        SharedInterface(None, Layer.L3, False), FdQueue(sock.fileno(), close_fd=False)
    )


@pytest.mark.anyio
async def test_two_tasks_sending_batches_are_refused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _ = pair
    dev = _narrow_device(a)
    batch = PacketBatch(capacity=1 << 20)
    for _ in range(100):
        batch.append(b"\x45" + bytes(999))  # more than the socket takes: the first send waits
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dev.send_batch, batch)
            await anyio.sleep(0.1)
            with pytest.raises(anyio.BusyResourceError):
                await dev.send_batch(batch)
            tg.cancel_scope.cancel()
    await dev.aclose()


@pytest.mark.anyio
async def test_a_batch_bigger_than_the_queue_is_written_whole_as_room_comes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # what the queue takes at once is written before anything waits; the rest waits for room
    # (the reader below makes it) and goes out in order, nothing lost or repeated
    a, b = pair
    dev = _narrow_device(a)
    batch = PacketBatch(capacity=1 << 20)
    sent = [b"\x45" + i.to_bytes(2, "big") + bytes(997) for i in range(100)]
    for p in sent:
        batch.append(p)
    got: list[bytes] = []

    async def read() -> None:
        b.setblocking(False)
        while len(got) < len(sent):
            try:
                got.append(b.recv(2048))
            except BlockingIOError:
                await anyio.wait_readable(b)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            assert await dev.send_batch(batch) == 100
        lone = PacketBatch()
        lone.append(b"\x45" + bytes(99))
        assert await dev.send_batch(lone) == 1
        assert b.recv(2048) == lone.to_list()[0]
    assert got == sent
    assert (dev.statistics().tx_packets, dev.statistics().tx_batches) == (101, 2)
    await dev.aclose()


@pytest.mark.parametrize(("af_header", "vnet_hdr"), [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("kind", ["seqpacket", "pipe"])
def test_the_end_of_an_adopted_fd_is_the_device_gone(
    kind: str, af_header: bool, vnet_hdr: bool
) -> None:
    # a read of 0 bytes (never from a TUN device): recv returned b"" for ever, recv_batch a
    # batch of empty "packets" (with a header to read, it spun); send already said gone
    if kind == "pipe":
        r, w = os.pipe()
        os.close(w)
    else:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        r = a.detach()
        b.close()
    q = FdQueue(r, af_header=af_header, vnet_hdr=vnet_hdr)
    try:
        with pytest.raises(DeviceGoneError, match="end of file"):
            q.recv(2048)
        with pytest.raises(DeviceGoneError, match="end of file"):
            q.recv_batch(PacketBatch(), 2048)
        with pytest.raises(DeviceGoneError, match="end of file"):  # (returned 0 for ever)
            q.recv_into(memoryview(bytearray(2048)))
    finally:
        q.close()


def test_an_empty_datagram_is_skipped_not_the_end(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    q = FdQueue(b.fileno(), close_fd=False)
    a.send(b"")
    a.send(b"\x45" + bytes(19))
    batch = PacketBatch()
    assert q.recv_batch(batch, 2048) == 1 and batch.lengths == [20]
    q.close()


def test_an_fd_closed_or_read_only_outside_tunflow_is_not_called_closed() -> None:
    # EBADF from the system call itself (tunflow's own close waits for every user of the fd):
    # it was "the device is closed" for an open device, and close() raised a bare OSError
    r, w = os.pipe()
    q = FdQueue(r)  # read-only: a write is refused
    with pytest.raises(DeviceError, match="not open for writing") as info:
        q.send(b"\x45" + bytes(19))
    assert info.value.errno == errno.EBADF and not isinstance(info.value, ClosedDeviceError)
    os.close(r)  # closed behind tunflow's back
    q.close()  # nothing left to close: no error
    os.close(w)


def _lone_case(rng: random.Random, vnet_hdr: bool) -> list[bytes]:
    """Datagrams as a device's fd may hand them out: packets (with a virtio header), and
    now and then an empty one, one shorter than the header, one too long for the room."""
    hdr = 10 if vnet_hdr else 0
    out = []
    for _ in range(rng.randint(0, 5)):
        kind = rng.random()
        if kind < 0.1:
            out.append(b"")
        elif kind < 0.2 and vnet_hdr:
            out.append(bytes(rng.randint(1, hdr - 1)))
        elif kind < 0.3 and not any(len(d) > 65_000 for d in out):
            # more than a read is offered (one a case: a unix socket's queue holds ~200 KB)
            out.append(bytes([rng.randrange(256)]) * 66_000)
        else:
            n = rng.randint(0, 1500)
            out.append(rng.randbytes(hdr) + b"\x45" + rng.randbytes(n))
    return out


@pytest.fixture
def pairs(request: pytest.FixtureRequest) -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Two socket pairs (datagram ones unless parametrized): one for the lone paths, one for
    the batch paths."""
    kind = getattr(request, "param", socket.SOCK_DGRAM)
    made = [socket.socketpair(socket.AF_UNIX, kind) for _ in range(2)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def _read_outcome(read: Callable[[], int]) -> int | str:
    try:
        return read()
    except DeviceGoneError as exc:  # (a seqpacket fd's empty message is its end)
        return f"gone: {exc}"


@pytest.mark.parametrize(
    "pairs", [socket.SOCK_DGRAM, socket.SOCK_SEQPACKET], indirect=True, ids=["dgram", "seqpacket"]
)
@pytest.mark.parametrize("vnet_hdr", [False, True])
def test_recv_lone_reads_what_recv_batch_reads(
    pairs: list[tuple[socket.socket, socket.socket]], vnet_hdr: bool
) -> None:
    # the express path's read at rest against the batch read: same packets (headers
    # included), same batches, same drops, for datagrams of every awkward kind
    rng = random.Random(7)
    lone, plain = (FdQueue(p[1].fileno(), close_fd=False, vnet_hdr=vnet_hdr) for p in pairs)
    for _ in range(300):
        case = _lone_case(rng, vnet_hdr)
        for a, _ in pairs:
            for d in case:
                a.send(d)
        got = []
        most = rng.choice([1, 2, 64])
        for q, read in ((lone, lone.recv_lone), (plain, plain.recv_batch)):
            batch = PacketBatch(capacity=1 << 18, max_packets=most)
            n = _read_outcome(lambda: read(batch, 1500))  # noqa: B023 - called at once
            head = [bytes(batch.view[off - 10 : off]) if vnet_hdr else b"" for off in batch.offsets]
            rest: list[int | str] = []
            while True:  # (a one-packet batch leaves the rest for later calls)
                more = PacketBatch(capacity=1 << 18)
                got_more = _read_outcome(lambda: q.recv_batch(more, 1500))  # noqa: B023
                if not got_more:
                    break
                rest.append(got_more)
            got.append((n, batch.to_list(), head, batch.vnet_hdr, rest, q.rx_truncated))
        assert got[0] == got[1], case
    lone.close()
    plain.close()


@pytest.mark.parametrize(("vnet_hdr", "with_header"), [(False, False), (True, False), (True, True)])
def test_send_lone_writes_what_send_batch_writes(
    pairs: list[tuple[socket.socket, socket.socket]], vnet_hdr: bool, with_header: bool
) -> None:
    lone, plain = (FdQueue(p[0].fileno(), close_fd=False, vnet_hdr=vnet_hdr) for p in pairs)
    writes = (lone.send_lone, lambda b: plain.send_batch(b, 0))
    for write in writes:
        batch = PacketBatch()
        batch.append(b"\x45" + bytes(99))
        if with_header:
            batch.vnet_hdr = True
            batch.buffer[batch.offsets[0] - 10 : batch.offsets[0]] = bytes(range(1, 11))
        else:
            batch.buffer[: batch.offsets[0]] = b"\xff" * batch.offsets[0]  # stale bytes
        assert write(batch) == 1
        assert batch.vnet_hdr == vnet_hdr or with_header
    assert pairs[0][1].recv(2000) == pairs[1][1].recv(2000)
    # refused (larger than a unix datagram may be): raw, for the face to skip and count
    big = PacketBatch(capacity=1 << 20)
    big.append(bytes(300_000))
    for write in writes:
        with pytest.raises(OSError) as info:
            write(big)
        assert info.value.errno == errno.EMSGSIZE
    # full: would block, as send_batch says it
    for a, _ in pairs:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    small = PacketBatch()
    small.append(b"\x45" + bytes(999))
    for write in writes:
        with pytest.raises(BlockingIOError):
            for _ in range(10_000):
                write(small)
    lone.close()
    plain.close()


def test_the_lone_paths_of_a_closed_or_framed_queue_are_the_batch_paths(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    framed = FdQueue(b.fileno(), close_fd=False, af_header=True)
    a.send(b"\x00\x00\x00\x02" + b"\x45" + bytes(19))
    batch = PacketBatch()
    assert framed.recv_lone(batch, 1500) == 1
    assert batch.to_list() == [b"\x45" + bytes(19)]
    assert framed.send_lone(batch) == 1
    assert a.recv(100) == b"\x00\x00\x00\x02" + b"\x45" + bytes(19)
    framed.close()
    with pytest.raises(ClosedDeviceError):
        framed.recv_lone(PacketBatch(), 1500)
    with pytest.raises(ClosedDeviceError):
        framed.send_lone(batch)


def test_a_wait_longer_than_poll_takes_is_made_in_pieces(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    # poll() takes an int of milliseconds (24.8 days at most): a longer timeout is waited in
    # pieces of that, here made 20 ms, until it has passed or the fd is ready
    import threading
    import time

    from tunflow.platform import _unix

    monkeypatch.setattr(_unix, "_MAX_POLL_MS", 20)
    a, b = pair
    start = time.monotonic()
    assert not _unix.poll_wait(b.fileno(), _unix._POLLIN, 0.2, None)
    assert time.monotonic() - start >= 0.19
    timer = threading.Timer(0.1, a.send, (b"x",))
    timer.start()
    try:
        assert _unix.poll_wait(b.fileno(), _unix._POLLIN, 30.0, None)
    finally:
        timer.cancel()


def _reuse(number: int, source: int) -> list[int]:
    """Dups of ``source`` until one has ``number`` (the lowest free fd is handed out first):
    ``number`` is then another file, as when another thread opens one. Closes the rest."""
    dups: list[int] = []
    while len(dups) < 64:
        fd = os.dup(source)
        dups.append(fd)
        if fd >= number:
            break
    for fd in dups:
        if fd != number:
            os.close(fd)
    return [number] if number in dups else []


def test_a_wake_racing_close_never_writes_to_a_reused_fd(monkeypatch: pytest.MonkeyPatch) -> None:
    # SyncDevice.shutdown() in one thread past PipeWaker.wake()'s checks, about to write, while
    # another closes the device (its waker) and a third opens a file that gets the pipe's
    # number: the wake-up byte went into that file (or os.write(-1): EBADF out of shutdown())
    import threading

    from tunflow.platform import _unix

    waker = _unix.PipeWaker()
    number = waker._w
    real_write = os.write
    writing, closed = threading.Event(), threading.Event()

    def write(fd: int, data: bytes) -> int:
        if threading.current_thread() is not threading.main_thread():
            writing.set()
            closed.wait(1)  # (a waker that holds close() off until the write is done: 1 s)
        return real_write(fd, data)

    monkeypatch.setattr(_unix.os, "write", write)
    errors: list[BaseException] = []

    def wake() -> None:
        try:
            waker.wake()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=wake)
    t.start()
    other_r, other_w = os.pipe()
    reused: list[int] = []
    try:
        assert writing.wait(10)
        closer = threading.Thread(target=waker.close)
        closer.start()
        closer.join(0.2)
        if not closer.is_alive():
            reused = _reuse(number, other_w)
        closed.set()
        t.join(10)
        closer.join(10)
        assert not errors, errors
        assert select.select([other_r], [], [], 0)[0] == [], "the wake-up went to another file"
        assert waker.fileno() == -1
    finally:
        closed.set()
        for fd in (other_r, other_w, *reused):
            os.close(fd)


def test_a_wait_on_a_waker_closed_under_it_polls_its_pipe_not_a_reused_fd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SyncDevice.close() in one thread while another is in poll_wait() with the device's
    # waker registered and poll() not yet called: the close wakes, then closed the pipe; a
    # file opened meanwhile got its number, and the wait slept on that file (for ever with
    # no timeout) instead of seeing the wake-up
    import threading

    from tunflow.platform import _unix

    real_poll = select.poll
    polling, closed = threading.Event(), threading.Event()

    class Poll:
        def __init__(self) -> None:
            self._p = real_poll()

        def register(self, fd: int, events: int) -> None:
            self._p.register(fd, events)

        def poll(self, ms: int | None = None) -> list[tuple[int, int]]:
            polling.set()
            closed.wait(10)
            return self._p.poll(ms)

    monkeypatch.setattr(_unix.select, "poll", Poll)
    quiet_r, quiet_w = os.pipe()  # the device: nothing to read
    other_r, other_w = os.pipe()
    waker = _unix.PipeWaker()
    number = waker.fileno()
    result: list[object] = []
    t = threading.Thread(
        target=lambda: result.append(_unix.poll_wait(quiet_r, _unix._POLLIN, 30, waker))
    )
    t.start()
    reused: list[int] = []
    try:
        assert polling.wait(10)
        waker.wake()
        waker.close()
        reused = _reuse(number, other_w)  # (a write end: never readable)
        closed.set()
        t.join(3)
        alive = t.is_alive()
        if alive:
            os.write(quiet_w, b"x")  # (end the wait the test caught asleep)
            t.join(10)
        assert not alive, "the wait slept on the fd that took the waker's number"
        assert result == [False]
        assert waker.fileno() == -1
    finally:
        closed.set()
        for fd in (quiet_r, quiet_w, other_r, other_w, *reused):
            os.close(fd)


@pytest.mark.parametrize("af_header", [False, True])
def test_a_vectored_read_hands_out_no_cut_packet(
    pair: tuple[socket.socket, socket.socket], af_header: bool
) -> None:
    a, b = pair
    q = FdQueue(b.fileno(), close_fd=False, af_header=af_header)
    head = b"\0\0\0\2" if af_header else b""
    views = [memoryview(bytearray(60)), memoryview(bytearray(40))]
    a.send(head + bytes(range(100)))  # fits exactly
    assert q.recv_vectored(views, 100) == 100
    assert bytes(views[0]) + bytes(views[1]) == bytes(range(100))
    a.send(head + bytes(101))  # a byte more than the buffers: the kernel would cut it
    with pytest.raises(PacketTooLargeError, match="100 bytes of room"):
        q.recv_vectored(views, 100)
    assert q.rx_truncated == 1
    with pytest.raises(BlockingIOError):
        q.recv_vectored(views, 100)
    assert q.send_vectored([memoryview(b"\x45\x00"), memoryview(b"tail")]) == 6
    assert a.recv(100) == head + b"\x45\x00tail"
    q.close()


def test_a_read_across_more_buffers_than_readv_takes_allocates_one_packet_at_most(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    import tracemalloc

    from tunflow.platform._unix import IOV_MAX

    a, b = pair
    q = FdQueue(b.fileno(), close_fd=False, af_header=False)
    whole = memoryview(bytearray(IOV_MAX * 1024))  # 1 MiB of room over IOV_MAX buffers
    views = [whole[i * 1024 : (i + 1) * 1024] for i in range(IOV_MAX)]
    a.send(bytes(range(200)) * 10)
    tracemalloc.start()
    try:
        assert q.recv_vectored(views, len(whole)) == 2000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bytes(whole[:2000]) == bytes(range(200)) * 10
    # (the scratch buffer was the size of all the buffers: 1 MiB here, 64 MiB for 64 KiB each)
    assert peak < 256 * 1024, peak
    q.close()


@pytest.mark.anyio
async def test_a_batch_send_while_another_waits_is_refused_even_with_room(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # anyio refuses a second wait on one fd; a send that finds room needs no wait, and would
    # put its packets between the waiting batch's
    a, b = pair
    dev = _narrow_device(a)
    batch = PacketBatch(capacity=1 << 20)
    for _ in range(100):
        batch.append(b"\x45" + bytes(999))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dev.send_batch, batch)
            await anyio.sleep(0.1)
            b.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                for _ in range(5):
                    b.recv(2000)  # room now; the first task has not run yet
            other = PacketBatch(capacity=1 << 16)
            other.append(b"\x45" + bytes(99))
            with pytest.raises(anyio.BusyResourceError):
                await dev.send_batch(other, checkpoint=False)
            tg.cancel_scope.cancel()
    await dev.aclose()


@pytest.mark.parametrize("vectored", [False, True])
def test_a_single_send_the_kernel_finds_too_large_is_packet_too_large(
    pair: tuple[socket.socket, socket.socket], vectored: bool
) -> None:
    a, _ = pair
    q = FdQueue(a.fileno(), close_fd=False)
    packet = bytes(300_000)  # larger than a unix datagram may be: EMSGSIZE
    with pytest.raises(PacketTooLargeError):
        if vectored:
            q.send_vectored([memoryview(packet)])
        else:
            q.send(packet)
    q.close()


def test_detach_gives_the_fd_up_once(pair: tuple[socket.socket, socket.socket]) -> None:
    _, b = pair
    fd = os.dup(b.fileno())
    closed: list[bool] = []
    q = FdQueue(fd, on_close=lambda: closed.append(True))
    try:
        assert q.detach() == fd
        os.fstat(fd)  # not closed: the caller's
        assert closed == []  # nor its bookkeeping run
        with pytest.raises(ClosedDeviceError):
            q.detach()
        with pytest.raises(ClosedDeviceError):
            q.recv(2048)
        q.close()  # nothing more
        assert closed == []
        os.fstat(fd)
    finally:
        os.close(fd)


def test_detach_returns_when_the_last_operation_lets_go(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not after its longest wait: once the operation still using the fd has let go."""
    _, b = pair
    monkeypatch.setattr(_unix, "DETACH_WAIT", 60.0)
    q = FdQueue(b.fileno(), close_fd=False)
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(q.detach()), daemon=True)
    with q.held():
        t.start()
        t.join(0.2)
        assert t.is_alive()  # waits for the holder
    t.join(10)
    assert not t.is_alive()
    assert got == [b.fileno()]
