"""Routes and policy rules for a WireGuard interface's AllowedIPs, as wg-quick(8) adds them.

What ``Table`` in a wg-quick file means, and so what :class:`Routes` does:

* ``off`` — nothing.
* ``auto`` (the default) — a route in the main table for every AllowedIPs prefix, except a
  default route (``0.0.0.0/0``, ``::/0``). That one would also carry the tunnel's own UDP
  datagrams into the tunnel, so it goes into a table of its own, *T* — the interface's fwmark if
  it has one, else the first table from 51820 up that holds no route, which then becomes the
  fwmark — and per IP version two rules send everything there except what carries the mark::

      ip rule add not fwmark T table T            # unmarked packets: table T (the tunnel)
      ip rule add table main suppress_prefixlength 0  # ... unless main has a more specific route
      ip route add 0.0.0.0/0 dev wg0 table T

  The UDP socket carries mark *T* (``SO_MARK``), so its datagrams skip the first rule and use
  the main table. For IPv4 ``net.ipv4.conf.all.src_valid_mark`` is set to 1, so that the mark
  counts in the reverse-path check of what comes back.

  With a default route come wg-quick's nftables rules, in a table ``wg-quick-<interface>``
  per IP version (made with ``nft -f -``, as wg-quick makes them)::

      chain preraw { type filter hook prerouting priority raw; }
          iifname != "wg0" ip daddr 10.0.0.1 fib saddr type != local drop
      chain premangle { type filter hook prerouting priority mangle; }
          meta l4proto udp meta mark set ct mark
      chain postmangle { type filter hook postrouting priority mangle; }
          meta l4proto udp mark 51820 ct mark set mark

  The first drops packets for the interface's own addresses that arrive on another interface
  (which the default route would otherwise answer through the tunnel); the other two give the
  replies of the tunnel's own UDP flow the mark its datagrams left with, so that a strict
  ``rp_filter`` checks them against the main table and lets them in. Without ``nft`` (the
  ``nftables`` package), or when ``nft`` refuses them (an interface name it cannot parse, such
  as ``wg+1``; a kernel without nf_tables), a warning says the rules are missing and the
  interface comes up without them.
* a table number (``main`` is 254) — every AllowedIPs route, default ones included, into that
  table; no rules (whoever chose the table routes to it).

On a reload (:meth:`~tunflow.wireguard.WireGuardInterface.sync` with ``routes=True``,
``tunflow reload``) :meth:`Routes.update` makes the routes follow the new AllowedIPs: a route
for each new prefix, as :meth:`Routes.add` made them, and the routes it made for prefixes no
longer there removed — never one it did not add (the interface's own prefix route, another's).
Default routes under ``Table = auto`` are followed too, as :meth:`Routes.add` sets them up: one
that appears gets the policy table (the interface's if another family has one already, else
chosen as ``add`` chooses it), its two rules, its nftables table, ``src_valid_mark`` and the
route — and when the interface had no fwmark, the table becomes it (:func:`update_routes` sets
it on the UDP socket and the protocol) *before* the rules exist, so that no datagram of the
live tunnel is routed into it unmarked. One that goes takes its route, its family's two rules and
its nftables table with it. The fwmark stays when the last one goes (wg-quick never clears it
either): it is harmless without the rules, and a default route coming back finds the same table.

Routes leave with the interface (the kernel deletes a device's routes with it); rules and
nftables tables do not, so :meth:`Routes.close` removes the ones added here, also when the
interface failed. A process killed before it could (SIGKILL, the OOM killer, a crash) leaves them
behind: for that, :class:`Routes` tells a ``journal`` callback what it holds each time that
changes (a :class:`RoutingRecord`, which goes to JSON and back), and :func:`remove_recorded`
removes a recorded set later, from another process (``tunflow up`` keeps such a record in
``/run/tunflow/<name>.undo``).

:class:`Routes` is Linux's: it talks rtnetlink through
:class:`~tunflow.platform.linux.netlink.RtNetlink` (no ``ip`` commands) inside the device's
network namespace, and blocks, so :func:`add_routes` runs it in a worker thread. It must not
touch any other namespace, nor rules it did not add. On other platforms :func:`add_routes` adds
main-table routes through the device and nothing else, with a :class:`DeviceRoutes`, which
remembers what it added for a reload as :class:`Routes` does. Which way is taken is the platform
layer's say (:func:`tunflow.platform.current_name`), so the device way runs in tests through the
fake system-call layer (``tests/unit/wireguard/test_device_routes.py``) — and only there: it has
never run on a real macOS, BSD or Windows.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import anyio
import attrs

from ..errors import ConfigError
from ..netconfig import rtnetlink as rt

if TYPE_CHECKING:
    from ..device import AsyncDevice
    from ..platform.linux.netlink import LinkWatch, RtNetlink
    from ..transport import UDPTransport
    from .protocol import WireGuard

__all__ = [
    "DeviceRoutes",
    "RouteChanges",
    "Routes",
    "RoutingRecord",
    "add_routes",
    "route_diff",
    "update_routes",
    "remove_recorded",
    "table_setting",
    "POLICY_TABLE",
]

log = logging.getLogger("tunflow.wireguard")

#: The first table wg-quick tries for default routes (and the fwmark it then sets).
POLICY_TABLE: Final = 51820
_SRC_VALID_MARK: Final = "/proc/sys/net/ipv4/conf/all/src_valid_mark"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: the metric the kernel gives an IPv6 route added without one (IP6_RT_PRIO_USER): removed with
#: it, so that the kernel's own prefix route for an address (metric 256) is never the one
#: matched
_IPV6_USER_METRIC: Final = 1024


@attrs.frozen
class _Rule:
    family: int
    table: int
    fwmark: int | None = None
    invert: bool = False
    suppress_prefixlength: int | None = None

    def __str__(self) -> str:
        parts = ["-4" if self.family == rt.AF_INET else "-6", "rule"]
        if self.invert:
            parts.append("not")
        if self.fwmark is not None:
            parts.append(f"fwmark {self.fwmark}")
        parts.append("table main" if self.table == rt.RT_TABLE_MAIN else f"table {self.table}")
        if self.suppress_prefixlength is not None:
            parts.append(f"suppress_prefixlength {self.suppress_prefixlength}")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: object) -> _Rule:
        """The rule :meth:`to_json` made.

        Raises:
            ValueError: ``data`` is not one.
        """
        if not isinstance(data, Mapping) or set(data) != {f.name for f in attrs.fields(cls)}:
            raise ValueError(f"not a rule: {data!r}")
        family, table = data["family"], data["table"]
        fwmark, invert = data["fwmark"], data["invert"]
        suppress = data["suppress_prefixlength"]
        if (
            family not in (rt.AF_INET, rt.AF_INET6)
            or not _is_int(table)
            or not (fwmark is None or _is_int(fwmark))
            or not isinstance(invert, bool)
            or not (suppress is None or _is_int(suppress))
        ):
            raise ValueError(f"not a rule: {data!r}")
        return cls(family, table, fwmark=fwmark, invert=invert, suppress_prefixlength=suppress)


def _is_int(value: object) -> bool:
    # JSON's true and false are ints to isinstance: not a table or a mark
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: how a recorded nftables table is named: ``ip wg-quick-wg0`` (what :class:`Routes` makes)
_NFT_TABLE = re.compile(r"(ip|ip6) wg-quick-[a-zA-Z0-9_=+.-]{1,15}")


@attrs.frozen
class RoutingRecord:
    """What a :class:`Routes` holds outside its device, which the kernel keeps when the process
    that added it is gone: policy rules and ``wg-quick-<interface>`` nftables tables.

    :meth:`to_json` and :meth:`from_json` carry it through a file; :func:`remove_recorded`
    removes what it lists.
    """

    rules: tuple[_Rule, ...] = ()
    #: ``nft`` table arguments: ``ip wg-quick-wg0``
    nft_tables: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rules or self.nft_tables)

    def describe(self) -> list[str]:
        """What it lists, for messages: ``ip -4 rule not fwmark 51820 table 51820``,
        ``nftables table ip wg-quick-wg0``."""
        return [f"ip {r}" for r in self.rules] + [f"nftables table {t}" for t in self.nft_tables]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what :meth:`from_json` takes)."""
        return {
            "rules": [r.to_json() for r in self.rules],
            "nft_tables": list(self.nft_tables),
        }

    @classmethod
    def from_json(cls, data: object) -> RoutingRecord:
        """The record :meth:`to_json` made.

        Raises:
            ValueError: ``data`` is not one (a damaged or foreign file): nothing in it is
                trusted to say what to remove.
        """
        if not isinstance(data, Mapping) or set(data) != {"rules", "nft_tables"}:
            raise ValueError("not a routing record (rules, nft_tables)")
        rules, tables = data["rules"], data["nft_tables"]
        if not isinstance(rules, list) or not isinstance(tables, list):
            raise ValueError("rules and nft_tables must be lists")
        for table in tables:
            # it goes into an nft script: only what Routes makes, nothing else
            if not isinstance(table, str) or not _NFT_TABLE.fullmatch(table):
                raise ValueError(f"not a wg-quick nftables table: {table!r}")
        return cls(tuple(_Rule.from_json(r) for r in rules), tuple(tables))


