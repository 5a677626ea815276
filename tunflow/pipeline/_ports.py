"""Ports: where a pipeline's batches come from and go to — one device queue, a transport, memory.

A :class:`Port` is the one interface the engine's workers see. Adapters wrap an
:class:`~tunflow.AsyncDevice` or :class:`~tunflow.SyncDevice` queue (:class:`DevicePort`), a
:class:`~tunflow.transport.Transport` (:class:`TransportPort`), or lists in memory
(:class:`MemorySource`, :class:`MemorySink`, for tests and examples). A port that can be handed to
a worker process describes itself with a picklable :class:`PortHandle` (an fd and what it is).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

import anyio
import anyio.lowlevel
import attrs

from ..device import AsyncDevice, DeviceAttribute, Layer, OffloadInfo, SyncDevice
from ..errors import ClosedDeviceError, ConfigError
from ..packet import IDEAL_BATCH_SIZE, PacketBatch
from ..transport import Transport, TransportStatistics, UDPTransport
from ._stage import copy_map, sum_maps

__all__ = [
    "Port",
    "PortHandle",
    "PortStatistics",
    "DevicePort",
    "SyncDevicePort",
    "TransportPort",
    "MemorySource",
    "MemorySink",
    "as_ports",
    "Endpoint",
    "open_port_handle",
]


@attrs.frozen
class PortStatistics:
    """Counters of one port as the pipeline sees it.

    Attributes:
        name: the port's name (``"tfa/0"`` for queue 0 of device ``tfa``).
        kind: ``"device"``, ``"transport"`` or ``"memory"``.
        rx_packets: packets read (super-packets count once).
        rx_bytes: their bytes.
        rx_batches: batch reads.
        tx_packets: packets written.
        tx_bytes: their bytes.
        tx_batches: batch writes.
        drops: packets the port could not deliver, by reason: for a device ``malformed`` (read
            but not splittable), ``truncated`` (cut short by the kernel: the device's
            ``rx_truncated``) and ``kernel_refused_packet`` (refused in a batch write, skipped);
            for a transport, the transport's reasons.
    """

    name: str
    kind: str
    rx_packets: int = 0
    rx_bytes: int = 0
    rx_batches: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_batches: int = 0
    drops: Mapping[str, int] = attrs.field(factory=dict, converter=copy_map)

    def merge(self, other: PortStatistics) -> PortStatistics:
        """The sum of two records of the same port (from two worker processes)."""
        return PortStatistics(
            self.name,
            self.kind,
            self.rx_packets + other.rx_packets,
            self.rx_bytes + other.rx_bytes,
            self.rx_batches + other.rx_batches,
            self.tx_packets + other.tx_packets,
            self.tx_bytes + other.tx_bytes,
            self.tx_batches + other.tx_batches,
            sum_maps(self.drops, other.drops),
        )


@attrs.frozen
class PortHandle:
    """A port as a worker process reopens it: an inherited fd and what it carries.

    Attributes:
        kind: ``"device"`` (a TUN/TAP queue fd) or ``"udp"`` (a UDP socket fd).
        fd: the descriptor number (the same in the child: it is passed with ``pass_fds``).
        name: the port's name in statistics.
        params: what the child needs besides the fd (``layer``, ``peer``…).
    """

    kind: str
    fd: int
    name: str
    params: Mapping[str, Any] = attrs.field(factory=dict, converter=copy_map)


#: A source port's express path (see the engine's ``_lane_loop``): ``ready(batch)``, whether
#: the lane may wait in ``wait(step)`` now (at rest, on a loop that calls back); ``wait(step)``,
#: wait calling ``step`` from the reader callback; ``recv(batch, whole)``, a read without
#: waiting that returns one of ``tunflow._readiness``'s ``DECLINED``, ``NOTHING``, ``LONE``,
#: ``MORE``. Offered by tunflow's own ports through ``_express_source()``.
ExpressSource: TypeAlias = tuple[
    Callable[[PacketBatch], bool],
    Callable[[Callable[[], bool]], Awaitable[None]],
    Callable[[PacketBatch, bool], int],
]
#: A sink port's ``send(batch)`` without waiting, for a lone packet: ``False`` having done
#: nothing (the lane's task sends it). Offered through ``_express_sink()``.
ExpressSink: TypeAlias = Callable[[PacketBatch], bool]


def stands_for(obj: object, express: str, method: str) -> bool:
    """Whether ``obj``'s ``express`` shortcut stands for its ``method``: both come from the
    same class, so a subclass that overrides ``method`` (a port that filters or counts what it
    writes) but not the shortcut is not bypassed by it."""
    cls = type(obj)
    for klass in cls.__mro__:
        if express in vars(klass):
            return getattr(cls, method, None) is getattr(klass, method, None)
    return False


@runtime_checkable
class Port(Protocol):
    """One place a worker reads batches from or writes them to.

    Attributes:
        name: for statistics.
        layer: what the packets are (``L3`` IP packets, ``L2`` frames).
        mtu: the largest plain packet (for stages that split).
        offload: what the port reads and accepts: ``vnet_hdr`` set means reads may hand out
            super-packets whole and writes take them (and GRO-coalesce plain batches).
        can_split: with ``whole=False`` reads hand out plain MTU-sized packets only.
    """

    name: str
    layer: Layer
    mtu: int
    offload: OffloadInfo
    can_split: bool

    def new_batch(self) -> PacketBatch:
        """A batch sized for this port's reads."""
        ...

    async def recv_batch(self, batch: PacketBatch, whole: bool) -> PacketBatch:
        """Wait for at least one packet and read what is waiting into ``batch``.

        Raises:
            anyio.EndOfStream: the source is exhausted (memory sources).
            anyio.ClosedResourceError: the port was closed.
        """
        ...

    async def send_batch(self, batch: PacketBatch) -> None:
        """Write every packet of ``batch`` (waiting while the far side is full)."""
        ...

    def statistics(self) -> PortStatistics:
        """Counters of this port."""
        ...

    def handle(self) -> PortHandle | None:
        """How a worker process reopens this port (``None``: it cannot be)."""
        ...

    def link(self) -> tuple[int, str] | None:
        """The kernel interface (index, name) behind the port, for its drop counters."""
        ...


