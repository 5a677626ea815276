"""What the sync and async faces share: the backend objects, sizes, statistics, configuration.

The configuration methods here are blocking; :class:`~tunflow.SyncDevice` exposes them as they
are and :class:`~tunflow.AsyncDevice` runs them in a worker thread.
"""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

import attrs

from ..errors import ConfigError, PacketTooLargeError, UnsupportedError
from ..packet import PacketBatch, validate_ip_packet
from ..platform._base import Buffer, Interface, OffloadInfo, Queue, Route
from ._config import (
    IPAddressLike,
    Layer,
    NetworkLike,
    PrefixLike,
    parse_address,
    parse_ipv4,
    parse_ipv6,
    parse_mac,
    parse_network,
)

__all__ = ["DeviceCore", "DeviceStatistics", "SharedInterface", "Route"]

_ETHERNET_OVERHEAD = 14 + 4  # header + one VLAN tag
_PI_LEN = 4
_OFFLOAD_MAX = 65535


@attrs.frozen
class DeviceStatistics:
    """Counters of one device face (one queue), as :meth:`SyncDevice.statistics` returns them.

    Attributes:
        rx_packets: packets (or super-packets) read.
        rx_bytes: their bytes.
        tx_packets: packets written.
        tx_bytes: their bytes.
        rx_batches: batch reads that returned at least one packet.
        tx_batches: batch writes.
        rx_super_packets: reads that carried a GSO super-packet (offload only).
        tx_coalesced: writes of GRO-coalesced packets (offload only).
        gro_disabled: writes refused by the kernel (``EINVAL``) that turned GRO off.
        offload: what the kernel granted.
    """

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    rx_batches: int = 0
    tx_batches: int = 0
    rx_super_packets: int = 0
    tx_coalesced: int = 0
    gro_disabled: int = 0
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

    def acquire(self) -> None:
        with self.lock:
            self._users += 1

    def release(self) -> None:
        with self.lock:
            self._users -= 1
            last = self._users == 0
        if last and self.interface is not None:
            self.interface.close()

    def require(self) -> Interface:
        if self.interface is None:
            raise UnsupportedError(
                "this device was adopted from an fd tunflow cannot configure "
                "(Android, iOS, or a non-tun fd); configure it where it was made"
            )
        return self.interface


