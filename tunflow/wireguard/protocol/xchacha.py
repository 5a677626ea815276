"""XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03), for WireGuard cookie replies.

``cryptography`` has ChaCha20-Poly1305 with a 96-bit nonce but no XChaCha. XChaCha20 derives a
subkey with HChaCha20 from the key and the first 16 bytes of the 24-byte nonce, then runs
ChaCha20-Poly1305 with the subkey and the nonce ``0000 ‖ nonce[16:24]``. HChaCha20 is written
here in pure Python: it runs once per cookie reply (rare, and only under load), so clarity beats
speed. Sans-I/O: no state, no randomness.
"""

from __future__ import annotations

import struct
from typing import Final

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

__all__ = ["hchacha20", "xchacha20poly1305_encrypt", "xchacha20poly1305_decrypt"]

_WORDS8: Final = struct.Struct("<8I")
_WORDS4: Final = struct.Struct("<4I")
_SIGMA: Final = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"
_M: Final = 0xFFFFFFFF


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20(key, nonce16): the 32-byte subkey (draft-irtf-cfrg-xchacha-03 §2.2).

    Args:
        key: 32 bytes.
        nonce16: 16 bytes.

    Returns:
        32 bytes: state words 0-3 and 12-15 after 20 rounds, without the final addition.

    Raises:
        ValueError: wrong key or nonce length.

    Example:
        >>> hchacha20(bytes(range(32)), bytes.fromhex("000000090000004a0000000031415927")).hex()[:16]
        '82413b4227b27bfe'
    """
    if len(key) != 32 or len(nonce16) != 16:
        raise ValueError("HChaCha20 needs a 32-byte key and a 16-byte nonce")
    x = [*_SIGMA, *_WORDS8.unpack(key), *_WORDS4.unpack(nonce16)]

    def qr(a: int, b: int, c: int, d: int) -> None:
        x[a] = (x[a] + x[b]) & _M
        t = x[d] ^ x[a]
        x[d] = ((t << 16) | (t >> 16)) & _M
        x[c] = (x[c] + x[d]) & _M
        t = x[b] ^ x[c]
        x[b] = ((t << 12) | (t >> 20)) & _M
        x[a] = (x[a] + x[b]) & _M
        t = x[d] ^ x[a]
        x[d] = ((t << 8) | (t >> 24)) & _M
        x[c] = (x[c] + x[d]) & _M
        t = x[b] ^ x[c]
        x[b] = ((t << 7) | (t >> 25)) & _M

    for _ in range(10):
        qr(0, 4, 8, 12)
        qr(1, 5, 9, 13)
        qr(2, 6, 10, 14)
        qr(3, 7, 11, 15)
        qr(0, 5, 10, 15)
        qr(1, 6, 11, 12)
        qr(2, 7, 8, 13)
        qr(3, 4, 9, 14)
    return _WORDS8.pack(x[0], x[1], x[2], x[3], x[12], x[13], x[14], x[15])


def _split(key: bytes, nonce: bytes) -> tuple[ChaCha20Poly1305, bytes]:
    if len(nonce) != 24:
        raise ValueError("XChaCha20-Poly1305 needs a 24-byte nonce")
    return ChaCha20Poly1305(hchacha20(key, nonce[:16])), b"\0\0\0\0" + nonce[16:]


def xchacha20poly1305_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Seal ``plaintext``: ciphertext ‖ 16-byte tag.

    Raises:
        ValueError: wrong key or nonce length.

    Example:
        >>> sealed = xchacha20poly1305_encrypt(bytes(32), bytes(24), b"hi", b"")
        >>> xchacha20poly1305_decrypt(bytes(32), bytes(24), sealed, b"")
        b'hi'
    """
    aead, n = _split(key, nonce)
    return aead.encrypt(n, plaintext, aad)


def xchacha20poly1305_decrypt(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """Open ``sealed`` (ciphertext ‖ tag).

    Raises:
        ValueError: wrong key or nonce length.
        cryptography.exceptions.InvalidTag: authentication failed.
    """
    aead, n = _split(key, nonce)
    return aead.decrypt(n, sealed, aad)
