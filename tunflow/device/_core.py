"""What the sync and async faces share: the backend objects, sizes, statistics, configuration.

The configuration methods here are blocking; :class:`~tunflow.SyncDevice` exposes them as they
are and :class:`~tunflow.AsyncDevice` runs them in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_interface
from typing import Any, cast

import attrs

from ..errors import (
    ClosedDeviceError,
    ConfigError,
    DeviceError,
    LinkDownError,
    MalformedPacketError,
    OffloadError,
    PacketTooLargeError,
    TruncatedPacketError,
    TunflowError,
    UnsupportedError,
)
from ..netconfig.device import (
    IPV6_MIN_MTU,
    IPAddressLike,
    Layer,
    NetworkLike,
    PrefixLike,
    int_setting,
    parse_address,
    parse_dns_servers,
    parse_ipv4,
    parse_ipv6,
    parse_mac,
    parse_network,
)
from ..offload import VIRTIO_NET_HDR_GSO_NONE, GROTable
from ..packet import (
    HEADROOM,
    IDEAL_BATCH_SIZE,
    MAX_PACKET_SIZE,
    PACKET_INFORMATION_LENGTH,
    PacketBatch,
    validate_ip_packet,
)
from ..platform._base import (
    ASSOCIATE_ROUTE_BSD_ONLY,
    Buffer,
    Interface,
    LoneQueue,
    OffloadInfo,
    Queue,
    Route,
)
from ..platform._unix import IOV_MAX, scatter
from ._offload import OffloadRx, OffloadTx, split_for_plain_queue, zero_headers_only

__all__ = [
    "DeviceCore",
    "DeviceStatistics",
    "HandedOverQueue",
    "SharedInterface",
    "Route",
    "adopt_fd",
]

WritableBuffer = bytearray | memoryview

_ETHERNET_OVERHEAD = 14 + 4  # header + one VLAN tag
_PI_LEN = PACKET_INFORMATION_LENGTH
#: the largest buffer a vectored read through a queue without ``readv`` reads into first
_SCRATCH_MAX = 1 << 17


@attrs.frozen
class DeviceStatistics:
    """Counters of one device face (one queue), as ``statistics()`` returns them.

    Attributes:
        rx_packets: packets handed to the caller (after a split, the segments).
        rx_bytes: their bytes.
        tx_packets: packets the caller gave to ``send``/``send_batch``.
        tx_bytes: their bytes.
        rx_batches: batch reads that returned at least one packet.
        tx_batches: batch writes.
        rx_super_packets: reads that carried a GSO super-packet (offload only).
        tx_super_packets: writes of GSO super-packets, coalesced here or passed through whole.
        tx_coalesced: packets merged into another by GRO before writing (offload only).
        tx_gso_refused: GSO super-packets the kernel refused (``EINVAL``), each written split
            instead (nothing lost).
        gro_disabled: of those, super-packets GRO coalesced here; each turns GRO off for the
            refused super-packet's protocol, TCP or UDP (one passed through whole does not).
        gro_disabled_tcp: of those, refused TCP super-packets (TCP coalescing is off).
        gro_disabled_udp: of those, refused UDP super-packets (UDP coalescing is off).
        rx_malformed: packets from the kernel that could not be split (dropped).
        rx_truncated: packets the kernel cut short because a batch read (or ``recv_into``'s
            buffer) offered less room than they needed — the MTU was raised outside tunflow
            (dropped; the MTU is then re-read, so later reads leave room for it).
        tx_dropped: packets of batch writes the kernel refused, by reason (skipped; a single
            ``send`` raises instead): ``kernel_refused_packet`` (also a virtio-net header a TUN
            without offload cannot split, and any non-zero one on a TAP or packet-information
            device), ``link_down`` (written while the link was down),
            ``would_block``.
        offload: what the kernel granted.
    """

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    rx_batches: int = 0
    tx_batches: int = 0
    rx_super_packets: int = 0
    tx_super_packets: int = 0
    tx_coalesced: int = 0
    tx_gso_refused: int = 0
    gro_disabled: int = 0
    gro_disabled_tcp: int = 0
    gro_disabled_udp: int = 0
    rx_malformed: int = 0
    rx_truncated: int = 0
    tx_dropped: dict[str, int] = attrs.field(factory=dict)
    offload: OffloadInfo = attrs.field(factory=OffloadInfo)


class SharedInterface:
    """The interface behind all queues of one device; closed with the last queue."""

    def __init__(self, interface: Interface | None, layer: Layer, packet_information: bool) -> None:
        self.interface = interface
        self.layer = layer
        self.packet_information = packet_information
        self.lock = threading.Lock()
        self._users = 0
        #: queues opened after the first (numbers them for ``DeviceAttribute.queue``)
        self.queues_opened = 0
        #: every face (one per queue), so an MTU change reaches the limits of all of them
        self._faces: weakref.WeakSet[DeviceCore] = weakref.WeakSet()

    def acquire(self, face: DeviceCore) -> None:
        with self.lock:
            self._users += 1
            self._faces.add(face)

    def set_limits(self, mtu: int) -> None:
        """Give every face of the device the size limits of ``mtu``."""
        with self.lock:
            faces = list(self._faces)
        for face in faces:
            face._set_max_size(mtu)

    def release(self) -> None:
        with self.lock:
            self._users -= 1
            last = self._users == 0
        if last and self.interface is not None:
            self.interface.close()

    def require(self) -> Interface:
        if self.interface is None:
            raise UnsupportedError(
                "this device was adopted from an fd tunflow cannot configure (Android, iOS, "
                "a non-tun fd, or a Linux tun whose interface this process cannot reach: no "
                "rtnetlink socket allowed, or a network namespace it may not enter); "
                "configure it where it was made"
            )
        return self.interface


class HandedOverQueue:
    """What a face whose queue went to another owner (:meth:`~tunflow.AsyncDevice.from_sync`,
    ``into_fd``) holds in its place: every operation raises
    :class:`~tunflow.ClosedDeviceError`, so a thread that was about to use the face meets
    the closed device, never the queue its new owner reads."""

    rx_truncated = 0

    def __init__(self, offload: OffloadInfo) -> None:
        self.offload = offload

    def fileno(self) -> int:
        return -1

    def _closed(self, *args: Any, **kwargs: Any) -> Any:
        raise ClosedDeviceError("the device is closed")

    recv = recv_into = send = recv_batch = send_batch = wait = _closed

    def wait_handle(self) -> int | None:
        return None

    def close(self) -> None:
        pass


#: what a face hands over with its queue: counters, and the offload state (a split's
#: segments still to hand out, the GRO table and its arena)
_HANDED_OVER = (
    "rx_packets",
    "rx_bytes",
    "tx_packets",
    "tx_bytes",
    "rx_batches",
    "tx_batches",
    "tx_super_packets",
    "tx_dropped",
    "_cuts_seen",
    "_rx",
    "_tx",
)


class DeviceCore:
    """Backend objects and the shared behaviour of both faces (one queue each).

    The ``_nb_*`` methods never block: they raise :class:`BlockingIOError` (or return 0) when
    the kernel has nothing, and each face waits in its own way.
    """

    def __init__(self, shared: SharedInterface, queue: Queue) -> None:
        self._shared = shared
        self._queue = queue
        shared.acquire(self)
        self._closed = False
        self.rx_packets = 0
        self.rx_bytes = 0
        self.tx_packets = 0
        self.tx_bytes = 0
        self.rx_batches = 0
        self.tx_batches = 0
        self.tx_super_packets = 0
        self._mm = threading.local()
        #: a refused super-packet's segments still to write, and the next index
        self._fallback: tuple[PacketBatch, int] | None = None
        #: the packets of the last batch write done when it ended (raised, say)
        self._tx_done = 0
        #: packets of batch writes the kernel refused, by reason (skipped, not raised)
        self.tx_dropped: dict[str, int] = {}
        #: the queue's count of packets cut short, as last seen (see ``_nb_recv_batch``)
        self._cuts_seen = 0
        self._rx: OffloadRx | None = None
        self._tx: OffloadTx | None = None
        if queue.offload.vnet_hdr:
            self._rx = OffloadRx(queue)
            self._tx = OffloadTx(queue.offload)
        mtu = 1500
        if shared.interface is not None:
            try:
                mtu = _limit_mtu(shared.interface)
            except Exception:
                mtu = 1500
        self._set_max_size(mtu)

    def _take_state(self, other: DeviceCore) -> None:
        """Carry on from ``other``, whose queue this face took: its counters and offload state
        become this face's, and ``other`` keeps none (its offload reads and writes end)."""
        for name in _HANDED_OVER:
            setattr(self, name, getattr(other, name))
        other._rx = other._tx = None
        other.tx_dropped = {}

    def _set_max_size(self, mtu: int) -> None:
        size = max(mtu, 1280)
        if self._shared.layer is Layer.L2:
            size += _ETHERNET_OVERHEAD
        if self._shared.packet_information:
            size += _PI_LEN
        #: the largest packet ``recv`` returns (offload super-packets, read whole, are larger)
        self.max_size = size
        self._known_mtu = mtu
        self._mtu_limit = max(mtu, 68)
        # Single sends on a plain TUN are checked so a bad packet gets a message naming the
        # problem rather than the kernel's bare EINVAL (batch sends skip this on the hot path).
        self._validate_ip = self._shared.layer is Layer.L3 and not self._shared.packet_information
        # ...and with packet_information, the IP packet after its 4-byte header
        self._validate_pi = self._shared.layer is Layer.L3 and self._shared.packet_information

    def _refresh_mtu(self) -> bool:
        """Ask the kernel for the MTU (it may have been changed outside tunflow) and give every
        face its limits; whether it had changed. Never raises: the limits stay as they were."""
        iface = self._shared.interface
        if iface is None:
            return False
        try:
            mtu = _limit_mtu(iface)
        except (OSError, TunflowError):
            return False
        if mtu == self._known_mtu:
            return False
        self._shared.set_limits(mtu)
        return True

    def _check_packet(self, packet: Buffer) -> None:
        try:
            self._check_limits(packet)
        except PacketTooLargeError:
            # The MTU may have been raised outside tunflow: ask the kernel once, on this error
            # path only, before refusing.
            if not self._refresh_mtu():
                raise
            self._check_limits(packet)
        except (TypeError, MalformedPacketError) as exc:
            # (the check reads items: a buffer of other ones, an array('I') or a ctypes char
            # array, is checked again as its bytes, which are what is written)
            if isinstance(packet, bytes | bytearray):
                raise
            try:
                view = memoryview(packet)
            except TypeError:  # (not a buffer: say so, not what the check tripped on)
                raise TypeError(
                    f"a packet is a bytes-like object (bytes, bytearray, memoryview), "
                    f"not {type(packet).__name__}"
                ) from exc
            if (view.format == "B" and view.ndim == 1) or not view.c_contiguous:
                raise
            self._check_packet(view.cast("B"))

    def _check_limits(self, packet: Buffer) -> None:
        if self._validate_ip:
            validate_ip_packet(packet, self._mtu_limit)
        elif self._validate_pi:
            view = memoryview(packet)
            if len(view) < _PI_LEN:
                raise TruncatedPacketError(
                    f"{len(view)}-byte packet: with packet_information each packet starts "
                    f"with its {_PI_LEN}-byte header"
                )
            validate_ip_packet(view[_PI_LEN:], self._mtu_limit)
        elif len(packet) > self.max_size:
            raise PacketTooLargeError(
                f"{len(packet)}-byte packet exceeds the device's limit of {self.max_size}"
            )

    def _check_vectored(self, views: list[memoryview]) -> None:
        """Refuse the packet ``views`` hold as :meth:`_check_packet` refuses one buffer (a
        method of its own: a single send's check stays as lean as it was)."""
        head = _head(views, _PI_LEN + 40)
        n = sum(len(v) for v in views)
        try:
            self._check_head(head, n)
        except PacketTooLargeError:
            if not self._refresh_mtu():
                raise
            self._check_head(head, n)

    def _check_head(self, head: memoryview | bytes, n: int) -> None:
        """:meth:`_check_limits` of an ``n``-byte packet whose start is ``head``."""
        if self._validate_ip:
            validate_ip_packet(head, self._mtu_limit, n)
        elif self._validate_pi:
            if n < _PI_LEN:
                raise TruncatedPacketError(
                    f"{n}-byte packet: with packet_information each packet starts "
                    f"with its {_PI_LEN}-byte header"
                )
            validate_ip_packet(memoryview(head)[_PI_LEN:], self._mtu_limit, n - _PI_LEN)
        elif n > self.max_size:
            raise PacketTooLargeError(
                f"{n}-byte packet exceeds the device's limit of {self.max_size}"
            )

    # -- non-blocking primitives shared by both faces ------------------------------------

    def _nb_recv(self) -> bytes:
        if self._rx is not None:
            return self._rx.recv_one()
        return self._queue.recv(MAX_PACKET_SIZE)

    def _nb_recv_into(self, view: memoryview) -> int:
        """Read one packet into ``view``.

        Raises:
            ValueError: ``view`` is smaller than :attr:`max_size` (a read into it could cut a
                packet short, and the kernel would not say so); nothing was read.
            PacketTooLargeError: the next packet is larger than ``view`` (the MTU was raised
                outside tunflow). With offload it stays queued for a larger buffer; without,
                the kernel cut it short: dropped, counted in ``rx_truncated``, and the MTU is
                read again (``max_size`` grows).
        """
        if len(view) < self.max_size:
            raise ValueError(
                f"recv_into needs a buffer of max_size={self.max_size} bytes; this one has "
                f"{len(view)}"
            )
        if self._rx is not None:
            return self._rx.recv_one_into(view)
        try:
            return self._queue.recv_into(view)
        except PacketTooLargeError:
            self._learn_cuts(getattr(self._queue, "rx_truncated", 0))
            raise

    def _nb_recv_vectored(self, views: list[memoryview], room: int) -> int:
        """Read one packet across ``views`` (``room`` bytes in all): one ``readv`` where the
        queue has it, else a read into one buffer copied across. Raises as
        :meth:`_nb_recv_into`."""
        if room < self.max_size:
            raise ValueError(
                f"recv_vectored needs buffers of max_size={self.max_size} bytes in all; these "
                f"have {room}"
            )
        if self._rx is not None:
            return self._rx.recv_one_vectored(views, room)
        queue = self._queue
        try:
            read = getattr(queue, "recv_vectored", None)
            if read is not None:
                return read(views, room)  # type: ignore[no-any-return]
            scratch = memoryview(bytearray(min(room, _SCRATCH_MAX)))
            n = queue.recv_into(scratch)
            scatter(scratch[:n], views)
            return n
        except PacketTooLargeError:
            self._learn_cuts(getattr(queue, "rx_truncated", 0))
            raise

    def _nb_send_vectored(self, views: list[memoryview]) -> int:
        """Write the one packet ``views`` hold: one ``writev`` where the queue has it, else
        joined; :class:`BlockingIOError` when the queue cannot take it now."""
        write = getattr(self._queue, "send_vectored", None)
        if write is not None:
            return write(views)  # type: ignore[no-any-return]
        return self._queue.send(b"".join(views))

    def _nb_recv_batch(self, batch: PacketBatch, whole: bool) -> int:
        """Read into ``batch``; 0 when nothing was waiting.

        Raises:
            ValueError: ``batch`` has no room for another packet.
            PacketTooLargeError: (offload) the next packet, read already, does not fit what is
                left of ``batch`` (the MTU was raised outside tunflow: it is read again); it
                stays the next one, for a larger batch.
        """
        rx = self._rx
        # A read is offered a byte more than the largest packet, so a cut one shows (see
        # FdQueue.recv_batch).
        if rx is None:
            n = self._queue.recv_batch(batch, self.max_size)
            needed = self.max_size + 1
        elif whole:
            n = rx.recv_whole(batch)
            needed = MAX_PACKET_SIZE + 1
        else:
            n = rx.recv_split(batch)
            needed = self.max_size
        cuts = getattr(self._queue, "rx_truncated", 0)
        if cuts != self._cuts_seen:
            self._learn_cuts(cuts)
        if not n and batch.room() < needed:
            raise ValueError(
                f"the batch has no room for another packet ({batch.room()} bytes left, "
                f"{needed} needed): clear it or pass a new one"
            )
        if not n and rx is not None and rx.pending():
            # read, but larger than the room left: a wait would be for the kernel, which has
            # nothing more — for ever
            self._refresh_mtu()
            raise PacketTooLargeError(
                f"the next packet does not fit the {batch.room()} bytes left in the batch (the "
                "MTU was raised outside tunflow); it stays the next one: pass a larger batch "
                "(new_batch())"
            )
        return n

    def _learn_cuts(self, cuts: int) -> None:
        # The queue dropped a packet the kernel cut short: the MTU was raised outside
        # tunflow. Learn it, so later reads leave room for such packets.
        self._cuts_seen = cuts
        self._refresh_mtu()

    def _account_rx(self, batch: PacketBatch, start: int) -> None:
        self.rx_packets += len(batch.offsets) - start
        self.rx_bytes += sum(batch.lengths[start:])
        self.rx_batches += 1

    def _prepare_send_batch(self, batch: PacketBatch, table: GROTable | None = None) -> PacketBatch:
        if self._tx is None:
            if batch.vnet_hdr:
                if self._validate_ip:
                    out, bad = split_for_plain_queue(batch)
                else:
                    out, bad = zero_headers_only(batch)
                if bad:
                    self._count_drop("kernel_refused_packet", bad)
                return out
            return batch
        out = self._tx.prepare(batch, table)
        if out.vnet_hdr:
            view = out.view
            self.tx_super_packets += sum(
                1 for off in out.offsets if view[off - HEADROOM + 1] != VIRTIO_NET_HDR_GSO_NONE
            )
        return out

    def _nb_send_batch(self, out: PacketBatch, start: int, *, lone: bool = False) -> int:
        """Write ``out`` from ``start``; the index after the last packet written.

        A packet the kernel refuses (``EINVAL``, ``EMSGSIZE``) is skipped and counted in
        ``tx_dropped``, never raised: in a batch it is data, as in a pipeline; so is the rest
        of the batch while the link is down (:class:`LinkDownError`). A refused GSO
        super-packet is written split instead (see :class:`OffloadTx`), its segments kept as
        pending state so a full queue makes the face wait as usual — :class:`BlockingIOError`.
        """
        if self._fallback is not None:
            fallback, j = self._fallback
            try:
                while j < len(fallback):
                    self._fallback = (fallback, j)
                    j = self._write_skipping(fallback, j)  # may raise BlockingIOError: kept
            except LinkDownError:
                self._count_drop("link_down", len(fallback) - j)
            self._fallback = None
            return start + 1
        try:
            if lone:  # (the express path's lone packet, see AsyncDevice._express_send)
                return cast(LoneQueue, self._queue).send_lone(out)
            return self._queue.send_batch(out, start)
        except OSError as exc:
            if isinstance(exc, BlockingIOError) or exc.errno not in (errno.EINVAL, errno.EMSGSIZE):
                if not isinstance(exc, LinkDownError):
                    raise
                # lost as the kernel loses what is routed to a down link (a peer goes on
                # sending while a network manager cycles the link: a tunnel must not stop)
                total = len(out.offsets)
                self._count_drop("link_down", total - start)
                return total
            refused = exc
        if self._tx is not None and refused.errno == errno.EINVAL and self._tx.is_gso(out, start):
            # A kernel that refuses GSO writes (a known regression, or a USO write of too many
            # segments): split, write plain, GRO off for that super-packet's protocol.
            try:
                self._fallback = (self._tx.refused(out, start), 0)
            except (MalformedPacketError, OffloadError):
                # its header was bad (a caller's batch with headers): that packet's loss only
                self._count_drop("kernel_refused_packet")
                return start + 1
            return self._nb_send_batch(out, start)
        self._count_drop("kernel_refused_packet")
        return start + 1

    def _write_skipping(self, batch: PacketBatch, i: int) -> int:
        try:
            return self._queue.send_batch(batch, i)
        except OSError as exc:
            if isinstance(exc, BlockingIOError) or exc.errno not in (errno.EINVAL, errno.EMSGSIZE):
                raise
        self._count_drop("kernel_refused_packet")
        return i + 1

    def _count_drop(self, reason: str, count: int = 1) -> None:
        self.tx_dropped[reason] = self.tx_dropped.get(reason, 0) + count

    # -- tun-rs's recv_multiple / send_multiple over lists of buffers ----------------------

    def _mm_batch(
        self, bufs: Sequence[WritableBuffer], sizes: list[int], offset: int
    ) -> PacketBatch:
        if len(bufs) != len(sizes):
            raise ValueError(f"{len(bufs)} buffers but {len(sizes)} sizes")
        if not bufs:
            raise ValueError("recv_multiple needs at least one buffer")
        if offset < 0:
            raise ValueError(f"offset must not be negative, not {offset}")
        small = min(len(b) for b in bufs) - offset
        if small < self.max_size:
            raise ValueError(
                f"each buffer needs {self.max_size} bytes after offset {offset}; one has {small}"
            )
        # One scratch batch per thread: threads may call recv_multiple on one device.
        batch: PacketBatch | None = getattr(self._mm, "batch", None)
        if batch is None or batch.max_packets != len(bufs):
            batch = self._mm.batch = self.new_batch(len(bufs))
        batch.clear()
        return batch

    @staticmethod
    def _mm_scatter(
        batch: PacketBatch, bufs: Sequence[WritableBuffer], sizes: list[int], offset: int
    ) -> int:
        view = batch.view
        for i, (off, n) in enumerate(zip(batch.offsets, batch.lengths, strict=True)):
            bufs[i][offset : offset + n] = view[off : off + n]
            sizes[i] = n
        return len(batch)

    def _mm_gather(self, bufs: Sequence[Buffer], offset: int) -> PacketBatch:
        total = sum(max(0, len(b) - offset) for b in bufs)
        batch = PacketBatch(
            capacity=total + HEADROOM * (len(bufs) + 1) + 1, max_packets=max(1, len(bufs))
        )
        for b in bufs:
            batch.append(memoryview(b)[offset:])
        return batch

    def _account_tx(self, batch: PacketBatch) -> None:
        self.tx_packets += len(batch.offsets)
        self.tx_bytes += batch.nbytes
        self.tx_batches += 1

    def _account_tx_part(self, batch: PacketBatch, out: PacketBatch, done: int) -> None:
        """Count the first ``done`` packets of ``out``, written (or dropped and counted) by a
        write of ``batch`` that then raised — where ``out`` is ``batch``: nothing coalesced,
        split or left out, so they are the caller's first ``done``. Otherwise (GRO merged
        packets, headers split) nothing is counted: no count would be exact."""
        if out is batch and done:
            self.tx_packets += done
            self.tx_bytes += sum(batch.lengths[:done])
            self.tx_batches += 1

    # -- sizes and statistics -------------------------------------------------------------

    @property
    def offload_info(self) -> OffloadInfo:
        """What offload the kernel granted (all ``False`` without offload)."""
        return self._queue.offload

    @property
    def layer(self) -> Layer:
        """:attr:`Layer.L3` for TUN, :attr:`Layer.L2` for TAP."""
        return self._shared.layer

    @property
    def gro(self) -> GROTable | None:
        """The GRO rules applied by ``send_batch`` on an offload device (``None`` without
        offload); set ``gro.tcp``/``gro.udp`` to ``False`` to switch coalescing off."""
        return self._tx.table if self._tx is not None else None

    def new_batch(self, max_packets: int | None = None) -> PacketBatch:
        """A :class:`PacketBatch` sized for this device's reads (whole super-packets included)."""
        n = max_packets or IDEAL_BATCH_SIZE
        if self._queue.offload.vnet_hdr:
            capacity = 1 << 20
        else:
            capacity = max(256 * 1024, (self.max_size + 16) * min(n, 128))
        return PacketBatch(capacity=capacity, max_packets=n)

    def statistics(self) -> DeviceStatistics:
        """A snapshot of this face's counters."""
        rx, tx = self._rx, self._tx
        return DeviceStatistics(
            rx_packets=self.rx_packets,
            rx_bytes=self.rx_bytes,
            tx_packets=self.tx_packets,
            tx_bytes=self.tx_bytes,
            rx_batches=self.rx_batches,
            tx_batches=self.tx_batches,
            rx_super_packets=rx.super_packets if rx is not None else 0,
            tx_super_packets=self.tx_super_packets,
            tx_coalesced=tx.table.statistics().coalesced if tx is not None else 0,
            tx_gso_refused=tx.refusals if tx is not None else 0,
            gro_disabled=tx.gro_disabled if tx is not None else 0,
            gro_disabled_tcp=tx.gro_disabled_tcp if tx is not None else 0,
            gro_disabled_udp=tx.gro_disabled_udp if tx is not None else 0,
            rx_malformed=rx.malformed if rx is not None else 0,
            rx_truncated=getattr(self._queue, "rx_truncated", 0),
            tx_dropped=dict(self.tx_dropped),
            offload=self._queue.offload,
        )

    # -- configuration (blocking) -------------------------------------------------------------

    def _iface(self) -> Interface:
        """The interface to configure, through this face.

        Raises:
            ClosedDeviceError: this face (queue) is closed — even while other queues of a
                multi-queue device are open.
            UnsupportedError: the device was adopted from an fd tunflow cannot configure.
        """
        if self._closed:
            raise ClosedDeviceError("the device is closed")
        return self._shared.require()

    def _name(self) -> str:
        return self._iface().name()

    def _set_name(self, name: str) -> str:
        """Rename; the name the kernel gave (a ``%d`` in ``name`` becomes a number)."""
        from ..netconfig.device import DeviceConfig

        DeviceConfig(name=name).validate()
        iface = self._iface()
        iface.set_name(name)
        return iface.name()

    def _if_index(self) -> int:
        return self._iface().if_index()

    def _if_luid(self) -> int:
        return self._iface().if_luid()

    def _mtu(self) -> int:
        return self._iface().mtu()

    def _set_mtu(self, mtu: int) -> None:
        int_setting(mtu, "MTU", 68, 65535)
        self._iface().set_mtu(mtu)
        self._shared.set_limits(mtu)  # every queue's face, not only this one

    def _mtu_v6(self) -> int:
        return self._iface().mtu_v6()

    def _set_mtu_v6(self, mtu: int) -> None:
        int_setting(mtu, "IPv6 MTU", IPV6_MIN_MTU, 65535)
        self._iface().set_mtu_v6(mtu)
        self._refresh_mtu()  # the limits follow the larger of the two MTUs

    def _addresses(self) -> list[IPv4Interface | IPv6Interface]:
        return self._iface().addresses()

    def _add_address_v4(
        self,
        address: IPAddressLike,
        prefix: PrefixLike | None = None,
        destination: IPAddressLike | None = None,
    ) -> None:
        iface, peer = _parse_v4(address, prefix, destination)
        self._iface().add_address(iface, peer)

    def _set_network_address(
        self,
        address: IPAddressLike,
        prefix: PrefixLike | None = None,
        destination: IPAddressLike | None = None,
    ) -> None:
        new, peer = _parse_v4(address, prefix, destination)  # (before anything changes)
        iface = self._iface()
        # Linux tells each address's point-to-point peer: the address asked for, present with
        # another peer (or none), is not "already there". Elsewhere the peer is not known.
        listed = getattr(iface, "address_peers", None)
        old: list[tuple[Any, Any]] = (
            [(a, p) for a, p in listed() if a.version == 4]
            if listed is not None
            else [(a, peer) for a in iface.addresses() if a.version == 4]
        )
        # The new address first, so a refusal leaves the old ones; then the old ones go. Linux
        # deletes a primary address's secondaries in its subnet with it (promote_secondaries
        # off), which the new one may have become (it is then put back) and which the old
        # secondaries are (they are gone when their turn comes).
        if (new, peer) not in old:
            for a, p in old:
                if a == new:
                    # (another peer: the kernel would refuse the new one, or keep both)
                    _remove_v4(iface, a, p)
            iface.add_address(new, peer)
        for a, p in old:
            if a != new:
                _remove_v4(iface, a, p)
        if new not in iface.addresses():
            iface.add_address(new, peer)

    def _add_address_v6(self, address: IPAddressLike, prefix: PrefixLike | None = None) -> None:
        iface = parse_ipv6(address, prefix)
        self._iface().add_address(iface)

    def _remove_address(self, address: IPAddressLike) -> None:
        ip = parse_address(address, prefix_ok=True)
        given = _with_prefix(address)
        # (an IPv6Interface keeps its scope on itself, not on its .ip)
        scoped = given if given is not None else ip
        if isinstance(scoped, IPv6Address) and scoped.scope_id is not None:
            raise ConfigError(
                f"{address!r}: an interface address takes no scope (%{scoped.scope_id}): its "
                "device is its scope"
            )
        iface = self._iface()
        if given is None:
            iface.remove_address(ip)
            return
        # With its prefix: that address, not the first with its IP (Linux lets one IP have
        # several prefixes; the kernel removes the one named, an IPv4Interface).
        have = iface.addresses()
        if given not in have:
            raise DeviceError(
                errno.EADDRNOTAVAIL,
                f"remove address {given}: the interface has no such address "
                f"({', '.join(str(a) for a in have if a.ip == ip) or 'nor that IP'})",
            )
        iface.remove_address(given if sum(a.ip == ip for a in have) > 1 else ip)

    def _routes(self) -> list[Route]:
        return self._iface().routes()

    def _add_route(
        self,
        cidr: NetworkLike,
        gateway: IPAddressLike | None = None,
        metric: int | None = None,
    ) -> None:
        self._iface().add_route(_route(cidr, gateway, metric))

    def _remove_route(
        self,
        cidr: NetworkLike,
        gateway: IPAddressLike | None = None,
        metric: int | None = None,
    ) -> None:
        self._iface().remove_route(_route(cidr, gateway, metric))

    def _mac_address(self) -> str:
        from ..netconfig.device import format_mac

        return format_mac(self._iface().mac_address())

    def _set_mac_address(self, mac: str | bytes) -> None:
        if self._shared.layer is not Layer.L2:
            raise UnsupportedError("a TUN (layer 3) device has no MAC address")
        self._iface().set_mac_address(parse_mac(mac))

    def _enabled(self, up: bool) -> None:
        if not isinstance(up, bool):  # ("false" would bring the link up)
            raise ConfigError(f"enabled takes True or False, not {up!r}")
        self._iface().set_enabled(up)

    def _is_running(self) -> bool:
        return self._iface().is_running()

    def _broadcast(self) -> IPv4Address | None:
        return self._iface().broadcast()

    def _set_broadcast(self, address: IPAddressLike) -> None:
        ip = parse_address(address)
        if not isinstance(ip, IPv4Address):
            raise ConfigError(f"{address!r}: only IPv4 has broadcast addresses")
        self._iface().set_broadcast(ip)

    def _tx_queue_len(self) -> int:
        return self._iface().tx_queue_len()

    def _version(self) -> str:
        return self._iface().version()

    def _set_owner(self, uid: int, group: bool) -> None:
        what = "group" if group else "owner"
        if isinstance(uid, bool) or not isinstance(uid, int):
            raise ConfigError(f"{what} must be an int, not {uid!r}")
        if not 0 <= uid <= 0xFFFFFFFE:
            raise ConfigError(f"{what} {uid} is outside 0..{0xFFFFFFFE}")
        iface = self._iface()
        with self._queue_fd() as fd:
            if group:
                iface.set_group(fd, uid)
            else:
                iface.set_owner(fd, uid)

    def _persist(self, enabled: bool) -> None:
        if not isinstance(enabled, bool):  # ("false" would keep the device)
            raise ConfigError(f"persist takes True or False, not {enabled!r}")
        iface = self._iface()
        with self._queue_fd() as fd:
            iface.set_persist(fd, enabled)

    @contextlib.contextmanager
    def _queue_fd(self) -> Iterator[int]:
        """This face's queue fd for a ``TUNSET*`` ioctl, held for the block (an fd queue's
        :meth:`~tunflow.platform._unix.FdQueue.held`: a close from another thread meanwhile
        releases it afterwards, so the ioctl never lands on a number given to another file)."""
        held = getattr(self._queue, "held", None)
        if held is not None:
            with held() as fd:
                yield fd
            return
        fd = self._queue.fileno()
        if fd < 0 and self._closed:  # (closed meanwhile, from another thread)
            raise ClosedDeviceError("the device is closed")
        yield fd

    def _associate_route(self) -> bool:
        on = getattr(self._iface(), "associate_route", None)
        if not isinstance(on, bool):
            raise UnsupportedError(ASSOCIATE_ROUTE_BSD_ONLY)
        return on

    def _set_associate_route(self, on: bool) -> None:
        if not isinstance(on, bool):  # ("false" would add the routes)
            raise ConfigError(f"set_associate_route takes True or False, not {on!r}")
        self._iface().set_associate_route(on)

    def _packet_information(self) -> bool:
        if self._closed:
            raise ClosedDeviceError("the device is closed")
        return self._shared.packet_information

    def _set_packet_information(self, on: bool) -> None:
        if not isinstance(on, bool):  # ("false" would keep the header)
            raise ConfigError(f"set_packet_information takes True or False, not {on!r}")
        if self._closed:
            raise ClosedDeviceError("the device is closed")
        if self._shared.layer is not Layer.L3 or not getattr(self._queue, "af_framed", False):
            raise UnsupportedError(
                "the packet-information header can be kept or removed at run time only on a "
                "macOS/iOS utun or a BSD tun (on Linux IFF_NO_PI is fixed when the device is "
                "opened: DeviceBuilder.packet_information())"
            )
        self._queue.set_af_header(not on)  # type: ignore[attr-defined]
        self._shared.packet_information = on
        self._shared.set_limits(self._known_mtu)

    def _set_metric(self, metric: int) -> None:
        if isinstance(metric, bool) or not isinstance(metric, int):
            raise ConfigError(f"metric must be an int, not {metric!r}")
        if not 0 <= metric <= 0xFFFF:
            raise ConfigError(f"metric {metric} is outside 0..65535")
        self._iface().set_metric(metric)

    def _set_dns_servers(self, servers: Sequence[IPAddressLike]) -> None:
        parsed = parse_dns_servers(servers)
        if not parsed:
            raise ConfigError("set_dns_servers needs an address; clear_dns_servers() removes them")
        self._iface().set_dns_servers(parsed)

    def _clear_dns_servers(self, version: int | None) -> None:
        if version is None:
            versions: tuple[int, ...] = (4, 6)
        elif type(version) is int and version in (4, 6):
            versions = (version,)
        else:  # (tun-rs's is_ipv4 bool among them: True is not 4)
            raise ConfigError(f"clear_dns_servers takes 4, 6 or None (both), not {version!r}")
        self._iface().clear_dns_servers(versions)

    def _set_tx_queue_len(self, length: int) -> None:
        if type(length) is not int or length < 0:
            raise ConfigError(f"tx_queue_len {length!r} must be a non-negative int")
        self._iface().set_tx_queue_len(length)


