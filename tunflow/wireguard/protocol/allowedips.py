"""Cryptokey routing: which peer owns an address (whitepaper §2, wireguard-go ``allowedips.go``).

Outbound, the longest prefix containing a packet's *destination* picks the peer; inbound, a
decrypted packet is accepted only if the longest prefix containing its *source* belongs to the
peer it came from. A prefix belongs to one peer at a time: inserting it again moves it.

Instead of a trie, each address family keeps one ``dict`` per prefix length, mapping the
network's leading bits (an ``int``) to the owner, and tries the lengths in use from longest to
shortest. With the handful of distinct lengths real configurations use, a lookup is a few dict
probes — cheaper in CPython than walking a trie node by node. Sans-I/O, no state beyond the
tables.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Generic, TypeVar

from ..._text import is_decimal
from ...errors import ConfigError

__all__ = ["Network", "AllowedIPs", "parse_network"]

T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(value: str | Network) -> Network:
    """A network from ``"10.0.0.0/8"``, ``"fd00::1/64"`` (host bits are cleared) or an address.

    Raises:
        ConfigError: not an IPv4 or IPv6 prefix (an IPv6 scope, ``fd00::%eth0/64``, included).

    Example:
        >>> parse_network("10.1.2.3/8")
        IPv4Network('10.0.0.0/8')
    """
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        net = value
    elif not isinstance(value, str):
        raise ConfigError(f"not an IP prefix: {value!r} (give text or an ip_network)")
    else:
        text = value.strip()
        _, slash, length = text.partition("/")
        if slash and not is_decimal(length):
            # ("10.0.0.0/255.0.0.0", "/0x8", "/٨": Python reads them, wg refuses them)
            raise ConfigError(f"not an IP prefix: {value!r} (the length is not a number)")
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(f"not an IP prefix: {value!r}") from None
    if net.version == 6 and net.network_address.scope_id is not None:
        # (Python keeps "fd00::%eth0/64"; wg and wireguard-go refuse it, and wg could not read
        # it back from the control socket)
        raise ConfigError(f"not an IP prefix: {value!r} (a prefix has no scope)")
    return net


class _Family(Generic[T]):
    __slots__ = ("bits", "tables")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        # (prefix length, {network >> (bits - length): owner}), longest first
        self.tables: list[tuple[int, dict[int, T]]] = []

    def table(self, plen: int, create: bool) -> dict[int, T] | None:
        for length, table in self.tables:
            if length == plen:
                return table
        if not create:
            return None
        table = {}
        self.tables.append((plen, table))
        self.tables.sort(key=lambda t: -t[0])
        return table

    def prune(self) -> None:
        self.tables = [(n, t) for n, t in self.tables if t]

    def lookup(self, address: int) -> T | None:
        bits = self.bits
        for plen, table in self.tables:
            owner = table.get(address >> (bits - plen))
            if owner is not None:
                return owner
        return None


class AllowedIPs(Generic[T]):
    """A longest-prefix-match table from IPv4/IPv6 prefixes to owners (peers).

    Example:
        >>> table: AllowedIPs[str] = AllowedIPs()
        >>> table.insert("10.0.0.0/8", "a")
        >>> table.insert("10.1.0.0/16", "b")
        >>> table.lookup("10.1.2.3"), table.lookup("10.2.0.1"), table.lookup("192.0.2.1")
        ('b', 'a', None)
    """

    __slots__ = ("_owned", "v4", "v6")

    def __init__(self) -> None:
        self.v4: _Family[T] = _Family(32)
        self.v6: _Family[T] = _Family(128)
        # each owner's prefixes in the order they were given (wireguard-go's and the kernel's
        # per-peer list: what `wg show` lists); owners are hashed (peers: by identity)
        self._owned: dict[T, dict[Network, None]] = {}

    def _family(self, net: Network) -> _Family[T]:
        return self.v4 if net.version == 4 else self.v6

    def insert(self, network: str | Network, owner: T) -> None:
        """Give ``network`` to ``owner`` (taking it from any previous owner).

        Raises:
            ConfigError: ``network`` is not a prefix.
        """
        net = parse_network(network)
        fam = self._family(net)
        table = fam.table(net.prefixlen, create=True)
        assert table is not None
        key = int(net.network_address) >> (fam.bits - net.prefixlen)
        previous = table.get(key)
        if previous is not None and previous is not owner:
            self._disown(previous, net)
        table[key] = owner
        self._owned.setdefault(owner, {})[net] = None  # one it has keeps its place

    def remove(self, network: str | Network, owner: T | None = None) -> T | None:
        """Remove ``network``; return its owner, or ``None`` if it was not there.

        With ``owner``, only if ``owner`` holds it (as wireguard-go's ``Remove(prefix, peer)``
        and the kernel's ``WGALLOWEDIP_F_REMOVE_ME``): another's stays, and ``None`` is
        returned.

        Raises:
            ConfigError: ``network`` is not a prefix.
        """
        net = parse_network(network)
        fam = self._family(net)
        table = fam.table(net.prefixlen, create=False)
        if table is None:
            return None
        key = int(net.network_address) >> (fam.bits - net.prefixlen)
        if owner is not None and table.get(key) is not owner:
            return None
        owner = table.pop(key, None)
        fam.prune()
        if owner is not None:
            self._disown(owner, net)
        return owner

    def _disown(self, owner: T, net: Network) -> None:
        owned = self._owned.get(owner)
        if owned is not None:
            owned.pop(net, None)
            if not owned:
                del self._owned[owner]

    def remove_owner(self, owner: T) -> int:
        """Remove every prefix of ``owner``; return how many were removed."""
        owned = self._owned.pop(owner, {})
        for net in owned:
            fam = self._family(net)
            table = fam.table(net.prefixlen, create=False)
            if table is not None:
                table.pop(int(net.network_address) >> (fam.bits - net.prefixlen), None)
        if owned:
            self.v4.prune()
            self.v6.prune()
        return len(owned)

    def networks(self, owner: T | None = None) -> list[Network]:
        """The prefixes of ``owner`` in the order they were given to it (as wireguard-go and
        the kernel list them); all prefixes if ``None``, longest first per family."""
        if owner is None:
            return [net for net, _ in self.items()]
        return list(self._owned.get(owner, ()))

    def items(self) -> Iterator[tuple[Network, T]]:
        """Every (prefix, owner) pair, IPv4 first, longest prefixes first."""
        for fam, cls in ((self.v4, ipaddress.IPv4Network), (self.v6, ipaddress.IPv6Network)):
            for plen, table in fam.tables:
                for key, owner in table.items():
                    yield cls((key << (fam.bits - plen), plen)), owner

    def clear(self) -> None:
        """Remove every prefix."""
        self.v4 = _Family(32)
        self.v6 = _Family(128)
        self._owned = {}

    def __len__(self) -> int:
        return sum(len(t) for fam in (self.v4, self.v6) for _, t in fam.tables)

    def lookup(
        self, address: str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> T | None:
        """The owner of the longest prefix containing ``address`` (text, packed or object).

        Raises:
            ConfigError: ``address`` is not an IPv4 or IPv6 address.
        """
        if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            ip = address
        else:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                raise ConfigError(f"not an IP address: {address!r}") from None
        return (self.v4 if ip.version == 4 else self.v6).lookup(int(ip))

    def lookup_v4(self, address: int) -> T | None:
        """Hot-path lookup of an IPv4 address given as a 32-bit ``int``."""
        return self.v4.lookup(address)

    def lookup_v6(self, address: int) -> T | None:
        """Hot-path lookup of an IPv6 address given as a 128-bit ``int``."""
        return self.v6.lookup(address)
