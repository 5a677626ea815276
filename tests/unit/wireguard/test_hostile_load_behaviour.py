"""What an interface under load does with a flood of handshake messages: each one that passes
mac1 (anyone who knows the public key makes those) is answered with a cookie reply instead of
being consumed — which spares the interface work only if the reply costs much less than the
consumption would. Measured against each other, in this process: no absolute times."""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable

from tunflow.wireguard.protocol import CookieGenerator, PrivateKey, WireGuard
from tunflow.wireguard.protocol.xchacha import hchacha20

_M = 0xFFFFFFFF


def reference_hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 word by word (draft-irtf-cfrg-xchacha-03 §2.2)."""
    x = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    x += struct.unpack("<8I", key) + struct.unpack("<4I", nonce16)

    def qr(a: int, b: int, c: int, d: int) -> None:
        for s1, s2 in ((16, 12), (8, 7)):
            x[a] = (x[a] + x[b]) & _M
            t = x[d] ^ x[a]
            x[d] = ((t << s1) | (t >> (32 - s1))) & _M
            x[c] = (x[c] + x[d]) & _M
            t = x[b] ^ x[c]
            x[b] = ((t << s2) | (t >> (32 - s2))) & _M

    for _ in range(10):
        for a, b, c, d in ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15)):
            qr(a, b, c, d)
        for a, b, c, d in ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)):
            qr(a, b, c, d)
    return struct.pack("<8I", *x[0:4], *x[12:16])


def test_hchacha20_is_the_drafts_for_any_key_and_nonce() -> None:
    rng = random.Random(7)
    nonces = [bytes(16), b"\xff" * 16, b"\xff\xff\xff\xff" + bytes(12)]
    nonces += [rng.randbytes(16) for _ in range(300)]
    for nonce in nonces:
        key = rng.randbytes(32)
        assert hchacha20(key, nonce) == reference_hchacha20(key, nonce)


def cost(step: Callable[[int], object], n: int = 200) -> float:
    """The least time of five runs of ``n`` steps."""
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for i in range(n):
            step(i)
        best = min(best, time.perf_counter() - t)
    return best


def test_a_cookie_reply_costs_far_less_than_the_initiation_it_turns_away() -> None:
    key = PrivateKey(bytes(range(1, 33)))
    rng = random.Random(3)
    gen = CookieGenerator(key.public_key())
    flood = []
    for _ in range(200):
        msg = bytearray(b"\x01\x00\x00\x00") + rng.randbytes(144)
        gen.add_macs(msg, 1.0)  # mac1 right: past the first check, into the handshake
        flood.append(bytes(msg))
    src = ("192.0.2.1", 51820)

    consuming = WireGuard(key)
    answering = WireGuard(key)
    answering.set_under_load(1.0, 1e9)

    consumed = cost(lambda i: consuming._consume_initiation(flood[i], src, 1.0))
    answered = cost(lambda i: answering._receive_other(memoryview(flood[i]), src, 1.0, None))  # type: ignore[arg-type]
    assert answering.statistics().cookie_replies_sent >= len(flood)
    answering.datagrams_to_send()
    # (an X25519 against a ChaCha20 block, an AEAD seal and two MACs)
    assert answered < consumed, (answered, consumed)
