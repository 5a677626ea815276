"""``SyncDevice``: the blocking face of a TUN/TAP device.

The fd is non-blocking; a call that must wait ``poll``\\ s the fd together with a wake-up pipe.
That is how :meth:`SyncDevice.shutdown` wakes every thread blocked in :meth:`~SyncDevice.recv`
at once, and how ``timeout=`` works, without signals or closing an fd under a reader.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ClosedDeviceError, UnsupportedError
from ..netconfig.device import DeviceConfig, IPAddressLike, Layer, NetworkLike, PrefixLike
from ..offload import GROTable
from ..packet import PacketBatch
from ..platform._base import Buffer, Route
from ..platform._unix import PipeWaker
from ._core import (
    DeviceCore,
    DeviceStatistics,
    HandedOverQueue,
    SharedInterface,
    adopt_fd,
    buffer_views,
    byte_view,
)
from ._interrupt import InterruptEvent
from ._links import LinkEvents, open_tracker

if TYPE_CHECKING:
    from typing import Self

__all__ = ["SyncDevice"]

T = TypeVar("T")


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if not timeout >= 0:  # (NaN too)
        raise ValueError(f"timeout must be >= 0 or None, not {timeout!r}")
    return time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


class SyncDevice(DeviceCore):
    """A TUN/TAP device for blocking code.

    Made by :meth:`DeviceBuilder.build_sync`, :meth:`from_fd` or :meth:`borrow_fd`. Every
    ``recv`` returns one whole packet; every ``send`` writes one.

    **Shutdown.** :meth:`shutdown` (from any thread) wakes every ``recv``/``send`` blocked on
    this device, which then raise :class:`~tunflow.ClosedDeviceError`, as does every later
    packet or readiness call (configuration still works). :meth:`close` shuts down and releases
    the fd; configuration calls then raise :class:`~tunflow.ClosedDeviceError` too.

    **Timeouts.** ``recv(timeout=…)`` raises :class:`TimeoutError` when nothing arrived in time.

    **A vanished device** (deleted with ``ip link del``) makes a blocked or later call raise
    :class:`~tunflow.DeviceGoneError`, never hang.

    Example:
        >>> from tunflow import DeviceBuilder
        >>> with DeviceBuilder().ipv4("10.0.0.1", 24).build_sync() as dev:  # doctest: +SKIP
        ...     packet = dev.recv(timeout=5.0)
        ...     print(len(packet), dev.name())
    """

    def __init__(self, shared: SharedInterface, queue: Any) -> None:
        self._close_lock = threading.RLock()
        super().__init__(shared, queue)
        # A queue that cannot be polled (Windows) brings its own kind of waker.
        make_waker = getattr(queue, "make_waker", None)
        self._waker = make_waker() if make_waker is not None else PipeWaker()
        # Threads may share a device: reads are safe as they are, but an offload device's
        # split state and the coalescing arena are guarded.
        self._rx_lock = threading.Lock()
        self._tx_lock = threading.Lock()
        self._shutdown = False
        #: which queue of a multi-queue device (0 for the first), for an AsyncDevice that
        #: takes it over
        self._queue_index = 0

    @classmethod
    def _build(cls, config: DeviceConfig) -> SyncDevice:
        from .. import platform

        backend = platform.current()
        interface, queue = backend.open_device(config)
        return cls(SharedInterface(interface, config.layer, config.packet_information), queue)

    @classmethod
    def from_fd(
        cls, fd: int, *, layer: Layer = Layer.L3, packet_information: bool = False
    ) -> SyncDevice:
        """Adopt ``fd`` (a TUN fd made elsewhere: Android's ``VpnService``, an iOS packet tunnel,
        a parent process); the device closes it.

        On Linux, if ``fd`` is a tun fd, its interface is found and the configuration methods
        work; on Android, iOS or for another kind of fd they raise
        :class:`~tunflow.UnsupportedError` — the OS API that made the fd configures it.

        Args:
            fd: an open, readable and writable packet fd.
            layer: what the fd carries, when tunflow cannot ask the kernel (the BSDs, Android,
                iOS, an fd on macOS that is not a utun socket): it sets the framing too — a
                BSD tap fd adopted as ``Layer.L2`` hands over bare Ethernet frames, one adopted
                as ``Layer.L3`` would be taken for a tun with its 4-byte family header.
            packet_information: keep the OS's per-packet header (iOS's 4-byte family header is
                removed by default, as on macOS); on Linux, say that the fd was opened without
                ``IFF_NO_PI`` (its ``tun_pi`` header is handed over as it is).

        Raises:
            ConfigError: ``fd`` is not a file descriptor number, ``layer`` is not a
                :class:`~tunflow.Layer`, or on Linux the interface's framing is not what
                ``packet_information`` says (a tun fd opened without ``IFF_NO_PI`` adopted
                without it, or the other way round); the fd is left open, the caller's.
            UnsupportedError: ``packet_information`` on Android, whose fds carry no header,
                or with ``layer=Layer.L2`` where the OS puts none before a frame (the BSDs,
                iOS, an fd on macOS that is not a utun socket); the fd is left open.
            DeviceError: the OS refused the fd (``EBADF`` for a closed one; ``errno`` kept).
        """
        return cls._adopt(fd, close_fd=True, layer=layer, packet_information=packet_information)

    @classmethod
    def borrow_fd(
        cls, fd: int, *, layer: Layer = Layer.L3, packet_information: bool = False
    ) -> SyncDevice:
        """Like :meth:`from_fd`, but the fd stays open (and blocking, if it was) after
        :meth:`close`: whoever made it still owns it."""
        return cls._adopt(fd, close_fd=False, layer=layer, packet_information=packet_information)

    @classmethod
    def _adopt(
        cls, fd: int, *, close_fd: bool, layer: Layer, packet_information: bool
    ) -> SyncDevice:
        interface, queue = adopt_fd(
            fd, close_fd=close_fd, layer=layer, packet_information=packet_information
        )
        real_layer = getattr(interface, "layer", None) or getattr(queue, "layer", None) or layer
        return cls(SharedInterface(interface, real_layer, packet_information), queue)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "shut down" if self._shutdown else "open"
        return f"<SyncDevice fd={self._queue.fileno()} {state}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:
                pass

    def fileno(self) -> int:
        """The queue's fd (-1 once closed, or on Windows)."""
        return self._queue.fileno()

    # -- lifecycle --------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Wake every blocked ``recv``/``send`` and make them (and later packet and readiness
        calls) raise :class:`~tunflow.ClosedDeviceError`. Thread-safe and idempotent; the fd
        stays open, and configuration works, until :meth:`close`."""
        self._shutdown = True
        self._waker.wake()

    def close(self) -> None:
        """Shut down, then release the queue (a non-persistent device this process made
        disappears with its last queue). Idempotent."""
        # (one closer releases the queue: two threads, or a signal handler's close in the
        # middle of the main thread's, must not release it twice — the other queues would
        # lose the interface)
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.shutdown()
        try:
            self._queue.close()
        finally:
            try:
                self._shared.release()
            finally:
                self._waker.close()

    def try_clone(self) -> SyncDevice:
        """Open another queue of this multi-queue device (Linux ``IFF_MULTI_QUEUE``).

        The kernel spreads flows over the queues; give each its own thread or process.

        Raises:
            UnsupportedError: the device was not built with ``multi_queue(True)``.
        """
        self._check_open()
        queue = self._shared.require().open_queue()
        clone = SyncDevice(self._shared, queue)
        self._shared.queues_opened += 1
        clone._queue_index = self._shared.queues_opened
        return clone

    def into_fd(self) -> int:
        """Give up the queue's fd to the caller (tun-rs ``into_fd``, as ``socket.detach``):
        the device is closed, as by :meth:`close`, but the fd stays open and nothing the build
        set is undone.

        The caller now owns the fd and closes it: on Linux the interface lives while a queue
        fd of it is open (a non-persistent one disappears, with its addresses and routes, when
        the last closes; one built with ``persist`` stays). The fd is non-blocking as tunflow
        keeps it (one adopted with :meth:`from_fd` gets back the mode it came with); with
        offload each read and write carries its 10-byte virtio-net header; packets of a
        split super-packet not yet handed out are lost. On the BSDs an interface the build
        created is no longer destroyed at close: ``ifconfig NAME destroy`` is then the
        caller's. A thread blocked in ``recv`` or ``send`` is woken and raises
        :class:`~tunflow.ClosedDeviceError`, as on :meth:`close`; call it when no other
        thread is about to use the device (as ``socket.detach``).

        Raises:
            ClosedDeviceError: the device is closed or shut down.
            UnsupportedError: the device has no fd to give (Windows, a macOS feth TAP), or
                its fd was borrowed (:meth:`borrow_fd`: its owner has it already).
        """
        if self._closed:
            raise ClosedDeviceError("the device is closed")
        self._check_open()
        queue: Any = self._queue
        if not hasattr(queue, "detach") or queue.fileno() < 0:
            raise UnsupportedError("into_fd: this device's queue is not one fd it can give up")
        if not queue.owns_fd:
            raise UnsupportedError(
                "into_fd: the fd was borrowed (borrow_fd): its owner has it already, and "
                "close() leaves it open"
            )
        iface: Any = self._shared.interface

        def detach(queue: Any) -> int:
            if getattr(iface, "destroy", None) is not None:
                iface.keep = True  # (a BSD interface: not destroyed when the device lets go)
            return queue.detach()  # type: ignore[no-any-return]

        return self._hand_over(detach)

    def _hand_over(self, take: Callable[[Any], T]) -> T:
        """Close this face without closing its queue, which ``take`` is given (under the face's
        locks: no read or write of this face is under way, and a thread about to make one
        meets :class:`HandedOverQueue`); what ``take`` returns. A thread blocked here is woken,
        as by :meth:`close`. If ``take`` raises, the queue is closed.

        Raises:
            ClosedDeviceError: the device is closed or shut down (nothing is handed over).
        """
        with self._close_lock:
            if self._closed:
                raise ClosedDeviceError("the device is closed")
            if self._shutdown:
                raise self._closed_error()
            self._closed = True
        self.shutdown()
        try:
            with self._rx_lock, self._tx_lock:
                queue = self._queue
                self._queue = HandedOverQueue(queue.offload)
                try:
                    return take(queue)
                except BaseException:
                    queue.close()
                    raise
        finally:
            try:
                self._shared.release()
            finally:
                self._waker.close()

    def _check_open(self) -> None:
        if self._shutdown:
            raise self._closed_error()

    def _closed_error(self) -> ClosedDeviceError:
        """What a call on a shut-down device raises (close() shuts down too: it says which)."""
        return ClosedDeviceError(
            "the device is closed" if self._closed else "the device was shut down"
        )

    def _check_interrupt(self, interrupt: InterruptEvent) -> None:
        self._check_open()  # (a shut-down device says so first)
        if not isinstance(interrupt, InterruptEvent):  # (a threading.Event, say)
            raise TypeError(f"interrupt= takes an InterruptEvent, not {interrupt!r}")
        interrupt._check()

    def _wait(
        self, writable: bool, deadline: float | None, interrupt: InterruptEvent | None = None
    ) -> None:
        remaining = _remaining(deadline)
        if remaining == 0.0:
            raise TimeoutError("timed out waiting for the device")
        if interrupt is None:
            ready = self._queue.wait(writable, remaining, self._waker)
        else:
            intr = interrupt._waker_for(self._queue)
            ready = self._queue.wait(writable, remaining, self._waker, intr)
        if self._shutdown:
            raise self._closed_error()
        if interrupt is not None:
            self._check_interrupt(interrupt)
        if not ready and deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError("timed out waiting for the device")

    # -- readiness --------------------------------------------------------------------------

    def wait_readable(
        self, *, timeout: float | None = None, interrupt: InterruptEvent | None = None
    ) -> bool:
        """Wait until a packet can be read (tun-rs ``wait_readable_intr``); ``False`` when
        ``timeout`` passed first.

        Readiness may be stale by the time you read (another thread read first): follow it
        with ``recv(timeout=0)`` or :meth:`recv_batch` and treat :class:`TimeoutError` / an
        empty batch as "not yet". Packets left over from a split super-packet count as
        readable. :meth:`shutdown` wakes it, and so does ``interrupt`` (see
        :class:`~tunflow.InterruptEvent`).

        Raises:
            ClosedDeviceError: the device was shut down, before or during the wait.
            InterruptedCallError: ``interrupt`` was triggered, before or during the wait.
        """
        return self._wait_ready(False, timeout, interrupt)

    def _wait_ready(
        self, writable: bool, timeout: float | None, interrupt: InterruptEvent | None
    ) -> bool:
        _deadline(timeout)  # a negative timeout is a ValueError, as in recv
        self._check_open()
        if interrupt is not None:
            self._check_interrupt(interrupt)
        if not writable and self._rx is not None and self._rx.pending():
            return True
        if interrupt is None:
            ready = self._queue.wait(writable, timeout, self._waker)
        else:
            intr = interrupt._waker_for(self._queue)
            ready = self._queue.wait(writable, timeout, self._waker, intr)
        self._check_open()
        if interrupt is not None:
            self._check_interrupt(interrupt)
        return ready

    def wait_writable(
        self, *, timeout: float | None = None, interrupt: InterruptEvent | None = None
    ) -> bool:
        """Wait until the device's queue takes a packet (tun-rs ``wait_writable_intr``);
        ``False`` when ``timeout`` passed first. Raises as :meth:`wait_readable`.

        A down link's queue is not writable until the link comes up; a device deleted
        meanwhile ends the wait within a second (``True``: the write raises
        :class:`~tunflow.DeviceGoneError`)."""
        return self._wait_ready(True, timeout, interrupt)

    # -- packets ----------------------------------------------------------------------------

    def recv(
        self, *, timeout: float | None = None, interrupt: InterruptEvent | None = None
    ) -> bytes:
        """Wait for one packet and return it.

        On an offload device this is one plain packet: super-packets are split (the rest of
        the split waits for the next call).

        Args:
            timeout: seconds to wait at most; ``None`` waits for ever.
            interrupt: an :class:`~tunflow.InterruptEvent` whose trigger ends the call (tun-rs
                ``recv_intr``); every blocking call takes one (anything else is a
                :class:`TypeError`, a closed one a :class:`ValueError`).

        Raises:
            TimeoutError: nothing arrived within ``timeout``.
            ClosedDeviceError: the device was shut down or closed.
            DeviceGoneError: the interface was deleted.
            InterruptedCallError: ``interrupt`` was triggered, before or during the call.
        """
        deadline = _deadline(timeout)
        if interrupt is not None:
            self._check_interrupt(interrupt)
        while True:
            if self._shutdown:
                raise self._closed_error()
            try:
                with self._rx_lock:
                    packet = self._nb_recv()
                    # (counted under the lock: threads receiving at once lose no count)
                    self.rx_packets += 1
                    self.rx_bytes += len(packet)
            except BlockingIOError:
                self._wait(False, deadline, interrupt)
                continue
            return packet

    def recv_into(
        self,
        buf: bytearray | memoryview,
        *,
        timeout: float | None = None,
        interrupt: InterruptEvent | None = None,
    ) -> int:
        """Wait for one packet, write it into ``buf`` and return its length (tun-rs ``recv``).

        ``buf`` must hold :attr:`max_size` bytes, so no packet is ever cut short. Raises as
        :meth:`recv`, and:

        Raises:
            ValueError: ``buf`` is smaller than :attr:`max_size` (nothing is read).
            PacketTooLargeError: the next packet is larger than ``buf`` — the MTU was raised
                outside tunflow. With offload it stays queued for :meth:`recv` or a larger
                buffer; without, the kernel cut it short: it is dropped and counted in
                ``statistics().rx_truncated``, and :attr:`max_size` is read again.
        """
        deadline = _deadline(timeout)
        if interrupt is not None:
            self._check_interrupt(interrupt)
        view = byte_view(buf)
        while True:
            if self._shutdown:
                raise self._closed_error()
            try:
                with self._rx_lock:
                    n = self._nb_recv_into(view)
                    self.rx_packets += 1
                    self.rx_bytes += n
            except BlockingIOError:
                self._wait(False, deadline, interrupt)
                continue
            return n

    def send(
        self,
        packet: Buffer,
        *,
        timeout: float | None = None,
        interrupt: InterruptEvent | None = None,
    ) -> int:
        """Write one whole packet; return the bytes written.

        Raises:
            MalformedPacketError: (TUN) not a whole IPv4/IPv6 packet; the message says why.
            PacketTooLargeError: larger than the MTU (TUN) or the device's frame limit.
            ClosedDeviceError: the device was shut down or closed.
            DeviceGoneError: the interface was deleted.
            LinkDownError: the link is down (``EIO``; a :class:`DeviceError`).
            TimeoutError: the queue stayed full for ``timeout`` seconds.
            InterruptedCallError: ``interrupt`` was triggered (nothing was written).

        A shut-down device raises :class:`~tunflow.ClosedDeviceError` whatever the packet.
        """
        try:
            self._check_packet(packet)
        except Exception:
            self._check_open()  # (on the error path only: closed comes first, as on AsyncDevice)
            raise
        deadline = _deadline(timeout)
        if interrupt is not None:
            self._check_interrupt(interrupt)
        queue = self._queue
        while True:
            if self._shutdown:
                raise self._closed_error()
            try:
                n = queue.send(packet)
            except BlockingIOError:
                self._wait(True, deadline, interrupt)
                continue
            self.tx_packets += 1
            self.tx_bytes += n
            return n

    def recv_vectored(
        self,
        buffers: Iterable[bytearray | memoryview],
        *,
        timeout: float | None = None,
        interrupt: InterruptEvent | None = None,
    ) -> int:
        """Wait for one packet, write it across ``buffers`` in order (each filled before the
        next) and return its length (tun-rs ``recv_vectored``: one ``readv`` on Unix).

        The buffers must hold :attr:`max_size` bytes in all; the packet is the bare packet
        :meth:`recv` returns. Raises as :meth:`recv_into`, and:

        Raises:
            ConfigError: more than ``IOV_MAX`` buffers (1024 on Linux and macOS).
            TypeError: one buffer rather than a sequence of them, or a read-only one.
        """
        views = buffer_views(buffers, "recv_vectored", writable=True)
        room = sum(len(v) for v in views)
        deadline = _deadline(timeout)
        if interrupt is not None:
            self._check_interrupt(interrupt)
        while True:
            if self._shutdown:
                raise self._closed_error()
            try:
                with self._rx_lock:
                    n = self._nb_recv_vectored(views, room)
                    self.rx_packets += 1
                    self.rx_bytes += n
            except BlockingIOError:
                self._wait(False, deadline, interrupt)
                continue
            return n

    def send_vectored(
        self,
        buffers: Iterable[Buffer],
        *,
        timeout: float | None = None,
        interrupt: InterruptEvent | None = None,
    ) -> int:
        """Write one packet held across ``buffers``, in order; return the bytes written
        (tun-rs ``send_vectored``: one ``writev`` on Unix).

        The packet is checked as :meth:`send` checks one, and raises as it does, and:

        Raises:
            ConfigError: more than ``IOV_MAX`` buffers (1024 on Linux and macOS).
            TypeError: one buffer rather than a sequence of them.
        """
        try:
            views = buffer_views(buffers, "send_vectored", writable=False)
            self._check_vectored(views)
        except Exception:
            self._check_open()  # (as in send)
            raise
        deadline = _deadline(timeout)
        if interrupt is not None:
            self._check_interrupt(interrupt)
        while True:
            if self._shutdown:
                raise self._closed_error()
            try:
                n = self._nb_send_vectored(views)
            except BlockingIOError:
                self._wait(True, deadline, interrupt)
                continue
            self.tx_packets += 1
            self.tx_bytes += n
            return n

    def recv_batch(
        self,
        batch: PacketBatch | None = None,
        *,
        timeout: float | None = None,
        whole: bool = False,
        interrupt: InterruptEvent | None = None,
    ) -> PacketBatch:
        """Wait for at least one packet, then read until the queue is empty or ``batch`` is full.

        Args:
            batch: where to put the packets (appended after any already there); a new one
                sized by :meth:`new_batch` when ``None``.
            timeout: seconds to wait for the first packet.
            whole: on an offload device, hand out super-packets whole, each with its
                virtio-net header in the batch headroom (``batch.vnet_hdr`` is set), so a
                pipeline can carry them end to end; by default they are split into plain
                packets with complete checksums. Ignored without offload.

        Returns:
            ``batch``, holding at least one more packet than before.

        Raises as :meth:`recv`, and :class:`ValueError` when ``batch`` has no room left —
        :class:`~tunflow.PacketTooLargeError` (offload) when the next packet, larger than the
        MTU tunflow knew (raised outside it), does not fit what is left: it stays the next one.
        """
        if batch is None:
            batch = self.new_batch()
        deadline = _deadline(timeout)
        if interrupt is not None:
            self._check_interrupt(interrupt)
        start = len(batch)
        while True:
            if self._shutdown:
                raise self._closed_error()
            with self._rx_lock:
                got = self._nb_recv_batch(batch, whole)
                if got:
                    self._account_rx(batch, start)
            if got:
                return batch
            self._wait(False, deadline, interrupt)

    def send_batch(
        self,
        batch: PacketBatch,
        *,
        timeout: float | None = None,
        interrupt: InterruptEvent | None = None,
    ) -> int:
        """Write every packet of ``batch`` in order; return how many the caller gave.

        On an offload device, a batch with ``vnet_hdr`` set is written with its headers (super-
        packets pass whole and the kernel segments them); plain packets are first coalesced by
        GRO (see :attr:`gro`). A super-packet the kernel refuses (``EINVAL``) is written split —
        nothing is lost; ``statistics().tx_gso_refused`` counts it. One GRO coalesced also turns
        GRO off for its protocol (TCP or UDP; the other stays on), counted in
        ``statistics().gro_disabled`` (``gro_disabled_tcp``/``gro_disabled_udp`` by protocol);
        one passed through whole leaves GRO as it is.

        A write that raises (``timeout`` passed with the queue full, :meth:`shutdown`, the
        device gone) has written the packets before that point and not the rest; the next
        call starts afresh with its own batch. Those written are counted in
        :meth:`statistics` (``tx_packets``, ``tx_bytes``, ``tx_batches``) where the batch
        went to the queue as given; one that GRO coalesced, or whose virtio-net headers were
        split for a device without offload, counts nothing.
        """
        deadline = _deadline(timeout)
        self._check_open()  # an empty batch too, as the async face does
        if interrupt is not None:
            self._check_interrupt(interrupt)
        self._send(batch, None, deadline, interrupt)
        return len(batch)

    def _send(
        self,
        batch: PacketBatch,
        table: GROTable | None,
        deadline: float | None,
        interrupt: InterruptEvent | None,
    ) -> None:
        """Write ``batch`` (coalesced by ``table``, else the device's own) and count it; a
        write that raises counts what it wrote (:meth:`_account_tx_part`)."""
        # One writer at a time: coalescing reuses one arena, and a refused super-packet's
        # segments are pending state.
        with self._tx_lock:
            out = self._prepare_send_batch(batch, table)
            i = 0
            try:
                while i < len(out):
                    if self._shutdown:
                        raise self._closed_error()
                    try:
                        i = self._nb_send_batch(out, i)
                    except BlockingIOError:
                        self._wait(True, deadline, interrupt)
            except BaseException:
                self._account_tx_part(batch, out, i)
                raise
            finally:
                # (a write that timed out or failed half-way: a refused super-packet's
                # segments still pending go with it — the next batch starts with its own)
                self._fallback = None
            self._account_tx(batch)  # (under the lock: writers at once lose no count)

    def recv_multiple(
        self,
        bufs: Sequence[bytearray | memoryview],
        sizes: list[int],
        offset: int = 0,
        *,
        timeout: float | None = None,
        interrupt: InterruptEvent | None = None,
    ) -> int:
        """tun-rs's ``recv_multiple``: packets into ``bufs[i][offset:]``, lengths into
        ``sizes[i]``; returns how many.

        With offload one read may yield a super-packet of many segments; unlike tun-rs, the
        segments that do not fit in ``bufs`` are kept for the next call, never lost. Each buffer
        needs :attr:`max_size` bytes after ``offset``.

        Raises:
            ValueError: ``len(bufs) != len(sizes)``, no buffers, or a buffer too small.
            TimeoutError: nothing arrived within ``timeout`` (and the other errors of
                :meth:`recv`).
        """
        batch = self._mm_batch(bufs, sizes, offset)
        self.recv_batch(batch, timeout=timeout, interrupt=interrupt)
        return self._mm_scatter(batch, bufs, sizes, offset)

    def send_multiple(
        self,
        gro_table: GROTable | None,
        bufs: Sequence[Buffer],
        offset: int = 0,
        *,
        timeout: float | None = None,
        interrupt: InterruptEvent | None = None,
    ) -> int:
        """tun-rs's ``send_multiple``: write the packets ``bufs[i][offset:]``, coalesced by
        ``gro_table`` (or the device's own table when ``None``) on an offload device; return the
        bytes given. A write that raises counts what it wrote as :meth:`send_batch` does."""
        deadline = _deadline(timeout)
        self._check_open()  # nothing to write too, as send_batch and the async face
        if interrupt is not None:
            self._check_interrupt(interrupt)
        batch = self._mm_gather(bufs, offset)
        self._send(batch, gro_table, deadline, interrupt)
        return batch.nbytes

    def recv_many(
        self,
        max_packets: int,
        *,
        timeout: float | None = None,
        interrupt: InterruptEvent | None = None,
    ) -> list[bytes]:
        """Wait for one packet, then read until the queue is empty, at most ``max_packets``;
        return copies as ``bytes`` (a convenience over :meth:`recv_batch`)."""
        batch = self.new_batch(max_packets)
        return self.recv_batch(batch, timeout=timeout, interrupt=interrupt).to_list()

    def send_many(
        self,
        packets: Sequence[Buffer],
        *,
        timeout: float | None = None,
        interrupt: InterruptEvent | None = None,
    ) -> int:
        """Write each packet in order; return how many were written."""
        for packet in packets:
            self.send(packet, timeout=timeout, interrupt=interrupt)
        return len(packets)

    # -- configuration ----------------------------------------------------------------------

    def name(self) -> str:
        """The interface name (asked from the kernel: it may have been renamed).

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        return self._name()

    def set_name(self, name: str) -> None:
        """Rename the interface. A running link is renamed as it is; a kernel that refuses that
        (``EBUSY``) gets it taken down, renamed and brought up again with its addresses and
        (main table) routes.
        One ``%d`` in ``name`` is replaced by the kernel's first free number.

        Raises:
            ConfigError: not a valid interface name.
            DeviceExistsError: the name is taken.
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._set_name(name)

    def if_index(self) -> int:
        """The interface index."""
        return self._if_index()

    def if_luid(self) -> int:
        """The interface LUID (Windows; tun-rs's ``if_luid``): ``NET_LUID``'s 64-bit value,
        as the IP Helper API takes it — Wintun's ``WintunGetAdapterLUID``, read when the device
        opened (for tap-windows6, ``ConvertInterfaceAliasToLuid``).

        Raises:
            UnsupportedError: not Windows (:meth:`if_index` is the interface's number there),
                or an adopted fd tunflow cannot configure.
            ClosedDeviceError: the device is closed.
        """
        return self._if_luid()

    def mtu(self) -> int:
        """The MTU.

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        return self._mtu()

    def set_mtu(self, mtu: int) -> None:
        """Set the MTU (at least 1280 while the device has IPv6 addresses).

        Raises:
            ConfigError: outside 68..65535, or below 1280 with IPv6 addresses.
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._set_mtu(mtu)

    def mtu_v6(self) -> int:
        """The IPv6 MTU (Windows, where it is a setting of its own; tun-rs's ``mtu_v6``):
        ``NlMtu`` of the IPv6 interface row. :meth:`mtu` is IPv4's.

        Raises:
            UnsupportedError: not Windows (the link has one MTU: :meth:`mtu`), a Windows
                machine without an IPv6 stack, or an adopted fd tunflow cannot configure.
            DeviceError: any other refusal (``winerror`` kept).
        """
        return self._mtu_v6()

    def set_mtu_v6(self, mtu: int) -> None:
        """Set the IPv6 MTU alone (Windows; tun-rs's ``set_mtu_v6``): ``NlMtu`` of the IPv6
        interface row, IPv4's left as it is (:meth:`set_mtu` sets both). The device's size
        limits (:attr:`max_size`, the checks on sending) follow the larger of the two.

        Raises:
            ConfigError: not an int in ``1280..65535``.
            UnsupportedError: not Windows (:meth:`set_mtu` sets the link's MTU, IPv6's among
                it), a Windows machine without an IPv6 stack, or an adopted fd tunflow cannot
                configure.
            DevicePermissionError: not Administrator.
            DeviceError: any other refusal (``winerror`` kept).
        """
        self._set_mtu_v6(mtu)

    def packet_information(self) -> bool:
        """Whether each packet read and written keeps the kernel's 4-byte header
        (:data:`~tunflow.PACKET_INFORMATION_LENGTH`): the builder's
        :meth:`~tunflow.DeviceBuilder.packet_information`, or the last
        :meth:`set_packet_information`. tun-rs's ``ignore_packet_info()`` is its opposite.

        Raises:
            ClosedDeviceError: the device is closed.
        """
        return self._packet_information()

    def set_packet_information(self, on: bool) -> None:
        """Keep (``True``) or remove (``False``) the 4-byte address-family header of each
        packet from the next read or write on (a macOS/iOS utun, a BSD tun; tun-rs's
        ``set_ignore_packet_info(not on)``). The kernel always frames these packets with it:
        only what tunflow hands over and expects changes, so no packet is lost or misread
        across the switch. Each read or write takes the framing once, as it starts: one
        running meanwhile in another thread keeps the old one, and packets already read (a
        batch) keep the framing they were read with. The size limits (:attr:`max_size`) and
        the checks on sending follow.

        Raises:
            ConfigError: ``on`` is not a bool.
            ClosedDeviceError: the device is closed.
            UnsupportedError: Linux (``IFF_NO_PI`` is fixed when the device is opened),
                Windows, Android, or a TAP — whose packets have no such header.
        """
        self._set_packet_information(on)

    def associate_route(self) -> bool:
        """Whether the subnet route of each address is added (and removed) with it (macOS and
        the BSDs; tun-rs's ``associate_route``): the builder's
        :meth:`~tunflow.DeviceBuilder.associate_route`, or the last
        :meth:`set_associate_route`. Always ``False`` for a TAP.

        Raises:
            UnsupportedError: not macOS or a BSD (the system adds that route itself), or an
                adopted fd tunflow cannot configure.
        """
        return self._associate_route()

    def set_associate_route(self, on: bool) -> None:
        """Turn :meth:`associate_route` on or off at run time (macOS and the BSDs; tun-rs's
        ``set_associate_route``), and make the routes follow: on, the subnet route of every
        address the device has now is added through ``PF_ROUTE`` (IPv6 link-local ones aside);
        off, those routes are removed. Later :meth:`add_address_v4` / :meth:`remove_address`
        calls then add or leave the route as the setting says. A route that exists already
        (on) or is gone already (off) is left as it is; when the kernel refuses one, the
        routes this call changed are put back and the setting stays as it was.

        Raises:
            ConfigError: ``on`` is not a bool.
            UnsupportedError: not macOS or a BSD, ``True`` for a TAP (its kernel adds the
                route), or an adopted fd tunflow cannot configure.
            DeviceError: the kernel refused a route (``errno`` kept).
        """
        self._set_associate_route(on)

    def set_metric(self, metric: int) -> None:
        """Set the interface metric (Windows; tun-rs's ``set_metric``), as the builder's
        :meth:`~tunflow.DeviceBuilder.metric` does: ``Metric`` of the IPv4 and IPv6 interface
        rows (``SetIpInterfaceEntry``), with the automatic metric turned off. Windows adds the
        interface metric to each route's own metric to choose a route.

        Raises:
            ConfigError: not an int in ``0..65535``.
            UnsupportedError: not Windows (on Linux a route has a metric of its own:
                ``add_route(..., metric=)``), or an adopted fd tunflow cannot configure.
            DevicePermissionError: not Administrator.
            DeviceError: any other refusal (``winerror`` kept). IPv4's metric is set before
                IPv6's: when IPv6's is refused, IPv4's is already the new one.
        """
        self._set_metric(metric)

    def addresses(self) -> list[IPv4Interface | IPv6Interface]:
        """Every address of the interface, v4 and v6, with prefixes (link-local included).

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        return self._addresses()

    def add_address_v4(
        self,
        address: IPAddressLike,
        prefix: PrefixLike | None = None,
        destination: IPAddressLike | None = None,
    ) -> None:
        """Add an IPv4 address (prefix length or dotted netmask; optional point-to-point peer):
        ``("10.0.0.1", 24)``, or ``"10.0.0.1/24"`` (an ``IPv4Interface``) with no ``prefix``.

        Raises:
            ConfigError: a bad address, prefix or netmask.
            DeviceExistsError: the address is already there.
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._add_address_v4(address, prefix, destination)

    def set_network_address(
        self,
        address: IPAddressLike,
        prefix: PrefixLike | None = None,
        destination: IPAddressLike | None = None,
    ) -> None:
        """Make ``address/prefix`` (or ``"10.0.0.1/24"`` with no ``prefix``) the device's only
        IPv4 address (tun-rs ``set_network_address``), with ``destination`` as its
        point-to-point peer: it is added, then every other IPv4 address removed; IPv6
        addresses stay. Checked before anything changes; a refused add leaves the old ones —
        except on Linux when the address is there with another peer (or none), which goes
        first.

        Raises:
            ConfigError: a bad address, prefix, netmask or destination.
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._set_network_address(address, prefix, destination)

    def add_address_v6(self, address: IPAddressLike, prefix: PrefixLike | None = None) -> None:
        """Add an IPv6 address (usable when the call returns: no duplicate detection):
        ``("fd00::1", 64)``, or ``"fd00::1/64"`` (an ``IPv6Interface``) with no ``prefix``.

        Raises:
            ConfigError: a bad address or prefix, or the MTU is below 1280.
            DeviceExistsError: the address is already there.
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            DeviceError: IPv6 is disabled on the interface (``EACCES``; the message names the
                ``disable_ipv6`` sysctl).
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._add_address_v6(address, prefix)

    def remove_address(self, address: IPAddressLike) -> None:
        """Remove an address (v4 or v6). Given without a prefix, the first with the IP goes;
        with one (``"10.0.0.1/16"``, or an entry of :meth:`addresses`), exactly that address.

        Raises:
            ConfigError: not an IP address (with a valid prefix, if one is given), or an
                IPv6 address with a scope (``%zone``), which no interface address takes.
            DeviceError: the address (with that prefix) is not on the interface
                (``EADDRNOTAVAIL``).
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._remove_address(address)

    def routes(self) -> list[Route]:
        """The unicast routes through the interface (main table), the kernel's own included.

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        return self._routes()

    def add_route(
        self, cidr: NetworkLike, gateway: IPAddressLike | None = None, metric: int | None = None
    ) -> None:
        """Route ``cidr`` into the device, optionally via ``gateway`` with ``metric``.

        Raises:
            ConfigError: not a network (host bits set), or a gateway of the other family,
                with a prefix or with an IPv6 scope (as ``ip route`` refuses them).
            DeviceExistsError: the route exists.
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._add_route(cidr, gateway, metric)

    def remove_route(
        self, cidr: NetworkLike, gateway: IPAddressLike | None = None, metric: int | None = None
    ) -> None:
        """Remove a route added with :meth:`add_route` (or by the builder).

        ``gateway`` and ``metric`` narrow the match (``metric=0`` too: a route at metric 0, or
        for IPv6 the one an :meth:`add_route` with metric 0 made); without them the first
        route to ``cidr`` through the device goes — on Linux, for IPv6, the one at the kernel's
        default metric (an :meth:`add_route` without a metric) before one with a lower metric,
        such as the kernel's own prefix route.

        Raises:
            ConfigError: not a network.
            DeviceError: no such route (``ESRCH``).
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._remove_route(cidr, gateway, metric)

    def mac_address(self) -> str:
        """The MAC address of a TAP device as ``"aa:bb:cc:dd:ee:ff"``.

        Raises:
            UnsupportedError: a TUN has no MAC address, or the fd is not configurable.
            DeviceNotFoundError: the interface is gone.
            DeviceError: any other refusal (``errno`` kept).
        """
        return self._mac_address()

    def set_mac_address(self, mac: str | bytes) -> None:
        """Set the MAC address of a TAP device.

        Raises:
            ConfigError: not a unicast MAC address.
            UnsupportedError: a TUN has no MAC address, or the fd is not configurable.
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._set_mac_address(mac)

    def enabled(self, up: bool) -> None:
        """Bring the link up (``True``) or down (``False``; the kernel then drops the link's
        IPv6 addresses and its routes).

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._enabled(up)

    def is_running(self) -> bool:
        """Whether the link is up and running.

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        return self._is_running()

    def link_events(
        self, *, timeout: float | None = None, interrupt: InterruptEvent | None = None
    ) -> LinkEvents:
        """Watch the link: a blocking iterator of :class:`~tunflow.LinkEvent` — the state now
        (``"up"`` or ``"down"``), then each change (``"up"``, ``"down"``, ``"mtu"``) and
        ``"removed"`` when the interface is deleted or moved to another network namespace
        (wireguard-go's ``Events()``). Linux only.

        The iteration ends after ``"removed"`` or when the device is shut down; waiting longer
        than ``timeout`` for an event raises :class:`TimeoutError`, and ``interrupt`` (an
        :class:`~tunflow.InterruptEvent`) ends a wait with
        :class:`~tunflow.InterruptedCallError`. ``with`` releases its netlink socket::

            with dev.link_events() as events:
                for event in events:
                    print(event.kind, event.mtu)

        Raises:
            UnsupportedError: not Linux, or an adopted fd tunflow cannot configure.
            ClosedDeviceError: the device was shut down or closed.
            DeviceNotFoundError: the interface is gone.
            TypeError: ``interrupt`` is not an :class:`~tunflow.InterruptEvent`.
        """
        _deadline(timeout)
        self._check_open()
        if interrupt is not None and not isinstance(interrupt, InterruptEvent):
            raise TypeError(f"interrupt= takes an InterruptEvent, not {interrupt!r}")
        return LinkEvents(open_tracker(self._iface()), self, timeout, interrupt)

    def broadcast(self) -> IPv4Address | None:
        """The broadcast address of the device's first IPv4 address (Linux
        ``SIOCGIFBRDADDR``); ``None`` when it has none, or the device has no IPv4 address.

        Raises:
            UnsupportedError: not Linux, or the device was adopted from an fd tunflow cannot
                configure.
            DeviceNotFoundError: the interface is gone.
            DeviceError: any other refusal (``errno`` kept).
        """
        return self._broadcast()

    def set_broadcast(self, address: IPAddressLike) -> None:
        """Set the broadcast address of the device's first IPv4 address (Linux
        ``SIOCSIFBRDADDR``; ``"0.0.0.0"`` clears it).

        The kernel takes the address out and puts it back to change it, dropping its secondary
        addresses and, when it is the device's only IPv4 address, every route through the
        device: tunflow puts them back (main-table routes, as :meth:`set_name` does). It puts
        the address back behind the device's other primary addresses (of other subnets), so
        with several the first is then another one, whose broadcast :meth:`broadcast` reads.

        Raises:
            ConfigError: not an IPv4 address.
            DeviceError: the device has no IPv4 address (``EADDRNOTAVAIL``), or any other
                refusal (``errno`` kept).
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: not Linux, or the device was adopted from an fd tunflow cannot
                configure.
        """
        self._set_broadcast(address)

    def tx_queue_len(self) -> int:
        """The transmit queue length.

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        return self._tx_queue_len()

    def set_tx_queue_len(self, length: int) -> None:
        """Set the transmit queue length.

        Raises:
            ConfigError: a negative length.
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._set_tx_queue_len(length)

    def owner(self, uid: int) -> None:
        """Let user ``uid`` open the device without CAP_NET_ADMIN (Linux ``TUNSETOWNER``;
        tun-rs's ``user(uid)``), as the builder's :meth:`~tunflow.DeviceBuilder.owner` does.

        Raises:
            ConfigError: not an id in ``0..0xFFFFFFFE`` (the kernel has no call that takes the
                user off again).
            UnsupportedError: not Linux, or the device was adopted from an fd tunflow cannot
                configure.
            DeviceNotFoundError: the interface is gone.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._set_owner(uid, False)

    def group(self, gid: int) -> None:
        """Let group ``gid`` open the device without CAP_NET_ADMIN (Linux ``TUNSETGROUP``;
        tun-rs's ``group(gid)``), as the builder's :meth:`~tunflow.DeviceBuilder.group` does.

        Raises:
            ConfigError: not an id in ``0..0xFFFFFFFE`` (the kernel has no call that takes the
                group off again).
            UnsupportedError: not Linux, or the device was adopted from an fd tunflow cannot
                configure.
            DeviceNotFoundError: the interface is gone.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._set_owner(gid, True)

    def persist(self, enabled: bool = True) -> None:
        """Keep the interface after its last queue closes (Linux ``TUNSETPERSIST``, tun-rs's
        ``persist()``), as the builder's :meth:`~tunflow.DeviceBuilder.persist` does; with
        ``False``, stop keeping it: a persistent device (one attached to, or made by ``ip tuntap
        add``) then goes away, with its addresses and routes, when its last queue closes. On
        the BSDs and a macOS feth TAP it decides whether closing the device destroys the
        interface (``SIOCIFDESTROY``): ``False`` destroys what a build without ``persist``
        would have, or a device attached to.

        Raises:
            ConfigError: ``enabled`` is not a bool.
            UnsupportedError: Windows; ``True`` for a device whose kernel destroys it with its
                fd (a utun, NetBSD's cloned tap); or the device was adopted from an fd tunflow
                cannot configure.
            DeviceNotFoundError: the interface is gone.
            DeviceError: any other refusal (``errno`` kept).
        """
        self._persist(enabled)

    def version(self) -> str:
        """The version of the driver behind the device (Windows): Wintun's ``"major.minor"``
        (``WintunGetRunningDriverVersion``), tap-windows6's ``"major.minor"`` with
        ``" (debug)"`` for a debug build (``TAP_WIN_IOCTL_GET_VERSION``).

        Raises:
            UnsupportedError: not Windows (the kernel's own driver has no version of its own),
                or an adopted fd tunflow cannot configure.
            DeviceNotFoundError: the Wintun driver is not loaded (``ERROR_FILE_NOT_FOUND``).
            DeviceError: any other refusal (``winerror`` kept).
        """
        return self._version()

    def set_dns_servers(self, servers: Sequence[IPAddressLike]) -> None:
        """Set the interface's DNS servers (Windows), as the builder's ``dns_servers`` does:
        the servers of each family given replace that family's, in the order given; a family
        not given keeps its servers. Both families may be in one list (tun-rs takes one family
        a call). ``SetInterfaceDnsSettings`` (Windows 10 2004+) per family, else ``netsh``;
        then the resolver cache is flushed (``DnsFlushResolverCache``, best effort).

        Raises:
            ConfigError: not a list of addresses (one address alone, too), an empty one
                (:meth:`clear_dns_servers` removes servers), or an unspecified or multicast
                address.
            UnsupportedError: not Windows (on Linux the resolver holds DNS servers:
                ``resolvectl dns``), or an adopted fd tunflow cannot configure.
            DevicePermissionError: not Administrator.
            DeviceError: any other refusal (``winerror`` kept). IPv4's servers are set before
                IPv6's: when IPv6's are refused, IPv4's are already the new ones.
        """
        self._set_dns_servers(servers)

    def clear_dns_servers(self, version: int | None = None) -> None:
        """Remove the interface's DNS servers (Windows) of IP ``version`` 4 or 6, or of both
        (``None``, the default); tun-rs's ``clear_dns_servers(is_ipv4)``. An empty
        ``NameServer`` through ``SetInterfaceDnsSettings``, else ``netsh … source=dhcp``;
        then the resolver cache is flushed (best effort).

        Raises:
            ConfigError: ``version`` is not 4, 6 or ``None``.
            UnsupportedError: not Windows, or an adopted fd tunflow cannot configure.
            DevicePermissionError: not Administrator.
            DeviceError: any other refusal (``winerror`` kept).
        """
        self._clear_dns_servers(version)

    def statistics(self) -> DeviceStatistics:
        """Counters of this queue: packets and bytes each way, batches, offload."""
        return super().statistics()
