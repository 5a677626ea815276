"""One WireGuard interface as a sans-I/O state machine: :class:`WireGuard`.

Like aioquic's ``QuicConnection``, it never touches a socket or a clock. The caller feeds it
datagrams and packets with the current time and drains what it wants sent:

* ``receive_datagram(data, addr, now) -> list[bytes]`` / ``decrypt_batch(datagrams, now, out)``
  — handshakes are answered (answers appear in :meth:`~WireGuard.datagrams_to_send`), transport
  messages are decrypted, checked and delivered as IP packets;
* ``send_packet(packet, now)`` / ``encrypt_batch(packets, now, out)`` — packets are routed by
  AllowedIPs, encrypted with the peer's current session, or staged while a handshake (started
  here) completes;
* ``get_timer() -> float | None`` and ``handle_timer(now)`` — retransmissions, keepalives,
  rekeying and key erasure; ``start(now)`` once, when the interface comes up (persistent
  keepalives go out at once);
* ``next_event()`` — :class:`HandshakeCompleted` and friends; ``statistics()`` — counters,
  including drops by reason.

``now`` is seconds on a monotonic clock (``time.monotonic()``: timers, key lifetimes and the
initiation flood check measure intervals on it, so it must not jump). Handshake initiations
are dated, and ``last_handshake`` reported, in UNIX time: ``wall_clock()`` when given —
``wall_clock=time.time`` follows a wall clock corrected while running (NTP after boot, a
restored VM), as wireguard-go reads the time for each initiation — else ``now +
clock_offset``.

Hostile input never raises out of the receive functions: it is counted in
:class:`WireGuardStatistics` and dropped.
"""

from __future__ import annotations

import heapq
import random as _random_module
import secrets
import struct
from collections import deque
from collections.abc import Callable, Iterable
from ipaddress import IPv6Address
from operator import attrgetter
from typing import Any, Final

import attrs

from ...errors import (
    ConfigError,
    HandshakeError,
    OffloadError,
    PacketError,
    PacketTooLargeError,
)
from ...offload import gso_segment_count, gso_split
from ...packet import _HIGH_NIBBLE, HEADROOM, MAX_PACKET_SIZE, PacketBatch
from ._crypto import InvalidTag, tai64n
from .allowedips import AllowedIPs, Network
from .config import (
    InterfaceConfig,
    PeerConfig,
    _networks,
    _private,
    _psk,
    _public,
    int_in,
    parse_endpoint,
)
from .constants import (
    DEFAULT_MTU,
    INITIATION_SIZE,
    KEEPALIVE_TIMEOUT,
    MAX_MTU,
    MAX_PEERS,
    MAX_STAGED_PACKETS,
    MAX_TIMER_HANDSHAKES,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_NATIVE,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    PADDING_MULTIPLE,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
    RESPONSE_SIZE,
    TAG_SIZE,
    UNDER_LOAD_AFTER_TIME,
)
from .cookie import CookieChecker, address_bytes
from .datagrams import Address, DatagramBatch
from .keys import PresharedKey, PrivateKey, PublicKey, RandomSource
from .messages import TRANSPORT_HEADER, parse_cookie_reply, parse_initiation, parse_response
from .native import (
    _MIN_CHUNK,
    MAX_SEALED_SIZE,
    MIN_FRAGMENT_SIZE,
    NATIVE_HEADER_SIZE,
    NATIVE_VERSION,
    OpenResult,
    _seal,
    _would_accept,
    open_native,
    open_native_run,
    open_native_scattered,
    seal_native,
    seal_native_gathered,
)
from .noise import Handshake, StaticIdentity, consume_initiation_static
from .peer import Peer
from .replay import WINDOW_SIZE
from .session import Session, padded_length

__all__ = [
    "WireGuard",
    "WireGuardStatistics",
    "PeerStatistics",
    "Event",
    "HandshakeCompleted",
    "HandshakeFailed",
    "KeysZeroed",
    "EndpointChanged",
]

_COUNTER: Final = struct.Struct("<Q")
_U32LE: Final = struct.Struct("<I")
_V4_LEN_SRC: Final = struct.Struct("!2xH8xI")
_V4_DST: Final = struct.Struct("!I")
_V6_LEN_SRC: Final = struct.Struct("!4xH2xQQ")
_V6_DST: Final = struct.Struct("!QQ")
_ZERO_HDR: Final = bytes(HEADROOM)
#: decrypt_batch's run-at-once step (_open_uniform) takes runs of at least this many messages
_UNIFORM_MIN: Final = 8
_OVERHEAD: Final = 32
#: The largest datagram sent: the most a UDP payload can be over IPv4 (65535 - 20 - 8). IPv6
#: allows 20 bytes more; one limit holds whatever family a peer's endpoint has or roams to
#: between a packet's staging and its sending.
_MAX_DATAGRAM: Final = 65507
#: A packet up to this size fits one transport message within _MAX_DATAGRAM whatever the MTU
#: (padding adds at most 15 bytes); larger ones are checked (_fits), in native mode as well
_FITS_ANY: Final = _MAX_DATAGRAM - _OVERHEAD - (PADDING_MULTIPLE - 1)
_JITTER_MS: Final = int(REKEY_TIMEOUT_JITTER_MAX * 1000)
_SERIAL: Final = attrgetter("_serial")  # a peer's place in the order of peers
#: what a native message of one fragment adds to its packet besides the fragment header
_NATIVE_SMALL_OVERHEAD: Final = NATIVE_HEADER_SIZE + HEADROOM + TAG_SIZE
# the first four bytes of a native message of one fragment (type, index 0, count 1, version)
# read as a transport message's type field (little-endian)
_NATIVE_SINGLE: Final = MESSAGE_NATIVE | 1 << 16 | NATIVE_VERSION << 24
_NATIVE_TAIL: Final = struct.Struct("<HH")  # chunk size, reserved
_NATIVE_SINGLE_MIN: Final = NATIVE_HEADER_SIZE + TAG_SIZE + HEADROOM  # an empty packet
#: _open_single: authenticated, but the packet's source is not the sending peer's
_NOT_ALLOWED: Final = 2
#: Rate limit for handshakes per source IP under load (wireguard-go's ratelimiter).
_RATE_PER_SECOND: Final = 20.0
_RATE_BURST: Final = 5.0
#: Handshake messages past mac1 that the interface answers or consumes, a second, whatever
#: their sources, and as many at once. One costs about 25 us (a cookie reply) to 200 us (an
#: initiation consumed and answered): the budget keeps a flood to a fifth of a core at worst,
#: and is twice the rate of MAX_PEERS peers each making a handshake every two minutes. One
#: over it is dropped at about the cost of one with a wrong mac1 (a few us, most of it the
#: batch loop's and mac1's).
_HANDSHAKE_BUDGET: Final = 1000.0
#: The part of the budget kept, under load, for handshake messages with a valid mac2 (a cookie
#: the interface gave their source address; each source rate limited): a flood without cookies
#: takes the budget down to it and no further, so such messages go first with what refills.
_COOKIE_RESERVE: Final = _HANDSHAKE_BUDGET / 10


# -- events ---------------------------------------------------------------------------------


@attrs.frozen
class HandshakeCompleted:
    """A handshake with ``public_key`` completed; a new session is in use.

    For the initiator this is when the response arrived; for the responder when the first
    transport message on the new session arrived (WireGuard's key confirmation).
    """

    public_key: PublicKey
    initiator: bool
    endpoint: Address | None


@attrs.frozen
class HandshakeFailed:
    """No handshake after ``attempts`` tries (REKEY_ATTEMPT_TIME, when wireguard-go gives up
    too): staged packets dropped. A try for a peer with no endpoint sends nothing (it has
    nowhere to go), so ``attempts`` may exceed the initiations sent."""

    public_key: PublicKey
    attempts: int


@attrs.frozen
class KeysZeroed:
    """All sessions with ``public_key`` were erased (3 x REJECT_AFTER_TIME without new keys)."""

    public_key: PublicKey


@attrs.frozen
class EndpointChanged:
    """An authenticated datagram from ``public_key`` came from a new ``endpoint`` (roaming)."""

    public_key: PublicKey
    endpoint: Address


Event = HandshakeCompleted | HandshakeFailed | KeysZeroed | EndpointChanged


# -- statistics -----------------------------------------------------------------------------

_COUNTER_FIELDS: Final = (
    "rx_packets",
    "rx_bytes",
    "tx_packets",
    "tx_bytes",
    "keepalives_received",
    "keepalives_sent",
    "handshake_initiations_sent",
    "handshake_initiations_received",
    "handshake_responses_sent",
    "handshake_responses_received",
    "handshakes_completed",
    "handshakes_failed",
    "cookie_replies_sent",
    "cookie_replies_received",
    "dropped_malformed",
    "dropped_unknown_index",
    "dropped_unknown_peer",
    "dropped_bad_mac",
    "dropped_bad_cookie",
    "dropped_rate_limited",
    "dropped_handshake_budget",
    "dropped_handshake",
    "dropped_replay",
    "dropped_bad_aead",
    "dropped_too_old",
    "dropped_not_allowed_source",
    "dropped_no_route",
    "dropped_staged_overflow",
    "dropped_no_session",
    "dropped_too_large",
    "dropped_incomplete",
    "dropped_split_overflow",
)


@attrs.frozen
class WireGuardStatistics:
    """Counters of one interface since it was created.

    ``rx_*``/``tx_*`` count authenticated transport messages (datagrams; a native-mode message,
    one super-packet in up to 46 datagrams, counts once) and their bytes.
    The ``dropped_*`` fields count datagrams or packets dropped, by reason:

    * ``malformed`` — too short, unknown type, bad framing, or a decrypted packet that is not IP;
    * ``unknown_index`` — a transport message or response for a receiver index we do not have;
    * ``unknown_peer`` — an initiation from a static key that is not a configured peer;
    * ``bad_mac`` — a handshake message with a wrong mac1;
    * ``bad_cookie`` — a cookie reply that does not decrypt;
    * ``rate_limited`` — handshakes over the per-IP rate while under load;
    * ``handshake_budget`` — handshake messages (past mac1) over the interface's budget of
      handshake work, 1000 a second whatever their sources (a flood from many addresses); under
      load, a tenth of it is kept for messages with a valid cookie (mac2);
    * ``handshake`` — a handshake message that does not authenticate, replays an old timestamp,
      or floods (more than one initiation per 20 ms from a peer);
    * ``replay`` — a transport counter already seen or behind the window;
    * ``bad_aead`` — a transport message that does not authenticate;
    * ``too_old`` — a transport message for a session older than REJECT_AFTER_TIME;
    * ``not_allowed_source`` — a decrypted packet whose source is not in the peer's AllowedIPs;
    * ``no_route`` — an outgoing packet whose destination is in no peer's AllowedIPs;
    * ``staged_overflow`` — packets pushed out of a full staging queue (128 per peer);
    * ``no_session`` — staged packets dropped because the handshake gave up;
    * ``too_large`` — an outgoing packet in a batch (:meth:`WireGuard.encrypt_batch`) too large
      for one UDP datagram (see :meth:`WireGuard.send_packet`, which raises instead), or a
      staged packet that became so when its peer left native mode;
    * ``incomplete`` — a native-mode message being put together, pushed out by newer ones
      before its fragments were all in (at most ``MAX_PARTIAL_MESSAGES`` per session at once;
      its fragments arriving later start it again, and each push counts);
    * ``split_overflow`` — segments of native super-packets that the interface split (for a
      device without offload, or for a WireGuard peer among native ones) and found no room
      for: beyond the receive batch's room, or the send side's 16 MiB (segments of a usual
      size never are; a peer's super-packet of one-byte segments may be).
    """

    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    keepalives_received: int = 0
    keepalives_sent: int = 0
    handshake_initiations_sent: int = 0
    handshake_initiations_received: int = 0
    handshake_responses_sent: int = 0
    handshake_responses_received: int = 0
    handshakes_completed: int = 0
    handshakes_failed: int = 0
    cookie_replies_sent: int = 0
    cookie_replies_received: int = 0
    dropped_malformed: int = 0
    dropped_unknown_index: int = 0
    dropped_unknown_peer: int = 0
    dropped_bad_mac: int = 0
    dropped_bad_cookie: int = 0
    dropped_rate_limited: int = 0
    dropped_handshake_budget: int = 0
    dropped_handshake: int = 0
    dropped_replay: int = 0
    dropped_bad_aead: int = 0
    dropped_too_old: int = 0
    dropped_not_allowed_source: int = 0
    dropped_no_route: int = 0
    dropped_staged_overflow: int = 0
    dropped_no_session: int = 0
    dropped_too_large: int = 0
    dropped_incomplete: int = 0
    dropped_split_overflow: int = 0

    @property
    def dropped(self) -> int:
        """All drops together."""
        return sum(getattr(self, f) for f in _COUNTER_FIELDS if f.startswith("dropped_"))


