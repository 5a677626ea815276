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

import errno
import io
import os
import select
import struct
from collections.abc import Callable
from typing import Final

from ..errors import (
    ClosedDeviceError,
    DeviceError,
    DeviceGoneError,
    MalformedPacketError,
    PacketTooLargeError,
)
from ..packet import HEADROOM, PacketBatch
from ._base import Buffer, OffloadInfo

__all__ = ["FdQueue", "PipeWaker", "poll_wait", "map_io_error", "AF_HEADER_LEN"]

AF_HEADER_LEN: Final = 4
_AF = struct.Struct("!I")
# Windows' select module has no poll(); this module must still import there (the device faces
# import it), and macOS/BSD/Windows have no EBADFD (a Linux errno).
_POLLIN: Final = getattr(select, "POLLIN", 0x1)
_POLLOUT: Final = getattr(select, "POLLOUT", 0x4)
_MAX_READ: Final = 65535 + HEADROOM
_ZERO_VNET: Final = bytes(HEADROOM)
_GONE_ERRNOS: Final = frozenset(
    code
    for code in (getattr(errno, "EBADFD", None), errno.ENXIO, errno.ENODEV, errno.EIO, errno.EPIPE)
    if code is not None
)


def map_io_error(exc: OSError, what: str) -> Exception:
    """Map an :class:`OSError` from a read or write to the error the device faces raise."""
    if exc.errno == errno.EBADF:
        return ClosedDeviceError(f"{what}: the device is closed")
    if exc.errno in _GONE_ERRNOS:
        return DeviceGoneError(exc.errno, f"{what}: the device is gone ({exc.strerror})")
    if exc.errno == errno.EMSGSIZE:
        return PacketTooLargeError(f"{what}: the packet is larger than the device accepts")
    if exc.errno == errno.EINVAL and what == "write":
        return MalformedPacketError(f"{what}: the kernel refused the packet (EINVAL)")
    return DeviceError.from_oserror(exc, what)


class PipeWaker:
    """A level-triggered wake-up: once :meth:`wake` is called, every ``poll`` on it returns.

    ``SyncDevice.shutdown()`` uses it to wake every thread blocked in ``recv`` at once.
    """

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        os.set_inheritable(self._r, False)
        os.set_inheritable(self._w, False)
        self.woken = False

    def fileno(self) -> int:
        return self._r

    def wake(self) -> None:
        if self.woken or self._w < 0:
            return
        self.woken = True
        try:
            os.write(self._w, b"\0")
        except BlockingIOError:  # already full means already readable
            pass

    def close(self) -> None:
        r, w = self._r, self._w
        self._r = self._w = -1
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)