def _limit_mtu(iface: Interface) -> int:
    """The MTU the size limits follow: the larger of the IPv4 and IPv6 MTUs where they are
    settings of their own (Windows), else the MTU."""
    largest = getattr(iface, "largest_mtu", None)
    return int(largest()) if largest is not None else iface.mtu()


def buffer_views(buffers: Iterable[Buffer], what: str, *, writable: bool) -> list[memoryview]:
    """``buffers`` as byte views for one ``readv``/``writev`` (``writable``: to read into).

    Raises:
        TypeError: one buffer given rather than a sequence of them, something not a buffer,
            a read-only buffer to read into, or a buffer not contiguous in memory.
        ConfigError: more than :data:`IOV_MAX` buffers.
    """
    if isinstance(buffers, bytes | bytearray | memoryview | str):
        raise TypeError(f"{what} takes a sequence of buffers, not one {type(buffers).__name__}")
    try:
        it = iter(buffers)
    except TypeError:
        raise TypeError(f"{what} takes a sequence of buffers, not {buffers!r}") from None
    items = list(it)  # (outside the try: a generator's own TypeError is the caller's)
    if len(items) > IOV_MAX:
        raise ConfigError(f"{what}: {len(items)} buffers, more than IOV_MAX ({IOV_MAX})")
    views = []
    for b in items:
        v = memoryview(b)
        if writable and v.readonly:
            raise TypeError(f"{what} reads into writable buffers; a {type(b).__name__} is not")
        if not v.c_contiguous:
            raise TypeError(f"{what} takes contiguous buffers; this one is strided")
        views.append(v if v.format == "B" and v.ndim == 1 else v.cast("B"))
    return views


