"""A UDP transport: one non-blocking socket, waited on through the event loop (a persistent
registration for reads on asyncio/uvloop, ``anyio.wait_readable`` on trio, ``wait_writable``).

Python has no ``sendmmsg``/``recvmmsg``, so on Linux this transport moves many datagrams per
system call with the kernel's UDP segmentation offloads:

* **send** — a :class:`~tunflow.datagram.DatagramBatch` is cut into groups
  (:meth:`~tunflow.datagram.DatagramBatch.gso_groups`: consecutive, contiguous, equal-sized
  datagrams to one peer, ≤ 64 of them, ≤ 65507 bytes); each group is **one** ``sendmsg`` with a
  ``UDP_SEGMENT`` control message, and the kernel cuts it into datagrams (in software, or
  never, when the path carries it whole to a ``UDP_GRO`` reader).
* **receive** — with ``UDP_GRO`` on, one ``recvmsg_into`` returns a run of datagrams of one
  sender back to back plus a control message with their size; they land in the batch's arena
  in place (:meth:`~tunflow.datagram.DatagramBatch.add_segments`).

Both are probed when the socket is set up; where the kernel refuses them (an old kernel, another
OS, ``TUNFLOW_UDP_OFFLOAD=0``, ``offload=False``) the transport uses plain ``recvfrom_into`` and
``sendto``, one datagram per call. A kernel that refuses a ``UDP_SEGMENT`` send at run time
(``EIO`` when the egress device has no checksum offload) turns segmentation off for the socket
and the group is re-sent plainly (counted as ``gso_refused``); one refused with ``EINVAL`` or
``EMSGSIZE`` (a segment above the path MTU, say) sends that group plainly and keeps
segmentation on (counted too).

Receives go on until the kernel has nothing left (or the batch is full) before waiting again,
so a burst costs one wait. Sockets get large buffers (``SO_RCVBUFFORCE`` when privileged), and
``SO_RXQ_OVFL`` reports the kernel's drops on a full receive queue (``rx_overflow``).

A dual-stack socket (bound to ``::``) hands out IPv4 peers as plain ``("192.0.2.1", port)``
and takes them back in that form: each peer has one address whichever family it uses.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
import weakref
from collections.abc import Callable
from typing import Any, Final

import anyio
import anyio.lowlevel

from .._readiness import ReadWaiter
from .._text import is_decimal
from ..datagram import UDP_MAX_GSO_BYTES, UDP_MAX_SEGMENTS, DatagramBatch
from ..errors import ConfigError, UnsupportedError
from ..netconfig.device import parse_netns
from ..packet import IDEAL_BATCH_SIZE, PacketBatch
from ._base import Address, TransportStatistics

__all__ = ["UDPTransport", "parse_endpoint", "UDP_OFFLOAD_ENV"]

#: Set to ``0`` (or ``off``/``false``/``no``) to keep UDP transports on the plain path.
UDP_OFFLOAD_ENV: Final = "TUNFLOW_UDP_OFFLOAD"
#: The largest UDP payload over IPv4; also the room a ``UDP_GRO`` read needs.
MAX_DATAGRAM: Final = 65535
#: Socket buffer size asked for (wireguard-go asks for 7 MiB).
DEFAULT_BUFFER: Final = 7 << 20

_LINUX: Final = sys.platform.startswith("linux")
_SOL_UDP: Final = getattr(socket, "SOL_UDP", 17)
_UDP_SEGMENT: Final = 103
_UDP_GRO: Final = 104
_SO_RXQ_OVFL: Final = 40
_SO_MARK: Final = 36
_SO_SNDBUFFORCE: Final = 32
_SO_RCVBUFFORCE: Final = 33
_SOL_SOCKET: Final = socket.SOL_SOCKET
# a plain int: ``flags & socket.MSG_TRUNC`` would go through enum.Flag.__and__ on every read
_MSG_TRUNC: Final = int(socket.MSG_TRUNC)
# a read cut, or its control messages: one test per read, for both
_CUT: Final = _MSG_TRUNC | int(socket.MSG_CTRUNC)
# Room for a read's control messages: ours (UDP_GRO's segment size, SO_RXQ_OVFL's count) and
# what a socket adopted with other reports on puts before them (timestamps: up to 64 bytes,
# SO_RCVMARK…) — where they do not fit, the segment size is cut or left out (see _segments_lost)
_ANCBUF: Final = 256 if hasattr(socket, "CMSG_SPACE") else 0
_SEGMENT: Final = struct.Struct("=H")
_INT: Final = struct.Struct("=i")
_UINT: Final = struct.Struct("=I")
_UNREACHABLE: Final = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
)
# What else a connected socket's read or send may return instead of data: the ICMP error its
# peer's last datagram met (the kernel's icmp_err_convert/icmpv6_err_convert), besides the
# unreachable ones — administratively prohibited (ICMPv6: EACCES, a firewall's reject), a
# parameter problem (EPROTO), an isolated host (ENONET), an unreachable protocol (ENOPROTOOPT)
_ICMP_OTHER: Final = frozenset({errno.EACCES, errno.EPROTO, errno.ENONET, errno.ENOPROTOOPT})
# What a kernel says when it will not segment a send: no checksum offload on the egress device
# (EIO, the case wireguard-go handles), segments above the path MTU (EINVAL; EMSGSIZE on
# newer kernels, 6.18 here — sent one by one, they are fragmented), or no UDP_SEGMENT at all.
_GSO_REFUSED: Final = frozenset(
    {errno.EIO, errno.EINVAL, errno.EMSGSIZE, errno.EOPNOTSUPP, errno.ENOPROTOOPT}
)
# ...of which those that concern this send only (the next one may be segmented)
_GSO_REFUSED_ONCE: Final = frozenset({errno.EINVAL, errno.EMSGSIZE})
_ADDR_CACHE_MAX: Final = 4096
# what a send to an interface index that is no longer there fails with
_LINK_GONE: Final = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENODEV, errno.ENXIO})
#: ``(address, offset or parts, length, segment size)``: a run of datagrams one send takes,
#: in the arena at an offset or gathered from parts (:meth:`DatagramBatch.add_gathered`)
_Group = tuple[Any, Any, int, int]


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
    if not sep or not is_decimal(port_text):
        raise ConfigError(f"{text!r} is not host:port")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} in {text!r} is outside 0..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if "\0" in host:  # (bind and getaddrinfo's TypeError or ValueError, out of tunflow run)
        raise ConfigError(f"{text!r} is not host:port")
    return host or default_host, port


def _offload_allowed() -> bool:
    return os.environ.get(UDP_OFFLOAD_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def _set_buffer(sock: socket.socket, size: int) -> None:
    for force, plain in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF), (_SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(_SOL_SOCKET, force, size)  # beyond rmem_max, with CAP_NET_ADMIN
        except OSError:
            try:
                sock.setsockopt(_SOL_SOCKET, plain, size)  # capped at net.core.[rw]mem_max
            except OSError:
                pass


def _datagrams(length: int, seg: int) -> int:
    """How many datagrams a group of ``length`` bytes cut every ``seg`` is (an empty datagram
    is one)."""
    return -(-length // seg) if seg > 0 else 1


def _segments_lost(anc: list[tuple[int, int, bytes]]) -> bool:
    """Whether a read whose control messages were cut (``MSG_CTRUNC``) lost its ``UDP_GRO``
    segment size, or part of it: its datagrams cannot be told apart (taken as one datagram, a
    run was merged; a cut size was a ``struct.error``), so the read is dropped. (A lone
    datagram has no segment size: it is dropped too — the two look alike.)"""
    return not any(
        level == _SOL_UDP and kind == _UDP_GRO and len(data) >= 4 for level, kind, data in anc
    )


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """``cache[key] = value``, the cache emptied first when full (addresses: bounded)."""
    if len(cache) >= _ADDR_CACHE_MAX:
        cache.clear()
    cache[key] = value


# Interface names and indexes are looked up with the socket's own ioctls on Linux, so in the
# socket's network namespace (the process may sit in another one: ``open_interface(netns=)``).
_SIOCGIFNAME: Final = 0x8910
_SIOCGIFINDEX: Final = 0x8933
_IFREQ: Final = struct.Struct("16si20x")  # name, index, the rest of the union


def _scope_name(fd: int, index: int) -> str:
    """An IPv6 scope as ``ip`` and ``wg`` show it: the interface's name, else its index."""
    try:
        if _LINUX:
            import fcntl

            raw = fcntl.ioctl(fd, _SIOCGIFNAME, _IFREQ.pack(b"", index))
            return raw[:16].split(b"\0", 1)[0].decode()
        return socket.if_indextoname(index)
    except (OSError, UnicodeDecodeError):
        return str(index)