#: What a pipeline's source or sink, or a tunnel's side, may be: a device (one queue), the
#: queues of one multi-queue device, a transport, a :class:`Port`, or a list of ports.
Endpoint: TypeAlias = (
    AsyncDevice
    | SyncDevice
    | Transport
    | Port
    | Sequence[AsyncDevice | SyncDevice | Transport | Port]
)


def _device_stats(name: str, dev: AsyncDevice | SyncDevice) -> PortStatistics:
    s = dev.statistics()
    return PortStatistics(
        name,
        "device",
        s.rx_packets,
        s.rx_bytes,
        s.rx_batches,
        s.tx_packets,
        s.tx_bytes,
        s.tx_batches,
        _device_drops(s.rx_malformed, s.rx_truncated, s.tx_dropped),
    )


def _device_drops(malformed: int, truncated: int, refused: Mapping[str, int]) -> Mapping[str, int]:
    """What the kernel handed over that could not be split, what it cut short (a read sized for
    an MTU raised behind tunflow's back), and the packets of batch writes it refused (skipped
    by the device, not raised), by reason."""
    if not (malformed or truncated):
        return refused
    drops = dict(refused)
    if malformed:
        drops["malformed"] = malformed
    if truncated:
        drops["truncated"] = truncated
    return drops


def _device_name(dev: AsyncDevice | SyncDevice) -> tuple[str, int | None]:
    name = "device"
    index: int | None = None
    try:
        index = dev.if_index()
    except Exception:
        index = None
    if isinstance(dev, AsyncDevice):
        name = dev.extra(DeviceAttribute.name, name)
    else:
        try:
            name = dev.name()
        except Exception:
            pass
    return name, index


def _device_mtu(dev: AsyncDevice | SyncDevice) -> int:
    if isinstance(dev, AsyncDevice):
        mtu = dev.extra(DeviceAttribute.mtu, None)
        if mtu is not None:
            return int(mtu)
        return 1500
    try:
        return dev.mtu()
    except Exception:
        return 1500


