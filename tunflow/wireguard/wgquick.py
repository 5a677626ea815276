"""The wg-quick configuration format (``/etc/wireguard/wg0.conf``) as typed records.

What ``tunflow up FILE`` reads::

    [Interface]
    PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
    ListenPort = 51820
    Address = 10.0.0.1/24, fd00::1/64
    MTU = 1420

    [Peer]
    PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
    PresharedKey = …
    AllowedIPs = 10.0.0.2/32, fd00::2/128
    Endpoint = peer.example.net:51820
    PersistentKeepalive = 25
    Native = true          # tunflow only: native fast mode with this peer (not WireGuard)

The rules are ``wg(8)``'s and ``wg-quick(8)``'s: section and key names are case-insensitive,
``#`` starts a comment (not in a hook: its command is the rest of the line, which bash reads,
as wg-quick passes it on), list values (``Address``, ``AllowedIPs``, ``DNS``) are
comma-separated (``Address`` and ``DNS`` space-separated too, as wg-quick splits them) and
accumulate over repeated lines, a repeated single value takes the last line. ``FwMark``,
``Table`` (``auto``, ``off``, ``main`` or a table number), ``DNS``, ``SaveConfig`` and the
``PreUp``/``PostUp``/``PreDown``/``PostDown`` hooks (``%i`` is the interface name) are read too. An unknown key, a missing or bad
value is a :class:`~tunflow.ConfigError` naming the file and line.

:func:`parse_wgquick` is pure (text in, records out); :func:`load_wgquick` reads a file;
:func:`strip_wgquick` leaves what ``wg setconf``/``wg syncconf`` take (``wg-quick strip``);
:meth:`QuickConfig.interface_config` resolves endpoint host names (I/O) and builds the
:class:`~tunflow.wireguard.InterfaceConfig` the protocol core takes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._text import digits_value, is_decimal
from ..errors import ConfigError
from ..netconfig.device import IPV6_MIN_MTU, check_unicast
from .protocol import (
    InterfaceConfig,
    PeerConfig,
    PresharedKey,
    PrivateKey,
    PublicKey,
    format_endpoint,
)
from .protocol.allowedips import Network, parse_network
from .protocol.constants import DEFAULT_MTU, MAX_MTU, MAX_PEERS
from .protocol.uapi import _HEX

if TYPE_CHECKING:
    from .protocol.uapi import DeviceInfo

__all__ = [
    "QuickConfig",
    "QuickPeer",
    "parse_wgquick",
    "load_wgquick",
    "render_saved",
    "resolve_endpoint",
    "save_wgquick",
    "strip_wgquick",
]

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
#: ``resolve(host, port) -> (ip, port)``
Resolver = Callable[[str, int], tuple[str, int]]

log = logging.getLogger("tunflow.wireguard")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@attrs.frozen
class QuickPeer:
    """A ``[Peer]`` section.

    Attributes:
        public_key: ``PublicKey``.
        preshared_key: ``PresharedKey`` (``None``: none).
        allowed_ips: ``AllowedIPs``, in the order written.
        endpoint: ``Endpoint`` as written (``host:port`` or ``[v6]:port``; the host may be a
            name, resolved when the interface comes up).
        persistent_keepalive: ``PersistentKeepalive`` seconds (0: off).
        native: ``Native`` — tunflow's native fast mode with this peer (not WireGuard).
        line: where the section starts, for messages.
        endpoint_line: where ``Endpoint`` is (0: unknown), for messages about it.
    """

    public_key: PublicKey
    preshared_key: PresharedKey | None = None
    allowed_ips: tuple[Network, ...] = ()
    endpoint: str | None = None
    persistent_keepalive: int = 0
    native: bool = False
    line: int = 0
    endpoint_line: int = 0


@attrs.frozen
class QuickConfig:
    """A wg-quick file.

    Attributes:
        private_key: ``PrivateKey`` (``None``: the file has none — the interface comes up
            without a key, making no handshake until one is set, as with wg-quick).
        listen_port: ``ListenPort`` (``None``: any free port).
        fwmark: ``FwMark`` (0: none, as ``FwMark = off`` says; ``None``: not given).
        addresses: ``Address`` lines, as interfaces (address with prefix).
        mtu: ``MTU`` (``None``: the default, 1420).
        dns: ``DNS`` servers and search domains (``tunflow up`` hands them to ``resolvconf``,
            as wg-quick does).
        table: ``Table`` — ``"auto"`` (routes for AllowedIPs in the main table, a default
            route through fwmark policy routing), ``"off"`` (no routes), or a table number
            (every AllowedIPs route in that table, no rules; ``main`` reads as 254).
        table_text: ``Table`` as the file spelled it (``None``: the file had none), which
            :func:`render_saved` writes back.
        pre_up / post_up / pre_down / post_down: hook commands, in order.
        save_config: ``SaveConfig`` — when the interface goes down, ``tunflow up`` writes its
            state back to the file, as wg-quick does (see :func:`render_saved`).
        peers: the ``[Peer]`` sections.
        file: where it was read from (for messages).
    """

    private_key: PrivateKey | None
    listen_port: int | None = None
    fwmark: int | None = None
    addresses: tuple[IPInterface, ...] = ()
    mtu: int | None = None
    dns: tuple[str, ...] = ()
    table: str | int = "auto"
    table_text: str | None = None
    pre_up: tuple[str, ...] = ()
    post_up: tuple[str, ...] = ()
    pre_down: tuple[str, ...] = ()
    post_down: tuple[str, ...] = ()
    save_config: bool = False
    peers: tuple[QuickPeer, ...] = ()
    file: str | None = None

    def interface_config(
        self, *, native: bool = False, resolve: Resolver | None = None
    ) -> InterfaceConfig:
        """The :class:`~tunflow.wireguard.InterfaceConfig` for the protocol core.

        Args:
            native: turn native fast mode on for every peer (``tunflow up --native``).
            resolve: how endpoint host names become IP addresses (default
                :func:`resolve_endpoint`; IP literals are never looked up).

        Raises:
            ConfigError: an endpoint does not resolve, or a value the core rejects.
        """
        resolver = resolve or resolve_endpoint
        peers = []
        for p in self.peers:
            endpoint = None
            if p.endpoint is not None:
                line = p.endpoint_line or p.line
                host, port = _split_endpoint(p.endpoint, self.file, line)
                try:
                    endpoint = (str(ipaddress.ip_address(host)), port)
                except ValueError:
                    try:
                        endpoint = resolver(host, port)
                    except OSError as exc:
                        raise ConfigError(
                            f"endpoint {p.endpoint!r} does not resolve: {exc}",
                            file=self.file,
                            path=f"line {line}",
                        ) from None
            peers.append(
                PeerConfig(
                    p.public_key,
                    preshared_key=p.preshared_key,
                    endpoint=endpoint,
                    allowed_ips=p.allowed_ips,
                    persistent_keepalive=p.persistent_keepalive,
                    native_mode=p.native or native,
                )
            )
        return InterfaceConfig(
            self.private_key,
            listen_port=self.listen_port or 0,
            fwmark=self.fwmark or 0,
            mtu=self.mtu or DEFAULT_MTU,
            peers=peers,  # type: ignore[arg-type]  # attrs sees the converter, not the tuple
        )


#: the answers of getaddrinfo that retrying cannot change (wg's list)
_PERMANENT = frozenset(
    getattr(socket, name)
    for name in ("EAI_NONAME", "EAI_FAIL", "EAI_NODATA")
    if hasattr(socket, name)
)


def _resolution_retries() -> int:
    """``WG_ENDPOINT_RESOLUTION_RETRIES`` as wg reads it: a count (15 when unset), or
    ``infinity`` (-1)."""
    value = os.environ.get("WG_ENDPOINT_RESOLUTION_RETRIES")
    if value is None:
        return 15
    if value == "infinity":
        return -1
    return digits_value(value) if is_decimal(value) else 15


def resolve_endpoint(host: str, port: int) -> tuple[str, int]:
    """Resolve a host name as ``wg`` does: the first address ``getaddrinfo`` gives.

    A failure that may pass (``EAI_AGAIN``: the DNS not reachable yet, as at boot) is retried
    as wg retries it: ``WG_ENDPOINT_RESOLUTION_RETRIES`` times (15 by default, ``infinity``),
    after 1 s, then each wait 1.2 times the last, 20 s at most.

    Raises:
        OSError: the name does not resolve (``socket.gaierror``), or is not a host name.
    """
    retries = _resolution_retries()
    delay = 1.0
    while True:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            break
        except UnicodeError:  # the idna codec: an empty label (a..b) or one over 63 characters
            raise OSError(f"{host!r} is not a valid host name") from None
        except socket.gaierror as exc:
            if exc.errno in _PERMANENT or retries == 0:
                raise
            retries -= 1
            log.warning("%s: %r; trying again in %.2f seconds", exc.strerror, host, delay)
            time.sleep(delay)
            delay = min(20.0, round(delay * 1.2, 6))
    if not infos:
        raise OSError(f"no address for {host!r}")
    sockaddr = infos[0][4]
    return (str(sockaddr[0]), int(sockaddr[1]))


def load_wgquick(path: str | Path) -> QuickConfig:
    """Read and parse a wg-quick file.

    Raises:
        ConfigError: the file is malformed (the message names the file and line) or cannot be
            read.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=str(p)) from None
    except UnicodeDecodeError:
        raise ConfigError("not a UTF-8 text file", file=str(p)) from None
    except ValueError as exc:  # a NUL in the path (from a TOML string: argv has none)
        raise ConfigError(f"cannot read the file: {exc}", file=str(p)) from None
    return parse_wgquick(text, file=str(p))


