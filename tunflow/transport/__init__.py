"""Transports: batches of datagrams to and from peers (a UDP socket today).

:class:`Transport` is the contract a pipeline's remote side meets; :class:`UDPTransport` is the
UDP implementation, waiting on its socket through the event loop like the devices, moving
many datagrams per system call with ``UDP_SEGMENT``/``UDP_GRO`` where the kernel has them.
"""

from ..datagram import DatagramBatch as DatagramBatch
from ._base import (
    Address as Address,
    Transport as Transport,
    TransportStatistics as TransportStatistics,
)
from .udp import (
    UDP_OFFLOAD_ENV as UDP_OFFLOAD_ENV,
    UDPTransport as UDPTransport,
    parse_endpoint as parse_endpoint,
)

__all__ = [
    "Address",
    "DatagramBatch",
    "Transport",
    "TransportStatistics",
    "UDPTransport",
    "UDP_OFFLOAD_ENV",
    "parse_endpoint",
]
