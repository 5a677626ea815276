"""Configuration records for a WireGuard interface and its peers (frozen, validated).

Bad values fail here, at the boundary, with :class:`~tunflow.errors.ConfigError`. Endpoints are
IP literals: resolving host names is I/O and belongs to the caller (``wg`` resolves them before
it talks to the UAPI, too).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import attrs

from ..._text import digits_value, is_decimal
from ...errors import ConfigError
from .allowedips import Network, parse_network
from .constants import DEFAULT_MTU, MAX_MTU, MAX_PEERS
from .datagrams import Address
from .keys import PresharedKey, PrivateKey, PublicKey

__all__ = [
    "parse_endpoint",
    "format_endpoint",
    "PeerConfig",
    "InterfaceConfig",
]


def parse_endpoint(value: str | tuple[Any, ...]) -> Address:
    """An ``(ip, port)`` tuple from ``"192.0.2.1:51820"``, ``"[2001:db8::1]:51820"`` or a tuple.

    An IPv6 scope (``[fe80::1%eth0]:51820``) is kept in the host. The port is ASCII decimal.

    Raises:
        ConfigError: not an IP literal with a port in 1…65535 (or neither a tuple nor a str).

    Example:
        >>> parse_endpoint("[2001:DB8::1]:51820")
        ('2001:db8::1', 51820)
        >>> parse_endpoint("[fe80::1%eth0]:51820")
        ('fe80::1%eth0', 51820)
    """
    if isinstance(value, tuple):
        if len(value) < 2:
            raise ConfigError(f"endpoint {value!r} needs a host and a port")
        host, port = value[0], value[1]
    elif not isinstance(value, str):
        raise ConfigError(
            f"endpoint {value!r}: expected an (ip, port) tuple or an 'ip:port' string"
        )
    else:
        text = value.strip()
        bracketed = text.startswith("[")
        if bracketed:
            host, sep, rest = text[1:].partition("]:")
            if not sep:
                raise ConfigError(f"endpoint {value!r}: expected [IPv6]:port")
        else:
            host, sep, rest = text.rpartition(":")
            if not sep or ":" in host:
                raise ConfigError(f"endpoint {value!r}: expected IPv4:port or [IPv6]:port")
        if not is_decimal(rest):
            raise ConfigError(f"endpoint {value!r}: port is not a number")
        port = digits_value(rest)  # (not int(): a ValueError of its own past 4300 digits)
    try:
        ip = ipaddress.ip_address(host)  # an IPv6 scope ("%eth0") is kept
    except ValueError:
        raise ConfigError(f"endpoint {value!r}: {host!r} is not an IP address") from None
    if not isinstance(value, tuple) and bracketed and ip.version == 4:
        # ("[192.0.2.1]:5": wg and wireguard-go refuse brackets around an IPv4 address)
        raise ConfigError(f"endpoint {value!r}: brackets are for an IPv6 address")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError(f"endpoint {value!r}: port must be 1…65535")
    return (str(ip), port)


def format_endpoint(address: Address) -> str:
    """The UAPI form of an endpoint: ``ip:port`` or ``[ipv6]:port``."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _public(value: PublicKey | str | bytes) -> PublicKey:
    if isinstance(value, PublicKey):
        return value
    if isinstance(value, bytes) and len(value) == 32:
        return PublicKey(value)
    return PublicKey.from_base64(value)


def _private(value: PrivateKey | str | bytes | None) -> PrivateKey | None:
    if value is None or isinstance(value, PrivateKey):
        return value
    if isinstance(value, bytes) and len(value) == 32:
        return PrivateKey(value)
    return PrivateKey.from_base64(value)


def _psk(value: PresharedKey | str | bytes | None) -> PresharedKey | None:
    if value is None or isinstance(value, PresharedKey):
        return value
    if isinstance(value, bytes) and len(value) == 32:
        return PresharedKey(value)
    return PresharedKey.from_base64(value)


def _endpoint(value: str | tuple[Any, ...] | None) -> Address | None:
    return None if value is None else parse_endpoint(value)


