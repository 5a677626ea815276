"""Handshake state rules that the pair and vector tests let a mutated noise.py break.

What is asserted is wireguard-go's ``device/noise-protocol.go`` and noise.py's docstrings: a
refused initiation or response changes no state, the flood reference only moves forward,
deriving keys ends the handshake, ``clear`` keeps the replay/flood history, and low-order keys
are :class:`~tunflow.errors.HandshakeError`.
"""

from __future__ import annotations

import random

import pytest

from tunflow.errors import HandshakeError
from tunflow.wireguard.protocol import Handshake, PrivateKey, StaticIdentity, tai64n
from tunflow.wireguard.protocol.constants import HANDSHAKE_INITIATION_RATE
from tunflow.wireguard.protocol.messages import Initiation, Response
from tunflow.wireguard.protocol.noise import HandshakeState, consume_initiation_static

#: X25519 of anything with u = 0 is zero: a low-order public key.
LOW_ORDER = bytes(32)


class _Sides:
    def __init__(self) -> None:
        self.rng = random.Random(7)
        self.a = StaticIdentity(PrivateKey(bytes([1]) * 32))
        self.b = StaticIdentity(PrivateKey(bytes([2]) * 32))
        self.ha = Handshake(self.a, self.b.public_key)
        self.hb = Handshake(self.b, self.a.public_key)
        self.clock = 1_700_000_000.0

    def random(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def initiation(self, sender: int = 1) -> Initiation:
        self.clock += 1.0  # a newer TAI64N for every initiation
        return self.ha.create_initiation(sender, tai64n(self.clock), self.random)

    def consume(self, msg: Initiation, now: float) -> bytes:
        return self.hb.consume_initiation(consume_initiation_static(self.b, msg), msg, now)


def test_an_initiation_one_rate_after_the_last_is_a_flood() -> None:
    # wireguard-go: flood := time.Since(lastInitiationConsumption) <= HandshakeInitationRate
    s = _Sides()
    s.consume(s.initiation(1), 0.0)
    second = s.initiation(2)
    with pytest.raises(HandshakeError, match="flood"):
        s.consume(second, HANDSHAKE_INITIATION_RATE)
    s.consume(second, HANDSHAKE_INITIATION_RATE * 1.5)
    assert s.hb.remote_index == 2


def test_a_clock_stepped_back_leaves_the_flood_reference_where_it_was() -> None:
    # wireguard-go moves lastInitiationConsumption only forward: an initiation accepted after a
    # step back does not open the flood window from the earlier time
    s = _Sides()
    s.consume(s.initiation(1), 10.0)
    s.consume(s.initiation(2), 5.0)
    with pytest.raises(HandshakeError, match="flood"):
        s.consume(s.initiation(3), 10.0 + HANDSHAKE_INITIATION_RATE / 2)


def test_an_initiation_refused_as_a_flood_changes_no_state() -> None:
    s = _Sides()
    first_ts = s.consume(s.initiation(1), 0.0)
    second = s.initiation(2)
    with pytest.raises(HandshakeError, match="flood"):
        s.consume(second, HANDSHAKE_INITIATION_RATE / 2)
    assert (s.hb.remote_index, s.hb.last_timestamp) == (1, first_ts)
    assert s.hb.state == HandshakeState.INITIATION_CONSUMED
    # its timestamp was not recorded, so the same initiation is taken once the flood is over
    assert s.consume(second, 1.0) > first_ts
    assert s.hb.remote_index == 2


def test_clear_keeps_the_replay_and_flood_history() -> None:
    s = _Sides()
    first = s.initiation(1)
    s.consume(first, 0.0)
    s.hb.clear()
    assert s.hb.state == HandshakeState.ZEROED
    with pytest.raises(HandshakeError, match="replayed"):
        s.consume(first, 5.0)
    with pytest.raises(HandshakeError, match="flood"):
        s.consume(s.initiation(2), HANDSHAKE_INITIATION_RATE / 2)


def test_a_response_is_consumed_once() -> None:
    s = _Sides()
    s.consume(s.initiation(1), 0.0)
    response = s.hb.create_response(9, s.random)
    s.ha.consume_response(response)
    assert s.ha.state == HandshakeState.RESPONSE_CONSUMED
    with pytest.raises(HandshakeError, match="outstanding"):
        s.ha.consume_response(response)


def test_deriving_keys_ends_the_handshake() -> None:
    s = _Sides()
    s.consume(s.initiation(1), 0.0)
    response = s.hb.create_response(9, s.random)
    s.ha.consume_response(response)
    mine, theirs = s.ha.derive_keys(), s.hb.derive_keys()
    assert (mine.send_key, mine.receive_key) == (theirs.receive_key, theirs.send_key)
    for hs in (s.ha, s.hb):
        assert hs.state == HandshakeState.ZEROED
        with pytest.raises(HandshakeError, match="cannot derive keys"):
            hs.derive_keys()
    with pytest.raises(HandshakeError):
        s.hb.create_response(10, s.random)
    with pytest.raises(HandshakeError):
        s.ha.consume_response(response)


def test_a_response_with_a_low_order_ephemeral_is_a_handshake_error() -> None:
    s = _Sides()
    init = s.initiation(1)
    s.consume(init, 0.0)
    good = s.hb.create_response(9, s.random)
    forged = Response(good.sender, good.receiver, LOW_ORDER, good.empty)
    with pytest.raises(HandshakeError, match="low-order"):
        s.ha.consume_response(forged)
    assert s.ha.state == HandshakeState.INITIATION_CREATED
    s.ha.consume_response(good)
    assert s.ha.state == HandshakeState.RESPONSE_CONSUMED


def test_an_initiation_with_a_low_order_ephemeral_is_a_handshake_error() -> None:
    s = _Sides()
    init = s.initiation(1)
    forged = Initiation(init.sender, LOW_ORDER, init.static, init.timestamp)
    with pytest.raises(HandshakeError, match="low-order"):
        consume_initiation_static(s.b, forged)
