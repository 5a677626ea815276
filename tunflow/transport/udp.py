"""A UDP transport: one non-blocking socket driven by ``anyio.wait_readable``/``wait_writable``.

Receives go on until the kernel has nothing left (or the batch is full) before waiting again,
so a burst costs one wait, as on a device. This is the plain ``recvfrom_into``/``sendto`` path;
``UDP_SEGMENT``/``UDP_GRO`` batching (one syscall per many datagrams) can be added by overriding
:meth:`UDPTransport._recv_some` and :meth:`UDPTransport._send_from` without touching callers.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, Final

import anyio
import anyio.lowlevel

from ..errors import ConfigError
from ..packet import HEADROOM, IDEAL_BATCH_SIZE, PacketBatch
from ._base import Address, DatagramBatch, TransportStatistics

__all__ = ["UDPTransport", "parse_endpoint"]

#: The largest UDP payload over IPv4.
MAX_DATAGRAM: Final = 65507
_UNREACHABLE: Final = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
)


def parse_endpoint(text: str, *, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """``"host:port"``, ``"[v6]:port"`` or ``":port"`` as ``(host, port)``.

    Raises:
        ConfigError: not of that form, or a port outside 0..65535.

    Example:
        >>> parse_endpoint("[fd00::1]:51820")
        ('fd00::1', 51820)
    """
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"{text!r} is not host:port")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} in {text!r} is outside 0..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or default_host, port


class UDPTransport:
    """Datagrams over one UDP socket.

    Build one with :meth:`bind` (or adopt a socket with :meth:`from_socket`). ``peer`` is where
    datagrams without their own address go; a transport with a peer is *connected*, so it only
    receives from that peer and the kernel reports ICMP errors (counted as ``unreachable``).

    Args:
        sock: a UDP socket (made non-blocking here; the transport owns it).
        peer: the default destination.
        max_datagram: the largest datagram received (room left for one is needed to read).
        max_packets: datagrams per batch.
        name: for statistics.

    Example:
        >>> import anyio
        >>> async def main() -> None:
        ...     async with UDPTransport.bind(("127.0.0.1", 0)) as a, UDPTransport.bind(
        ...         ("127.0.0.1", 0), peer=a.local_address
        ...     ) as b:
        ...         out = b.new_batch()
        ...         out.append(b"ping")
        ...         await b.send_batch(out)
        ...         got = await a.recv_batch()
        ...         print(got.to_list(), got.addresses == [b.local_address])
        >>> anyio.run(main)
        [b'ping'] True
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        peer: Address | None = None,
        max_datagram: int = MAX_DATAGRAM,
        max_packets: int = IDEAL_BATCH_SIZE,
        name: str | None = None,
    ) -> None:
        if sock.type != socket.SOCK_DGRAM:
            raise ConfigError(f"{sock!r} is not a datagram socket")
        sock.setblocking(False)
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self.peer = peer
        if peer is not None:
            sock.connect(peer)
        self.max_datagram = max_datagram
        self.max_packets = max_packets
        self.name = name or f"udp:{_format(sock.getsockname())}"
        self._rx = [0, 0, 0]
        self._tx = [0, 0, 0]
        self._drops: dict[str, int] = {}
        self._receiving = False

    @classmethod
    def bind(
        cls,
        local: tuple[str, int] | str = ("0.0.0.0", 0),
        *,
        peer: tuple[str, int] | str | None = None,
        reuse_port: bool = False,
        **kwargs: Any,
    ) -> UDPTransport:
        """A transport on a new socket bound to ``local`` (``"host:port"`` works too).

        Args:
            local: the local address.
            peer: the default destination (connects the socket).
            reuse_port: set ``SO_REUSEPORT`` (several sockets share the port; the kernel spreads
                flows over them).
            **kwargs: as the constructor.

        Raises:
            ConfigError: an address that does not parse.
            OSError: the bind or connect failed (``EADDRINUSE``…).
        """
        if isinstance(local, str):
            local = parse_endpoint(local)
        peer_addr = parse_endpoint(peer) if isinstance(peer, str) else peer
        family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
        if peer_addr is not None and ":" in peer_addr[0] and family == socket.AF_INET:
            family = socket.AF_INET6
            if local[0] == "0.0.0.0":
                local = ("::", local[1])
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(local)
            return cls(sock, peer=peer_addr, **kwargs)
        except BaseException:
            sock.close()
            raise

    @classmethod
    def from_socket(cls, sock: socket.socket, **kwargs: Any) -> UDPTransport:
        """Adopt a UDP socket (the transport closes it)."""
        return cls(sock, **kwargs)

    @classmethod
    def from_fd(cls, fd: int, **kwargs: Any) -> UDPTransport:
        """Adopt a UDP socket fd (inherited by a worker process, say); the transport closes it."""
        sock = socket.socket(fileno=fd)
        kwargs.pop("peer", None)  # an adopted socket keeps its connection
        return cls(sock, **kwargs)

    def __repr__(self) -> str:
        return f"<UDPTransport {self.name}>"

    async def __aenter__(self) -> UDPTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def local_address(self) -> Address:
        """The bound address."""
        return tuple(self._socket().getsockname())

    def fileno(self) -> int:
        """The socket's fd (-1 once closed)."""
        return self._fd

    def reopen_params(self) -> dict[str, Any]:
        """What :meth:`from_fd` needs besides the fd to rebuild this transport elsewhere."""
        return {"max_datagram": self.max_datagram, "max_packets": self.max_packets}

    def _socket(self) -> socket.socket:
        sock = self._sock
        if sock is None:
            raise anyio.ClosedResourceError
        return sock

    def new_batch(self) -> DatagramBatch:
        """A batch with room for ``max_packets`` MTU-sized datagrams and one of ``max_datagram``."""
        capacity = self.max_datagram + HEADROOM + self.max_packets * (1500 + HEADROOM)
        return DatagramBatch(capacity=capacity, max_packets=self.max_packets)

    # -- receive --------------------------------------------------------------------------

    def _recv_some(self, batch: PacketBatch) -> int:
        """Receive what is waiting into ``batch`` without blocking; the count."""
        sock = self._socket()
        view = batch.view
        cap = len(batch.buffer)
        need = self.max_datagram
        recv = sock.recvfrom_into
        addrs = batch.addresses if isinstance(batch, DatagramBatch) else None
        if isinstance(batch, DatagramBatch):
            batch._align()
        count = 0
        nbytes = 0
        while len(batch.offsets) < batch.max_packets:
            off = batch.end + HEADROOM
            if off + need > cap:
                break
            try:
                n, addr = recv(view[off : off + need])
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in _UNREACHABLE:
                    self._drop("refused")
                    continue
                raise
            batch.offsets.append(off)
            batch.lengths.append(n)
            batch.end = off + n
            if addrs is not None:
                addrs.append(addr)
            count += 1
            nbytes += n
        if count:
            self._rx[0] += count
            self._rx[1] += nbytes
            self._rx[2] += 1
        return count

    async def recv_batch(self, batch: PacketBatch | None = None) -> PacketBatch:
        """Wait for at least one datagram, then take what is waiting.

        Args:
            batch: appended to (a :class:`DatagramBatch` records senders); new when ``None``.

        Raises:
            anyio.ClosedResourceError: the transport was closed.
            anyio.BusyResourceError: another task is receiving.
            ValueError: ``batch`` has no room for a datagram of ``max_datagram`` bytes.
            OSError: the socket failed.
        """
        if batch is None:
            batch = self.new_batch()
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._receiving:
            raise anyio.BusyResourceError("receiving from")
        self._receiving = True
        try:
            while not self._recv_some(batch):
                if batch.end + HEADROOM + self.max_datagram > len(batch.buffer) or batch.full:
                    raise ValueError("the batch has no room for another datagram")
                await anyio.wait_readable(self._socket())
        finally:
            self._receiving = False
        await anyio.lowlevel.cancel_shielded_checkpoint()
        return batch

    # -- send -----------------------------------------------------------------------------

    def _send_from(self, batch: PacketBatch, start: int) -> int:
        """Send datagrams from ``start`` without blocking; the index after the last one handled.

        Raises:
            BlockingIOError: not even the first one could be sent now.
        """
        sock = self._socket()
        view = batch.view
        offsets, lengths = batch.offsets, batch.lengths
        addrs = batch.addresses if isinstance(batch, DatagramBatch) else ()
        n_addrs = len(addrs)
        connected = self.peer is not None
        send, sendto = sock.send, sock.sendto
        i = start
        total = len(offsets)
        sent = nbytes = 0
        try:
            while i < total:
                off = offsets[i]
                data = view[off : off + lengths[i]]
                addr = addrs[i] if i < n_addrs else None
                try:
                    if addr is None:
                        if not connected:
                            self._drop("no_address")
                            i += 1
                            continue
                        send(data)
                    else:
                        sendto(data, addr)
                except BlockingIOError:
                    if i == start:
                        raise
                    break
                except OSError as exc:
                    if exc.errno in _UNREACHABLE:
                        self._drop("unreachable")
                    elif exc.errno == errno.EMSGSIZE:
                        self._drop("too_large")
                    else:
                        raise
                    i += 1
                    continue
                sent += 1
                nbytes += lengths[i]
                i += 1
        finally:
            self._tx[0] += sent
            self._tx[1] += nbytes
        return i

    async def send_batch(self, batch: PacketBatch) -> int:
        """Send every datagram of ``batch`` (to its address, else to :attr:`peer`).

        Returns:
            How many were sent; the others are counted in ``statistics().drops``.

        Raises:
            anyio.ClosedResourceError: the transport was closed.
            OSError: the socket failed in a way no datagram loss explains.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        before = self._tx[0]
        i = 0
        total = len(batch)
        while i < total:
            try:
                i = self._send_from(batch, i)
            except BlockingIOError:
                await anyio.wait_writable(self._socket())
        self._tx[2] += 1
        await anyio.lowlevel.cancel_shielded_checkpoint()
        return self._tx[0] - before

    def _drop(self, reason: str) -> None:
        self._drops[reason] = self._drops.get(reason, 0) + 1

    def statistics(self) -> TransportStatistics:
        """Counters so far."""
        rx, tx = self._rx, self._tx
        return TransportStatistics(rx[0], rx[1], rx[2], tx[0], tx[1], tx[2], self._drops)

    async def aclose(self) -> None:
        """Close the socket; a blocked receiver gets ``anyio.ClosedResourceError``."""
        sock, self._sock = self._sock, None
        if sock is not None:
            self._fd = -1
            try:
                anyio.notify_closing(sock)
            except Exception:
                pass
            sock.close()
        await anyio.lowlevel.checkpoint()


def _format(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)
