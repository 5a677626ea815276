"""The handshake budget under a flood, for a peer that holds a cookie: under load, a handshake
message with a valid mac2 (a cookie the interface gave its source address) is not starved by
a flood of messages without one — the last tenth of the budget is kept for such messages,
each source rate limited — while the work a second stays within the budget even when every
message of the flood carries a valid cookie from an address of its own. Time is explicit:
work is counted, not timed."""

from __future__ import annotations

import random

from test_handshake_budget_behaviour import flood, handshake_work, receive
from wgpair import A_IP, B_IP, Pair, ip4

from tunflow.packet import PacketBatch
from tunflow.wireguard.protocol import CookieGenerator, DatagramBatch
from tunflow.wireguard.protocol.cookie import address_bytes


def receive_one(p: Pair, datagram: bytes, addr: tuple[str, int]) -> None:
    batch = DatagramBatch(1 << 16)
    batch.append(datagram, address=addr)
    out = PacketBatch(capacity=1 << 16)
    p.b.decrypt_batch(batch, p.now, out)


def initiation_of_a(p: Pair) -> bytes:
    """A new handshake initiation from ``a`` now (its retry and rekey limits set aside)."""
    peer = p.peer_of_a
    peer.last_sent_handshake = None
    peer.new_handshake_at = p.now
    peer._arm(p.now)
    p.a.handle_timer(p.now)
    [(init, _)] = [(d, a) for d, a in p.a.datagrams_to_send() if d[0] == 1]
    return init


def test_a_peer_holding_a_cookie_completes_its_handshakes_through_a_flood() -> None:
    p = Pair()
    p.b.set_under_load(p.now, duration=60)
    p.a.send_packet(ip4(A_IP, B_IP), p.now)
    p.flush()  # b answers with a cookie reply: a holds a cookie for its address
    assert p.peer_of_a.cookies.has_cookie and p.peer_of_a.current is None
    rate, seconds, every = 4000, 2, 400  # the sustained flood; a handshake every 0.1 s
    msgs = flood(p, rate * seconds, seed=11)
    start = p.now
    attempts = 0
    before = p.a.statistics().handshakes_completed
    for k, (d, addr) in enumerate(msgs):
        p.now = start + k / rate
        if k % every == every // 2:
            init = initiation_of_a(p)
            assert init[-16:] != bytes(16)  # mac2 set: a's cookie is fresh
            attempts += 1
            receive_one(p, init, p.a_addr)
            for reply, dst in p.b.datagrams_to_send():
                if dst == p.a_addr:
                    p.deliver("a", [reply])
            p.a.datagrams_to_send()
        receive_one(p, d, addr)
        p.b.datagrams_to_send()
    s = p.b.statistics()
    assert s.dropped_handshake_budget > rate * seconds // 2  # the flood was held to the budget
    assert attempts == rate * seconds // every
    assert p.a.statistics().handshakes_completed - before == attempts


def cookie_flood(p: Pair, n: int, seed: int) -> list[tuple[bytes, tuple[str, int]]]:
    """``n`` initiations to ``b`` with a right mac1 and a right mac2 — a cookie ``b`` gave the
    address each comes from, its own — and random contents."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        gen = CookieGenerator(p.kb.public_key())
        addr = (f"203.{i >> 16}.{(i >> 8) & 255}.{i & 255}", 1024)
        msg = bytearray(b"\x01\x00\x00\x00") + rng.randbytes(144)
        gen.add_macs(msg, p.now)
        reply = p.b._checker.create_reply(msg, 0, address_bytes(addr), p.now)
        assert gen.consume_reply(reply, p.now)
        gen.add_macs(msg, p.now)
        out.append((bytes(msg), addr))
    return out


def test_a_flood_with_a_cookie_for_every_address_gets_no_more_than_the_budget() -> None:
    p = Pair()
    p.b.set_under_load(p.now, duration=60)
    rate, seconds = 3000, 1
    msgs = cookie_flood(p, rate * seconds, seed=12)
    start = p.now
    for k, (d, addr) in enumerate(msgs):
        p.now = start + k / rate
        receive_one(p, d, addr)
        p.b.datagrams_to_send()
    s = p.b.statistics()
    work = handshake_work(s)
    assert s.cookie_replies_sent == 0  # every one had its cookie
    # the budget's burst, then its rate: about 2000 of the 3000
    assert 1800 <= work <= 2100
    assert s.dropped_handshake_budget == len(msgs) - work


def test_under_load_a_flood_with_wrong_cookies_leaves_a_tenth_for_right_ones() -> None:
    """Under load "a tenth of [the budget] is kept for messages with a valid cookie (mac2)"
    (``dropped_handshake_budget``): a flood at one instant whose mac2 is set but wrong (a
    cookie made up, or another address's) gets cookie replies from nine tenths of the burst
    and no more — each reply is work, and a datagram sent to the claimed source — and the
    last tenth is still there for messages whose cookie is right."""
    p = Pair()
    p.b.set_under_load(p.now, duration=60)
    rng = random.Random(13)
    wrong = [(d[:-16] + rng.randbytes(15) + b"\x01", a) for d, a in flood(p, 1500, seed=13)]
    receive(p, wrong)
    s = p.b.statistics()
    assert s.cookie_replies_sent == 900
    assert s.dropped_handshake_budget == 600
    receive(p, cookie_flood(p, 150, seed=14))  # (at the same instant: no refill)
    after = p.b.statistics()
    assert after.cookie_replies_sent == 900  # each had its cookie
    assert handshake_work(after) - handshake_work(s) == 100
    assert after.dropped_handshake_budget - s.dropped_handshake_budget == 50