def _networks(values: Iterable[str | Network]) -> tuple[Network, ...]:
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    return tuple(parse_network(v) for v in values)


def int_in(name: str, value: object, low: int, high: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer (not a bool) in low…high."""
    # a float or a string is not taken as a number, nor True as a port
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer {low}…{high}, got {value!r}")


def _u16(_inst: Any, attribute: attrs.Attribute[int], value: int) -> None:
    int_in(attribute.name, value, 0, 0xFFFF)


def _u32(_inst: Any, attribute: attrs.Attribute[int], value: int) -> None:
    int_in(attribute.name, value, 0, 0xFFFFFFFF)


@attrs.frozen
class PeerConfig:
    """One peer: who it is, where it is, and which addresses it may use.

    Args:
        public_key: the peer's public key (object, base64, hex or 32 raw bytes).
        preshared_key: optional PSK (same forms).
        endpoint: ``(ip, port)`` or ``"ip:port"``; learnt from the peer when omitted.
        allowed_ips: prefixes routed to the peer and accepted from it, e.g.
            ``("10.0.0.2/32", "fd00::/64")`` or ``"10.0.0.2/32, fd00::/64"``.
        persistent_keepalive: seconds between keepalives when idle; 0 disables.
        native_mode: send tunflow native fast-mode messages (one AEAD per super-packet).
            Only for tunflow peers configured the same way; not WireGuard-compatible.

    Raises:
        ConfigError: a key, endpoint, prefix or interval is invalid.

    Example:
        >>> cfg = PeerConfig(
        ...     "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
        ...     endpoint="192.0.2.1:51820",
        ...     allowed_ips="10.0.0.2/32",
        ... )
        >>> cfg.endpoint, cfg.allowed_ips
        (('192.0.2.1', 51820), (IPv4Network('10.0.0.2/32'),))
    """

    public_key: PublicKey = attrs.field(converter=_public)
    preshared_key: PresharedKey | None = attrs.field(default=None, converter=_psk)
    endpoint: Address | None = attrs.field(default=None, converter=_endpoint)
    allowed_ips: tuple[Network, ...] = attrs.field(default=(), converter=_networks)
    persistent_keepalive: int = attrs.field(default=0, validator=_u16)
    native_mode: bool = False


@attrs.frozen
class InterfaceConfig:
    """An interface: its key, port, MTU and peers (what a ``wg`` config file holds).

    Args:
        private_key: the interface key (object, base64, hex or 32 raw bytes); ``None``: none
            (the interface makes no handshake until one is set, as a wg-quick file without
            ``PrivateKey`` brings an interface up).
        listen_port: UDP port (0: let the transport choose). Only reported, never bound here.
        fwmark: firewall mark for the transport's socket (0: none). Only reported.
        mtu: the tunnel MTU; transport messages are padded to multiples of 16 up to it.
        peers: the peers.

    Raises:
        ConfigError: a value is invalid, two peers share a public key, or there are more than
            :data:`~.constants.MAX_PEERS` (65536) peers, as wireguard-go allows.
    """

    private_key: PrivateKey | None = attrs.field(converter=_private)
    listen_port: int = attrs.field(default=0, validator=_u16)
    fwmark: int = attrs.field(default=0, validator=_u32)
    mtu: int = attrs.field(default=DEFAULT_MTU)
    peers: tuple[PeerConfig, ...] = attrs.field(default=(), converter=tuple)

    @mtu.validator
    def _check_mtu(self, _attribute: attrs.Attribute[int], value: int) -> None:
        int_in("mtu", value, 576, MAX_MTU)

    @peers.validator
    def _check_peers(
        self, _attribute: attrs.Attribute[tuple[PeerConfig, ...]], value: tuple[PeerConfig, ...]
    ) -> None:
        if len(value) > MAX_PEERS:
            raise ConfigError(f"too many peers: {len(value)}, at most {MAX_PEERS}")
        keys = [p.public_key for p in value]
        if len(set(keys)) != len(keys):
            raise ConfigError("two peers have the same public key")