def byte_view(buf: Buffer) -> memoryview:
    """``buf`` as a flat view of bytes, for ``recv_into`` (whose size check and copy count
    bytes): a buffer of wider items (an ``array('I')``) is cast."""
    view = memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _head(views: list[memoryview], size: int) -> memoryview | bytes:
    """The first ``size`` bytes across ``views`` (all of them when fewer): what a packet's
    check reads."""
    if not views or len(views[0]) >= size:
        return views[0] if views else b""
    parts = []
    got = 0
    for v in views:
        parts.append(v[: size - got])
        got += len(parts[-1])
        if got >= size:
            break
    return b"".join(parts)


def _remove_v4(iface: Any, address: IPv4Interface, peer: IPv4Address | None) -> None:
    """Remove exactly ``address`` with ``peer`` where the backend can (Linux), else the first
    address with its IP; one already gone is not an error."""
    try:
        undo = getattr(iface, "undo_address", None)
        if undo is not None:
            undo(address, peer)
        else:
            iface.remove_address(address.ip)
    except DeviceError as exc:
        # a secondary the kernel deleted with its primary, a moment ago
        if exc.errno != errno.EADDRNOTAVAIL:
            raise


def _with_prefix(address: object) -> IPv4Interface | IPv6Interface | None:
    """The address with the prefix it was written with (``"10.0.0.1/16"``, an entry of
    ``addresses()``); ``None`` without one."""
    if isinstance(address, IPv4Interface | IPv6Interface):
        return address
    if not isinstance(address, str) or "/" not in address:
        return None
    try:
        return ip_interface(address.strip())
    except ValueError:
        raise ConfigError(f"{address!r} is not an IP address with a prefix") from None