class _Section:
    def __init__(self, kind: str, line: int) -> None:
        self.kind = kind
        self.line = line
        self.values: dict[str, Any] = {}
        #: the line each field was (last) set on
        self.lines: dict[str, int] = {}


def parse_wgquick(text: str, *, file: str | None = None) -> QuickConfig:
    """Parse wg-quick text into a :class:`QuickConfig`.

    Args:
        text: the file's content.
        file: its name, for messages.

    Raises:
        ConfigError: an unknown section or key, a line that is not ``Key = Value``, a bad
            value, a ``[Peer]`` without ``PublicKey``, two ``[Peer]`` sections with one
            ``PublicKey`` (``wg setconf`` would merge them into one peer), an ``MTU`` below
            1280 with an IPv6
            ``Address`` (IPv6's least), an address given twice or that is multicast or
            unspecified, more than
            :data:`~tunflow.wireguard.protocol.constants.MAX_PEERS` (65536) ``[Peer]``
            sections (wireguard-go's limit); ``path`` is ``"line N"``.

    Example:
        >>> cfg = parse_wgquick('''
        ... [Interface]
        ... PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
        ... Address = 10.0.0.1/24
        ... [Peer]
        ... PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
        ... AllowedIPs = 10.0.0.2/32
        ... ''')
        >>> cfg.addresses, cfg.peers[0].allowed_ips
        ((IPv4Interface('10.0.0.1/24'),), (IPv4Network('10.0.0.2/32'),))
    """
    interface: _Section | None = None
    peers: list[_Section] = []
    current: _Section | None = None
    for number, raw in enumerate(_lines(text), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"line {number}"
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(
                    f"a section header must end with ']': {_shown(line)}", file=file, path=where
                )
            name = line[1:-1].strip().lower()
            if name == "interface":
                if interface is not None:
                    raise ConfigError("a second [Interface] section", file=file, path=where)
                current = interface = _Section("interface", number)
            elif name == "peer":
                current = _Section("peer", number)
                peers.append(current)
            else:
                raise ConfigError(
                    f"unknown section [{line[1:-1].strip()}] (expected [Interface] or [Peer])",
                    file=file,
                    path=where,
                )
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError(f"expected 'Key = Value', got {_shown(line)}", file=file, path=where)
        if current is None:
            raise ConfigError(
                f"{_KEY_LIKE.sub('<hidden>', key)} outside a section", file=file, path=where
            )
        handler = (_INTERFACE_KEYS if current.kind == "interface" else _PEER_KEYS).get(key.lower())
        if handler is None:
            section = "[Interface]" if current.kind == "interface" else "[Peer]"
            raise ConfigError(f"unknown key {_shown(key)} in {section}", file=file, path=where)
        field, parse, is_list = handler
        if parse is _command:
            # a hook is the whole rest of the line, '#' and all, as wg-quick hands it to bash
            # (which reads a '#' that starts a word as a comment itself)
            value = raw.partition("=")[2].strip()
        try:
            parsed = parse(value)
            if field == "addresses":
                _given_once(current.values.get("addresses", []), parsed)
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"{key}: {_reason(exc)}", file=file, path=where) from None
        if is_list:
            current.values.setdefault(field, []).extend(parsed)
        else:
            current.values[field] = parsed
        if field == "table":
            current.values["table_text"] = value
        current.lines[field] = number
    if interface is None:
        raise ConfigError("no [Interface] section", file=file)
    if len(peers) > MAX_PEERS:
        # wireguard-go's limit ("too many peers"); said before any endpoint is looked up
        raise ConfigError(
            f"too many peers: {len(peers)}, at most {MAX_PEERS}",
            file=file,
            path=f"line {peers[MAX_PEERS].line}",
        )
    built_peers = []
    seen: dict[PublicKey, int] = {}
    for sec in peers:
        if "public_key" not in sec.values:
            raise ConfigError("[Peer] has no PublicKey", file=file, path=f"line {sec.line}")
        pk = sec.values["public_key"]
        if pk in seen:
            raise ConfigError(
                f"a second [Peer] with public key {pk} (the first is at line {seen[pk]})",
                file=file,
                path=f"line {sec.line}",
            )
        seen[pk] = sec.line
        v = sec.values
        built_peers.append(
            QuickPeer(
                pk,
                preshared_key=v.get("preshared_key"),
                allowed_ips=tuple(v.get("allowed_ips", ())),
                endpoint=v.get("endpoint"),
                persistent_keepalive=v.get("persistent_keepalive", 0),
                native=v.get("native", False),
                line=sec.line,
                endpoint_line=sec.lines.get("endpoint", 0),
            )
        )
    v = interface.values
    mtu = v.get("mtu")
    ipv6 = [a for a in v.get("addresses", ()) if a.version == 6]
    if mtu is not None and mtu < IPV6_MIN_MTU and ipv6:
        raise ConfigError(
            f"MTU: {mtu} is below {IPV6_MIN_MTU}, the least IPv6 takes, and Address has {ipv6[0]}",
            file=file,
            path=f"line {interface.lines['mtu']}",
        )
    return QuickConfig(
        v.get("private_key"),
        listen_port=v.get("listen_port"),
        fwmark=v.get("fwmark"),
        addresses=tuple(v.get("addresses", ())),
        mtu=mtu,
        dns=tuple(v.get("dns", ())),
        table=v.get("table", "auto"),
        table_text=v.get("table_text"),
        pre_up=tuple(v.get("pre_up", ())),
        post_up=tuple(v.get("post_up", ())),
        pre_down=tuple(v.get("pre_down", ())),
        post_down=tuple(v.get("post_down", ())),
        save_config=v.get("save_config", False),
        peers=tuple(built_peers),
        file=file,
    )


