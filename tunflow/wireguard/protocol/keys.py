"""Curve25519 keys and preshared keys, with the base64 and hex codecs ``wg(8)`` uses.

``wg genkey``/``wg pubkey``/``wg genpsk`` equivalents are :func:`genkey`, :func:`pubkey` and
:func:`genpsk`. Randomness is injected (``random(n) -> bytes``); :func:`secrets.token_bytes` is
only the default. Private keys compare in constant time and never appear in ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ...errors import ConfigError, HandshakeError

__all__ = [
    "RandomSource",
    "KEY_SIZE",
    "PrivateKey",
    "PublicKey",
    "PresharedKey",
    "genkey",
    "pubkey",
    "genpsk",
]

#: ``random(n)`` returns ``n`` unpredictable bytes (``secrets.token_bytes`` by default).
RandomSource = Callable[[int], bytes]
KEY_SIZE: Final = 32


def _decode(text: str | bytes, what: str) -> bytes:
    """Decode a 32-byte key given as base64 (44 characters) or hex (64 characters)."""
    if not isinstance(text, str | bytes):
        raise ConfigError(f"{what} must be text or 32 bytes, not {type(text).__name__}")
    s = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    s = s.strip()
    try:
        raw = bytes.fromhex(s) if len(s) == 64 else base64.b64decode(s, validate=True)
    except (ValueError, binascii.Error):
        raise ConfigError(f"{what} is neither base64 nor hex") from None
    if len(raw) != KEY_SIZE:
        raise ConfigError(f"{what} must be {KEY_SIZE} bytes, got {len(raw)}")
    if len(s) != 64 and base64.b64encode(raw).decode("ascii") != s:
        # the last character's unused bits set: another spelling of the same key, which wg
        # and wireguard-go refuse
        raise ConfigError(f"{what} is not canonical base64 (its last character)")
    return raw


def _check_raw(raw: bytes | bytearray | memoryview, what: str) -> bytes:
    b = bytes(raw)
    if len(b) != KEY_SIZE:
        raise ConfigError(f"{what} must be {KEY_SIZE} bytes, got {len(b)}")
    return b


def _clamp(raw: bytes) -> bytes:
    b = bytearray(raw)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


class PublicKey:
    """A Curve25519 public key: 32 bytes, hashable, usable as a dict key.

    Args:
        raw: the 32 key bytes.

    Raises:
        ConfigError: not 32 bytes.

    Example:
        >>> k = PublicKey.from_base64("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=")
        >>> k.to_hex()[:8]
        '1c8828f7'
    """

    __slots__ = ("_hash", "raw")

    def __init__(self, raw: bytes | bytearray | memoryview) -> None:
        self.raw: bytes = _check_raw(raw, "public key")
        self._hash = hash(self.raw)

    @classmethod
    def from_base64(cls, text: str | bytes) -> PublicKey:
        """Parse base64 (as ``wg`` prints it) or 64 hex digits (as the UAPI carries it).

        Raises:
            ConfigError: not a 32-byte key in either encoding.
        """
        return cls(_decode(text, "public key"))

    from_hex = from_base64

    def to_base64(self) -> str:
        """The key as ``wg`` prints it."""
        return base64.b64encode(self.raw).decode("ascii")

    def to_hex(self) -> str:
        """The key as the UAPI carries it (lowercase hex)."""
        return self.raw.hex()

    def __bytes__(self) -> bytes:
        return self.raw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return self.raw == other.raw

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"PublicKey({self.to_base64()!r})"

    __str__ = to_base64


class PrivateKey:
    """A Curve25519 private key. Never printed; compared in constant time.

    Args:
        raw: the 32 key bytes (clamping happens inside X25519, as in ``wg``).

    Raises:
        ConfigError: not 32 bytes.

    Example:
        >>> k = PrivateKey.generate(lambda n: bytes(n))
        >>> k
        PrivateKey(<secret>, public='L+V9o0fNYkMVKNqsX7spBzD/9oSvxM/C7ZCZX1jLO3Q=')
    """

    __slots__ = ("_key", "_public", "raw")

    def __init__(self, raw: bytes | bytearray | memoryview) -> None:
        self.raw: bytes = _check_raw(raw, "private key")
        self._key = X25519PrivateKey.from_private_bytes(self.raw)
        self._public = PublicKey(self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, random: RandomSource | None = None) -> PrivateKey:
        """A new clamped key from ``random`` (default :func:`secrets.token_bytes`)."""
        return cls(_clamp((random or secrets.token_bytes)(KEY_SIZE)))

    @classmethod
    def from_base64(cls, text: str | bytes) -> PrivateKey:
        """Parse base64 (as ``wg genkey`` prints it) or 64 hex digits (the UAPI form).

        Raises:
            ConfigError: not a 32-byte key in either encoding.
        """
        return cls(_decode(text, "private key"))

    from_hex = from_base64

    def public_key(self) -> PublicKey:
        """The matching public key."""
        return self._public

    def exchange(self, peer: PublicKey | bytes | bytearray) -> bytes:
        """X25519(self, peer): the 32-byte shared secret.

        Raises:
            HandshakeError: the result is all zeros (``peer`` is a low-order point).
        """
        raw = peer.raw if isinstance(peer, PublicKey) else peer
        try:
            return self._key.exchange(X25519PublicKey.from_public_bytes(bytes(raw)))
        except ValueError:
            raise HandshakeError("X25519 with a low-order public key") from None

    def to_base64(self) -> str:
        """The key as ``wg genkey`` prints it. Handle with care."""
        return base64.b64encode(self.raw).decode("ascii")

    def to_hex(self) -> str:
        """The key in the UAPI's lowercase hex. Handle with care."""
        return self.raw.hex()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PrivateKey):
            return NotImplemented
        return hmac.compare_digest(self.raw, other.raw)

    def __hash__(self) -> int:
        return hash(self._public)

    def __repr__(self) -> str:
        return f"PrivateKey(<secret>, public={self._public.to_base64()!r})"

    __str__ = __repr__


