"""A small blocking rtnetlink client: the socket side of :mod:`tunflow.netconfig.rtnetlink`.

:class:`RtNetlink` owns one ``AF_NETLINK``/``NETLINK_ROUTE`` socket and nothing else: it sends
what the sans-I/O codec builds and feeds the replies back to it. It must not grow message
layouts (those belong in the codec), must not spin an event loop, and must not map errors to
tunflow's device errors — OS errors leave as :class:`OSError` subclasses with their errno, and the
device layer names them. Async code calls it through ``anyio.to_thread.run_sync``: a call is a
few microseconds, but the kernel's rtnl lock can stall it under load.

A network namespace belongs to a *socket*, fixed when it is created: the one the creating thread
is in. So an :class:`RtNetlink` made inside a namespace keeps configuring that namespace when a
worker thread in another namespace calls it later.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from types import TracebackType

from tunflow.errors import ConfigError
from tunflow.netconfig import rtnetlink as rt
from tunflow.netconfig.rtnetlink import AddressInfo, LinkInfo, Route
from tunflow.platform._unix import DeferredClose

__all__ = ["LinkWatch", "RtNetlink"]

# Netlink replies are at most a page or two per message; a dump packs several into one datagram
# of at most 32 KiB (the kernel caps its dump buffer there). 64 KiB leaves room; a larger
# datagram is detected with MSG_TRUNC and the request repeated with a bigger buffer.
_BUFSIZE = 65536
_DUMP_RETRIES = 5


class RtNetlink:
    """A blocking, thread-safe rtnetlink client bound to the creating thread's network namespace.

    Each call is one request and its answer, except: :meth:`remove_address` first lists the
    addresses when given no prefix (or an IPv4 point-to-point address without its peer), and
    :meth:`set_link` with ``up=False`` and ``name`` sends the "down" first. A lock serialises
    callers. Interfaces are named by index.

    Raises (every method):
        OSError: the kernel refused, with its errno — e.g. :class:`FileExistsError` for a
            duplicate address or route, ``ENODEV`` for an index that does not exist,
            :class:`PermissionError` without ``CAP_NET_ADMIN``, ``EADDRNOTAVAIL`` for removing
            an address that is not there, ``ESRCH`` for removing a missing route; ``EBADF`` after
            :meth:`close`.
        ConfigError: an argument is invalid (nothing is sent).

    Example:
        >>> with RtNetlink() as nl:                                  # doctest: +SKIP
        ...     lo = nl.link_by_name("lo")
        ...     nl.set_link(lo.index, up=True)
        ...     nl.addresses(lo.index)
        [IPv4Interface('127.0.0.1/8'), IPv6Interface('::1/128')]
    """

    def __init__(self) -> None:
        """Open the socket in the calling thread's current network namespace.

        Raises:
            OSError: the socket cannot be created (e.g. ``EMFILE``).
        """
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        try:
            sock.bind((0, 0))
            # Connected to the kernel (port 0), the socket refuses unicasts from other processes.
            sock.connect((0, 0))
            # Extended acks put the kernel's reason into the error text; capped acks stop it
            # from echoing our whole request back; strict checking makes dumps honour the
            # interface filter (and report ENODEV for a missing one). Each is optional: an old
            # kernel says ENOPROTOOPT and the codec's own filtering still gives the right answer.
            self._strict = False
            for option in (rt.NETLINK_EXT_ACK, rt.NETLINK_CAP_ACK, rt.NETLINK_GET_STRICT_CHK):
                try:
                    sock.setsockopt(rt.SOL_NETLINK, option, 1)
                except OSError:
                    continue
                if option == rt.NETLINK_GET_STRICT_CHK:
                    self._strict = True
        except BaseException:
            sock.close()
            raise
        self._sock: socket.socket | None = sock
        self._lock = threading.Lock()
        self._seq = 0
        self._buf = bytearray(_BUFSIZE)

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else f"fd={self._sock.fileno()}"
        return f"<RtNetlink {state}>"

    def __enter__(self) -> RtNetlink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket; waits for a call in progress. Idempotent."""
        with self._lock:
            sock, self._sock = self._sock, None
            if sock is not None:
                sock.close()

    @property
    def closed(self) -> bool:
        """:meth:`close` was called."""
        return self._sock is None

    # -- exchange -------------------------------------------------------------------------------

    def _request(self, message: bytes, expect: rt.Expect) -> list[rt.NetlinkMessage]:
        # Callers build (and so validate) the whole request before coming here; only its
        # sequence number is filled in under the lock.
        with self._lock:
            sock = self._sock
            if sock is None:
                raise OSError(errno.EBADF, "rtnetlink socket is closed")
            for _attempt in range(_DUMP_RETRIES):
                self._seq = (self._seq + 1) & 0xFFFF_FFFF or 1
                seq = self._seq
                sock.send(rt.with_seq(message, seq))
                transaction = rt.Transaction(seq, expect, strerror=os.strerror)
                truncated = False
                while not transaction.done:
                    n = sock.recv_into(self._buf, 0, socket.MSG_TRUNC)
                    if n > len(self._buf):
                        # The datagram was cut short. Grow the buffer and ask again — only reads
                        # are repeatable; a change's ack is small and never gets here.
                        self._buf = bytearray(max(2 * len(self._buf), (n + 4095) & ~4095))
                        if expect is rt.Expect.ACK:
                            raise OSError(errno.EMSGSIZE, f"netlink ack of {n} bytes truncated")
                        truncated = True
                        break
                    transaction.receive_data(memoryview(self._buf)[:n])
                # Leftovers of an abandoned dump carry the old sequence number; the next
                # transaction skips them.
                if truncated:
                    continue
                if transaction.interrupted:
                    # The kernel saw the table change while dumping (NLM_F_DUMP_INTR): the
                    # listing may be inconsistent, so take it again.
                    continue
                return transaction.replies
            raise InterruptedError(
                errno.EINTR,
                f"netlink dump interrupted by concurrent changes {_DUMP_RETRIES} times",
            )

    # -- links ----------------------------------------------------------------------------------

    def link(self, index: int) -> LinkInfo:
        """The link with this index.

        Raises:
            OSError: ``ENODEV`` if there is none.
            ConfigError: ``index`` is not a valid index.
        """
        (reply,) = self._request(rt.encode_get_link(0, index=index), rt.Expect.REPLY)
        return rt.parse_link(reply)

    def link_stats(self, index: int) -> rt.LinkStats:
        """The traffic counters of the link with this index (``IFLA_STATS64``).

        Raises:
            OSError: ``ENODEV`` if there is none.
            ConfigError: ``index`` is not a valid index.
        """
        rt.check_index(index)
        (reply,) = self._request(rt.encode_get_link_stats(0, index), rt.Expect.REPLY)
        return rt.parse_link_stats(reply)

    def link_by_name(self, name: str) -> LinkInfo:
        """The link with this name.

        Raises:
            OSError: ``ENODEV`` if there is none.
            ConfigError: ``name`` is not a valid interface name.
        """
        (reply,) = self._request(rt.encode_get_link(0, name=name), rt.Expect.REPLY)
        return rt.parse_link(reply)

    def set_link(
        self,
        index: int,
        *,
        up: bool | None = None,
        mtu: int | None = None,
        mac: bytes | None = None,
        name: str | None = None,
        txqlen: int | None = None,
    ) -> None:
        """Change a link's state and attributes in one request.

        The kernel applies MAC, MTU, name, up/down, txqlen in that order and stops at the first
        error, keeping what it already changed. Kernels before 6.2 refuse to rename a running link
        (``EBUSY``), so ``up=False`` together with ``name`` is sent as two requests, down first.

        Args:
            index: the interface index.
            up: bring the link up (``True``) or down (``False``); ``None`` leaves it.
            mtu: new MTU.
            mac: new link-layer address (``EADDRNOTAVAIL`` for multicast or zero on Ethernet).
            name: new name (``EEXIST`` if taken; ``EBUSY`` if the link is up, before 6.2).
            txqlen: new transmit queue length.

        Raises:
            OSError: ``ENODEV``, ``EINVAL`` (MTU outside the device's range, wrong MAC length),
                ``EBUSY``, ``EEXIST``…
            ConfigError: an argument is out of range or of the wrong type.
        """
        change = rt.encode_set_link(0, index, up=up, mtu=mtu, mac=mac, name=name, txqlen=txqlen)
        if up is False and name is not None:
            change = rt.encode_set_link(0, index, mtu=mtu, mac=mac, name=name, txqlen=txqlen)
            self._request(rt.encode_set_link(0, index, up=False), rt.Expect.ACK)
        self._request(change, rt.Expect.ACK)

    # -- addresses ------------------------------------------------------------------------------

    def address_details(self, index: int) -> list[AddressInfo]:
        """Every address on the link with its peer, broadcast, flags, scope and label.

        Kernel order: IPv4 first, then IPv6 (newest first within IPv6, as ``ip addr`` shows).

        Raises:
            OSError: ``ENODEV`` if the index does not exist.
            ConfigError: invalid index.
        """
        # check first: to the dump encoder, index 0 means "every interface"
        replies = self._request(
            rt.encode_get_addresses(0, index=rt.check_index(index)), rt.Expect.DUMP
        )
        found = [
            info
            for info in map(rt.parse_address, replies)
            if info is not None and info.index == index
        ]
        if not found and not self._strict:
            self.link(index)  # an old kernel dumps silently for a missing index: raise ENODEV
        return found

    def addresses(self, index: int) -> list[IPv4Interface | IPv6Interface]:
        """Every address on the link (both families, link-local included), in kernel order.

        Raises:
            OSError: ``ENODEV`` if the index does not exist.
            ConfigError: invalid index.
        """
        return [info.interface for info in self.address_details(index)]

    def add_address(
        self,
        index: int,
        iface: IPv4Interface | IPv6Interface | str,
        *,
        peer: IPv4Address | IPv6Address | None = None,
    ) -> None:
        """Assign an address; IPv6 addresses skip duplicate address detection (usable at once).

        Args:
            index: the interface index.
            iface: address and prefix, e.g. ``IPv6Interface("2001:db8::1/64")``.
            peer: the remote end of a point-to-point link (same family).

        Raises:
            OSError: :class:`FileExistsError` if the address is already there; ``ENODEV``;
                for IPv6, ``EINVAL`` when the link's MTU is below 1280 (the kernel then drops
                the link's IPv6 state) and ``EACCES`` when IPv6 is disabled on it.
            ConfigError: invalid index, address or peer.
        """
        self._request(rt.encode_new_address(0, index, iface, peer=peer), rt.Expect.ACK)

    def remove_address(
        self,
        index: int,
        iface_or_addr: IPv4Interface | IPv6Interface | IPv4Address | IPv6Address | str,
        *,
        peer: IPv4Address | IPv6Address | None = None,
    ) -> None:
        """Remove an address; given without a prefix, the address's own prefix is looked up.

        Args:
            index: the interface index.
            iface_or_addr: ``IPv4Interface("192.0.2.1/24")`` removes exactly that address and
                prefix; ``IPv4Address("192.0.2.1")`` (or ``"192.0.2.1"``) removes the first
                address on the link with that local address, whatever its prefix or peer.
            peer: with an interface, remove only the address with this ``IFA_ADDRESS`` (the
                peer of a point-to-point address; the address itself for any other) — one
                request, nothing looked up.

        Raises:
            OSError: ``EADDRNOTAVAIL`` if the link has no such address; ``ENODEV``.
            ConfigError: invalid index or address.
        """
        rt.check_index(index)
        target = _coerce_target(iface_or_addr)
        if peer is not None:
            if not isinstance(target, IPv4Interface | IPv6Interface):
                raise ConfigError(f"remove {iface_or_addr} with peer {peer}: give its prefix")
            request = rt.encode_del_address(0, index, target, peer=peer)
            self._request(request, rt.Expect.ACK)
            return
        if isinstance(target, IPv4Interface | IPv6Interface):
            request = rt.encode_del_address(0, index, target)
            try:
                self._request(request, rt.Expect.ACK)
                return
            except OSError as exc:
                # IPv4 matches the peer (IFA_ADDRESS) within the prefix: a point-to-point
                # address is only found with its peer, so look it up and try once more.
                if exc.errno != errno.EADDRNOTAVAIL or target.version != 4:
                    raise
            match = [
                a
                for a in self.address_details(index)
                if a.interface == target and a.peer is not None
            ]
        else:
            match = [a for a in self.address_details(index) if a.interface.ip == target]
        if not match:
            raise OSError(
                errno.EADDRNOTAVAIL,
                f"{os.strerror(errno.EADDRNOTAVAIL)} ({iface_or_addr} is not on interface {index})",
            )
        found = match[0]
        self._request(
            rt.encode_del_address(0, index, found.interface, peer=found.peer), rt.Expect.ACK
        )

    # -- routes ---------------------------------------------------------------------------------

    def routes(self, index: int, *, table: int = rt.RT_TABLE_MAIN) -> list[Route]:
        """The unicast routes of ``table`` (main by default) that leave through this link
        (both families).

        Includes the kernel's own prefix routes (``protocol == RTPROT_KERNEL``).

        Raises:
            OSError: ``ENODEV`` if the index does not exist.
            ConfigError: invalid index or table.
        """
        rt.check_index(index)
        found = [r for r in self._table_dump(table, index) if r is not None]
        routes = rt.routes_via(found, index, table=table)
        if not routes and not self._strict:
            self.link(index)
        return routes

    def table_in_use(self, table: int) -> bool:
        """Whether ``table`` holds a route of either family, of any type (``ip route show
        table`` printing something — how wg-quick looks for a free table; a blackhole route
        counts).

        Raises:
            ConfigError: invalid table.
        """
        return any(
            e is not None and e.table == table and not e.flags & rt.RTM_F_CLONED
            for e in self._table_dump(table, 0, route_type=0)
        )

    def _table_dump(
        self, table: int, index: int, *, route_type: int = rt.RTN_UNICAST
    ) -> list[rt.RouteEntry | None]:
        rt.check_table(table)
        # A table above 255 is named in RTA_TABLE, which MPLS refuses in an AF_UNSPEC dump.
        families = (rt.AF_UNSPEC,) if table < 256 else (rt.AF_INET, rt.AF_INET6)
        entries: list[rt.RouteEntry | None] = []
        for family in families:
            request = rt.encode_get_routes(
                0, index=index, family=family, table=table, route_type=route_type
            )
            try:
                replies = self._request(request, rt.Expect.DUMP)
            except FileNotFoundError:
                # Strict checking: "FIB table does not exist" — no route was ever added to it.
                continue
            entries.extend(map(rt.parse_route, replies))
        return entries

    def route_type(self, address: IPv4Address | IPv6Address | str) -> int:
        """The type of the route the kernel would use for ``address`` (``ip route get``):
        ``RTN_LOCAL`` (2) for an address of this host that is ready to receive.

        Raises:
            OSError: ``ENETUNREACH`` and friends when there is no route.
            ConfigError: not an IP address.
        """
        return self.route_to(address).type

    def route_to(self, address: IPv4Address | IPv6Address | str) -> rt.RouteEntry:
        """The route the kernel would use for ``address`` (``ip route get``): its output link
        (``oif``), type, and MTU where the route has one.

        Raises:
            OSError: ``ENETUNREACH`` and friends when there is no route.
            ConfigError: not an IP address.
        """
        replies = self._request(rt.encode_route_lookup(0, address), rt.Expect.REPLY)
        for message in replies:
            entry = rt.parse_route(message)
            if entry is not None:
                return entry
        raise OSError(errno.ENETUNREACH, f"no route to {address}")

    def default_route(self) -> rt.RouteEntry | None:
        """The main table's first IPv4 default route (``ip route show default``), if any."""
        for entry in self._table_dump(rt.RT_TABLE_MAIN, 0):
            if (
                entry is not None
                and entry.family == rt.AF_INET
                and entry.destination.prefixlen == 0
                and not entry.flags & rt.RTM_F_CLONED
            ):
                return entry
        return None

    def add_route(
        self,
        index: int,
        network: IPv4Network | IPv6Network | str,
        *,
        gateway: IPv4Address | IPv6Address | str | None = None,
        metric: int | None = None,
        table: int = rt.RT_TABLE_MAIN,
    ) -> None:
        """Add a unicast route out of this link (protocol static).

        Args:
            index: the output interface.
            network: the destination, e.g. ``IPv4Network("198.51.100.0/24")``.
            gateway: the next hop (it must be reachable on the link); ``None`` for on-link.
            metric: the route priority; ``None`` for the kernel's default (IPv4 0, IPv6 1024).
            table: the routing table (main by default; another is made on its first route).

        Raises:
            OSError: :class:`FileExistsError` for a duplicate; an unreachable gateway gives
                ``ENETUNREACH`` (IPv4) or ``EHOSTUNREACH`` (IPv6); ``ENETDOWN`` for IPv4 while
                the link is down; ``ENODEV``.
            ConfigError: invalid index, network, gateway, metric or table.
        """
        request = rt.encode_new_route(
            0, index, network, gateway=gateway, metric=metric, table=table
        )
        self._request(request, rt.Expect.ACK)

    def remove_route(
        self,
        index: int,
        network: IPv4Network | IPv6Network | str,
        *,
        gateway: IPv4Address | IPv6Address | str | None = None,
        metric: int | None = None,
        table: int = rt.RT_TABLE_MAIN,
    ) -> None:
        """Remove a route out of this link from ``table`` (main by default);
        ``gateway``/``metric`` narrow the match when given.

        ``metric=0`` matches a route at metric 0 only — the kernel reads a removal's 0 as "any
        metric" — and, for IPv6, the route an :meth:`add_route` with metric 0 made (the kernel
        stores that 0 as 1024, ``IP6_RT_PRIO_USER``).

        Raises:
            OSError: ``ESRCH`` if no route matches or the table does not exist; ``ENODEV``.
            ConfigError: invalid index, network, gateway, metric or table.
        """
        request = rt.encode_del_route(
            0, index, network, gateway=gateway, metric=metric, table=table
        )
        if metric == 0:
            request = self._metric_0_removal(index, network, gateway, table) or request
        self._request(request, rt.Expect.ACK)

    def _metric_0_removal(
        self,
        index: int,
        network: IPv4Network | IPv6Network | str,
        gateway: IPv4Address | IPv6Address | str | None,
        table: int,
    ) -> bytes | None:
        """The removal of a route at metric 0: one at 1024 for IPv6, ``None`` (the request as
        it is) for IPv4 when such a route exists (the kernel tries routes in metric order, so
        one at 0 is the first it matches); ``ESRCH`` when none does."""
        net = ip_network(network) if isinstance(network, str) else network
        if net.version == 6:
            return rt.encode_del_route(
                0, index, net, gateway=gateway, metric=rt.IP6_RT_PRIO_USER, table=table
            )
        gw = ip_address(gateway) if isinstance(gateway, str) else gateway
        if any(
            r.destination == net and r.metric == 0 and gw in (None, r.gateway)
            for r in self.routes(index, table=table)
        ):
            return None
        raise OSError(errno.ESRCH, f"{os.strerror(errno.ESRCH)} (no route to {net} at metric 0)")

    # -- policy routing rules -------------------------------------------------------------------

    def add_rule(
        self,
        family: int,
        *,
        table: int,
        priority: int | None = None,
        fwmark: int | None = None,
        fwmask: int | None = None,
        invert: bool = False,
        suppress_prefixlength: int | None = None,
    ) -> None:
        """Add a policy routing rule (``ip rule add``); see
        :func:`~tunflow.netconfig.rtnetlink.encode_new_rule` for the arguments.

        ``add_rule(AF_INET, table=51820, fwmark=51820, invert=True)`` is
        ``ip -4 rule add not fwmark 51820 table 51820``.

        Raises:
            OSError: :class:`FileExistsError` for a rule equal in every field, priority
                included (without ``priority`` the kernel picks a new one, so an equal rule is
                added again); ``EAFNOSUPPORT`` without policy routing for the family.
            ConfigError: an invalid argument.
        """
        request = rt.encode_new_rule(
            0,
            family,
            table=table,
            priority=priority,
            fwmark=fwmark,
            fwmask=fwmask,
            invert=invert,
            suppress_prefixlength=suppress_prefixlength,
        )
        self._request(request, rt.Expect.ACK)

    def remove_rule(
        self,
        family: int,
        *,
        table: int | None = None,
        priority: int | None = None,
        fwmark: int | None = None,
        fwmask: int | None = None,
        invert: bool = False,
        suppress_prefixlength: int | None = None,
    ) -> None:
        """Remove the first rule that matches (``ip rule del``); arguments left out match
        anything.

        Raises:
            OSError: :class:`FileNotFoundError` (``ENOENT``) if no rule matches.
            ConfigError: an invalid argument.
        """
        request = rt.encode_del_rule(
            0,
            family,
            table=table,
            priority=priority,
            fwmark=fwmark,
            fwmask=fwmask,
            invert=invert,
            suppress_prefixlength=suppress_prefixlength,
        )
        self._request(request, rt.Expect.ACK)