#: a run of base64 characters longer than any key name: a private or preshared key (or most of
#: one) on a line that does not parse, which an error message must not show
_KEY_LIKE: Final = re.compile(r"[A-Za-z0-9+/=]{24,}")


def _shown(text: str) -> str:
    """``repr(text)`` for a message, each run of what may be a key in it as ``<hidden>``: the
    message reaches the terminal, the journal and ``systemctl status``."""
    return repr(_KEY_LIKE.sub("<hidden>", text))


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


# -- value parsers ------------------------------------------------------------------------------


def _private_key(value: str) -> PrivateKey:
    return PrivateKey.from_base64(value)


def _public_key(value: str) -> PublicKey:
    return PublicKey.from_base64(value)


def _psk(value: str) -> PresharedKey:
    return PresharedKey.from_base64(value)


def _lines(text: str) -> list[str]:
    """The lines of a file with their ends, split at ``\n`` only, as wg-quick (bash's ``read``)
    and wg split them — ``str.splitlines`` also splits at ``\x0b``, ``\x1c``, U+2028…, so
    ``PostUp = echo a\u2028Table = off`` would have set ``Table``."""
    parts = text.split("\n")
    out = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def _int(low: int, high: int, *, off: bool = False, decimal: bool = False) -> Callable[[str], int]:
    """A parser of numbers in ``low…high``: ``int(value, 0)`` (``0x…`` too), or with
    ``decimal`` ASCII decimal only, as wg(8) reads a port or a keepalive (``08`` is 8)."""

    def parse(value: str) -> int:
        if off and value.lower() == "off":
            return 0
        try:
            if decimal and not is_decimal(value):
                raise ValueError
            if not value.isascii() or "_" in value:  # int() takes "1_500" and "١٥٠٠"
                raise ValueError
            n = int(value, 10 if decimal else 0)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
        if not low <= n <= high:
            raise ValueError(f"{n} is outside {low}…{high}")
        return n

    return parse


