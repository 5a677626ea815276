"""The contract between the device faces and one operating system's backend.

A backend has two halves:

* :class:`Queue` — one readable/writable packet queue (an fd on Unix). It removes the OS's
  framing (macOS's 4-byte address-family header, …) so that every platform yields the same bare
  IP packets (or Ethernet frames for TAP), and it never blocks: when nothing can be read or
  written it raises :class:`BlockingIOError`, and the device face waits — with ``poll`` in
  :class:`~tunflow.SyncDevice`, through the event loop in :class:`~tunflow.AsyncDevice`.
* :class:`Interface` — the configuration of the network interface behind the queues: name,
  index, MTU, addresses, routes, MAC, up/down. Blocking calls; the async face runs them in a
  worker thread.

Errors cross this boundary already mapped to :mod:`tunflow.errors`.
"""

from __future__ import annotations

from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Protocol

import attrs

from ..errors import PacketTooLargeError, UnsupportedError
from ..packet import PacketBatch

__all__ = ["Queue", "LoneQueue", "Interface", "Route", "OffloadInfo", "Buffer", "Waker"]

Buffer = bytes | bytearray | memoryview


@attrs.frozen
class Route:
    """A route through the device: ``destination`` via optional ``gateway``."""

    destination: IPv4Network | IPv6Network
    gateway: IPv4Address | IPv6Address | None = None
    metric: int | None = None


@attrs.frozen
class OffloadInfo:
    """What offload the kernel granted a device (Linux ``IFF_VNET_HDR`` + ``TUNSETOFFLOAD``).

    Attributes:
        vnet_hdr: reads and writes carry a 10-byte virtio-net header.
        flags: the ``TUN_F_*`` mask the kernel accepted.
        tso: TCP segmentation offload (``TUN_F_TSO4 | TUN_F_TSO6``) is on.
        uso: UDP segmentation offload (``TUN_F_USO4 | TUN_F_USO6``, Linux ≥ 6.2) is on.
    """

    vnet_hdr: bool = False
    flags: int = 0
    tso: bool = False
    uso: bool = False


class Waker(Protocol):
    """Wakes a blocked :meth:`Queue.wait` (a pipe on Unix, an event on Windows)."""

    def wake(self) -> None: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


class Queue(Protocol):
    """One packet queue of a device. Non-blocking; never waits."""

    #: the header the OS puts before each packet is removed on read and added on write
    #: (``True`` unless the user asked for it with ``packet_information(True)``)
    offload: OffloadInfo

    def fileno(self) -> int:
        """The pollable fd, or -1 when the queue cannot be polled (Windows)."""
        ...

    def recv_into(self, buf: memoryview) -> int:
        """Read one packet into ``buf``; :class:`BlockingIOError` when none is waiting."""
        ...

    def recv(self, max_size: int) -> bytes:
        """Read one packet as ``bytes``; :class:`BlockingIOError` when none is waiting."""
        ...

    def wait(
        self,
        writable: bool,
        timeout: float | None,
        waker: Waker | None,
        interrupt: Waker | None = None,
    ) -> bool:
        """Block until readable (or writable); ``False`` on timeout or when ``waker`` or
        ``interrupt`` (an :class:`~tunflow.InterruptEvent`'s) fired."""
        ...

    def send(self, packet: Buffer) -> int:
        """Write one packet; :class:`BlockingIOError` when the queue cannot take it now."""
        ...

    def recv_batch(self, batch: PacketBatch, max_size: int) -> int:
        """Read packets of up to ``max_size`` bytes into ``batch`` until the kernel has no more
        or the batch is full; return how many were read (0 when none was waiting)."""
        ...

    def send_batch(self, batch: PacketBatch, start: int = 0) -> int:
        """Write the packets of ``batch`` from index ``start``; return the index after the
        last one written (:class:`BlockingIOError` only if none could be written)."""
        ...

    def wait_handle(self) -> int | None:
        """A handle to wait on when :meth:`fileno` is -1 (a Win32 event), else ``None``."""
        ...

    def close(self) -> None:
        """Release the queue. Idempotent."""
        ...


class LoneQueue(Queue, Protocol):
    """A queue with reads and writes for a lone packet at rest (the Unix fd queue's), used
    by an async device's express path on the event loop's thread (see ``FdQueue``)."""

    #: packets the kernel cut short (dropped, not handed out)
    rx_truncated: int

    def recv_lone(self, batch: PacketBatch, max_size: int) -> int:
        """:meth:`recv_batch` into an empty batch, tuned for finding one packet."""
        ...

    def send_lone(self, batch: PacketBatch) -> int:
        """:meth:`send_batch` of a batch of one packet."""
        ...