def _new_socket(family: int, netns: str | None) -> socket.socket:
    """A UDP socket of ``family``, made in the network namespace ``netns`` (``None``: the
    calling thread's), which the thread is in for the call only.

    Raises:
        DeviceNotFoundError, DevicePermissionError, ConfigError: as the device builder's
            ``netns`` (no such namespace, no privilege to enter it, not a namespace).
    """
    if netns is None:
        return socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    from ..platform.linux.tun import netns_entered

    with netns_entered(netns):
        return socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)


def _mark(mark: int) -> bytes:
    """``SO_MARK``'s value: 32 unsigned bits (``setsockopt`` takes an ``int`` only up to
    2**31 - 1 and raises ``TypeError`` above; ``wg`` sets marks up to 0xffffffff).

    Raises:
        OSError: ``EINVAL``, not a 32-bit mark.
    """
    if not 0 <= mark <= 0xFFFFFFFF:
        raise OSError(errno.EINVAL, f"fwmark {mark} is not 0…0xffffffff")
    return struct.pack("=I", mark)


def _scope_index(fd: int, scope: str) -> int:
    """The interface index for an IPv6 scope (a name or a number); -1 if there is none."""
    if is_decimal(scope):
        index = int(scope)
        return index if index <= 0xFFFFFFFF else -1  # (the socket module would wrap it)
    try:
        name = scope.encode()
        # no interface has such a name: the kernel would read the first 15 bytes, up to a NUL
        # ("eth0\0x", a 16th character cut off) — another interface's name
        if len(name) >= 16 or b"\0" in name:
            return -1
        if _LINUX:
            import fcntl

            raw = fcntl.ioctl(fd, _SIOCGIFINDEX, _IFREQ.pack(name, 0))
            return int(_IFREQ.unpack(raw)[1])
        return socket.if_nametoindex(scope)
    except (OSError, UnicodeEncodeError, struct.error):
        return -1