def _sorted(nets: Iterable[Network]) -> tuple[Network, ...]:
    return tuple(sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen)))


@attrs.frozen
class RouteChanges:
    """What a reload did to an interface's routes (:meth:`Routes.update`)."""

    #: prefixes routed into the interface now
    added: tuple[Network, ...] = ()
    #: prefixes whose route was removed (or was gone already)
    removed: tuple[Network, ...] = ()
    #: what the kernel refused, one message each (``add 10.1.0.0/24: ...``); the reload stands
    refused: tuple[str, ...] = ()
    #: default routes (``Table = auto``) that came in the file and could not be followed: no
    #: way to set the fwmark they need (a :meth:`Routes.update` without ``set_fwmark``)
    restart: tuple[Network, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.refused or self.restart)

    def describe(self) -> str:
        """One line for messages: ``routes added 10.1.0.0/24; removed 10.2.0.0/24`` ("" for
        no change)."""
        parts = []
        if self.added:
            parts.append("routes added " + ", ".join(map(str, self.added)))
        if self.removed:
            parts.append("routes removed " + ", ".join(map(str, self.removed)))
        if self.refused:
            parts.append("routes refused: " + "; ".join(self.refused))
        if self.restart:
            nets = ", ".join(map(str, self.restart))
            parts.append(f"default route change ({nets}) needs a restart (tunflow down, up)")
        return "; ".join(parts)


def _refused(
    refused: list[str], name: str, verb: str, what: str, net: Network, exc: OSError
) -> None:
    """A route change the kernel refused: logged (``cannot {verb} {what} {net}``) and recorded
    in ``refused`` as ``{verb} {net}: {why}`` for :class:`RouteChanges`."""
    log.warning("%s: cannot %s %s %s: %s", name, verb, what, net, exc)
    refused.append(f"{verb} {net}: {exc.strerror or exc}")


def route_diff(
    routed: Iterable[Network],
    defaults: Iterable[Network],
    networks: Iterable[Network],
    table: str | int,
) -> tuple[tuple[Network, ...], tuple[Network, ...], tuple[Network, ...]]:
    """What a reload does to the routes: ``(to add, to remove, default routes that came or
    went)``.

    Args:
        routed: the prefixes whose route :class:`Routes` added (not the default routes of
            ``Table = auto``).
        defaults: the default routes in the policy table (``Table = auto``).
        networks: every peer's AllowedIPs after the reload.
        table: the interface's ``Table`` (``"auto"``, ``"off"`` or a number).

    ``to add`` is every wanted prefix not routed yet — one already in the table without being
    :class:`Routes`'s (the interface's own prefix, another route) is tried again and found there,
    which is not an addition. ``to remove`` is only what was routed. Under ``auto`` a default
    route that appears or goes is in the third part (in neither of the others): it comes or goes
    with its policy table's rules (:meth:`Routes.update`).
    """
    if table == "off":
        return (), (), ()
    wanted = set(networks)
    have = set(routed)
    if table == "auto":
        wanted_defaults = {n for n in wanted if not n.prefixlen}
        wanted -= wanted_defaults
        restart = wanted_defaults ^ set(defaults)
    else:
        restart = set()
    return _sorted(wanted - have), _sorted(have - wanted), _sorted(restart)


