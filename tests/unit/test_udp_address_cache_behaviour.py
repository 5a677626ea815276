"""The dual-stack UDP transport's address caches under a flood of source addresses: bounded
(``_ADDR_CACHE_MAX`` entries each), and every peer, old or new, still heard by its plain
address and answered at it after the caches were emptied."""

from __future__ import annotations

import socket
import sys

import pytest

from tests.unit.test_udp_transport import _has_ipv6, receive
from tunflow.transport import DatagramBatch, UDPTransport
from tunflow.transport.udp import _ADDR_CACHE_MAX

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 on this host"),
    # (every 127.0.0.0/8 address is the loopback's on Linux; macOS has 127.0.0.1 alone)
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="127.1.x.y sources"),
]


def _source(k: int) -> str:
    """The ``k``-th loopback source address (127.0.0.0/8 is all loopback on Linux)."""
    return f"127.1.{k >> 8}.{k & 0xFF}"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_flood_of_sources_keeps_the_caches_bounded_and_the_peers_answered() -> None:
    flood = 5000  # past the cap: the caches were emptied once on the way
    assert flood > _ADDR_CACHE_MAX
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as last,
    ):
        first.bind(("127.0.0.1", 0))
        last.bind(("127.0.0.2", 0))
        for s in (first, last):
            s.settimeout(5)
        async with UDPTransport.bind("[::]:0", offload=False) as dual:
            port = dual.local_address[1]
            first.sendto(b"first", ("127.0.0.1", port))
            assert (await receive(dual, 1)).to_pairs() == [(b"first", first.getsockname())]
            peak = 0
            for start in range(0, flood, 256):
                for k in range(start, min(start + 256, flood)):
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                        s.bind((_source(k), 0))
                        s.sendto(b"x", ("127.0.0.1", port))
                got = await receive(dual, min(256, flood - start))
                # each heard by its own plain IPv4 address, not ::ffff:
                assert all(a[0].startswith("127.1.") and len(a) == 2 for a in got.addresses)
                out = DatagramBatch()
                for a in got.addresses:
                    out.append(b"y", address=a)
                await dual.send_batch(out)
                peak = max(peak, len(dual._recv_cache), len(dual._send_cache))
            assert 0 < peak <= _ADDR_CACHE_MAX
            assert dual.statistics().drops == {}
            # after the flood: the first peer (its entries emptied away) and a new one
            for s, text in ((first, b"again"), (last, b"new")):
                s.sendto(text, ("127.0.0.1", port))
                got = await receive(dual, 1)
                assert got.to_pairs() == [(text, s.getsockname())]
                back = DatagramBatch()
                back.append(b"re:" + text, address=got.addresses[0])
                assert await dual.send_batch(back) == 1
                assert s.recvfrom(64) == (b"re:" + text, ("127.0.0.1", port))