def _parse_v4(
    address: IPAddressLike, prefix: PrefixLike | None, destination: IPAddressLike | None
) -> tuple[IPv4Interface, IPv4Address | None]:
    iface = parse_ipv4(address, prefix)
    if destination is None:
        return iface, None
    d = parse_address(destination)
    if not isinstance(d, IPv4Address):
        raise ConfigError(f"destination {destination!r} is not an IPv4 address")
    return iface, d


def adopt_fd(fd: int, *, close_fd: bool, layer: Layer, packet_information: bool) -> tuple[Any, Any]:
    """The platform's interface (or ``None``) and queue for an fd made elsewhere, framed for
    ``layer`` where the OS cannot tell what the fd carries.

    Raises:
        ConfigError: ``fd`` is not a file descriptor number, ``layer`` is not a
            :class:`Layer`, or the fd's framing is not what ``packet_information`` says (Linux).
        DeviceError: the OS refused it (``EBADF`` for a closed fd; ``errno`` kept).
    """
    from .. import platform

    if type(fd) is not int or not 0 <= fd <= 0x7FFFFFFF:  # (a C int: else OverflowError)
        raise ConfigError(f"{fd!r} is not a file descriptor")
    if not isinstance(layer, Layer):
        raise ConfigError(f"layer must be Layer.L3 or Layer.L2, not {layer!r}")
    try:
        return platform.for_fd().adopt_fd(  # type: ignore[no-any-return]
            fd, close_fd=close_fd, layer=layer, packet_information=packet_information
        )
    except OSError as exc:
        if isinstance(exc, DeviceError):
            raise
        raise DeviceError.from_oserror(exc, f"adopt fd {fd}") from exc