class _DeviceQueuePort:
    """What the ports over one device queue share: naming, sizes, statistics, the handle."""

    device: AsyncDevice | SyncDevice

    def __init__(self, device: AsyncDevice | SyncDevice, *, queue: int, max_packets: int) -> None:
        keeps_header = getattr(device, "packet_information", None)  # (a stand-in may lack it)
        if keeps_header is not None and keeps_header():
            raise ConfigError(
                f"{device!r} keeps the OS's packet-information header: a pipeline carries bare "
                "IP packets (build the device without packet_information())"
            )
        self.device = device
        base, self._index = _device_name(device)
        self._base = base
        self.name = f"{base}/{queue}"
        self.layer = device.layer
        self.mtu = _device_mtu(device)
        self.offload = device.offload_info
        self.can_split = True
        if max_packets < 1:
            raise ConfigError(f"max_packets must be at least 1, not {max_packets}")
        self._max_packets = max_packets

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def new_batch(self) -> PacketBatch:
        return self.device.new_batch(self._max_packets)

    def statistics(self) -> PortStatistics:
        return _device_stats(self.name, self.device)

    def handle(self) -> PortHandle | None:
        fd = self.device.fileno()
        if fd < 0:
            return None
        params = {"layer": self.layer.value, "mtu": self.mtu, "max_packets": self._max_packets}
        return PortHandle("device", fd, self.name, params)

    def link(self) -> tuple[int, str] | None:
        return (self._index, self._base) if self._index is not None else None


class DevicePort(_DeviceQueuePort):
    """A port over one :class:`~tunflow.AsyncDevice` queue.

    Offload devices read super-packets whole when the chain allows (``whole=True``) and split
    them otherwise; writes take both (see :meth:`AsyncDevice.send_batch`).

    Args:
        device: the queue.
        queue: its number, for the port's name.
        max_packets: packets per batch.

    Raises:
        ConfigError: ``max_packets`` is below 1.
    """

    device: AsyncDevice

    def __init__(
        self, device: AsyncDevice, *, queue: int = 0, max_packets: int = IDEAL_BATCH_SIZE
    ) -> None:
        super().__init__(device, queue=queue, max_packets=max_packets)

    def recv_batch(self, batch: PacketBatch, whole: bool) -> Coroutine[Any, Any, PacketBatch]:
        # the device's own coroutine, awaited by the caller: no coroutine of the port's own
        # in between (a frame less per batch, and per packet at rest)
        return self.device.recv_batch(batch, whole=whole)

    async def send_batch(self, batch: PacketBatch) -> None:
        # No extra event-loop turn: every lane yields when it reads its next batch.
        await self.device.send_batch(batch, checkpoint=False)

    def _express_source(self) -> ExpressSource | None:
        d = self.device
        if not stands_for(d, "_express_recv", "recv_batch"):
            return None
        return d._express_ready, d._express_wait, d._express_recv

    def _express_sink(self) -> ExpressSink | None:
        d = self.device
        return d._express_send if stands_for(d, "_express_send", "send_batch") else None


class SyncDevicePort(_DeviceQueuePort):
    """A port over one :class:`~tunflow.SyncDevice` queue, driven from the event loop.

    Reads never block (``timeout=0``, then ``anyio.wait_readable`` on the fd); writes to a TUN
    or TAP never wait in practice (the kernel takes or drops). Close the device only after the
    pipeline stopped.

    Args:
        device: the queue.
        queue: its number, for the port's name.
        max_packets: packets per batch.

    Raises:
        ConfigError: ``max_packets`` is below 1.
    """

    device: SyncDevice

    def __init__(
        self, device: SyncDevice, *, queue: int = 0, max_packets: int = IDEAL_BATCH_SIZE
    ) -> None:
        super().__init__(device, queue=queue, max_packets=max_packets)

    async def recv_batch(self, batch: PacketBatch, whole: bool) -> PacketBatch:
        dev = self.device
        await anyio.lowlevel.checkpoint()  # before reading: a cancelled call read nothing
        while True:
            try:
                dev.recv_batch(batch, timeout=0, whole=whole)
            except TimeoutError:
                fd = dev.fileno()
                if fd < 0:
                    raise ClosedDeviceError("the device is closed") from None
                await anyio.wait_readable(fd)
                continue
            return batch

    async def send_batch(self, batch: PacketBatch) -> None:
        await anyio.lowlevel.checkpoint()
        self.device.send_batch(batch)


