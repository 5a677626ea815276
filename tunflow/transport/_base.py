"""The transport contract: batches of datagrams with their peer addresses.

A transport carries datagrams between hosts (UDP today). It moves *batches*: a
:class:`~tunflow.datagram.DatagramBatch` holds datagrams back to back in one arena with one peer
address each, so no object is made per datagram besides the address tuple a socket call returns
anyway, and a run of equal-sized datagrams to one peer is one ``UDP_SEGMENT`` send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from ..datagram import DatagramBatch
from ..packet import PacketBatch

__all__ = ["Address", "DatagramBatch", "Transport", "TransportStatistics"]

#: A socket address as transports hand it out: ``(host, port)``.
Address = tuple[Any, ...]


def _drops(value: Mapping[str, int] | None) -> Mapping[str, int]:
    return dict(value) if value else {}


@attrs.frozen
class TransportStatistics:
    """Counters of a transport.

    Attributes:
        rx_datagrams: datagrams received.
        rx_bytes: their bytes.
        rx_batches: batch receives that returned datagrams (a ``recv_batch``, or one
            ``recv_scattered_nowait`` read).
        tx_datagrams: datagrams sent.
        tx_bytes: their bytes.
        tx_batches: batch sends.
        rx_syscalls: receive system calls that returned data (one ``UDP_GRO`` read may carry
            many datagrams: ``rx_datagrams / rx_syscalls`` is the batching factor).
        tx_syscalls: send system calls that sent data (one ``UDP_SEGMENT`` send carries many).
        gso: ``UDP_SEGMENT`` sends are in use.
        gro: ``UDP_GRO`` receives are in use.
        drops: datagrams not sent or lost on receive, by reason: ``no_address``,
            ``unreachable``, ``too_large``, ``refused`` (an ICMP error read back, or a send
            the kernel refused: a firewall rule, a broadcast address),
            ``would_block`` (a non-blocking send found the socket buffer full),
            ``truncated`` (a datagram larger than the receive buffer, or a read whose control
            messages did not fit, so that its datagrams could not be told apart), ``rx_overflow``
            (the kernel dropped datagrams because the socket's receive queue was full),
            ``empty`` (a zero-length datagram ``recv_scattered_nowait`` passed over),
            ``cancelled`` (a ``send_batch`` cancelled while it waited for room),
            ``bad_address`` (e.g. an IPv6 peer on an IPv4-only socket); and ``gso_refused``: times the
            kernel refused a ``UDP_SEGMENT`` send and the group went plainly (after ``EIO`` —
            no checksum offload on the egress device — segmentation is off for the socket;
            after ``EINVAL``/``EMSGSIZE``, e.g. a segment above the path MTU, only that group).
    """

    rx_datagrams: int = 0
    rx_bytes: int = 0
    rx_batches: int = 0
    tx_datagrams: int = 0
    tx_bytes: int = 0
    tx_batches: int = 0
    rx_syscalls: int = 0
    tx_syscalls: int = 0
    gso: bool = False
    gro: bool = False
    drops: Mapping[str, int] = attrs.field(factory=dict, converter=_drops)

    def merge(self, other: TransportStatistics) -> TransportStatistics:
        """The sum of two records (a VPN's sockets before and after a listen-port change);
        ``gso``/``gro``: ``other``'s, the later one's."""
        drops = dict(self.drops)
        for reason, n in other.drops.items():
            drops[reason] = drops.get(reason, 0) + n
        return TransportStatistics(
            self.rx_datagrams + other.rx_datagrams,
            self.rx_bytes + other.rx_bytes,
            self.rx_batches + other.rx_batches,
            self.tx_datagrams + other.tx_datagrams,
            self.tx_bytes + other.tx_bytes,
            self.tx_batches + other.tx_batches,
            self.rx_syscalls + other.rx_syscalls,
            self.tx_syscalls + other.tx_syscalls,
            other.gso,
            other.gro,
            drops,
        )


@runtime_checkable
class Transport(Protocol):
    """Moves batches of datagrams to and from peers.

    ``recv_batch`` waits for at least one datagram, then takes what is waiting (until the batch
    is full), recording each sender in ``batch.addresses``. ``send_batch`` sends every datagram
    of a batch to its address, or to the transport's default peer; datagrams that cannot be sent
    (no address, unreachable, too large) are counted in ``statistics().drops`` and skipped, as
    the network would lose them. A plain :class:`~tunflow.packet.PacketBatch` (no addresses)
    goes to the default peer.
    """

    name: str

    def new_batch(self) -> DatagramBatch:
        """A batch sized for this transport's receives."""
        ...

    async def recv_batch(self, batch: PacketBatch | None = None) -> DatagramBatch:
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