def _route(cidr: NetworkLike, gateway: IPAddressLike | None, metric: int | None) -> Route:
    network = parse_network(cidr)
    gw = _gateway(gateway) if gateway is not None else None
    if gw is not None and gw.version != network.version:
        raise ConfigError(f"gateway {gw} and route {network} are of different IP versions")
    if metric is not None:
        if isinstance(metric, bool) or not isinstance(metric, int):
            raise ConfigError(f"route metric must be an int, not {metric!r}")
        if not 0 <= metric <= 0xFFFFFFFF:
            raise ConfigError(f"route metric {metric!r} is outside 0..2**32-1")
    return Route(network, gw, metric)


def _gateway(gateway: IPAddressLike) -> IPv4Address | IPv6Address:
    """A next hop: one address, no prefix (``ip route`` refuses ``via 10.0.0.254/24``) and no
    IPv6 scope (the route's device is its scope; the kernel is never sent one)."""
    if isinstance(gateway, IPv4Interface | IPv6Interface) or (
        isinstance(gateway, str) and "/" in gateway
    ):
        raise ConfigError(f"gateway {gateway!r} takes no prefix: a next hop is one address")
    gw = parse_address(gateway)
    if isinstance(gw, IPv6Address) and gw.scope_id is not None:
        raise ConfigError(
            f"gateway {gateway!r} takes no scope (%{gw.scope_id}): the route's device is its scope"
        )
    return gw