@attrs.frozen
class PeerStatistics:
    """What ``wg show`` reports about one peer."""

    public_key: PublicKey
    endpoint: Address | None
    allowed_ips: tuple[Network, ...]
    rx_bytes: int
    tx_bytes: int
    last_handshake: float | None
    persistent_keepalive: int
    has_session: bool


class _Counters:
    """The mutable counters behind :class:`WireGuardStatistics`."""

    __slots__ = _COUNTER_FIELDS

    def __init__(self) -> None:
        self.rx_packets = 0
        self.rx_bytes = 0
        self.tx_packets = 0
        self.tx_bytes = 0
        self.keepalives_received = 0
        self.keepalives_sent = 0
        self.handshake_initiations_sent = 0
        self.handshake_initiations_received = 0
        self.handshake_responses_sent = 0
        self.handshake_responses_received = 0
        self.handshakes_completed = 0
        self.handshakes_failed = 0
        self.cookie_replies_sent = 0
        self.cookie_replies_received = 0
        self.dropped_malformed = 0
        self.dropped_unknown_index = 0
        self.dropped_unknown_peer = 0
        self.dropped_bad_mac = 0
        self.dropped_bad_cookie = 0
        self.dropped_rate_limited = 0
        self.dropped_handshake_budget = 0
        self.dropped_handshake = 0
        self.dropped_replay = 0
        self.dropped_bad_aead = 0
        self.dropped_too_old = 0
        self.dropped_not_allowed_source = 0
        self.dropped_no_route = 0
        self.dropped_staged_overflow = 0
        self.dropped_no_session = 0
        self.dropped_too_large = 0
        self.dropped_incomplete = 0
        self.dropped_split_overflow = 0

    def snapshot(self) -> WireGuardStatistics:
        return WireGuardStatistics(**{f: getattr(self, f) for f in _COUNTER_FIELDS})


class _RateLimiter:
    """Token bucket per source IP: 20 handshakes a second, bursts of 5 (wireguard-go). An
    IPv6 source is taken by its /64, as the kernel's ratelimiter takes it: one host usually has
    a whole /64, so its addresses share one bucket. An IPv4-mapped one (``::ffff:a.b.c.d``, a
    dual-stack socket's IPv4 sender) is the IPv4 host it stands for."""

    __slots__ = ("_buckets", "_last_gc")

    def __init__(self) -> None:
        self._buckets: dict[str | bytes, tuple[float, float]] = {}
        self._last_gc = 0.0

    def allow(self, ip: str, now: float) -> bool:
        key: str | bytes = ip
        if ":" in ip:
            try:
                ip6 = IPv6Address(ip.partition("%")[0])
            except ValueError:
                pass  # (not an address: its own bucket)
            else:
                v4 = ip6.ipv4_mapped
                key = ip6.packed[:8] if v4 is None else str(v4)
        if now - self._last_gc > 1.0:
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] <= 1.0}
            self._last_gc = now
        tokens, last = self._buckets.get(key, (_RATE_BURST, now))
        tokens = min(_RATE_BURST, tokens + (now - last) * _RATE_PER_SECOND)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True


class _Malformed:
    """Route sentinel for packets that are not IP."""


_MALFORMED: Final = _Malformed()

#: the identity of an interface without a private key (never used to initiate or respond)
_NO_KEY: Final = PrivateKey(bytes(32))