def _fwmark(value: str) -> int:
    """wg's ``parse_fwmark``: ``off``, or a number starting with a digit, decimal (``010`` is
    10) or hexadecimal after a lowercase ``0x`` — not ``int(value, 0)``'s ``1_0``, ``0b1``,
    ``0o7`` or ``+5``."""
    if value.lower() == "off":
        return 0
    hexa = len(value) > 2 and value.startswith("0x")
    digits = value[2:] if hexa else value
    if not (_HEX.issuperset(digits) if hexa else is_decimal(digits)):
        raise ValueError(f"{value!r} is not off, a number or 0x and a hexadecimal number")
    n = digits_value(digits, 16 if hexa else 10)  # (int(): its own ValueError past 4300)
    if n > 0xFFFFFFFF:
        shown = n if n < 1 << 64 else f"{value[:12]}… ({len(value)} digits)"
        raise ValueError(f"{shown} is outside 0…4294967295")
    return n


def _bool(value: str) -> bool:
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{value!r} is not true or false")


def _save_config(value: str) -> bool:
    """wg-quick's ``read_bool``: ``true`` or ``false`` in any case, nothing else (not the
    ``yes``/``on``/``1`` that tunflow's own ``Native`` takes too)."""
    v = value.lower()
    if v not in ("true", "false"):
        raise ValueError(f"{value!r} is neither true nor false")
    return v == "true"


