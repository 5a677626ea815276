"""mac1/mac2 and cookie replies: WireGuard's DoS mitigation (whitepaper §5.3, 5.4.4, 5.4.7).

Every handshake message ends with ``mac1 = MAC(HASH("mac1----" ‖ Spub_receiver), msg[:-32])`` and
``mac2 = MAC(cookie, msg[:-16])`` (zeros without a fresh cookie). A responder *under load* answers
a message whose mac2 is wrong with a cookie reply instead of doing Diffie-Hellman: the cookie is
``MAC(secret, source address)``, with ``secret`` replaced every two minutes, sealed with
XChaCha20-Poly1305 under ``HASH("cookie--" ‖ Spub_responder)`` and the message's mac1 as AAD.

:class:`CookieChecker` is the receiving side (one per interface), :class:`CookieGenerator` the
sending side (one per peer), after wireguard-go's ``device/cookie.go``. Time and randomness are
passed in.
"""

from __future__ import annotations

import hmac
import ipaddress

from ...errors import MalformedPacketError
from ._crypto import InvalidTag, hash_, mac
from .constants import COOKIE_REFRESH_TIME, LABEL_COOKIE, LABEL_MAC1
from .keys import PublicKey, RandomSource
from .messages import CookieReply
from .noise import StaticIdentity
from .xchacha import xchacha20poly1305_decrypt, xchacha20poly1305_encrypt

__all__ = ["address_bytes", "CookieChecker", "CookieGenerator"]

Buffer = bytes | bytearray | memoryview


def address_bytes(address: tuple[str, int]) -> bytes:
    """The bytes a cookie is bound to: the packed IP address then the port, big-endian.

    Only the host that made a cookie checks it, so the encoding is local (the kernel uses the
    same one).

    Raises:
        MalformedPacketError: the host is not an IP address literal, or the port not 0–65535.

    Example:
        >>> address_bytes(("192.0.2.1", 51820)).hex()
        'c0000201ca6c'
    """
    try:
        ip = ipaddress.ip_address(address[0])
    except ValueError:
        raise MalformedPacketError(f"not an IP address: {address[0]!r}") from None
    port = address[1]
    if not 0 <= port <= 0xFFFF:
        raise MalformedPacketError(f"not a UDP port: {port!r}")
    return ip.packed + port.to_bytes(2, "big")


class CookieChecker:
    """Checks mac1/mac2 of messages sent to us and makes cookie replies.

    Args:
        identity: our static identity (its public key keys mac1 and the cookie seal).
        random: source of the rotating secret and of reply nonces.
    """

    __slots__ = ("_cookie_key", "_mac1_key", "_random", "_secret", "_secret_set")

    def __init__(self, identity: StaticIdentity, random: RandomSource) -> None:
        self._mac1_key = identity.mac1_key
        self._cookie_key = identity.cookie_key
        self._random = random
        self._secret = b""
        self._secret_set: float | None = None

    def check_mac1(self, msg: Buffer) -> bool:
        """Whether ``msg`` (a whole handshake message) carries a valid mac1 for us."""
        n = len(msg)
        expected = mac(self._mac1_key, msg[: n - 32])
        return hmac.compare_digest(expected, bytes(msg[n - 32 : n - 16]))

    def _cookie(self, src: bytes) -> bytes:
        return mac(self._secret, src)

    def check_mac2(self, msg: Buffer, src: bytes, now: float) -> bool:
        """Whether ``msg`` carries a valid mac2 for a cookie we gave ``src`` in the last 2 min."""
        if self._secret_set is None or now - self._secret_set > COOKIE_REFRESH_TIME:
            return False
        n = len(msg)
        expected = mac(self._cookie(src), msg[: n - 16])
        return hmac.compare_digest(expected, bytes(msg[n - 16 :]))

    def create_reply(self, msg: Buffer, receiver: int, src: bytes, now: float) -> CookieReply:
        """A cookie reply to ``msg`` (an initiation or response) that came from ``src``.

        Args:
            msg: the handshake message being answered (its mac1 is the AAD).
            receiver: the message's sender index.
            src: :func:`address_bytes` of its source.
            now: current time; the secret is replaced when older than two minutes.

        Returns:
            The reply to send back to ``src``.
        """
        if self._secret_set is None or now - self._secret_set > COOKIE_REFRESH_TIME:
            self._secret = self._random(32)
            self._secret_set = now
        n = len(msg)
        nonce = self._random(24)
        sealed = xchacha20poly1305_encrypt(
            self._cookie_key, nonce, self._cookie(src), bytes(msg[n - 32 : n - 16])
        )
        return CookieReply(receiver, nonce, sealed)


class CookieGenerator:
    """Adds mac1/mac2 to the handshake messages we send one peer; accepts its cookie replies.

    Args:
        remote_static: the peer's public key.
    """

    __slots__ = ("_cookie", "_cookie_key", "_cookie_set", "_last_mac1", "_mac1_key")

    def __init__(self, remote_static: PublicKey) -> None:
        self._mac1_key = hash_(LABEL_MAC1, remote_static.raw)
        self._cookie_key = hash_(LABEL_COOKIE, remote_static.raw)
        self._cookie = b""
        self._cookie_set: float | None = None
        self._last_mac1: bytes | None = None

    @property
    def has_cookie(self) -> bool:
        """Whether a cookie was received (it is used for two minutes)."""
        return self._cookie_set is not None

    def add_macs(self, msg: bytearray, now: float) -> None:
        """Fill in mac1 and (with a fresh cookie) mac2 of ``msg``, in place."""
        n = len(msg)
        m1 = mac(self._mac1_key, msg[: n - 32])
        msg[n - 32 : n - 16] = m1
        self._last_mac1 = m1
        if self._cookie_set is None or now - self._cookie_set > COOKIE_REFRESH_TIME:
            msg[n - 16 :] = bytes(16)
            return
        msg[n - 16 :] = mac(self._cookie, msg[: n - 16])

    def consume_reply(self, reply: CookieReply, now: float) -> bool:
        """Accept a cookie reply to the last message we MAC'd.

        Returns:
            ``True`` if it decrypted (the cookie is stored), ``False`` otherwise.
        """
        if self._last_mac1 is None:
            return False
        try:
            cookie = xchacha20poly1305_decrypt(
                self._cookie_key, reply.nonce, reply.cookie, self._last_mac1
            )
        except InvalidTag:
            return False
        self._cookie = cookie
        self._cookie_set = now
        return True