def poll_wait(fd: int, events: int, timeout: float | None, waker: PipeWaker | None) -> bool:
    """Wait until ``fd`` is ready for ``events`` (or in error). ``False`` on timeout or wake."""
    p = select.poll()
    p.register(fd, events)
    if waker is not None:
        p.register(waker.fileno(), _POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    while True:
        try:
            ready = p.poll(ms)
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        break
    return any(r_fd == fd for r_fd, _ in ready)


class FdQueue:
    """A non-blocking packet queue over one fd.

    Args:
        fd: the device fd.
        close_fd: close ``fd`` on :meth:`close` (``False`` for a borrowed fd).
        af_header: the OS puts a 4-byte big-endian address family before each packet; remove it
            on read and add it on write (``af_inet``/``af_inet6`` give the values to write).
        vnet_hdr: each read/write carries a 10-byte virtio-net header (Linux offload); batch
            reads put it in the batch's headroom.
        on_close: called once after the fd is closed (a backend's bookkeeping).
    """

    def __init__(
        self,
        fd: int,
        *,
        close_fd: bool = True,
        af_header: bool = False,
        af_inet: int = 2,
        af_inet6: int = 10,
        vnet_hdr: bool = False,
        offload: OffloadInfo | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._fd = fd
        self._close_fd = close_fd
        self._was_blocking = os.get_blocking(fd)
        if self._was_blocking:
            os.set_blocking(fd, False)
        self._file = io.FileIO(fd, "r+", closefd=False)
        self._af_header = af_header
        self._af4 = _AF.pack(af_inet)
        self._af6 = _AF.pack(af_inet6)
        self._hdr = bytearray(AF_HEADER_LEN)
        self.vnet_hdr = vnet_hdr
        self.offload = offload if offload is not None else OffloadInfo(vnet_hdr=vnet_hdr)
        self._on_close = on_close

    def __repr__(self) -> str:
        return f"<FdQueue fd={self._fd}>"

    def fileno(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def wait_handle(self) -> int | None:
        return None

    def _check(self) -> int:
        fd = self._fd
        if fd < 0:
            raise ClosedDeviceError("the device is closed")
        return fd

    def wait(self, writable: bool, timeout: float | None, waker: PipeWaker | None) -> bool:
        """Block until readable (or writable); ``False`` on timeout or when ``waker`` fires."""
        return poll_wait(self._check(), _POLLOUT if writable else _POLLIN, timeout, waker)

    # -- single packets -------------------------------------------------------------------------

    def recv(self, max_size: int) -> bytes:
        """Read one packet as ``bytes``; :class:`BlockingIOError` when none is waiting."""
        fd = self._check()
        try:
            if self._af_header:
                buf = bytearray(max_size)
                n = os.readv(fd, [self._hdr, buf])
                return bytes(buf[: max(0, n - AF_HEADER_LEN)])
            return os.read(fd, max_size)
        except BlockingIOError:
            raise
        except OSError as exc:
            raise map_io_error(exc, "read") from exc

    def recv_into(self, buf: memoryview) -> int:
        fd = self._check()
        try:
            if self._af_header:
                n = os.readv(fd, [self._hdr, buf])
                return max(0, n - AF_HEADER_LEN)
            n = self._file.readinto(buf)
        except OSError as exc:
            raise map_io_error(exc, "read") from exc
        if n is None:
            raise BlockingIOError(errno.EAGAIN, "no packet waiting")
        return n

    def send(self, packet: Buffer) -> int:
        fd = self._check()
        try:
            if self._af_header:
                af = self._af6 if len(packet) and packet[0] >> 4 == 6 else self._af4
                n = os.writev(fd, [af, packet])
                return max(0, n - AF_HEADER_LEN)
            if self.vnet_hdr:
                # one plain packet: an all-zero virtio-net header (no GSO, checksum complete)
                return max(0, os.writev(fd, [_ZERO_VNET, packet]) - HEADROOM)
            n = self._file.write(packet)
        except OSError as exc:
            raise map_io_error(exc, "write") from exc
        if n is None:
            raise BlockingIOError(errno.EAGAIN, "the device queue is full")
        return n

    # -- batches --------------------------------------------------------------------------------

    def recv_batch(self, batch: PacketBatch, max_size: int) -> int:
        """Read until the kernel has nothing left, the batch is full or has no room left."""
        self._check()
        if self._af_header:
            return self._recv_batch_af(batch, max_size)
        view = batch.view
        # the last offset at which a read still has ``max_size`` bytes of room
        last = len(batch.buffer) - max_size
        add_offset = batch.offsets.append
        add_length = batch.lengths.append
        left = batch.max_packets - len(batch.offsets)
        count = 0
        readinto = self._file.readinto
        # With a virtio header the read starts HEADROOM bytes earlier: header into the headroom.
        back = HEADROOM if self.vnet_hdr else 0
        if back:
            batch.vnet_hdr = True
        end = batch.end
        # Each read is offered all the room left (up to the largest packet; memoryview slices
        # clamp), so a packet bigger than expected (the MTU raised behind our back) is never
        # truncated; reading stops when less than ``max_size`` is left.
        try:
            while count < left:
                off = end + HEADROOM
                if off > last:
                    break
                n = readinto(view[off - back : off + _MAX_READ])
                if n is None:
                    break
                if n < back:  # shorter than a virtio header: nothing usable
                    continue
                n -= back
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

    def _recv_batch_af(self, batch: PacketBatch, max_size: int) -> int:
        fd = self._fd
        view = batch.view
        cap = len(batch.buffer)
        hdr = self._hdr
        count = 0
        readv = os.readv
        while len(batch.offsets) < batch.max_packets:
            off = batch.end + HEADROOM
            if off + max_size > cap:
                break
            try:
                n = readv(fd, [hdr, view[off : min(cap, off + _MAX_READ)]])
            except BlockingIOError:
                break
            except OSError as exc:
                if count:
                    return count
                raise map_io_error(exc, "read") from exc
            if n <= AF_HEADER_LEN:
                continue
            batch.commit(off, n - AF_HEADER_LEN)
            count += 1
        return count

    def send_batch(self, batch: PacketBatch, start: int = 0) -> int:
        """Write packets from ``start``; return the index after the last one written."""
        self._check()
        view = batch.view
        offsets = batch.offsets
        lengths = batch.lengths
        i = start
        total = len(offsets)
        if self._af_header:
            while i < total:
                off = offsets[i]
                try:
                    self.send(view[off : off + lengths[i]])
                except BlockingIOError:
                    break
                i += 1
        else:
            write = self._file.write
            back = HEADROOM if self.vnet_hdr else 0
            if back and not batch.vnet_hdr:
                batch.zero_headers()
            try:
                while i < total:
                    off = offsets[i]
                    if write(view[off - back : off + lengths[i]]) is None:
                        break
                    i += 1
            except OSError as exc:
                if i > start:
                    return i  # report progress; the error shows again on the next call
                if exc.errno == errno.EINVAL and back:
                    raise  # the offload layer decides (a kernel refusing GSO writes)
                raise map_io_error(exc, "write") from exc
        if i == start and i < total:
            raise BlockingIOError(errno.EAGAIN, "the device queue is full")
        return i

    def close(self) -> None:
        fd = self._fd
        if fd < 0:
            return
        self._fd = -1
        try:
            if self._close_fd:
                os.close(fd)
            elif self._was_blocking:
                try:
                    os.set_blocking(fd, True)
                except OSError:
                    pass
        finally:
            if self._on_close is not None:
                self._on_close()
