"""``AsyncDevice``: the anyio face of a TUN/TAP device — asyncio, uvloop and trio alike.

A device carries whole packets and the kernel drops them when its queue overflows, so this is an
:class:`anyio.abc.UnreliableObjectStream` of ``bytes`` (as anyio's ``ConnectedUDPSocket``), with
batch methods beside it for the hot path. Waiting for readability keeps the fd registered with
the event loop between waits on asyncio and uvloop (``tunflow._readiness.ReadWaiter``; anyio's
``wait_readable`` on trio); reads go on until the kernel has nothing left before waiting
again, so a burst costs one wait.
"""

from __future__ import annotations

import select
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel
from anyio import TypedAttributeSet, typed_attribute
from anyio.abc import UnreliableObjectStream

from .._readiness import DECLINED, LONE, MORE, NOTHING, ReadWaiter
from ..errors import ClosedDeviceError, DeviceGoneError, UnsupportedError
from ..netconfig.device import DeviceConfig, IPAddressLike, Layer, NetworkLike, PrefixLike
from ..offload import GROTable
from ..packet import MAX_PACKET_SIZE, PacketBatch
from ..platform._base import Buffer, LoneQueue, OffloadInfo, Route
from ..platform._unix import WRITE_RECHECK, poll_wait
from ._core import (
    DeviceCore,
    DeviceStatistics,
    SharedInterface,
    adopt_fd,
    buffer_views,
    byte_view,
)
from ._links import AsyncLinkEvents, open_tracker

if TYPE_CHECKING:
    from ._sync import SyncDevice

__all__ = ["AsyncDevice", "DeviceAttribute"]

T = TypeVar("T")


class DeviceAttribute(TypedAttributeSet):
    """Typed attributes of a device stream: ``device.extra(DeviceAttribute.mtu)``.

    They reach through wrappers, as anyio's socket attributes do.
    """

    #: the interface name (as last set through this device)
    name: str = typed_attribute()
    #: the interface index
    index: int = typed_attribute()
    #: the MTU (as last set through this device)
    mtu: int = typed_attribute()
    #: the queue's file descriptor
    fileno: int = typed_attribute()
    #: which queue of a multi-queue device (0 for the first)
    queue: int = typed_attribute()
    #: what offload the kernel granted
    offload: OffloadInfo = typed_attribute()
    #: L3 (TUN) or L2 (TAP)
    layer: Layer = typed_attribute()


