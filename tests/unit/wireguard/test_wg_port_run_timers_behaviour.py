"""``WireGuardPort.run_timers``: the timer task for a WireGuard peer built from the pieces (no
device; loopback UDP, no root). It sleeps until the protocol's next deadline, and a deadline set
earlier meanwhile — by a packet starting a handshake on an idle interface — wakes it: nothing
else reads ``get_timer``."""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from collections.abc import AsyncIterator

import anyio
import pytest
from wgpair import A_IP, B_IP, batch_of, ip4

from tunflow.transport import DatagramBatch, UDPTransport
from tunflow.wireguard import PeerConfig, PrivateKey, WireGuard, WireGuardPort
from tunflow.wireguard.protocol.constants import (
    MESSAGE_INITIATION,
    MESSAGE_TRANSPORT,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
)

pytestmark = pytest.mark.anyio

KEY_A, KEY_B = PrivateKey.generate(), PrivateKey.generate()


@contextlib.asynccontextmanager
async def port_to(keepalive: int = 0) -> AsyncIterator[tuple[WireGuardPort, UDPTransport]]:
    """A port for A (peer B at the other socket, 10.0.0.2/32) and B's socket, on loopback."""
    async with UDPTransport.bind("127.0.0.1:0") as mine, UDPTransport.bind("127.0.0.1:0") as far:
        wg = WireGuard(KEY_A)
        wg.add_peer(
            PeerConfig(
                KEY_B.public_key(),
                endpoint=far.local_address,
                allowed_ips=f"{B_IP}/32",
                persistent_keepalive=keepalive,
            )
        )
        yield WireGuardPort(wg, mine), far


async def next_datagram(far: UDPTransport) -> tuple[bytes, float]:
    """The next datagram to B's socket and when it came."""
    got = DatagramBatch(1 << 16)
    while not len(got):
        await far.recv_batch(got)
    assert len(got) == 1
    return got.to_pairs()[0][0], time.monotonic()


def test_the_hook_is_called_when_a_deadline_goes_before_every_other() -> None:
    """``on_earlier_timer``: a packet starting a handshake on an idle interface calls it (no
    deadline before: ``get_timer`` was ``None``); ``None`` takes it off."""
    wg = WireGuard(KEY_A)
    calls: list[float | None] = []
    wg.on_earlier_timer(lambda: calls.append(wg.get_timer()))
    wg.add_peer(PeerConfig(KEY_B.public_key(), endpoint="192.0.2.2:51820", allowed_ips=B_IP))
    assert wg.get_timer() is None and calls == []
    wg.send_packet(ip4(A_IP, B_IP), 100.0)
    assert calls and calls[-1] == wg.get_timer()
    assert 100.0 + REKEY_TIMEOUT <= calls[-1] <= 100.0 + REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX
    wg.on_earlier_timer(None)
    n = len(calls)
    wg.handle_timer(100.0 + REKEY_TIMEOUT + 1)  # retransmits: a new deadline, no call
    assert wg.get_timer() is not None and len(calls) == n


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_handshake_started_after_idling_is_retried_on_time_with_no_polling() -> None:
    """The interface idles (no deadline: the task waits with none), then a packet starts a
    handshake that B never answers: the initiation is sent again REKEY_TIMEOUT (+ jitter)
    later, by ``run_timers`` alone — no task of the test reads ``get_timer``."""
    async with port_to() as (port, far), anyio.create_task_group() as tg:
        await tg.start(port.run_timers)
        assert port.wg.get_timer() is None
        await anyio.sleep(1.5)
        await port.send_batch(batch_of([ip4(A_IP, B_IP)]))
        with anyio.fail_after(5):
            first, t0 = await next_datagram(far)
        assert first[0] == MESSAGE_INITIATION
        with anyio.fail_after(REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX + 5):
            again, t1 = await next_datagram(far)
        assert again[0] == MESSAGE_INITIATION and again[4:8] != first[4:8]  # a new index
        assert t1 - t0 >= REKEY_TIMEOUT - 0.1
        assert port.wg.statistics().handshake_initiations_sent == 2
        tg.cancel_scope.cancel()


async def test_a_persistent_keepalive_goes_out_at_start_and_then_every_interval() -> None:
    """``run_timers`` starts the interface (``wg.start``: the keepalive starts the handshake),
    and once B answered, keepalives — empty transport messages — follow every second."""
    async with port_to(keepalive=1) as (port, far), anyio.create_task_group() as tg:
        batch = port.new_batch()

        async def receive() -> None:
            while True:
                batch.clear()
                await port.recv_batch(batch, False)

        tg.start_soon(receive)
        b = WireGuard(KEY_B)
        b.add_peer(PeerConfig(KEY_A.public_key(), allowed_ips=f"{A_IP}/32"))
        await tg.start(port.run_timers)
        with anyio.fail_after(5):
            init, _ = await next_datagram(far)
        assert init[0] == MESSAGE_INITIATION
        assert b.receive_datagram(init, port.transport.local_address, time.monotonic()) == []
        answer = DatagramBatch(1 << 16)
        for d, a in b.datagrams_to_send():
            answer.append(d, address=a)
        await far.send_batch(answer)
        times = []
        with anyio.fail_after(10):
            while len(times) < 3:
                data, t = await next_datagram(far)
                assert data[0] == MESSAGE_TRANSPORT
                now = time.monotonic()
                assert b.receive_datagram(data, port.transport.local_address, now) == []
                times.append(t)
        assert b.statistics().keepalives_received == 3
        # a second apart, the first as the handshake completes
        assert all(0.9 <= later - t < 4 for t, later in itertools.pairwise(times))
        tg.cancel_scope.cancel()


async def test_cancelling_run_timers_ends_it_and_lets_it_run_again() -> None:
    """Cancelled while it waits (for the retransmission 5 s away, then for no deadline at all),
    the task ends at once and gives the protocol's timer hook back: the port's timers can run
    again, one task at a time."""
    async with port_to(keepalive=25) as (port, far):
        for start in (True, False):
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    await tg.start(functools.partial(port.run_timers, start=start))
                    with pytest.raises(RuntimeError, match="run already"):
                        await port.run_timers()
                    await anyio.sleep(0.1)
                    tg.cancel_scope.cancel()
            assert port.wg._earlier is None
        with anyio.fail_after(5):
            first, _ = await next_datagram(far)  # the keepalive at start began a handshake
        assert first[0] == MESSAGE_INITIATION
