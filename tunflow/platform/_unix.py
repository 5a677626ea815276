"""What every Unix backend shares: an fd-owning packet queue, a wake-up pipe, ``poll`` waits.

:class:`FdQueue` owns one fd the way ``trio/_unix_pipes.py`` does: it sets the fd non-blocking
once (restoring the original mode on close for borrowed fds), sets its stored fd to -1 before
closing so no later call can touch a reused number, and reads until the kernel has nothing left
before anyone waits. Reads go through :meth:`io.FileIO.readinto`, which returns ``None`` instead
of raising on ``EAGAIN``: on this machine an empty read costs 1.1 µs that way against 1.5 µs for
``os.readv`` plus a caught :class:`BlockingIOError`.

The optional 4-byte address-family header (macOS ``utun``, the BSDs' ``TUNSIFHEAD``, iOS) is
removed on read and added on write here, so every platform yields bare IP packets.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import select
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from ..errors import (
    ClosedDeviceError,
    DeviceError,
    DeviceGoneError,
    LinkDownError,
    MalformedPacketError,
    PacketTooLargeError,
    UnsupportedError,
)
from ..netconfig.device import Layer
from ..packet import HEADROOM, PacketBatch
from ._base import Buffer, OffloadInfo

__all__ = [
    "FdQueue",
    "PipeWaker",
    "poll_wait",
    "map_io_error",
    "AF_HEADER_LEN",
    "IOV_MAX",
    "scatter",
]

AF_HEADER_LEN: Final = 4
_AF = struct.Struct("!I")
# Windows' select module has no poll(); this module must still import there (the device faces
# import it), and macOS/BSD/Windows have no EBADFD (a Linux errno).
_POLLIN: Final = getattr(select, "POLLIN", 0x1)
_POLLOUT: Final = getattr(select, "POLLOUT", 0x4)
_MAX_READ: Final = 65535 + HEADROOM
_ZERO_VNET: Final = bytes(HEADROOM)
#: the byte a single read is offered past its buffer, to see a packet cut short (never read)
_SPILL: Final = bytearray(1)


def _iov_max() -> int:
    try:
        n = os.sysconf("SC_IOV_MAX")
    except (AttributeError, ValueError, OSError):  # (Windows has no sysconf)
        return 1024
    return n if n > 0 else 1024


#: the most buffers one ``readv``/``writev`` takes (``sysconf(_SC_IOV_MAX)``; 1024 on Linux and
#: macOS, and where the OS does not say)
IOV_MAX: Final = _iov_max()
#: the longest wait ``poll`` takes (its timeout is a C int of milliseconds)
_MAX_POLL_MS: Final = 2**31 - 1
#: seconds a wait for writability sleeps before it looks again: deleting a Linux tun device
#: wakes its readers only (``sk_data_ready``), never a writer waiting on a down link
WRITE_RECHECK: Final = 1.0
#: seconds :meth:`FdQueue.detach` waits at most for operations still using the fd to let go
#: (a woken wait, a non-blocking read or write: far less in practice)
DETACH_WAIT: Final = 5.0
#: a write refused for the packet itself, not for the device
_PACKET_ERRNOS: Final = frozenset({errno.EINVAL, errno.EMSGSIZE})
_GONE_ERRNOS: Final = frozenset(
    code
    for code in (getattr(errno, "EBADFD", None), errno.ENXIO, errno.ENODEV, errno.EIO, errno.EPIPE)
    if code is not None
)


def map_io_error(exc: OSError, what: str) -> Exception:
    """Map an :class:`OSError` from a read or write to the error the device faces raise."""
    if exc.errno == errno.EBADF:
        # (tunflow's own close waits for every call using the fd: this one was closed outside
        # tunflow, or not opened for this)
        return DeviceError(
            exc.errno,
            f"{what}: the fd refuses it (EBADF: closed outside tunflow, or not open for "
            f"{'reading' if what == 'read' else 'writing'})",
        )
    if exc.errno == errno.EIO and what == "write":
        # Linux tun refuses writes while the link is down (not IFF_UP): it is still there.
        return LinkDownError(
            exc.errno, f"{what}: the link is down ({exc.strerror}); bring it up to send"
        )
    if exc.errno in _GONE_ERRNOS:
        return DeviceGoneError(exc.errno, f"{what}: the device is gone ({exc.strerror})")
    if exc.errno == errno.EMSGSIZE:
        return PacketTooLargeError(f"{what}: the packet is larger than the device accepts")
    if exc.errno == errno.EINVAL and what == "write":
        return MalformedPacketError(f"{what}: the kernel refused the packet (EINVAL)")
    return DeviceError.from_oserror(exc, what)


class DeferredClose:
    """The close of a file that waits in other threads may hold: :meth:`close` closes it now,
    or when the last holder lets go, so that no wait polls — and no read or write reaches — a
    number the OS has given to another file meanwhile.

    ``close_now`` is called once, under :attr:`lock` (re-entrant: a signal handler may close in
    a thread that holds it), which the owner also takes for what must not overlap a close.
    """

    __slots__ = ("_close_now", "_users", "closed", "lock")

    def __init__(self, close_now: Callable[[], None]) -> None:
        self._close_now = close_now
        self.lock = threading.RLock()
        self._users = 0
        self.closed = False

    def hold(self) -> bool:
        """Hold the file for one wait (``False``: closed already); pair with :meth:`release`."""
        with self.lock:
            if self.closed:
                return False
            self._users += 1
            return True

    def release(self) -> None:
        with self.lock:
            self._users -= 1
            if self.closed and not self._users:
                self._close_now()

    def close(self) -> None:
        """Close now, or when the last holder lets go. Idempotent."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            if not self._users:
                self._close_now()