class Interface(Protocol):
    """The configuration side of a device."""

    def open_queue(self) -> Queue:
        """Open another queue of a multi-queue device."""
        ...

    def name(self) -> str: ...
    def set_name(self, name: str) -> None: ...
    def if_index(self) -> int: ...
    def mtu(self) -> int: ...
    def set_mtu(self, mtu: int) -> None: ...
    def mtu_v6(self) -> int:
        """The IPv6 MTU, where it is a setting of its own (Windows)."""
        ...

    def set_mtu_v6(self, mtu: int) -> None:
        """Set the IPv6 MTU alone (Windows)."""
        ...

    def addresses(self) -> list[IPv4Interface | IPv6Interface]: ...
    def add_address(
        self, iface: IPv4Interface | IPv6Interface, peer: IPv4Address | None = None
    ) -> None: ...
    def remove_address(self, address: IPv4Address | IPv6Address) -> None: ...
    def routes(self) -> list[Route]: ...
    def add_route(self, route: Route) -> None: ...
    def remove_route(self, route: Route) -> None: ...
    def mac_address(self) -> bytes: ...
    def set_mac_address(self, mac: bytes) -> None: ...
    def set_enabled(self, up: bool) -> None: ...
    def is_running(self) -> bool: ...
    def broadcast(self) -> IPv4Address | None: ...
    def set_broadcast(self, address: IPv4Address) -> None: ...
    def tx_queue_len(self) -> int: ...
    def set_tx_queue_len(self, length: int) -> None: ...
    def set_persist(self, fd: int, persist: bool) -> None:
        """Keep the interface after its last queue closes, or stop keeping it (Linux
        ``TUNSETPERSIST`` through the queue ``fd``)."""
        ...

    def set_owner(self, fd: int, uid: int) -> None:
        """Let user ``uid`` open the device without CAP_NET_ADMIN (Linux ``TUNSETOWNER``
        through the queue ``fd``)."""
        ...

    def set_group(self, fd: int, gid: int) -> None:
        """Let group ``gid`` open the device without CAP_NET_ADMIN (Linux ``TUNSETGROUP``
        through the queue ``fd``)."""
        ...

    def set_metric(self, metric: int) -> None:
        """The interface metric of IPv4 and IPv6, automatic metric off (Windows)."""
        ...

    def set_associate_route(self, on: bool) -> None:
        """Add (remove) the subnet route of every address, now and with later address
        changes (a macOS/BSD TUN)."""
        ...

    def if_luid(self) -> int:
        """The interface LUID, ``NET_LUID``'s 64-bit value (Windows)."""
        ...

    def version(self) -> str:
        """The driver's version (Windows: Wintun or tap-windows6)."""
        ...

    def set_dns_servers(self, servers: tuple[IPv4Address | IPv6Address, ...]) -> None:
        """Replace the DNS servers of each family in ``servers`` (Windows)."""
        ...

    def clear_dns_servers(self, versions: tuple[int, ...]) -> None:
        """Remove the DNS servers of each IP version in ``versions`` (Windows)."""
        ...

    def close(self) -> None: ...


def read_too_large(size: int, room: int, what: str = "packet") -> PacketTooLargeError:
    """What a queue raises for a ``size``-byte ``what`` read with ``room`` bytes for it (the
    MTU raised outside tunflow), dropped and already counted in its ``rx_truncated``."""
    return PacketTooLargeError(
        f"read: a {size}-byte {what} larger than the {room} bytes of room was dropped (counted "
        "in rx_truncated): the MTU was raised outside tunflow"
    )


def mtu_v6_unsupported() -> UnsupportedError:
    """What a backend without an IPv6 MTU of its own (all but Windows) raises for
    ``mtu_v6()`` / ``set_mtu_v6()``."""
    return UnsupportedError(
        "mtu_v6() / set_mtu_v6() (an IPv6 MTU of its own) are Windows only; set_mtu() sets "
        "the link's MTU, IPv6's among it"
    )


#: what a backend without ``TUNSETOWNER``/``TUNSETGROUP`` (all but Linux) says for them
OWNER_LINUX_ONLY = "the device's owner and group (TUNSETOWNER, TUNSETGROUP) are Linux only"
ASSOCIATE_ROUTE_BSD_ONLY = (
    "associate_route is macOS/BSD only: here the system adds the subnet route of each address "
    "itself"
)
