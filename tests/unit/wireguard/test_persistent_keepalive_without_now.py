"""``set_persistent_keepalive(key, interval)`` without ``now`` (as ``add_peer`` takes none):
nothing is sent at once; the first keepalive goes an interval after the next authenticated
packet, as the timer table says."""

from __future__ import annotations

import itertools

from wgpair import Pair


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
