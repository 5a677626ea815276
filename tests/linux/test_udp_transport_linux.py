"""The UDP transport against what a real link does (a veth pair between two namespaces)."""

from __future__ import annotations

import anyio
import pytest

from tunflow import testing
from tunflow.transport import DatagramBatch, UDPTransport

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


@pytest.mark.parametrize(
    ("a_addr", "b_addr", "b_host"),
    [
        ("192.168.95.1/24", "192.168.95.2/24", "192.168.95.2"),
        ("fd95::1/64", "fd95::2/64", "fd95::2"),
    ],
    ids=["ipv4", "ipv6"],
)
async def test_segments_larger_than_the_link_mtu_go_out_fragmented(
    a_addr: str, b_addr: str, b_host: str
) -> None:
    """A run of datagrams above the egress link's MTU: a UDP_SEGMENT send of it is refused
    (EINVAL on older kernels, EMSGSIZE on newer ones — the segments would need fragmenting),
    but each datagram sent plainly is fragmented by the kernel and arrives. EMSGSIZE dropped
    the whole group as "too_large": bulk traffic over a link with a smaller MTU was lost."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, a_addr, b_addr, mtu=1280)
        payloads = [bytes([i]) * 1400 for i in range(8)]
        with b.entered():
            rx = UDPTransport.bind(("::", 0))
        async with rx:
            with a.entered():
                tx = UDPTransport.bind(("::", 0))
            async with tx:
                out = DatagramBatch()
                for p in payloads:
                    out.append(p, address=(b_host, rx.local_address[1]))
                with anyio.fail_after(10):
                    assert await tx.send_batch(out) == len(payloads), tx.statistics().drops
                    got = DatagramBatch(1 << 20)
                    while len(got) < len(payloads):
                        await rx.recv_batch(got)
                assert got.to_list() == payloads
                assert "too_large" not in tx.statistics().drops
