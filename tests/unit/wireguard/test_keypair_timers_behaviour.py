"""Keypair behaviour no other test pinned down: REJECT_AFTER_MESSAGES on every send and
receive path, an expired session's native counter, and the replay checks of the slow path and
of the run-at-once step."""

from __future__ import annotations

import pytest
from wgpair import A_IP, B_IP, Pair, batch_of, ip4

from tunflow.wireguard.protocol import DatagramBatch, session as session_module
from tunflow.wireguard.protocol.constants import (
    REJECT_AFTER_MESSAGES,
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
