"""The interface's heap of the peers' wake-ups (see ``protocol/peer.py``) over a long run:
deadlines that move earlier leave entries behind, which must not pile up for as long as
traffic flows, nor break the next deadline's answer for peers that have none; peers due
together fire in the order they were added, as when every peer was walked. Time is explicit."""

from __future__ import annotations

import random

from wgpair import A_IP, B_IP, Pair, ip4

from tunflow.wireguard.protocol import KeysZeroed, Peer, PeerConfig, PrivateKey, WireGuard
from tunflow.wireguard.protocol.constants import (
    KEEPALIVE_TIMEOUT,
    REJECT_AFTER_TIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
)


def earliest(wg: WireGuard) -> float | None:
    """The earliest deadline of any peer, walked the long way."""
    times = [t for p in wg.peers.values() if (t := p.next_deadline()) is not None]
    return min(times) if times else None


def hub(peers: int, seed: int) -> WireGuard:
    """An interface with ``peers`` peers, none with a deadline yet."""
    rng = random.Random(seed)
    wg = WireGuard(PrivateKey(bytes(range(1, 33))))
    for i in range(peers):
        pk = PrivateKey(rng.randbytes(32)).public_key()
        wg.add_peer(PeerConfig(pk, allowed_ips=[f"10.2.{i >> 8}.{i & 255}/32"]))
    return wg


def churn(wg: WireGuard, peer: Peer, rounds: int) -> None:
    """A request received and answered, ``rounds`` times 1 ms apart, the next deadline asked
    after each: the keepalive it arms comes before the peer's other deadlines and is cleared
    by the answer, and each round leaves an entry behind (wireguard-go's timers hooks)."""
    now = 1000.0
    for _ in range(rounds):
        peer.on_data_received(now)
        assert wg.get_timer() == earliest(wg)
        peer.on_any_authenticated_sent()
        assert wg.get_timer() == earliest(wg)
        now += 0.001


def test_deadlines_that_come_and_go_leave_no_growing_pile_of_wake_ups() -> None:
    # (a peer that hears a packet now and then and answers it: one entry a round, kept for
    # as long as its keys' erasure is due — minutes — were entries left behind never dropped)
    wg = hub(4, 1)
    peers = list(wg.peers.values())
    for k, peer in enumerate(peers):
        peer.on_session_derived(900.0 + k)
    churn(wg, peers[0], 500)
    assert len(wg._timers) <= 2 * len(peers) + 64 + 1


def test_the_next_deadline_is_right_after_the_wake_ups_are_tidied_with_idle_peers() -> None:
    # peers with no deadline at all (configured, never heard from) are not in the heap
    wg = hub(4, 2)
    peers = list(wg.peers.values())
    peers[0].on_session_derived(900.0)
    churn(wg, peers[0], 300)  # past the tidying, more than once
    assert wg.get_timer() == 900.0 + REJECT_AFTER_TIME * 3
    peers[3].on_session_derived(950.0)
    wg.handle_timer(900.0 + REJECT_AFTER_TIME * 3)
    assert [e.public_key for e in iter(wg.next_event, None)] == [peers[0].public_key]
    assert wg.get_timer() == 950.0 + REJECT_AFTER_TIME * 3


def test_peers_due_together_fire_in_the_order_they_were_added() -> None:
    # deadlines in another order than the peers': all due at one wake-up, the events (and
    # what they send) come in the peers' order, as the interface lists them
    wg = hub(8, 3)
    peers = list(wg.peers.values())
    for peer, late in zip(peers, [3, 0, 5, 1, 7, 2, 6, 4], strict=True):
        peer.on_session_derived(100.0 + late)
    wg.handle_timer(108.0 + REJECT_AFTER_TIME * 3)
    events = list(iter(wg.next_event, None))
    assert all(isinstance(e, KeysZeroed) for e in events)
    assert [e.public_key for e in events] == [p.public_key for p in peers]


def test_data_sent_and_never_answered_starts_a_handshake_after_keepalive_and_rekey_timeout() -> (
    None
):
    # wireguard-go's timersDataSent: no authenticated packet back within KEEPALIVE_TIMEOUT +
    # REKEY_TIMEOUT (+ jitter) of sending data, a new handshake is initiated — also when the
    # peer has no earlier deadline that would wake the timers anyway, and another peer's
    # deadline comes first
    p = Pair()
    p.handshake()
    p.advance(60)  # every deadline of the handshake passed
    other = p.a.add_peer(PeerConfig(PrivateKey(bytes(32 * [7])).public_key()))
    other.on_session_derived(p.now - REJECT_AFTER_TIME * 3 + 100)  # its keys go in 100 s
    lost = lambda frm, d: frm == "a"  # noqa: E731
    p.transfer("a", [ip4(A_IP, B_IP)], drop=lost)
    before = p.a.statistics().handshake_initiations_sent
    p.advance(KEEPALIVE_TIMEOUT + REKEY_TIMEOUT - 0.5, drop=lost)
    assert p.a.statistics().handshake_initiations_sent == before
    p.advance(1 + REKEY_TIMEOUT_JITTER_MAX, drop=lost)
    assert p.a.statistics().handshake_initiations_sent == before + 1
