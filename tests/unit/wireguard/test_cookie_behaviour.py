"""Cookie rules that the pair tests let a mutated cookie.py break (whitepaper §5.4.7).

Asserted against wireguard-go's ``device/cookie.go``: a cookie secret and a received cookie are
good for ``COOKIE_REFRESH_TIME`` inclusive (``time.Since(set) > CookieRefreshTime`` expires them),
the secret is not replaced by every reply (nor by one at exactly two minutes), a reply is only
accepted for a message we MAC'd, a reply that does not open stores nothing, reply nonces are
random, and a cookie is bound to any UDP source port, 0 and 65535 included.
"""

from __future__ import annotations

import random

import pytest
from wgpair import A_IP, B_IP, Pair, ip4

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


def test_a_reply_at_exactly_two_minutes_keeps_the_secret_and_a_later_one_replaces_it() -> None:
    # wireguard-go's CreateReply replaces the secret when time.Since(secretSet) >
    # CookieRefreshTime: the bound CheckMAC2 expires it at
    identity, checker = _responder()
    first = CookieGenerator(identity.public_key)
    second = CookieGenerator(identity.public_key)
    third = CookieGenerator(identity.public_key)
    _with_cookie(checker, first, SRC, T0)
    at_limit = T0 + COOKIE_REFRESH_TIME
    _with_cookie(checker, second, OTHER_SRC, at_limit)
    assert checker.check_mac2(_message(first, at_limit), SRC, at_limit)
    later = at_limit + 0.5
    _with_cookie(checker, third, OTHER_SRC, later)
    assert checker.check_mac2(_message(third, later), OTHER_SRC, later)
    assert not checker.check_mac2(_message(second, later), OTHER_SRC, later)


@pytest.mark.parametrize("port", [0, 1, 65535])
def test_a_cookie_is_bound_to_any_udp_port(port: int) -> None:
    assert address_bytes(("192.0.2.1", port)) == bytes([192, 0, 2, 1]) + port.to_bytes(2, "big")
    assert address_bytes(("2001:db8::1", port))[-2:] == port.to_bytes(2, "big")


@pytest.mark.parametrize("port", [0, 65535])
def test_under_load_an_initiation_from_either_end_of_the_port_range_gets_a_cookie(
    port: int,
) -> None:
    p = Pair()
    p.a.send_packet(ip4(A_IP, B_IP), p.now)
    [(initiation, _)] = p.a.datagrams_to_send()
    p.b.set_under_load(p.now, duration=60)
    p.b.receive_datagram(initiation, ("192.0.2.1", port), p.now)
    s = p.b.statistics()
    assert (s.cookie_replies_sent, s.dropped_malformed) == (1, 0)
    [(_, to)] = p.b.datagrams_to_send()
    assert to == ("192.0.2.1", port)


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
