"""A flood of handshake messages — valid mac1 (anyone who knows the public key makes those),
from many source addresses, so that no per-address limit applies — gets a bounded amount of
handshake work a second; what is over the budget is dropped and counted
(``dropped_handshake_budget``), and transport messages arriving with the flood are delivered.
Time is explicit: work is counted, not timed."""

from __future__ import annotations

import random

from wgpair import A_IP, B_IP, Pair, ip4

from tunflow.packet import PacketBatch
from tunflow.wireguard.protocol import CookieGenerator, DatagramBatch, WireGuardStatistics


def flood(p: Pair, n: int, seed: int = 1) -> list[tuple[bytes, tuple[str, int]]]:
    """``n`` initiations to ``b`` with a right mac1 and random contents, each from its own
    address."""
    rng = random.Random(seed)
    gen = CookieGenerator(p.kb.public_key())
    out = []
    for i in range(n):
        msg = bytearray(b"\x01\x00\x00\x00") + rng.randbytes(144)
        gen.add_macs(msg, p.now)
        out.append((bytes(msg), (f"198.{18 + (i >> 16) % 2}.{(i >> 8) & 255}.{i & 255}", 1024)))
    return out


def handshake_work(s: WireGuardStatistics) -> int:
    """Handshake messages past mac1 that were answered or consumed (not dropped unread)."""
    return (
        s.cookie_replies_sent
        + s.handshake_initiations_received
        + s.dropped_handshake
        + s.dropped_unknown_peer
        + s.dropped_rate_limited
    )


def receive(p: Pair, datagrams: list[tuple[bytes, tuple[str, int]]]) -> list[bytes]:
    batch = DatagramBatch(4 << 20)
    for d, addr in datagrams:
        batch.append(d, address=addr)
    out = PacketBatch(capacity=4 << 20, max_packets=16384)
    assert p.b.decrypt_batch(batch, p.now, out) == len(batch)
    p.b.datagrams_to_send()
    return out.to_list()


def test_a_flood_in_one_batch_gets_bounded_handshake_work_and_the_good_peer_its_packets() -> None:
    p = Pair()
    p.handshake()
    packets = [ip4(A_IP, B_IP, payload=bytes([i % 256]) * 40) for i in range(200)]
    good = [(d, p.a_addr) for d in p.send("a", packets)]
    n = 8000
    mixed = flood(p, n)
    for k, g in enumerate(good):  # the good peer's messages spread through the flood
        mixed.insert(k * (n // len(good)) + k, g)
    before = handshake_work(p.b.statistics())
    assert receive(p, mixed) == packets
    s = p.b.statistics()
    work = handshake_work(s) - before
    assert work <= n // 4  # at one instant: the burst, not the flood
    assert s.dropped_handshake_budget == n - work
    assert s.dropped >= s.dropped_handshake_budget
    assert s.rx_packets >= len(packets)


def test_the_budget_refills_with_time_and_a_good_handshake_gets_through_after_a_flood() -> None:
    p = Pair()
    receive(p, flood(p, 6000, seed=2))
    spent = p.b.statistics()
    assert spent.dropped_handshake_budget > 0
    p.now += 0.25
    receive(p, flood(p, 6000, seed=3))
    s = p.b.statistics()
    refilled = handshake_work(s) - handshake_work(spent)
    assert 0 < refilled < 6000 // 2  # a quarter of a second's worth
    p.now += 2.0  # the flood is over: budget full again, and no longer under load
    p.handshake()
    assert p.b.statistics().handshakes_completed + p.a.statistics().handshakes_completed >= 1
    assert p.transfer("a", [ip4(A_IP, B_IP)]) == [ip4(A_IP, B_IP)]


def test_handshake_rates_of_the_most_peers_an_interface_holds_are_never_limited() -> None:
    # 65536 peers, each making a handshake every two minutes: 546 messages a second
    p = Pair()
    per_tick, ticks = 60, 100  # 600 a second, over ten seconds
    msgs = flood(p, per_tick * ticks, seed=4)
    for t in range(ticks):
        receive(p, msgs[t * per_tick : (t + 1) * per_tick])
        p.now += 0.1
    s = p.b.statistics()
    assert s.dropped_handshake_budget == 0
    assert handshake_work(s) == per_tick * ticks


def test_not_under_load_the_whole_budget_is_spent_the_cookie_reserve_too() -> None:
    """The reserve is kept "under load" only: an interface that is not (a load_threshold above
    the flood's rate) takes the whole burst of 1000 at one instant, as the docs say."""
    p = Pair()
    p.b.load_threshold = 1_000_000
    receive(p, flood(p, 1500, seed=4))
    assert not p.b.under_load(p.now)
    s = p.b.statistics()
    assert handshake_work(s) == 1000
    assert s.dropped_handshake_budget == 500
