"""Keypair edges against docs/wireguard.md and wireguard-go: a session is usable while younger
than REJECT_AFTER_TIME (not at it) on every send and receive path, the run sent at once never
seals the counter REJECT_AFTER_MESSAGES, a responder sends nothing with a session before its
key confirmation, and an initiation is an authenticated packet received (it cancels the
new-handshake timer, wireguard-go's ``timersAnyAuthenticatedPacketReceived``)."""

from __future__ import annotations

import pytest
from wgpair import A_IP, B_IP, Pair, batch_of, ip4

from tunflow.wireguard.protocol import DatagramBatch
from tunflow.wireguard.protocol.constants import (
    INITIATION_SIZE,
    KEEPALIVE_TIMEOUT,
    MESSAGE_INITIATION,
    MESSAGE_TRANSPORT,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX as JITTER,
)


def _to_a(n: int) -> list[bytes]:
    return [ip4(B_IP, A_IP, i.to_bytes(4, "big") + bytes(104)) for i in range(n)]


def _to_b(n: int) -> list[bytes]:
    return [ip4(A_IP, B_IP, i.to_bytes(4, "big") + bytes(104)) for i in range(n)]


@pytest.mark.parametrize("count", [1, 2, 8])  # the lone path, the loop, a run
def test_a_session_reject_after_time_old_sends_nothing(count: int) -> None:
    # docs/wireguard.md: "a session is REJECT_AFTER_TIME (180 s) old (as wireguard-go: usable
    # while younger) … never used again: packets are staged behind a new handshake"; b is the
    # responder, whose sessions make no rekey on time before that
    p = Pair()
    p.handshake()
    created = p.peer_of_b.current.created
    p.now = created + REJECT_AFTER_TIME - 0.5
    out = DatagramBatch(1 << 16)
    assert p.b.encrypt_batch(batch_of(_to_a(count)), p.now, out) == count
    assert [d[0] for d, _ in out.to_pairs()] == [MESSAGE_TRANSPORT] * count
    p.now = created + REJECT_AFTER_TIME
    out = DatagramBatch(1 << 16)
    assert p.b.encrypt_batch(batch_of(_to_a(count)), p.now, out) == count
    assert len(out) == 0 and len(p.peer_of_b.staged) == count
    [(init, _)] = p.b.datagrams_to_send()
    assert init[0] == MESSAGE_INITIATION and len(init) == INITIATION_SIZE


@pytest.mark.parametrize("count", [1, 2, 8])
def test_a_message_on_a_session_reject_after_time_old_is_too_old(count: int) -> None:
    p = Pair()
    p.handshake()
    datagrams = p.send("a", _to_b(count))
    created = p.peer_of_b.current.created
    p.now = created + REJECT_AFTER_TIME
    assert p.deliver("b", datagrams) == []
    stats = p.b.statistics()
    assert stats.dropped_too_old == count and stats.dropped == count


def test_a_run_sent_at_once_never_seals_the_counter_reject_after_messages() -> None:
    # eight full-MTU packets (the run-at-once step) whose last would take the counter
    # REJECT_AFTER_MESSAGES: the seven below it go out, the eighth is the caller's
    p = Pair()
    p.handshake()
    s = p.peer_of_a.current
    s.send_counter = REJECT_AFTER_MESSAGES - 7
    out = DatagramBatch(1 << 16)
    batch = batch_of([ip4(A_IP, B_IP, bytes(1400))] * 8)
    assert s.encrypt_batch(batch, out, p.b_addr, 1420, range(8)) == 7
    counters = [int.from_bytes(d[8:16], "little") for d, _ in out.to_pairs()]
    assert counters == list(range(REJECT_AFTER_MESSAGES - 7, REJECT_AFTER_MESSAGES))
    assert s.send_counter == REJECT_AFTER_MESSAGES


def test_a_responder_sends_nothing_with_an_unconfirmed_session() -> None:
    # docs/wireguard.md: the responder "keeps it as *next* until the first transport message
    # on it arrives (key confirmation)". Its persistent keepalive falling due before that
    # (the initiator's confirmation lost) finds no session to send with: it initiates
    p = Pair(b_peer={"persistent_keepalive": 25}, b_knows_a=True)
    p.a.send_packet(ip4(A_IP, B_IP), p.now)
    [(init, _)] = p.a.datagrams_to_send()
    p.deliver("b", [init])
    [(_, _)] = p.b.datagrams_to_send()  # the response, lost on its way to a
    assert p.peer_of_b.current is None and p.peer_of_b.next is not None
    p.now += 25
    p.b.handle_timer(p.now)
    sent = p.b.datagrams_to_send()
    assert [(d[0], len(d)) for d, _ in sent] == [(MESSAGE_INITIATION, INITIATION_SIZE)]
    assert p.b.statistics().keepalives_sent == 0


def test_an_initiation_received_cancels_the_new_handshake_timer() -> None:
    # b sent data and heard nothing back but a's initiation (an authenticated packet): b
    # answers it and starts no handshake of its own KEEPALIVE_TIMEOUT + REKEY_TIMEOUT later
    p = Pair()
    p.handshake()
    p.send("b", _to_a(1))  # lost
    assert p.peer_of_b.new_handshake_at is not None
    p.now += REKEY_TIMEOUT + 1
    p.peer_of_a.current.expire()  # a rekeys
    p.a.send_packet(ip4(A_IP, B_IP), p.now)
    [(init, _)] = p.a.datagrams_to_send()
    assert init[0] == MESSAGE_INITIATION
    p.deliver("b", [init])
    assert p.peer_of_b.new_handshake_at is None
    p.b.datagrams_to_send()
    p.now += KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + JITTER
    p.b.handle_timer(p.now)
    assert p.b.statistics().handshake_initiations_sent == 0