class UDPTransport:
    """Datagrams over one UDP socket, batched with ``UDP_SEGMENT``/``UDP_GRO`` where possible.

    Build one with :meth:`bind` (or adopt a socket with :meth:`from_socket`). ``peer`` is where
    datagrams without their own address go; a transport with a peer is *connected*, so it only
    receives from that peer and the kernel reports ICMP errors (counted as ``unreachable``).

    Args:
        sock: a UDP socket (made non-blocking here; the transport owns it).
        peer: the default destination.
        max_datagram: the longest datagram taken (a longer one is dropped, counted as
            ``truncated``); a ``UDP_GRO`` read is offered 65535 bytes whatever this says.
        max_packets: datagrams per received batch.
        name: for statistics.
        offload: use ``UDP_SEGMENT``/``UDP_GRO`` when the kernel has them (``None``: yes, unless
            ``TUNFLOW_UDP_OFFLOAD=0``); ``False`` keeps the plain path.
        buffer_size: socket send and receive buffer size to ask for (``None``: leave them).

    Raises:
        ConfigError: ``sock`` is not a datagram socket, or ``max_datagram`` is not within
            1..65535 or ``max_packets`` not within 1..65536.

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
        max_packets: int = 2 * IDEAL_BATCH_SIZE,
        name: str | None = None,
        offload: bool | None = None,
        buffer_size: int | None = DEFAULT_BUFFER,
    ) -> None:
        if sock.type != socket.SOCK_DGRAM:
            raise ConfigError(f"{sock!r} is not a datagram socket")
        for what, value, high in (
            ("max_datagram", max_datagram, MAX_DATAGRAM),
            ("max_packets", max_packets, 1 << 16),
        ):
            if type(value) is not int or not 1 <= value <= high:  # (bool is an int)
                raise ConfigError(f"{what} must be within 1..{high}, not {value!r}")
        # (the transport owns the socket, and its finalizer closes it, only once made: a failure
        # below leaves the caller's socket to the caller)
        self._sock: socket.socket | None = None
        sock.setblocking(False)
        self._fd = sock.fileno()
        self._reader = ReadWaiter(self._fd)
        self._v6 = sock.family == socket.AF_INET6
        self._recv_cache: dict[Any, Address] = {}
        self._send_cache: dict[Any, Any] = {}
        #: the index each link-local scope name last had here (for a link since deleted)
        self._scopes: dict[str, int] = {}
        self.peer = peer
        if peer is not None:
            try:
                sock.connect(self._send_address(peer))
            except OSError as exc:
                raise OSError(exc.errno, f"connect to {_format(peer)}: {exc.strerror}") from exc
        self.max_datagram = max_datagram
        self.max_packets = max_packets
        self.name = name or f"udp:{_format(sock.getsockname())}"
        if buffer_size:
            _set_buffer(sock, buffer_size)
        use = _offload_allowed() if offload is None else offload
        if _LINUX:
            # an adopted socket may have a segment size of its own (UDP_SEGMENT set on it): the
            # kernel would cut every send without one — a lone datagram, the plain path's — at it
            try:
                sock.setsockopt(_SOL_UDP, _UDP_SEGMENT, 0)
            except OSError:
                pass
        self._gso = use and _LINUX and self._probe_gso(sock)
        self._gro = use and _LINUX and self._probe_gro(sock)
        if _LINUX and not self._gro:
            # an adopted socket may have UDP_GRO on already (set by its maker, or by another
            # transport on the fd): a plain read would take a run of datagrams as one
            try:
                sock.setsockopt(_SOL_UDP, _UDP_GRO, 0)
            except OSError:
                pass
        #: the room a receive needs: a UDP_GRO read may hold 64 KiB of datagrams (offered
        #: less, the kernel cuts the read and every datagram in it is lost)
        self._room = MAX_DATAGRAM if self._gro else max_datagram
        self._overflow_reported = False
        if self._gro:
            try:
                sock.setsockopt(_SOL_SOCKET, _SO_RXQ_OVFL, 1)
                self._overflow_reported = True
            except OSError:
                pass
        # rx: datagrams, bytes, batches, syscalls; tx: the same
        self._rx = [0, 0, 0, 0]
        self._tx = [0, 0, 0, 0]
        self._drops: dict[str, int] = {}
        self._kernel_drops = 0
        self._receiving = False
        # the last receive found one datagram and then nothing (see at_rest); datagrams
        # scattered reads took since the last one that found nothing
        self._lone = False
        self._run = 0
        #: whether the last receive stopped on a full batch (more was waiting): queue depth
        self.backlogged = False
        #: how many reads found the socket's queue empty: where a count of receives in a row
        #: that were :attr:`backlogged` starts again
        self.drained = 0
        #: called with ``(address, bytes)`` for datagrams a send counted as dropped (unreachable,
        #: refused, too large, a bad address or none, a full buffer): for a protocol that counted them
        #: as sent when it sealed them (``None``: nobody asks)
        self.on_unsent: Callable[[Address | None, int], None] | None = None
        self._sock = sock
        # dropped without aclose(): closes the socket, after the event loop let go of the fd.
        # Not a __del__: a transport in a reference cycle was collected with its socket, whose
        # own finalizer could run first ("ResourceWarning: unclosed socket", the fd closed —
        # and its number free for reuse — while the loop still had it registered); the
        # finalizer keeps the socket out of the garbage until it has closed it
        self._finalizer = weakref.finalize(self, self._reader.close, then=sock.close)

    @staticmethod
    def _probe_gso(sock: socket.socket) -> bool:
        try:
            sock.getsockopt(_SOL_UDP, _UDP_SEGMENT)
        except OSError:
            return False
        return True

    @staticmethod
    def _probe_gro(sock: socket.socket) -> bool:
        try:
            sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
        except OSError:
            return False
        return True

    @classmethod
    def bind(
        cls,
        local: tuple[str, int] | str = ("0.0.0.0", 0),
        *,
        peer: tuple[str, int] | str | None = None,
        reuse_port: bool = False,
        fwmark: int = 0,
        netns: str | None = None,
        **kwargs: Any,
    ) -> UDPTransport:
        """A transport on a new socket bound to ``local`` (``"host:port"`` works too).

        Binding ``"::"`` (or ``""``) makes a dual-stack socket that serves IPv4 and IPv6 peers
        (falling back to IPv4 only where the host has no IPv6).

        Args:
            local: the local address (a link-local one with its scope, ``"[fe80::1%eth0]:0"``:
                an interface of the socket's namespace, by name or index).
            peer: the default destination (connects the socket).
            reuse_port: set ``SO_REUSEPORT`` (several sockets share the port; the kernel spreads
                flows over them).
            fwmark: ``SO_MARK`` for outgoing datagrams (0: none; needs CAP_NET_ADMIN).
            netns: make the socket in this network namespace, as
                :meth:`DeviceBuilder.netns <tunflow.DeviceBuilder.netns>` takes it: a name made by
                ``ip netns add`` or a path such as ``/proc/PID/ns/net`` (Linux; needs
                CAP_SYS_ADMIN). The calling thread is in it for the ``socket()`` call only;
                the socket keeps it for life — its addresses, routes and interface names are
                that namespace's — and the program runs on where it is.
            **kwargs: as the constructor.

        Raises:
            ConfigError: an address that does not parse; ``netns`` not a name or path, or a
                file that is not a network namespace.
            DeviceNotFoundError: no network namespace ``netns``.
            DevicePermissionError: ``netns`` cannot be entered (no CAP_SYS_ADMIN).
            UnsupportedError: ``netns`` off Linux.
            OSError: the bind or connect failed (``EADDRINUSE``…; ``ENODEV``: ``local``'s
                scope names no interface).
        """
        if isinstance(local, str):
            local = parse_endpoint(local)
        peer_addr = parse_endpoint(peer) if isinstance(peer, str) else peer
        if netns is not None:
            netns = parse_netns(netns)
            if not _LINUX:
                raise UnsupportedError(f"network namespaces are Linux only, not {sys.platform}")
        host = local[0]
        dual = host in ("", "::")
        family = socket.AF_INET6 if ":" in host or dual else socket.AF_INET
        if peer_addr is not None and ":" in peer_addr[0] and family == socket.AF_INET:
            family = socket.AF_INET6
            if host == "0.0.0.0":
                local, dual = ("::", local[1]), True
        try:
            sock = _new_socket(family, netns)
        except OSError as exc:
            if not (dual and exc.errno == errno.EAFNOSUPPORT):
                raise
            family, local, dual = socket.AF_INET, ("0.0.0.0", local[1]), False
            sock = _new_socket(family, netns)
        try:
            if dual:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if reuse_port:
                sock.setsockopt(_SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if fwmark:
                sock.setsockopt(_SOL_SOCKET, _SO_MARK, _mark(fwmark))
            address: Any = (local[0] or "::", local[1])
            if "%" in address[0] and family == socket.AF_INET6:
                # a link-local address's scope, looked up where the socket is (the socket
                # module would drop it: EINVAL; getaddrinfo would look the name up here)
                ip, _, scope = address[0].partition("%")
                index = _scope_index(sock.fileno(), scope)
                if index < 0:
                    raise OSError(errno.ENODEV, f"bind {_format(address)}: no interface {scope!r}")
                address = (ip, address[1], 0, index)
            try:
                sock.bind(address)
            except OSError as exc:
                where = _format((local[0] or "::", local[1]))
                raise OSError(exc.errno, f"bind {where}: {exc.strerror}") from exc
            return cls(sock, peer=peer_addr, **kwargs)
        except BaseException:
            sock.close()
            raise

    @classmethod
    def from_socket(cls, sock: socket.socket, **kwargs: Any) -> UDPTransport:
        """Adopt a UDP socket (the transport closes it); a connected one keeps its peer, as
        with :meth:`from_fd`, unless ``peer`` is given."""
        transport = cls(sock, **kwargs)
        if kwargs.get("peer") is None:
            transport._adopt_peer()
        return transport

    @classmethod
    def from_fd(cls, fd: int, **kwargs: Any) -> UDPTransport:
        """Adopt a UDP socket fd (inherited by a worker process, say); the transport closes it."""
        sock = socket.socket(fileno=fd)
        kwargs.pop("peer", None)  # an adopted socket keeps its connection...
        try:
            transport = cls(sock, **kwargs)
        except BaseException:
            sock.detach()  # not adopted: the fd stays the caller's (not closed with ``sock``)
            raise
        transport._adopt_peer()
        return transport

    def _adopt_peer(self) -> None:
        try:
            peer = self._socket().getpeername()
        except OSError:  # (ENOTCONN: no peer)
            return
        # ...and its peer: datagrams without an address go there (IPv4-mapped as plain IPv4)
        self.peer = self._recv_address(peer)

    def __repr__(self) -> str:
        return f"<UDPTransport {self.name}>"

    async def __aenter__(self) -> UDPTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def local_address(self) -> Address:
        """The bound address, as ``(host, port)``."""
        return tuple(self._socket().getsockname()[:2])

    @property
    def gso(self) -> bool:
        """Whether sends use ``UDP_SEGMENT``."""
        return self._gso

    @property
    def gro(self) -> bool:
        """Whether receives use ``UDP_GRO``."""
        return self._gro

    def fileno(self) -> int:
        """The socket's fd (-1 once closed)."""
        return self._fd

    def reopen_params(self) -> dict[str, Any]:
        """What :meth:`from_fd` needs besides the fd to rebuild this transport elsewhere."""
        return {
            "max_datagram": self.max_datagram,
            "max_packets": self.max_packets,
            "offload": self._gso or self._gro,
            "buffer_size": None,
        }

    def set_fwmark(self, mark: int) -> None:
        """Set ``SO_MARK`` on the socket (0 clears it).

        Raises:
            OSError: the kernel refused (``EPERM`` without CAP_NET_ADMIN).
        """
        self._socket().setsockopt(_SOL_SOCKET, _SO_MARK, _mark(mark))

    def _socket(self) -> socket.socket:
        sock = self._sock
        if sock is None:
            raise anyio.ClosedResourceError
        return sock

    def new_batch(self) -> DatagramBatch:
        """A batch with room for ``max_packets`` datagrams and a few ``UDP_GRO`` reads."""
        capacity = max(8 * self.max_datagram, self._room, self.max_packets * 1600)
        return DatagramBatch(capacity=capacity, max_packets=self.max_packets + UDP_MAX_SEGMENTS)

    # -- addresses ------------------------------------------------------------------------

    def _recv_address(self, raw: Any) -> Address:
        """``(host, port)`` for a socket address; IPv4-mapped IPv6 as plain IPv4; a link-local
        peer's scope kept in the host (``fe80::1%eth0``), so a reply leaves by the link the
        datagram came in on."""
        addr = self._recv_cache.get(raw)
        if addr is None:
            host = raw[0]
            if host.startswith("::ffff:") and "." in host:
                host = host[7:]
            elif len(raw) > 3 and raw[3] and "%" not in host:
                scope = _scope_name(self._fd, raw[3])
                _remember(self._scopes, scope, raw[3])
                host = f"{host}%{scope}"
                # and the reply goes out of the link this came in on, by its index now: a link
                # deleted and made anew under its name has another index (the kernel's
                # WireGuard takes the scope from the datagram too)
                if self._v6:
                    _remember(self._send_cache, (host, raw[1]), (raw[0], raw[1], 0, raw[3]))
            addr = (host, raw[1])
            _remember(self._recv_cache, raw, addr)
        return addr

    def numeric_scope(self, addr: Address) -> Address:
        """``addr`` with a link-local scope given by name (``fe80::1%eth0``) as the link's
        index in this socket's namespace (``fe80::1%2``); other addresses as they are.

        A name no link here has (the link was deleted) gives the index it last had here,
        else no scope: ``wg`` reads what the control socket shows, looks a name up in its own
        namespace and crashes where that fails.
        """
        ip, sep, scope = addr[0].partition("%")
        if not sep or is_decimal(scope):
            return addr
        index = _scope_index(self._fd, scope)
        if index >= 0:
            _remember(self._scopes, scope, index)
        else:
            index = self._scopes.get(scope, -1)
        return (ip, addr[1]) if index < 0 else (f"{ip}%{index}", addr[1])

    def has_scope(self, addr: Address) -> bool:
        """Whether ``addr`` has no link-local scope, or one that is a number or names a link
        in this socket's namespace (what ``wg set`` and the kernel accept)."""
        _, sep, scope = addr[0].partition("%")
        return not sep or _scope_index(self._fd, scope) >= 0

    def _send_address(self, addr: Any) -> Any:
        """What the socket takes for ``addr``: an IPv4 peer IPv4-mapped on an IPv6 socket; a
        scoped IPv6 host as ``(ip, port, 0, index)``.

        Raises:
            socket.gaierror: the scope names no interface in the socket's namespace.
        """
        if not self._v6:
            return addr
        out = self._send_cache.get(addr)
        if out is None:
            host = addr[0]
            if "." in host and ":" not in host:
                out = (f"::ffff:{host}", addr[1])
            elif "%" in host:
                # a scoped (link-local) address: the scope as the tuple's index — a host with
                # "%" in it would be resolved by getaddrinfo on every send
                ip, _, scope = host.partition("%")
                index = _scope_index(self._fd, scope)
                if index < 0:
                    # not handed to the socket as it is: getaddrinfo would look the name up in
                    # the process's namespace, not the socket's (another link, or none), and
                    # a NUL in it is a TypeError. Not cached: the link may come later.
                    raise socket.gaierror(socket.EAI_NONAME, f"no interface {scope!r} here")
                out = (ip, addr[1], 0, index)
                _remember(self._scopes, scope, index)
            else:
                out = addr
            _remember(self._send_cache, addr, out)
        return out

    # -- receive --------------------------------------------------------------------------

    def _recv_some(self, batch: DatagramBatch) -> int:
        """Receive what is waiting into ``batch`` without blocking; the count."""
        return self._recv_gro(batch) if self._gro else self._recv_plain(batch)

    def _recv_plain(self, batch: DatagramBatch) -> int:
        sock = self._socket()
        view = batch.view
        cap = len(batch.buffer)
        need = self.max_datagram
        recv = sock.recvfrom_into
        offsets, lengths, addrs = batch.offsets, batch.lengths, batch.addresses
        norm = self._recv_address if self._v6 else None
        stop = min(batch.max_packets, len(offsets) + self.max_packets)
        count = nbytes = 0
        end = batch.end
        full = False
        icmp = False
        try:
            while len(offsets) < stop:
                if end + need > cap:
                    full = True
                    break
                try:
                    # (MSG_TRUNC: the datagram's own length, so one longer than the room shows)
                    n, addr = recv(view[end : end + need], need, _MSG_TRUNC)
                except BlockingIOError:
                    self.drained += 1
                    break
                except OSError as exc:
                    if self._read_error(exc, icmp):
                        icmp = icmp or exc.errno in _ICMP_OTHER
                        continue
                    raise
                if n > need:
                    self._drop("truncated")  # as the GRO path counts one
                    continue
                offsets.append(end)
                lengths.append(n)
                addrs.append(norm(addr) if norm is not None else addr)
                end += n
                count += 1
                nbytes += n
            else:
                full = True
        finally:
            batch.end = end
        self.backlogged = full
        if count:
            rx = self._rx
            rx[0] += count
            rx[1] += nbytes
            rx[3] += count
        return count

    def _read_error(self, exc: OSError, skipped: bool) -> bool:
        """Whether a read's error is a connected socket's pending ICMP error (the read took
        it): counted as ``refused`` and the read registration renewed (see ReadWaiter.renew),
        for the caller to read on. An unreachable one always; another (EACCES…) only once per
        call (``skipped``: one was) — from read after read it is no ICMP error (an LSM's
        denial): raised, not read again and again."""
        e = exc.errno
        if e in _UNREACHABLE or (e in _ICMP_OTHER and self.peer is not None and not skipped):
            self._drop("refused")
            self._reader.renew()
            return True
        return False

    def _segment_size(self, anc: list[tuple[int, int, bytes]], n: int) -> int:
        """The ``UDP_GRO`` segment size in a read's control messages (``n``, the bytes read,
        without one); a ``SO_RXQ_OVFL`` count there updates :attr:`kernel_drops`."""
        seg = n
        for level, kind, data in anc:
            if level == _SOL_UDP and kind == _UDP_GRO:
                seg = _INT.unpack_from(data)[0] if len(data) >= 4 else _SEGMENT.unpack(data)[0]
            elif level == _SOL_SOCKET and kind == _SO_RXQ_OVFL:
                self._kernel_drops = _UINT.unpack_from(data)[0]
        return seg

    def _recv_gro(self, batch: DatagramBatch) -> int:
        sock = self._socket()
        view = batch.view
        cap = len(batch.buffer)
        need = self._room
        recvmsg_into = sock.recvmsg_into
        norm = self._recv_address if self._v6 else None
        # a UDP_GRO read is never cut, so a batch may end up to 63 datagrams over its limit
        stop = min(batch.max_packets, len(batch.offsets) + self.max_packets)
        add = batch.add_segments
        count = nbytes = reads = 0
        full = False
        icmp = False
        while len(batch.offsets) < stop:
            off = batch.end
            if off + need > cap:
                full = True
                break
            try:
                n, anc, flags, addr = recvmsg_into([view[off : off + need]], _ANCBUF)
            except BlockingIOError:
                self.drained += 1
                break
            except OSError as exc:
                if self._read_error(exc, icmp):
                    icmp = icmp or exc.errno in _ICMP_OTHER
                    continue
                raise
            reads += 1
            if flags & _CUT and (flags & _MSG_TRUNC or _segments_lost(anc)):
                self._drop("truncated")
                continue
            seg = self._segment_size(anc, n) if anc else n
            if seg > self.max_datagram:  # longer than asked for: as the plain path's
                self._drop("truncated", _datagrams(n, seg))
                continue
            # (an empty datagram is one of length 0, as on the plain path)
            count += add(
                off, n, seg if seg > 0 else max(n, 1), norm(addr) if norm is not None else addr
            )
            nbytes += n
        else:
            full = True
        self.backlogged = full
        if count:
            rx = self._rx
            rx[0] += count
            rx[1] += nbytes
            rx[3] += reads
        return count

    def recv_scattered_nowait(self, buffers: list[memoryview]) -> tuple[int, int, Address]:
        """One read spread over ``buffers`` (a scatter list), without waiting.

        For callers that want each datagram of a ``UDP_GRO`` read cut in two — a fixed-size
        header into one region, the rest into another, so the rests lie back to back (tunflow's
        native fast mode opens a whole message where it lies that way).

        An empty datagram has no bytes to return: it is passed over, counted as an ``empty``
        drop, and the next one read.

        Returns:
            ``(bytes read, segment size, sender)``; the segment size is the ``UDP_GRO``
            control message's, or the byte count when the read was one datagram.

        Raises:
            BlockingIOError: nothing is waiting.
            anyio.ClosedResourceError: the transport was closed.
            OSError: the socket failed (ICMP errors are counted and skipped).
        """
        recvmsg_into = self._socket().recvmsg_into
        icmp = False
        while True:
            try:
                n, anc, flags, addr = recvmsg_into(buffers, _ANCBUF)
            except BlockingIOError:
                self._lone = self._run == 1
                self._run = 0
                self.drained += 1
                raise
            except OSError as exc:
                if self._read_error(exc, icmp):
                    icmp = icmp or exc.errno in _ICMP_OTHER
                    continue
                raise
            if flags & _CUT and (flags & _MSG_TRUNC or _segments_lost(anc)):
                self._drop("truncated")
                continue
            if n:
                break
            self._drop("empty")  # (no bytes to return: passed over, as the docstring says)
        seg = self._segment_size(anc, n) if anc else n
        if seg <= 0:
            seg = n
        count = -(-n // seg)
        self._run += count
        rx = self._rx
        rx[0] += count
        rx[1] += n
        rx[2] += 1
        rx[3] += 1
        return n, seg, self._recv_address(addr) if self._v6 else addr

    @property
    def at_rest(self) -> bool:
        """Whether the last receive found one datagram and then nothing (a ping, a request),
        with nothing passed over since: the next datagram is most likely a round trip away, so
        a caller of :meth:`recv_scattered_nowait` may :meth:`wait_readable` first — the wait is
        a checkpoint — instead of a read that finds nothing (:meth:`recv_batch` does so itself).
        """
        return self._lone and self._reader.armed

    async def wait_readable(self) -> None:
        """Wait until a receive would not block.

        Raises:
            anyio.ClosedResourceError: the transport was closed.
            anyio.BusyResourceError: another task is waiting already.
        """
        self._socket()
        # not at rest until a read finds the socket empty again: a wait cut short after its
        # wake (a cancellation) leaves what woke it unread — maybe uvloop's only report of an
        # error, so the next wait would never be woken
        self._lone = False
        await self._reader.wait()

    async def serve_readable(self, step: Callable[[], bool]) -> None:
        """:meth:`wait_readable`, calling ``step()`` from the event loop's reader callback
        while it waits (see :meth:`ReadWaiter.serve <tunflow._readiness.ReadWaiter.serve>`);
        ``step`` receives with :meth:`recv_nowait`."""
        self._socket()
        self._lone = False  # as in wait_readable
        await self._reader.serve(step)

    def recv_nowait(self, batch: DatagramBatch) -> int:
        """What :meth:`recv_batch` does once the socket is readable, without waiting: take
        what is waiting into ``batch``; how many datagrams (0: none), or -1 having read
        nothing because another task receives or ``batch`` has no room (the caller then
        receives with :meth:`recv_batch`, which says why).

        Raises:
            anyio.ClosedResourceError: the transport was closed.
            OSError: the socket failed.
        """
        self._socket()
        if self._receiving or batch.end + self._room > len(batch.buffer) or batch.room() == 0:
            return -1
        got = self._recv_some(batch)
        if got:
            self._lone = got == 1 and not self.backlogged
            batch.origin = self
            self._rx[2] += 1
        return got

    @property
    def serves(self) -> bool:
        """Whether :meth:`serve_readable` calls its step (see ``ReadWaiter.serves``)."""
        return self._reader.serves

    async def recv_batch(self, batch: PacketBatch | None = None) -> DatagramBatch:
        """Wait for at least one datagram, then take what is waiting.

        Args:
            batch: a :class:`~tunflow.datagram.DatagramBatch` to append to (senders are
                recorded in ``addresses``); a new one when ``None``. A ``UDP_GRO`` read is
                never cut, so its datagrams (up to 64) all go in: the batch may end up that
                many over its ``max_packets`` (:meth:`new_batch` leaves room for it).

        Raises:
            anyio.ClosedResourceError: the transport was closed.
            anyio.BusyResourceError: another task is receiving.
            TypeError: ``batch`` is not a ``DatagramBatch``.
            ValueError: ``batch`` has no room for a receive (``max_datagram`` bytes; with
                ``UDP_GRO`` 65535, what one read may hold).
            OSError: the socket failed.
        """
        if batch is None:
            batch = self.new_batch()
        elif not isinstance(batch, DatagramBatch):
            raise TypeError(f"a transport receives into a DatagramBatch, not {batch!r}")
        # a checkpoint, as trio wants of every call, before anything is read (so a cancelled
        # call read nothing): cheaper on asyncio than checking first and yielding after; at
        # rest the wait is the checkpoint instead (see _waits_first)
        wait_first = self._waits_first(batch)
        if not wait_first:
            await anyio.lowlevel.checkpoint()
        if self._receiving:
            raise anyio.BusyResourceError("receiving from")
        self._receiving = True
        try:
            if wait_first:
                await self._reader.wait()
            while not (got := self._recv_some(batch)):
                if batch.end + self._room > len(batch.buffer) or batch.room() == 0:
                    raise ValueError("the batch has no room for another datagram")
                self._socket()
                await self._reader.wait()
        except BaseException:
            # cancelled after a wake, say: what woke it may be unread (see wait_readable)
            self._lone = False
            raise
        finally:
            self._receiving = False
        self._lone = got == 1 and not self.backlogged
        batch.origin = self
        self._rx[2] += 1
        return batch

    def _waits_first(self, batch: DatagramBatch) -> bool:
        # At rest (see at_rest) a receive waits before it reads, instead of a checkpoint and a
        # read that finds nothing — ~45 lines of Python and a system call less per datagram.
        # Only when the wait cannot miss what is there already (the socket registered with
        # nothing passed over since: ReadWaiter.armed), and not when the call raises without
        # reading (busy, closed, no room), which it does at once.
        return (
            self._lone
            and self._reader.armed
            and not self._receiving
            and self._sock is not None
            and batch.end + self._room <= len(batch.buffer)
            and batch.room() > 0
        )

    # -- send -----------------------------------------------------------------------------

    def _send_groups(self, view: memoryview, groups: list[_Group], k: int) -> int:
        """Send groups from ``k`` without blocking; the index of the first group not handled.

        Raises:
            BlockingIOError: not even group ``k`` could be sent now.
        """
        sock = self._socket()
        connected = self.peer is not None
        total = len(groups)
        sent = nbytes = calls = 0
        start = k
        plain_once = False
        stale = 0  # see _stale_error
        try:
            while k < total:
                addr, where, length, seg = groups[k]
                if addr is None and not connected:
                    self._lose("no_address", _datagrams(length, seg), None, length)
                    k += 1
                    continue
                # ``where``: the group's offset in the arena, or the parts of a gathered group
                parts = None if where.__class__ is int else where
                try:
                    dst = None if addr is None else self._send_address(addr)
                    if length <= seg:
                        if parts is None:
                            data = view[where : where + length]
                            if dst is None:
                                sock.send(data)
                            else:
                                sock.sendto(data, dst)
                        elif dst is None:
                            sock.sendmsg(parts)
                        else:
                            sock.sendmsg(parts, (), 0, dst)
                        n = 1
                        calls += 1
                    elif self._gso and not plain_once:
                        bufs = [view[where : where + length]] if parts is None else parts
                        anc = [(_SOL_UDP, _UDP_SEGMENT, _SEGMENT.pack(seg))]
                        if dst is None:
                            sock.sendmsg(bufs, anc)
                        else:
                            sock.sendmsg(bufs, anc, 0, dst)
                        n = _datagrams(length, seg)
                        calls += 1
                    else:
                        # the plain path (no GSO): a gathered group is joined first
                        whole = view[where : where + length] if parts is None else b"".join(parts)
                        n, sent_bytes, done = self._send_plain_group(
                            sock, memoryview(whole), seg, dst, addr
                        )
                        calls += n  # (one datagram a call)
                        if done < length:
                            # the socket buffer filled part way: the rest of the group is the
                            # next one to try (after a wait in send_batch), not lost
                            rest: Any = where + done if parts is None else [whole[done:]]
                            groups[k] = (addr, rest, length - done, seg)
                            sent += n
                            nbytes += sent_bytes
                            break
                        length = sent_bytes  # (what is counted below: what went)
                except BlockingIOError:
                    if k == start:
                        raise
                    break
                except (socket.gaierror, OverflowError):  # (a port outside 0..65535)
                    self._lose("bad_address", _datagrams(length, seg), addr, length)
                    k += 1
                    continue
                except OSError as exc:
                    if exc.errno in _GSO_REFUSED and length > seg and self._gso and not plain_once:
                        # The kernel will not segment this send. EIO: the egress device has no
                        # checksum offload (wireguard-go turns GSO off then): plain from now on.
                        # EINVAL, EMSGSIZE: e.g. a segment above the path MTU (sent plainly,
                        # each datagram is fragmented): this group plainly.
                        self._drop("gso_refused")
                        if exc.errno in _GSO_REFUSED_ONCE:
                            plain_once = True
                        else:
                            self._gso = False
                        continue
                    if not stale and (stale := self._stale_error(exc)):
                        continue
                    self._send_error(exc, _datagrams(length, seg), addr, length, stale)
                    k += 1
                    plain_once = False
                    if stale:
                        stale = -1
                    continue
                sent += n
                nbytes += length
                k += 1
                plain_once = False
                stale = 0
        finally:
            tx = self._tx
            tx[0] += sent
            tx[1] += nbytes
            tx[3] += calls
        return k

    def _send_plain_group(
        self, sock: socket.socket, data: memoryview, seg: int, dst: Any, addr: Any = None
    ) -> tuple[int, int, int]:
        """Send ``data`` a datagram (``seg`` bytes) at a time, a call each; ``(datagrams sent,
        bytes sent, bytes done)`` — done short of ``len(data)`` when the socket buffer filled
        part way: the rest is the caller's to send once there is room, nothing of it lost or
        counted twice.

        Raises:
            BlockingIOError: the socket buffer was full before the first datagram.
        """
        sent = pos = nbytes = 0
        size = len(data)
        stale = 0  # see _stale_error
        while pos < size:
            part = data[pos : pos + seg]
            try:
                if dst is None:
                    sock.send(part)
                else:
                    sock.sendto(part, dst)
            except BlockingIOError:
                if not pos:
                    raise
                break
            except OSError as exc:
                if not stale and (stale := self._stale_error(exc)):
                    continue
                self._send_error(exc, 1, addr, len(part), stale)
                if stale:
                    stale = -1
            else:
                sent += 1
                nbytes += len(part)
                stale = 0
            pos += seg
        return sent, nbytes, pos

    def _stale_error(self, exc: OSError) -> int:
        """The error's number when a failed send may not have been tried (else 0): a connected
        socket keeps the ICMP error an earlier datagram met (port, host or network
        unreachable) and returns it from the next send instead of sending (reading the error
        clears it) — worth once more. The error is counted as what it reports: one datagram
        lost as ``unreachable``.

        The caller keeps the number as ``stale`` while it tries again (0: may try again; -1:
        tried again and failed, not again until a send goes) and passes it to
        :meth:`_send_error`. The same error again is the send's own (no route: the kernel
        looks the route up before it returns a pending error, so a send that failed for a
        route that is not there did not take one): that count is taken back and the datagram
        counted once."""
        if self.peer is not None and exc.errno in _UNREACHABLE:
            self._drop("unreachable", 1)
            # the socket reported the error (EPOLLERR) too, maybe to uvloop, which then stops
            # polling it for the receive side: see ReadWaiter.renew
            self._reader.renew()
            return exc.errno
        return 0

    def _lose(self, reason: str, count: int, addr: Any, nbytes: int) -> None:
        """``count`` datagrams (``nbytes``) to ``addr`` not sent: counted as dropped for
        ``reason``, and told to :attr:`on_unsent`."""
        self._drop(reason, count)
        hook = self.on_unsent
        if hook is not None and nbytes:
            hook(addr if addr is not None else self.peer, nbytes)

    def _send_error(
        self, exc: OSError, count: int, addr: Any = None, nbytes: int = 0, stale: int = 0
    ) -> None:
        """Count a failed send of ``count`` datagrams (``nbytes`` in all) to ``addr`` by what
        its error says, or raise the error when no datagram loss explains it. ``stale``: the
        error of the try this one repeated (see :meth:`_stale_error`)."""
        if exc.errno == stale:
            self._drops["unreachable"] -= 1
        if addr is not None and exc.errno in _LINK_GONE and "%" in addr[0]:
            # a scoped destination whose link went (its index with it): looked up anew by
            # name next time, so a link made again under that name is found
            self._send_cache.pop(addr, None)
        if exc.errno in _UNREACHABLE or exc.errno == errno.EADDRNOTAVAIL:
            # EADDRNOTAVAIL: no usable source address for the destination — the link's own
            # (link-local) address still tentative while DAD runs, or gone: not sent, as if
            # no route led there
            reason = "unreachable"
            if self.peer is not None and exc.errno != errno.EADDRNOTAVAIL:
                self._reader.renew()  # maybe a pending ICMP error (see _stale_error)
        elif exc.errno == errno.EMSGSIZE:
            reason = "too_large"
        elif exc.errno in (errno.EAFNOSUPPORT, errno.EINVAL, errno.EDESTADDRREQ):
            reason = "bad_address"
        elif exc.errno == errno.ENOBUFS:
            reason = "would_block"
        elif exc.errno in (errno.EPERM, errno.EACCES) or (
            self.peer is not None and exc.errno in _ICMP_OTHER
        ):
            # refused here, not by the network: a firewall rule (EPERM), a broadcast address
            # (EACCES) — lost like any datagram; wireguard-go logs it and goes on. On a connected
            # socket it may be a pending ICMP error too (EACCES: ICMPv6 administratively
            # prohibited; EPROTO, ENONET…): lost, as an unreachable one is
            reason = "refused"
            if self.peer is not None:
                self._reader.renew()
        else:
            raise exc
        self._lose(reason, count, addr, nbytes)

    @staticmethod
    def _groups(batch: PacketBatch) -> list[_Group]:
        if isinstance(batch, DatagramBatch):
            return batch.send_groups(UDP_MAX_SEGMENTS, UDP_MAX_GSO_BYTES)
        # a plain packet batch (a pipeline's device side): every packet to the default peer
        return [(None, off, n, n) for off, n in zip(batch.offsets, batch.lengths, strict=True)]

    def _send_lone(self, batch: PacketBatch, stale: int = 0) -> int:
        """Send the one datagram of ``batch`` with one plain ``sendto``, without working out
        groups (a lone packet's trip through a tunnel: ~40 lines of Python less); errors are
        handled as :meth:`_send_groups` handles them (a stale ICMP error: tried once more,
        here — ``stale``: the error of the try this one repeats). How many were sent (0:
        lost, counted), or -1 when the general path is to send it (gathered parts, no
        address, a full socket buffer): nothing was sent then."""
        sock = self._sock
        if sock is None or not isinstance(batch, DatagramBatch) or batch.gathered:
            return -1
        addr = batch.addresses[0]
        if addr is None and self.peer is None:
            return -1
        off = batch.offsets[0]
        n = batch.lengths[0]
        tx = self._tx
        try:
            if addr is None:
                sock.send(batch.view[off : off + n])
            else:
                sock.sendto(batch.view[off : off + n], self._send_address(addr))
        except BlockingIOError:
            return -1
        except (socket.gaierror, OverflowError):  # (a port outside 0..65535)
            self._lose("bad_address", 1, addr, n)
        except OSError as exc:
            if not stale and (retry := self._stale_error(exc)):
                return self._send_lone(batch, retry)
            self._send_error(exc, 1, addr, n, stale)
        else:
            tx[0] += 1
            tx[1] += n
            tx[2] += 1
            tx[3] += 1
            return 1
        tx[2] += 1
        return 0

    async def send_batch(self, batch: PacketBatch, *, checkpoint: bool = True) -> int:
        """Send every datagram of ``batch`` (to its address, else to :attr:`peer`).

        Args:
            batch: the datagrams (a plain packet batch goes to :attr:`peer`).
            checkpoint: be a checkpoint, as every anyio call is (raise a pending cancellation
                and yield once, before sending). ``False`` does neither and yields only while
                the socket buffer is full — for a loop that has a checkpoint elsewhere each
                round (one event-loop turn less per packet's trip).

        Returns:
            How many were sent; the others are counted in ``statistics().drops``. Cancelled
            while waiting for room in the socket buffer, what had not gone yet is counted as
            ``cancelled`` drops (and told to :attr:`on_unsent`).

        Raises:
            anyio.ClosedResourceError: the transport was closed.
            OSError: the socket failed in a way no datagram loss explains.
        """
        if checkpoint:
            await anyio.lowlevel.checkpoint()
        if len(batch.offsets) == 1:
            sent = self._send_lone(batch)
            if sent >= 0:
                return sent
        before = self._tx[0]
        groups = self._groups(batch)
        if not groups:  # (not the offsets: a gathered batch's datagrams are parts lists)
            self._socket()  # (closed: raised as for any batch)
            return 0
        view = batch.view
        k = 0
        total = len(groups)
        while k < total:
            try:
                k = self._send_groups(view, groups, k)
            except BlockingIOError:
                try:
                    await anyio.wait_writable(self._socket())
                except anyio.get_cancelled_exc_class():
                    for addr, _, length, seg in groups[k:]:  # (a group sent part way: its rest)
                        self._lose("cancelled", _datagrams(length, seg), addr, length)
                    raise
        self._tx[2] += 1
        return self._tx[0] - before

    def send_batch_nowait(self, batch: PacketBatch, *, drop_when_full: bool = True) -> int:
        """Send what the socket takes now; count the rest as ``would_block`` drops.

        For callers that cannot wait (a pipeline stage sending a handshake answer).

        Args:
            batch: the datagrams.
            drop_when_full: ``False``: a socket buffer full before the first datagram went
                sends nothing and counts nothing (-1), so that the caller can wait for room
                (as :meth:`send_batch` does) and send it all; once something went, the rest
                is lost and counted as always.

        Returns:
            How many datagrams were sent (-1: none, see ``drop_when_full``).

        Raises:
            anyio.ClosedResourceError: the transport was closed.
        """
        if len(batch.offsets) == 1:
            sent = self._send_lone(batch)
            if sent >= 0:
                return sent
        before = self._tx[0]
        groups = self._groups(batch)
        if not groups:  # (as in send_batch)
            self._socket()
            return 0
        first = groups[0]  # (replaced by its rest when sent part way)
        view = batch.view
        k = 0
        while k < len(groups):
            try:
                k = self._send_groups(view, groups, k)
            except BlockingIOError:
                if not k and not drop_when_full and groups[0] is first:
                    return -1  # (nothing went: a group sent part way is not sent again)
                addr, _, length, seg = groups[k]
                self._lose("would_block", _datagrams(length, seg), addr, length)
                k += 1
        self._tx[2] += 1
        return self._tx[0] - before

    @property
    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped on a full receive queue, as last reported (needs the
        ``UDP_GRO`` path's ``recvmsg``; 0 otherwise)."""
        return self._kernel_drops

    def _drop(self, reason: str, count: int = 1) -> None:
        self._drops[reason] = self._drops.get(reason, 0) + count

    def statistics(self) -> TransportStatistics:
        """Counters so far."""
        rx, tx = self._rx, self._tx
        drops = self._drops
        if self._kernel_drops:
            drops = {**drops, "rx_overflow": self._kernel_drops}
        return TransportStatistics(
            rx[0], rx[1], rx[2], tx[0], tx[1], tx[2], rx[3], tx[3], self._gso, self._gro, drops
        )

    async def aclose(self) -> None:
        """Close the socket; a blocked receiver gets ``anyio.ClosedResourceError``.

        A transport dropped without it closes its socket once garbage-collected (or at
        interpreter exit), silently; until then the socket keeps its port bound."""
        sock, self._sock = self._sock, None
        if sock is not None:
            self._finalizer.detach()
            self._fd = -1
            try:
                anyio.notify_closing(sock)
            except Exception:
                pass
            self._reader.close(then=sock.close)
        await anyio.lowlevel.checkpoint()


def _format(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)
