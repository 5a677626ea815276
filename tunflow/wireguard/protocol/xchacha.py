"""XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03), for WireGuard cookie replies.

``cryptography`` has ChaCha20-Poly1305 with a 96-bit nonce but no XChaCha. XChaCha20 derives a
subkey with HChaCha20 from the key and the first 16 bytes of the 24-byte nonce, then runs
ChaCha20-Poly1305 with the subkey and the nonce ``0000 ‖ nonce[16:24]``. HChaCha20 is taken
from ``cryptography``'s ChaCha20 keystream: it runs once per cookie reply, and cookie replies are
what an interface under load sends each handshake message of a flood, so they must cost less
than the handshake work they spare. Sans-I/O: no state, no randomness.
"""

from __future__ import annotations

import struct
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

__all__ = ["hchacha20", "xchacha20poly1305_encrypt", "xchacha20poly1305_decrypt"]

_WORDS8: Final = struct.Struct("<8I")
_WORDS4: Final = struct.Struct("<4I")
_SIGMA: Final = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"
_M: Final = 0xFFFFFFFF
_BLOCK: Final = bytes(64)


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
    # ChaCha20's block is the rounds' result plus the input state, whose words 12-15 (counter
    # and nonce, as cryptography takes them) are nonce16: taking the input back off words 0-3
    # and 12-15 of the first keystream block leaves HChaCha20's
    block = Cipher(algorithms.ChaCha20(key, nonce16), None).encryptor().update(_BLOCK)
    s0, s1, s2, s3 = _WORDS4.unpack_from(block)
    t0, t1, t2, t3 = _WORDS4.unpack_from(block, 48)
    n0, n1, n2, n3 = _WORDS4.unpack(nonce16)
    return _WORDS8.pack(
        (s0 - _SIGMA[0]) & _M,
        (s1 - _SIGMA[1]) & _M,
        (s2 - _SIGMA[2]) & _M,
        (s3 - _SIGMA[3]) & _M,
        (t0 - n0) & _M,
        (t1 - n1) & _M,
        (t2 - n2) & _M,
        (t3 - n3) & _M,
    )


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
