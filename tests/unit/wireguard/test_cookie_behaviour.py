"""Cookie rules that the pair tests let a mutated cookie.py break (whitepaper §5.4.7).

Asserted against wireguard-go's ``device/cookie.go``: a cookie secret and a received cookie are
good for ``COOKIE_REFRESH_TIME`` inclusive (``time.Since(set) > CookieRefreshTime`` expires them),
the secret is not replaced by every reply, a reply is only accepted for a message we MAC'd, a
reply that does not open stores nothing, and reply nonces are random.
"""

from __future__ import annotations

import random

from tunflow.wireguard.protocol import (
    CookieChecker,
    CookieGenerator,
    CookieReply,
    PrivateKey,
    StaticIdentity,
    xchacha20poly1305_encrypt,
)
from tunflow.wireguard.protocol._crypto import hash_
from tunflow.wireguard.protocol.constants import COOKIE_REFRESH_TIME, LABEL_COOKIE
from tunflow.wireguard.protocol.cookie import address_bytes

SRC = address_bytes(("192.0.2.1", 51820))
OTHER_SRC = address_bytes(("192.0.2.2", 51820))
T0 = 1000.0


def _responder() -> tuple[StaticIdentity, CookieChecker]:
    identity = StaticIdentity(PrivateKey(bytes([2]) * 32))
    return identity, CookieChecker(identity, random.Random(3).randbytes)


def _message(gen: CookieGenerator, now: float, fill: int = 0x11) -> bytearray:
    msg = bytearray([1, 0, 0, 0]) + bytearray([fill]) * 144  # an initiation-sized message
    gen.add_macs(msg, now)
    return msg


def _with_cookie(checker: CookieChecker, gen: CookieGenerator, src: bytes, now: float) -> None:
    msg = _message(gen, now)
    assert gen.consume_reply(checker.create_reply(msg, 1, src, now), now)


def test_a_cookie_secret_checks_mac2_up_to_exactly_two_minutes() -> None:
    identity, checker = _responder()
    gen = CookieGenerator(identity.public_key)
    _with_cookie(checker, gen, SRC, T0)
    msg = _message(gen, T0)
    assert checker.check_mac2(msg, SRC, T0 + COOKIE_REFRESH_TIME)
    assert not checker.check_mac2(msg, SRC, T0 + COOKIE_REFRESH_TIME + 0.5)


def test_a_received_cookie_is_used_up_to_exactly_two_minutes() -> None:
    identity, checker = _responder()
    gen = CookieGenerator(identity.public_key)
    _with_cookie(checker, gen, SRC, T0)
    at_limit = _message(gen, T0 + COOKIE_REFRESH_TIME)
    assert at_limit[-16:] != bytes(16)
    assert checker.check_mac2(at_limit, SRC, T0 + 1)
    assert _message(gen, T0 + COOKIE_REFRESH_TIME + 0.5)[-16:] == bytes(16)


def test_replies_to_other_sources_keep_the_secret_for_two_minutes() -> None:
    identity, checker = _responder()
    first = CookieGenerator(identity.public_key)
    second = CookieGenerator(identity.public_key)
    _with_cookie(checker, first, SRC, T0)
    _with_cookie(checker, second, OTHER_SRC, T0 + 1)
    assert checker.check_mac2(_message(first, T0 + 2), SRC, T0 + 2)
    assert checker.check_mac2(_message(second, T0 + 2), OTHER_SRC, T0 + 2)


def test_a_reply_before_any_message_was_maced_is_refused() -> None:
    # the reply's AAD is the mac1 of the message it answers; with none sent there is nothing
    # to answer (wireguard-go: if !hasLastMAC1 { return false })
    identity, _ = _responder()
    gen = CookieGenerator(identity.public_key)
    key = hash_(LABEL_COOKIE, identity.public_key.raw)  # public: anyone can seal with it
    nonce = bytes(range(24))
    forged = CookieReply(1, nonce, xchacha20poly1305_encrypt(key, nonce, bytes(16), b""))
    assert not gen.consume_reply(forged, T0)
    assert not gen.has_cookie
    assert _message(gen, T0)[-16:] == bytes(16)


def test_a_reply_that_does_not_open_stores_no_cookie() -> None:
    identity, checker = _responder()
    gen = CookieGenerator(identity.public_key)
    msg = _message(gen, T0)
    reply = checker.create_reply(msg, 1, SRC, T0)
    bad = CookieReply(
        reply.receiver, reply.nonce, reply.cookie[:-1] + bytes([reply.cookie[-1] ^ 1])
    )
    assert not gen.consume_reply(bad, T0)
    assert not gen.has_cookie
    assert _message(gen, T0 + 1)[-16:] == bytes(16)


def test_reply_nonces_are_random() -> None:
    identity, checker = _responder()
    gen = CookieGenerator(identity.public_key)
    msg = _message(gen, T0)
    nonces = {checker.create_reply(msg, 1, SRC, T0 + i).nonce for i in range(4)}
    assert len(nonces) == 4
