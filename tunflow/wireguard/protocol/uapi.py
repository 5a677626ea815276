"""The cross-platform userspace configuration protocol (wireguard.com/xplatform), sans-I/O.

``wg(8)`` talks to a userspace implementation over a UNIX socket with text requests::

    get=1                       set=1
    <empty line>                private_key=<hex>
                                listen_port=51820
                                public_key=<hex>
                                allowed_ip=10.0.0.2/32
                                <empty line>

and expects ``key=value`` lines ending with ``errno=N`` and an empty line back (``N`` is 0, or
a negated ``errno.h`` value, as wireguard-go sends it). This module is the codec and nothing
else — the socket server belongs to the transport/CLI layer:

* :class:`UapiConnection` cuts a byte stream into :class:`GetRequest` / :class:`SetRequest`
  (h11 style: ``receive_data`` then ``next_request``);
* :func:`parse_set` / :func:`render_set` convert a ``set=1`` body to and from a typed
  :class:`SetRequest` of :class:`PeerUpdate` operations;
* :func:`device_info` snapshots a :class:`~tunflow.wireguard.protocol.WireGuard` into a
  :class:`DeviceInfo`, :func:`render_get` renders it (with ``last_handshake_time_sec/nsec``,
  ``rx_bytes``, ``tx_bytes``, ``protocol_version=1`` …) and :func:`parse_get` reads one back
  (also what wireguard-go or the kernel module answers);
* :func:`sync_request` makes the request ``wg syncconf`` would send to bring an interface to a
  configuration without disturbing the peers that stay;
* :func:`apply_set` applies a request to an interface with wireguard-go's semantics (a server
  with I/O to do for it — a new port, a fwmark — calls :func:`check_set` first, does the I/O,
  then applies), and :func:`handle_request` does get-or-set and returns the response bytes.

Keys travel as lowercase hex. Private and preshared keys cross this boundary by design of the
protocol; never log the requests.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Callable
from typing import Final

import attrs

from ..._text import digits_value, is_decimal
from ...errors import ConfigError, HandshakeError
from .allowedips import Network, parse_network
from .config import InterfaceConfig, PeerConfig, _u16, _u32, format_endpoint, parse_endpoint
from .constants import MAX_PEERS
from .datagrams import Address
from .interface import _NO_KEY, WireGuard
from .keys import PresharedKey, PrivateKey, PublicKey

__all__ = [
    "UapiError",
    "GetRequest",
    "PeerUpdate",
    "SetRequest",
    "PeerInfo",
    "DeviceInfo",
    "UapiConnection",
    "parse_set",
    "render_set",
    "device_info",
    "render_get",
    "parse_get",
    "render_errno",
    "CheckedSet",
    "check_set",
    "apply_set",
    "sync_request",
    "handle_request",
    "MAX_REQUEST_SIZE",
]

#: A request larger than this is refused: answered ``errno=-7`` (E2BIG) once its end was read
#: (what comes past the limit is not kept). wireguard-go and the kernel have no limit: ``wg setconf`` of 12000 peers is 1.5 MB, and AllowedIPs of a
#: full routing table some 25 MB.
MAX_REQUEST_SIZE: Final = 64 << 20
# the operations, as their line begins
_OPS: Final = (b"get=1", b"set=1")
#: hex digits in either case (wgquick parses 0x fwmarks with it too)
_HEX: Final = frozenset("0123456789abcdefABCDEF")


class UapiError(ConfigError):
    """A UAPI request was refused. ``errno`` is the positive ``errno.h`` value to report.

    ``fatal`` means the byte stream is not a UAPI stream (an unknown operation): answer
    nothing and close the connection, as wireguard-go does.
    """

    def __init__(self, message: str, errno: int = _errno.EINVAL, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.errno = errno
        self.fatal = fatal


@attrs.frozen
class GetRequest:
    """``get=1``: report the configuration and state."""


@attrs.frozen
class PeerUpdate:
    """The lines of a ``set=1`` request that follow one ``public_key=`` line.

    ``None`` means "unchanged". ``allowed_ips`` are added after clearing the list when
    ``replace_allowed_ips`` is set (a ``replace_allowed_ips`` line after ``allowed_ip`` lines
    discards them, as it would line by line); then each of ``removed_allowed_ips``
    (``allowed_ip=-10.0.0.5/32``, what recent ``wg set … allowed-ips -10.0.0.5/32`` sends) is
    taken from the peer if the peer holds it — another peer's is left alone, as wireguard-go
    and the kernel do. :func:`parse_set` folds the lines into these two lists so that
    applying them does what the lines in their order would: a prefix added then removed is
    in both (taken, then removed), one removed then added only in ``allowed_ips``.

    Raises:
        ConfigError: ``persistent_keepalive_interval`` is not an integer from 0 to 65535.
    """

    public_key: PublicKey
    remove: bool = False
    update_only: bool = False
    preshared_key: PresharedKey | None = None
    endpoint: Address | None = None
    persistent_keepalive_interval: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_u16)
    )
    replace_allowed_ips: bool = False
    allowed_ips: tuple[Network, ...] = ()
    removed_allowed_ips: tuple[Network, ...] = ()


@attrs.frozen
class SetRequest:
    """``set=1``: change the device, then each peer in order.

    ``private_key`` all zeros (``remove_private_key``) removes the key, as ``wg set …
    private-key /dev/null`` asks (:meth:`WireGuard.set_private_key` with ``None``).

    Raises:
        ConfigError: ``listen_port`` is not an integer from 0 to 65535, or ``fwmark`` not one
            from 0 to 2**32 - 1 (checked when the request is made, so that :func:`apply_set`
            never stops halfway through one).
    """

    private_key: PrivateKey | None = None
    remove_private_key: bool = False
    listen_port: int | None = attrs.field(default=None, validator=attrs.validators.optional(_u16))
    fwmark: int | None = attrs.field(default=None, validator=attrs.validators.optional(_u32))
    replace_peers: bool = False
    peers: tuple[PeerUpdate, ...] = ()


@attrs.frozen
class PeerInfo:
    """One peer as a ``get=1`` response describes it."""

    public_key: PublicKey
    preshared_key: PresharedKey = attrs.field(factory=PresharedKey)
    endpoint: Address | None = None
    last_handshake_time_sec: int = 0
    last_handshake_time_nsec: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    persistent_keepalive_interval: int = 0
    allowed_ips: tuple[Network, ...] = ()
    protocol_version: int = 1


@attrs.frozen
class DeviceInfo:
    """A ``get=1`` response: the device fields and its peers."""

    private_key: PrivateKey | None = None
    listen_port: int = 0
    fwmark: int = 0
    peers: tuple[PeerInfo, ...] = ()


# -- value codecs -----------------------------------------------------------------------------


def _hex32(value: str, what: str) -> bytes:
    if len(value) != 64 or not set(value) <= _HEX:
        raise UapiError(f"{what} must be 64 hex digits")
    return bytes.fromhex(value)


def _uint(value: str, bits: int, what: str) -> int:
    if not is_decimal(value):
        raise UapiError(f"{what} is not an unsigned integer: {value!r}")
    n = digits_value(value)  # (not int(): a ValueError of its own past 4300 digits)
    if n >= 1 << bits:
        raise UapiError(f"{what} does not fit in {bits} bits: {value}")
    return n


def _true(value: str, what: str) -> bool:
    if value != "true":
        raise UapiError(f"{what} must be 'true', got {value!r}")
    return True


def _network(value: str) -> Network:
    # the protocol's form exactly: a prefix with its length, no spaces (as wireguard-go reads it)
    if "/" not in value or value != value.strip():
        raise UapiError(f"invalid allowed_ip {value!r}")
    try:
        return parse_network(value)
    except ConfigError:
        raise UapiError(f"invalid allowed_ip {value!r}") from None


def _endpoint(value: str) -> Address:
    if value != value.strip():
        raise UapiError(f"invalid endpoint {value!r}")
    try:
        return parse_endpoint(value)
    except ConfigError as exc:
        raise UapiError(str(exc)) from None


# -- set ----------------------------------------------------------------------------------------


def parse_set(body: str | bytes) -> SetRequest:
    """Parse the lines of a ``set=1`` request (without the ``set=1`` line).

    Parsing stops at the first empty line.

    Raises:
        UapiError: an unknown key, a malformed value, or a line without ``=`` (``EINVAL``;
            ``EPROTO`` for a line without ``=``).

    Example:
        >>> req = parse_set("listen_port=51820\\npublic_key=" + "11" * 32 + "\\nallowed_ip=10.0.0.2/32\\n")
        >>> req.listen_port, req.peers[0].allowed_ips
        (51820, (IPv4Network('10.0.0.2/32'),))
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    dev: dict[str, object] = {}
    peers: list[PeerUpdate] = []
    peer: dict[str, object] | None = None
    allowed: list[Network] = []
    # the prefixes ``allowed_ip=-…`` lines remove (a dict: in order, each once)
    removed: dict[Network, None] = {}

    def close_peer() -> None:
        if peer is not None:
            peers.append(
                PeerUpdate(
                    allowed_ips=tuple(allowed),
                    removed_allowed_ips=tuple(removed),
                    **peer,  # type: ignore[arg-type]
                )
            )

    for line in text.split("\n"):
        if line == "":
            break
        key, sep, value = line.partition("=")
        if not sep:
            raise UapiError(f"line without '=': {line[:40]!r}", _errno.EPROTO)
        if key == "public_key":
            close_peer()
            peer = {"public_key": PublicKey(_hex32(value, "public_key"))}
            allowed = []
            removed = {}
        elif peer is None:
            if key == "private_key":
                raw = _hex32(value, "private_key")
                if raw == bytes(32):
                    dev["private_key"], dev["remove_private_key"] = None, True
                else:
                    dev["private_key"], dev["remove_private_key"] = PrivateKey(raw), False
            elif key == "listen_port":
                dev["listen_port"] = _uint(value, 16, "listen_port")
            elif key == "fwmark":
                dev["fwmark"] = _uint(value, 32, "fwmark")
            elif key == "replace_peers":
                dev["replace_peers"] = _true(value, "replace_peers")
            else:
                raise UapiError(f"invalid UAPI device key {key!r}")
        elif key == "remove":
            peer["remove"] = _true(value, "remove")
        elif key == "update_only":
            peer["update_only"] = _true(value, "update_only")
        elif key == "preshared_key":
            peer["preshared_key"] = PresharedKey(_hex32(value, "preshared_key"))
        elif key == "endpoint":
            peer["endpoint"] = _endpoint(value)
        elif key == "persistent_keepalive_interval":
            peer["persistent_keepalive_interval"] = _uint(value, 16, key)
        elif key == "replace_allowed_ips":
            peer["replace_allowed_ips"] = _true(value, key)
            allowed = []
            removed = {}
        elif key == "allowed_ip":
            if value.startswith("-"):
                removed[_network(value[1:])] = None
            else:
                net = _network(value)
                removed.pop(net, None)
                allowed.append(net)
        elif key == "protocol_version":
            if value != "1":
                raise UapiError(f"invalid protocol version {value!r}")
        else:
            raise UapiError(f"invalid UAPI peer key {key!r}")
    close_peer()
    return SetRequest(peers=tuple(peers), **dev)  # type: ignore[arg-type]


