"""The Noise_IKpsk2 handshake as WireGuard runs it (whitepaper §5.4.2-5.4.5), sans-I/O.

A :class:`Handshake` per peer holds the chaining key, transcript hash and ephemeral key between
the two messages, like wireguard-go's ``device/noise-protocol.go``. Responders first call
:func:`consume_initiation_static` (which identifies the initiator by decrypting its static key),
look the peer up, then finish with :meth:`Handshake.consume_initiation`.

Randomness (ephemeral keys) is injected; time is passed in. The mac1/mac2 fields are the cookie
layer's business (:mod:`.cookie`): messages here carry zero MACs. Errors are
:class:`~tunflow.errors.HandshakeError`.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ...errors import HandshakeError
from ._crypto import (
    INITIAL_CHAIN_KEY,
    INITIAL_HASH,
    InvalidTag,
    aead_decrypt,
    aead_encrypt,
    hash_,
    kdf1,
    kdf2,
    kdf3,
)
from .constants import HANDSHAKE_INITIATION_RATE, LABEL_COOKIE, LABEL_MAC1
from .keys import PresharedKey, PrivateKey, PublicKey, RandomSource
from .messages import Initiation, Response

__all__ = [
    "HandshakeState",
    "StaticIdentity",
    "PendingInitiation",
    "SessionKeys",
    "Handshake",
    "consume_initiation_static",
]


class HandshakeState(enum.IntEnum):
    """Where a peer's handshake stands (wireguard-go's ``handshakeState``)."""

    ZEROED = 0
    INITIATION_CREATED = 1
    INITIATION_CONSUMED = 2
    RESPONSE_CREATED = 3
    RESPONSE_CONSUMED = 4


class StaticIdentity:
    """This interface's static key pair and the values derived from its public key.

    Args:
        private_key: the interface's private key.

    Attributes:
        private_key: the key.
        public_key: its public key.
        initial_hash: HASH(HASH(HASH(CONSTRUCTION) ‖ IDENTIFIER) ‖ our public key), where every
            initiation addressed to us starts.
        mac1_key: HASH("mac1----" ‖ our public key), verifies mac1 of messages sent to us.
        cookie_key: HASH("cookie--" ‖ our public key), seals the cookie replies we send.
    """

    __slots__ = ("cookie_key", "initial_hash", "mac1_key", "private_key", "public_key")

    def __init__(self, private_key: PrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        pub = self.public_key.raw
        self.initial_hash = hash_(INITIAL_HASH, pub)
        self.mac1_key = hash_(LABEL_MAC1, pub)
        self.cookie_key = hash_(LABEL_COOKIE, pub)


class PendingInitiation(NamedTuple):
    """An initiation whose static key decrypted: who sent it, and the state to finish with."""

    peer_public_key: PublicKey
    chain_key: bytes
    hash: bytes


class SessionKeys(NamedTuple):
    """The transport keys a completed handshake yields, and the indices that name them."""

    send_key: bytes
    receive_key: bytes
    local_index: int
    remote_index: int
    is_initiator: bool


def _ephemeral(random: RandomSource) -> tuple[X25519PrivateKey, bytes]:
    key = X25519PrivateKey.from_private_bytes(random(32))
    return key, key.public_key().public_bytes_raw()


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(bytes(public)))
    except ValueError:
        raise HandshakeError("X25519 with a low-order public key") from None


def consume_initiation_static(identity: StaticIdentity, msg: Initiation) -> PendingInitiation:
    """First half of consuming an initiation: decrypt the initiator's static public key.

    Args:
        identity: our static identity.
        msg: the parsed initiation (its MACs already checked by the caller).

    Returns:
        The initiator's public key and the chaining key and hash to continue with.

    Raises:
        HandshakeError: the static key does not decrypt (not for us, or corrupted) or the
            ephemeral key is a low-order point.
    """
    h = hash_(identity.initial_hash, msg.ephemeral)
    ck = kdf1(INITIAL_CHAIN_KEY, msg.ephemeral)
    try:
        ss = identity.private_key.exchange(msg.ephemeral)
    except HandshakeError:
        raise HandshakeError("initiation with a low-order ephemeral key") from None
    ck, key = kdf2(ck, ss)
    try:
        peer = aead_decrypt(key, 0, msg.static, h)
    except InvalidTag:
        raise HandshakeError("initiation static key does not decrypt") from None
    return PendingInitiation(PublicKey(peer), ck, hash_(h, msg.static))


class Handshake:
    """One peer's handshake state (both roles).

    Args:
        identity: our static identity.
        remote_static: the peer's public key.
        preshared_key: the peer's PSK (all zeros when none).
        static_static: X25519(``identity``, ``remote_static``) when the caller has it already
            (the UAPI computes it to check a new peer's key); not checked — a wrong value fails
            every handshake.

    Raises:
        HandshakeError: ``remote_static`` is a low-order point (X25519 yields zero).

    Attributes:
        state: a :class:`HandshakeState`.
        hash: the transcript hash so far (after completion: Noise's handshake hash).
        chain_key: the chaining key so far.
        local_index / remote_index: the sender indices of the two sides.
        last_timestamp: the newest TAI64N accepted from this peer (replay protection).
        last_initiation_consumed: ``now`` of the last accepted initiation (flood protection).
    """

    __slots__ = (
        "chain_key",
        "hash",
        "identity",
        "last_initiation_consumed",
        "last_timestamp",
        "local_ephemeral",
        "local_index",
        "precomputed_static_static",
        "preshared_key",
        "remote_ephemeral",
        "remote_hash",
        "remote_index",
        "remote_static",
        "state",
    )

    def __init__(
        self,
        identity: StaticIdentity,
        remote_static: PublicKey,
        preshared_key: PresharedKey | None = None,
        *,
        static_static: bytes | None = None,
    ) -> None:
        self.identity = identity
        self.remote_static = remote_static
        self.preshared_key = preshared_key or PresharedKey()
        if static_static is None:
            static_static = identity.private_key.exchange(remote_static)
        self.precomputed_static_static = static_static
        self.remote_hash = hash_(INITIAL_HASH, remote_static.raw)
        self.state = HandshakeState.ZEROED
        self.hash = b""
        self.chain_key = b""
        self.local_ephemeral: X25519PrivateKey | None = None
        self.remote_ephemeral = b""
        self.local_index = 0
        self.remote_index = 0
        self.last_timestamp = bytes(12)
        self.last_initiation_consumed: float | None = None

    def clear(self) -> None:
        """Forget the in-progress handshake (not the replay/flood history)."""
        self.state = HandshakeState.ZEROED
        self.hash = b""
        self.chain_key = b""
        self.local_ephemeral = None
        self.remote_ephemeral = b""
        self.local_index = 0

    def create_initiation(self, sender: int, timestamp: bytes, random: RandomSource) -> Initiation:
        """Build an initiation (MACs zero) and remember the state for the response.

        Args:
            sender: our index for this handshake.
            timestamp: 12-byte TAI64N (:func:`tunflow.wireguard.protocol.tai64n`).
            random: source of the ephemeral key.

        Returns:
            The initiation message.

        Raises:
            HandshakeError: the ephemeral key is degenerate (only with a broken ``random``).
        """
        eph, eph_pub = _ephemeral(random)
        ck = kdf1(INITIAL_CHAIN_KEY, eph_pub)
        h = hash_(self.remote_hash, eph_pub)
        ck, key = kdf2(ck, _dh(eph, self.remote_static.raw))
        static = aead_encrypt(key, 0, self.identity.public_key.raw, h)
        h = hash_(h, static)
        ck, key = kdf2(ck, self.precomputed_static_static)
        ts = aead_encrypt(key, 0, timestamp, h)
        self.hash = hash_(h, ts)
        self.chain_key = ck
        self.local_ephemeral = eph
        self.local_index = sender
        self.state = HandshakeState.INITIATION_CREATED
        return Initiation(sender, eph_pub, static, ts)

    def consume_initiation(self, pending: PendingInitiation, msg: Initiation, now: float) -> bytes:
        """Second half of consuming an initiation from this peer.

        Args:
            pending: what :func:`consume_initiation_static` returned for ``msg``.
            msg: the initiation.
            now: the current time, for the flood check.

        Returns:
            The decrypted 12-byte TAI64N timestamp.

        Raises:
            HandshakeError: the timestamp does not decrypt, is not newer than the last accepted
                one (a replay), or it came no more than 20 ms after the last one accepted (a
                flood; wireguard-go's rule, ``<=``).
        """
        ck, key = kdf2(pending.chain_key, self.precomputed_static_static)
        try:
            ts = aead_decrypt(key, 0, msg.timestamp, pending.hash)
        except InvalidTag:
            raise HandshakeError("initiation timestamp does not decrypt") from None
        if ts <= self.last_timestamp:
            raise HandshakeError("replayed initiation (timestamp not newer than the last)")
        last = self.last_initiation_consumed
        # (0 <=: a clock stepped back is no flood — ``now`` should be monotonic, but a caller
        # passing time.time() would refuse every initiation for as long as the step)
        if last is not None and 0 <= now - last <= HANDSHAKE_INITIATION_RATE:
            raise HandshakeError("initiation flood (more than 50 per second)")
        self.hash = hash_(pending.hash, msg.timestamp)
        self.chain_key = ck
        self.remote_index = msg.sender
        self.remote_ephemeral = msg.ephemeral
        self.last_timestamp = ts
        if last is None or now > last:  # only forward, as wireguard-go
            self.last_initiation_consumed = now
        self.state = HandshakeState.INITIATION_CONSUMED
        return ts

    def create_response(self, sender: int, random: RandomSource) -> Response:
        """Answer a consumed initiation (MACs zero).

        Args:
            sender: our index for the new session.
            random: source of the ephemeral key.

        Returns:
            The response message.

        Raises:
            HandshakeError: no initiation has been consumed.
        """
        if self.state != HandshakeState.INITIATION_CONSUMED:
            raise HandshakeError("no consumed initiation to respond to")
        eph, eph_pub = _ephemeral(random)
        h = hash_(self.hash, eph_pub)
        ck = kdf1(self.chain_key, eph_pub)
        ck = kdf1(ck, _dh(eph, self.remote_ephemeral))
        ck = kdf1(ck, _dh(eph, self.remote_static.raw))
        ck, tau, key = kdf3(ck, self.preshared_key.raw)
        h = hash_(h, tau)
        empty = aead_encrypt(key, 0, b"", h)
        self.hash = hash_(h, empty)
        self.chain_key = ck
        self.local_ephemeral = eph
        self.local_index = sender
        self.state = HandshakeState.RESPONSE_CREATED
        return Response(sender, self.remote_index, eph_pub, empty)

    def consume_response(self, msg: Response) -> None:
        """Consume the response to our initiation.

        Raises:
            HandshakeError: we have no initiation outstanding, or the response does not
                authenticate.
        """
        if self.state != HandshakeState.INITIATION_CREATED or self.local_ephemeral is None:
            raise HandshakeError("response without an outstanding initiation")
        h = hash_(self.hash, msg.ephemeral)
        ck = kdf1(self.chain_key, msg.ephemeral)
        ck = kdf1(ck, _dh(self.local_ephemeral, msg.ephemeral))
        try:
            ck = kdf1(ck, self.identity.private_key.exchange(msg.ephemeral))
        except HandshakeError:
            raise HandshakeError("response with a low-order ephemeral key") from None
        ck, tau, key = kdf3(ck, self.preshared_key.raw)
        h = hash_(h, tau)
        try:
            aead_decrypt(key, 0, msg.empty, h)
        except InvalidTag:
            raise HandshakeError("response does not authenticate") from None
        self.hash = hash_(h, msg.empty)
        self.chain_key = ck
        self.remote_index = msg.sender
        self.state = HandshakeState.RESPONSE_CONSUMED

    def derive_keys(self) -> SessionKeys:
        """Split the chaining key into transport keys and reset the handshake.

        Returns:
            The keys, oriented for our role.

        Raises:
            HandshakeError: the handshake is not at RESPONSE_CREATED or RESPONSE_CONSUMED.
        """
        if self.state == HandshakeState.RESPONSE_CONSUMED:
            send, recv = kdf2(self.chain_key, b"")
            initiator = True
        elif self.state == HandshakeState.RESPONSE_CREATED:
            recv, send = kdf2(self.chain_key, b"")
            initiator = False
        else:
            raise HandshakeError(f"cannot derive keys in state {self.state.name}")
        keys = SessionKeys(send, recv, self.local_index, self.remote_index, initiator)
        self.state = HandshakeState.ZEROED
        self.chain_key = b""
        self.local_ephemeral = None
        self.remote_ephemeral = b""
        self.local_index = 0
        return keys
