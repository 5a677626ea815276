"""Keypair and timer behaviour no other test pinned down: REJECT_AFTER_MESSAGES on every send
and receive path, an expired session's native counter, the replay checks of the slow path and
of the run-at-once step, the time-based rekeys being the initiator's alone, a native counter
running out, giving up cancelling the passive keepalive, and no persistent keepalive deadline
while the keepalive is off."""

from __future__ import annotations

import pytest
from wgpair import A_IP, B_IP, Pair, batch_of, ip4

from tunflow.wireguard.protocol import DatagramBatch, HandshakeFailed, session as session_module
from tunflow.wireguard.protocol.constants import (
    KEEPALIVE_TIMEOUT,
    MAX_TIMER_HANDSHAKES,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_TIMEOUT,
)
from tunflow.wireguard.protocol.native import seal_native


def test_an_expired_session_seals_no_native_message() -> None:
    # Session.expire: "make the session unable to send" — native messages included
    p = Pair(a_peer={"native_mode": True}, b_peer={"native_mode": True})
    p.handshake()
    s = p.peer_of_a.current
    s.expire()
    out = DatagramBatch(1 << 16)
    assert seal_native(s, bytes(10) + ip4(A_IP, B_IP), out, p.b_addr, 1452, bytearray(70_000)) == 0
    assert len(out) == 0


def test_no_send_path_uses_the_counter_reject_after_messages() -> None:
    # counters at or above REJECT_AFTER_MESSAGES are never sent (whitepaper §6.4)
    p = Pair()
    p.handshake()
    s = p.peer_of_a.current
    s.send_counter = REJECT_AFTER_MESSAGES
    out = DatagramBatch(1 << 16)
    assert not s.encrypt_one(memoryview(ip4(A_IP, B_IP)), out, p.b_addr, 1420)
    assert s.encrypt(ip4(A_IP, B_IP), 1420) is None
    assert len(out) == 0 and s.send_counter == REJECT_AFTER_MESSAGES


def test_a_run_sent_at_once_stops_at_reject_after_messages() -> None:
    # a run of full-MTU packets (encrypt_batch's run-at-once step) near the limit: only the
    # counters below REJECT_AFTER_MESSAGES go out, the rest is the caller's
    p = Pair()
    p.handshake()
    s = p.peer_of_a.current
    s.send_counter = REJECT_AFTER_MESSAGES - 3
    batch = batch_of([ip4(A_IP, B_IP, bytes(1400))] * 10)
    out = DatagramBatch(1 << 16)
    assert s.encrypt_batch(batch, out, p.b_addr, 1420, range(10)) == 3
    assert len(out) == 3 and s.send_counter == REJECT_AFTER_MESSAGES


def test_the_slow_path_decrypt_refuses_a_replay() -> None:
    # Session.decrypt: None for a message that "is a replay"
    p = Pair()
    p.handshake()
    d = p.peer_of_a.current.encrypt(ip4(A_IP, B_IP), 1420)
    s = p.peer_of_b.current
    assert d is not None and s.decrypt(d) is not None
    assert s.decrypt(d) is None


def test_no_persistent_keepalive_arms_no_persistent_deadline() -> None:
    # persistent keepalive off (0): traffic sets no deadline, so get_timer never asks for a
    # wake-up that has nothing to do
    p = Pair()
    p.handshake()
    assert p.transfer("a", [ip4(A_IP, B_IP)]) == [ip4(A_IP, B_IP)]
    assert p.peer_of_a.persistent_at is None and p.peer_of_b.persistent_at is None
    assert p.a.get_timer() > p.now and p.b.get_timer() > p.now


def test_a_responder_receiving_late_in_the_session_does_not_rekey() -> None:
    # the "last minute" rekey on receiving (REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT -
    # REKEY_TIMEOUT) is the initiator's alone, as the time-based rekey on sending
    p = Pair()
    p.handshake()
    late = p.send("a", [ip4(A_IP, B_IP)])
    p.now += REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT + 1
    assert p.deliver("b", late) == [ip4(A_IP, B_IP)]
    assert p.b.datagrams_to_send(p.now) == []
    assert p.b.statistics().handshake_initiations_sent == 0