class AsyncDevice(DeviceCore, UnreliableObjectStream[bytes]):
    """A TUN/TAP device as an anyio stream of packets.

    Each :meth:`receive` returns one packet, ``async for packet in device`` works, and
    :meth:`send` writes one. :meth:`recv_batch`/:meth:`send_batch` move many per wait.
    Configuration methods are coroutines (they run the netlink calls in a worker thread, so a
    stalled kernel lock never blocks the event loop).

    * :meth:`aclose` wakes a blocked receiver with :class:`anyio.ClosedResourceError`
      (precisely :class:`~tunflow.ClosedDeviceError`, a subclass); configuration calls then
      raise it too.
    * Two tasks receiving at once: the second gets :class:`anyio.BusyResourceError`.
    * A deleted interface: :class:`anyio.BrokenResourceError` (precisely
      :class:`~tunflow.DeviceGoneError`).

    Example:
        >>> import anyio
        >>> from tunflow import DeviceBuilder
        >>> async def main() -> None:
        ...     async with DeviceBuilder().ipv4("10.0.0.1", 24).build_async() as dev:
        ...         async for packet in dev:
        ...             print(len(packet))
        >>> anyio.run(main)                                       # doctest: +SKIP
    """

    def __init__(self, shared: SharedInterface, queue: Any, *, queue_index: int = 0) -> None:
        DeviceCore.__init__(self, shared, queue)
        self._receiving = False
        self._sending = False
        # the last batch read found one packet (and then nothing): traffic at rest
        self._lone = False
        self._queue_index = queue_index
        self._fd = queue.fileno()
        self._reader = ReadWaiter(self._fd)
        # the queue, if it reads and writes a lone packet at rest its own way (an FdQueue)
        self._lone_queue: LoneQueue | None = queue if hasattr(queue, "recv_lone") else None
        self._thread_waker: Any = None
        # the link events opened through this face: closing it ends them
        self._link_events: weakref.WeakSet[AsyncLinkEvents] = weakref.WeakSet()
        self._attrs: dict[str, Any] = {}
        if shared.interface is not None:
            try:
                iface = shared.interface
                self._attrs = {"name": iface.name(), "index": iface.if_index(), "mtu": iface.mtu()}
            except Exception:
                self._attrs = {}

    @classmethod
    def _build(cls, config: DeviceConfig) -> AsyncDevice:
        from .. import platform

        interface, queue = platform.current().open_device(config)
        return cls(SharedInterface(interface, config.layer, config.packet_information), queue)

    @classmethod
    def from_fd(
        cls, fd: int, *, layer: Layer = Layer.L3, packet_information: bool = False
    ) -> AsyncDevice:
        """Adopt ``fd``, as :meth:`SyncDevice.from_fd` does; the device closes it."""
        return cls._adopt(fd, close_fd=True, layer=layer, packet_information=packet_information)

    @classmethod
    def borrow_fd(
        cls, fd: int, *, layer: Layer = Layer.L3, packet_information: bool = False
    ) -> AsyncDevice:
        """Like :meth:`from_fd`; the fd stays open after :meth:`aclose`."""
        return cls._adopt(fd, close_fd=False, layer=layer, packet_information=packet_information)

    @classmethod
    def _adopt(
        cls, fd: int, *, close_fd: bool, layer: Layer, packet_information: bool
    ) -> AsyncDevice:
        interface, queue = adopt_fd(
            fd, close_fd=close_fd, layer=layer, packet_information=packet_information
        )
        real_layer = getattr(interface, "layer", None) or getattr(queue, "layer", None) or layer
        return cls(SharedInterface(interface, real_layer, packet_information), queue)

    @classmethod
    def from_sync(cls, device: SyncDevice) -> AsyncDevice:
        """Take over ``device`` (tun-rs ``AsyncDevice::new(sync_device)``): its queue and fd,
        its offload state (a split super-packet's segments still to hand out, the GRO table)
        and its counters, and the duty to close them — :meth:`aclose` does what
        ``device.close()`` would have done (a non-persistent device this process made goes
        away). A multi-queue clone hands over its queue; the other queues stay where they are.

        ``device`` is left closed: its calls raise :class:`~tunflow.ClosedDeviceError`, a
        thread blocked in one is woken as by ``device.close()``, and its ``close()`` does
        nothing more. A borrowed device (:meth:`SyncDevice.borrow_fd`) is taken over as
        borrowed: the fd stays open after :meth:`aclose`. A plain method, as
        :meth:`DeviceBuilder.build_async`: call it from inside the event loop.

        Raises:
            ClosedDeviceError: ``device`` is closed or shut down (nothing is taken).
            TypeError: ``device`` is not a :class:`~tunflow.SyncDevice`.
        """
        from ._sync import SyncDevice

        if not isinstance(device, SyncDevice):
            raise TypeError(f"from_sync takes a SyncDevice, not {device!r}")

        def take(queue: Any) -> AsyncDevice:
            new = cls(device._shared, queue, queue_index=device._queue_index)
            new._take_state(device)
            return new

        return device._hand_over(take)

    def into_fd(self) -> int:
        """Give up the queue's fd to the caller, as :meth:`SyncDevice.into_fd` does (the caller
        owns it now; read what that says): the device is closed as by :meth:`aclose`, a
        blocked receiver woken with :class:`~tunflow.ClosedDeviceError`, but the fd stays
        open and nothing the build set is undone. Call it in the event loop's thread (the loop
        lets go of the fd before it returns).

        Raises:
            ClosedDeviceError: the device is closed.
            UnsupportedError: the device has no fd to give (Windows, a macOS feth TAP), or
                its fd was borrowed (:meth:`borrow_fd`).
            RuntimeError: called outside the event loop's thread (a worker thread).
        """
        self._check_open()
        if not _in_event_loop():
            raise RuntimeError(
                "into_fd: call it in the event loop's thread (the loop lets go of the fd "
                "there, before the fd is returned)"
            )
        queue: Any = self._queue
        if not hasattr(queue, "detach") or queue.fileno() < 0:
            raise UnsupportedError("into_fd: this device's queue is not one fd it can give up")
        if not queue.owns_fd:
            raise UnsupportedError(
                "into_fd: the fd was borrowed (borrow_fd): its owner has it already, and "
                "aclose() leaves it open"
            )
        iface: Any = self._shared.interface
        if getattr(iface, "destroy", None) is not None:
            iface.keep = True  # (a BSD interface: not destroyed when the device lets go)
        fd = queue.fileno()
        self._close_now(queue.detach)
        return fd  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<AsyncDevice fd={self._fd} {'closed' if self._closed else 'open'}>"

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self._close_now()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        attrs: dict[Any, Callable[[], Any]] = {
            DeviceAttribute.fileno: self._queue.fileno,
            DeviceAttribute.queue: lambda: self._queue_index,
            DeviceAttribute.offload: lambda: self._queue.offload,
            DeviceAttribute.layer: lambda: self._shared.layer,
        }
        if "name" in self._attrs:
            attrs[DeviceAttribute.name] = lambda: self._attrs["name"]
            attrs[DeviceAttribute.index] = lambda: self._attrs["index"]
            attrs[DeviceAttribute.mtu] = lambda: self._attrs["mtu"]
        return attrs

    def fileno(self) -> int:
        """The queue's fd (-1 once closed)."""
        return self._queue.fileno()

    # -- lifecycle --------------------------------------------------------------------------

    def _close_now(self, release: Callable[[], object] | None = None) -> None:
        """Close the face; ``release`` lets go of the queue (its ``close``, by default)."""
        if self._closed:
            return
        self._closed = True
        fd = self._queue.fileno()
        self._fd = -1
        if fd >= 0 and _in_event_loop():
            anyio.notify_closing(fd)
        if self._thread_waker is not None:
            self._thread_waker.wake()
        in_loop = _in_event_loop()
        for events in list(self._link_events):
            if in_loop:
                events._close()
            else:
                # (a finalizer: a loop may be waiting on the socket, which must stay open)
                events._tracker.ended = True

        def close_queue() -> None:
            try:
                (release or self._queue.close)()
            finally:
                self._shared.release()

        # the fd closes only once the event loop let go of it (from a finalizer in another
        # thread that is later, on the loop's thread)
        self._reader.close(then=close_queue)

    async def aclose(self) -> None:
        """Close the queue; a blocked receiver raises :class:`~tunflow.ClosedDeviceError`."""
        self._close_now()
        await anyio.lowlevel.checkpoint()

    async def try_clone(self) -> AsyncDevice:
        """Open another queue of this multi-queue device (see :meth:`SyncDevice.try_clone`).

        Cancel-safe: a cancelled call has opened nothing.
        """
        # The checkpoint first: after it nothing can be cancelled, so the queue opened is
        # the caller's (a queue no one reads gets its share of the flows all the same).
        await anyio.lowlevel.checkpoint()
        self._check_open()
        # In this thread, not a worker: TUNSETIFF acts in the calling thread's network
        # namespace, and a cached worker thread may sit in another one. It never blocks.
        queue = self._shared.require().open_queue()
        self._shared.queues_opened += 1
        return AsyncDevice(self._shared, queue, queue_index=self._shared.queues_opened)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedDeviceError("the device is closed")

    async def _wait_readable(self) -> None:
        # not at rest until a batch read finds the queue empty again: what woke a wait may go
        # unread — the call cancelled after the wake, or its read raising (a deleted device:
        # uvloop's only report of that error) — and the next wait would never be woken.
        # (uvloop, libuv, also stops polling the fd on that report, keeping its dead poll filed
        # under the fd: a read that finds the device gone renews the registration, or the
        # next wait, a readable(), would never be woken either.)
        self._lone = False
        if self._fd < 0:
            await self._wait_in_thread(False)
            return
        try:
            await self._reader.wait()
        except anyio.ClosedResourceError:
            raise ClosedDeviceError("the device was closed while waiting") from None

    async def _wait_writable(self) -> None:
        if self._fd < 0:
            await self._wait_in_thread(True)
            return
        try:
            while True:
                # (deleting the device wakes its readers only: look again now and then)
                with anyio.move_on_after(WRITE_RECHECK):
                    try:
                        await anyio.wait_writable(self._fd)
                    except RuntimeError:
                        # uvloop: the reader's poll of the fd, dead since the fd reported an
                        # error (a deleted device; see _wait_readable), is still filed under
                        # it. Drop it; the fd reports its error to poll() too.
                        self._reader.renew()
                        if not poll_wait(self._fd, select.POLLOUT, 0, None):
                            raise
                    return
                # an aclose() in the turn the recheck ended found the wait cancelled already
                # and woke nothing: say so (the fd is -1 now; polling it was a ValueError)
                self._check_open()
                if poll_wait(self._fd, select.POLLOUT, 0, None):
                    return  # writable, or gone: the write says which
        except anyio.ClosedResourceError:
            raise ClosedDeviceError("the device was closed while waiting") from None

    async def _wait_in_thread(self, writable: bool) -> None:
        # Queues that are not pollable fds (Wintun's ring and read event on Windows) are waited
        # on by a worker thread; aclose() or a cancellation fires the waker to free it.
        waker = self._queue.make_waker()  # type: ignore[attr-defined]
        self._thread_waker = waker
        try:
            await anyio.to_thread.run_sync(
                self._queue.wait, writable, None, waker, abandon_on_cancel=True
            )
        finally:
            self._thread_waker = None
            waker.wake()
            waker.close()
        self._check_open()

    def _begin_send(self) -> None:
        # A batch write may wait half-way, and on an offload device its coalescing arena is
        # reused by the next one: two tasks writing batches at once would mix them up. (A
        # flag and try/finally at the call sites, not a context manager: this is per batch.)
        if self._sending:
            raise anyio.BusyResourceError("sending a batch to")
        self._sending = True

    def _begin_receive(self) -> None:
        if self._receiving:
            raise anyio.BusyResourceError("receiving from")
        self._check_open()
        self._receiving = True

    # -- readiness --------------------------------------------------------------------------

    async def readable(self) -> None:
        """Wait until a packet can be read (tun-rs ``readable()``); follow it with
        :meth:`receive_nowait` or :meth:`recv_batch`.

        Cancel-safe. Readiness may be stale by the time you read (``anyio.WouldBlock``: wait
        again). Packets left over from a split super-packet count as readable.

        Raises:
            ClosedDeviceError: the device was closed, before or during the wait.
            anyio.BusyResourceError: another task is receiving or waiting to.
        """
        await anyio.lowlevel.checkpoint()
        self._begin_receive()
        try:
            if self._rx is not None and self._rx.pending():
                pass
            elif self._reader.armed or self._fd < 0:
                await self._wait_readable()
                self._check_open()
            else:
                # a report was passed over since the last wait (uvloop's only report of an
                # error: a deleted device): a wait would never be woken — say readable, the
                # read finds out (and reads first in a recv_batch: not at rest)
                self._reader.armed = True
                self._lone = False
        finally:
            self._receiving = False

    async def writable(self) -> None:
        """Wait until the device's queue takes a packet (tun-rs ``writable()``); follow it
        with :meth:`send_nowait`. Cancel-safe. A down link's queue is not writable until the
        link comes up; a device deleted meanwhile ends the wait within a second (the write
        raises :class:`~tunflow.DeviceGoneError`).

        Raises:
            ClosedDeviceError: the device was closed, before or during the wait.
            anyio.BusyResourceError: another task is already waiting for the queue to take a
                packet (here or in a send that found it full).
        """
        await anyio.lowlevel.checkpoint()
        self._check_open()
        await self._wait_writable()
        self._check_open()

    # -- packets: the stream ----------------------------------------------------------------

    async def receive(self) -> bytes:
        """Wait for one packet and return it (the anyio stream method).

        Raises:
            ClosedDeviceError: the device was closed (an ``anyio.ClosedResourceError``).
            DeviceGoneError: the interface was deleted (an ``anyio.BrokenResourceError``).
            anyio.BusyResourceError: another task is already receiving.
        """
        await anyio.lowlevel.checkpoint()  # see recv_batch
        self._begin_receive()
        try:
            while True:
                try:
                    packet = self._nb_recv()
                    break
                except BlockingIOError:
                    await self._wait_readable()
                    self._check_open()
        except DeviceGoneError:
            self._reader.renew()  # see _wait_readable
            raise
        finally:
            self._receiving = False
        self.rx_packets += 1
        self.rx_bytes += len(packet)
        return packet

    recv = receive

    async def recv_into(self, buf: bytearray | memoryview) -> int:
        """Wait for one packet, write it into ``buf``, return its length (tun-rs ``recv``).

        ``buf`` must hold :attr:`max_size` bytes. Raises as :meth:`receive`, and as
        :meth:`SyncDevice.recv_into` for a buffer too small.
        """
        await anyio.lowlevel.checkpoint()  # see recv_batch
        view = byte_view(buf)  # (before the device is taken: a TypeError must not keep it)
        self._begin_receive()
        try:
            while True:
                try:
                    n = self._nb_recv_into(view)
                    break
                except BlockingIOError:
                    await self._wait_readable()
                    self._check_open()
        except DeviceGoneError:
            self._reader.renew()  # see _wait_readable
            raise
        finally:
            self._receiving = False
        self.rx_packets += 1
        self.rx_bytes += n
        return n

    async def send(self, item: Buffer) -> None:
        """Write one whole packet (the anyio stream method).

        Raises:
            MalformedPacketError: (TUN) not a whole IPv4/IPv6 packet; the message says why.
            PacketTooLargeError: larger than the MTU (TUN) or the device's frame limit.
            ClosedDeviceError: the device is closed.
            DeviceGoneError: the interface was deleted.
            LinkDownError: the link is down (``EIO``; a :class:`DeviceError`).
            anyio.BusyResourceError: the queue is full and another task already waits for it
                to take a packet (as :meth:`writable`).
        """
        await anyio.lowlevel.checkpoint()  # see recv_batch
        self._check_open()
        self._check_packet(item)
        queue = self._queue
        while True:
            try:
                n = queue.send(item)
                break
            except BlockingIOError:
                await self._wait_writable()
                self._check_open()
        self.tx_packets += 1
        self.tx_bytes += n

    async def recv_vectored(self, buffers: Iterable[bytearray | memoryview]) -> int:
        """Wait for one packet, write it across ``buffers`` in order and return its length
        (tun-rs ``recv_vectored``). Raises as :meth:`recv_into` and as
        :meth:`SyncDevice.recv_vectored` for the buffers."""
        await anyio.lowlevel.checkpoint()  # see recv_batch
        views = buffer_views(buffers, "recv_vectored", writable=True)
        room = sum(len(v) for v in views)
        self._begin_receive()
        try:
            while True:
                try:
                    n = self._nb_recv_vectored(views, room)
                    break
                except BlockingIOError:
                    await self._wait_readable()
                    self._check_open()
        except DeviceGoneError:
            self._reader.renew()  # see _wait_readable
            raise
        finally:
            self._receiving = False
        self.rx_packets += 1
        self.rx_bytes += n
        return n

    async def send_vectored(self, buffers: Iterable[Buffer]) -> int:
        """Write one packet held across ``buffers``, in order; return the bytes written
        (tun-rs ``send_vectored``). The packet is checked and raises as in :meth:`send`, and
        as :meth:`SyncDevice.send_vectored` for the buffers."""
        await anyio.lowlevel.checkpoint()  # see recv_batch
        self._check_open()
        views = buffer_views(buffers, "send_vectored", writable=False)
        self._check_vectored(views)
        while True:
            try:
                n = self._nb_send_vectored(views)
                break
            except BlockingIOError:
                await self._wait_writable()
                self._check_open()
        self.tx_packets += 1
        self.tx_bytes += n
        return n

    def receive_nowait(self) -> bytes:
        """One packet if one is waiting, else :class:`anyio.WouldBlock`."""
        self._begin_receive()
        try:
            packet = self._nb_recv()
        except BlockingIOError:
            raise anyio.WouldBlock from None
        except DeviceGoneError:
            self._reader.renew()  # see _wait_readable
            raise
        finally:
            self._receiving = False
        self.rx_packets += 1
        self.rx_bytes += len(packet)
        return packet

    def send_nowait(self, item: Buffer) -> None:
        """Write one packet if the queue takes it now, else :class:`anyio.WouldBlock`."""
        self._check_open()
        self._check_packet(item)
        try:
            n = self._queue.send(item)
        except BlockingIOError:
            raise anyio.WouldBlock from None
        self.tx_packets += 1
        self.tx_bytes += n

    # -- packets: batches -------------------------------------------------------------------

    async def recv_batch(
        self, batch: PacketBatch | None = None, *, whole: bool = False
    ) -> PacketBatch:
        """Wait for at least one packet, then read until the kernel queue is empty or the batch
        is full. One checkpoint per batch.

        Args:
            batch: appended to; a new one sized by :meth:`new_batch` when ``None``.
            whole: on an offload device, hand out super-packets whole with their virtio-net
                headers (see :meth:`SyncDevice.recv_batch`).

        Raises as :meth:`receive`, and :class:`ValueError` when ``batch`` has no room left.
        """
        if batch is None:
            batch = self.new_batch()
        # The checkpoint comes first: cancellation is checked and other tasks get a turn
        # before anything is read, so a cancelled call has read nothing. (The same as
        # checking first and yielding after a read that did not wait, in one step: on
        # asyncio a bare yield, where the check walks the cancel scopes and the shielded
        # yield builds a cancel scope — ~130 lines of Python a call, ~1/3 of what a batch
        # costs on its way through a tunnel.) At rest the wait is the checkpoint instead.
        wait_first = self._waits_first(batch)
        if not wait_first:
            await anyio.lowlevel.checkpoint()
        self._begin_receive()
        start = len(batch.offsets)
        try:
            if wait_first:
                await self._wait_readable()
                self._check_open()
            while not self._nb_recv_batch(batch, whole):
                await self._wait_readable()
                self._check_open()
        except DeviceGoneError:
            self._reader.renew()  # see _wait_readable
            raise
        finally:
            self._receiving = False
        self._lone = len(batch.offsets) - start == 1
        self._account_rx(batch, start)
        return batch

    def _waits_first(self, batch: PacketBatch) -> bool:
        # After a batch of one packet (a ping, a request: the next one is most likely a round
        # trip away) recv_batch waits before it reads, instead of a checkpoint and a read that
        # finds nothing — ~80 lines of Python and a system call less per packet at rest. Only
        # when the wait cannot miss what is there already (an fd registered with nothing passed
        # over since: ReadWaiter.armed; no packets of an earlier read held back), and not when
        # the call raises without reading (busy, closed, no room), which does so at once.
        return (
            self._lone
            and self._reader.armed
            and self._fd >= 0
            and not self._receiving
            and not self._closed
            and (self._rx is None or not self._rx.pending())
            and batch.room() > MAX_PACKET_SIZE
        )

    # -- a tunnel lane's express path (see ReadWaiter.serve and the pipeline engine) -------

    def _express_ready(self, batch: PacketBatch) -> bool:
        """Whether a lane reading into ``batch`` may wait in :meth:`_express_wait` now: at
        rest (as :meth:`recv_batch` waits first) on an event loop that calls back."""
        return self._reader.serves and self._waits_first(batch)

    async def _express_wait(self, step: Callable[[], bool]) -> None:
        """Wait until readable, calling ``step`` (which reads with :meth:`_express_recv`) from
        the event loop's reader callback meanwhile; return when it wants the task."""
        self._lone = False  # as in _wait_readable
        try:
            await self._reader.serve(step)
        except anyio.ClosedResourceError:
            if not self._closed:
                raise  # the step's: the lane's sink was closed, not this device
            raise ClosedDeviceError("the device was closed while waiting") from None

    def _express_recv(self, batch: PacketBatch, whole: bool) -> int:
        """:meth:`recv_batch`'s reading, without waiting, into the empty ``batch``: ``LONE``,
        ``MORE`` (a batch, or a packet with more to hand out), ``NOTHING`` or ``DECLINED``
        (another task reads, or the device closed: the lane's task calls recv_batch, which
        says so)."""
        if self._receiving or self._closed:
            return DECLINED
        rx = self._rx
        queue = self._lone_queue
        if queue is not None and (rx is None or (whole and not rx.pending())):
            # straight to the queue, whose read at rest mostly brings one packet (what
            # _nb_recv_batch does, without its layers: a lone packet's Python lines count)
            n = queue.recv_lone(batch, self.max_size if rx is None else MAX_PACKET_SIZE)
            if n and rx is not None:
                rx.count_super_packets(batch, 0)
            if queue.rx_truncated != self._cuts_seen:
                self._learn_cuts(queue.rx_truncated)
        else:
            n = self._nb_recv_batch(batch, whole)
        if not n:
            return NOTHING
        self._lone = n == 1
        self._account_rx(batch, 0)
        if n == 1 and (self._rx is None or not self._rx.pending()):
            return LONE
        return MORE

    def _express_send(self, batch: PacketBatch) -> bool:
        """:meth:`send_batch` without waiting, for the lone packet an express step read
        (``False``, having done nothing, when another task writes or a refused super-packet's
        segments are still to go: the lane's task sends). A full queue — which a TUN device
        does not have — would lose the packet, counted in ``tx_dropped["would_block"]``."""
        if self._sending or self._closed or self._fallback is not None:
            return False
        if (
            self._lone_queue is not None
            and len(batch.offsets) == 1
            and not batch.vnet_hdr
            and self._reader.serves
        ):
            # nothing to coalesce or count as a super-packet: straight to the queue, without
            # holding the fd — safe where the reader has this loop, to which a close from
            # another thread is handed (a device only written to would close at once)
            out = batch
            try:
                done = self._nb_send_batch(batch, 0, lone=True)
            except BlockingIOError:
                done = 0
        else:
            out = self._prepare_send_batch(batch)
            done = self._write_now(out)
        if done < len(out.offsets):
            self._fallback = None  # (segments of a refused super-packet: lost with it)
            self._count_drop("would_block", len(out.offsets) - done)
        self._account_tx(batch)
        return True

    async def send_batch(self, batch: PacketBatch, *, checkpoint: bool = True) -> int:
        """Write every packet of ``batch`` in order (see :meth:`SyncDevice.send_batch` for
        offload devices); return how many the caller gave.

        Cancelled while it waits for room in a full queue, the packets before the wait were
        written and the rest were not (as with a cancelled ``send_all`` on a socket); the next
        call starts afresh. Those written are counted in :meth:`statistics` as
        :meth:`SyncDevice.send_batch` counts them.

        Args:
            batch: the packets.
            checkpoint: be a checkpoint, as every anyio call is: raise a pending
                cancellation and yield to the event loop once, before writing. A loop that
                reads (a checkpoint) before each write may pass ``False``: the call then
                neither checks for cancellation nor yields unless it has to wait — an
                event-loop turn less per batch, a measurable share of a packet's latency
                through a tunnel.

        Raises:
            ClosedDeviceError: the device is closed.
            DeviceGoneError: the interface was deleted.
            anyio.BusyResourceError: another task is writing a batch.
        """
        if checkpoint:
            await anyio.lowlevel.checkpoint()  # see recv_batch
        self._check_open()
        self._begin_send()
        out = batch
        self._tx_done = 0
        try:
            out = self._prepare_send_batch(batch)
            # what the queue takes at once without a coroutine of its own (a lone packet's
            # trip through a tunnel has a frame less); the rest waits for room
            done = self._write_now(out)
            if done < len(out.offsets):
                await self._write_rest(out, done)
        except BaseException:
            self._account_tx_part(batch, out, self._tx_done)
            raise
        finally:
            # (a write cancelled or failed half-way: a refused super-packet's segments still
            # pending go with it — the next batch must start with its own first packet)
            self._fallback = None
            self._sending = False
        self._account_tx(batch)
        return len(batch.offsets)

    async def _write_all(self, out: PacketBatch) -> None:
        """Write ``out``, waiting while the queue is full."""
        await self._write_rest(out, self._write_now(out))

    def _write_now(self, out: PacketBatch) -> int:
        """Write what the queue takes of ``out`` now; how many packets that was (the start
        of :meth:`_write_rest`, which a caller then needs only if some are left)."""
        if not out.offsets:
            return 0
        try:
            return self._nb_send_batch(out, 0)
        except BlockingIOError:
            return 0

    async def _write_rest(self, out: PacketBatch, i: int) -> None:
        """Write ``out`` from packet ``i``, waiting while the queue is full."""
        total = len(out.offsets)
        try:
            while i < total:
                try:
                    i = self._nb_send_batch(out, i)
                except BlockingIOError:
                    await self._wait_writable()
                    self._check_open()
        finally:
            self._tx_done = i

    async def recv_multiple(
        self, bufs: Sequence[bytearray | memoryview], sizes: list[int], offset: int = 0
    ) -> int:
        """tun-rs's ``recv_multiple`` (see :meth:`SyncDevice.recv_multiple`)."""
        batch = self._mm_batch(bufs, sizes, offset)
        await self.recv_batch(batch)
        return self._mm_scatter(batch, bufs, sizes, offset)

    async def send_multiple(
        self, gro_table: GROTable | None, bufs: Sequence[Buffer], offset: int = 0
    ) -> int:
        """tun-rs's ``send_multiple`` (see :meth:`SyncDevice.send_multiple`)."""
        await anyio.lowlevel.checkpoint()  # see recv_batch
        self._check_open()
        batch = self._mm_gather(bufs, offset)
        self._begin_send()
        out = batch
        self._tx_done = 0
        try:
            out = self._prepare_send_batch(batch, gro_table)
            await self._write_all(out)
        except BaseException:
            self._account_tx_part(batch, out, self._tx_done)
            raise
        finally:
            self._fallback = None  # (see send_batch)
            self._sending = False
        self._account_tx(batch)
        return batch.nbytes

    # -- configuration ----------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args)

    async def name(self) -> str:
        """The interface name (asked from the kernel: it may have been renamed).

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        return await self._run(self._name)

    async def set_name(self, name: str) -> None:
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
        self._attrs["name"] = await self._run(self._set_name, name)

    def if_index(self) -> int:
        """The interface index (known without asking the kernel, so not a coroutine)."""
        return self._if_index()

    def if_luid(self) -> int:
        """The interface LUID (Windows; tun-rs's ``if_luid``): ``NET_LUID``'s 64-bit value,
        as the IP Helper API takes it — Wintun's ``WintunGetAdapterLUID``, read when the device
        opened (for tap-windows6, ``ConvertInterfaceAliasToLuid``). Known without a system call,
        so not a coroutine.

        Raises:
            UnsupportedError: not Windows (:meth:`if_index` is the interface's number there),
                or an adopted fd tunflow cannot configure.
            ClosedDeviceError: the device is closed.
        """
        return self._if_luid()

    async def mtu(self) -> int:
        """The MTU.

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        return await self._run(self._mtu)

    async def set_mtu(self, mtu: int) -> None:
        """Set the MTU (at least 1280 while the device has IPv6 addresses).

        Raises:
            ConfigError: outside 68..65535, or below 1280 with IPv6 addresses.
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        await self._run(self._set_mtu, mtu)
        self._attrs["mtu"] = mtu

    async def mtu_v6(self) -> int:
        """The IPv6 MTU (Windows, where it is a setting of its own; tun-rs's ``mtu_v6``):
        ``NlMtu`` of the IPv6 interface row. :meth:`mtu` is IPv4's.

        Raises:
            UnsupportedError: not Windows (the link has one MTU: :meth:`mtu`), a Windows
                machine without an IPv6 stack, or an adopted fd tunflow cannot configure.
            DeviceError: any other refusal (``winerror`` kept).
        """
        return await self._run(self._mtu_v6)

    async def set_mtu_v6(self, mtu: int) -> None:
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
        await self._run(self._set_mtu_v6, mtu)

    def packet_information(self) -> bool:
        """Whether each packet read and written keeps the kernel's 4-byte header
        (:data:`~tunflow.PACKET_INFORMATION_LENGTH`): the builder's
        :meth:`~tunflow.DeviceBuilder.packet_information`, or the last
        :meth:`set_packet_information`. tun-rs's ``ignore_packet_info()`` is its opposite.
        Not a coroutine: no system call is made.

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
        the checks on sending follow. Not a coroutine: no system call is made.

        Raises:
            ConfigError: ``on`` is not a bool.
            ClosedDeviceError: the device is closed.
            UnsupportedError: Linux (``IFF_NO_PI`` is fixed when the device is opened),
                Windows, Android, or a TAP — whose packets have no such header.
        """
        self._set_packet_information(on)

    async def associate_route(self) -> bool:
        """Whether the subnet route of each address is added (and removed) with it (macOS and
        the BSDs; tun-rs's ``associate_route``): the builder's
        :meth:`~tunflow.DeviceBuilder.associate_route`, or the last
        :meth:`set_associate_route`. Always ``False`` for a TAP.

        Raises:
            UnsupportedError: not macOS or a BSD (the system adds that route itself), or an
                adopted fd tunflow cannot configure.
        """
        return await self._run(self._associate_route)

    async def set_associate_route(self, on: bool) -> None:
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
        await self._run(self._set_associate_route, on)

    async def set_metric(self, metric: int) -> None:
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
        await self._run(self._set_metric, metric)

    async def addresses(self) -> list[IPv4Interface | IPv6Interface]:
        """Every address of the interface, v4 and v6, with prefixes (link-local included).

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        return await self._run(self._addresses)

    async def add_address_v4(
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
        await self._run(self._add_address_v4, address, prefix, destination)

    async def set_network_address(
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
        await self._run(self._set_network_address, address, prefix, destination)

    async def add_address_v6(
        self, address: IPAddressLike, prefix: PrefixLike | None = None
    ) -> None:
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
        await self._run(self._add_address_v6, address, prefix)

    async def remove_address(self, address: IPAddressLike) -> None:
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
        await self._run(self._remove_address, address)

    async def routes(self) -> list[Route]:
        """The unicast routes through the interface (main table), the kernel's own included.

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        return await self._run(self._routes)

    async def add_route(
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
        await self._run(self._add_route, cidr, gateway, metric)

    async def remove_route(
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
        await self._run(self._remove_route, cidr, gateway, metric)

    async def mac_address(self) -> str:
        """The MAC address of a TAP device as ``"aa:bb:cc:dd:ee:ff"``.

        Raises:
            UnsupportedError: a TUN has no MAC address, or the fd is not configurable.
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            DeviceError: any other refusal (``errno`` kept).
        """
        return await self._run(self._mac_address)

    async def set_mac_address(self, mac: str | bytes) -> None:
        """Set the MAC address of a TAP device.

        Raises:
            ConfigError: not a unicast MAC address.
            UnsupportedError: a TUN has no MAC address, or the fd is not configurable.
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            DeviceError: any other refusal (``errno`` kept).
        """
        await self._run(self._set_mac_address, mac)

    async def enabled(self, up: bool) -> None:
        """Bring the link up (``True``) or down (``False``; the kernel then drops the link's
        IPv6 addresses and its routes).

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        await self._run(self._enabled, up)

    async def is_running(self) -> bool:
        """Whether the link is up and running.

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        return await self._run(self._is_running)

    async def broadcast(self) -> IPv4Address | None:
        """The broadcast address of the device's first IPv4 address (see
        :meth:`SyncDevice.broadcast`; Linux only)."""
        return await self._run(self._broadcast)

    async def set_broadcast(self, address: IPAddressLike) -> None:
        """Set the broadcast address of the device's first IPv4 address (see
        :meth:`SyncDevice.set_broadcast`; Linux only)."""
        await self._run(self._set_broadcast, address)

    async def link_events(self) -> AsyncLinkEvents:
        """Watch the link: an async iterator of :class:`~tunflow.LinkEvent` — the state now
        (``"up"`` or ``"down"``), then each change (``"up"``, ``"down"``, ``"mtu"``) and
        ``"removed"`` when the interface is deleted or moved to another network namespace
        (wireguard-go's ``Events()``). Linux only.

        The iteration ends after ``"removed"`` or when the device is closed (:meth:`aclose`
        wakes a task waiting for an event); cancel the task to stop waiting. ``async with``
        (or closing the device) releases its netlink socket::

            async with await dev.link_events() as events:
                async for event in events:
                    print(event.kind, event.mtu)

        Raises:
            UnsupportedError: not Linux, or an adopted fd tunflow cannot configure.
            ClosedDeviceError: the device is closed.
            DeviceNotFoundError: the interface is gone.
        """
        iface = self._iface()
        events = AsyncLinkEvents(await self._run(open_tracker, iface))
        if self._closed:  # closed while the watch opened
            events._tracker.close()
            raise ClosedDeviceError("the device is closed")
        self._link_events.add(events)
        return events

    async def tx_queue_len(self) -> int:
        """The transmit queue length.

        Raises:
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        return await self._run(self._tx_queue_len)

    async def set_tx_queue_len(self, length: int) -> None:
        """Set the transmit queue length.

        Raises:
            ConfigError: a negative length.
            DeviceNotFoundError: the interface is gone.
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
            DeviceError: any other refusal (``errno`` kept).
        """
        await self._run(self._set_tx_queue_len, length)

    async def owner(self, uid: int) -> None:
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
        await self._run(self._set_owner, uid, False)

    async def group(self, gid: int) -> None:
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
        await self._run(self._set_owner, gid, True)

    async def persist(self, enabled: bool = True) -> None:
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
        await self._run(self._persist, enabled)

    async def version(self) -> str:
        """The version of the driver behind the device (Windows): Wintun's ``"major.minor"``
        (``WintunGetRunningDriverVersion``), tap-windows6's ``"major.minor"`` with
        ``" (debug)"`` for a debug build (``TAP_WIN_IOCTL_GET_VERSION``).

        Raises:
            UnsupportedError: not Windows (the kernel's own driver has no version of its own),
                or an adopted fd tunflow cannot configure.
            DeviceNotFoundError: the Wintun driver is not loaded (``ERROR_FILE_NOT_FOUND``).
            DeviceError: any other refusal (``winerror`` kept).
        """
        return await self._run(self._version)

    async def set_dns_servers(self, servers: Sequence[IPAddressLike]) -> None:
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
        await self._run(self._set_dns_servers, servers)

    async def clear_dns_servers(self, version: int | None = None) -> None:
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
        await self._run(self._clear_dns_servers, version)

    def statistics(self) -> DeviceStatistics:
        """Counters of this queue."""
        return super().statistics()


def _in_event_loop() -> bool:
    try:
        anyio.get_current_task()
    except Exception:
        return False
    return True