class DeviceCore:
    """Backend objects and the shared behaviour of both faces (one queue each)."""

    def __init__(self, shared: SharedInterface, queue: Queue) -> None:
        self._shared = shared
        self._queue = queue
        shared.acquire()
        self._closed = False
        self.rx_packets = 0
        self.rx_bytes = 0
        self.tx_packets = 0
        self.tx_bytes = 0
        self.rx_batches = 0
        self.tx_batches = 0
        self.rx_super_packets = 0
        self.tx_coalesced = 0
        self.gro_disabled = 0
        mtu = 1500
        if shared.interface is not None:
            try:
                mtu = shared.interface.mtu()
            except Exception:
                mtu = 1500
        self._set_max_size(mtu)

    def _set_max_size(self, mtu: int) -> None:
        size = max(mtu, 1280)
        if self._shared.layer is Layer.L2:
            size += _ETHERNET_OVERHEAD
        if self._shared.packet_information:
            size += _PI_LEN
        if self._queue.offload.vnet_hdr:
            size = _OFFLOAD_MAX
        #: the largest packet a read may return
        self.max_size = size
        self._mtu_limit = size if self._queue.offload.vnet_hdr else max(mtu, 68)
        # Single sends on a plain TUN are checked so a bad packet gets a message naming the
        # problem rather than the kernel's bare EINVAL (batch sends skip this on the hot path).
        self._validate_ip = (
            self._shared.layer is Layer.L3
            and not self._shared.packet_information
            and not self._queue.offload.vnet_hdr
        )

    def _check_packet(self, packet: Buffer) -> None:
        if self._validate_ip:
            validate_ip_packet(packet, self._mtu_limit)
        elif len(packet) > self.max_size:
            raise PacketTooLargeError(
                f"{len(packet)}-byte packet exceeds the device's limit of {self.max_size}"
            )

    # -- sizes and statistics -------------------------------------------------------------

    @property
    def offload_info(self) -> OffloadInfo:
        """What offload the kernel granted (all ``False`` without offload)."""
        return self._queue.offload

    @property
    def layer(self) -> Layer:
        """:attr:`Layer.L3` for TUN, :attr:`Layer.L2` for TAP."""
        return self._shared.layer

    def new_batch(self, max_packets: int | None = None) -> PacketBatch:
        """A :class:`PacketBatch` sized for this device's reads."""
        from ..packet import IDEAL_BATCH_SIZE

        n = max_packets or IDEAL_BATCH_SIZE
        if self._queue.offload.vnet_hdr:
            capacity = 1 << 20
        else:
            capacity = max(256 * 1024, (self.max_size + 16) * min(n, 128))
        return PacketBatch(capacity=capacity, max_packets=n)

    def statistics(self) -> DeviceStatistics:
        """A snapshot of this face's counters."""
        return DeviceStatistics(
            rx_packets=self.rx_packets,
            rx_bytes=self.rx_bytes,
            tx_packets=self.tx_packets,
            tx_bytes=self.tx_bytes,
            rx_batches=self.rx_batches,
            tx_batches=self.tx_batches,
            rx_super_packets=self.rx_super_packets,
            tx_coalesced=self.tx_coalesced,
            gro_disabled=self.gro_disabled,
            offload=self._queue.offload,
        )

    # -- configuration (blocking) -------------------------------------------------------------

    def _name(self) -> str:
        return self._shared.require().name()

    def _set_name(self, name: str) -> None:
        from ._config import DeviceConfig

        DeviceConfig(name=name).validate()
        self._shared.require().set_name(name)

    def _if_index(self) -> int:
        return self._shared.require().if_index()

    def _mtu(self) -> int:
        return self._shared.require().mtu()

    def _set_mtu(self, mtu: int) -> None:
        if type(mtu) is not int or not 68 <= mtu <= 65535:
            raise ConfigError(f"MTU {mtu!r} is outside 68..65535")
        self._shared.require().set_mtu(mtu)
        self._set_max_size(mtu)

    def _addresses(self) -> list[IPv4Interface | IPv6Interface]:
        return self._shared.require().addresses()

    def _add_address_v4(
        self,
        address: IPAddressLike,
        prefix: PrefixLike,
        destination: IPAddressLike | None = None,
    ) -> None:
        iface = parse_ipv4(address, prefix)
        peer = None
        if destination is not None:
            d = parse_address(destination)
            if not isinstance(d, IPv4Address):
                raise ConfigError(f"destination {destination!r} is not an IPv4 address")
            peer = d
        self._shared.require().add_address(iface, peer)

    def _add_address_v6(self, address: IPAddressLike, prefix: PrefixLike) -> None:
        iface = parse_ipv6(address, prefix)
        self._shared.require().add_address(iface)

    def _remove_address(self, address: IPAddressLike) -> None:
        self._shared.require().remove_address(parse_address(address))

    def _routes(self) -> list[Route]:
        return self._shared.require().routes()

    def _add_route(
        self,
        cidr: NetworkLike,
        gateway: IPAddressLike | None = None,
        metric: int | None = None,
    ) -> None:
        self._shared.require().add_route(_route(cidr, gateway, metric))

    def _remove_route(
        self,
        cidr: NetworkLike,
        gateway: IPAddressLike | None = None,
        metric: int | None = None,
    ) -> None:
        self._shared.require().remove_route(_route(cidr, gateway, metric))

    def _mac_address(self) -> str:
        from ._config import format_mac

        return format_mac(self._shared.require().mac_address())

    def _set_mac_address(self, mac: str | bytes) -> None:
        if self._shared.layer is not Layer.L2:
            raise UnsupportedError("a TUN (layer 3) device has no MAC address")
        self._shared.require().set_mac_address(parse_mac(mac))

    def _enabled(self, up: bool) -> None:
        self._shared.require().set_enabled(bool(up))

    def _is_running(self) -> bool:
        return self._shared.require().is_running()

    def _tx_queue_len(self) -> int:
        return self._shared.require().tx_queue_len()

    def _set_tx_queue_len(self, length: int) -> None:
        if type(length) is not int or length < 0:
            raise ConfigError(f"tx_queue_len {length!r} must be a non-negative int")
        self._shared.require().set_tx_queue_len(length)


def _route(cidr: NetworkLike, gateway: IPAddressLike | None, metric: int | None) -> Route:
    network = parse_network(cidr)
    gw = parse_address(gateway) if gateway is not None else None
    if gw is not None and gw.version != network.version:
        raise ConfigError(f"gateway {gw} and route {network} are of different IP versions")
    if metric is not None and (isinstance(metric, bool) or not 0 <= metric <= 0xFFFFFFFF):
        raise ConfigError(f"route metric {metric!r} is outside 0..2**32-1")
    return Route(network, gw, metric)
