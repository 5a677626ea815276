"""The timers of an interface with thousands of peers (a hub of road warriors): each peer with
a session has a deadline (its keys' erasure, its keepalive), so the timers wake up about as
often as there are peers; finding the next deadline and firing those due must not walk every
peer each time. Measured against each other, in this process: no absolute times."""

from __future__ import annotations

import random
import time

from tunflow.wireguard.protocol import PeerConfig, PrivateKey, WireGuard
from tunflow.wireguard.protocol.constants import KEEPALIVE_TIMEOUT, REJECT_AFTER_TIME


def hub(peers: int, seed: int) -> WireGuard:
    """An interface whose every peer had a session derived at a different moment."""
    rng = random.Random(seed)
    wg = WireGuard(PrivateKey(bytes(range(1, 33))))
    for i in range(peers):
        pk = PrivateKey(rng.randbytes(32)).public_key()
        peer = wg.add_peer(
            PeerConfig(pk, allowed_ips=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32")
        )
        peer.on_session_derived(100.0 + rng.random() * 120)
    return wg


def wake_cost(wg: WireGuard, rounds: int = 200) -> float:
    """The least time of five runs of ``rounds`` timer wake-ups with nothing due."""
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(rounds):
            wg.handle_timer(50.0)
            wg.get_timer()
        best = min(best, time.perf_counter() - t)
    return best


def test_a_timer_wake_up_does_not_walk_every_peer() -> None:
    few, many = hub(20, 1), hub(4000, 2)
    assert few.get_timer() is not None and many.get_timer() is not None
    # 200 times more peers: walked each time, 200 times the cost (a few ms a wake-up at 4000)
    assert wake_cost(many) < 10 * wake_cost(few)


def test_deadlines_of_many_peers_fire_in_order_of_time() -> None:
    wg = hub(500, 3)
    first = min(p.zero_keys_at for p in wg.peers.values())  # type: ignore[type-var]
    assert wg.get_timer() == first
    # moved later (a new session) and cleared: the next deadline follows
    peers = sorted(wg.peers.values(), key=lambda p: p.zero_keys_at)  # type: ignore[arg-type, return-value]
    peers[0].on_session_derived(500.0)
    assert wg.get_timer() == peers[1].zero_keys_at
    # one that comes earlier than all
    peers[7].on_data_received(1.0)
    assert wg.get_timer() == 1.0 + KEEPALIVE_TIMEOUT
    peers[7].on_any_authenticated_sent()
    assert wg.get_timer() == peers[1].zero_keys_at
    # erasing keys fires for exactly the peers due, each once
    now = 100.0 + REJECT_AFTER_TIME * 3 + 60
    due = {p.public_key for p in wg.peers.values() if p.zero_keys_at <= now}  # type: ignore[operator]
    wg.handle_timer(now)
    fired = [e.public_key for e in iter(wg.next_event, None)]
    assert sorted(fired, key=bytes) == sorted(due, key=bytes)
    assert all(p.zero_keys_at is None or p.zero_keys_at > now for p in wg.peers.values())  # type: ignore[operator]
    # removed peers' deadlines are not waited for
    for pk in list(wg.peers):
        wg.remove_peer(pk)
    assert wg.get_timer() is None
