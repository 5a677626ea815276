"""The ``wireguard`` stage's timers (loopback UDP, no root): a retransmission or keepalive goes
out when the protocol's deadline comes, not at the next tick of the pipeline's timer after it.

The stage's ``timer_interval`` is made long here (2.5 s): a deadline kept only at the ticks is
then late by a second or more, which no busy machine explains; kept as due, it is on time to
well within the 0.5 s the tests allow."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from tests.helpers import ipv4_udp
from tunflow.datagram import DatagramBatch
from tunflow.pipeline import Direction, MemorySink, MemorySource, Pipeline, TransportPort
from tunflow.transport import UDPTransport
from tunflow.wireguard import InterfaceConfig, PeerConfig, PrivateKey
from tunflow.wireguard.protocol import WireGuard
from tunflow.wireguard.protocol.constants import MESSAGE_INITIATION, MESSAGE_TRANSPORT
from tunflow.wireguard.stage import WireGuardStage

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])]

TICK = 2.5
KEY_A, KEY_B = PrivateKey.generate(), PrivateKey.generate()


@asynccontextmanager
async def running_stage(
    keepalive: int = 0,
) -> AsyncIterator[tuple[WireGuardStage, UDPTransport, UDPTransport]]:
    """A's stage (peer B at ``far``, 10.0.0.2/32) in an inbound pipeline on ``mine``, its
    timer ticking every TICK seconds; cancelled on the way out."""
    async with UDPTransport.bind("127.0.0.1:0") as mine, UDPTransport.bind("127.0.0.1:0") as far:
        stage = WireGuardStage.for_config(
            InterfaceConfig(
                KEY_A,
                peers=[
                    PeerConfig(
                        KEY_B.public_key(),
                        endpoint=far.local_address,
                        allowed_ips="10.0.0.2/32",
                        persistent_keepalive=keepalive,
                    )
                ],
            )
        )
        stage.timer_interval = TICK
        inbound = Pipeline(TransportPort(mine), [stage], MemorySink(), direction=Direction.INBOUND)
        async with anyio.create_task_group() as tg:
            tg.start_soon(inbound.run)
            yield stage, mine, far
            tg.cancel_scope.cancel()


async def next_datagram(far: UDPTransport) -> tuple[bytes, float]:
    """The next datagram to B's socket and when it came."""
    got = DatagramBatch(1 << 16)
    while not len(got):
        await far.recv_batch(got)
    assert len(got) == 1
    return got.to_pairs()[0][0], time.monotonic()


async def test_a_handshake_started_on_an_idle_interface_is_retried_when_due() -> None:
    """The interface idles past the first tick, then a packet starts a handshake that B never
    answers: the initiation is sent again at the deadline the protocol set (REKEY_TIMEOUT plus
    jitter after the first), not at the tick after it (~2 s later)."""
    async with running_stage() as (stage, mine, far):
        await anyio.sleep(TICK + 0.3)
        packet = ipv4_udp("10.0.0.1", "10.0.0.2", 1000, 2000, b"x" * 40)
        with anyio.fail_after(5):
            await Pipeline(MemorySource([packet]), [stage], mine).run()
            first, _ = await next_datagram(far)
        assert first[0] == MESSAGE_INITIATION
        deadline = stage.wg.get_timer()
        assert deadline is not None
        with anyio.fail_after(10):
            again, t = await next_datagram(far)
        assert again[0] == MESSAGE_INITIATION and again[4:8] != first[4:8]  # a new index
        assert -0.05 <= t - deadline < 0.5


async def test_a_persistent_keepalive_goes_out_every_interval() -> None:
    """B answers the start keepalive's handshake after the first tick (the timers wait for the
    retransmission then); from the handshake on, keepalives (empty transport messages) follow a
    second apart, as the peer's persistent keepalive asks, not a tick apart."""
    async with running_stage(keepalive=1) as (_, mine, far):
        b = WireGuard(KEY_B)
        b.add_peer(PeerConfig(KEY_A.public_key(), allowed_ips="10.0.0.1/32"))
        with anyio.fail_after(5):
            init, _ = await next_datagram(far)
        assert init[0] == MESSAGE_INITIATION
        await anyio.sleep(TICK + 0.3)
        assert b.receive_datagram(init, mine.local_address, time.monotonic()) == []
        answer = DatagramBatch(1 << 16)
        for d, a in b.datagrams_to_send():
            answer.append(d, address=a)
        await far.send_batch(answer)
        times = []
        with anyio.fail_after(10):
            while len(times) < 4:
                data, t = await next_datagram(far)
                assert data[0] == MESSAGE_TRANSPORT
                assert b.receive_datagram(data, mine.local_address, time.monotonic()) == []
                times.append(t)
        assert b.statistics().keepalives_received == 4
        gaps = [later - t for t, later in itertools.pairwise(times)]
        assert all(0.9 <= gap < 1.5 for gap in gaps), gaps


async def test_the_timers_of_a_tunnels_two_pipelines_hold_the_hook_until_both_stopped() -> None:
    """A Tunnel's two pipelines each run the shared stage's timers: the protocol's timer hook
    stays the stage's while either runs (the other's stop leaves its deadlines kept), and is
    given back when both stopped."""
    stage = WireGuardStage.for_config(InterfaceConfig(KEY_A))
    first = anyio.CancelScope()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_run_in, first, stage)
            tg.start_soon(stage.on_timer)
            await anyio.sleep(0.1)
            assert stage.wg._earlier is not None
            first.cancel()
            await anyio.sleep(0.1)
            assert stage.wg._earlier is not None  # the second still runs
            tg.cancel_scope.cancel()
    assert stage.wg._earlier is None


async def _run_in(scope: anyio.CancelScope, stage: WireGuardStage) -> None:
    with scope:
        await stage.on_timer()