class WireGuard:
    """A WireGuard interface: its identity, peers, sessions and timers. Sans-I/O.

    Args:
        private_key: the interface's private key; ``None`` (or the all-zero key): none, as after
            :meth:`set_private_key` with ``None``.
        listen_port: reported by the UAPI; the transport binds it.
        fwmark: reported by the UAPI; the transport applies it.
        mtu: tunnel MTU (transport messages are padded to multiples of 16 up to it).
        random: ``random(n) -> bytes`` for ephemeral keys, indices, cookies and jitter
            (default :func:`secrets.token_bytes`).
        clock_offset: add to ``now`` to get UNIX time, without ``wall_clock``.
        wall_clock: ``wall_clock() -> float``, UNIX time now (``time.time``), read when a
            handshake is initiated or completes (see the module docstring).
        native_fragment_size: datagram size of native fast-mode fragments (default ``mtu + 32``,
            the size of a full WireGuard transport message).
        load_threshold: handshake messages per second above which the interface considers
            itself under load and demands cookies (mac2). :meth:`set_under_load` forces it.

    Raises:
        ConfigError: an argument is out of range.

    Example:
        >>> from tunflow.wireguard.protocol import PrivateKey, PeerConfig
        >>> a_key, b_key = PrivateKey.generate(), PrivateKey.generate()
        >>> a, b = WireGuard(a_key), WireGuard(b_key)
        >>> _ = a.add_peer(PeerConfig(b_key.public_key(), endpoint="192.0.2.2:51820",
        ...                           allowed_ips="10.0.0.2/32"))
        >>> _ = b.add_peer(PeerConfig(a_key.public_key(), allowed_ips="10.0.0.1/32"))
        >>> ping = bytes.fromhex("4500001c000000004001f98f0a0000010a000002") + bytes(8)
        >>> a.send_packet(ping, now=0.0)            # no session yet: staged, handshake sent
        >>> [(len(d), addr) for d, addr in a.datagrams_to_send()]
        [(148, ('192.0.2.2', 51820))]
    """

    def __init__(
        self,
        private_key: PrivateKey | str | bytes | None,
        *,
        listen_port: int = 0,
        fwmark: int = 0,
        mtu: int = DEFAULT_MTU,
        random: RandomSource | None = None,
        clock_offset: float = 0.0,
        wall_clock: Callable[[], float] | None = None,
        native_fragment_size: int | None = None,
        load_threshold: int = 128,
    ) -> None:
        int_in("listen_port", listen_port, 0, 0xFFFF)
        int_in("fwmark", fwmark, 0, 0xFFFFFFFF)
        int_in("load_threshold", load_threshold, 0, 0x7FFFFFFF)
        self._random: RandomSource = random or secrets.token_bytes
        # timer jitter needs no secrecy: a PRNG seeded from the random source, not a getrandom
        # system call per packet sent (it is drawn on the first data packet after a receive)
        self._jitter_rng = _random_module.Random(int.from_bytes(self._random(8), "little"))
        private_key = _private(private_key)
        if private_key is not None and not any(private_key.raw):
            private_key = None
        self._private_key = private_key
        self._identity = StaticIdentity(private_key or _NO_KEY)
        self._checker = CookieChecker(self._identity, self._random)
        self.listen_port = listen_port
        self.fwmark = fwmark
        if not 0 < mtu <= MAX_MTU:
            raise ConfigError(f"mtu must be 1…{MAX_MTU}, got {mtu}")
        self.mtu = mtu
        frag = native_fragment_size if native_fragment_size is not None else mtu + _OVERHEAD
        if not MIN_FRAGMENT_SIZE <= frag <= 65507:
            raise ConfigError(f"native_fragment_size must be {MIN_FRAGMENT_SIZE}…65507")
        self.native_fragment_size = frag
        self.clock_offset = clock_offset
        self.wall_clock = wall_clock
        self.load_threshold = load_threshold
        self._peers: dict[PublicKey, Peer] = {}
        self._peers_version = 0
        self._serial = 0
        # the peers' wake-ups (see peer.py): what get_timer and handle_timer look at
        self._timers: list[tuple[float, int, Peer]] = []
        self._earlier: Callable[[], None] | None = None
        self._allowed: AllowedIPs[Peer] = AllowedIPs()
        self._sessions: dict[int, Session] = {}
        self._handshakes: dict[int, Peer] = {}
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()
        self._counters = _Counters()
        self._ratelimiter = _RateLimiter()
        self._budget = _HANDSHAKE_BUDGET
        self._budget_at = float("-inf")
        self._load_window_start = 0.0
        self._load_count = 0
        self._under_load_until = float("-inf")
        self._recv_nonce = bytearray(12)
        self._scratch = bytearray(MAX_SEALED_SIZE)
        self._tmp_packets = PacketBatch(capacity=70_000, max_packets=1)
        self._tmp_datagrams = DatagramBatch(capacity=256 * 1024)
        # _send_staged's own: it runs inside send_packet and receive_datagram, which hold the
        # batch above (clearing it there sent the staged message twice)
        self._staged_datagrams = DatagramBatch(capacity=256 * 1024)

    @classmethod
    def from_config(cls, config: InterfaceConfig, **kwargs: object) -> WireGuard:
        """An interface built from an :class:`InterfaceConfig` (other options as keywords).

        Raises:
            ConfigError: a peer is invalid.
        """
        wg = cls(
            config.private_key,
            listen_port=config.listen_port,
            fwmark=config.fwmark,
            mtu=config.mtu,
            **kwargs,  # type: ignore[arg-type]
        )
        for peer in config.peers:
            wg.add_peer(peer)
        return wg

    # -- configuration ----------------------------------------------------------------------

    @property
    def private_key(self) -> PrivateKey | None:
        """The interface's private key; ``None`` once removed (:meth:`set_private_key`)."""
        return self._private_key

    @property
    def public_key(self) -> PublicKey | None:
        """The interface's public key; ``None`` while it has no private key."""
        return None if self._private_key is None else self._identity.public_key

    @property
    def peers(self) -> dict[PublicKey, Peer]:
        """The peers by public key (a copy)."""
        return dict(self._peers)

    @property
    def peers_version(self) -> int:
        """A number every :meth:`add_peer` and :meth:`remove_peer` changes: what was worked out
        from the peers (whether they are all native, say) is out of date once it moved."""
        return self._peers_version

    @property
    def allowed_ips(self) -> AllowedIPs[Peer]:
        """The cryptokey routing table (read it; change it through peers)."""
        return self._allowed

    def peer(self, public_key: PublicKey | str | bytes) -> Peer | None:
        """The peer with ``public_key``, if configured. Here and in every method that names a
        peer, the key may be given as :class:`PeerConfig` takes it: a key, base64, 64 hex
        digits or 32 raw bytes.

        Raises:
            ConfigError: not a 32-byte key.
        """
        return self._peers.get(_public(public_key))

    def set_private_key(
        self, private_key: PrivateKey | str | bytes | None, now: float | None = None
    ) -> None:
        """Change the interface key: every session expires and handshakes restart.

        A peer whose public key equals the new public key is removed (wireguard-go does too).
        The key the interface has already changes nothing (``wg syncconf`` sends it; sessions
        are kept, as wireguard-go keeps them).

        ``None`` (or the all-zero key, what ``wg set … private-key /dev/null`` sends) removes
        the key: the sessions expire as for a new key, so nothing more is sent on them (what
        arrives on them is still received until they time out, as with wireguard-go and the
        kernel); no initiation is made and handshake messages received are dropped
        (``dropped_handshake``), as the kernel does — wireguard-go goes on initiating as the
        all-zero key, which no peer knows. Peers, AllowedIPs and endpoints stay. Setting a
        key again brings the interface back: with a ``now`` (the interface is up), each peer
        with packets waiting starts its handshake at once.

        The key may be given as :class:`InterfaceConfig` takes it: a key, base64, 64 hex
        digits or 32 raw bytes.

        Raises:
            ConfigError: not a 32-byte key (the interface key is left as it was).
        """
        private_key = _private(private_key)
        if private_key is not None and not any(private_key.raw):
            private_key = None
        if private_key == self._private_key:
            return
        self._private_key = private_key
        # keyless: the all-zero key stands in (wireguard-go's own stand-in), so that peers
        # keep a static-static value and a peer with its public key is removed, as there
        self._identity = StaticIdentity(private_key or _NO_KEY)
        self._checker = CookieChecker(self._identity, self._random)
        for pk, peer in list(self._peers.items()):
            if pk == self._identity.public_key:
                self.remove_peer(pk)
                continue
            self._new_handshake(peer)
            for s in peer.sessions():
                s.expire()
        if private_key is not None and now is not None:
            for peer in list(self._peers.values()):
                if any(peer.staged):
                    self._send_initiation(peer, now, is_retry=False)

    def _new_handshake(self, peer: Peer) -> None:
        old = peer.handshake
        self._drop_handshake_index(peer)
        hs = Handshake(self._identity, peer.public_key, peer.preshared_key)
        hs.last_timestamp = old.last_timestamp
        hs.last_initiation_consumed = old.last_initiation_consumed
        peer.handshake = hs
        peer.last_sent_handshake = None

    def start(self, now: float) -> None:
        """The interface comes up: every peer with a persistent keepalive sends one at once,
        which starts its handshake (wireguard-go's ``upLocked``, the kernel's ``wg_open``) —
        so a peer behind NAT is reachable before it sends anything."""
        for peer in self._peers.values():
            if peer.persistent_keepalive:
                self._send_keepalive(peer, now)

    def add_peer(
        self,
        config: PeerConfig,
        now: float | None = None,
        *,
        _static_static: bytes | None = None,
    ) -> Peer:
        """Add a peer, or update the peer with the same public key.

        Updating replaces the endpoint (if given), PSK, keepalive, native mode and the whole
        AllowedIPs list; sessions are kept. With a ``now`` (the interface is up), a persistent
        keepalive that this turns on sends a keepalive at once, as
        :meth:`set_persistent_keepalive` does.

        Returns:
            The peer.

        Raises:
            ConfigError: the public key is our own or a low-order point, or the interface has
                :data:`~.constants.MAX_PEERS` (65536) peers already (as wireguard-go).
        """
        # _static_static: X25519 with our key that the caller computed (uapi.check_set does,
        # to check the key) — not API: a wrong value would fail every handshake, silently
        pk = config.public_key
        if pk == self._identity.public_key:
            raise ConfigError("a peer cannot have the interface's own public key")
        peer = self._peers.get(pk)
        if peer is None:
            if len(self._peers) >= MAX_PEERS:
                raise ConfigError(f"too many peers: more than {MAX_PEERS}")
            try:
                peer = Peer(
                    self._identity,
                    pk,
                    config.preshared_key,
                    config.endpoint,
                    native_mode=config.native_mode,
                    static_static=_static_static,
                )
            except HandshakeError:
                raise ConfigError(f"peer {pk} has an invalid (low-order) public key") from None
            self._serial += 1
            peer._serial = self._serial
            peer._heap = self._timers
            peer._earlier = self._earlier
            self._peers[pk] = peer
        else:
            if config.endpoint is not None:
                peer.endpoint = config.endpoint
            self.set_preshared_key(pk, config.preshared_key)
            peer.native_mode = config.native_mode
            self._allowed.remove_owner(peer)
        for net in config.allowed_ips:
            self._allowed.insert(net, peer)
        self._peers_version += 1
        self.set_persistent_keepalive(pk, config.persistent_keepalive, now)
        return peer

    def remove_peer(self, public_key: PublicKey | str | bytes) -> bool:
        """Remove a peer with its sessions and AllowedIPs. Returns whether it existed.

        Raises:
            ConfigError: not a 32-byte key.
        """
        peer = self._peers.pop(_public(public_key), None)
        if peer is None:
            return False
        self._allowed.remove_owner(peer)
        self._zero_all(peer)
        peer._heap = peer._wake = peer._earlier = None  # its wake-ups are skipped
        self._peers_version += 1
        return True

    def set_preshared_key(
        self, public_key: PublicKey | str | bytes, psk: PresharedKey | str | bytes | None
    ) -> None:
        """Set a peer's PSK (used from the next handshake): a key, base64, 64 hex digits or 32
        raw bytes, as :class:`PeerConfig` takes it (``None``: none).

        Raises:
            ConfigError: no such peer, or not a 32-byte key (the PSK is left as it was).
        """
        peer = self._require(public_key)
        peer.preshared_key = _psk(psk) or PresharedKey()
        peer.handshake.preshared_key = peer.preshared_key

    def set_endpoint(
        self, public_key: PublicKey | str | bytes, endpoint: Address | str | tuple[Any, ...] | None
    ) -> None:
        """Set a peer's endpoint (``None``: none): an ``(ip, port)`` tuple or
        ``"192.0.2.1:51820"``/``"[2001:db8::1]:51820"``, as :class:`PeerConfig` takes it.

        Raises:
            ConfigError: no such peer, or not an IP literal with a port in 1…65535.
        """
        peer = self._require(public_key)
        peer.endpoint = None if endpoint is None else parse_endpoint(endpoint)

    def set_persistent_keepalive(
        self, public_key: PublicKey | str | bytes, interval: int, now: float | None = None
    ) -> None:
        """Set a peer's persistent keepalive interval (seconds, 0 = off).

        Turning it on with a ``now`` (the interface is up) sends a keepalive right away, as
        wireguard-go does; without one (as :meth:`add_peer` without ``now``) the first goes
        an interval after the next authenticated packet sent or received.

        Raises:
            ConfigError: no such peer or interval out of range.
        """
        peer = self._require(public_key)
        int_in("persistent keepalive", interval, 0, 0xFFFF)
        was_off = peer.persistent_keepalive == 0
        peer.persistent_keepalive = interval
        if interval == 0:
            peer.persistent_at = None
        elif was_off and now is not None:
            self._send_keepalive(peer, now)

    def set_allowed_ips(
        self, public_key: PublicKey | str | bytes, networks: str | Iterable[str | Network]
    ) -> None:
        """Replace a peer's AllowedIPs: prefixes, or one string of them separated by commas
        (``"10.0.0.2/32, fd00::2/128"``), as :class:`PeerConfig` takes them.

        Raises:
            ConfigError: no such peer, or a prefix is invalid (the peer's AllowedIPs are left
                as they were).
        """
        peer = self._require(public_key)
        nets = _networks(networks)
        self._allowed.remove_owner(peer)
        for net in nets:
            self._allowed.insert(net, peer)

    def add_allowed_ip(self, public_key: PublicKey | str | bytes, network: str | Network) -> None:
        """Give ``network`` to a peer (taking it from any other).

        Raises:
            ConfigError: no such peer, or the prefix is invalid.
        """
        self._allowed.insert(network, self._require(public_key))

    def remove_allowed_ip(
        self, public_key: PublicKey | str | bytes, network: str | Network
    ) -> bool:
        """Take ``network`` (host bits cleared) from a peer's AllowedIPs if the peer holds it,
        as wireguard-go does for ``allowed_ip=-…``: a prefix the peer does not have — another
        peer's, or a longer or shorter one — is left alone. Returns whether it was removed.

        Raises:
            ConfigError: no such peer, or the prefix is invalid.
        """
        peer = self._require(public_key)
        return self._allowed.remove(network, peer) is not None

    def _require(self, public_key: PublicKey | str | bytes) -> Peer:
        pk = _public(public_key)
        peer = self._peers.get(pk)
        if peer is None:
            raise ConfigError(f"no peer with public key {pk}")
        return peer

    def set_under_load(self, now: float, duration: float = UNDER_LOAD_AFTER_TIME) -> None:
        """Treat the interface as under load until ``now + duration`` (the transport may know
        better, e.g. from its queue depth): handshakes then need a valid mac2 cookie."""
        self._under_load_until = max(self._under_load_until, now + duration)

    def under_load(self, now: float) -> bool:
        """Whether handshakes currently need a cookie (mac2)."""
        return now < self._under_load_until

    # -- results ----------------------------------------------------------------------------

    def datagrams_to_send(self, now: float | None = None) -> list[tuple[bytes, Address]]:
        """Datagrams produced outside the batch paths (handshakes, cookies, keepalives, staged
        packets), with their destinations. Drains the queue. ``now`` is accepted for symmetry
        with aioquic and unused."""
        out, self._outbox = self._outbox, []
        return out

    @property
    def has_output(self) -> bool:
        """Whether :meth:`datagrams_to_send` or :meth:`next_event` has anything (a lone
        packet's trip skips both when not)."""
        return bool(self._outbox or self._events)

    def next_event(self) -> Event | None:
        """The next :data:`Event`, or ``None``.

        Events wait in an unbounded queue until taken, one per handshake, expiry and
        authenticated roam: a caller drives the interface and takes its events in turn, as the
        runtime does after every batch and timer tick, and the ``wireguard`` stage on its
        timer.
        """
        return self._events.popleft() if self._events else None

    def statistics(self) -> WireGuardStatistics:
        """A snapshot of the interface counters."""
        return self._counters.snapshot()

    def count_dropped(self, reason: str, count: int = 1) -> None:
        """Count ``count`` packets dropped outside the protocol (by the runtime splitting
        super-packets) under ``dropped_<reason>``.

        Raises:
            ValueError: no such counter.
        """
        field = f"dropped_{reason}"
        if field not in _COUNTER_FIELDS:
            raise ValueError(f"no drop counter {field!r}")
        c = self._counters
        setattr(c, field, getattr(c, field) + count)

    def unsent(self, address: Address | None, nbytes: int) -> None:
        """Datagrams to ``address`` (``nbytes`` in all) that the transport could not send: taken
        off the bytes counted as sent — the interface's and those of the peer whose endpoint
        it is — as wireguard-go counts only what was sent (``wg show``'s transfer). A
        transport's ``on_unsent`` hook."""
        if address is None or nbytes <= 0:
            return
        c = self._counters
        c.tx_bytes = max(0, c.tx_bytes - nbytes)
        for peer in self._peers.values():
            if peer.endpoint == address:
                peer.tx_bytes = max(0, peer.tx_bytes - nbytes)
                return

    def peer_statistics(self, public_key: PublicKey | str | bytes) -> PeerStatistics:
        """A snapshot of one peer's state as ``wg show`` reports it.

        Raises:
            ConfigError: no such peer.
        """
        peer = self._require(public_key)
        return PeerStatistics(
            public_key=peer.public_key,
            endpoint=peer.endpoint,
            allowed_ips=tuple(self._allowed.networks(peer)),
            rx_bytes=peer.rx_bytes,
            tx_bytes=peer.tx_bytes,
            last_handshake=peer.last_handshake,
            persistent_keepalive=peer.persistent_keepalive,
            has_session=peer.current is not None,
        )

    # -- timers -----------------------------------------------------------------------------

    def on_earlier_timer(self, hook: Callable[[], None] | None) -> None:
        """Call ``hook()`` whenever :meth:`get_timer` may have an earlier answer than it had:
        a deadline was set before every other (a packet starting a handshake on an idle
        interface, a keepalive becoming due, a peer added with a persistent keepalive). A timer
        task waits on this instead of reading :meth:`get_timer` again and again.

        The hook runs inside the call that set the deadline (:meth:`send_packet`,
        :meth:`encrypt_batch`, :meth:`receive_datagram`, :meth:`handle_timer`, :meth:`get_timer`
        itself, configuration changes) and may run when nothing moved earlier; it must not call
        back into this object. One hook at a time: a new one replaces the last (``None``: none).
        """
        self._earlier = hook
        for peer in self._peers.values():
            peer._earlier = hook

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next be called, or ``None`` for never."""
        heap = self._timers
        if len(heap) > 2 * len(self._peers) + 64:
            # wake-ups left behind (deadlines moved earlier, peers removed): the live ones only
            heap[:] = [(p._wake, p._serial, p) for p in self._peers.values() if p._wake is not None]
            heapq.heapify(heap)
        while heap:
            t, _, peer = heap[0]
            if peer._wake == t and peer._heap is heap:
                deadline = peer.next_deadline()
                if deadline == t:
                    return t
                heapq.heappop(heap)
                peer._wake = None
                if deadline is not None:  # moved later since
                    peer._arm(deadline)
            else:
                heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every deadline at or before ``now``."""
        heap = self._timers
        due: list[Peer] = []
        while heap and heap[0][0] <= now:
            t, _, peer = heapq.heappop(heap)
            if peer._wake == t and peer._heap is heap:
                peer._wake = None
                due.append(peer)
        due.sort(key=_SERIAL)  # in the order of the peers, as they were added
        for peer in due:
            if peer.retransmit_at is not None and peer.retransmit_at <= now:
                peer.retransmit_at = None
                self._expired_retransmit(peer, now)
            if peer.keepalive_at is not None and peer.keepalive_at <= now:
                peer.keepalive_at = None
                sent = self._counters.tx_packets
                self._send_keepalive(peer, now)
                if peer.need_another_keepalive:
                    peer.need_another_keepalive = False
                    # wireguard-go (expiredSendKeepalive) and the kernel re-arm the timer here,
                    # but their keepalive goes out after, from the send queue, and its "sent"
                    # hook cancels it again: only when no transport message went out (a
                    # handshake started instead) does the second keepalive stay due
                    if self._counters.tx_packets == sent:
                        peer.keepalive_at = now + KEEPALIVE_TIMEOUT
                        peer._arm(peer.keepalive_at)
            if peer.new_handshake_at is not None and peer.new_handshake_at <= now:
                peer.new_handshake_at = None
                self._send_initiation(peer, now, is_retry=False)
            if peer.zero_keys_at is not None and peer.zero_keys_at <= now:
                peer.zero_keys_at = None
                self._zero_all(peer)
                self._events.append(KeysZeroed(peer.public_key))
            if peer.persistent_at is not None and peer.persistent_at <= now:
                peer.persistent_at = None
                if peer.persistent_keepalive:
                    self._send_keepalive(peer, now)
            deadline = peer.next_deadline()
            if deadline is not None:
                peer._arm(deadline)

    def _expired_retransmit(self, peer: Peer, now: float) -> None:
        if peer.handshake_attempts > MAX_TIMER_HANDSHAKES:
            peer.keepalive_at = None
            self._counters.dropped_no_session += sum(1 for p in peer.staged if p)
            peer.staged.clear()
            if peer.zero_keys_at is None:
                peer.zero_keys_at = now + REJECT_AFTER_TIME * 3
                peer._arm(peer.zero_keys_at)
            self._counters.handshakes_failed += 1
            self._events.append(HandshakeFailed(peer.public_key, peer.handshake_attempts + 1))
        else:
            peer.handshake_attempts += 1
            self._send_initiation(peer, now, is_retry=True)

    def _wall(self, now: float) -> float:
        """UNIX time now (see the module docstring)."""
        wall = self.wall_clock
        return now + self.clock_offset if wall is None else wall()

    def _jitter(self) -> float:
        # whole milliseconds in [0, 334), as wireguard-go; random() is one C call where
        # randrange() runs a dozen lines of Python (this is drawn once per burst of data)
        return int(self._jitter_rng.random() * _JITTER_MS) / 1000.0

    # -- sending ----------------------------------------------------------------------------

    def send_packet(self, packet: bytes | bytearray | memoryview, now: float) -> None:
        """Send one IP packet (slow path): its datagram appears in :meth:`datagrams_to_send`.

        Packets without a route are counted (``dropped_no_route``) and dropped.

        Raises:
            PacketTooLargeError: the packet is longer than 65535 bytes, or, for a peer in
                WireGuard mode, its transport message (the packet padded as the MTU says, plus
                32 bytes) would not fit one UDP datagram of 65507 bytes — the largest over IPv4,
                and the limit whatever the endpoint's family. That allows packets of at most
                65460 to 65475 bytes, depending on how the MTU caps the padding: 65464 at the
                default MTU of 1420. Native mode cuts a message into datagrams, so it takes any
                packet up to 65535 bytes. Raised before anything changes: nothing is staged,
                sent or counted.
        """
        if len(packet) > _FITS_ANY:
            self._check_size(packet)
        batch = self._tmp_packets
        batch.clear()
        batch.append(packet)
        out = self._tmp_datagrams
        out.clear()
        self.encrypt_batch(batch, now, out)
        self._outbox.extend(out.to_pairs())

    def _check_size(self, packet: bytes | bytearray | memoryview) -> None:
        """send_packet's check that ``packet`` fits what its peer sends it in.

        Raises:
            PacketTooLargeError: it does not.
        """
        n = len(packet)
        if n > MAX_PACKET_SIZE:
            raise PacketTooLargeError(f"a {n}-byte packet is longer than IP allows (65535 bytes)")
        peer = self._route(packet)
        if peer is not None and not self._fits(n, peer.native_mode):
            limit = self._max_wireguard_packet()
            raise PacketTooLargeError(
                f"a {n}-byte packet does not fit one UDP datagram ({_MAX_DATAGRAM} bytes) as a "
                f"WireGuard transport message: at most {limit} bytes at MTU {self.mtu}"
            )

    def _route(self, packet: bytes | bytearray | memoryview) -> Peer | None:
        """The peer whose AllowedIPs hold the destination of ``packet`` (as encrypt_batch routes
        it), or ``None`` (no route, or not an IP packet)."""
        n = len(packet)
        v = packet[0] >> 4 if n else 0
        if v == 4 and n >= 20:
            return self._allowed.v4.lookup(_V4_DST.unpack_from(packet, 16)[0])
        if v == 6 and n >= 40:
            hi, lo = _V6_DST.unpack_from(packet, 24)
            return self._allowed.v6.lookup((hi << 64) | lo)
        return None

    def _max_wireguard_packet(self) -> int:
        """The largest packet a peer in WireGuard mode is sent at this MTU: its transport
        message fits one UDP datagram of 65507 bytes."""
        n = _MAX_DATAGRAM - _OVERHEAD
        while padded_length(n, self.mtu) + _OVERHEAD > _MAX_DATAGRAM:
            n -= 1  # (at most 15 steps: the padding adds at most 15 bytes)
        return n

    def _fits(self, n: int, native: bool) -> bool:
        """Whether an ``n``-byte packet can be sent to a peer in that mode."""
        if n <= _FITS_ANY:
            return True
        if native:
            return n <= MAX_PACKET_SIZE
        return padded_length(n, self.mtu) + _OVERHEAD <= _MAX_DATAGRAM

    def encrypt_batch(self, packets: PacketBatch, now: float, out: DatagramBatch) -> int:
        """Route and encrypt a batch of IP packets into ``out`` — the outbound hot path.

        Consecutive packets for the same peer are encrypted in one run
        (:meth:`Session.encrypt_batch`). Packets for a peer without a usable session are
        copied to its staging queue and a handshake starts (the initiation goes to
        :meth:`datagrams_to_send`). Peers in native mode get one sealed message per packet
        (super-packets welcome, the virtio-net header travels along). A packet too large for
        one datagram (see :meth:`send_packet`) is counted (``dropped_too_large``) and dropped,
        never raised: a batch is data, as in a pipeline.

        Args:
            packets: IP packets (``vnet_hdr`` batches only matter for native-mode peers;
                WireGuard peers need packets of at most MTU size — split super-packets first).
            now: current time.
            out: the datagrams (header, ciphertext, tag) are appended here with each peer's
                endpoint as address. Size it for ``sum(len + 48)`` over the batch.

        Returns:
            How many packets were consumed, from the start of the batch; less than
            ``len(packets)`` only when ``out`` filled up (send it, clear it, call again with
            the rest).
        """
        offs, lens = packets.offsets, packets.lengths
        n = len(offs)
        if n == 1 and self._encrypt_lone(packets, now, out):
            return 1
        buf = packets.buffer
        # one C-level max per batch: runs go through the checking step only when a packet may
        # not fit (a device's packets are at most its MTU, super-packets at most 65535 bytes)
        send_run = self._send_run_checked if n and max(lens) > _FITS_ANY else self._send_run
        allowed = self._allowed
        lookup4, lookup6 = allowed.v4.lookup, allowed.v6.lookup
        u32, u64x2 = _V4_DST.unpack_from, _V6_DST.unpack_from
        last4 = last6 = -1
        owner4: Peer | None = None
        owner6: Peer | None = None
        run_peer: Peer | _Malformed | None = _MALFORMED
        run_start = 0
        for i in range(n):
            off = offs[i]
            ln = lens[i]
            peer: Peer | _Malformed | None
            v = buf[off] >> 4 if ln else 0
            if v == 4 and ln >= 20:
                (dst,) = u32(buf, off + 16)
                if dst != last4:
                    last4, owner4 = dst, lookup4(dst)
                peer = owner4
            elif v == 6 and ln >= 40:
                hi, lo = u64x2(buf, off + 24)
                dst = (hi << 64) | lo
                if dst != last6:
                    last6, owner6 = dst, lookup6(dst)
                peer = owner6
            else:
                peer = _MALFORMED
            if peer is not run_peer:
                if i > run_start:
                    done = send_run(run_peer, packets, run_start, i, now, out)
                    if done < i - run_start:
                        return run_start + done
                run_peer, run_start = peer, i
        if n > run_start:
            done = send_run(run_peer, packets, run_start, n, now, out)
            return run_start + done
        return n

    def _usable(self, s: Session | None, now: float) -> bool:
        return (
            s is not None
            and s.send_counter < REJECT_AFTER_MESSAGES
            and s.native_send_counter < REJECT_AFTER_MESSAGES
            and now - s.created < REJECT_AFTER_TIME
        )

    def _stage(self, peer: Peer, packet: bytes) -> None:
        staged = peer.staged
        if len(staged) >= MAX_STAGED_PACKETS and staged[0]:
            # (not the empty stand-in for a keepalive: no packet is lost with it)
            self._counters.dropped_staged_overflow += 1
        staged.append(packet)

    def _encrypt_lone(self, packets: PacketBatch, now: float, out: DatagramBatch) -> bool:
        """The one packet of ``packets``, to a peer in the middle of a session, encrypted into
        ``out`` — what :meth:`encrypt_batch` and :meth:`_send_run` do, with none of a batch's
        setup: about a third of the Python lines per lone packet (a ping, a request), so a
        round trip through a tunnel adds less (``benchmarks/vpn.py``'s ping). A native-mode
        peer gets a message of one fragment, as :meth:`_seal_native_run` seals it.

        Returns ``False``, having changed nothing, whenever anything else is due (no route or
        session, staged packets, a rekey, a packet that may not fit, no room): the general
        path then takes the packet.
        """
        off = packets.offsets[0]
        n = packets.lengths[0]
        if n > _FITS_ANY or (
            n > self.mtu and n > self.native_fragment_size - _NATIVE_SMALL_OVERHEAD
        ):
            # may not fit a datagram; or a super-packet, which neither way here takes (not
            # worth routing it twice)
            return False
        packet = packets.view[off : off + n]
        peer = self._route(packet)
        if peer is None or peer.staged:
            return False
        s = peer.current
        endpoint = peer.endpoint
        # usable, and sending this one starts no rekey (_keep_key_fresh_sending)
        if (
            s is None
            or endpoint is None
            or s.send_counter >= REKEY_AFTER_MESSAGES
            or s.native_send_counter >= REKEY_AFTER_MESSAGES
            or now - s.created >= (REKEY_AFTER_TIME if s.is_initiator else REJECT_AFTER_TIME)
        ):
            return False
        before = out.end
        if peer.native_mode:
            if not self._seal_native_lone(s, packets, off, n, out, endpoint):
                return False
        elif not s.encrypt_one(packet, out, endpoint, self.mtu):
            return False
        nbytes = out.end - before
        peer.tx_bytes += nbytes
        c = self._counters
        c.tx_packets += 1
        c.tx_bytes += nbytes
        peer.on_any_authenticated_traversal(now)
        peer.on_any_authenticated_sent()
        if peer.new_handshake_at is None:
            peer.on_data_sent(now, self._jitter())
        return True

    def _seal_native_lone(
        self,
        s: Session,
        packets: PacketBatch,
        off: int,
        n: int,
        out: DatagramBatch,
        endpoint: Address,
    ) -> bool:
        """Packet ``off``/``n`` of ``packets`` as a native message of one fragment at the end
        of ``out``, as :meth:`_seal_native_run` seals a small packet (that loop keeps its own
        copy of these lines: a call per packet there costs small-packet throughput); ``False``
        if it takes more than one fragment or ``out`` has no room."""
        need = n + _NATIVE_SMALL_OVERHEAD
        if need > self.native_fragment_size or out.room() < need:
            return False
        if not packets.vnet_hdr:
            packets.buffer[off - HEADROOM : off] = _ZERO_HDR
        pos = out.end
        data = pos + NATIVE_HEADER_SIZE
        end = pos + need
        chunk = self.native_fragment_size - NATIVE_HEADER_SIZE
        out.buffer[pos:data] = _seal(
            s, packets.view[off - HEADROOM : off + n], 1, chunk, out.view[data:end]
        )
        out.offsets.append(pos)
        out.lengths.append(need)
        out.addresses.append(endpoint)
        out.end = end
        return True

    def _send_run(
        self,
        peer: Peer | _Malformed | None,
        packets: PacketBatch,
        start: int,
        stop: int,
        now: float,
        out: DatagramBatch,
    ) -> int:
        count = stop - start
        if peer is None:
            self._counters.dropped_no_route += count
            return count
        if isinstance(peer, _Malformed):
            self._counters.dropped_malformed += count
            return count
        s = peer.current
        if not self._usable(s, now) or peer.endpoint is None:
            self._stage_run(peer, packets, start, stop)
            self._send_initiation(peer, now, is_retry=False)
            return count
        assert s is not None
        if peer.staged:
            self._send_staged(peer, now)
        before = out.end + out.gathered_bytes
        if peer.native_mode:
            done = self._seal_native_run(peer, s, packets, start, stop, out)
        else:
            done = s.encrypt_batch(packets, out, peer.endpoint, self.mtu, range(start, stop))
        if done:
            nbytes = out.end + out.gathered_bytes - before
            peer.tx_bytes += nbytes
            c = self._counters
            c.tx_packets += done
            c.tx_bytes += nbytes
            peer.on_any_authenticated_traversal(now)
            peer.on_any_authenticated_sent()
            if peer.new_handshake_at is None:
                peer.on_data_sent(now, self._jitter())
            self._keep_key_fresh_sending(peer, now)
        if done < count and not self._usable(s, now):
            # the counter ran out mid-run: stage the rest behind a new handshake
            self._stage_run(peer, packets, start + done, stop)
            self._send_initiation(peer, now, is_retry=False)
            return count
        return done

    def _send_run_checked(
        self,
        peer: Peer | _Malformed | None,
        packets: PacketBatch,
        start: int,
        stop: int,
        now: float,
        out: DatagramBatch,
    ) -> int:
        """:meth:`_send_run` for a batch that holds a packet which may not fit one datagram:
        those that do not fit the peer's mode are counted and dropped (never staged), the
        others go as runs around them. Returns as :meth:`_send_run`."""
        if not isinstance(peer, Peer):
            return self._send_run(peer, packets, start, stop, now, out)
        lens = packets.lengths
        native = peer.native_mode
        i = start
        while i < stop:
            if not self._fits(lens[i], native):
                self._counters.dropped_too_large += 1
                i += 1
                continue
            j = i + 1
            while j < stop and self._fits(lens[j], native):
                j += 1
            done = self._send_run(peer, packets, i, j, now, out)
            if done < j - i:
                return i + done - start
            i = j
        return stop - start

    def _stage_run(self, peer: Peer, packets: PacketBatch, start: int, stop: int) -> None:
        # Staged with their virtio-net header (zero for a batch without), whatever the peer's
        # mode: the mode may change before the session comes up, and _send_staged sends each
        # in the mode in force then (a packet staged bare and sealed natively lost its first
        # ten bytes to the header, one staged with its header and sent as WireGuard was not IP).
        view = packets.view
        vnet = packets.vnet_hdr
        for i in range(start, stop):
            off, n = packets.offsets[i], packets.lengths[i]
            if vnet:
                self._stage(peer, bytes(view[off - HEADROOM : off + n]))
            else:
                self._stage(peer, _ZERO_HDR + view[off : off + n])

    def _seal_native_run(
        self,
        peer: Peer,
        s: Session,
        packets: PacketBatch,
        start: int,
        stop: int,
        out: DatagramBatch,
    ) -> int:
        buf, view = packets.buffer, packets.view
        offs, lens = packets.offsets, packets.lengths
        zero = not packets.vnet_hdr
        frag = self.native_fragment_size
        endpoint = peer.endpoint
        if out.gather:
            seal: Callable[..., int] = seal_native_gathered
            scratch: object = None  # the batch's own slots
        else:
            seal, scratch = seal_native, self._scratch
        # A message of one fragment (a TCP ACK, any small packet) is sealed here, straight into
        # the arena behind its header — what seal_native writes, without its scratch buffer,
        # layout tables and checks (4.5 -> ~1.9 us a message); runs of them to one peer share
        # a UDP_SEGMENT send.
        small = frag - NATIVE_HEADER_SIZE - HEADROOM - TAG_SIZE  # the largest such packet
        obuf, oview = out.buffer, out.view
        ocap = len(obuf)
        o_offs, o_lens, o_addrs = out.offsets, out.lengths, out.addresses
        chunk, seal_one = frag - NATIVE_HEADER_SIZE, _seal  # native's own header and AEAD
        done = 0
        for i in range(start, stop):
            off, n = offs[i], lens[i]
            if zero:
                buf[off - HEADROOM : off] = _ZERO_HDR
            if n <= small:
                counter = s.native_send_counter
                pos = out.end
                end = pos + NATIVE_HEADER_SIZE + HEADROOM + n + TAG_SIZE
                if end > ocap or counter >= REJECT_AFTER_MESSAGES:
                    break
                data = pos + NATIVE_HEADER_SIZE
                obuf[pos:data] = seal_one(
                    s, view[off - HEADROOM : off + n], 1, chunk, oview[data:end]
                )
                o_offs.append(pos)
                o_lens.append(end - pos)
                o_addrs.append(endpoint)
                out.end = end
            elif not seal(s, view[off - HEADROOM : off + n], out, endpoint, frag, scratch):
                break
            done += 1
        return done

    def _keep_key_fresh_sending(self, peer: Peer, now: float) -> None:
        s = peer.current
        if s is None:
            return
        sent = max(s.send_counter, s.native_send_counter)
        if sent > REKEY_AFTER_MESSAGES or (s.is_initiator and now - s.created > REKEY_AFTER_TIME):
            self._send_initiation(peer, now, is_retry=False)

    def _keep_key_fresh_receiving(self, peer: Peer, now: float) -> None:
        if peer.sent_last_minute_handshake:
            return
        s = peer.current
        if (
            s is not None
            and s.is_initiator
            and now - s.created > REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
        ):
            peer.sent_last_minute_handshake = True
            self._send_initiation(peer, now, is_retry=False)

    def _send_keepalive(self, peer: Peer, now: float) -> None:
        if not peer.staged:
            peer.staged.append(b"")
        self._send_staged(peer, now)

    def _send_staged(self, peer: Peer, now: float) -> None:
        if not peer.staged:
            return
        s = peer.current
        if not self._usable(s, now):
            self._send_initiation(peer, now, is_retry=False)
            return
        assert s is not None
        endpoint = peer.endpoint
        if endpoint is None:
            return
        c = self._counters
        sent = data_sent = exhausted = False
        native = peer.native_mode
        staged = peer.staged
        while staged and not exhausted:
            # each staged packet has its virtio-net header in front (see _stage_run) and goes
            # in the mode in force now; b"" is a keepalive
            packet = staged.popleft()
            datagrams: list[bytes] = []
            messages = 0
            if native and packet:
                out = self._staged_datagrams
                out.clear()
                if seal_native(s, packet, out, endpoint, self.native_fragment_size, self._scratch):
                    datagrams = [d for d, _ in out.to_pairs()]
                    messages = 1
                else:  # the counter ran out
                    staged.appendleft(packet)
                    exhausted = True
            else:
                parts = self._wireguard_parts(packet)
                for k, part in enumerate(parts):
                    d = s.encrypt(part, self.mtu)
                    if d is None:  # the counter ran out: the rest waits for a new session
                        if k == 0:
                            staged.appendleft(packet)
                        else:
                            staged.extendleft(_ZERO_HDR + p for p in reversed(parts[k:]))
                        exhausted = True
                        break
                    datagrams.append(d)
                messages = len(datagrams)
            if not messages:
                continue
            sent = True
            for d in datagrams:
                self._outbox.append((d, endpoint))
                peer.tx_bytes += len(d)
                c.tx_bytes += len(d)
            c.tx_packets += messages
            if packet:
                data_sent = True
            else:
                c.keepalives_sent += 1
        if sent:
            peer.on_any_authenticated_traversal(now)
            peer.on_any_authenticated_sent()
            if data_sent and peer.new_handshake_at is None:
                peer.on_data_sent(now, self._jitter())
            self._keep_key_fresh_sending(peer, now)
        if exhausted:
            self._send_initiation(peer, now, is_retry=False)

    def _wireguard_parts(self, staged: bytes) -> list[bytes]:
        """The packets WireGuard mode sends for a staged one: ``[b""]`` for a keepalive, the
        packet behind its virtio-net header — or, when the header holds an offload
        super-packet or a checksum to complete (staged while the peer was in native mode), its
        segments with complete checksums. What cannot be sent is counted and left out
        (``dropped_malformed``: a header that does not split; ``dropped_too_large``)."""
        if not staged:
            return [b""]
        if not staged[0] and not staged[1]:  # no flags, no GSO: a plain packet
            parts = [staged[HEADROOM:]]
        else:
            parts = []
            try:
                count = gso_segment_count(staged)
                batch = PacketBatch(capacity=len(staged) + count * (HEADROOM + 256))
                i = 0
                while i < count:  # (in rounds should the headers be longer than room was made)
                    batch.clear()
                    i = gso_split(staged, batch, start=i)
                    parts += batch.to_list()
            except (PacketError, OffloadError):
                self._counters.dropped_malformed += 1
                return []
        fits = [p for p in parts if self._fits(len(p), False)]
        self._counters.dropped_too_large += len(parts) - len(fits)
        return fits

    def _new_index(self) -> int:
        while True:
            index = int.from_bytes(self._random(4), "little")
            if index and index not in self._sessions and index not in self._handshakes:
                return index

    def _drop_handshake_index(self, peer: Peer) -> None:
        index = peer.handshake.local_index
        if index and self._handshakes.get(index) is peer:
            del self._handshakes[index]

    def _send_initiation(self, peer: Peer, now: float, is_retry: bool) -> None:
        if self._private_key is None:
            return  # no identity to initiate with (the kernel's has_identity check)
        if not is_retry:
            peer.handshake_attempts = 0
        last = peer.last_sent_handshake
        if last is not None and now - last < REKEY_TIMEOUT:
            if is_retry:
                # a response sent since our initiation holds the retry back (initiations
                # crossed: answering the peer's dropped ours): it goes when the limit allows
                peer.retransmit_at = last + REKEY_TIMEOUT + self._jitter()
                peer._arm(peer.retransmit_at)
            return
        peer.last_sent_handshake = now
        endpoint = peer.endpoint
        if endpoint is not None:
            self._drop_handshake_index(peer)
            index = self._new_index()
            msg = peer.handshake.create_initiation(index, tai64n(self._wall(now)), self._random)
            self._handshakes[index] = peer
            raw = bytearray(msg.encode())
            peer.cookies.add_macs(raw, now)
            peer.on_any_authenticated_traversal(now)
            peer.on_any_authenticated_sent()
            self._outbox.append((bytes(raw), endpoint))
            peer.tx_bytes += INITIATION_SIZE
            self._counters.handshake_initiations_sent += 1
        peer.on_handshake_initiated(now, self._jitter())

    # -- receiving --------------------------------------------------------------------------

    def receive_datagram(
        self, data: bytes | bytearray | memoryview, addr: Address, now: float
    ) -> list[bytes]:
        """Process one datagram from ``addr`` (slow path).

        Returns:
            The IP packets it carried (none for handshakes, keepalives and drops; for a native
            fast-mode message, the super-packet with its 10-byte virtio-net header in front).
        """
        batch = self._tmp_datagrams
        batch.clear()
        if len(data) > batch.capacity:
            self._counters.dropped_malformed += 1
            return []
        batch.append(data, address=addr)
        if data and data[0] == MESSAGE_NATIVE:
            capacity = MAX_SEALED_SIZE + HEADROOM  # a fragment may complete a whole message
        else:
            capacity = len(data) + 2 * HEADROOM + 16
        out = PacketBatch(capacity=capacity, max_packets=2)
        self.decrypt_batch(batch, now, out)
        if out.vnet_hdr:
            return [bytes(out.with_header(i)) for i in range(len(out))]
        return out.to_list()

    def _open_uniform(self, datagrams: DatagramBatch, now: float, out: PacketBatch) -> int:
        """decrypt_batch's first step for what a bulk transfer delivers — transport messages of
        one session, one size, with consecutive counters, from one address, laid out at one
        stride (one or more ``UDP_GRO`` reads): their headers are checked a byte position at a
        time across the run (extended slices, loops in C), the replay window is marked once for
        the run, the decrypted packets' IP headers are checked the same way, and per message
        only the nonce and the AEAD call are left. Returns how many datagrams it took from the
        start (0: none — the loop takes the batch as it is); a message that fails to open ends
        the run there and is left to the loop. What comes out, is counted and is recorded is
        what the loop would make of the same datagrams, with one difference: the counters the
        headers say are not read (the header is not authenticated; message i opens only if its
        sender sealed it with c0 + i, which is what is recorded). A message whose header
        counter was changed on the way opens here — sent by the peer, never seen before —
        where the loop, opening it with the changed counter, drops it (``bad_aead``). Reading
        them would cost some 57 ns a message (eight strided compares and a packed ramp a run:
        2 % of the step), for the same packets let through."""
        offs, lens, addrs = datagrams.offsets, datagrams.lengths, datagrams.addresses
        n = len(offs)
        o0, ln = offs[0], lens[0]
        stride = offs[1] - o0
        plen = ln - _OVERHEAD
        if plen < 20 or stride < ln:
            return 0
        m = n
        if lens.count(ln) != n or offs != list(range(o0, o0 + n * stride, stride)):
            m = 1  # the run is the datagrams of the first one's size at its stride
            while m < n and lens[m] == ln and offs[m] == o0 + m * stride:
                m += 1
        addr = addrs[0]
        # one address for the run (the same object for every segment of a read)
        if (addrs.count(addr) if m == n else addrs[:m].count(addr)) != m:
            return 0
        obuf = out.buffer
        oend = out.end
        ostride = plen + HEADROOM
        fit = (len(obuf) - oend - HEADROOM - plen) // ostride + 1
        if m < _UNIFORM_MIN or fit < m or out.max_packets - len(out.offsets) < m:
            return 0  # (short of room, the loop fills it as far as it goes)
        # the headers: type 4 and three zero bytes, one receiver (neither is authenticated)
        buf = datagrams.buffer
        stop = o0 + (m - 1) * stride + 1
        if buf[o0:stop:stride].count(MESSAGE_TRANSPORT) != m:
            return 0
        for f in (1, 2, 3):
            if buf[o0 + f : stop + f : stride].count(0) != m:
                return 0
        for f in (4, 5, 6, 7):
            col = buf[o0 + f : stop + f : stride]
            if col.count(col[0]) != m:
                return 0
        _, receiver, c0 = TRANSPORT_HEADER.unpack_from(buf, o0)
        s = self._sessions.get(receiver)
        if s is None or now - s.created >= REJECT_AFTER_TIME:
            return 0
        replay = s.replay
        if c0 <= replay._last or c0 + m > replay.limit:
            return 0
        # Open them, message i with counter c0 + i as its nonce: the AEAD checks the counters
        # (a message whose counter is another fails to open and ends the run there).
        opener = s.open
        nonce = self._recv_nonce
        pack_nonce = _COUNTER.pack_into
        view, oview = datagrams.view, out.view
        src, end = o0 + 16, o0 + ln
        dst0 = dst = oend + HEADROOM
        counter = c0
        try:
            for counter in range(c0, c0 + m):
                pack_nonce(nonce, 4, counter)
                opener(nonce, view[src:end], None, oview[dst : dst + plen])
                src += stride
                end += stride
                dst += ostride
            done = m
        except InvalidTag:
            done = counter - c0  # this one and the rest are left to the loop
            if not done:
                return 0
        replay.mark_run(c0, c0 + done)
        # the packets: one IP version, their length the plaintext's, one source, the peer's
        o_offs, o_lens = out.offsets, out.lengths
        last = dst0 + (done - 1) * ostride
        stop = last + 1
        version = obuf[dst0] >> 4
        if version == 4:
            length_at, length_of, src_at, src_len = 2, 0, 12, 4
        else:
            length_at, length_of, src_at, src_len = 4, 40, 8, 16
        first = obuf[dst0 : dst0 + src_at + src_len]
        uniform = (version == 4 or version == 6) and (
            (first[length_at] << 8 | first[length_at + 1]) + length_of == plen
        )
        if uniform:
            for f in (length_at, length_at + 1, *range(src_at, src_at + src_len)):
                col = obuf[dst0 + f : stop + f : ostride]
                if col.count(first[f]) != done:
                    uniform = False
                    break
            else:
                col = obuf[dst0:stop:ostride].translate(_HIGH_NIBBLE)
                uniform = col.count(version << 4) == done
        if uniform and self._source_peer(first, version) is s.peer:
            o_offs.extend(range(dst0, stop, ostride))
            o_lens.extend([plen] * done)
            out.end = last + plen
        else:  # packet by packet, checked and placed as the loop does (padding and drops
            # leave no gaps)
            pos = oend
            for dst in range(dst0, stop, ostride):
                iplen = self._checked_length(obuf, dst, plen, s.peer)
                if iplen:
                    at = pos + HEADROOM
                    if at != dst:
                        obuf[at : at + iplen] = obuf[dst : dst + iplen]
                    o_offs.append(at)
                    o_lens.append(iplen)
                    pos = at + iplen
            out.end = pos
        self._flush_rx(s, addr, done * ln, done, done, now)
        return done

    def _source_peer(self, header: bytes | bytearray, version: int) -> Peer | None:
        """The peer whose AllowedIPs hold the source of an IP header."""
        if version == 4:
            return self._allowed.v4.lookup(int.from_bytes(header[12:16], "big"))
        return self._allowed.v6.lookup(int.from_bytes(header[8:24], "big"))

    def _checked_length(self, buf: bytearray, dst: int, plen: int, peer: Peer) -> int:
        """decrypt_batch's checks of one decrypted packet: its IP length if it may go on (0 when
        dropped, counted as the loop counts it)."""
        c = self._counters
        version = buf[dst] >> 4
        iplen: int
        if version == 4 and plen >= 20:
            iplen, src = _V4_LEN_SRC.unpack_from(buf, dst)
            if iplen < 20 or iplen > plen:
                c.dropped_malformed += 1
                return 0
            owner = self._allowed.v4.lookup(src)
        elif version == 6 and plen >= 40:
            payload, hi, lo = _V6_LEN_SRC.unpack_from(buf, dst)
            iplen = payload + 40
            if iplen > plen:
                c.dropped_malformed += 1
                return 0
            owner = self._allowed.v6.lookup((hi << 64) | lo)
        else:
            c.dropped_malformed += 1
            return 0
        if owner is not peer:
            c.dropped_not_allowed_source += 1
            return 0
        return iplen

    def decrypt_batch(self, datagrams: DatagramBatch, now: float, out: PacketBatch) -> int:
        """Process a batch of received datagrams — the inbound hot path.

        Transport messages are authenticated and decrypted straight into ``out`` (one
        ``decrypt_into`` each), replay-checked, trimmed to their IP length and checked against
        the sending peer's AllowedIPs; keepalives are consumed. Handshake messages and cookie
        replies are handled in place (answers go to :meth:`datagrams_to_send`). Native
        fast-mode fragments are reassembled; a completed super-packet is appended with its
        virtio-net header and switches ``out`` to ``vnet_hdr`` mode (packets from WireGuard
        messages then get zero headers). Every drop is counted by reason, never raised.

        Args:
            datagrams: received datagrams, each with its source address (e.g. one
                ``UDP_GRO`` read registered with :meth:`DatagramBatch.add_segments`).
            now: current time.
            out: the decrypted IP packets are appended here. A batch with the capacity of
                ``datagrams`` (plus 10 bytes a datagram) suffices for WireGuard messages; a
                native-mode message completed by its last fragment needs room for the whole
                super-packet (:data:`~.native.MAX_NATIVE_PLAINTEXT`), however small that
                fragment.

        Returns:
            How many datagrams were consumed, from the start; less than ``len(datagrams)`` only
            when ``out`` filled up.
        """
        offs = datagrams.offsets
        n = len(offs)
        if n == 1 and self._decrypt_lone(datagrams, now, out):
            return 1
        c = self._counters
        sessions = self._sessions
        buf, view = datagrams.buffer, datagrams.view
        lens, addrs = datagrams.lengths, datagrams.addresses
        obuf, oview = out.buffer, out.view
        ocap = len(obuf)
        o_offs, o_lens = out.offsets, out.lengths
        room = out.max_packets - len(o_offs)
        oend = out.end
        vnet = out.vnet_hdr
        unpack_hdr = TRANSPORT_HEADER.unpack_from
        v4src, v6src = _V4_LEN_SRC.unpack_from, _V6_LEN_SRC.unpack_from
        lookup4, lookup6 = self._allowed.v4.lookup, self._allowed.v6.lookup
        nonce = self._recv_nonce
        pack_nonce = _COUNTER.pack_into
        zero_hdr = _ZERO_HDR
        window = WINDOW_SIZE
        overhead, transport, headroom = _OVERHEAD, MESSAGE_TRANSPORT, HEADROOM
        native_single, native_tail = _NATIVE_SINGLE, _NATIVE_TAIL.unpack_from
        native_min = _NATIVE_SINGLE_MIN
        min_chunk, open_single = _MIN_CHUNK, self._open_single
        complete, no_room = OpenResult.COMPLETE, OpenResult.NO_ROOM
        # the current session and its replay window, unpacked into locals (the window's
        # check is inlined below: a method call per packet measured ~0.15 us)
        cur_index = -1
        cur: Session | None = None
        cur_ok = False
        cur_peer: Peer | None = None
        opener: Any = None
        replay: Any = None
        ring: list[int] = []
        last = 0
        limit = 0
        run: Session | None = None
        run_addr: Address | None = None
        run_bytes = run_msgs = run_data = 0
        last4 = last6 = -1
        owner4: Peer | None = None
        owner6: Peer | None = None
        consumed = n
        skip = 0
        if n >= _UNIFORM_MIN and not vnet:
            skip = self._open_uniform(datagrams, now, out)
            if skip:
                oend = out.end
                room = out.max_packets - len(o_offs)
        for i in range(n):
            if i < skip:
                continue  # fragments of a native message opened as a whole
            off = offs[i]
            ln = lens[i]
            if ln < overhead and (ln <= NATIVE_HEADER_SIZE or buf[off] != MESSAGE_NATIVE):
                # (a native message's last fragment may hold as little as one byte)
                c.dropped_malformed += 1
                continue
            typ, receiver, counter = unpack_hdr(buf, off)
            if typ == native_single and ln >= native_min:
                # A native message of one fragment (a TCP ACK, a ping, any small packet): one
                # call instead of open_native's chain, the bookkeeping once per run as for
                # transport messages. Anything unusual takes the general path below. (Unlike
                # open_native, a stored fragment of another message under the same counter —
                # unauthenticated, maybe forged — does not make this one malformed.)
                ns = sessions.get(receiver)
                chunk, reserved = native_tail(buf, off + 16)
                if (
                    ns is not None
                    and not reserved
                    and chunk >= ln - NATIVE_HEADER_SIZE
                    and chunk >= min_chunk
                    and ns.peer.native_mode
                    and now - ns.created < REJECT_AFTER_TIME
                ):
                    out.end = oend
                    r = open_single(
                        ns,
                        counter,
                        view[off : off + NATIVE_HEADER_SIZE],
                        view[off + NATIVE_HEADER_SIZE : off + ln],
                        out,
                    )
                    if r == no_room:
                        consumed = i
                        break
                    if r > 0:  # authenticated: COMPLETE, or _NOT_ALLOWED (counted)
                        addr = addrs[i]
                        if ns is not run or (addr is not run_addr and addr != run_addr):
                            if run is not None:
                                self._flush_rx(run, run_addr, run_bytes, run_msgs, run_data, now)
                            run, run_addr = ns, addr
                            run_bytes = run_msgs = run_data = 0
                        run_bytes += ln
                        run_msgs += 1
                        run_data += 1
                        if r == complete:
                            oend, vnet = out.end, True
                            room -= 1
                    continue
            if typ != transport:
                if replay is not None:
                    replay._last = last
                if run is not None:
                    self._flush_rx(run, run_addr, run_bytes, run_msgs, run_data, now)
                    run = None
                cur_index = -1
                out.end = oend
                if buf[off] == MESSAGE_NATIVE:
                    took = self._receive_native_run(datagrams, i, now, out)
                    ok = took > 0
                    skip = i + took
                else:
                    ok = self._receive_other(view[off : off + ln], addrs[i], now, out)
                oend, vnet = out.end, out.vnet_hdr
                room = out.max_packets - len(o_offs)
                if not ok:
                    consumed = i
                    break
                continue
            if receiver != cur_index:
                s = sessions.get(receiver)
                if s is None:
                    c.dropped_unknown_index += 1
                    continue
                if replay is not None:
                    replay._last = last
                cur_index, cur = receiver, s
                cur_ok = now - s.created < REJECT_AFTER_TIME
                opener, cur_peer = s.open, s.peer
                replay = s.replay
                ring, limit, last = replay._ring, replay.limit, replay._last
            if not cur_ok:
                c.dropped_too_old += 1
                continue
            plen = ln - overhead
            dst = oend + headroom
            if dst + plen > ocap or not room:
                consumed = i
                break
            pack_nonce(nonce, 4, counter)
            try:
                opener(nonce, view[off + 16 : off + ln], None, oview[dst : dst + plen])
            except InvalidTag:
                c.dropped_bad_aead += 1
                continue
            # replay window (RFC 6479, as ReplayWindow.check), after authentication; ``last``
            # is written back to the window when the session changes and at the end
            if counter > last and counter < limit:
                index = counter >> 6
                current = last >> 6
                if index != current:
                    if index - current >= 128:
                        ring = replay._ring = [0] * 128
                    else:
                        for j in range(current + 1, index + 1):
                            ring[j & 127] = 0
                last = counter
                ring[index & 127] |= 1 << (counter & 63)
            elif counter >= limit or last - counter > window:
                c.dropped_replay += 1
                continue
            else:
                word = (counter >> 6) & 127
                bit = 1 << (counter & 63)
                if ring[word] & bit:
                    c.dropped_replay += 1
                    continue
                ring[word] |= bit
            addr = addrs[i]
            if cur is not run or (addr is not run_addr and addr != run_addr):
                if run is not None:
                    self._flush_rx(run, run_addr, run_bytes, run_msgs, run_data, now)
                run, run_addr = cur, addr
                run_bytes = run_msgs = run_data = 0
            run_bytes += ln
            run_msgs += 1
            if not plen:
                continue
            run_data += 1
            version = obuf[dst] >> 4
            if version == 4 and plen >= 20:
                iplen, src = v4src(obuf, dst)
                if iplen < 20 or iplen > plen:
                    c.dropped_malformed += 1
                    continue
                if src != last4:
                    last4, owner4 = src, lookup4(src)
                owner = owner4
            elif version == 6 and plen >= 40:
                payload, hi, lo = v6src(obuf, dst)
                iplen = payload + 40
                if iplen > plen:
                    c.dropped_malformed += 1
                    continue
                src = (hi << 64) | lo
                if src != last6:
                    last6, owner6 = src, lookup6(src)
                owner = owner6
            else:
                c.dropped_malformed += 1
                continue
            if owner is not cur_peer:
                c.dropped_not_allowed_source += 1
                continue
            if vnet:
                obuf[dst - headroom : dst] = zero_hdr
            o_offs.append(dst)
            o_lens.append(iplen)
            oend = dst + iplen
            room -= 1
        if replay is not None:
            replay._last = last
        out.end = oend
        if run is not None:
            self._flush_rx(run, run_addr, run_bytes, run_msgs, run_data, now)
        return consumed

    def _decrypt_lone(self, datagrams: DatagramBatch, now: float, out: PacketBatch) -> bool:
        """The one datagram of ``datagrams``, a WireGuard transport message of a live session,
        opened into ``out`` — what :meth:`decrypt_batch` does, with none of a batch's setup:
        about a third of the Python lines per lone datagram (a ping, a request's answer).

        Returns ``True`` when the datagram was consumed (its packet appended, or it was
        dropped and counted as decrypt_batch counts it); ``False``, having changed nothing,
        for anything else (another message type, native mode, an unknown or old session, no
        room): decrypt_batch's general path then takes it.
        """
        off = datagrams.offsets[0]
        ln = datagrams.lengths[0]
        if ln < _OVERHEAD:
            return False
        buf = datagrams.buffer
        typ, receiver, counter = TRANSPORT_HEADER.unpack_from(buf, off)
        s = self._sessions.get(receiver) if typ == MESSAGE_TRANSPORT else None
        if s is None or now - s.created >= REJECT_AFTER_TIME:
            return False
        plen = ln - _OVERHEAD
        dst = out.end + HEADROOM
        obuf = out.buffer
        if dst + plen > len(obuf) or len(out.offsets) >= out.max_packets:
            return False
        c = self._counters
        nonce = self._recv_nonce
        _COUNTER.pack_into(nonce, 4, counter)
        try:
            s.open(nonce, datagrams.view[off + 16 : off + ln], None, out.view[dst : dst + plen])
        except InvalidTag:
            c.dropped_bad_aead += 1
            return True
        if not s.replay.check(counter):
            c.dropped_replay += 1
            return True
        self._flush_rx(s, datagrams.addresses[0], ln, 1, 1 if plen else 0, now)
        if not plen:
            return True  # a keepalive
        version = obuf[dst] >> 4
        if version == 4 and plen >= 20:
            iplen, src = _V4_LEN_SRC.unpack_from(obuf, dst)
            ok = 20 <= iplen <= plen
            owner = self._allowed.v4.lookup(src) if ok else None
        elif version == 6 and plen >= 40:
            payload, hi, lo = _V6_LEN_SRC.unpack_from(obuf, dst)
            iplen = payload + 40
            ok = iplen <= plen
            owner = self._allowed.v6.lookup((hi << 64) | lo) if ok else None
        else:
            ok = False
        if not ok:
            c.dropped_malformed += 1
        elif owner is not s.peer:
            c.dropped_not_allowed_source += 1
        else:
            if out.vnet_hdr:
                obuf[dst - HEADROOM : dst] = _ZERO_HDR
            out.offsets.append(dst)
            out.lengths.append(iplen)
            out.end = dst + iplen
        return True

    def _flush_rx(
        self,
        session: Session,
        addr: Address | None,
        nbytes: int,
        nmsgs: int,
        ndata: int,
        now: float,
    ) -> None:
        """Per-run bookkeeping after authenticated transport messages (wireguard-go's
        RoutineSequentialReceiver, once per run instead of once per packet)."""
        peer: Peer = session.peer
        c = self._counters
        c.rx_packets += nmsgs
        c.rx_bytes += nbytes
        c.keepalives_received += nmsgs - ndata
        peer.rx_bytes += nbytes
        self._set_endpoint(peer, addr)
        confirmed = session is peer.next
        if confirmed:
            self._received_with_next(peer, now)
        self._keep_key_fresh_receiving(peer, now)
        peer.on_any_authenticated_traversal(now)
        peer.on_any_authenticated_received()
        if ndata:
            peer.on_data_received(now)
        if confirmed:
            # wireguard-go and the kernel queue the staged packets here and send them later:
            # their sending comes after the receive's timer hooks (it cancels the passive
            # keepalive the data armed and arms the new-handshake timer the receive cleared)
            self._send_staged(peer, now)

    def _set_endpoint(self, peer: Peer, addr: Address | None) -> None:
        if addr is not None and peer.endpoint != addr:
            peer.endpoint = addr
            self._events.append(EndpointChanged(peer.public_key, addr))

    def _received_with_next(self, peer: Peer, now: float) -> None:
        self._delete_session(peer.previous)
        peer.previous = peer.current
        peer.current = peer.next
        peer.next = None
        peer.on_handshake_complete(self._wall(now))
        self._counters.handshakes_completed += 1
        self._events.append(HandshakeCompleted(peer.public_key, False, peer.endpoint))

    def _delete_session(self, s: Session | None) -> None:
        if s is not None and self._sessions.get(s.local_index) is s:
            del self._sessions[s.local_index]

    def _zero_all(self, peer: Peer) -> None:
        for s in (peer.current, peer.previous, peer.next):
            self._delete_session(s)
        peer.current = peer.previous = peer.next = None
        self._drop_handshake_index(peer)
        peer.handshake.clear()
        self._counters.dropped_no_session += sum(1 for p in peer.staged if p)
        peer.staged.clear()

    def _receive_other(self, data: memoryview, addr: Address, now: float, out: PacketBatch) -> bool:
        """A datagram that is not a transport message. Returns False only when ``out`` is full."""
        c = self._counters
        first = data[0]
        if first == MESSAGE_NATIVE:
            return self._receive_native(data, addr, now, out)
        if first not in (MESSAGE_INITIATION, MESSAGE_RESPONSE, MESSAGE_COOKIE_REPLY) or any(
            data[1:4]
        ):
            c.dropped_malformed += 1
            return True
        raw = bytes(data)
        if first == MESSAGE_COOKIE_REPLY:
            self._receive_cookie_reply(raw, now)
            return True
        if len(raw) != (INITIATION_SIZE if first == MESSAGE_INITIATION else RESPONSE_SIZE):
            c.dropped_malformed += 1
            return True
        if self._private_key is None:
            c.dropped_handshake += 1
            return True
        if not self._checker.check_mac1(raw):
            c.dropped_bad_mac += 1
            return True
        self._note_handshake(now)
        loaded = self.under_load(now)
        spent = self._spend_budget(now, _COOKIE_RESERVE if loaded else 0.0)
        if loaded:
            if not spent and not any(raw[-16:]):  # no cookie (mac2 zero): nothing to wait for
                c.dropped_handshake_budget += 1
                return True
            try:
                src = address_bytes(addr)
            except (PacketError, TypeError, IndexError):
                c.dropped_malformed += 1
                return True
            if not self._checker.check_mac2(raw, src, now):
                if not spent:
                    c.dropped_handshake_budget += 1
                    return True
                (sender,) = _U32LE.unpack_from(raw, 4)
                reply = self._checker.create_reply(raw, sender, src, now)
                self._outbox.append((reply.encode(), addr))
                c.cookie_replies_sent += 1
                return True
            if not self._ratelimiter.allow(str(addr[0]), now):
                c.dropped_rate_limited += 1
                return True
            if not spent and not self._spend_budget(now, 0.0):
                c.dropped_handshake_budget += 1
                return True
        elif not spent:
            c.dropped_handshake_budget += 1
            return True
        if first == MESSAGE_INITIATION:
            self._consume_initiation(raw, addr, now)
        else:
            self._consume_response(raw, addr, now)
        return True

    def _note_handshake(self, now: float) -> None:
        if now - self._load_window_start >= 1.0:
            self._load_window_start = now
            self._load_count = 0
        self._load_count += 1
        if self._load_count > self.load_threshold:
            self.set_under_load(now)

    def _spend_budget(self, now: float, reserve: float) -> bool:
        """Take one handshake message from the interface's budget (a token bucket of
        ``_HANDSHAKE_BUDGET`` a second) unless that would leave less than ``reserve``; whether
        it did."""
        tokens = self._budget
        if now > self._budget_at:
            tokens = min(_HANDSHAKE_BUDGET, tokens + (now - self._budget_at) * _HANDSHAKE_BUDGET)
            self._budget_at = now
        if tokens < reserve + 1.0:
            self._budget = tokens
            return False
        self._budget = tokens - 1.0
        return True

    def _receive_cookie_reply(self, raw: bytes, now: float) -> None:
        c = self._counters
        try:
            reply = parse_cookie_reply(raw)
        except PacketError:
            c.dropped_malformed += 1
            return
        peer = self._handshakes.get(reply.receiver)
        if peer is None:
            s = self._sessions.get(reply.receiver)
            peer = s.peer if s is not None else None
        if peer is None:
            c.dropped_unknown_index += 1
        elif peer.cookies.consume_reply(reply, now):
            c.cookie_replies_received += 1
        else:
            c.dropped_bad_cookie += 1

    def _consume_initiation(self, raw: bytes, addr: Address, now: float) -> None:
        c = self._counters
        msg = parse_initiation(raw)
        try:
            pending = consume_initiation_static(self._identity, msg)
        except HandshakeError:
            c.dropped_handshake += 1
            return
        peer = self._peers.get(pending.peer_public_key)
        if peer is None:
            c.dropped_unknown_peer += 1
            return
        try:
            peer.handshake.consume_initiation(pending, msg, now)
        except HandshakeError:
            c.dropped_handshake += 1
            return
        c.handshake_initiations_received += 1
        peer.rx_bytes += INITIATION_SIZE
        peer.on_any_authenticated_traversal(now)
        peer.on_any_authenticated_received()
        self._set_endpoint(peer, addr)
        self._send_response(peer, now)

    def _send_response(self, peer: Peer, now: float) -> None:
        endpoint = peer.endpoint
        if endpoint is None:  # only when the caller passed no source address
            return
        peer.last_sent_handshake = now
        self._drop_handshake_index(peer)
        index = self._new_index()
        resp = peer.handshake.create_response(index, self._random)
        raw = bytearray(resp.encode())
        peer.cookies.add_macs(raw, now)
        session = Session(peer.handshake.derive_keys(), now, peer)
        self._sessions[index] = session
        self._delete_session(peer.next)
        peer.next = session
        self._delete_session(peer.previous)
        peer.previous = None
        peer.on_session_derived(now)
        peer.on_any_authenticated_traversal(now)
        peer.on_any_authenticated_sent()
        self._outbox.append((bytes(raw), endpoint))
        peer.tx_bytes += RESPONSE_SIZE
        self._counters.handshake_responses_sent += 1

    def _consume_response(self, raw: bytes, addr: Address, now: float) -> None:
        c = self._counters
        msg = parse_response(raw)
        peer = self._handshakes.get(msg.receiver)
        if peer is None:
            c.dropped_unknown_index += 1
            return
        try:
            peer.handshake.consume_response(msg)
        except HandshakeError:
            c.dropped_handshake += 1
            return
        c.handshake_responses_received += 1
        peer.rx_bytes += RESPONSE_SIZE
        self._set_endpoint(peer, addr)
        peer.on_session_derived(now)
        peer.on_handshake_complete(self._wall(now))
        peer.on_any_authenticated_traversal(now)
        peer.on_any_authenticated_received()
        index = peer.handshake.local_index
        del self._handshakes[index]
        session = Session(peer.handshake.derive_keys(), now, peer)
        self._sessions[index] = session
        previous, nxt, current = peer.previous, peer.next, peer.current
        if nxt is not None:
            peer.next = None
            peer.previous = nxt
            self._delete_session(current)
        else:
            peer.previous = current
        self._delete_session(previous)
        peer.current = session
        c.handshakes_completed += 1
        self._events.append(HandshakeCompleted(peer.public_key, True, peer.endpoint))
        self._send_keepalive(peer, now)

    def _open_single(
        self, s: Session, counter: int, header: memoryview, sealed: memoryview, out: PacketBatch
    ) -> int:
        """Open a native message of one fragment — its header checked by the caller (version
        1, index 0 of 1, ``counter``) and at least an empty packet long — into ``out``: what
        :func:`~.native.open_native` does for such a message, in one call. Returns an
        :class:`~.native.OpenResult` code, or ``_NOT_ALLOWED`` (authenticated, but the packet's
        source is not the peer's: not appended); drops are counted here, the per-peer
        bookkeeping of an authenticated message (a positive code) is the caller's."""
        w = s.native_replay
        last = w._last
        if not last < counter < w.limit and not _would_accept(s, counter):
            self._counters.dropped_replay += 1  # before the AEAD, as open_native
            return OpenResult.REPLAY
        plen = len(sealed) - TAG_SIZE  # virtio-net header + packet
        dst = out.end + HEADROOM
        if dst + plen - HEADROOM > len(out.buffer) or len(out.offsets) >= out.max_packets:
            return OpenResult.NO_ROOM
        nonce = self._recv_nonce
        _COUNTER.pack_into(nonce, 4, counter)
        try:
            s.native_open(nonce, sealed, header, out.view[dst - HEADROOM : dst - HEADROOM + plen])
        except InvalidTag:
            self._counters.dropped_bad_aead += 1
            return OpenResult.BAD_AEAD
        last = w._last
        if last < counter < w.limit and counter >> 6 == last >> 6:
            w._last = counter  # in order, same word of the window: the usual case
            w._ring[(counter >> 6) & 127] |= 1 << (counter & 63)
        elif not w.check(counter):
            self._counters.dropped_replay += 1
            return OpenResult.REPLAY
        n = plen - HEADROOM
        if not self._source_allowed(out.buffer, dst, n, s.peer):
            self._counters.dropped_not_allowed_source += 1
            return _NOT_ALLOWED
        if not out.vnet_hdr:
            out.zero_headers()  # the earlier packets get zero headers
        out.offsets.append(dst)
        out.lengths.append(n)
        out.end = dst + n
        return OpenResult.COMPLETE

    def decrypt_native_scattered(
        self,
        headers: memoryview,
        bodies: memoryview,
        count: int,
        last_length: int,
        addr: Address,
        now: float,
        out: PacketBatch,
    ) -> bool | None:
        """Take native fast-mode fragments that a scatter read split into back-to-back
        headers and back-to-back chunks (see :func:`~.native.open_native_scattered`): the
        sealed message is opened where it lies, with the usual checks and bookkeeping.

        Args:
            headers: ``count`` 20-byte fragment headers.
            bodies: their chunks, back to back — only the bytes read (the headers' chunk
                size, not authenticated, says where each chunk starts within them).
            count: fragments read.
            last_length: the size of the last fragment, header included.
            addr: where they came from.
            now: current time.
            out: the super-packet goes here (with its virtio-net header).

        Returns:
            ``True`` when the fragments were consumed (a packet appended, or a drop counted),
            ``False`` when ``out`` is full, ``None`` when they are not one whole message for
            a native-mode session — then rebuild the datagrams and use :meth:`decrypt_batch`.
        """
        if len(headers) < NATIVE_HEADER_SIZE:
            return None
        typ, receiver, counter = TRANSPORT_HEADER.unpack_from(headers)
        s = self._sessions.get(receiver)
        if s is None or not s.peer.native_mode or now - s.created >= REJECT_AFTER_TIME:
            return None
        if count == 1 and typ == _NATIVE_SINGLE and last_length >= _NATIVE_SINGLE_MIN:
            # one small message (a ping, a TCP ACK): the same one call as in decrypt_batch
            chunk, reserved = _NATIVE_TAIL.unpack_from(headers, 16)
            if not reserved and chunk >= _MIN_CHUNK and last_length - NATIVE_HEADER_SIZE <= chunk:
                # (as in decrypt_batch, a stored fragment of another message under the same
                # counter — unauthenticated, maybe forged — does not block this one)
                r = self._open_single(
                    s,
                    counter,
                    headers[:NATIVE_HEADER_SIZE],
                    bodies[: last_length - NATIVE_HEADER_SIZE],
                    out,
                )
                if r == OpenResult.NO_ROOM:
                    return False
                if r > 0:  # authenticated: COMPLETE, or _NOT_ALLOWED (counted)
                    self._flush_rx(s, addr, last_length, 1, 1, now)
                return True
        result = open_native_scattered(s, headers, bodies, count, last_length, out)
        if result is None:
            return None
        return self._native_result(result, s, addr, now, out, count)

    def _receive_native_run(
        self, datagrams: DatagramBatch, i: int, now: float, out: PacketBatch
    ) -> int:
        """A native fragment at datagram ``i``: open its whole message at once when all its
        fragments follow back to back (one ``UDP_GRO`` read), else take this fragment alone.

        Returns:
            How many datagrams were consumed (0: ``out`` is full).
        """
        offs, lens, addrs = datagrams.offsets, datagrams.lengths, datagrams.addresses
        off, ln = offs[i], lens[i]
        view = datagrams.view
        count = view[off + 2] if ln > NATIVE_HEADER_SIZE else 0
        last = i + count - 1
        if (
            count > 1
            and last < len(offs)
            and offs[last] == off + ln * (count - 1)
            and lens[last] <= ln
            and (addrs[last] is addrs[i] or addrs[last] == addrs[i])
        ):
            (receiver,) = _U32LE.unpack_from(view, off + 4)
            s = self._sessions.get(receiver)
            if s is not None and s.peer.native_mode and now - s.created < REJECT_AFTER_TIME:
                result = open_native_run(s, view, off, count, ln, lens[last], out, self._scratch)
                if result is not None:
                    if not self._native_result(result, s, addrs[i], now, out, count):
                        return 0
                    return count
        return 1 if self._receive_native(view[off : off + ln], addrs[i], now, out) else 0

    def _receive_native(
        self, data: memoryview, addr: Address, now: float, out: PacketBatch
    ) -> bool:
        c = self._counters
        if len(data) <= NATIVE_HEADER_SIZE:
            c.dropped_malformed += 1
            return True
        (receiver,) = _U32LE.unpack_from(data, 4)
        s = self._sessions.get(receiver)
        if s is None:
            c.dropped_unknown_index += 1
            return True
        peer: Peer = s.peer
        if not peer.native_mode:
            c.dropped_malformed += 1
            return True
        if now - s.created >= REJECT_AFTER_TIME:
            c.dropped_too_old += 1
            return True
        result = open_native(s, data, out)
        if s.native_evicted:
            c.dropped_incomplete += s.native_evicted
            s.native_evicted = 0
        return self._native_result(result, s, addr, now, out, data[2])

    def _native_result(
        self, result: int, s: Session, addr: Address, now: float, out: PacketBatch, count: int
    ) -> bool:
        """Bookkeeping after :func:`open_native`; False only when ``out`` is full."""
        c = self._counters
        if result == OpenResult.COMPLETE:
            n = out.lengths[-1]
            off = out.offsets[-1]
            nbytes = n + HEADROOM + 16 + NATIVE_HEADER_SIZE * count
            if not self._source_allowed(out.buffer, off, n, s.peer):
                out.offsets.pop()
                out.lengths.pop()
                out.end = off - HEADROOM
                self._flush_rx(s, addr, nbytes, 1, 1, now)
                c.dropped_not_allowed_source += 1
                return True
            self._flush_rx(s, addr, nbytes, 1, 1, now)
        elif result == OpenResult.MALFORMED:
            c.dropped_malformed += 1
        elif result == OpenResult.REPLAY:
            c.dropped_replay += 1
        elif result == OpenResult.BAD_AEAD:
            c.dropped_bad_aead += 1
            if s.native_evicted:  # a whole message kept for another try pushed one out
                c.dropped_incomplete += s.native_evicted
                s.native_evicted = 0
        elif result == OpenResult.NO_ROOM:
            return False
        return True

    def _source_allowed(self, buf: bytearray, off: int, n: int, peer: Peer) -> bool:
        version = buf[off] >> 4 if n else 0
        if version == 4 and n >= 20:
            return self._allowed.v4.lookup(_V4_LEN_SRC.unpack_from(buf, off)[1]) is peer
        if version == 6 and n >= 40:
            _, hi, lo = _V6_LEN_SRC.unpack_from(buf, off)
            return self._allowed.v6.lookup((hi << 64) | lo) is peer
        return False