def render_set(request: SetRequest) -> bytes:
    """The ``set=1`` request for ``request``, ending with the empty line (what ``wg`` sends).

    Example:
        >>> render_set(SetRequest(listen_port=51820))
        b'set=1\\nlisten_port=51820\\n\\n'
    """
    lines = ["set=1"]
    if request.remove_private_key:
        lines.append("private_key=" + "0" * 64)
    elif request.private_key is not None:
        lines.append("private_key=" + request.private_key.to_hex())
    if request.listen_port is not None:
        lines.append(f"listen_port={request.listen_port}")
    if request.fwmark is not None:
        lines.append(f"fwmark={request.fwmark}")
    if request.replace_peers:
        lines.append("replace_peers=true")
    for p in request.peers:
        lines.append("public_key=" + p.public_key.to_hex())
        if p.remove:
            lines.append("remove=true")
        if p.update_only:
            lines.append("update_only=true")
        if p.preshared_key is not None:
            lines.append("preshared_key=" + p.preshared_key.to_hex())
        if p.endpoint is not None:
            lines.append("endpoint=" + format_endpoint(p.endpoint))
        if p.persistent_keepalive_interval is not None:
            lines.append(f"persistent_keepalive_interval={p.persistent_keepalive_interval}")
        if p.replace_allowed_ips:
            lines.append("replace_allowed_ips=true")
        lines.extend(f"allowed_ip={net}" for net in p.allowed_ips)
        lines.extend(f"allowed_ip=-{net}" for net in p.removed_allowed_ips)
    return _encode(lines)


