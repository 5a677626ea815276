"""Transports: batches of datagrams to and from peers (a UDP socket today).

:class:`Transport` is the contract a pipeline's remote side meets; :class:`UDPTransport` is the
plain ``sendto``/``recvfrom`` implementation, driven by ``anyio.wait_readable``/``wait_writable``
like the devices.
"""

from ._base import (
    Address as Address,
    DatagramBatch as DatagramBatch,
    Transport as Transport,
    TransportStatistics as TransportStatistics,
)
from .udp import UDPTransport as UDPTransport, parse_endpoint as parse_endpoint

__all__ = [
    "Address",
    "DatagramBatch",
    "Transport",
    "TransportStatistics",
    "UDPTransport",
    "parse_endpoint",
]