class PipeWaker:
    """A level-triggered wake-up: once :meth:`wake` is called, every ``poll`` on it returns.

    ``SyncDevice.shutdown()`` uses it to wake every thread blocked in ``recv`` at once.
    :meth:`close` may come from another thread while a wait is about to poll it, or a wake to
    write to it: a wait holds the pipe (:meth:`acquire`), and the last one out closes it, so
    no wait polls — and no wake writes to — a number the OS has given to another file.
    """

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        os.set_inheritable(self._r, False)
        os.set_inheritable(self._w, False)
        self._holds = DeferredClose(self._close_fds)
        self.woken = False

    def fileno(self) -> int:
        return self._r

    def acquire(self) -> int:
        """The fd to poll for one wait (-1 once closed); pair with :meth:`release`."""
        return self._r if self._holds.hold() else -1

    def release(self) -> None:
        self._holds.release()

    def wake(self) -> None:
        with self._holds.lock:
            if self.woken or self._w < 0:
                return
            self.woken = True
            try:
                os.write(self._w, b"\0")
            except BlockingIOError:  # already full means already readable
                pass

    def reset(self) -> None:
        """Make it unwoken again (an :class:`~tunflow.InterruptEvent` is reusable)."""
        with self._holds.lock:
            self.woken = False
            if self._r < 0:
                return
            try:
                while os.read(self._r, 64):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        """Close the pipe now, or when the last wait holding it lets go. Idempotent."""
        self._holds.close()

    def _close_fds(self) -> None:
        r, w = self._r, self._w
        self._r = self._w = -1
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)


def poll_wait(
    fd: int,
    events: int,
    timeout: float | None,
    waker: PipeWaker | None,
    recheck: float | None = None,
    interrupt: PipeWaker | None = None,
    closer: PipeWaker | None = None,
) -> bool:
    """Wait until ``fd`` is ready for ``events`` (or in error). ``False`` on timeout or wake.

    ``recheck``: look again every so many seconds, for a state change that wakes no poll (see
    :data:`WRITE_RECHECK`). ``interrupt``: a second waker (an :class:`~tunflow.InterruptEvent`'s).
    ``closer``: a third (a link-event iterator's, woken by its ``close()``).
    """
    p = select.poll()
    p.register(fd, events)
    held: list[PipeWaker] = []
    try:
        for w in (waker, interrupt, closer):
            if w is not None:
                wake_fd = w.acquire()
                if wake_fd < 0:
                    # closed, after its wake: a close in another thread raced this wait to here
                    return False
                held.append(w)
                p.register(wake_fd, _POLLIN)
        return _poll(p, fd, timeout, recheck)
    finally:
        for w in held:
            w.release()