class PresharedKey:
    """A 32-byte symmetric key mixed into the handshake (all zeros when unset).

    Args:
        raw: the 32 key bytes; default all zeros (what WireGuard uses without a PSK).

    Raises:
        ConfigError: not 32 bytes.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: bytes | bytearray | memoryview = bytes(KEY_SIZE)) -> None:
        self.raw: bytes = _check_raw(raw, "preshared key")

    @classmethod
    def generate(cls, random: RandomSource | None = None) -> PresharedKey:
        """A new random key from ``random`` (default :func:`secrets.token_bytes`)."""
        return cls((random or secrets.token_bytes)(KEY_SIZE))

    @classmethod
    def from_base64(cls, text: str | bytes) -> PresharedKey:
        """Parse base64 or 64 hex digits.

        Raises:
            ConfigError: not a 32-byte key in either encoding.
        """
        return cls(_decode(text, "preshared key"))

    from_hex = from_base64

    @property
    def is_zero(self) -> bool:
        """Whether this is the all-zero "no PSK" key."""
        return hmac.compare_digest(self.raw, bytes(KEY_SIZE))

    def to_base64(self) -> str:
        """The key as ``wg genpsk`` prints it. Handle with care."""
        return base64.b64encode(self.raw).decode("ascii")

    def to_hex(self) -> str:
        """The key in the UAPI's lowercase hex. Handle with care."""
        return self.raw.hex()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PresharedKey):
            return NotImplemented
        return hmac.compare_digest(self.raw, other.raw)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "PresharedKey(<zero>)" if self.is_zero else "PresharedKey(<secret>)"


def genkey(random: RandomSource | None = None) -> str:
    """Like ``wg genkey``: a new private key in base64.

    Example:
        >>> len(genkey())
        44
    """
    return PrivateKey.generate(random).to_base64()


def pubkey(private_key: str | bytes) -> str:
    """Like ``wg pubkey``: the base64 public key of a base64 private key.

    Raises:
        ConfigError: ``private_key`` is not a 32-byte key.

    Example:
        >>> pubkey("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=")
        'HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw='
    """
    return PrivateKey.from_base64(private_key).public_key().to_base64()


def genpsk(random: RandomSource | None = None) -> str:
    """Like ``wg genpsk``: a new preshared key in base64."""
    return PresharedKey.generate(random).to_base64()
