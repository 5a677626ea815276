"""A lane at rest (the express path: a packet relayed in the reader callback) whose callback
read brings more than one packet: the lane's task passes them all on at once, without waiting
for another packet to arrive."""

from __future__ import annotations

import socket

import anyio
import pytest

from tests.helpers import no_ipv6, udp_send
from tunflow import DeviceBuilder, testing
from tunflow.pipeline import open_pipeline

from .pipeline_topology import wait_until

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)


@pytest.mark.parametrize("offload", [False, True], ids=["several-packets", "super-packet"])
async def test_a_read_at_rest_that_brings_several_packets_passes_them_all_on(
    netns: testing.Netns, anyio_backend: object, offload: bool
) -> None:
    """After a lone packet the lane waits in the reader callback. Packets already queued
    together when it is called (several datagrams; or, on an offload source feeding a plain
    sink, one UDP super-packet split into its datagrams) are handed to the lane's task, which
    writes them — it must not read again first and sit on them until the next packet comes.
    (On trio, without reader callbacks, the lane only reads: the same outcome.)"""
    no_ipv6(netns)
    async with (
        DeviceBuilder().offload(offload).ipv4("10.240.31.1", 24).build_async() as src,
        DeviceBuilder().ipv4("10.240.32.1", 24).build_async() as dst,
    ):
        if offload and not src.offload_info.uso:
            pytest.skip("this kernel has no USO on TUN devices (Linux < 6.2)")
        async with open_pipeline(src, [], dst) as p:

            def out() -> int:
                return p.statistics().workers[0].packets_out

            # Lone packets, each alone: the first may be read before the lane ever waited
            # (no reader callback yet); the second is read after a wait, which puts the lane
            # at rest — waiting in the reader callback.
            for i in range(1, 3):
                await anyio.sleep(0.1)
                udp_send("10.240.31.2", 9, b"lone")
                await wait_until(lambda: out() == i, f"lone packet {i}")  # noqa: B023
            await anyio.sleep(0.1)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                if offload:
                    s.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, 100)
                    s.sendto(bytes(300), ("10.240.31.2", 9))  # one super-packet of 3
                else:
                    for payload in (b"one", b"two", b"three"):  # queued before the loop polls
                        s.sendto(payload, ("10.240.31.2", 9))
            await wait_until(lambda: out() == 5, "the three packets read together", 10)
            assert dst.statistics().tx_packets == 5
            if offload:
                assert src.statistics().rx_super_packets >= 1
