"""The WireGuard primitives: HASH, MAC, HMAC, KDF, AEAD and TAI64N (whitepaper §5.4).

BLAKE2s comes from :mod:`hashlib`, ChaCha20-Poly1305 from ``cryptography``. Nothing here keeps
state or does I/O; callers pass time explicitly.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .constants import CONSTRUCTION, IDENTIFIER

__all__ = [
    "InvalidTag",
    "hash_",
    "mac",
    "hmac_blake2s",
    "kdf1",
    "kdf2",
    "kdf3",
    "aead_encrypt",
    "aead_decrypt",
    "tai64n",
    "INITIAL_CHAIN_KEY",
    "INITIAL_HASH",
    "ZERO_NONCE",
]

_blake2s = hashlib.blake2s
ZERO_NONCE: Final = bytes(12)
_NONCE: Final = struct.Struct("<4xQ")
_TAI64N: Final = struct.Struct(">QI")
#: TAI64 label of the UNIX epoch: 2**62 + 10 (TAI was 10 s ahead of UTC in 1970).
_TAI64_BASE: Final = 0x400000000000000A
#: wireguard-go rounds nanoseconds down to ~16.8 ms so timestamps leak less about the clock.
_WHITENER_MASK: Final = 0x1000000 - 1


def hash_(*parts: bytes | bytearray | memoryview) -> bytes:
    """HASH(a || b || …): unkeyed BLAKE2s-256."""
    h = _blake2s()
    for p in parts:
        h.update(p)
    return h.digest()


def mac(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """MAC(key, data): keyed BLAKE2s with a 16-byte digest."""
    return _blake2s(data, digest_size=16, key=key).digest()


def hmac_blake2s(key: bytes, data: bytes) -> bytes:
    """HMAC(key, data) with BLAKE2s-256 (RFC 2104, 64-byte block)."""
    return hmac.digest(key, data, _blake2s)


def kdf1(key: bytes, data: bytes) -> bytes:
    """KDF₁: HKDF with HMAC-BLAKE2s, one 32-byte output."""
    t0 = hmac_blake2s(key, data)
    return hmac_blake2s(t0, b"\x01")


def kdf2(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    """KDF₂: two 32-byte outputs."""
    t0 = hmac_blake2s(key, data)
    t1 = hmac_blake2s(t0, b"\x01")
    return t1, hmac_blake2s(t0, t1 + b"\x02")


def kdf3(key: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    """KDF₃: three 32-byte outputs."""
    t0 = hmac_blake2s(key, data)
    t1 = hmac_blake2s(t0, b"\x01")
    t2 = hmac_blake2s(t0, t1 + b"\x02")
    return t1, t2, hmac_blake2s(t0, t2 + b"\x03")


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, aad: bytes) -> bytes:
    """AEAD(key, counter, plaintext, aad): ChaCha20-Poly1305, nonce = 32 zero bits ‖ counter LE64."""
    return ChaCha20Poly1305(key).encrypt(_NONCE.pack(counter), plaintext, aad)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`aead_encrypt`.

    Raises:
        cryptography.exceptions.InvalidTag: authentication failed.
    """
    return ChaCha20Poly1305(key).decrypt(_NONCE.pack(counter), ciphertext, aad)


def tai64n(unix_time: float) -> bytes:
    """The 12-byte TAI64N label of ``unix_time`` (seconds since 1970, UTC), whitened."""
    secs = int(unix_time // 1)
    nanos = int((unix_time - secs) * 1e9) & ~_WHITENER_MASK
    return _TAI64N.pack(_TAI64_BASE + secs, nanos)


INITIAL_CHAIN_KEY: Final = hash_(CONSTRUCTION)
INITIAL_HASH: Final = hash_(INITIAL_CHAIN_KEY, IDENTIFIER)