def _words(value: str) -> list[str]:
    """wg-quick's ``${value//,/ }`` word-split: commas and spaces both separate (``Address``
    and ``DNS``, which wg-quick reads itself; wg reads ``AllowedIPs``, commas only)."""
    return value.replace(",", " ").split()


def _addresses(value: str) -> list[IPInterface]:
    """``Address``: addresses with a prefix; a multicast or unspecified one is refused, as the
    device refuses it (the kernel takes a multicast IPv4 one, and wg-quick with it)."""
    out: list[IPInterface] = []
    for item in _words(value):
        try:
            if "%" in item:  # (ip would refuse it; Python keeps it and we would drop it)
                raise ValueError
            address = ipaddress.ip_interface(item)
        except ValueError:
            raise ValueError(f"{item!r} is not an address with a prefix") from None
        check_unicast(address.ip, item)
        out.append(address)
    return out


def _given_once(before: list[IPInterface], new: list[IPInterface]) -> None:
    """Refuse an address given twice, whatever its prefixes, as the device refuses it."""
    seen = {a.ip for a in before}
    for a in new:
        if a.ip in seen:
            raise ValueError(f"{a.ip} is given twice")
        seen.add(a.ip)


def _networks(value: str) -> list[Network]:
    """wg's ``AllowedIPs``: comma-separated prefixes, none empty — ``wg setconf`` refuses
    ``10.0.0.0/8,``, ``a, , b`` and an empty value."""
    items = [item.strip() for item in value.split(",")]
    if "" in items:
        raise ValueError(f"{value!r} has an empty item (a stray comma, or no value)")
    return [parse_network(item) for item in items]


