"""The ``ratelimit`` stage at its edges, against an explicit clock: a bucket holding exactly
what a batch costs, fractions of a token, flows that differ in one field, counters that add up
over batches, and frames that carry no IP on a TAP."""

from __future__ import annotations

import anyio
import attrs
import pytest

from tests.helpers import ipv4_udp
from tests.unit.offload_packets import IP4_A, IP4_B, tcp_super_packet
from tests.unit.pipeline.test_stages import Clock, batch_of, super_batch
from tunflow import ConfigError
from tunflow.device import Layer
from tunflow.offload import VirtioNetHdr
from tunflow.pipeline import Lane, MemorySink, MemorySource, Pipeline, StageSpec
from tunflow_plugins import ratelimit as rl
from tunflow_plugins.ratelimit import RateLimitStage

ETH_IP = bytes(12) + b"\x08\x00"
ARP = bytes(12) + b"\x08\x06" + bytes(28)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(rl.time, "monotonic", c)
    return c


def test_per_flow_on_a_tap_passes_arp_in_a_bucket_of_its_own(clock: Clock) -> None:
    """ARP is no malformed packet: every frame that carries no IP went to
    ``drops["malformed:not_ip"]``, so a TAP behind a per-flow limit never resolved a neighbour.
    Such frames share one bucket, held to the rate like a flow."""
    stage = RateLimitStage(rate="10pps", burst="2pps", per_flow=True)
    proc = stage.bind(Lane(layer=Layer.L2))
    ip = ETH_IP + ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    out = proc(batch_of([ARP, ip, ARP, ARP]))
    assert out.to_list() == [ARP, ip, ARP]
    s = stage.statistics()
    assert s.drops == {"rate": 1}
    assert s.counters["flows"] == 2


@pytest.mark.parametrize("per_flow", [False, True])
def test_a_bucket_holding_exactly_the_batch_passes_all_of_it(clock: Clock, per_flow: bool) -> None:
    pkt = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes(72))  # 100 bytes
    for rate, burst in (("10pps", "4pps"), (1000, 400)):
        stage = RateLimitStage(rate=rate, burst=burst, per_flow=per_flow)
        proc = stage.bind(Lane())
        assert len(proc(batch_of([pkt] * 4))) == 4
        assert stage.statistics().drops == {}


def test_a_packet_costing_exactly_the_tokens_left_passes(clock: Clock) -> None:
    small = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes(72))  # 100 bytes
    big = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, bytes(172))  # 200 bytes
    stage = RateLimitStage(rate=1000, burst=300)
    out = stage.bind(Lane())(batch_of([small, big, small]))
    assert out.to_list() == [small, big]
    assert stage.statistics().drops == {"rate": 1}
    assert stage.gauges()["tokens"] == 0


def test_a_fraction_of_a_token_passes_no_packet(clock: Clock) -> None:
    stage = RateLimitStage(rate="10pps", burst="10pps")
    proc = stage.bind(Lane())
    pkt = b"\x45" + bytes(19)
    assert len(proc(batch_of([pkt] * 10))) == 10
    clock.now += 0.26  # 2.6 packets' worth
    assert len(proc(batch_of([pkt] * 5))) == 2
    assert stage.statistics().drops == {"rate": 3}
    assert stage.gauges()["tokens"] == pytest.approx(0.6)


@pytest.mark.parametrize("field", ["src", "dst", "sport", "dport"])
def test_flows_that_differ_in_one_field_have_buckets_of_their_own(clock: Clock, field: str) -> None:
    addrs = {"src": "10.0.0.1", "dst": "10.0.0.2", "sport": 1, "dport": 2}
    other = dict(addrs, **{field: "10.0.0.9" if field in ("src", "dst") else 9})
    a = ipv4_udp(addrs["src"], addrs["dst"], addrs["sport"], addrs["dport"], b"")
    b = ipv4_udp(other["src"], other["dst"], other["sport"], other["dport"], b"")
    stage = RateLimitStage(rate="10pps", burst="1pps", per_flow=True)
    assert stage.bind(Lane())(batch_of([a, b])).to_list() == [a, b]
    assert stage.statistics().counters["flows"] == 2


def test_per_flow_drops_add_up_over_batches(clock: Clock) -> None:
    stage = RateLimitStage(rate="10pps", burst="1pps", per_flow=True, max_flows=1)
    proc = stage.bind(Lane())
    a = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    b = ipv4_udp("10.0.0.1", "10.0.0.2", 3, 4, b"")
    for _ in range(3):
        clock.now += 1.0
        assert proc(batch_of([a, a, b, b"\x45"])).to_list() == [a]
    assert stage.statistics().drops == {
        "rate": 3,
        "flow_table_full": 3,
        "malformed:truncated": 3,
    }


def test_no_flow_table_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_flows"):
        StageSpec("ratelimit", {"rate": "1mbit", "per_flow": True, "max_flows": 0}).build()
    StageSpec("ratelimit", {"rate": "1mbit", "per_flow": True, "max_flows": 1}).build()


@pytest.mark.parametrize("idle", [1.0, 30.0])
def test_idle_buckets_are_looked_for_at_least_once_per_idle_timeout(idle: float) -> None:
    stage = RateLimitStage(rate="1mbit", per_flow=True, idle_timeout=idle)
    assert stage.timer_interval is not None and 0 < stage.timer_interval <= idle


def test_shape_with_a_bucket_just_emptied_does_not_wait(clock: Clock) -> None:
    stage = RateLimitStage(rate="10pps", burst="4pps", mode="shape")
    stage.bind(Lane())(batch_of([b"\x45" + bytes(19)] * 4))
    assert stage.delay() == 0
    assert "delays" not in stage.statistics().counters


def test_the_cost_of_a_super_packet_whose_headers_do_not_add_up_is_rounded_up() -> None:
    sup = tcp_super_packet(IP4_A, IP4_B, 45 * 1000, 1000)
    hdr = VirtioNetHdr.decode(sup[:10])
    bad = attrs.evolve(hdr, csum_start=24)  # past the IPv4 header: gso_segment_count refuses
    length = len(sup) - 10
    assert length % hdr.gso_size  # (not a whole number of segments)
    costs = rl.segment_costs(super_batch(bad.encode() + sup[10:]))
    assert costs == [-(-length // hdr.gso_size)]


def test_per_flow_police_on_a_tap_runs_through_a_pipeline() -> None:
    ip = ETH_IP + ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    sink = MemorySink()
    p = Pipeline(
        MemorySource([ARP, ip], layer=Layer.L2),
        [StageSpec("ratelimit", {"rate": "1mbit", "per_flow": True})],
        sink,
    )
    anyio.run(p.run)
    assert sink.packets == [ARP, ip]
