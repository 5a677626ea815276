"""``set_persistent_keepalive(key, interval)`` without ``now`` (as ``add_peer`` takes none):
nothing is sent at once; the first keepalive goes an interval after the next authenticated
packet, as the timer table says."""

from __future__ import annotations

import itertools

from wgpair import A_IP, B_IP, Pair, ip4


def test_on_without_now_sends_nothing_at_once_then_keeps_the_interval() -> None:
    p = Pair()
    p.handshake()
    p.flush()
    p.a.set_persistent_keepalive(p.kb.public_key(), 10)
    assert p.a.datagrams_to_send() == []
    times: list[float] = []

    def record(frm: str, d: bytes) -> bool:
        if frm == "a" and len(d) == 32:
            times.append(p.now)
        return False

    p.advance(35, drop=record)
    moments = sorted(set(times))
    assert len(moments) >= 2, moments
    assert all(b - a == 10 for a, b in itertools.pairwise(moments)), moments


def test_off_then_on_again_without_now_waits_for_the_next_packet() -> None:
    """Turned off, the interval's schedule goes with it: turned on again without ``now``,
    the first keepalive goes an interval after the next authenticated packet — none while
    nothing is sent or received, not when the old interval would have fired."""
    p = Pair()
    p.handshake()
    p.flush()
    pk = p.kb.public_key()
    p.a.set_persistent_keepalive(pk, 25)
    assert p.transfer("a", [ip4(A_IP, B_IP)]) == [ip4(A_IP, B_IP)]  # a's first due in 25 s
    p.advance(12)  # (b's passive keepalive, 10 s after the data, reached a)
    p.a.set_persistent_keepalive(pk, 0)
    p.a.set_persistent_keepalive(pk, 10)
    sent: list[float] = []

    def record(frm: str, d: bytes) -> bool:
        if frm == "a":
            sent.append(p.now)
        return False

    p.advance(60, drop=record)
    assert sent == []
