"""Under load, the per-source handshake rate limit takes an IPv6 source by its /64, as the
kernel's ratelimiter does: a host with a /64 (the usual allocation) cannot multiply its
allowance by using more of its addresses. IPv4 sources stay one bucket each."""

from __future__ import annotations

import random

from wgpair import Pair

from tunflow.packet import PacketBatch
from tunflow.wireguard.protocol import CookieGenerator, DatagramBatch
from tunflow.wireguard.protocol.cookie import address_bytes
from tunflow.wireguard.protocol.interface import _RateLimiter

NOW = 1000.0


def _allowed(limiter: _RateLimiter, sources: list[str]) -> int:
    return sum(limiter.allow(ip, NOW) for ip in sources)


def test_addresses_of_one_64_share_a_bucket() -> None:
    limiter = _RateLimiter()
    sources = [f"2001:db8:1:2::{i:x}" for i in range(1, 11)]  # ten addresses, one /64
    assert _allowed(limiter, sources) == 5  # the burst, once for the whole /64
    assert limiter.allow("2001:db8:1:3::1", NOW)  # another /64 has its own
    assert limiter.allow("2001:db8:1:2::1%eth0", NOW + 0.06)  # refilled (20 a second)


def test_ipv4_sources_are_one_bucket_each() -> None:
    limiter = _RateLimiter()
    assert _allowed(limiter, [f"192.0.2.{i}" for i in range(1, 11)]) == 10
    assert _allowed(limiter, ["198.51.100.7"] * 7) == 5


def test_ipv4_mapped_sources_are_one_bucket_each_as_their_ipv4_address() -> None:
    """A dual-stack socket (AF_INET6, IPV6_V6ONLY off) reports IPv4 senders as ``::ffff:a.b.c.d``
    — what a caller of the sans-IO ``WireGuard`` passes on. They are IPv4 hosts (the kernel
    sees IPv4 packets): one bucket each, not all in the /64 ``::`` together."""
    limiter = _RateLimiter()
    mapped = [f"::ffff:192.0.2.{i}" for i in range(1, 11)]
    assert _allowed(limiter, mapped) == 10
    assert _allowed(limiter, ["::ffff:198.51.100.7"] * 7) == 5
    assert not limiter.allow("198.51.100.7", NOW)  # the same host, however it is written


def test_under_load_ipv4_mapped_peers_with_cookies_are_not_limited_together() -> None:
    """Through the protocol: under load, ten IPv4 hosts seen through a dual-stack socket, each
    sending one initiation with a valid cookie for its address, are not rate limited."""
    p = Pair()
    p.b.set_under_load(p.now, duration=60)
    rng = random.Random(5)
    for i in range(10):
        addr = (f"::ffff:203.0.113.{i + 1}", 1024)
        gen = CookieGenerator(p.kb.public_key())
        msg = bytearray(b"\x01\x00\x00\x00") + rng.randbytes(144)
        gen.add_macs(msg, p.now)
        reply = p.b._checker.create_reply(msg, 0, address_bytes(addr), p.now)
        assert gen.consume_reply(reply, p.now)
        gen.add_macs(msg, p.now)
        batch = DatagramBatch(1 << 16)
        batch.append(bytes(msg), address=addr)
        p.b.decrypt_batch(batch, p.now, PacketBatch(capacity=1 << 16))
    s = p.b.statistics()
    assert s.cookie_replies_sent == 0  # each had its cookie
    assert s.dropped_rate_limited == 0


def test_a_source_that_keeps_sending_gets_its_rate_and_one_burst_over_seconds() -> None:
    """20 a second, bursts of 5, also over the seconds in which idle buckets are forgotten: a
    source sending all the time keeps its bucket (not a fresh burst a second)."""
    limiter = _RateLimiter()
    allowed = sum(limiter.allow("192.0.2.1", NOW + k / 100) for k in range(400))  # 4 s at 100/s
    assert 5 + 20 * 4 - 2 <= allowed <= 5 + 20 * 4 + 1
