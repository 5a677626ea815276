"""The transport contract: batches of datagrams with their peer addresses.

A transport carries a pipeline's packets between hosts (UDP today; UDP GSO/GRO, WireGuard's
sockets later). It moves *batches*: a :class:`DatagramBatch` is a
:class:`~tunflow.packet.PacketBatch` with one peer address per datagram beside the arena, so no
object is made per datagram besides the address tuple the socket call returns anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from ..packet import PacketBatch

__all__ = ["Address", "DatagramBatch", "Transport", "TransportStatistics"]

#: A socket address as the ``socket`` module returns it: ``(host, port)`` or
#: ``(host, port, flowinfo, scope_id)``.
Address = tuple[Any, ...]


class DatagramBatch(PacketBatch):
    """A :class:`~tunflow.packet.PacketBatch` whose datagrams each carry a peer address.

    ``addresses[i]`` is where datagram ``i`` came from (after a receive) or goes to (``None``:
    the transport's default peer). :meth:`keep` and :meth:`clear` keep the list aligned; packets
    added with the plain :meth:`commit` get ``None``.

    Example:
        >>> b = DatagramBatch(capacity=4096)
        >>> b.append(b"hello", address=("192.0.2.1", 4000))
        >>> b.append(b"world")
        >>> b.keep([1]); b.addresses
        [None]
    """

    __slots__ = ("addresses",)

    def __init__(self, capacity: int = 256 * 1024, max_packets: int = 128) -> None:
        super().__init__(capacity, max_packets)
        self.addresses: list[Address | None] = []

    def address(self, i: int) -> Address | None:
        """The peer of datagram ``i`` (``None``: the default peer)."""
        addrs = self.addresses
        return addrs[i] if i < len(addrs) else None

    def append(
        self,
        data: bytes | bytearray | memoryview,
        header: bytes | None = None,
        *,
        address: Address | None = None,
    ) -> None:
        """Copy ``data`` in as the next datagram, for (or from) ``address``."""
        self._align()
        super().append(data, header)
        self.addresses.append(address)

    def commit(self, offset: int, length: int) -> None:
        self._align()
        super().commit(offset, length)
        self.addresses.append(None)

    def commit_from(self, offset: int, length: int, address: Address | None) -> None:
        """Record a datagram written in place at ``offset`` that came from ``address``."""
        self.offsets.append(offset)
        self.lengths.append(length)
        self.end = offset + length
        self.addresses.append(address)

    def _align(self) -> None:
        n, addrs = len(self.offsets), self.addresses
        if len(addrs) != n:
            del addrs[n:]
            addrs.extend([None] * (n - len(addrs)))

    def extend(self, packets: Iterable[bytes | bytearray | memoryview]) -> None:
        for p in packets:
            self.append(p)

    def clear(self) -> None:
        super().clear()
        self.addresses.clear()

    def keep(self, indices: Iterable[int]) -> None:
        idx = indices if isinstance(indices, list | tuple | range) else list(indices)
        self._align()
        addrs = self.addresses
        super().keep(idx)
        self.addresses = [addrs[i] for i in idx]


def _drops(value: Mapping[str, int] | None) -> Mapping[str, int]:
    return dict(value) if value else {}


@attrs.frozen
class TransportStatistics:
    """Counters of a transport.

    Attributes:
        rx_datagrams: datagrams received.
        rx_bytes: their bytes.
        rx_batches: batch receives.
        tx_datagrams: datagrams sent.
        tx_bytes: their bytes.
        tx_batches: batch sends.
        drops: datagrams not sent (or receive errors), by reason: ``no_address``,
            ``unreachable``, ``too_large``, ``refused``.
    """

    rx_datagrams: int = 0
    rx_bytes: int = 0
    rx_batches: int = 0
    tx_datagrams: int = 0
    tx_bytes: int = 0
    tx_batches: int = 0
    drops: Mapping[str, int] = attrs.field(factory=dict, converter=_drops)


@runtime_checkable
class Transport(Protocol):
    """Moves batches of datagrams to and from peers.

    ``recv_batch`` waits for at least one datagram, then takes what is waiting (until the batch
    is full), recording each sender in ``batch.addresses``. ``send_batch`` sends every datagram
    of a batch to its address, or to the transport's default peer; datagrams that cannot be sent
    (no address, unreachable, too large) are counted in ``statistics().drops`` and skipped, as
    the network would lose them.
    """

    name: str

    def new_batch(self) -> DatagramBatch:
        """A batch sized for this transport's receives."""
        ...

    async def recv_batch(self, batch: PacketBatch | None = None) -> PacketBatch:
        """Receive at least one datagram into ``batch`` (a new one when ``None``)."""
        ...

    async def send_batch(self, batch: PacketBatch) -> int:
        """Send the datagrams of ``batch``; return how many were sent."""
        ...

    def statistics(self) -> TransportStatistics:
        """Counters."""
        ...

    async def aclose(self) -> None:
        """Close the transport; a blocked receiver raises ``anyio.ClosedResourceError``."""
        ...