def test_a_native_session_out_of_counters_stages_and_rehandshakes() -> None:
    # a native-mode peer whose native counter reached REJECT_AFTER_MESSAGES has no usable
    # session: the batch is consumed (staged), a handshake starts, and the packets arrive on
    # the new session — encrypt_batch returns less only when ``out`` is full
    p = Pair(a_peer={"native_mode": True}, b_peer={"native_mode": True})
    p.handshake()
    p.peer_of_a.current.native_send_counter = REJECT_AFTER_MESSAGES
    p.now += REKEY_TIMEOUT
    pkts = [ip4(A_IP, B_IP, bytes([i]) * 20) for i in range(2)]
    assert p.send("a", pkts) == []
    assert p.a.statistics().handshake_initiations_sent == 2
    p.flush()
    assert p.got["b"][-2:] == [bytes(10) + pkt for pkt in pkts]


def test_a_run_that_starts_with_the_last_counter_taken_drops_that_one() -> None:
    # a run of one size and consecutive counters (decrypt_batch's run-at-once step) whose
    # first counter is the highest already taken: that one is a replay, the rest are new
    p = Pair()
    p.handshake()
    pkts = [ip4(A_IP, B_IP, i.to_bytes(4, "big") + bytes(104)) for i in range(19)]
    datagrams = p.send("a", pkts)
    assert p.deliver("b", datagrams[:10]) == pkts[:10]
    assert p.deliver("b", datagrams[9:]) == pkts[10:]
    assert p.b.statistics().dropped_replay == 1


def test_a_run_reaching_reject_after_messages_drops_that_counter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # counters at or above REJECT_AFTER_MESSAGES are refused on receipt, also as the last of a
    # run taken at once (a peer's sending limit lifted to make one)
    p = Pair()
    p.handshake()
    monkeypatch.setattr(session_module, "REJECT_AFTER_MESSAGES", 1 << 64)
    s = p.peer_of_a.current
    s.send_counter = REJECT_AFTER_MESSAGES - 9
    pkts = [ip4(A_IP, B_IP, i.to_bytes(4, "big") + bytes(104)) for i in range(10)]
    datagrams = [s.encrypt(pkt, 1420) for pkt in pkts]
    assert p.deliver("b", datagrams) == pkts[:9]
    assert p.b.statistics().dropped_replay == 1


def test_giving_up_cancels_a_pending_passive_keepalive() -> None:
    # wireguard-go's expiredRetransmitHandshake deletes the keepalive timer when it gives up:
    # data received just before does not start the handshakes again through a keepalive
    p = Pair()
    p.handshake()
    p.peer_of_a.current.send_counter = REJECT_AFTER_MESSAGES  # a cannot send: it rekeys
    p.now += REKEY_TIMEOUT
    p.a.send_packet(ip4(A_IP, B_IP), p.now)
    lost = lambda frm, d: frm == "a"  # noqa: E731 - nothing of a's arrives
    p.flush(lost)
    peer = p.peer_of_a
    for _ in range(100):
        if peer.handshake_attempts > MAX_TIMER_HANDSHAKES:
            break
        p.advance(peer.retransmit_at - p.now, drop=lost)
    give_up = peer.retransmit_at
    p.now = give_up - 3
    assert p.transfer("b", [ip4(B_IP, A_IP)], drop=lost) == [ip4(B_IP, A_IP)]
    assert peer.keepalive_at is not None
    p.advance(give_up - p.now, drop=lost)
    assert [e for e in p.events("a") if isinstance(e, HandshakeFailed)]
    sent = p.a.statistics().handshake_initiations_sent
    p.advance(KEEPALIVE_TIMEOUT * 2, drop=lost)
    assert p.a.statistics().handshake_initiations_sent == sent