def _split_endpoint(value: str, file: str | None = None, line: int = 0) -> tuple[str, int]:
    """``host:port``, ``[IPv6]:port``, or — as ``wg setconf`` reads it, splitting at the last
    colon — a bare ``IPv6:port`` (``fd00::1:51820``) when what comes before is an IPv6 address."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                sep = ""
    if not sep or not host or not is_decimal(port) or not 0 < digits_value(port) < 65536:
        raise ConfigError(
            f"endpoint {value!r} is not host:port or [IPv6]:port with a port in 1…65535",
            file=file,
            path=f"line {line}" if line else None,
        )
    if any(c.isspace() for c in host):
        # wg drops every space of a line; a host with one would be looked up as a name
        raise ConfigError(
            f"endpoint {value!r} has a space inside its host",
            file=file,
            path=f"line {line}" if line else None,
        )
    return host, digits_value(port)


def _endpoint(value: str) -> str:
    _split_endpoint(value)
    return value.strip()


#: ``RT_TABLE_MAIN``: what ``ip`` calls ``main``
_TABLE_MAIN = 254
#: ``RT_TABLE_LOCAL``: the kernel's table of local and broadcast addresses, not for AllowedIPs
_TABLE_LOCAL = 255


def _table(value: str) -> str | int:
    v = value.lower()
    if v in ("auto", "off"):
        return v
    if v == "main":
        return _TABLE_MAIN
    try:
        if not v.isascii() or "_" in v:  # int() takes "1_000" and "١٠٠٠"
            raise ValueError
        n = int(v, 0)  # decimal or 0x hex, as ip(8) reads a table id
    except ValueError:
        raise ValueError(
            f"{value!r} is not auto, off, main or a table number (other table names of "
            "/etc/iproute2/rt_tables are not read)"
        ) from None
    if not 1 <= n <= 0xFFFFFFFF or n == _TABLE_LOCAL:
        raise ValueError(f"table {n} is not in 1…4294967295 or is the local table (255)")
    return n


def _command(value: str) -> list[str]:
    return [value]


_Handler = tuple[str, Callable[[str], Any], bool]

_INTERFACE_KEYS: dict[str, _Handler] = {
    "privatekey": ("private_key", _private_key, False),
    "listenport": ("listen_port", _int(0, 65535, decimal=True), False),
    "fwmark": ("fwmark", _fwmark, False),
    "address": ("addresses", _addresses, True),
    "mtu": ("mtu", _int(576, MAX_MTU), False),
    "dns": ("dns", _words, True),
    "table": ("table", _table, False),
    "preup": ("pre_up", _command, True),
    "postup": ("post_up", _command, True),
    "predown": ("pre_down", _command, True),
    "postdown": ("post_down", _command, True),
    "saveconfig": ("save_config", _save_config, False),
}

_PEER_KEYS: dict[str, _Handler] = {
    "publickey": ("public_key", _public_key, False),
    "presharedkey": ("preshared_key", _psk, False),
    "allowedips": ("allowed_ips", _networks, True),
    "endpoint": ("endpoint", _endpoint, False),
    "persistentkeepalive": (
        "persistent_keepalive",
        _int(0, 65535, off=True, decimal=True),
        False,
    ),
    "native": ("native", _bool, False),
}


#: [Interface] keys wg-quick reads itself (``wg-quick strip`` drops them): all but wg's own;
#: [Peer] ``Native`` is tunflow's, and ``wg`` would refuse it
_QUICK_ONLY_INTERFACE = frozenset(_INTERFACE_KEYS) - {"privatekey", "listenport", "fwmark"}
_QUICK_ONLY_PEER = frozenset({"native"})


def strip_wgquick(text: str, *, file: str | None = None) -> str:
    """What ``wg-quick strip`` prints: the file without the keys only wg-quick (or tunflow)
    reads — ``Address``, ``MTU``, ``DNS``, ``Table``, the hooks, ``SaveConfig``, and ``Native``
    — so that ``wg setconf`` or ``wg syncconf`` takes it (``wg syncconf wg0 <(tunflow strip
    wg0)`` reloads the peers without taking the interface down). Every other line, comments
    included, is kept as it is.

    Raises:
        ConfigError: the text is not a valid wg-quick file (checked first, as ``up`` checks).

    Example:
        >>> text = '''[Interface]
        ... PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
        ... Address = 10.0.0.1/24
        ... [Peer]  # b
        ... PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
        ... Native = true
        ... AllowedIPs = 10.0.0.2/32
        ... '''
        >>> print(strip_wgquick(text), end="")
        [Interface]
        PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
        [Peer]  # b
        PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
        AllowedIPs = 10.0.0.2/32
    """
    parse_wgquick(text, file=file)
    kept = []
    drop: frozenset[str] = frozenset()
    for raw in _lines(text):
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line[1:-1].strip().lower()
            drop = _QUICK_ONLY_INTERFACE if section == "interface" else _QUICK_ONLY_PEER
        elif line and line.partition("=")[0].strip().lower() in drop:
            continue
        kept.append(raw)
    out = "".join(kept)
    return out if not out or out.endswith("\n") else out + "\n"


def hooks(commands: Sequence[str], name: str) -> list[str]:
    """The hook commands with ``%i`` replaced by the interface name (as wg-quick does)."""
    return [c.replace("%i", name) for c in commands]


def render_saved(
    quick: QuickConfig,
    info: DeviceInfo,
    *,
    addresses: Iterable[IPInterface] = (),
    mtu: int | None = None,
    native: Iterable[PublicKey] = (),
) -> str:
    """The file ``SaveConfig = true`` writes when an interface goes down (and ``tunflow save``
    any time), as wg-quick's ``save_config`` writes it: an ``[Interface]`` section with the
    interface's addresses now, the file's ``DNS``, ``MTU`` (the device's now, if the file set
    one), ``Table`` (as the file spelled it, if it had one), ``SaveConfig`` (if set) and
    hooks, then what ``wg showconf`` prints — the keys, port and mark and every peer as the
    running interface has them (peers added or changed with ``wg set`` included, endpoints as
    last seen).

    Args:
        quick: the file as it was read.
        info: the running interface (:func:`tunflow.wireguard.protocol.uapi.device_info`).
        addresses: the interface's addresses now; IPv6 link-local ones are left out (a TUN
            device gets one, a WireGuard device has none).
        mtu: the device's MTU now.
        native: the peers in native fast mode (written ``Native = true``).
    """
    lines = ["[Interface]"]
    lines += [f"Address = {a}" for a in addresses if not (a.version == 6 and a.ip.is_link_local)]
    lines += [f"DNS = {d}" for d in quick.dns]
    if quick.mtu is not None and mtu is not None:
        lines.append(f"MTU = {mtu}")
    if quick.table_text is not None:
        lines.append(f"Table = {quick.table_text}")
    elif quick.table != "auto":
        lines.append(f"Table = {'main' if quick.table == 254 else quick.table}")
    if quick.save_config:
        lines.append("SaveConfig = true")
    for key, commands in (
        ("PreUp", quick.pre_up),
        ("PostUp", quick.post_up),
        ("PreDown", quick.pre_down),
        ("PostDown", quick.post_down),
    ):
        lines += [f"{key} = {c}" for c in commands]
    if info.listen_port:
        lines.append(f"ListenPort = {info.listen_port}")
    if info.fwmark:
        lines.append(f"FwMark = {info.fwmark:#x}")
    if info.private_key is not None:
        lines.append(f"PrivateKey = {info.private_key.to_base64()}")
    natives = set(native)
    for peer in info.peers:
        lines += ["", "[Peer]", f"PublicKey = {peer.public_key.to_base64()}"]
        if not peer.preshared_key.is_zero:
            lines.append(f"PresharedKey = {peer.preshared_key.to_base64()}")
        if peer.allowed_ips:
            lines.append("AllowedIPs = " + ", ".join(str(n) for n in peer.allowed_ips))
        if peer.endpoint is not None:
            lines.append(f"Endpoint = {format_endpoint(peer.endpoint)}")
        if peer.persistent_keepalive_interval:
            lines.append(f"PersistentKeepalive = {peer.persistent_keepalive_interval}")
        if peer.public_key in natives:
            lines.append("Native = true")
    return "\n".join(lines) + "\n"


def save_wgquick(path: str | Path, text: str) -> None:
    """Replace the file at ``path`` with ``text`` the way wg-quick does: readable by its owner
    only (the file holds the private key), written to ``path.tmp``, synced, then renamed over
    the old file — a crash leaves the old file or the new one, never half of one. A symbolic
    link is followed (wg-quick writes to ``readlink -f`` of the file), so it stays a link.

    Raises:
        OSError: the file cannot be written (the old one is left as it was).
    """
    path = Path(path).resolve()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with open(fd, "wb") as f:
            os.fchmod(fd, 0o600)  # an old .tmp keeps its mode through O_CREAT
            f.write(text.encode())
            f.flush()
            os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