class TransportPort:
    """A port over a :class:`~tunflow.transport.Transport` (plain MTU-sized datagrams)."""

    def __init__(self, transport: Transport, *, name: str | None = None, mtu: int = 1500):
        self.transport = transport
        self.name = name or transport.name
        self.layer = Layer.L3
        self.mtu = mtu
        self.offload = OffloadInfo()
        self.can_split = True

    def __repr__(self) -> str:
        return f"<TransportPort {self.name}>"

    def new_batch(self) -> PacketBatch:
        return self.transport.new_batch()

    async def recv_batch(self, batch: PacketBatch, whole: bool) -> PacketBatch:
        return await self.transport.recv_batch(batch)

    async def send_batch(self, batch: PacketBatch) -> None:
        await self.transport.send_batch(batch)

    def statistics(self) -> PortStatistics:
        s: TransportStatistics = self.transport.statistics()
        return PortStatistics(
            self.name,
            "transport",
            s.rx_datagrams,
            s.rx_bytes,
            s.rx_batches,
            s.tx_datagrams,
            s.tx_bytes,
            s.tx_batches,
            s.drops,
        )

    def handle(self) -> PortHandle | None:
        fileno = getattr(self.transport, "fileno", None)
        params = getattr(self.transport, "reopen_params", None)
        if not isinstance(self.transport, UDPTransport) or fileno is None or params is None:
            return None
        fd = fileno()
        return PortHandle("udp", fd, self.name, params()) if fd >= 0 else None

    def link(self) -> tuple[int, str] | None:
        return None


class MemorySource:
    """A port that hands out packets from memory, then ends (``anyio.EndOfStream``).

    Args:
        packets: the packets, in order.
        batch_size: packets per batch.
        layer: what they are.
        name: for statistics.
        vnet_hdr: the packets start with a 10-byte virtio-net header (super-packets).

    Example:
        >>> src = MemorySource([b"\\x45" + bytes(19)] * 3, batch_size=2)
        >>> src.remaining
        3
    """

    def __init__(
        self,
        packets: Iterable[bytes],
        *,
        batch_size: int = IDEAL_BATCH_SIZE,
        layer: Layer = Layer.L3,
        name: str = "memory-in",
        vnet_hdr: bool = False,
        mtu: int = 1500,
    ) -> None:
        self._packets = list(packets)
        self._pos = 0
        self._batch_size = batch_size
        self.name = name
        self.layer = layer
        self.mtu = mtu
        self.offload = OffloadInfo(vnet_hdr=vnet_hdr)
        self.can_split = not vnet_hdr
        self._stats = [0, 0, 0]
        self._vnet = vnet_hdr
        largest = max(map(len, self._packets), default=0)
        self._capacity = max(1 << 20, (largest + 16) * batch_size)

    @property
    def remaining(self) -> int:
        """Packets not handed out yet."""
        return len(self._packets) - self._pos

    def new_batch(self) -> PacketBatch:
        return PacketBatch(capacity=self._capacity, max_packets=self._batch_size)

    async def recv_batch(self, batch: PacketBatch, whole: bool) -> PacketBatch:
        await anyio.lowlevel.checkpoint()
        if self._pos >= len(self._packets):
            raise anyio.EndOfStream
        start = len(batch)
        packets = self._packets
        while self._pos < len(packets) and len(batch) < batch.max_packets:
            p = packets[self._pos]
            if self._vnet:
                batch.vnet_hdr = True
                if batch.room() < len(p):
                    break
                batch.append(memoryview(p)[10:], header=p[:10])
            else:
                if batch.room() < len(p):
                    break
                batch.append(p)
            self._pos += 1
        n = len(batch) - start
        self._stats[0] += n
        self._stats[1] += sum(batch.lengths[start:])
        self._stats[2] += 1
        return batch

    async def send_batch(self, batch: PacketBatch) -> None:
        raise ConfigError(f"{self.name} is a source only")

    def statistics(self) -> PortStatistics:
        rx = self._stats
        return PortStatistics(self.name, "memory", rx[0], rx[1], rx[2])

    def handle(self) -> PortHandle | None:
        return None

    def link(self) -> tuple[int, str] | None:
        return None


