"""A running WireGuard interface: TUN device + UDP transport + the sans-I/O protocol core.

:func:`open_interface` brings one up and keeps it running while its ``async with`` block runs::

    async with open_interface(config, name="wg0", addresses=["10.0.0.1/24"]) as wg0:
        await anyio.sleep_forever()

The data path is a :class:`~tunflow.pipeline.Tunnel`: the TUN device on the local side, a
:class:`WireGuardPort` on the remote side, user stages (filters, rate limits…) in between on
plain IP packets. The port is where WireGuard happens, one batch at a time:

* **outbound** — the device hands a batch of IP packets (MTU-sized, or offload super-packets
  kept whole when every peer is a native-mode peer); :meth:`WireGuard.encrypt_batch` routes and
  seals them straight into a :class:`~tunflow.datagram.DatagramBatch`, handshake datagrams are
  appended, and the UDP transport sends each run of equal-sized datagrams to one peer with one
  ``UDP_SEGMENT`` system call;
* **inbound** — one ``UDP_GRO`` read brings a run of datagrams; :meth:`WireGuard.decrypt_batch`
  opens them into a packet batch (native super-packets with their virtio-net header), answers
  handshakes in place, and the device writes the batch (GRO-coalesced on an offload device).

Beside the tunnel run a timer task (retransmissions, keepalives, rekeying: whatever
:meth:`WireGuard.get_timer` asks for) and the UAPI server on ``/var/run/wireguard/<name>.sock``
that ``wg show``/``wg set`` talk to. Everything runs in one event loop thread (the protocol
object is not thread-safe); asyncio, uvloop and trio alike.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import math
import os
import socket
import stat
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import attrs

from .._readiness import DECLINED, LONE, MORE, NOTHING
from .._threads import in_daemon_thread
from ..datagram import UDP_MAX_SEGMENTS, DatagramBatch
from ..device import AsyncDevice, DeviceBuilder, DeviceStatistics, Layer, OffloadInfo
from ..errors import (
    ConfigError,
    DeviceGoneError,
    TunflowError,
)
from ..packet import HEADROOM, PacketBatch
from ..pipeline import PortHandle, PortStatistics, Stage, StageSpec, Tunnel
from ..pipeline._engine import _raise_single
from ..pipeline._ports import ExpressSink, ExpressSource
from ..transport import TransportStatistics, UDPTransport
from . import _routing
from ._split import _split_whole
from ._timers import DeadlineWait
from .protocol import (
    Event,
    GetRequest,
    HandshakeCompleted,
    InterfaceConfig,
    PeerStatistics,
    PublicKey,
    SetRequest,
    UapiConnection,
    UapiError,
    WireGuard,
    WireGuardStatistics,
    apply_set,
    check_set,
    format_endpoint,
    handle_request,
    render_errno,
    sync_request,
)
from .protocol.constants import MESSAGE_NATIVE
from .protocol.native import NATIVE_HEADER_SIZE

__all__ = [
    "WireGuardInterface",
    "WireGuardPort",
    "InterfaceStatistics",
    "open_interface",
    "UAPI_DIRECTORY",
]

log = logging.getLogger("tunflow.wireguard")

#: seconds a control-socket client may stay silent (mid-request or between requests), or take
#: to read a reply, before its connection is closed
UAPI_IDLE_TIMEOUT: float = 30.0

#: Where ``wg(8)`` looks for userspace interfaces' control sockets.
UAPI_DIRECTORY: Final = "/var/run/wireguard"
#: A UAPI set of more peers than this is checked in a worker thread (its X25519s: ~5 ms here)
_CHECK_ON_LOOP: Final = 100
#: A UAPI request buffered beyond this many bytes is cut and parsed in a worker thread (some
#: 0.2 s a MiB here: a full routing table as AllowedIPs, 22 MiB, is 4.5 s)
_PARSE_ON_LOOP: Final = 1 << 20
#: Consecutive receives that stopped on a full batch before the interface says "under load".
_BACKLOG_READS: Final = 8
_UNDER_LOAD_FOR: Final = 1.0
_MAX_EVENTS: Final = 256
#: A peer's completed handshakes are logged at info level at most once in this many seconds
#: (a peer may complete one every 20 ms); those in between are at debug level.
_HANDSHAKE_LOG_EVERY: Final = 60.0
#: Scattered reads in a row before the batch goes to the device (and the lane yields).
_SCATTER_READS: Final = 16
#: One-fragment native messages read in a row before reads switch to the short scatter list:
#: with bulk transfers both ways, acknowledgements come between big messages one or two at a
#: time, and a big message read with the short list is copied twice.
_SHORT_AFTER: Final = 4
#: The largest UDP read (a ``UDP_GRO`` run).
MAX_DATAGRAM: Final = 65535


class _Clock:
    """``time.monotonic()`` plus a skew that :meth:`WireGuardInterface.skip_time` moves."""

    __slots__ = ("skew",)

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skew


@attrs.frozen
class InterfaceStatistics:
    """A snapshot of a running interface.

    Attributes:
        name: the interface name.
        wireguard: the protocol's counters (packets, handshakes, drops by reason).
        transport: the UDP transport's (datagrams per system call, drops by reason), those
            of the sockets it had before a listen-port change included.
        device: the TUN device's (super-packets, coalescing).
        peers: what ``wg show`` prints per peer.
        listen_port: the UDP port bound.
    """

    name: str
    wireguard: WireGuardStatistics
    transport: TransportStatistics
    device: DeviceStatistics
    peers: tuple[PeerStatistics, ...]
    listen_port: int


class WireGuardPort:
    """The network side of a WireGuard interface as a pipeline :class:`~tunflow.pipeline.Port`.

    IP packets go in (:meth:`send_batch` encrypts them and sends the datagrams) and come out
    (:meth:`recv_batch` receives datagrams and decrypts them); handshakes, cookies and
    keepalives are handled on the way. The protocol object and the transport are shared with
    the interface's timer task; everything runs in one thread.

    Args:
        wg: the protocol core.
        transport: the UDP transport.
        whole: take offload super-packets whole (every peer is a native-mode peer); otherwise
            the device splits them before they get here.
        device_offload: the device takes super-packets (native ones received are written
            whole); otherwise they are split here first.
        mtu: the tunnel MTU.
        clock: the monotonic clock ``wg`` runs on.
        name: for statistics.
    """

    def __init__(
        self,
        wg: WireGuard,
        transport: UDPTransport,
        *,
        whole: bool = False,
        device_offload: bool = False,
        mtu: int = 1420,
        clock: Callable[[], float] = time.monotonic,
        name: str = "wireguard",
    ) -> None:
        self.wg = wg
        self.transport = transport
        # what the socket could not send comes off what the protocol counted as sent
        transport.on_unsent = wg.unsent
        #: the counters of the transports replaced since (listen-port changes)
        self._earlier: TransportStatistics | None = None
        self.name = name
        self.layer = Layer.L3
        self.mtu = mtu
        self.offload = OffloadInfo(vnet_hdr=whole, tso=whole)
        self.can_split = True
        self._device_offload = device_offload
        self._clock = clock
        # outbound: one arena for the sealed datagrams of a whole device batch (a 1 MiB batch
        # of super-packets grows by < 3 % in native mode; more is sent in several rounds)
        self._tx = DatagramBatch(capacity=2 << 20, gather=True)
        # what _express_send sealed for a lone packet and the full socket buffer did not take
        # (the packet, the datagrams), kept for the task to send; a send batch to swap in
        self._held: tuple[list[bytes], DatagramBatch] | None = None
        self._spare_tx: DatagramBatch | None = None
        self._ctl = DatagramBatch(capacity=256 * 1024)
        # inbound: datagrams not decrypted yet because the packet batch filled up
        self._rx = transport.new_batch()
        self._rx_pending = False
        self._rx_hot = False  # the last scattered receive returned without yielding
        self._scatter: _Scatter | None = None
        peers = wg.peers.values()
        native = bool(peers) and all(p.native_mode for p in peers)
        if whole and native and wg.native_fragment_size > NATIVE_HEADER_SIZE:
            self._scatter = _Scatter(wg.native_fragment_size)
        self._split: PacketBatch | None = None
        # whole TSO reads (every peer native) hand out super-packets; should a WireGuard peer
        # join later (wg set), they are split for it before encrypting
        self._super_packets = whole and native
        self._split_out = False
        self._out_split: PacketBatch | None = None
        self._backlog = 0
        self._drained = 0
        self._kernel_drops = 0
        self._stats = [0, 0, 0, 0, 0, 0]  # rx packets, bytes, batches; tx packets, bytes, batches
        #: recent protocol events (bounded), newest last
        self.events: deque[Event] = deque(maxlen=_MAX_EVENTS)
        self._event_hooks: list[Callable[[Event], None]] = []
        #: per peer, when its last completed handshake was logged at info level, and how many
        #: were at debug level since
        self._handshakes_logged: dict[PublicKey, tuple[float, int]] = {}
        # set when the protocol's next deadline may have moved earlier (run_timers waits on it)
        self._timer_wait: DeadlineWait | None = None  # (run_timers's, while it runs)

    def __repr__(self) -> str:
        return f"<WireGuardPort {self.name}>"

    # -- Port -----------------------------------------------------------------------------

    def new_batch(self) -> PacketBatch:
        """A packet batch that holds a whole received datagram batch decrypted (plus one
        reassembled native super-packet)."""
        rx = self._rx
        capacity = rx.capacity + HEADROOM * rx.max_packets + (1 << 17)
        if not self._device_offload:
            # native super-packets are split here for a plain device: room for the segments
            return PacketBatch(capacity=capacity * 5 // 4, max_packets=8192)
        return PacketBatch(capacity=capacity, max_packets=rx.max_packets + 8)

    async def recv_batch(self, batch: PacketBatch, whole: bool) -> PacketBatch:
        """Wait for datagrams until at least one IP packet comes out of them.

        Raises:
            anyio.ClosedResourceError: the transport was closed.
        """
        rx = self._rx
        start = len(batch.offsets)
        if self._scatter is not None and self.transport.gro:
            if self._rx_hot:
                # The last call found its datagrams waiting and never yielded (nor does the
                # lane's write after it): a checkpoint before reading more, so that under a
                # steady stream the other tasks run and a cancellation gets in.
                await anyio.lowlevel.checkpoint()
            self._rx_hot = await self._recv_scattered(batch, start)
        while len(batch.offsets) == start:
            if not self._rx_pending:
                rx.clear()
                transport = self.transport
                try:
                    await transport.recv_batch(rx)
                except anyio.ClosedResourceError:
                    if transport is self.transport:
                        raise
                    continue  # the listen port changed: receive on the new socket
                self._note_load(transport)
            self._open_rx(batch)
            if len(batch.offsets) > start:
                break
            await anyio.lowlevel.checkpoint()
            if self._scatter is not None and self.transport.gro and not self._rx_pending:
                self._rx_hot = await self._recv_scattered(batch, start)
        self._count_rx(batch, start)
        return batch

    def _open_rx(self, batch: PacketBatch) -> None:
        """Decrypt the datagrams received into ``batch``; answer what needs an answer."""
        rx = self._rx
        consumed = self.wg.decrypt_batch(rx, self._clock(), batch)
        if consumed < len(rx):
            # the packet batch is full: keep the rest for the next call
            rx.keep(range(consumed, len(rx)))
            self._rx_pending = True
        else:
            self._rx_pending = False
        if self.wg.has_output:
            self.flush_control()

    def _count_rx(self, batch: PacketBatch, start: int) -> None:
        """Count the packets from ``start`` handed out (split first for a plain device)."""
        if batch.vnet_hdr and not self._device_offload:
            self._split_super_packets(batch, start)
        s = self._stats
        s[0] += len(batch.offsets) - start
        s[1] += sum(batch.lengths[start:])
        s[2] += 1

    async def _recv_scattered(self, batch: PacketBatch, start: int) -> bool:
        """Receive with reads scattered so that native messages open where they land.

        Every peer is a native-mode peer here, so a read is mostly one native message: its
        fragment headers go to one buffer and its chunks, back to back, to another — the sealed
        message is contiguous without a copy. Reads that are not (keepalives, handshakes, a
        message cut by loss) are put back together into datagrams and go the usual way.
        Returns once ``batch`` has packets (or the transport has nothing and something else
        needs a turn: the caller's loop takes over): whether it did so without yielding once.
        """
        hot = True
        while len(batch.offsets) == start:
            transport = self.transport
            try:
                if hot and transport.at_rest:
                    # the next message is most likely a round trip away: wait before reading
                    # (the wait is this call's checkpoint) instead of a read that finds nothing
                    await transport.wait_readable()
                    hot = False
                reads = self._read_scattered(transport, batch)
                if reads:
                    if len(batch.offsets) > start:
                        return hot
                    await anyio.lowlevel.checkpoint()
                else:
                    await transport.wait_readable()
                hot = False
            except anyio.ClosedResourceError:
                if transport is self.transport:
                    raise
                # the listen port changed: receive on the new socket
        return hot

    def _read_scattered(self, transport: UDPTransport, batch: PacketBatch) -> int:
        """Read what is waiting (up to ``_SCATTER_READS`` reads, while ``batch`` has room)
        the scattered way and open it into ``batch``; answer what needs an answer. How many
        reads found something (a datagram kept from an earlier read counts as one)."""
        sc = self._scatter
        assert sc is not None
        wg = self.wg
        reads = 0
        if self._rx_pending:
            # what an earlier read left for want of room goes first, before anything newer
            self._open_rx(batch)
            reads = 1
        if self._rx_pending:
            return reads
        while (
            reads < _SCATTER_READS
            and batch.room() > sc.largest
            and len(batch.offsets) + UDP_MAX_SEGMENTS < batch.max_packets
        ):
            iov = sc.iov if sc.bulk else sc.iov_small
            try:
                n, seg, addr = transport.recv_scattered_nowait(iov)
            except BlockingIOError:
                break
            reads += 1
            now = self._clock()
            count = -(-n // seg)
            whole = seg == sc.stride and count > 1
            if whole:
                sc.bulk = True
                sc.small = 0
            elif sc.headers[2] == 1 and sc.headers[0] == MESSAGE_NATIVE:
                # messages of one fragment, a few in a row: a ping, ACKs, at rest
                sc.small += 1
                if sc.small >= _SHORT_AFTER:
                    sc.bulk = False
            # (anything else — the lone last fragment of a big message, a handshake —
            # leaves the list as it is). A lone datagram longer than our fragments (a
            # peer with a larger MTU) did not land as one header and one chunk: it is
            # put back together below.
            if n > NATIVE_HEADER_SIZE and (
                (whole and iov is sc.iov) or (count == 1 and n <= sc.stride)
            ):
                last = n - seg * (count - 1)
                # the chunks this read brought, no more: a header claiming a larger chunk
                # than our stride would otherwise have bytes of earlier reads opened
                done = wg.decrypt_native_scattered(
                    sc.headers_view[: NATIVE_HEADER_SIZE * count],
                    sc.bodies_view[: n - NATIVE_HEADER_SIZE * count],
                    count,
                    last,
                    addr,
                    now,
                    batch,
                )
                if done is not None:
                    continue
            rx = self._rx
            rx.clear()
            sc.gather(rx.buffer, n, iov)
            rx.add_segments(0, n, seg, addr)
            took = wg.decrypt_batch(rx, now, batch)
            if took < len(rx):
                # native messages this read completed from stored fragments (each a whole
                # super-packet, however small the fragment) filled ``batch``: the rest waits
                rx.keep(range(took, len(rx)))
                self._rx_pending = True
                break
        if reads:
            transport.backlogged = reads >= _SCATTER_READS
            self._note_load(transport)
            self.flush_control()
        return reads

    async def send_batch(self, batch: PacketBatch) -> None:
        """Encrypt ``batch`` (routed by AllowedIPs) and send the datagrams.

        Raises:
            anyio.ClosedResourceError: the transport was closed.
        """
        if self._held is not None and await self._send_held(batch):
            return
        tx = self._tx
        self._count_tx(batch)
        now = self._clock()
        if self._split_out and batch.vnet_hdr:
            batch = self._split_for_wireguard(batch)
        while True:
            done, rest = self._seal(batch, now)
            while tx or tx.gathered:
                transport = self.transport
                try:
                    # no extra event-loop turn: the lane yields when it reads next
                    await transport.send_batch(tx, checkpoint=False)
                    break
                except anyio.ClosedResourceError:
                    if transport is self.transport:
                        raise
                    # the listen port changed: send on the new socket
            if rest:
                self._send_now(rest)
            if done >= len(batch.offsets) or not done:
                break
            batch.keep(range(done, len(batch)))
        self._drain_events()

    async def _send_held(self, batch: PacketBatch) -> bool:
        """Send, waiting for room, what :meth:`_express_send` sealed for ``batch``'s packet and
        the full socket buffer did not take; whether ``batch`` was that packet (else what was
        held is lost, counted as a lost datagram's bytes are, and ``batch`` goes as usual)."""
        assert self._held is not None
        packet, tx = self._held
        self._held = None
        try:
            if len(batch.offsets) != 1 or batch.to_list() != packet:
                self._unsent(tx)
                return False
            self._count_tx(batch)
            while True:
                transport = self.transport
                try:
                    await transport.send_batch(tx, checkpoint=False)
                    break
                except anyio.ClosedResourceError:
                    if transport is self.transport:
                        raise
        finally:
            tx.clear()
            self._spare_tx = tx
        self._drain_events()
        return True

    def _hold(self, batch: PacketBatch, tx: DatagramBatch) -> None:
        """Keep ``tx``, sealed for ``batch``'s lone packet, for the task's :meth:`send_batch` of
        that packet; seal into another batch meanwhile."""
        spare, self._spare_tx = self._spare_tx, None
        if self._held is not None:  # (never: the task sends what the last one held first)
            spare = self._held[1]
            self._unsent(spare)
            spare.clear()
        self._held = (batch.to_list(), tx)
        self._tx = spare or DatagramBatch(capacity=2 << 20, gather=True)

    def _count_tx(self, batch: PacketBatch) -> None:
        s = self._stats
        s[3] += len(batch.offsets)
        s[4] += sum(batch.lengths)
        s[5] += 1

    def _seal(self, batch: PacketBatch, now: float) -> tuple[int, list[tuple[bytes, Any]]]:
        """Encrypt ``batch`` into the send batch, with the handshake initiations it started;
        how many packets were taken, and the control messages that did not fit."""
        tx = self._tx
        tx.clear()
        wg = self.wg
        done = wg.encrypt_batch(batch, now, tx)
        # (a batch sealed in a session mostly leaves no control message)
        return done, self._append_control(tx, wg.datagrams_to_send()) if wg.has_output else []

    # -- a tunnel lane's express path (see the pipeline engine's _express) ------------------

    def _express_source(self) -> ExpressSource:
        return self._express_ready, self._express_wait, self._express_recv

    def _express_sink(self) -> ExpressSink:
        return self._express_send

    def _express_ready(self, batch: PacketBatch) -> bool:
        # at rest, nothing kept from the last receive
        transport = self.transport
        return not self._rx_pending and transport.at_rest and transport.serves

    async def _express_wait(self, step: Callable[[], bool]) -> None:
        transport = self.transport
        try:
            await transport.serve_readable(step)
        except anyio.ClosedResourceError:
            if transport is self.transport:
                raise
            # the listen port changed: recv_batch receives on the new socket

    def _express_recv(self, batch: PacketBatch, whole: bool) -> int:
        """:meth:`recv_batch`'s work on what the socket has now, without waiting."""
        transport = self.transport
        if self._scatter is not None and transport.gro:
            reads = self._read_scattered(transport, batch)
            if not batch.offsets:
                return NOTHING  # (keepalives, handshakes: answered)
            self._count_rx(batch, 0)
            return LONE if reads == 1 and len(batch.offsets) == 1 and transport.at_rest else MORE
        rx = self._rx
        rx.clear()
        got = transport.recv_nowait(rx)
        if got <= 0:
            return NOTHING if got == 0 else DECLINED
        self._note_load(transport)
        self._open_rx(batch)
        if not batch.offsets:
            # handshakes, keepalives (answered); or a full batch kept (the task's turn)
            return MORE if self._rx_pending else NOTHING
        self._count_rx(batch, 0)
        return LONE if got == 1 and len(batch.offsets) == 1 and not self._rx_pending else MORE

    def _express_send(self, batch: PacketBatch) -> bool:
        """:meth:`send_batch` for a lone packet, without waiting. ``False`` for a super-packet
        (bulk traffic, which the task sends, waiting for room as it must), for what WireGuard
        peers need split (and checksummed) first, and when the socket buffer is full: the
        task then sends the packet, waiting for room as :meth:`send_batch` does — what was
        sealed for it here (its datagram, or the handshake initiation it started, the packet
        staged), not sealed again."""
        if batch.lengths[0] > self.mtu or (self._split_out and batch.vnet_hdr):
            return False
        tx = self._tx
        _, rest = self._seal(batch, self._clock())  # (a lone packet fits an empty batch)
        sent = True
        if tx or tx.gathered:
            while True:
                transport = self.transport
                try:
                    sent = transport.send_batch_nowait(tx, drop_when_full=False) >= 0
                    break
                except anyio.ClosedResourceError:
                    if transport is self.transport:
                        raise
        if sent:
            self._count_tx(batch)
        else:
            self._hold(batch, tx)
        if rest:
            self._send_now(rest)
        if self.wg.has_output:  # (mostly no event)
            self._drain_events()
        return sent

    def _unsent(self, tx: DatagramBatch) -> None:
        """Nothing of ``tx`` went (a full socket buffer): its bytes come off what the protocol
        counted as sent, as a lost datagram's do (see ``UDPTransport.on_unsent``)."""
        unsent = self.wg.unsent
        for addr, n in zip(tx.addresses, tx.lengths, strict=True):
            unsent(addr, n)
        for addr, _, n, _ in tx.gathered:
            unsent(addr, n)

    def statistics(self) -> PortStatistics:
        """Packets through the port (IP packets, not datagrams; see the transport for those)."""
        s = self._stats
        t = self.transport_statistics()
        return PortStatistics(self.name, "wireguard", s[0], s[1], s[2], s[3], s[4], s[5], t.drops)

    def transport_statistics(self) -> TransportStatistics:
        """The transport's counters, those of the transports it replaced included."""
        t = self.transport.statistics()
        return t if self._earlier is None else self._earlier.merge(t)

    def replace_transport(self, new: UDPTransport) -> UDPTransport:
        """Send and receive on ``new`` from now on (a new listen port), its counters carrying
        on from the old one's; returns the old transport, for the caller to close."""
        old = self.transport
        self._earlier = self.transport_statistics()
        self.transport = new
        new.on_unsent = self.wg.unsent
        # the kernel's drops and the drained reads are counted per socket, from the new one's
        self._kernel_drops = new.kernel_drops
        self._drained = new.drained
        self._backlog = 0
        return old

    def handle(self) -> PortHandle | None:
        """``None``: the protocol state cannot be shared with a worker process."""
        return None

    def link(self) -> tuple[int, str] | None:
        """``None``: no kernel interface behind this port."""
        return None

    # -- control traffic ------------------------------------------------------------------

    def flush_control(self) -> None:
        """Send what the protocol queued (handshakes, cookies, keepalives, staged packets)
        without waiting: a full socket buffer loses them, as the network may (counted)."""
        out = self.wg.datagrams_to_send()
        if out:
            self._send_now(out)
        self._drain_events()

    @staticmethod
    def _append_control(tx: DatagramBatch, out: list[tuple[bytes, Any]]) -> list[tuple[bytes, Any]]:
        for k, (data, addr) in enumerate(out):
            if tx.room() < len(data):
                return out[k:]
            tx.append(data, address=addr)
        return []

    def _send_now(self, out: list[tuple[bytes, Any]]) -> None:
        ctl = self._ctl
        while out:
            ctl.clear()
            out = self._append_control(ctl, out)
            self.transport.send_batch_nowait(ctl)

    # -- timers ---------------------------------------------------------------------------

    async def run_timers(
        self,
        *,
        start: bool = True,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the protocol's timers until cancelled: retransmissions, keepalives, rekeying and
        key erasure at the deadlines :meth:`WireGuard.get_timer` gives, what they queue sent
        (:meth:`flush_control`). Between deadlines the task sleeps; a deadline set earlier
        meanwhile (a packet starting a handshake on an idle interface) wakes it
        (:meth:`WireGuard.on_earlier_timer`), so nothing needs to poll.

        ``tg.start_soon(port.run_timers)``, or ``await tg.start(port.run_timers)`` to go on once
        the interface is up. One such task per port and protocol object (it holds the
        protocol's timer hook while it runs).

        Args:
            start: first :meth:`WireGuard.start` (the interface comes up: peers with a
                persistent keepalive send one now); ``False`` when that was done already.

        Raises:
            RuntimeError: this port's timers run already, or another hook has the protocol
                object's (:meth:`WireGuard.on_earlier_timer`: another port's timer task).
            Exception: what :meth:`WireGuard.handle_timer` and :meth:`flush_control` raise (an
                event hook's error, a send error that no datagram loss explains).
        """
        if self._timer_wait is not None:
            raise RuntimeError(f"{self.name}: its timers run already")
        wg, clock = self.wg, self._clock
        if wg._earlier is not None:  # (another port's timer task, or a hook of the user's)
            raise RuntimeError(
                f"{self.name}: the protocol object's timer hook is taken (on_earlier_timer): "
                "one timer task per WireGuard"
            )
        waiting = self._timer_wait = DeadlineWait()
        wg.on_earlier_timer(waiting.wake)
        try:
            if start:
                wg.start(clock())
                self.flush_control()
            task_status.started()
            while True:
                now = clock()
                deadline = wg.get_timer()
                if deadline is not None and deadline <= now:
                    wg.handle_timer(now)
                    self.flush_control()
                    await anyio.lowlevel.checkpoint()  # (rounds back to back: let the rest run)
                    continue
                await waiting.sleep(deadline, now)
        finally:
            wg.on_earlier_timer(None)
            self._timer_wait = None

    def _wake_timers(self) -> None:
        """Have :meth:`run_timers` read the next deadline again."""
        if self._timer_wait is not None:
            self._timer_wait.wake()

    def peers_changed(self) -> None:
        """Call after peers were added or changed: a WireGuard peer among native ones gets
        MTU-sized packets (super-packets read whole are split for it)."""
        peers = self.wg.peers
        self._split_out = self._super_packets and not all(p.native_mode for p in peers.values())
        logged = self._handshakes_logged
        self._handshakes_logged = {pk: v for pk, v in logged.items() if pk in peers}

    def _split_for_wireguard(self, batch: PacketBatch) -> PacketBatch:
        out, malformed, lost = _split_whole(batch, 0, self._out_split)
        self._out_split = out
        if malformed or lost:
            self._count_split_drops(malformed, lost)
        return out

    def _count_split_drops(self, malformed: int, lost: int) -> None:
        self.wg.count_dropped("malformed", malformed)
        self.wg.count_dropped("split_overflow", lost)

    def on_event(self, hook: Callable[[Event], None]) -> None:
        """Call ``hook(event)`` for every protocol event from now on.

        The hook runs where the event happened: in a lane's task, or — for a packet at rest
        on asyncio and uvloop — in the event loop's reader callback, where no task is current
        (``anyio.get_current_task()`` raises there). It must not block; what it raises stops
        the lane, as anywhere on the data path.
        """
        self._event_hooks.append(hook)

    def remove_event_hook(self, hook: Callable[[Event], None]) -> None:
        """Stop calling ``hook``."""
        with contextlib.suppress(ValueError):
            self._event_hooks.remove(hook)

    def _drain_events(self) -> None:
        wg = self.wg
        while (event := wg.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, HandshakeCompleted):
                self._log_handshake(event)
            else:
                log.debug("%s", event)
            for hook in self._event_hooks:
                hook(event)

    def _log_handshake(self, event: HandshakeCompleted) -> None:
        """Log a completed handshake: at info level if the peer's last one logged there is
        :data:`_HANDSHAKE_LOG_EVERY` seconds old (with the count of those since), else at debug
        level."""
        now = self._clock()
        key = event.public_key
        last = self._handshakes_logged.get(key)
        if last is not None and 0 <= now - last[0] < _HANDSHAKE_LOG_EVERY:
            self._handshakes_logged[key] = (last[0], last[1] + 1)
            log.debug("%s", event)
            return
        self._handshakes_logged[key] = (now, 0)
        if last is not None and last[1]:
            log.info(
                "handshake with %s completed (%d more since the last one logged)", key, last[1]
            )
        else:
            log.info("handshake with %s completed", key)

    # -- helpers ----------------------------------------------------------------------------

    def _note_load(self, transport: UDPTransport) -> None:
        # "Under load" (handshakes must carry a cookie) comes from the transport's queue: the
        # kernel dropping datagrams, or many receives in a row that found more waiting (a read
        # that found the queue empty since the last look ends the row, as one that found less).
        if transport.backlogged:
            drained = transport.drained
            if drained != self._drained:
                self._drained = drained
                self._backlog = 1
            else:
                self._backlog += 1
        else:
            self._backlog = 0
        drops = transport.kernel_drops
        if self._backlog >= _BACKLOG_READS or drops > self._kernel_drops:
            self._kernel_drops = drops
            self._backlog = 0
            self.wg.set_under_load(self._clock(), _UNDER_LOAD_FOR)

    def _split_super_packets(self, batch: PacketBatch, start: int) -> None:
        """Native super-packets for a device without offload: cut them into MTU packets with
        complete checksums, in place (the engine writes the batch it passed in). What does not
        split, and segments beyond the batch's room, are dropped and counted."""
        out, malformed, lost = _split_whole(batch, start, self._split, batch.capacity)
        self._split = out
        batch.keep(range(start))
        batch.end = batch.offsets[-1] + batch.lengths[-1] if batch.offsets else 0
        batch.vnet_hdr = False
        for p in out:
            if batch.room() < len(p):
                # never with new_batch()'s sizes and segments of a usual size (they add < 5 %
                # to super-packets)
                lost += 1
                continue
            batch.append(p)
        if malformed or lost:
            self._count_split_drops(malformed, lost)


class _Scatter:
    """Buffers for scattered reads: fragment headers apart from their chunks.

    One read of ``k`` datagrams of ``stride`` bytes lands header ``i`` at
    ``headers[20 i : 20 i + 20]`` and its chunk at ``bodies[chunk i : chunk (i + 1)]``.
    """

    def __init__(self, stride: int) -> None:
        self.stride = stride
        chunk = stride - NATIVE_HEADER_SIZE
        self.chunk = chunk
        slots = -(-MAX_DATAGRAM // stride) + 1
        self.headers = bytearray(NATIVE_HEADER_SIZE * slots)
        self.bodies = bytearray(chunk * slots)
        self.headers_view = memoryview(self.headers)
        self.bodies_view = memoryview(self.bodies)
        h, b = self.headers_view, self.bodies_view
        #: the scatter list, built once: header 0, chunk 0, header 1, chunk 1…
        self.iov = [
            view
            for i in range(slots)
            for view in (
                h[NATIVE_HEADER_SIZE * i : NATIVE_HEADER_SIZE * (i + 1)],
                b[chunk * i : chunk * (i + 1)],
            )
        ]
        #: The short list, for everything but messages of many whole fragments — pings,
        #: the acknowledgements coming back to a sender, a tunnel at rest: header 0 and chunk 0,
        #: then one buffer for the rest of a longer read (put back together and opened by
        #: decrypt_batch). Python turns every buffer of a list into an iovec on each read:
        #: 4.4 µs with the long list against 1.5 with a short one when warm, a median 42 µs
        #: for a ping's read on a cold wake-up — twice per wake-up, with the read that finds
        #: nothing.
        self.tail = bytearray(MAX_DATAGRAM)
        self.iov_small = [h[:NATIVE_HEADER_SIZE], b[:chunk], memoryview(self.tail)]
        #: read with the long list: a message of many whole fragments came last, and fewer
        #: than _SHORT_AFTER one-fragment messages since
        self.bulk = False
        #: one-fragment messages read since the last big one
        self.small = 0
        #: the most one read can add to a packet batch: a native super-packet, or up to 64
        #: WireGuard messages' packets with their headroom
        self.largest = MAX_DATAGRAM + (UDP_MAX_SEGMENTS + 1) * HEADROOM

    @staticmethod
    def gather(out: bytearray, n: int, iov: list[memoryview]) -> None:
        """Put the first ``n`` bytes read with ``iov`` back together, contiguous, at
        ``out[0:n]``."""
        pos = 0
        for piece in iov:
            take = min(len(piece), n - pos)
            out[pos : pos + take] = piece[:take]
            pos += take
            if pos >= n:
                return


class WireGuardInterface:
    """A running WireGuard interface (made by :func:`open_interface`).

    Attributes:
        name: the interface name.
        wg: the protocol core (read it; change it from the event loop thread only).
        device: the TUN device.
        port: the network side of the tunnel.
        tunnel: the pipeline running the data path.
        uapi_path: the control socket (``None`` without one).
    """

    def __init__(
        self,
        name: str,
        wg: WireGuard,
        device: AsyncDevice,
        port: WireGuardPort,
        tunnel: Tunnel,
        *,
        netns: str | None,
        uapi_path: str | None,
        clock: Callable[[], float],
        routes: _routing.Routes | _routing.DeviceRoutes | None = None,
        route_table: str | int = "off",
        journal: Callable[[_routing.RoutingRecord], None] | None = None,
        addresses: Sequence[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = (),
    ) -> None:
        self.name = name
        self.wg = wg
        self.device = device
        self.port = port
        self.tunnel = tunnel
        self.uapi_path = uapi_path
        self._netns = netns
        self._clock = clock
        #: one set at a time (wireguard-go's ipcMutex): a set's check, off the loop for a
        #: large one, must see the peers the set before it made
        self._set_lock = anyio.Lock()
        #: the routes added (what is removed when the interface goes down); :meth:`sync` may
        #: make them when there were none
        self._routes = routes
        #: one change of the routes at a time: a reload's and the link watch's putting back
        #: each run in a worker thread, over the same routes
        self._routes_lock = anyio.Lock()
        #: the ``Table`` routes were added as (``"off"``: none, ``routes=False`` included)
        self._route_table = route_table
        self._journal = journal
        #: the device's addresses as configured, put back after the link went down and up
        self._addresses = tuple(addresses)
        self._closed = anyio.Event()
        #: what :meth:`close` wakes (:meth:`wait_handshake`'s events)
        self._wakes: set[anyio.Event] = set()
        #: why the interface stopped (``None`` while it runs)
        self.stop_reason: str | None = None
        self._cancel: anyio.CancelScope | None = None
        # what stopped the data path, raised when the ``async with`` block ends
        self._failure: BaseException | None = None

    @property
    def policy_mark(self) -> int | None:
        """The fwmark by which the policy rules of a default route (``Table = auto``, Linux)
        tell the tunnel's own datagrams from what goes into it (their table's number);
        ``None`` without such rules (a reload may bring or take them)."""
        routes = self._routes
        return (routes.policy_table or None) if routes is not None else None

    def __repr__(self) -> str:
        return f"<WireGuardInterface {self.name}>"

    @property
    def failure(self) -> BaseException | None:
        """What stopped the data path (or the timer task) on its own — a
        :class:`~tunflow.DeviceGoneError` when the device was deleted — also raised from the
        ``async with`` block; ``None`` otherwise."""
        return self._failure

    @property
    def transport(self) -> UDPTransport:
        """The UDP transport (it changes when the listen port does)."""
        return self.port.transport

    @property
    def listen_port(self) -> int:
        """The UDP port the interface listens on (listened on, once it is down)."""
        try:
            return int(self.transport.local_address[1])
        except anyio.ClosedResourceError:
            return self.wg.listen_port

    def now(self) -> float:
        """The protocol's clock."""
        return self._clock()

    def statistics(self) -> InterfaceStatistics:
        """Counters of the protocol, the transport and the device, and every peer."""
        wg = self.wg
        return InterfaceStatistics(
            self.name,
            wg.statistics(),
            self.port.transport_statistics(),
            self.device.statistics(),
            tuple(wg.peer_statistics(pk) for pk in wg.peers),
            self.listen_port,
        )

    def peer(self, public_key: PublicKey | str) -> PeerStatistics:
        """What ``wg show`` prints for one peer.

        Raises:
            ConfigError: no such peer.
        """
        pk = public_key if isinstance(public_key, PublicKey) else PublicKey.from_base64(public_key)
        return self.wg.peer_statistics(pk)

    async def wait_handshake(self, public_key: PublicKey | str, timeout: float = 10.0) -> None:
        """Wait until a handshake with the peer completed (at least once).

        Raises:
            TimeoutError: none within ``timeout`` seconds.
            ConfigError: the interface has no such peer (at the start, or at the end of a
                wait during which it was removed).
            anyio.ClosedResourceError: the interface is closed (or closes meanwhile).
        """
        pk = public_key if isinstance(public_key, PublicKey) else PublicKey.from_base64(public_key)
        if self.peer(pk).last_handshake is not None:
            return
        self._check_open()
        done = anyio.Event()

        def seen(event: Event) -> None:
            if isinstance(event, HandshakeCompleted) and event.public_key == pk:
                done.set()

        self.port.on_event(seen)
        self._wakes.add(done)
        try:
            with anyio.fail_after(timeout):
                await done.wait()
        except TimeoutError:
            raise TimeoutError(f"no handshake with peer {pk} within {timeout:g} s") from None
        finally:
            self._wakes.discard(done)
            self.port.remove_event_hook(seen)
        if self.peer(pk).last_handshake is None:
            self._check_open()  # woken by the close

    def skip_time(self, seconds: float) -> None:
        """Move the protocol's clock forward: sessions age and deadlines come nearer at once
        (to see a rekey or a timeout without waiting for it — tests and demonstrations).
        Wall-clock time does not move: handshake timestamps and ``last_handshake`` stay
        ``time.time()``.

        Raises:
            ValueError: ``seconds`` is negative, NaN or infinite.
        """
        if not 0 <= seconds < math.inf:
            raise ValueError(f"skip_time takes a finite number of seconds >= 0, not {seconds!r}")
        clock = self._clock
        if not isinstance(clock, _Clock):
            raise TypeError("this interface's clock cannot be moved")
        clock.skew += seconds
        self.port._wake_timers()

    async def wait_closed(self) -> str:
        """Wait until the interface stopped on its own (device deleted, transport failed);
        the reason."""
        await self._closed.wait()
        return self.stop_reason or "stopped"

    def close(self) -> None:
        """Stop the interface (the ``async with`` block of :func:`open_interface` then ends its
        tasks; cancelling that block does the same)."""
        self.stop_reason = self.stop_reason or "closed"
        self._closed.set()
        for wake in self._wakes:
            wake.set()
        if self._cancel is not None:
            self._cancel.cancel()

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise anyio.ClosedResourceError(f"{self.name} is closed")

    # -- control --------------------------------------------------------------------------

    async def apply_uapi(self, data: bytes) -> bytes:
        """Answer UAPI request bytes as the control socket does (for tests and tools).

        The end of ``data`` is the end of the stream: it ends a ``set=1`` as its empty line
        would (as at the end of a control client's stream); a request cut shorter than that
        (``get=1`` without its empty line) is not answered.

        Raises:
            anyio.ClosedResourceError: the interface is closed.
        """
        self._check_open()
        conn = UapiConnection()
        conn.receive_data(data)
        conn.receive_data(b"")
        out = bytearray()
        while (request := await _next_request(conn)) is not None:
            reply = await self._handle(request)
            if not reply:
                break
            out += reply
        return bytes(out)

    async def _handle(self, request: Any) -> bytes:
        if isinstance(request, SetRequest):
            return await self._set(request)
        return handle_request(
            self.wg, request, now=self._clock(), scoped_endpoint=self.transport.numeric_scope
        )

    async def sync(
        self,
        config: InterfaceConfig,
        *,
        listen_port: bool = True,
        fwmark: bool = True,
        routes: bool = False,
    ) -> _routing.RouteChanges:
        """Make the running interface what ``config`` says, as ``wg syncconf`` would, whole or
        not at all (what ``tunflow up`` does on SIGHUP).

        The private key (removed when ``config`` has none, as ``wg syncconf`` of a file without
        ``PrivateKey`` removes it), the port (``listen_port=False``: the configuration gave
        none, keep it), the fwmark (likewise) and the peers are set as
        :func:`~tunflow.wireguard.protocol.sync_request` says — peers it does not name are
        removed, the others keep their sessions — and each peer's native mode as ``config``
        has it. The MTU and addresses stay as they are (as with ``wg syncconf``).

        With ``routes=True`` (``tunflow reload``), once that is applied, the routes follow the
        new AllowedIPs as :func:`open_interface` added them (its ``table``; nothing when it
        added none): see :meth:`~tunflow.wireguard._routing.Routes.update`. A route the kernel
        refuses does not undo the peers: it is logged and reported in what is returned. A
        default route (``Table = auto``) that comes or goes brings or takes its policy table's
        rules and nftables table as :func:`open_interface` sets them up; one that comes to an
        interface without a fwmark makes the table its fwmark (set before the rules exist), and
        :attr:`policy_mark` follows. The fwmark stays when the last default route goes (as
        wg-quick leaves it): harmless without the rules.
        With ``routes=False`` the routes stay as they are, as with ``wg syncconf``.

        Returns:
            What happened to the routes (nothing with ``routes=False``).

        Raises:
            UapiError: refused (a peer key that is not a point of the curve, the new port in
                use, another fwmark than :attr:`policy_mark` — the tunnel's own datagrams would
                loop into it…); nothing changed. ``errno`` says why, as ``wg set`` would hear
                it.
            anyio.ClosedResourceError: the interface is closed; nothing changed.

        Cancelled before its change is made, it changes nothing; once the change is made it is
        finished (routes included) whatever is cancelled.
        """
        self._check_open()
        request = sync_request(self.wg, config, listen_port=listen_port, fwmark=fwmark)
        await self._apply_set(request, native={p.public_key: p.native_mode for p in config.peers})
        if not routes:
            return _routing.RouteChanges()
        return await self._follow_routes()

    def _allowed_ips(self) -> set[_routing.Network]:
        wg = self.wg
        return {net for pk in wg.peers for net in wg.peer_statistics(pk).allowed_ips}

    async def _follow_routes(self) -> _routing.RouteChanges:
        # after the peers were applied: nothing here may undo them, so a failure is reported;
        # shielded, so that a Routes made here is kept (and so closed with the interface)
        try:
            with anyio.CancelScope(shield=True):
                async with self._routes_lock:
                    self._routes, changes = await _routing.update_routes(
                        self.device,
                        self._routes,
                        self._allowed_ips(),
                        table=self._route_table,
                        netns=self._netns,
                        name=self.name,
                        journal=self._journal,
                        fwmark=self.wg.fwmark,
                        set_fwmark=self._policy_fwmark,
                    )
        except (OSError, ConfigError) as exc:
            log.warning("%s: the routes do not follow the reload: %s", self.name, exc)
            return _routing.RouteChanges(refused=(str(exc),))
        if changes:
            log.debug("%s: %s", self.name, changes.describe())
        return changes

    def _policy_fwmark(self, mark: int) -> None:
        # a default route came with a reload into an interface without a fwmark: its policy
        # table is the mark now, as open_interface makes it (before the rules exist)
        self.transport.set_fwmark(mark)
        self.wg.fwmark = mark

    async def _set(self, request: SetRequest) -> bytes:
        try:
            await self._apply_set(request)
        except UapiError as exc:
            return render_errno(exc.errno)
        return render_errno(0)

    async def _apply_set(
        self, request: SetRequest, native: dict[PublicKey, bool] | None = None
    ) -> None:
        """Apply a ``set=1`` whole or not at all (and, with ``native``, those peers' native
        mode, at the same time).

        wireguard-go applies line by line and stops at the first that fails, keeping the lines
        before it. Here the request is checked first, then the I/O that can fail is done while
        nothing has changed — the new port is bound (with the new fwmark), or the fwmark set on
        the socket — and only then are the protocol's state changed and the new socket swapped
        in. A failure raises :class:`UapiError` and leaves keys, peers, port and fwmark as they
        were. Sets are applied one at a time.
        """
        async with self._set_lock:
            await self._apply_set_now(request, native)

    async def _apply_set_now(
        self, request: SetRequest, native: dict[PublicKey, bool] | None
    ) -> None:
        wg = self.wg
        # cancelled already: nothing changes (below, no await before the change is made but
        # the check's thread, after which it is finished shielded)
        await anyio.lowlevel.checkpoint_if_cancelled()
        if len(request.peers) > _CHECK_ON_LOOP:
            # a new peer's check is an X25519 (~50 µs): thousands of them, off the loop, so the
            # data path keeps running (check_set only reads wg; what changes meanwhile —
            # another set, a new key — apply_set allows for)
            # (in a daemon thread: a way down does not wait for the check's end)
            checked = await in_daemon_thread(lambda: check_set(wg, request), "tunflow set")
        else:
            checked = check_set(wg, request)
        _check_scopes(self.transport, [p.endpoint for p in request.peers], UapiError)
        policy = self.policy_mark
        if request.fwmark is not None and policy is not None and request.fwmark != policy:
            # (wg set as tunflow reload: the kernel's WireGuard and wireguard-go would take it,
            # and the tunnel's datagrams would then loop into the tunnel)
            raise UapiError(
                f"FwMark {request.fwmark:#x}: the default route's policy rules use the mark "
                f"{policy:#x} (the tunnel's datagrams would loop into it); restart the "
                "interface to change it"
            )
        self._check_open()  # (closed while the check ran: nothing to bind a socket for)
        mark = wg.fwmark if request.fwmark is None else request.fwmark
        new: UDPTransport | None = None
        try:
            if request.listen_port is not None and request.listen_port != wg.listen_port:
                new = _bind(request.listen_port, mark, self._netns)
            elif mark != wg.fwmark:
                self.transport.set_fwmark(mark)
        except OSError as exc:
            log.warning("%s: UAPI set refused, nothing changed: %s", self.name, exc)
            # wireguard-go's IpcErrorPortInUse, for a port it cannot bind and for a fwmark it
            # cannot set alike ("failed to set listen_port", "failed to update fwmark")
            raise UapiError(str(exc), errno.EADDRINUSE) from exc
        # closed on the way out, whatever happens: the new socket until it is swapped in, then
        # the old one (left open, it kept its port bound until garbage-collected)
        spare = new
        try:
            # cannot fail now: check_set refused what it would refuse, and a SetRequest holds
            # no value out of range (its fields are checked when it is made)
            apply_set(wg, checked, now=self._clock())
            for pk, mode in (native or {}).items():
                peer = wg.peer(pk)
                if peer is not None:
                    peer.native_mode = mode
            if new is not None:
                spare = self.port.replace_transport(new)
                wg.listen_port = self.listen_port  # the one bound (listen_port=0: any free port)
                log.info("%s listens on UDP port %d", self.name, wg.listen_port)
            self.port.peers_changed()
            # (may raise: an event hook's error, a send error no datagram loss explains)
            self.port.flush_control()
        finally:
            if spare is not None:
                with anyio.CancelScope(shield=True):  # made: a cancellation here would leak it
                    await spare.aclose()

    # -- tasks ------------------------------------------------------------------------------

    async def _timers(self) -> None:
        try:
            await self.port.run_timers(start=False)  # (_interface started it)
        except Exception as exc:
            # (a send the transport cannot explain, an event hook): the interface stops as it
            # does when the data path fails, and says why
            self.stop_reason = f"the timers failed: {exc}"
            self._failure = exc
            self.close()

    async def _watch_link(self) -> None:
        """Put back what the kernel takes away with the link going down (``ip link set wg0
        down``, a network manager cycling it) once it is up again: the configured addresses
        it removed (IPv6's) and the AllowedIPs routes (Linux). A failure here is logged: the
        tunnel itself runs on."""
        index = self.device.if_index()
        try:
            watch = await anyio.to_thread.run_sync(lambda: _routing.link_watch(index, self._netns))
        except OSError as exc:
            log.warning("%s: cannot watch the link: %s", self.name, exc)
            return
        try:
            # the link may have gone down and up before the watch subscribed (a network
            # manager meeting the new interface, the block's first line): as for lost
            # notifications, what is missing is put back
            was_up = await self.device.is_running()
            if was_up:
                await self._restore_link(quiet=True)
            while True:
                await anyio.wait_readable(watch.fileno())
                changes = watch.changes()
                for link in changes:
                    if link is None:
                        # notifications were lost (not read in time; the watch hears every
                        # link's): it may have gone down and up meanwhile, and what is put
                        # back is what is missing (said only if something was)
                        up = await self.device.is_running()
                        if up:
                            await self._restore_link(quiet=True)
                    else:
                        up = link.is_up
                        if up and not was_up:
                            await self._restore_link()
                    was_up = up
        except OSError as exc:
            if self._closed.is_set():
                return
            log.warning("%s: no longer watching the link: %s", self.name, exc)
        finally:
            watch.close()

    async def _restore_link(self, *, quiet: bool = False) -> None:
        """Put back the addresses and routes that are missing; ``quiet``: say so only when
        something was."""
        with anyio.CancelScope(shield=True):
            added = 0
            try:
                have = set(await self.device.addresses())
                for a in self._addresses:
                    if a not in have:
                        if a.version == 4:
                            await self.device.add_address_v4(a.ip, a.network.prefixlen)
                        else:
                            await self.device.add_address_v6(a.ip, a.network.prefixlen)
                        added += 1
            except (OSError, TunflowError) as exc:
                log.warning("%s: cannot put back its addresses: %s", self.name, exc)
            back = 0
            async with self._routes_lock:
                routes = self._routes
                if isinstance(routes, _routing.Routes):
                    try:
                        back = await anyio.to_thread.run_sync(routes.restore)
                    except OSError as exc:  # closed meanwhile
                        log.warning("%s: cannot put back its routes: %s", self.name, exc)
            if quiet and not added and not back:
                return
            log.info(
                "%s: the link is up again: %d address(es) and %d route(s) put back",
                self.name,
                added,
                back,
            )

    async def _run_tunnel(self) -> None:
        try:
            await self.tunnel.run()
            self.stop_reason = "the data path ended"
        except (DeviceGoneError, anyio.BrokenResourceError) as exc:
            self.stop_reason = "the device was deleted"
            self._failure = exc
        except anyio.ClosedResourceError:
            self.stop_reason = "closed"
        except Exception as exc:
            self.stop_reason = f"the data path failed: {exc}"
            self._failure = exc
        self.close()

    async def _uapi(self, listener: anyio.abc.SocketListener) -> None:
        raw = listener.extra(anyio.abc.SocketAttribute.raw_socket)
        failed = 0  # accepts failed in a row
        async with listener, anyio.create_task_group() as tg:
            while True:
                try:
                    await anyio.wait_readable(raw)  # see _uapi_client
                    client = await listener.accept()
                except anyio.ClosedResourceError:
                    return
                except (anyio.BrokenResourceError, OSError) as exc:
                    # (anyio raises what accept(2) refused — EMFILE, ENFILE, ENOMEM — as
                    # BrokenResourceError): retried while the clients wait in the backlog;
                    # logged the first time of a run
                    if not failed:
                        log.warning(
                            "UAPI accept failed: %s (retried every 0.1 s, not logged again "
                            "until one succeeds)",
                            exc.__cause__ or exc,
                        )
                    failed += 1
                    await anyio.sleep(0.1)
                    continue
                if failed:
                    log.info("UAPI accepts again, after %d failed", failed)
                    failed = 0
                tg.start_soon(self._uapi_client, client)

    async def _uapi_client(self, client: anyio.abc.SocketStream) -> None:
        # the waits are anyio.wait_readable/wait_writable, not the stream's own: on the asyncio
        # backend (uvloop too) a UNIX stream's receive, send (and a listener's accept) wait on
        # a future its socket's reader sets, and a task cancelled there (idle timeout, the
        # interface closing) just as the socket turned ready had its cancelled future set by
        # that reader: "Exception in callback Future.set_result(None) … InvalidStateError"
        # from the loop (anyio 4.16; anyio#1267 fixed the same race in aclose only). Once the
        # socket is ready, the stream's call does not wait.
        raw = client.extra(anyio.abc.SocketAttribute.raw_socket)
        conn = UapiConnection()
        async with client:
            try:
                while True:
                    # a client silent that long (mid-request, or between requests) is let go;
                    # one that keeps talking is served as long as it does
                    with anyio.move_on_after(UAPI_IDLE_TIMEOUT) as idle:
                        try:
                            await anyio.wait_readable(raw)
                            data = await client.receive(65536)
                        except anyio.EndOfStream:
                            data = b""  # ends a set=1 without its empty line, as in wireguard-go
                    if idle.cancelled_caught:
                        return
                    conn.receive_data(data)
                    while (request := await _next_request(conn)) is not None:
                        reply = await self._handle(request)
                        if not reply:
                            return
                        with anyio.move_on_after(UAPI_IDLE_TIMEOUT) as stuck:
                            await _send_all(raw, reply)
                        if stuck.cancelled_caught:
                            return
                    if not data:
                        return
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return


async def _send_all(sock: socket.socket, data: bytes) -> None:
    """Send all of ``data`` on the non-blocking ``sock``, waiting with ``anyio.wait_writable``
    (see ``_uapi_client`` for why not the stream's ``send``).

    Raises:
        anyio.BrokenResourceError: the peer went away (or another socket error).
    """
    await anyio.lowlevel.checkpoint()
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            await anyio.wait_writable(sock)
        except OSError as exc:
            raise anyio.BrokenResourceError from exc


async def _next_request(conn: UapiConnection) -> GetRequest | SetRequest | UapiError | None:
    """``conn.next_request()``; in a worker thread when much is buffered, so that the data
    path runs on while a large ``set=1`` is parsed (``conn`` is its one task's alone)."""
    if conn.buffered > _PARSE_ON_LOOP:
        # (a daemon thread: a way down does not wait for the parse's end — 2 s for 60 MiB)
        return await in_daemon_thread(conn.next_request, "tunflow set")
    return conn.next_request()


def _plain_reads(device: AsyncDevice) -> None:
    """Keep the virtio-net header but ask the kernel for no TSO/checksum offload: reads are
    plain packets (the kernel segments and checksums), writes may still be super-packets."""
    import fcntl

    from ..platform.linux.tun import TUNSETOFFLOAD

    fcntl.ioctl(device.fileno(), TUNSETOFFLOAD, 0)


def _bind(port: int, fwmark: int, netns: str | None) -> UDPTransport:
    try:
        return UDPTransport.bind(("::", port), fwmark=fwmark, netns=netns)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise OSError(exc.errno, f"UDP port {port} (ListenPort) is in use") from exc


def _check_scopes(
    transport: UDPTransport,
    endpoints: Iterable[tuple[str, int] | None],
    error: type[ConfigError],
) -> None:
    """Refuse a link-local endpoint whose scope names no link in the socket's namespace, as
    ``wg`` and wireguard-go do (``EINVAL``): nothing could be sent to it, nor ``wg`` read it."""
    for addr in endpoints:
        if addr is not None and not transport.has_scope(addr):
            scope = addr[0].partition("%")[2]
            raise error(f"endpoint {format_endpoint(addr)}: no link {scope!r} here")


def _parse_addresses(
    addresses: Iterable[str | ipaddress.IPv4Interface | ipaddress.IPv6Interface],
) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    out = []
    for a in addresses:
        try:
            out.append(a if not isinstance(a, str) else ipaddress.ip_interface(a))
        except ValueError:
            raise ConfigError(f"{a!r} is not an address with a prefix") from None
    return out


@contextlib.asynccontextmanager
async def _interface(
    config: InterfaceConfig,
    *,
    name: str,
    addresses: Sequence[str | ipaddress.IPv4Interface | ipaddress.IPv6Interface],
    routes: bool,
    table: str | int,
    uapi: bool | str,
    netns: str | None,
    offload: bool | None,
    stages: Sequence[Stage | StageSpec],
    journal: Callable[[_routing.RoutingRecord], None] | None,
) -> AsyncIterator[WireGuardInterface]:
    table = _routing.table_setting(table)
    clock = _Clock()
    wg = WireGuard.from_config(config, wall_clock=time.time)
    native_peers = [pk for pk, p in wg.peers.items() if p.native_mode]
    all_native = bool(native_peers) and len(native_peers) == len(wg.peers)
    # The device (measurements in docs/vpn.md, "Choosing the device"). Native peers take
    # offload super-packets whole. WireGuard peers need MTU-sized packets with complete
    # checksums: splitting TSO super-packets in Python costs ~4.5 µs a segment, the kernel does
    # it for ~1 µs a read, so by default the device is opened with a virtio-net header but the
    # kernel is asked for no TSO (plain packets in) — and what comes back from the tunnel is
    # written GRO-coalesced (one super-packet instead of ~40 packets for the kernel's TCP).
    use_offload = True if offload is None else offload
    plain_reads = offload is None and not native_peers
    builder = DeviceBuilder().name(name).mtu(config.mtu).offload(use_offload)
    for a in _parse_addresses(addresses):
        if a.version == 4:
            builder = builder.ipv4(a.ip, a.network.prefixlen)
        else:
            builder = builder.ipv6(a.ip, a.network.prefixlen)
    if netns is not None:
        builder = builder.netns(netns)
    transport = _bind(config.listen_port, config.fwmark, netns)
    uapi_path: str | None = None
    listener: anyio.abc.SocketListener | None = None
    device: AsyncDevice | None = None
    port: WireGuardPort | None = None
    added: _routing.Routes | _routing.DeviceRoutes | None = None
    iface: WireGuardInterface | None = None
    try:
        _check_scopes(transport, [p.endpoint for p in config.peers], ConfigError)
        device = builder.build_async()
        dev_offload = device.offload_info.vnet_hdr
        if dev_offload and plain_reads:
            _plain_reads(device)
        gro = device.gro
        if gro is not None:
            # what the tunnel delivers was authenticated by the AEAD: the kernel's WireGuard
            # marks it CHECKSUM_UNNECESSARY; GRO need not verify it either (2.7 µs a packet)
            gro.verify_checksums = False
        wg.listen_port = int(transport.local_address[1])
        port = WireGuardPort(
            wg,
            transport,
            # whole reads: super-packets for native peers; and with TSO off they are plain
            # packets read straight into the batch (a split read would copy each once more)
            whole=dev_offload and (all_native or plain_reads),
            device_offload=dev_offload,
            mtu=config.mtu,
            clock=clock,
            name=f"{name}/wireguard",
        )
        if routes:
            added = await _routing.add_routes(
                device, wg, transport, table=table, netns=netns, name=name, journal=journal
            )
        if uapi:
            path = uapi if isinstance(uapi, str) else f"{UAPI_DIRECTORY}/{name}.sock"
            with anyio.CancelScope(shield=True):
                # (quick; cancelled, the worker thread binding it would be left to make the
                # socket file after the cleanup below had run)
                listener = await _uapi_listener(path)
            # ours, to unlink on the way out, only now: a refused path may be another
            # process's live socket (wireguard-go's, or another tunflow's)
            uapi_path = path
        tunnel = Tunnel(device, port, stages, name=name)
        iface = WireGuardInterface(
            name,
            wg,
            device,
            port,
            tunnel,
            netns=netns,
            uapi_path=uapi_path,
            clock=clock,
            routes=added,
            route_table=table if routes else "off",
            journal=journal,
            addresses=_parse_addresses(addresses),
        )
        try:
            async with anyio.create_task_group() as tg:
                iface._cancel = tg.cancel_scope
                tg.start_soon(iface._run_tunnel)
                tg.start_soon(iface._timers)
                # (routes on: a reload may make them when up made none)
                if _routing.on_linux() and (iface._route_table != "off" or iface._addresses):
                    tg.start_soon(iface._watch_link)
                if listener is not None:
                    tg.start_soon(iface._uapi, listener)
                    listener = None  # owned by the task now
                # up: peers with a persistent keepalive send one now (starting their handshakes,
                # as wireguard-go and the kernel do)
                wg.start(clock())
                port.flush_control()
                log.info(
                    "%s is up: UDP port %d, %d peer(s), device offload %s",
                    name,
                    iface.listen_port,
                    len(wg.peers),
                    # WireGuard peers: the kernel segments what it hands over, we coalesce
                    "off" if not dev_offload else "writes only" if plain_reads else "on",
                )
                try:
                    yield iface
                finally:
                    iface.close()  # (waking who waits in wait_handshake in another task)
        except BaseExceptionGroup as group:
            # one exception from the block (or a task), sys.exit() and Ctrl-C included: itself,
            # not in a group, by the rule open_pipeline's block follows
            _raise_single(group)
        if iface.failure is not None:
            # the data path failed (the device was deleted…): that cancelled the block; say why
            raise iface.failure
    finally:
        with anyio.CancelScope(shield=True):
            if iface is not None:
                added = iface._routes  # a reload may have made them
            if added is not None:
                await added.aclose()  # policy rules outlive the device; routes do not
            if listener is not None:
                await listener.aclose()
            await transport.aclose()
            if port is not None and port.transport is not transport:
                await port.transport.aclose()  # rebound to another listen port
            if device is not None:
                await device.aclose()
            if uapi_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(uapi_path)


def _prepare_directory(path: str) -> None:
    """Make the socket's directory."""
    Path(path).parent.mkdir(mode=0o755, parents=True, exist_ok=True)


def _socket_state(path: str | os.PathLike[str]) -> str:
    """What is at a control socket's ``path``, as ``wg`` tells it: ``"absent"``; ``"stale"``,
    a socket nobody listens on (connecting is refused: what a killed process left, which
    ``wg`` removes); ``"live"``, a socket a process listens on — one too busy to accept (its
    backlog full) included, and one this process may not connect to; ``"not a socket"``, a
    file of another kind (connecting to it is refused too, but ``wg`` leaves it alone: it was
    never a control socket, so it is not a stale one to remove).

    Never blocks: a UNIX socket's connect succeeds or fails at once when non-blocking.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "absent"
    except OSError:
        return "live"  # (cannot look: not to be removed)
    if not stat.S_ISSOCK(mode):
        return "not a socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.setblocking(False)
        try:
            s.connect(os.fspath(path))
        except ConnectionRefusedError:
            return "stale"
        except FileNotFoundError:
            return "absent"  # removed meanwhile
        except OSError:
            return "live"  # EAGAIN (its backlog is full), EACCES…: not proven gone
    return "live"


def _remove_if_stale(path: str | os.PathLike[str]) -> bool:
    """Remove the control socket at ``path`` if it is stale (see :func:`_socket_state`), as
    ``wg`` does; whether it was removed. Anything else there is left as it is."""
    if _socket_state(path) != "stale":
        return False
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


async def _uapi_listener(path: str) -> anyio.abc.SocketListener:
    """Listen on the control socket, refusing to take over one a live process serves, and to
    remove a file there that is not a socket.

    Raises:
        ConfigError: a process serves the socket there, or a file of another kind is there.
        OSError: the socket cannot be made.
    """
    _prepare_directory(path)
    if _free_socket_path(path) == "stale":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # its process is gone
    return await anyio.create_unix_listener(path, mode=0o600)


def _free_socket_path(path: str) -> str:
    """What is at the control socket's ``path`` (:func:`_socket_state`): ``"absent"`` or
    ``"stale"``; anything else is refused.

    Raises:
        ConfigError: a process serves the socket there, or a file of another kind is there.
    """
    state = _socket_state(path)
    if state == "live":
        raise ConfigError(f"{path} is served by a running process (is the interface up?)")
    if state == "not a socket":
        raise ConfigError(
            f"{path} is there and is not a socket (not a control socket a killed process "
            "left, so it is not removed): remove it, or serve the interface elsewhere"
        )
    return state


def open_interface(
    config: InterfaceConfig,
    *,
    name: str = "wg0",
    addresses: Sequence[str | ipaddress.IPv4Interface | ipaddress.IPv6Interface] = (),
    routes: bool = True,
    table: str | int = "auto",
    uapi: bool | str = True,
    netns: str | None = None,
    offload: bool | None = None,
    stages: Sequence[Stage | StageSpec] = (),
    journal: Callable[[_routing.RoutingRecord], None] | None = None,
) -> AbstractAsyncContextManager[WireGuardInterface]:
    """Bring a WireGuard interface up for the ``async with`` block; tear it down after.

    Creates the TUN device (named ``name``, with ``addresses`` and the MTU of ``config``, up),
    binds the UDP socket (``config.listen_port``; 0: any free port; dual-stack), adds a route for
    every AllowedIPs prefix as wg-quick's ``Table`` says (``table``), serves the UAPI
    (``wg show``/``wg set``) on ``/var/run/wireguard/<name>.sock``, and runs the data path,
    timers and control socket as tasks. Leaving the block (or cancelling it) stops them and
    removes the device, the socket, the control socket and any policy routing rules.

    Args:
        config: keys, port, MTU and peers (``PeerConfig(native_mode=True)`` for tunflow's
            native fast mode with a peer).
        name: the interface name.
        addresses: ``"10.0.0.1/24"``-style addresses for the device.
        routes: add routes for AllowedIPs (``False``: none, as ``table="off"``).
        table: wg-quick's ``Table``. ``"auto"``: routes in the main table, and a default route
            (``0.0.0.0/0``, ``::/0``) in a table of its own with fwmark policy routing, so the
            tunnel's datagrams do not loop — the fwmark (``config.fwmark``, else the first free
            table from 51820, which then becomes the fwmark) selects the table, and rules send
            everything without the mark there (Linux). ``"off"``: no routes. ``"main"`` or a
            table number: every route, default ones included, in that table, and no rules.
        uapi: serve the UAPI on the default path (``True``), on a given path, or not.
        netns: make device and socket in this network namespace (Linux; a name or a path).
        offload: ``True``: TUN offload (super-packets read, split here for WireGuard peers);
            ``False``: a plain TUN; ``None`` (default): offload for native-mode peers, and for
            WireGuard peers a TUN that reads plain packets and writes GRO-coalesced ones.
        stages: pipeline stages between the device and WireGuard (plain IP packets).
        journal: called (in a worker thread; it must not raise) with what the interface's
            policy routing holds outside the device — rules and nftables tables, which outlive
            a killed process — each time that changes, last with what is left once they are
            removed (nothing, normally); a caller keeps it where a later process finds it and
            undoes it with :func:`~tunflow.wireguard._routing.remove_recorded` should this one
            be killed (``tunflow up`` does).

    If the data path stops on its own while the block runs — the device deleted
    (``ip link del``), a device or socket failing — the block is cancelled, everything is torn
    down, and the error is raised from the ``async with`` (``stop_reason`` says why). An
    exception raised in the block comes out as itself, not in an ``ExceptionGroup``.

    Raises:
        ConfigError: a bad value, or the control socket is served by a live process.
        DeviceError: the device could not be made (``DeviceBusyError`` for a name in use…).
        DeviceGoneError: the device was deleted while the block ran.
        OSError: the UDP port could not be bound, or the kernel refused a route or rule
            (:class:`FileExistsError` for a default route already in its table).

    Example:
        >>> import anyio
        >>> from tunflow.wireguard import InterfaceConfig, PrivateKey, open_interface
        >>> async def main() -> None:
        ...     cfg = InterfaceConfig(PrivateKey.generate(), listen_port=51820)
        ...     async with open_interface(cfg, name="wg0", addresses=["10.0.0.1/24"]) as wg0:
        ...         print(wg0.listen_port)
        >>> anyio.run(main)  # doctest: +SKIP
        51820
    """
    return _interface(
        config,
        name=name,
        addresses=addresses,
        routes=routes,
        table=table,
        uapi=uapi,
        netns=netns,
        offload=offload,
        stages=stages,
        journal=journal,
    )
