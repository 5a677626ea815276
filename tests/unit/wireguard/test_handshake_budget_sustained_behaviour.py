"""The interface's budget of handshake work under a flood that goes on: once the burst is
spent, messages keep being answered at the budget's rate (1000 a second), however finely the
flood's messages are spread in time — a refill smaller than one message is kept for the next,
not lost. Time is explicit: work is counted, not timed."""

from __future__ import annotations

from test_handshake_budget_behaviour import flood, handshake_work
from wgpair import Pair

from tunflow.packet import PacketBatch
from tunflow.wireguard.protocol import DatagramBatch


def test_a_sustained_flood_gets_the_budgets_rate_once_the_burst_is_spent() -> None:
    p = Pair()
    rate, seconds = 4000, 2  # four times the budget, one message every 0.25 ms
    msgs = flood(p, rate * seconds, seed=7)
    batch = DatagramBatch(1 << 16)
    out = PacketBatch(capacity=1 << 16)
    start = p.now
    for k, (d, addr) in enumerate(msgs):
        p.now = start + k / rate
        batch.clear()
        batch.append(d, address=addr)
        out.clear()
        p.b.decrypt_batch(batch, p.now, out)
        p.b.datagrams_to_send()
    work = handshake_work(p.b.statistics())
    # the burst (1000), then 1000 a second for the rest: about 3000 of the 8000
    assert 2700 <= work <= 3100
    assert p.b.statistics().dropped_handshake_budget == len(msgs) - work