def _encode(lines: list[str]) -> bytes:
    # UTF-8, never raising: all is ASCII but an endpoint's IPv6 scope, a link name — any bytes
    # (a name that is not valid UTF-8 came in as U+FFFD)
    return ("\n".join(lines) + "\n\n").encode("utf-8", "replace")


# -- get ----------------------------------------------------------------------------------------


def device_info(wg: WireGuard) -> DeviceInfo:
    """Snapshot ``wg`` as a ``get=1`` response describes it."""
    peers = []
    for peer in wg.peers.values():
        last = peer.last_handshake
        if last is None:
            sec = nsec = 0
        else:
            sec = int(last // 1)
            nsec = min(round((last - sec) * 1e9), 999_999_999)
        peers.append(
            PeerInfo(
                public_key=peer.public_key,
                preshared_key=peer.preshared_key,
                endpoint=peer.endpoint,
                last_handshake_time_sec=sec,
                last_handshake_time_nsec=nsec,
                rx_bytes=peer.rx_bytes,
                tx_bytes=peer.tx_bytes,
                persistent_keepalive_interval=peer.persistent_keepalive,
                allowed_ips=tuple(wg.allowed_ips.networks(peer)),
            )
        )
    return DeviceInfo(wg.private_key, wg.listen_port, wg.fwmark, tuple(peers))


def render_get(info: DeviceInfo | WireGuard) -> bytes:
    """The response to ``get=1``: the key=value lines, ``errno=0`` and the empty line.

    Zero ``listen_port`` and ``fwmark`` are left out, as wireguard-go does.
    """
    if isinstance(info, WireGuard):
        info = device_info(info)
    lines = []
    if info.private_key is not None:
        lines.append("private_key=" + info.private_key.to_hex())
    if info.listen_port:
        lines.append(f"listen_port={info.listen_port}")
    if info.fwmark:
        lines.append(f"fwmark={info.fwmark}")
    for p in info.peers:
        lines.append("public_key=" + p.public_key.to_hex())
        lines.append("preshared_key=" + p.preshared_key.to_hex())
        lines.append(f"protocol_version={p.protocol_version}")
        if p.endpoint is not None:
            lines.append("endpoint=" + format_endpoint(p.endpoint))
        lines.append(f"last_handshake_time_sec={p.last_handshake_time_sec}")
        lines.append(f"last_handshake_time_nsec={p.last_handshake_time_nsec}")
        lines.append(f"tx_bytes={p.tx_bytes}")
        lines.append(f"rx_bytes={p.rx_bytes}")
        lines.append(f"persistent_keepalive_interval={p.persistent_keepalive_interval}")
        lines.extend(f"allowed_ip={net}" for net in p.allowed_ips)
    lines.append("errno=0")
    return _encode(lines)


_PEER_INTS: Final = {
    "last_handshake_time_sec": 64,
    "last_handshake_time_nsec": 64,
    "rx_bytes": 64,
    "tx_bytes": 64,
    "persistent_keepalive_interval": 16,
    "protocol_version": 32,
}


def parse_get(response: str | bytes) -> DeviceInfo:
    """Parse a ``get=1`` response (ours, wireguard-go's, or the one the kernel module gives).

    Unknown keys are skipped, so newer implementations still parse.

    Raises:
        UapiError: a malformed line or value, or ``errno`` other than 0 (its ``errno`` is
            then the positive value).
    """
    text = response.decode("utf-8", "replace") if isinstance(response, bytes) else response
    dev: dict[str, object] = {}
    peers: list[PeerInfo] = []
    peer: dict[str, object] | None = None
    allowed: list[Network] = []

    def close_peer() -> None:
        if peer is not None:
            peers.append(PeerInfo(allowed_ips=tuple(allowed), **peer))  # type: ignore[arg-type]

    for line in text.split("\n"):
        if line == "":
            break
        key, sep, value = line.partition("=")
        if not sep:
            raise UapiError(f"line without '=': {line[:40]!r}", _errno.EPROTO)
        if key == "errno":
            try:
                code = int(value, 10)
            except ValueError:
                raise UapiError(f"errno is not a number: {value!r}", _errno.EPROTO) from None
            if code:
                raise UapiError(f"the implementation answered errno={code}", abs(code))
        elif key == "public_key":
            close_peer()
            peer = {"public_key": PublicKey(_hex32(value, "public_key"))}
            allowed = []
        elif peer is None:
            if key == "private_key":
                raw = _hex32(value, "private_key")
                dev["private_key"] = None if raw == bytes(32) else PrivateKey(raw)
            elif key == "listen_port":
                dev["listen_port"] = _uint(value, 16, key)
            elif key == "fwmark":
                dev["fwmark"] = _uint(value, 32, key)
        elif key == "preshared_key":
            peer["preshared_key"] = PresharedKey(_hex32(value, key))
        elif key == "endpoint":
            peer["endpoint"] = _endpoint(value)
        elif key == "allowed_ip":
            allowed.append(_network(value))
        elif key in _PEER_INTS:
            peer[key] = _uint(value, _PEER_INTS[key], key)
    close_peer()
    return DeviceInfo(peers=tuple(peers), **dev)  # type: ignore[arg-type]


def render_errno(errno: int) -> bytes:
    """The response to a ``set=1`` (or a failed ``get=1``): ``errno=-N`` (or 0) and a blank line.

    Example:
        >>> render_errno(0), render_errno(22)
        (b'errno=0\\n\\n', b'errno=-22\\n\\n')
    """
    return f"errno={-abs(errno)}\n\n".encode("ascii")


# -- applying -------------------------------------------------------------------------------------


@attrs.frozen(eq=False)
class CheckedSet:
    """A :class:`SetRequest` that :func:`check_set` accepted for one interface.

    Give it to :func:`apply_set` before anything else changes that interface: a server does
    the I/O the request needs (binding the new port, setting the fwmark) in between, so that a
    failure there leaves the interface as it was.
    """

    #: the request
    request: SetRequest
    #: the key it was checked with (the request's new key, else the interface's; ``None``:
    #: none, the request removes it or the interface has none)
    private_key: PrivateKey | None = attrs.field(repr=False)
    # the X25519 of that key with each peer the request creates: the check computes it to
    # refuse a low-order key, and the new peer uses it instead of computing it again (50 µs a
    # peer: 0.6 s of a 12 000-peer setconf)
    _static_static: dict[PublicKey, bytes] = attrs.field(repr=False, alias="static_static")


def check_set(wg: WireGuard, request: SetRequest) -> CheckedSet:
    """Check ``request`` against ``wg`` without changing anything.

    What :func:`apply_set` would refuse is refused here, so that a request fails whole
    (wireguard-go applies line by line and stops at a bad one; it accepts a low-order peer key,
    so it has no half-applied request to mirror for it).

    Raises:
        UapiError: a peer the request creates has a low-order public key, or it would make
            the interface have more than :data:`~.constants.MAX_PEERS` (65536) peers at any
            point (``EINVAL``, as wireguard-go's "too many peers", which has applied the lines
            before it by then).

    Example:
        >>> wg = WireGuard(PrivateKey(bytes(range(32))))
        >>> checked = check_set(wg, SetRequest(listen_port=51820))
        >>> # ... bind port 51820 here; if that fails, answer an error: wg is unchanged
        >>> apply_set(wg, checked)
        >>> wg.listen_port
        51820
    """
    key = None if request.remove_private_key else request.private_key or wg.private_key
    # without a key the peers' static-static values are the all-zero stand-in's
    # (WireGuard.set_private_key), a peer with its public key is ignored and removed
    dh = key or _NO_KEY
    own = dh.public_key()
    secrets: dict[PublicKey, bytes] = {}
    if not request.peers:
        return CheckedSet(request, key, secrets)
    # the peers as apply_set goes: how many, and whether each key the request names is one
    # (wg.peer, not ``pk in wg.peers``: that copies the peer dict, once per line)
    count = 0 if request.replace_peers else len(wg.peers)
    present: dict[PublicKey, bool] = {}

    def exists(pk: PublicKey) -> bool:
        known = present.get(pk)
        if known is None:
            return not request.replace_peers and wg.peer(pk) is not None
        return known

    if (request.private_key is not None or request.remove_private_key) and exists(own):
        count -= 1  # set_private_key removes the peer that has the new public key
        present[own] = False
    for update in request.peers:
        pk = update.public_key
        if pk == own:
            continue
        if update.remove:
            if exists(pk):
                count -= 1
                present[pk] = False
            continue
        # the peers apply_set makes: unknown ones, and with replace_peers all
        if update.update_only or exists(pk):
            continue
        count += 1
        present[pk] = True
        if count > MAX_PEERS:  # before any X25519 below: 65536 of them take seconds
            raise UapiError(f"too many peers: more than {MAX_PEERS}")
        secrets[pk] = b""
    for pk in secrets:
        try:
            secrets[pk] = dh.exchange(pk)
        except HandshakeError:
            raise UapiError(f"peer {pk} has an invalid (low-order) public key") from None
    return CheckedSet(request, key, secrets)


def apply_set(wg: WireGuard, request: SetRequest | CheckedSet, now: float | None = None) -> None:
    """Apply ``request`` to ``wg`` the way wireguard-go's ``IpcSetOperation`` does.

    A peer with the interface's own public key is ignored; ``update_only`` skips unknown peers;
    turning a persistent keepalive on sends a keepalive at once when ``now`` is given. A peer
    that ``replace_peers`` removed and the request adds again keeps its native mode.

    Args:
        wg: the interface.
        request: the request, or what :func:`check_set` made of it for ``wg`` (then it is not
            checked again).
        now: the protocol's clock, when the interface is up.

    Raises:
        UapiError: a :class:`SetRequest` that :func:`check_set` refuses; found before anything
            is changed.
    """
    checked = request if isinstance(request, CheckedSet) else check_set(wg, request)
    request = checked.request
    # native mode, which the protocol does not carry, of the peers replace_peers removes: one
    # named again keeps it (wg setconf of a native peer's file made it speak WireGuard, while
    # its tunflow peer went on sending native messages, dropped as malformed)
    native: set[PublicKey] = set()
    if request.replace_peers:
        # before a new key: set_private_key would redo each old peer's X25519 for nothing
        for pk, peer in list(wg.peers.items()):
            if peer.native_mode:
                native.add(pk)
            wg.remove_peer(pk)
    if request.remove_private_key:
        wg.set_private_key(None, now)
    elif request.private_key is not None:
        wg.set_private_key(request.private_key, now)
    # checked for another key (the interface's changed since): the peers compute their own
    secrets = checked._static_static if wg.private_key == checked.private_key else {}
    if request.listen_port is not None:
        wg.listen_port = request.listen_port
    if request.fwmark is not None:
        wg.fwmark = request.fwmark
    own = (wg.private_key or _NO_KEY).public_key()
    for update in request.peers:
        pk = update.public_key
        if pk == own:
            continue
        existing = wg.peer(pk)
        if update.remove:
            if existing is not None:
                wg.remove_peer(pk)
            continue
        if existing is None:
            if update.update_only:
                continue
            try:
                wg.add_peer(
                    PeerConfig(pk, native_mode=pk in native), _static_static=secrets.get(pk)
                )
            except ConfigError as exc:
                raise UapiError(str(exc)) from None
        if update.preshared_key is not None:
            wg.set_preshared_key(pk, update.preshared_key)
        if update.endpoint is not None:
            wg.set_endpoint(pk, update.endpoint)
        if update.replace_allowed_ips:
            wg.set_allowed_ips(pk, ())
        for net in update.allowed_ips:
            wg.add_allowed_ip(pk, net)
        for net in update.removed_allowed_ips:
            wg.remove_allowed_ip(pk, net)
        if update.persistent_keepalive_interval is not None:
            wg.set_persistent_keepalive(pk, update.persistent_keepalive_interval, now)


def sync_request(
    wg: WireGuard,
    config: InterfaceConfig,
    *,
    listen_port: bool = True,
    fwmark: bool = True,
) -> SetRequest:
    """The request ``wg syncconf`` sends to make ``wg`` what ``config`` says.

    As wireguard-tools' ``sync_conf``: the private key is set (removed when ``config`` has
    none: ``wg syncconf`` of a file without ``PrivateKey`` sends the all-zero key); peers that
    ``config`` does not name are removed; every peer it names is added or updated — its
    AllowedIPs replaced, its endpoint set when ``config`` gives one (else the one learnt is
    kept), its preshared key and persistent keepalive set to ``config``'s (none and 0 when it
    gives none). Sessions of the peers that stay are kept. Native mode is not part of the
    protocol: set ``native_mode`` on the peers afterwards.

    Args:
        wg: the running interface (only read).
        config: what it should become.
        listen_port: ``False``: leave the port alone, for a configuration that gave none
            (``config.listen_port`` is 0) — where ``wg syncconf`` sends ``listen_port=0``, a
            new random port; ``tunflow reload`` keeps the port.
        fwmark: ``False``: leave the fwmark alone (likewise; ``wg syncconf`` sends
            ``fwmark=0``).

    Example:
        >>> wg = WireGuard(PrivateKey(bytes(range(32))))
        >>> gone = PrivateKey(bytes(range(1, 33))).public_key()
        >>> new = PrivateKey(bytes(range(2, 34))).public_key()
        >>> _ = wg.add_peer(PeerConfig(gone))
        >>> config = InterfaceConfig(wg.private_key, peers=[PeerConfig(new)])
        >>> request = sync_request(wg, config, listen_port=False, fwmark=False)
        >>> [(u.public_key == gone, u.remove) for u in request.peers]
        [(True, True), (False, False)]
        >>> apply_set(wg, request)
        >>> list(wg.peers) == [new]
        True
    """
    named = {p.public_key for p in config.peers}
    # the peers to remove first, as sync_conf puts them
    updates = [PeerUpdate(pk, remove=True) for pk in wg.peers if pk not in named]
    updates += [
        PeerUpdate(
            p.public_key,
            preshared_key=p.preshared_key or PresharedKey(),
            endpoint=p.endpoint,
            persistent_keepalive_interval=p.persistent_keepalive,
            replace_allowed_ips=True,
            allowed_ips=p.allowed_ips,
        )
        for p in config.peers
    ]
    return SetRequest(
        private_key=config.private_key,
        remove_private_key=config.private_key is None,
        listen_port=config.listen_port if listen_port else None,
        fwmark=config.fwmark if fwmark else None,
        peers=tuple(updates),
    )


def handle_request(
    wg: WireGuard,
    request: GetRequest | SetRequest | UapiError,
    now: float | None = None,
    *,
    scoped_endpoint: Callable[[Address], Address] | None = None,
) -> bytes:
    """Answer one request from :meth:`UapiConnection.next_request`.

    Args:
        scoped_endpoint: how a ``get`` shows a link-local endpoint (``fe80::1%eth0``); the
            runtime passes its socket's name-to-index lookup, so ``wg`` reads a number it
            needs not look up (``wg`` crashes on a link name its own namespace lacks).

    Returns:
        The bytes to write back (for a fatal :class:`UapiError`: ``b""`` — close instead).
    """
    if isinstance(request, UapiError):
        return b"" if request.fatal else render_errno(request.errno)
    if isinstance(request, GetRequest):
        info = device_info(wg)
        if scoped_endpoint is not None:
            peers = tuple(
                attrs.evolve(p, endpoint=scoped_endpoint(p.endpoint))
                if p.endpoint is not None and "%" in p.endpoint[0]
                else p
                for p in info.peers
            )
            info = attrs.evolve(info, peers=peers)
        return render_get(info)
    try:
        apply_set(wg, request, now)
    except UapiError as exc:
        return render_errno(exc.errno)
    return render_errno(0)


# -- stream -----------------------------------------------------------------------------------------


class UapiConnection:
    """Cuts a UAPI byte stream into requests (the server side), h11 style.

    Example:
        >>> conn = UapiConnection()
        >>> conn.receive_data(b"get=1\\n\\nset=1\\nlisten_port=1\\n")
        >>> conn.next_request(), conn.next_request()
        (GetRequest(), None)
        >>> conn.receive_data(b"\\n")
        >>> conn.next_request()
        SetRequest(private_key=None, remove_private_key=False, listen_port=1, fwmark=None, replace_peers=False, peers=())
    """

    __slots__ = ("_buffer", "_eof", "_scanned", "_skipping", "closed")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False
        # where the search for the end of an incomplete set=1 goes on (each read is searched
        # once, not the whole request again)
        self._scanned = 0
        # in the rest of a set=1 past MAX_REQUEST_SIZE: read to its end, kept no more
        self._skipping = False
        #: set once a fatal error was returned; the server should close the socket
        self.closed = False

    @property
    def buffered(self) -> int:
        """How many bytes are held, not yet cut into requests (what the next
        :meth:`next_request` may have to parse: a server parses much off its event loop)."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the socket; ``b""`` is the end of the stream (which ends a
        ``set=1`` as its empty line would, as wireguard-go reads it)."""
        if not data:
            self._eof = True
        self._buffer += data

    def next_request(self) -> GetRequest | SetRequest | UapiError | None:
        """The next complete request, a :class:`UapiError` to answer, or ``None`` (need data).

        A malformed ``set=1`` yields a non-fatal :class:`UapiError` (answer it with
        :func:`render_errno` and go on), so does a ``set=1`` larger than
        :data:`MAX_REQUEST_SIZE` (``E2BIG``, once the rest of it was read — and dropped as it
        came); an unknown operation yields a fatal one (close the connection). A first line
        that cannot be ``get=1`` or ``set=1`` is refused as soon as a byte tells (at most
        ``len("set=1\\n")`` bytes into it), not when its newline comes.
        """
        if self.closed:
            return None
        buf = self._buffer
        if self._skipping:
            return self._skip()
        nl = buf.find(b"\n")
        if nl < 0:
            # the operation line, not ended yet: what is not the beginning of get=1 or set=1
            # is refused now, not buffered until a newline that may never come (wireguard-go
            # buffers it without limit)
            if _OPS[0].startswith(buf) or _OPS[1].startswith(buf):
                return None
            nl = len(buf)
        op = bytes(buf[:nl])
        if op == b"get=1":
            if len(buf) < nl + 2:
                return None
            # the byte after get=1's line is consumed either way; not an empty line: EINVAL,
            # and the stream goes on (wireguard-go answers errno=-22 and reads the next one)
            bad = buf[nl + 1] != 0x0A
            del buf[: nl + 2]
            return UapiError("trailing data after get=1") if bad else GetRequest()
        if op == b"set=1":
            if buf[nl + 1 : nl + 2] == b"\n":
                end = nl + 1
            else:
                end = buf.find(b"\n\n", max(nl + 1, self._scanned))
                if end < 0 and self._eof:
                    if not buf.endswith(b"\n"):
                        buf += b"\n"  # a last line without its newline counts
                    end = len(buf) - 1
                elif end < 0:
                    self._scanned = len(buf) - 1  # the next read may end this line's pair
                    if len(buf) > MAX_REQUEST_SIZE:
                        self._skipping = True
                        self._scanned = 0
                        return self._skip()
                    return None
                else:
                    end += 1
            body = bytes(buf[nl + 1 : end])
            del buf[: end + 1]
            self._scanned = 0
            try:
                return parse_set(body)
            except UapiError as exc:
                return exc
        self.closed = True
        return UapiError(f"invalid UAPI operation {op[:20]!r}", fatal=True)

    def _skip(self) -> UapiError | None:
        """Drop what came of an oversized ``set=1``; its error once its end came.

        Answered, not closed on: the client still writes the request, and only reads the
        answer once it is sent (``wg`` closed on was killed by SIGPIPE, saying nothing).
        """
        buf = self._buffer
        end = buf.find(b"\n\n")
        if end < 0 and not self._eof:
            # the last newline kept: the next read may end this line's pair
            del buf[: len(buf) - 1 if buf.endswith(b"\n") else len(buf)]
            return None
        del buf[: len(buf) if end < 0 else end + 2]
        self._skipping = False
        return UapiError(f"UAPI request larger than {MAX_REQUEST_SIZE >> 20} MiB", _errno.E2BIG)
