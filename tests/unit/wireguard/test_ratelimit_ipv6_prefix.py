"""Under load, the per-source handshake rate limit takes an IPv6 source by its /64, as the
kernel's ratelimiter does: a host with a /64 (the usual allocation) cannot multiply its
allowance by using more of its addresses. IPv4 sources stay one bucket each."""

from __future__ import annotations

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