class LinkWatch:
    """The kernel's link notifications (``RTNLGRP_LINK``) for one interface, non-blocking: a
    socket to wait on (:meth:`fileno`) and :meth:`changes` to read what came.

    Opened in the calling thread's network namespace, as :class:`RtNetlink`.

    Args:
        index: the interface to report on.

    Raises:
        OSError: the socket cannot be created.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        sock = socket.socket(
            socket.AF_NETLINK,
            socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
            socket.NETLINK_ROUTE,
        )
        try:
            sock.bind((0, rt.RTMGRP_LINK))
        except BaseException:
            sock.close()
            raise
        self._sock: socket.socket | None = sock
        self._holds = DeferredClose(self._close_sock)
        #: an ``RTM_DELLINK`` for the interface came: it was deleted
        self.removed = False

    def __repr__(self) -> str:
        state = "closed" if self._holds.closed else f"fd={self.fileno()}"
        return f"<LinkWatch {self.index} {state}>"

    def fileno(self) -> int:
        """The socket's descriptor, to wait on (``-1`` once closed)."""
        sock = self._sock
        return -1 if sock is None or self._holds.closed else sock.fileno()

    def acquire(self) -> int:
        """The socket's descriptor, held for one wait (``-1`` once closed); pair with
        :meth:`release`. :meth:`close` from another thread meanwhile leaves the socket open
        until the last holder lets go, so no wait polls — and no :meth:`changes` reads — a
        number the OS has given to another file."""
        sock = self._hold()
        return -1 if sock is None else sock.fileno()

    def _hold(self) -> socket.socket | None:
        return self._sock if self._holds.hold() else None

    def release(self) -> None:
        self._holds.release()

    def changes(self) -> list[LinkInfo | None]:
        """The interface's states notified since the last call, oldest first (empty: nothing
        came). ``None`` stands for notifications the kernel dropped because they were not read
        in time (``ENOBUFS``): ask for the state afresh. A deletion sets :attr:`removed`.

        Raises:
            OSError: the socket is closed or failed.
            NetlinkDecodeError: the kernel sent what the codec cannot read.
        """
        sock = self._hold()
        if sock is None:
            raise OSError(errno.EBADF, "the link watch is closed")
        try:
            seen: list[LinkInfo | None] = []
            while True:
                if self._holds.closed:  # closed from another thread meanwhile
                    raise OSError(errno.EBADF, "the link watch is closed")
                try:
                    data = sock.recv(_BUFSIZE)
                except BlockingIOError:
                    return seen
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    seen.append(None)
                    continue
                for message in rt.iter_messages(data):
                    if message.type == rt.RTM_NEWLINK:
                        link = rt.parse_link(message)
                        if link.index == self.index:
                            seen.append(link)
                    elif (
                        message.type == rt.RTM_DELLINK
                        and rt.parse_link(message).index == self.index
                    ):
                        self.removed = True
        finally:
            self.release()

    def close(self) -> None:
        """Close the socket: now, or when the last wait holding it (:meth:`acquire`) lets go.
        Idempotent."""
        self._holds.close()

    def _close_sock(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _coerce_target(
    value: object,
) -> IPv4Interface | IPv6Interface | IPv4Address | IPv6Address:
    if isinstance(value, IPv4Interface | IPv6Interface | IPv4Address | IPv6Address):
        return value
    if isinstance(value, str):
        try:
            return ip_interface(value) if "/" in value else ip_address(value)
        except ValueError as exc:
            raise ConfigError(f"address {value!r} is not an IP address: {exc}") from None
    raise ConfigError(f"address {value!r} is not an IP address or interface")