def _poll(p: select.poll, fd: int, timeout: float | None, recheck: float | None) -> bool:
    # (poll takes an int of ms, 24.8 days at most: a longer wait is made in pieces)
    cap = _MAX_POLL_MS if recheck is None else max(1, int(recheck * 1000))
    end = ms = None
    if timeout is not None and timeout != math.inf:
        end = time.monotonic() + timeout
        ms = max(0, int(timeout * 1000 + 0.999))
    while True:
        try:
            ready = p.poll(cap if ms is None or ms > cap else ms)
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        if ready:
            break
        if end is not None:
            left = end - time.monotonic()
            if left <= 0:
                break
            ms = int(left * 1000 + 0.999)
    return any(r_fd == fd for r_fd, _ in ready)


def scatter(data: memoryview, views: list[memoryview]) -> None:
    """Copy ``data`` into ``views`` in order, each filled before the next (a ``readv`` by hand:
    for queues that read into one buffer)."""
    pos = 0
    end = len(data)
    for v in views:
        if pos >= end:
            return
        k = min(len(v), end - pos)
        v[:k] = data[pos : pos + k]
        pos += k


class FdQueue:
    """A non-blocking packet queue over one fd.

    Args:
        fd: the device fd.
        close_fd: close ``fd`` on :meth:`close` (``False`` for a borrowed fd).
        af_header: the OS puts a 4-byte big-endian address family before each packet; remove it
            on read and add it on write (``af_inet``/``af_inet6`` give the values to write).
        af_framed: the OS puts that header before each packet even with ``af_header`` off (the
            user keeps it): :meth:`set_af_header` may switch between the two.
        vnet_hdr: each read/write carries a 10-byte virtio-net header (Linux offload); batch
            reads put it in the batch's headroom.
        on_close: called once after the fd is closed (a backend's bookkeeping).
        opened: the backend opened ``fd`` for this queue (it was not handed in): an fd
            :meth:`detach` gives up stays non-blocking, as the queue keeps it, rather than
            getting back the blocking mode it was opened in.
        layer: what the fd carries, as its kernel said (an adopted Linux tun fd whose
            interface is not in this namespace); ``None``: not known here.

    Every operation holds the fd for its duration: :meth:`close` from another thread marks the
    queue closed at once, but the fd is only released when the last operation using it has
    left — so no read ever lands on a number the OS has meanwhile given to another file.

    Errors: "nothing to read/room to write" is :class:`BlockingIOError`; a kernel refusal of
    one packet in a batch write (``EINVAL``, ``EMSGSIZE``) is raised as the raw
    :class:`OSError` so the device face can skip and count it; every other failure is mapped by
    :func:`map_io_error`.
    """

    def __init__(
        self,
        fd: int,
        *,
        close_fd: bool = True,
        af_header: bool = False,
        af_inet: int = 2,
        af_inet6: int = 10,
        af_framed: bool = False,
        vnet_hdr: bool = False,
        offload: OffloadInfo | None = None,
        on_close: Callable[[], None] | None = None,
        opened: bool = False,
        layer: Layer | None = None,
    ) -> None:
        self._fd = fd
        self._close_fd = close_fd
        was_blocking = os.get_blocking(fd)
        if was_blocking:
            os.set_blocking(fd, False)
        #: give the fd back blocking when the queue lets go of it without closing it
        self._was_blocking = was_blocking and not opened
        self._file = io.FileIO(fd, "r+", closefd=False)
        self._af_header = af_header
        self._af4 = _AF.pack(af_inet)
        self._af6 = _AF.pack(af_inet6)
        #: the OS frames each packet with a family header (:meth:`set_af_header` may switch)
        self.af_framed = af_framed or af_header
        self.vnet_hdr = vnet_hdr
        self.offload = offload if offload is not None else OffloadInfo(vnet_hdr=vnet_hdr)
        self.layer = layer
        self._on_close = on_close
        self._lock = threading.Lock()
        self._users = 0  # operations using the fd right now
        self._closing = False
        #: set once the fd is released, when :meth:`detach` waits for the last operation
        self._released: threading.Event | None = None
        #: packets a batch read found cut short (more than the room left): dropped
        self.rx_truncated = 0

    def __repr__(self) -> str:
        return f"<FdQueue fd={self._fd}>"

    def fileno(self) -> int:
        return -1 if self._closing else self._fd

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def owns_fd(self) -> bool:
        """:meth:`close` closes the fd (it was not borrowed)."""
        return self._close_fd or self._on_close is not None

    def wait_handle(self) -> int | None:
        return None

    def set_af_header(self, on: bool) -> None:
        """Remove (``on``) or hand over the family header from the next operation on: each
        operation reads the setting once, so one running meanwhile in another thread keeps
        the framing it started with (a batch write included).

        Raises:
            UnsupportedError: the OS puts no family header before the packets of this fd.
        """
        if not self.af_framed:
            raise UnsupportedError("this fd's packets carry no address-family header")
        self._af_header = on

    # -- holding the fd ---------------------------------------------------------------------

    def _enter(self) -> int:
        with self._lock:
            if self._closing:
                raise ClosedDeviceError("the device is closed")
            self._users += 1
            return self._fd

    def _leave(self) -> None:
        with self._lock:
            self._users -= 1
            release = self._closing and self._users == 0
        if release:
            self._release()

    @contextlib.contextmanager
    def held(self) -> Iterator[int]:
        """The fd, held for the block as an operation holds it: a :meth:`close` meanwhile
        releases it after the block. :class:`~tunflow.ClosedDeviceError` once closed."""
        fd = self._enter()
        try:
            yield fd
        finally:
            self._leave()

    def close(self) -> None:
        """Mark the queue closed; the fd is released now, or by the last operation still
        using it. Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            release = self._users == 0
        if release:
            self._release()

    def detach(self) -> int:
        """Mark the queue closed and give up its fd, never closing it (``socket.detach``):
        an fd that was blocking when the queue got it is made blocking again, as a borrowed
        fd's is at :meth:`close`, and ``on_close`` is not called. Operations still using the
        fd finish on it first (they are non-blocking; the face has woken its waits): this
        returns once the last has let go (:data:`DETACH_WAIT` at most), so nothing of the
        queue touches the fd once it is the caller's. :class:`~tunflow.ClosedDeviceError`
        once closed."""
        with self._lock:
            if self._closing:
                raise ClosedDeviceError("the device is closed")
            fd = self._fd
            self._close_fd = False
            self._on_close = None
            self._closing = True
            release = self._users == 0
            if not release:
                released = self._released = threading.Event()
        if release:
            self._release()
        else:
            released.wait(DETACH_WAIT)
        return fd

    def _release(self) -> None:
        try:
            self._release_fd()
        finally:
            if self._released is not None:
                self._released.set()

    def _release_fd(self) -> None:
        fd = self._fd
        if fd < 0:
            return
        self._fd = -1
        self._file.close()  # closefd=False: marks the wrapper closed, leaves the fd alone
        try:
            if self._close_fd:
                try:
                    os.close(fd)
                except OSError as exc:
                    if exc.errno != errno.EBADF:
                        raise
                    # closed outside tunflow already: nothing left to close
            elif self._was_blocking:
                try:
                    os.set_blocking(fd, True)
                except OSError:
                    pass
        finally:
            if self._on_close is not None:
                self._on_close()

    def _check_eof(self) -> None:
        """A read returned 0 bytes, which a TUN/TAP device never does: raise ``EPIPE`` (the
        device faces' :class:`DeviceGoneError`) if that was the end of the file — an adopted fd
        whose other end closed (a pipe, a stream or seqpacket socket) — and not an empty
        datagram (an adopted datagram socket), which is only nothing to use."""
        try:
            import socket
            import stat

            if stat.S_ISSOCK(os.fstat(self._fd).st_mode):
                with socket.socket(fileno=os.dup(self._fd)) as sock:
                    if sock.type == socket.SOCK_DGRAM:
                        return
        except OSError:
            pass  # (closed meanwhile: the end all the same)
        raise OSError(errno.EPIPE, "end of file: the other end of the fd closed")

    def wait(
        self,
        writable: bool,
        timeout: float | None,
        waker: PipeWaker | None,
        interrupt: PipeWaker | None = None,
    ) -> bool:
        """Block until readable (or writable); ``False`` on timeout or when ``waker`` or
        ``interrupt`` fires."""
        fd = self._enter()
        try:
            if writable:
                return poll_wait(fd, _POLLOUT, timeout, waker, WRITE_RECHECK, interrupt)
            return poll_wait(fd, _POLLIN, timeout, waker, None, interrupt)
        finally:
            self._leave()

    # -- single packets -----------------------------------------------------------------------

    def recv(self, max_size: int) -> bytes:
        """Read one packet as ``bytes``; :class:`BlockingIOError` when none is waiting.

        Reads are offered the largest packet whatever ``max_size`` says (it costs nothing:
        ``os.read`` shrinks its buffer), so an MTU raised behind our back never truncates.
        A read that holds no packet (an empty datagram of an adopted socket, a family header
        alone) is skipped, as :meth:`recv_batch` skips it.
        """
        fd = self._enter()
        try:
            if self._af_header:
                hdr = bytearray(AF_HEADER_LEN)
                buf = bytearray(_MAX_READ)
                while True:
                    n = os.readv(fd, [hdr, buf])
                    if n > AF_HEADER_LEN:
                        del buf[n - AF_HEADER_LEN :]
                        return bytes(buf)
                    if not n:
                        self._check_eof()
            while True:
                data = os.read(fd, _MAX_READ)
                if data:
                    return data
                self._check_eof()
        except BlockingIOError:
            raise
        except OSError as exc:
            raise map_io_error(exc, "read") from exc
        finally:
            self._leave()

    def recv_into(self, buf: memoryview) -> int:
        """Read one packet into ``buf``; :class:`BlockingIOError` when none is waiting.

        The read is offered a byte more than ``buf`` (thrown away), so a packet larger than
        ``buf`` — which the kernel cuts to the room offered, and would hand out as if whole —
        shows (the MTU was raised behind our back): it is dropped, counted in
        :attr:`rx_truncated`, and raised as :class:`PacketTooLargeError`. A read that holds
        no packet is skipped, as :meth:`recv` skips it.
        """
        return self._readv((buf,), len(buf))

    def recv_vectored(self, views: list[memoryview], room: int) -> int:
        """Read one packet across ``views`` (``room`` bytes in all) with one ``readv``; its
        length. Raises as :meth:`recv_into`, which it is, scattered."""
        if len(views) + 2 > IOV_MAX:  # (the family header and the spill byte take two)
            scratch = memoryview(bytearray(min(room, _MAX_READ)))  # (no packet is longer)
            n = self.recv_into(scratch)
            scatter(scratch[:n], views)
            return n
        return self._readv(views, room)

    def _readv(self, views: Sequence[memoryview], room: int) -> int:
        """One ``readv`` of a packet into ``views`` (``room`` bytes in all), offered the spill
        byte too (see :meth:`recv_into`)."""
        fd = self._enter()
        try:
            if self._af_header:
                iov: list[Buffer] = [bytearray(AF_HEADER_LEN), *views, _SPILL]
                while True:
                    n = os.readv(fd, iov) - AF_HEADER_LEN
                    if n > 0:
                        break
                    if n == -AF_HEADER_LEN:
                        self._check_eof()  # as recv: the end of an adopted fd is DeviceGoneError
            else:
                iov = [*views, _SPILL]
                while True:
                    n = os.readv(fd, iov)
                    if n or not room:
                        break
                    self._check_eof()
            if n > room:
                self.rx_truncated += 1
                raise PacketTooLargeError(
                    f"read: a packet larger than the {room} bytes of room was cut short by the "
                    "kernel and dropped (counted in rx_truncated): the MTU was raised outside "
                    "tunflow"
                )
        except BlockingIOError:
            raise
        except OSError as exc:
            raise map_io_error(exc, "read") from exc
        finally:
            self._leave()
        return n

    def send_vectored(self, views: list[memoryview]) -> int:
        """Write the one packet ``views`` hold, in order, with one ``writev``; the bytes
        written. Raises as :meth:`send`."""
        if len(views) + 1 > IOV_MAX:  # (the family or virtio-net header takes one)
            return self.send(b"".join(views))
        fd = self._enter()
        try:
            if self._af_header:
                first = next((v for v in views if len(v)), b"")
                af = self._af6 if len(first) and first[0] >> 4 == 6 else self._af4
                n = os.writev(fd, [af, *views]) - AF_HEADER_LEN
            elif self.vnet_hdr:
                n = os.writev(fd, [_ZERO_VNET, *views]) - HEADROOM
            else:
                n = os.writev(fd, views)
        except BlockingIOError:
            raise BlockingIOError(errno.EAGAIN, "the device queue is full") from None
        except OSError as exc:
            raise map_io_error(exc, "write") from exc
        finally:
            self._leave()
        return max(0, n)

    def _write(self, fd: int, packet: Buffer) -> int | None:
        """One write with this queue's framing; ``None`` when the kernel has no room."""
        if self._af_header:
            af = self._af6 if len(packet) and packet[0] >> 4 == 6 else self._af4
            try:
                return max(0, os.writev(fd, [af, packet]) - AF_HEADER_LEN)
            except BlockingIOError:
                return None
        if self.vnet_hdr:
            # one plain packet: an all-zero virtio-net header (no GSO, checksum complete)
            try:
                return max(0, os.writev(fd, [_ZERO_VNET, packet]) - HEADROOM)
            except BlockingIOError:
                return None
        return self._file.write(packet)

    def send(self, packet: Buffer) -> int:
        fd = self._enter()
        try:
            n = self._write(fd, packet)
        except OSError as exc:
            raise map_io_error(exc, "write") from exc
        finally:
            self._leave()
        if n is None:
            raise BlockingIOError(errno.EAGAIN, "the device queue is full")
        return n

    # -- batches --------------------------------------------------------------------------------

    def recv_batch(self, batch: PacketBatch, max_size: int) -> int:
        """Read until the kernel has nothing left, the batch is full or has no room left.

        Each read is offered at least ``max_size + 1`` bytes, so a read that fills all the room
        offered is known to have been cut short by the kernel (a packet over ``max_size``: the
        MTU was raised behind our back). Such a packet is dropped and counted in
        :attr:`rx_truncated`, never handed out.
        """
        fd = self._enter()
        try:
            if self._af_header:
                return self._recv_batch_af(fd, batch, max_size)
            return self._recv_batch(batch, max_size)
        finally:
            self._leave()

    def recv_lone(self, batch: PacketBatch, max_size: int) -> int:
        """:meth:`recv_batch` into an empty ``batch`` for traffic at rest (a ping, a request):
        the first read done here with a handful of lines, the rest (the read that finds
        nothing, or more packets) by the batch loop. Without holding the fd: only for its
        owner's event-loop thread, where nothing closes the queue meanwhile (an
        :class:`~tunflow.AsyncDevice` closes it there, once the loop let go of the fd)."""
        back = HEADROOM if self.vnet_hdr else 0
        stop = HEADROOM + _MAX_READ
        if self._closing or self._af_header or batch.offsets or stop > len(batch.buffer):
            return self.recv_batch(batch, max_size)
        if back:
            batch.vnet_hdr = True  # (as the batch loop marks it, whatever it finds)
        try:
            n = self._file.readinto(batch.view[HEADROOM - back : stop])
        except OSError as exc:
            raise map_io_error(exc, "read") from exc
        if n is None:
            return 0
        if n < back or not n or n - back + HEADROOM >= stop:
            # nothing usable, as the batch loop would find it; the loop reads on
            if not n:
                try:
                    self._check_eof()  # the end of an adopted fd; an empty datagram reads on
                except OSError as exc:
                    raise map_io_error(exc, "read") from exc
            elif n >= back:
                self.rx_truncated += 1
            return self._recv_batch(batch, max_size)
        n -= back
        batch.offsets.append(HEADROOM)
        batch.lengths.append(n)
        batch.end = HEADROOM + n
        return self._recv_batch(batch, max_size, 1)

    def send_lone(self, batch: PacketBatch) -> int:
        """:meth:`send_batch` of the one packet of ``batch`` (1: written), for the same callers
        as :meth:`recv_lone`: without holding the fd. Raises as :meth:`send_batch` does."""
        off = batch.offsets[0]
        end = off + batch.lengths[0]
        if self._af_header or self._closing:
            return self.send_batch(batch, 0)
        if self.vnet_hdr:
            off -= HEADROOM
            if not batch.vnet_hdr:
                batch.buffer[off : off + HEADROOM] = _ZERO_VNET
                batch.vnet_hdr = True  # (as zero_headers marks it)
        try:
            done = self._file.write(batch.view[off:end])
        except OSError as exc:
            if exc.errno in _PACKET_ERRNOS:
                raise
            raise map_io_error(exc, "write") from exc
        if done is None:
            raise BlockingIOError(errno.EAGAIN, "the device queue is full")
        return 1

    def _recv_batch(self, batch: PacketBatch, max_size: int, read: int = 0) -> int:
        """The batch loop; ``read``: packets this call has already read (recv_lone's)."""
        view = batch.view
        cap = len(batch.buffer)
        # the last offset at which a read still has ``max_size + 1`` bytes of room
        last = cap - max_size - 1
        add_offset = batch.offsets.append
        add_length = batch.lengths.append
        left = batch.max_packets - len(batch.offsets) + read
        count = read
        readinto = self._file.readinto
        # With a virtio header the read starts HEADROOM bytes earlier: header into the headroom.
        back = HEADROOM if self.vnet_hdr else 0
        if back:
            batch.vnet_hdr = True
        end = batch.end
        # Each read is offered all the room left (up to the largest packet), so a packet bigger
        # than expected (the MTU raised behind our back) is still whole if it fits; reading
        # stops when ``max_size`` bytes or less are left. A read that fills all the room was cut.
        try:
            while count < left:
                off = end + HEADROOM
                if off > last:
                    break
                stop = off + _MAX_READ
                if stop > cap:  # (not min(): a call per read)
                    stop = cap
                n = readinto(view[off - back : stop])
                if (
                    not n
                ):  # None: nothing waiting; 0: the end of an adopted fd, or an empty datagram
                    if n is None or count:
                        break
                    self._check_eof()
                    continue
                if n < back:  # shorter than a virtio header: nothing usable
                    continue
                n -= back
                if off + n >= stop:
                    self.rx_truncated += 1
                    continue
                add_offset(off)
                add_length(n)
                end = off + n
                count += 1
        except OSError as exc:
            batch.end = end
            if count:
                # Report what was read; the error shows again on the next call.
                return count
            raise map_io_error(exc, "read") from exc
        batch.end = end
        return count

    def _recv_batch_af(self, fd: int, batch: PacketBatch, max_size: int) -> int:
        view = batch.view
        cap = len(batch.buffer)
        hdr = bytearray(AF_HEADER_LEN)
        count = 0
        readv = os.readv
        while len(batch.offsets) < batch.max_packets:
            off = batch.end + HEADROOM
            if off + max_size >= cap:  # at least max_size + 1 bytes of room (see recv_batch)
                break
            stop = min(cap, off + _MAX_READ)
            try:
                n = readv(fd, [hdr, view[off:stop]])
            except BlockingIOError:
                break
            except OSError as exc:
                if count:
                    return count
                raise map_io_error(exc, "read") from exc
            if n <= AF_HEADER_LEN:
                if not n:
                    if count:
                        break
                    try:
                        self._check_eof()
                    except OSError as exc:
                        raise map_io_error(exc, "read") from exc
                continue
            if off + n - AF_HEADER_LEN >= stop:
                self.rx_truncated += 1
                continue
            batch.commit(off, n - AF_HEADER_LEN)
            count += 1
        return count

    def send_batch(self, batch: PacketBatch, start: int = 0) -> int:
        """Write packets from ``start``; return the index after the last one written.

        Raises:
            BlockingIOError: not even packet ``start`` could be written now.
            OSError: ``EINVAL``/``EMSGSIZE``: the kernel refused packet ``start`` itself (raw,
                for the caller to skip and count).
        """
        fd = self._enter()
        try:
            return self._send_batch(fd, batch, start)
        finally:
            self._leave()

    def _send_batch(self, fd: int, batch: PacketBatch, start: int) -> int:
        view = batch.view
        offsets = batch.offsets
        lengths = batch.lengths
        i = start
        total = len(offsets)
        back = HEADROOM if self.vnet_hdr else 0
        if back and not batch.vnet_hdr:
            batch.zero_headers()
        try:
            if self._af_header:
                af4, af6 = self._af4, self._af6
                writev = os.writev
                while i < total:
                    off = offsets[i]
                    n = lengths[i]
                    af = af6 if n and view[off] >> 4 == 6 else af4
                    try:
                        writev(fd, [af, view[off : off + n]])
                    except BlockingIOError:
                        break
                    i += 1
            else:
                write = self._file.write
                while i < total:
                    off = offsets[i]
                    if write(view[off - back : off + lengths[i]]) is None:
                        break
                    i += 1
        except OSError as exc:
            if i > start:
                return i  # report progress; the error shows again on the next call
            if exc.errno in _PACKET_ERRNOS:
                raise  # this packet only: the caller skips and counts it
            raise map_io_error(exc, "write") from exc
        if i == start and i < total:
            raise BlockingIOError(errno.EAGAIN, "the device queue is full")
        return i