class MemorySink:
    """A port that keeps (or just counts) what is written to it.

    Args:
        keep: the most packets kept as ``bytes`` (:attr:`packets`); later ones are counted only.
        delay: seconds each batch write takes (a slow sink, for backpressure tests).
        name: for statistics.
        accepts_super_packets: take ``vnet_hdr`` batches as they are (kept with their header).
    """

    def __init__(
        self,
        *,
        keep: int | None = None,
        delay: float = 0.0,
        name: str = "memory-out",
        layer: Layer = Layer.L3,
        accepts_super_packets: bool = False,
        mtu: int = 1500,
    ) -> None:
        self.packets: list[bytes] = []
        self._keep = keep
        self.delay = delay
        self.name = name
        self.layer = layer
        self.mtu = mtu
        self.offload = OffloadInfo(vnet_hdr=accepts_super_packets)
        self.can_split = True
        self._tx = [0, 0, 0]
        #: each ``send_batch`` call's packet count, in order (kept as long as packets are)
        self.batches: list[int] = []

    def new_batch(self) -> PacketBatch:
        return PacketBatch(capacity=1 << 20)

    async def recv_batch(self, batch: PacketBatch, whole: bool) -> PacketBatch:
        raise ConfigError(f"{self.name} is a sink only")

    async def send_batch(self, batch: PacketBatch) -> None:
        if self.delay:
            await anyio.sleep(self.delay)
        else:
            await anyio.lowlevel.checkpoint()
        n = len(batch)
        self._tx[0] += n
        self._tx[1] += batch.nbytes
        self._tx[2] += 1
        if self._keep is None or len(self.packets) < self._keep:
            room = n if self._keep is None else min(n, self._keep - len(self.packets))
            view = batch.view
            if batch.vnet_hdr and self.offload.vnet_hdr:
                self.packets += [bytes(batch.with_header(i)) for i in range(room)]
            else:
                off, lens = batch.offsets, batch.lengths
                self.packets += [bytes(view[off[i] : off[i] + lens[i]]) for i in range(room)]
            self.batches.append(n)

    def statistics(self) -> PortStatistics:
        tx = self._tx
        return PortStatistics(self.name, "memory", 0, 0, 0, tx[0], tx[1], tx[2])

    def handle(self) -> PortHandle | None:
        return None

    def link(self) -> tuple[int, str] | None:
        return None


def as_ports(endpoint: Endpoint) -> list[Port]:
    """Ports for whatever a pipeline was given: a device (one queue), a list of queues of one
    multi-queue device, a transport, a port, or a list of ports.

    Raises:
        ConfigError: something that is none of these.
    """
    if isinstance(endpoint, list | tuple):
        ports: list[Port] = []
        for i, item in enumerate(endpoint):
            if isinstance(item, AsyncDevice):
                ports.append(DevicePort(item, queue=i))
            elif isinstance(item, SyncDevice):
                ports.append(SyncDevicePort(item, queue=i))
            else:
                ports.extend(as_ports(item))
        if not ports:
            raise ConfigError("an empty list of ports")
        return ports
    if isinstance(endpoint, AsyncDevice):
        return [DevicePort(endpoint)]
    if isinstance(endpoint, SyncDevice):
        return [SyncDevicePort(endpoint)]
    if isinstance(endpoint, Port):
        return [endpoint]
    if isinstance(endpoint, Transport):
        return [TransportPort(endpoint)]
    raise ConfigError(
        f"{endpoint!r} is not a device, a transport or a port (see tunflow.pipeline.Port)"
    )


def open_port_handle(handle: PortHandle) -> Port:
    """Reopen a port in a worker process from its inherited fd (the port owns the fd).

    Raises:
        ConfigError: an unknown kind.
    """
    if handle.kind == "device":
        layer = Layer(handle.params.get("layer", "tun"))
        dev = AsyncDevice.from_fd(handle.fd, layer=layer)
        port = DevicePort(dev, max_packets=int(handle.params.get("max_packets", IDEAL_BATCH_SIZE)))
        port.name = handle.name
        if port.mtu == 1500 and "mtu" in handle.params:
            port.mtu = int(handle.params["mtu"])
        return port
    if handle.kind == "udp":
        transport = UDPTransport.from_fd(handle.fd, **handle.params)
        return TransportPort(transport, name=handle.name)
    raise ConfigError(f"a worker process cannot open a port of kind {handle.kind!r}")


async def close_port(port: Port) -> None:
    """Close what a worker process opened from a handle."""
    target = getattr(port, "device", None) or getattr(port, "transport", None)
    if target is not None:
        await target.aclose()