class Routes:
    """The routes and rules one interface added; :meth:`close` takes the rules away again.

    Args:
        index: the interface index.
        netns: the interface's network namespace (a name or path; ``None``: the caller's).
        name: the interface name, for messages.
        journal: called with :attr:`record` each time it changes — after each rule or table
            is added, and once :meth:`close` removed them (an empty record) — in the thread
            that changed it; so that a record of what to remove outlives a killed process. It
            must not raise.

    Raises:
        OSError: the rtnetlink socket cannot be opened or the namespace entered.
    """

    def __init__(
        self,
        index: int,
        *,
        netns: str | None = None,
        name: str = "",
        journal: Callable[[RoutingRecord], None] | None = None,
    ) -> None:
        from ..platform.linux.netlink import RtNetlink

        self.index = index
        self._journal = journal
        self.name = name or f"interface {index}"
        self._netns = netns
        with _entered(netns):
            # the socket keeps this namespace whichever thread calls it later
            self._nl: RtNetlink | None = RtNetlink()
        #: the table default routes went into with policy rules (0: none)
        self.policy_table = 0
        self._rules: list[_Rule] = []
        #: nftables families (``ip``, ``ip6``) with a ``wg-quick-<interface>`` table made here
        self._nft: list[str] = []
        self._nft_table = ""
        self._nft_missing = False
        #: the prefixes whose route was added here (into :attr:`table`), for :meth:`update`
        self._routed: set[Network] = set()
        #: the default routes in :attr:`policy_table`
        self._defaults: set[Network] = set()
        #: the ``Table`` of :meth:`add` (``"off"`` until then)
        self.table: str | int = "off"

    def __repr__(self) -> str:
        return f"<Routes {self.name}: {len(self._rules)} rules>"

    @property
    def nft_tables(self) -> list[str]:
        """The nftables tables added, as ``nft list table`` arguments (``ip wg-quick-wg0``)."""
        return [f"{family} {self._nft_table}" for family in self._nft]

    @property
    def rules(self) -> list[str]:
        """The rules added, as ``ip rule add`` arguments (for messages and tests)."""
        return [str(r) for r in self._rules]

    @property
    def record(self) -> RoutingRecord:
        """The rules and nftables tables added, for :func:`remove_recorded`."""
        return RoutingRecord(tuple(self._rules), tuple(self.nft_tables))

    def add(self, networks: Iterable[Network], table: str | int, fwmark: int) -> int:
        """Add the routes (and rules) for ``networks`` as ``Table = table`` says.

        Args:
            networks: every peer's AllowedIPs.
            table: ``"auto"``, ``"off"`` or a table number.
            fwmark: the interface's fwmark (0: none).

        Returns:
            The fwmark the interface must now use (its UDP socket and what ``wg show``
            reports): the policy table when default routes needed one and ``fwmark`` was 0;
            else ``fwmark`` unchanged.

        Raises:
            ConfigError: ``table`` is not one of those.
            OSError: the kernel refused a route or rule (:class:`FileExistsError` for a
                default route already in the table it was to go into).
        """
        self._require()
        self.table = table = _checked(table)
        if table == "off":
            return fwmark
        # longest prefixes first, as wg-quick sorts them: default routes come last
        nets = sorted(
            set(networks), key=lambda n: (-n.prefixlen, n.version, int(n.network_address))
        )
        covering = self._covering(table)
        for net in nets:
            if isinstance(table, int) or net.prefixlen:
                self._prefix_route(net, covering)
            else:
                self._default_route(net, fwmark)
        if self.policy_table and not fwmark:
            log.info(
                "%s: default routes in table %d, which is the fwmark now",
                self.name,
                self.policy_table,
            )
            return self.policy_table
        return fwmark

    def update(
        self,
        networks: Iterable[Network],
        table: str | int,
        fwmark: int = 0,
        set_fwmark: Callable[[int], None] | None = None,
    ) -> RouteChanges:
        """Make the routes follow ``networks`` after a reload (:func:`route_diff`): a route for
        each new prefix, as :meth:`add` makes them, and the routes added here for prefixes no
        longer in ``networks`` removed (one already gone is fine).

        Under ``Table = auto`` a default route that appears is set up as :meth:`add` sets it up:
        into :attr:`policy_table` (chosen as ``add`` chooses it when there is none: ``fwmark``,
        else the first free table from 51820), with its family's two rules, nftables table and
        ``src_valid_mark``. When a table had to be chosen and ``fwmark`` is 0, ``set_fwmark`` is
        called with it first — before any rule exists, so that the tunnel's own datagrams carry
        the mark before rules could send unmarked ones into the tunnel. A default route that
        goes takes its route, its family's rules and nftables table with it; with none left,
        :attr:`policy_table` is 0 again (the fwmark is the caller's: left as it is).

        What the kernel refuses is logged and reported, not raised: the reload it follows is
        applied already. A default route refused half-way is taken away again (its rules first).

        Args:
            networks: every peer's AllowedIPs now.
            table: the interface's ``Table``, as :meth:`add` had it (``add`` need not have run:
                an interface without AllowedIPs when it came up).
            fwmark: the interface's fwmark now (0: none).
            set_fwmark: makes a table the interface's fwmark (its UDP socket's and what
                ``wg show`` reports); may raise :class:`OSError`. ``None``: a default route that
                would need it is left out, in :attr:`RouteChanges.restart`.

        Raises:
            ConfigError: a bad ``table``.
            OSError: the routes were closed.
        """
        self._require()
        self.table = table = _checked(table)
        add, remove, moved = route_diff(self._routed, self._defaults, networks, table)
        added: list[Network] = []
        removed: list[Network] = []
        refused: list[str] = []
        restart: tuple[Network, ...] = ()
        for net in remove:
            try:
                self._remove_route(net)
            except OSError as exc:
                _refused(refused, self.name, "remove", "the route to", net, exc)
            else:
                removed.append(net)
        covering = self._covering(table) if add else ()
        for net in add:
            try:
                if self._prefix_route(net, covering):
                    added.append(net)
            except OSError as exc:
                _refused(refused, self.name, "add", "a route to", net, exc)
        gone = [n for n in moved if n in self._defaults]
        new = [n for n in moved if n not in self._defaults]
        for net in gone:
            try:
                self._drop_default(net)
            except OSError as exc:
                _refused(refused, self.name, "remove", "the default route", net, exc)
            else:
                removed.append(net)
        self._policy_table_left()
        if new:
            mark = fwmark
            if not self.policy_table and not fwmark and set_fwmark is None:
                restart = tuple(new)
                log.warning(
                    "%s: default route %s came in the file; not applied (no way to set the "
                    "fwmark it needs): restart the interface (tunflow down, up) for that",
                    self.name,
                    ", ".join(map(str, restart)),
                )
                new = []
            elif not self.policy_table:
                try:
                    chosen = fwmark or self._free_table()
                    if not fwmark:
                        assert set_fwmark is not None
                        # before the rules: from their first moment the tunnel's datagrams
                        # must carry the mark that keeps them out of the tunnel
                        set_fwmark(chosen)
                        mark = chosen
                        log.info(
                            "%s: default routes in table %d, which is the fwmark now",
                            self.name,
                            chosen,
                        )
                except OSError as exc:
                    nets = ", ".join(map(str, new))
                    log.warning(
                        "%s: cannot set the fwmark for the default route %s: %s",
                        self.name,
                        nets,
                        exc,
                    )
                    refused.append(f"add {nets}: fwmark: {exc.strerror or exc}")
                    new = []
                else:
                    self.policy_table = chosen
        for net in new:
            try:
                self._default_route(net, mark)
            except OSError as exc:
                _refused(refused, self.name, "add", "the default route", net, exc)
                try:
                    self._drop_default(net)
                except OSError as again:
                    log.warning("%s: what %s left stays: %s", self.name, net, again)
            else:
                added.append(net)
        self._policy_table_left()
        return RouteChanges(_sorted(added), _sorted(removed), tuple(refused), restart)

    def restore(self) -> int:
        """Put back the routes added here that are gone: what the kernel removes when the
        link goes down and does not put back when it is up again. The rules and nftables
        tables do not name the link and stay. A route the kernel refuses now is logged.

        Returns:
            How many routes were put back.
        """
        nl = self._require()
        wanted = [(net, self._route_table()) for net in self._routed]
        wanted += [(net, self.policy_table) for net in self._defaults]
        back = 0
        for net, table in sorted(wanted, key=lambda w: (-w[0].prefixlen, w[0].version)):
            try:
                nl.add_route(self.index, net, table=table)
            except FileExistsError:
                continue  # still there (or the link never went down)
            except OSError as exc:
                log.warning("%s: cannot put back the route to %s: %s", self.name, net, exc)
                continue
            back += 1
        return back

    def close(self) -> None:
        """Remove the rules added (newest first) and close the socket. Idempotent; a rule that
        cannot be removed is logged, not raised (this runs while the interface goes down), and
        stays in :attr:`record` (what the journal is told last), for a later
        :func:`remove_recorded`."""
        nl, self._nl = self._nl, None
        if nl is None:
            return
        held = bool(self.record)
        kept: list[str] = []
        while self._nft:
            family = self._nft.pop()
            try:
                self._run_nft(f"delete table {family} {self._nft_table}\n")
            except FileNotFoundError:
                pass  # removed by hand: nothing to do
            except OSError as exc:
                log.warning("%s: cannot remove nftables table %s: %s", self.name, family, exc)
                kept.insert(0, family)
        with nl:
            _removed, unremoved = _remove_rules(nl, self._rules, self.name)
        self._nft, self._rules = kept, unremoved
        if held:
            self._changed()

    async def aclose(self) -> None:
        """:meth:`close` in a worker thread, shielded from cancellation."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.close)

    # -- helpers -----------------------------------------------------------------------------

    def _changed(self) -> None:
        if self._journal is not None:
            self._journal(self.record)

    def _require(self) -> RtNetlink:
        if self._nl is None:
            raise OSError(errno.EBADF, "the routes were closed")
        return self._nl

    def _default_route(self, net: Network, fwmark: int) -> None:
        # wg-quick's add_default: rules first, then the route; the mark is set by the caller
        # before any datagram is sent
        if not self.policy_table:
            self.policy_table = fwmark or self._free_table()
        table = self.policy_table
        family = rt.AF_INET if net.version == 4 else rt.AF_INET6
        self._rule(_Rule(family, table, fwmark=table, invert=True))
        self._rule(_Rule(family, rt.RT_TABLE_MAIN, suppress_prefixlength=0))
        self._route(net, table)
        self._defaults.add(net)
        if family == rt.AF_INET:
            self._src_valid_mark()
        self._firewall(net.version, table)

    def _drop_default(self, net: Network) -> None:
        """Take away what :meth:`_default_route` made for ``net``: its family's rules first (so
        that nothing is sent into the table any more), the route, its nftables table. What is
        gone already is fine; what the kernel will not let go stays listed (for :meth:`close`
        and the journal), and the first such error is raised once the rest was tried."""
        nl = self._require()
        family = rt.AF_INET if net.version == 4 else rt.AF_INET6
        failed: list[OSError] = []
        ours = [r for r in self._rules if r.family == family]
        _removed, left = _remove_rules(nl, ours, self.name)
        if left:
            failed.append(OSError(errno.EBUSY, f"the rules stay: {', '.join(map(str, left))}"))
        if ours:
            self._rules = [r for r in self._rules if r.family != family or r in left]
            self._changed()
        try:
            nl.remove_route(
                self.index,
                net,
                table=self.policy_table,
                metric=_IPV6_USER_METRIC if net.version == 6 else None,
            )
        except OSError as exc:
            if exc.errno not in (errno.ESRCH, errno.ENOENT):
                failed.append(exc)
        self._defaults.discard(net)
        nft = "ip" if net.version == 4 else "ip6"
        if nft in self._nft:
            try:
                self._run_nft(f"delete table {nft} {self._nft_table}\n")
            except FileNotFoundError:
                pass  # removed by hand: gone all the same
            except OSError as exc:
                failed.append(exc)  # still there: still listed
                nft = ""
            if nft:
                self._nft.remove(nft)
                self._changed()
        if failed:
            raise failed[0]

    def _policy_table_left(self) -> None:
        # no default route and no rule to the table left: the next one chooses again
        table = self.policy_table
        if table and not self._defaults and not any(r.table == table for r in self._rules):
            self.policy_table = 0

    def _firewall(self, version: int, table: int) -> None:
        # wg-quick's add_default, nft branch: anti-spoofing for the interface's addresses and
        # the mark kept on the tunnel's UDP flow (CONNMARK) for a strict rp_filter
        family = "ip" if version == 4 else "ip6"
        if family in self._nft:
            return
        if self._nft_missing:
            return
        if shutil.which("nft") is None:
            self._nft_missing = True
            log.warning(
                "%s: nft not found (package nftables): wg-quick's rules for default routes are "
                "not made; with a strict rp_filter (1) the tunnel's replies are dropped",
                self.name,
            )
            return
        nl = self._require()
        ifname = nl.link(self.index).name
        self._nft_table = f"wg-quick-{ifname}"
        t = f"{family} {self._nft_table}"
        # add + delete + add: one transaction that also clears a table a crash left behind
        lines = [
            f"add table {t}",
            f"delete table {t}",
            f"add table {t}",
            f"add chain {t} preraw {{ type filter hook prerouting priority -300; }}",
            f"add chain {t} premangle {{ type filter hook prerouting priority -150; }}",
            f"add chain {t} postmangle {{ type filter hook postrouting priority -150; }}",
        ]
        for address in nl.addresses(self.index):
            # a TUN device gets an IPv6 link-local address, which a WireGuard device (what
            # wg-quick lists) has not; it is only ever reached on its own link anyway
            if address.version == version and not address.ip.is_link_local:
                lines.append(
                    f'add rule {t} preraw iifname != "{ifname}" {family} daddr {address.ip} '
                    "fib saddr type != local drop"
                )
        lines.append(f"add rule {t} postmangle meta l4proto udp mark {table} ct mark set mark")
        lines.append(f"add rule {t} premangle meta l4proto udp meta mark set ct mark")
        try:
            self._run_nft("\n".join(lines) + "\n")
        except OSError as exc:
            # the routes work without them (a name nft cannot parse, a kernel without
            # nf_tables): said plainly, as a missing nft is
            log.warning(
                "%s: wg-quick's rules for default routes are not made (%s); with a strict "
                "rp_filter (1) the tunnel's replies are dropped",
                self.name,
                exc,
            )
            return
        self._nft.append(family)
        log.debug("%s: nftables table %s", self.name, t)
        self._changed()

    def _run_nft(self, script: str) -> None:
        _run_nft(script, self._netns, self.name)

    def _free_table(self) -> int:
        # wg-quick: the first table from 51820 up with no IPv4 or IPv6 route in it
        nl = self._require()
        table = POLICY_TABLE
        while nl.table_in_use(table):
            table += 1
        return table

    def _route_table(self) -> int:
        # where the prefixes go: the main table for auto, else the table chosen
        return self.table if isinstance(self.table, int) else rt.RT_TABLE_MAIN

    def _covering(self, table: str | int) -> tuple[Network, ...]:
        """Under ``Table = auto``: the main table's routes through the interface that were not
        added here (its addresses' prefix routes, what someone else routed into it), which
        wg-quick's ``ip route show dev IFACE match PREFIX`` finds. A lookup that fails finds
        none (every prefix is then added, as wg-quick adds it when ``ip`` fails)."""
        if table != "auto":
            return ()
        try:
            routes = self._require().routes(self.index)
        except (OSError, ConfigError) as exc:
            log.debug("%s: cannot list the routes through it: %s", self.name, exc)
            return ()
        return tuple(r.destination for r in routes if r.destination not in self._routed)

    def _prefix_route(self, net: Network, covering: Iterable[Network] = ()) -> bool:
        """Route ``net`` into the interface in its table; whether the route was added here
        (``False``: one was there already, which is not this one's to remove — also when a
        prefix of ``covering`` (:meth:`_covering`) holds ``net``: wg-quick adds no route for a
        prefix the interface has a route for, such as a peer's address inside the
        interface's own ``Address`` prefix)."""
        for route in covering:
            if (
                net.prefixlen >= route.prefixlen
                and net.supernet(new_prefix=route.prefixlen) == route
            ):
                log.debug("%s: %s is inside the route to %s already", self.name, net, route)
                return False
        if not self._route(net, self._route_table()):
            return False
        self._routed.add(net)
        return True

    def _remove_route(self, net: Network) -> None:
        # only the route out of this interface, with the metric it was added with (IPv6: so
        # the kernel's own prefix route of an address, metric 256, is not the one matched)
        try:
            self._require().remove_route(
                self.index,
                net,
                table=self._route_table(),
                metric=_IPV6_USER_METRIC if net.version == 6 else None,
            )
        except OSError as exc:
            if exc.errno not in (errno.ESRCH, errno.ENOENT):
                raise
            log.debug("%s: the route to %s was gone already", self.name, net)
        self._routed.discard(net)

    def _route(self, net: Network, table: int) -> bool:
        try:
            self._require().add_route(self.index, net, table=table)
        except FileExistsError as exc:
            where = "the main table" if table == rt.RT_TABLE_MAIN else f"table {table}"
            if net.prefixlen:
                if self._routes_here(net, table):
                    # the interface's own prefix route, or a second peer with the same prefix
                    log.debug("%s: %s is already in %s", self.name, net, where)
                else:
                    # another link's route, with the metric ours would have: the kernel keeps
                    # it, and the prefix does not go into the tunnel (wg-quick's `up` fails
                    # here; this one comes up, and says so)
                    log.warning(
                        "%s: %s is routed through another interface in %s already: not "
                        "into %s (its traffic does not go through the tunnel)",
                        self.name,
                        net,
                        where,
                        self.name,
                    )
                return False
            raise FileExistsError(
                exc.errno,
                f"{self.name}: a default route ({net}) is already in {where}; "
                "another interface uses it (choose another FwMark or Table)",
            ) from None
        return True

    def _routes_here(self, net: Network, table: int) -> bool:
        """Whether ``table`` routes ``net`` through this interface (a lookup failing counts as
        yes: this is for a warning only)."""
        try:
            routes = self._require().routes(self.index, table=table)
        except (OSError, ConfigError):
            return True
        return any(r.destination == net for r in routes)

    def _rule(self, rule: _Rule) -> None:
        self._require().add_rule(
            rule.family,
            table=rule.table,
            fwmark=rule.fwmark,
            invert=rule.invert,
            suppress_prefixlength=rule.suppress_prefixlength,
        )
        self._rules.append(rule)
        log.debug("%s: ip %s", self.name, rule)
        self._changed()

    def _src_valid_mark(self) -> None:
        # /proc/sys/net belongs to the network namespace of the thread that opens the file
        with _entered(self._netns):
            fd = os.open(_SRC_VALID_MARK, os.O_RDWR | os.O_CLOEXEC)
        try:
            if os.read(fd, 16).strip() != b"1":
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, b"1\n")
        finally:
            os.close(fd)


def _checked(table: str | int) -> str | int:
    if isinstance(table, str):
        if table not in ("auto", "off"):
            raise ConfigError(f"Table = {table!r} is not auto, off or a table number")
    else:
        rt.check_table(table)
    return table


def _run_nft(script: str, netns: str | None, name: str) -> None:
    """``nft -f -`` with ``script``, in ``netns``.

    Raises:
        OSError: ``nft`` failed or refused it (:class:`FileNotFoundError` when what it was to
            delete is not there).
    """
    # a child forked from this thread starts in the namespace the thread is in
    with _entered(netns):
        try:
            done = subprocess.run(
                ["nft", "-f", "-"],
                input=script.encode(),
                capture_output=True,
                timeout=30,
                check=False,
                # its messages untranslated: ENOENT is recognised by its words below
                env={**os.environ, "LC_ALL": "C"},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OSError(errno.EIO, f"{name}: nft failed: {exc}") from None
    if done.returncode:
        message = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        # nft says ENOENT only in words ("Could not process rule: No such file or directory")
        missing = os.strerror(errno.ENOENT) in message
        raise OSError(
            errno.ENOENT if missing else errno.EIO, f"{name}: nft refused the rules: {message}"
        )


def _remove_rules(
    nl: RtNetlink, rules: Sequence[_Rule], name: str
) -> tuple[list[_Rule], list[_Rule]]:
    """Remove ``rules``, newest (last) first, as ``ip rule del`` does (by their fields).
    Returns what was removed and what is left (each in the order given): a rule already gone
    is in neither; one that could not be removed is logged and left."""
    removed: list[_Rule] = []
    left: list[_Rule] = []
    for rule in reversed(rules):
        try:
            nl.remove_rule(
                rule.family,
                table=rule.table,
                fwmark=rule.fwmark,
                invert=rule.invert,
                suppress_prefixlength=rule.suppress_prefixlength,
            )
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s: cannot remove `ip %s`: %s", name, rule, exc)
            left.insert(0, rule)
        else:
            removed.insert(0, rule)
    return removed, left


def remove_recorded(
    record: RoutingRecord, *, netns: str | None = None, name: str = ""
) -> tuple[RoutingRecord, RoutingRecord]:
    """Remove what ``record`` lists (from a :class:`Routes` in a process that is gone), in the
    order :meth:`Routes.close` removes it: nftables tables, then rules, newest first.

    What is not there any more is not an error (the namespace was emptied, someone removed it
    by hand). What cannot be removed is logged and returned. A rule is removed by its fields,
    as ``ip rule del`` does: where an equal rule was added again by someone else (every
    default route's ``table main suppress_prefixlength 0`` is alike), one of them goes.

    Args:
        record: what to remove.
        netns: the network namespace it is in (``None``: the caller's).
        name: the interface, for messages.

    Returns:
        What was removed, and what is left (what could not be).

    Raises:
        OSError: the rtnetlink socket cannot be opened or the namespace entered.
    """
    from ..platform.linux.netlink import RtNetlink

    name = name or "routes"
    tables_removed: list[str] = []
    tables_left: list[str] = []
    for table in reversed(record.nft_tables):
        try:
            _run_nft(f"delete table {table}\n", netns, name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s: cannot remove nftables table %s: %s", name, table, exc)
            tables_left.insert(0, table)
        else:
            tables_removed.insert(0, table)
    with _entered(netns):
        nl = RtNetlink()
    with nl:
        rules_removed, rules_left = _remove_rules(nl, record.rules, name)
    return (
        RoutingRecord(tuple(rules_removed), tuple(tables_removed)),
        RoutingRecord(tuple(rules_left), tuple(tables_left)),
    )


#: what WireGuard adds to a packet over IPv6 (IPv6 40 + UDP 8 + WireGuard 32): wg-quick's 80
_OVERHEAD_V6: Final = 80


class AutomaticMTU(NamedTuple):
    """The MTU wg-quick gives an interface whose file has no ``MTU``, and where it came from."""

    #: 80 below :attr:`path`'s MTU
    mtu: int
    #: the path it came from: ``"the route to 192.0.2.7 (dev eth0, MTU 1300)"``, ``"the
    #: default route (…)"``, or ``"no route to a peer nor default route (1500)"``
    path: str


def wg_quick_mtu(endpoints: Iterable[str]) -> int | None:
    """The MTU wg-quick gives an interface whose file has no ``MTU``: 80 below the largest MTU
    of the routes to the peers' ``endpoints`` (IP addresses) — a route's own ``mtu``, else its
    output link's — else of the IPv4 default route, else 1500 (wg-quick's ``set_mtu_up``).
    ``None`` off Linux (routes are not looked up there: the caller keeps its default).

    Raises:
        OSError: the rtnetlink socket cannot be opened.
    """
    auto = automatic_mtu(endpoints)
    return None if auto is None else auto.mtu


def automatic_mtu(endpoints: Iterable[str]) -> AutomaticMTU | None:
    """:func:`wg_quick_mtu`, with the path it came from (for a message).

    Raises:
        OSError: the rtnetlink socket cannot be opened.
    """
    if not on_linux():
        return None
    from ..platform.linux.netlink import RtNetlink

    with RtNetlink() as nl:

        def mtu_of(route: rt.RouteEntry) -> tuple[int, str]:
            """The route's MTU (its own, else its link's; 0: neither known), and ``"dev NAME, "``."""
            try:
                link = nl.link(route.oif) if route.oif else None
            except OSError:
                link = None
            dev = f"dev {link.name}, " if link is not None else ""
            return route.mtu or (link.mtu if link is not None else 0), dev

        best, path = 0, ""
        for host in endpoints:
            if "%" in host:
                continue  # a link-local peer: wg-quick's pattern skips a scope too
            try:
                route = nl.route_to(host)
            except (OSError, ConfigError):
                continue  # unreachable now (wg-quick skips what `ip route get` refuses)
            mtu, dev = mtu_of(route)
            if mtu > best:
                best, path = mtu, f"the route to {host} ({dev}MTU {mtu})"
        if not best:
            default = nl.default_route()
            if default is not None:
                best, dev = mtu_of(default)
                path = f"the default route ({dev}MTU {best})"
    if not best:
        best, path = 1500, "no route to a peer nor default route (1500)"
    return AutomaticMTU(best - _OVERHEAD_V6, path)


def table_setting(table: object) -> str | int:
    """``table`` checked as ``open_interface(table=...)`` takes it: ``"auto"``, ``"off"``,
    ``"main"`` (returned as 254) or a table number, 1 to 2**32 - 1 but not 255 (local).

    Raises:
        ConfigError: anything else.
    """
    if table in ("auto", "off"):
        return str(table)
    if table == "main":
        return rt.RT_TABLE_MAIN
    if isinstance(table, str):
        hint = " (a number is given as an int: table=1234)" if table.strip().isdigit() else ""
        raise ConfigError(
            f"table {table!r} is not 'auto', 'off', 'main' or an int table number{hint}"
        )
    number = rt.check_table(table)
    if number == rt.RT_TABLE_LOCAL:
        # as the wg-quick file parser says: the kernel's own table of local addresses
        raise ConfigError("table 255 is the local table; routes to peers do not belong there")
    return number


def on_linux() -> bool:
    """Whether routes go through rtnetlink (:class:`Routes`) rather than the device.

    The platform layer's name, not :data:`sys.platform`, so that
    :func:`~tunflow.platform.fake.pretend_platform` reaches the device path. Android's kernel
    is Linux and rtnetlink its interface: it stays on that path, as it was while Python
    reported ``linux`` there (before 3.13, which says ``android``).
    """
    from ..platform import current_name

    return current_name() in ("linux", "android")


def link_watch(index: int, netns: str | None) -> LinkWatch:
    """A :class:`~tunflow.platform.linux.netlink.LinkWatch` on interface ``index`` in
    ``netns`` (``None``: the caller's namespace). Linux only.

    Raises:
        OSError: the socket cannot be opened or the namespace entered.
    """
    from ..platform.linux.netlink import LinkWatch

    with _entered(netns):
        return LinkWatch(index)


async def add_routes(
    device: AsyncDevice,
    wg: WireGuard,
    transport: UDPTransport,
    *,
    table: str | int,
    netns: str | None,
    name: str,
    journal: Callable[[RoutingRecord], None] | None = None,
) -> Routes | DeviceRoutes | None:
    """Routes for every peer's AllowedIPs as ``Table = table`` says, for a starting interface.

    On Linux the work is done by a :class:`Routes` in a worker thread; when default routes got
    a table of their own and the interface had no fwmark, the table becomes the fwmark of
    ``transport`` and ``wg`` (which ``wg show`` reports) — before anything is sent. Should
    anything fail, the rules added so far are removed before the error leaves. ``journal`` is
    :class:`Routes`'s. Elsewhere a :class:`DeviceRoutes` adds main-table routes only, through
    the device (no tables, no policy routing).

    Returns:
        What to :meth:`~Routes.aclose` when the interface goes down, and to hand to
        :func:`update_routes` (``None``: nothing).

    Raises:
        ConfigError: a bad ``table``, or a table other than ``auto``/``off`` off Linux.
        OSError: the kernel refused a route or rule, or the mark.
        DeviceError: (not Linux) the device refused a route.
    """
    nets = {net for pk in wg.peers for net in wg.peer_statistics(pk).allowed_ips}
    if table == "off":
        return None
    if not on_linux():
        # refused whether or not there are routes yet: a reload would meet it otherwise
        _device_table(table)
        if not nets:
            return None
        routes = DeviceRoutes(device, name)
        await routes.add(nets, table)
        return routes
    if not nets:
        return None
    index = device.if_index()
    linux = await anyio.to_thread.run_sync(
        lambda: Routes(index, netns=netns, name=name, journal=journal)
    )
    try:
        mark = await anyio.to_thread.run_sync(linux.add, nets, table, wg.fwmark)
        if mark != wg.fwmark:
            transport.set_fwmark(mark)
            wg.fwmark = mark
    except BaseException:
        await linux.aclose()
        raise
    return linux


async def update_routes(
    device: AsyncDevice,
    routes: Routes | DeviceRoutes | None,
    new: Iterable[Network],
    *,
    table: str | int,
    netns: str | None,
    name: str,
    journal: Callable[[RoutingRecord], None] | None = None,
    fwmark: int = 0,
    set_fwmark: Callable[[int], None] | None = None,
) -> tuple[Routes | DeviceRoutes | None, RouteChanges]:
    """Make the routes follow a reload: ``new`` (every peer's AllowedIPs now) as
    :meth:`Routes.update` (:meth:`DeviceRoutes.update` off Linux) says, for an interface that
    came up with ``Table = table``.

    ``routes`` is what :func:`add_routes` returned; ``None`` (no AllowedIPs when the interface
    came up) makes one when a route is now wanted — the one returned, which is then the one to
    :meth:`~Routes.aclose`.

    ``fwmark`` is the interface's now; ``set_fwmark`` (called in the event loop's thread, may
    raise :class:`OSError`) makes a policy table the fwmark of its UDP socket and protocol, for a
    default route that comes with the reload when the interface had no fwmark (see
    :meth:`Routes.update`: before the rules exist). Without it such a default route is left for
    a restart (:attr:`RouteChanges.restart`).

    Returns:
        What to keep (``routes``, a new one, or ``None``) and what changed. A route the kernel
        (or the device) refused is in :attr:`RouteChanges.refused`, logged.

    Raises:
        ConfigError: a bad ``table``, or a table other than ``auto``/``off`` off Linux.
        OSError: (Linux) the rtnetlink socket cannot be opened or the namespace entered.
    """
    nets = set(new)
    if table == "off":
        return routes, RouteChanges()
    if not on_linux():
        _device_table(table)
        if routes is None:
            if not nets:
                return None, RouteChanges()
            routes = DeviceRoutes(device, name)
        assert isinstance(routes, DeviceRoutes)
        return routes, await routes.update(nets, table)
    if routes is None:
        if not nets:
            return None, RouteChanges()
        index = device.if_index()
        routes = await anyio.to_thread.run_sync(
            lambda: Routes(index, netns=netns, name=name, journal=journal)
        )
    assert isinstance(routes, Routes)
    made = routes
    mark: Callable[[int], None] | None = None
    if set_fwmark is not None:
        on_loop = set_fwmark

        def mark(number: int) -> None:
            anyio.from_thread.run_sync(on_loop, number)

    return routes, await anyio.to_thread.run_sync(lambda: made.update(nets, table, fwmark, mark))


def _device_table(table: str | int) -> None:
    if table != "auto":
        from ..platform import current_name

        raise ConfigError(f"Table = {table} is not supported on {current_name()} (Linux only)")


class DeviceRoutes:
    """The routes one interface added through its device, off Linux (:func:`add_routes`):
    main-table routes for AllowedIPs prefixes, default routes skipped (policy routing is
    Linux's).

    It remembers which prefixes it routed, so that a reload (:meth:`update`) removes only those
    — as :class:`Routes` does —, never a route that was there already: the device's own subnet
    route (macOS adds one with the address), a route given to the device builder, another
    interface's (a BSD table holds one route per prefix).

    The routes leave with the device (the OS deletes an interface's routes with it), so
    :meth:`aclose` has nothing to do. Tested through the fake system-call layer only
    (:mod:`tunflow.platform.fake`): never on a real macOS, BSD or Windows.

    Args:
        device: the interface's device.
        name: the interface name, for messages.
    """

    #: no policy table off Linux (what :func:`~tunflow.wireguard.open_interface` reads off a
    #: :class:`Routes`)
    policy_table = 0

    def __init__(self, device: AsyncDevice, name: str) -> None:
        self.device = device
        self.name = name
        #: the prefixes whose route was added here, for :meth:`update`
        self._routed: set[Network] = set()
        #: default routes in the file, skipped (warned once each)
        self._skipped: set[Network] = set()

    def __repr__(self) -> str:
        return f"<DeviceRoutes {self.name}: {len(self._routed)} routes>"

    @property
    def routed(self) -> tuple[Network, ...]:
        """The prefixes whose route was added here (for messages and tests)."""
        return _sorted(self._routed)

    async def add(self, networks: Iterable[Network], table: str | int) -> None:
        """Route ``networks`` into the device in the main table, except default routes (warned
        and skipped). A route already there is not this one's (and not an error).

        Raises:
            ConfigError: ``table`` is not ``auto``.
            DeviceError: the device refused a route.
        """
        _device_table(table)
        nets = sorted(set(networks), key=lambda n: (n.version, n.prefixlen, int(n.network_address)))
        self._skip_defaults(nets)
        for net in nets:
            if net.prefixlen:
                await self._add(net)

    async def update(self, networks: Iterable[Network], table: str | int) -> RouteChanges:
        """Make the routes follow ``networks`` after a reload (:func:`route_diff`): a route for
        each new prefix, as :meth:`add` makes them, and the routes added here for prefixes no
        longer in ``networks`` removed (one already gone is fine).

        A route the device refuses is logged and reported, not raised: the reload it follows
        is applied already. A default route new to the file is warned about and skipped.

        Raises:
            ConfigError: ``table`` is not ``auto``.
        """
        _device_table(table)
        nets = set(networks)
        add, remove, _ = route_diff(self._routed, (), nets, "auto")
        added: list[Network] = []
        removed: list[Network] = []
        refused: list[str] = []
        for net in remove:
            try:
                await self.device.remove_route(net)
            except OSError as exc:
                # gone already: BSD's PF_ROUTE says ESRCH, Windows ERROR_NOT_FOUND (ENOENT)
                if exc.errno not in (errno.ESRCH, errno.ENOENT):
                    _refused(refused, self.name, "remove", "the route to", net, exc)
                    continue
                log.debug("%s: the route to %s was gone already", self.name, net)
            self._routed.discard(net)
            removed.append(net)
        for net in add:
            try:
                if await self._add(net):
                    added.append(net)
            except OSError as exc:
                _refused(refused, self.name, "add", "a route to", net, exc)
        self._skip_defaults(_sorted(nets))
        return RouteChanges(tuple(added), tuple(removed), tuple(refused))

    async def aclose(self) -> None:
        """Nothing to remove: the routes leave with the device."""

    async def _add(self, net: Network) -> bool:
        """Route ``net``; whether the route was added here (``False``: one was there already,
        which is not this one's to remove)."""
        try:
            await self.device.add_route(net)
        except OSError as exc:
            # DeviceExistsError on every backend (PF_ROUTE's EEXIST, Windows'
            # ERROR_OBJECT_ALREADY_EXISTS): the device's own prefix route, or another's
            if exc.errno != errno.EEXIST:
                raise
            log.debug("%s: %s is already in the main table", self.name, net)
            return False
        self._routed.add(net)
        return True

    def _skip_defaults(self, nets: Iterable[Network]) -> None:
        defaults = {n for n in nets if not n.prefixlen}
        new = _sorted(defaults - self._skipped)
        self._skipped = defaults
        if new:
            log.warning(
                "%s: not adding the default route %s (policy routing is Linux only)",
                self.name,
                ", ".join(map(str, new)),
            )


def _entered(netns: str | None) -> AbstractContextManager[None]:
    """Run the body in the namespace named ``netns`` (``None``: stay, importing nothing)."""
    if netns is None:
        return contextlib.nullcontext()
    from ..platform.linux.tun import netns_entered

    return netns_entered(netns)
