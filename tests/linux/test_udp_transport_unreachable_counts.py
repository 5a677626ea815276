"""A connected UDPTransport's drops when sends fail: each datagram lost counted once, whatever
the path, and an earlier datagram's pending ICMP error counted as the one datagram it reports.

A connected socket returns an ICMP error an earlier datagram met from its next send, which is
tried once more. A send that failed for a reason of its own (no route to the peer) failed the
same way again, and both tries were counted: 2 ``unreachable`` drops a datagram on the plain
path, the group's and one more for a ``UDP_SEGMENT`` group."""

from __future__ import annotations

import select
import socket
from typing import Any

import anyio
import pytest

from tunflow import testing
from tunflow.packet import PacketBatch
from tunflow.transport import DatagramBatch, UDPTransport

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]

# how a batch is sent: one datagram (the lone path), datagrams of different sizes (a send
# each), one group of datagrams of one size with and without UDP_SEGMENT
KINDS = ["lone", "singles", "plain", "segmented"]


class _CountedSends:
    """The transport's socket, its send calls counted."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def send(self, *args: Any) -> int:
        self.calls += 1
        return self._sock.send(*args)

    def sendto(self, *args: Any) -> int:
        self.calls += 1
        return self._sock.sendto(*args)

    def sendmsg(self, *args: Any) -> int:
        self.calls += 1
        return self._sock.sendmsg(*args)


def _batch(kind: str) -> PacketBatch:
    """The datagrams ``kind`` sends (to the transport's peer); 1 or 3 of them."""
    if kind == "lone":
        batch: PacketBatch = DatagramBatch()
        batch.append(b"x" * 100)
    elif kind == "singles":
        batch = PacketBatch()  # (a pipeline's device side: a send a packet)
        for size in (100, 200, 300):
            batch.append(b"x" * size)
    else:
        batch = DatagramBatch()
        for _ in range(3):
            batch.append(b"x" * 100)
    return batch


async def _send(tx: UDPTransport, batch: PacketBatch, nowait: bool) -> tuple[int, int]:
    """Send ``batch``: ``(datagrams sent, send calls made)``."""
    real = tx._sock
    assert real is not None
    counted = _CountedSends(real)
    tx._sock = counted  # type: ignore[assignment]
    try:
        with anyio.fail_after(5):
            sent = tx.send_batch_nowait(batch) if nowait else await tx.send_batch(batch)
    finally:
        tx._sock = real
    return sent, counted.calls


def _wait_for_pending_error(tx: UDPTransport) -> None:
    """Until the socket holds an ICMP error for its next read or send (not taking it)."""
    poll = select.poll()
    poll.register(tx.fileno(), 0)  # (POLLERR is always reported)
    assert poll.poll(5000) == [(tx.fileno(), select.POLLERR)]


@pytest.mark.parametrize("nowait", [False, True], ids=["send_batch", "nowait"])
@pytest.mark.parametrize("kind", KINDS)
async def test_datagrams_with_no_route_to_the_peer_are_each_counted_once(
    netns_pair: tuple[testing.Netns, testing.Netns], kind: str, nowait: bool
) -> None:
    """The peer's route went: every send fails with ENETUNREACH. The first is tried once
    more (it might have been an earlier datagram's ICMP error); the rest are not, until a
    send goes. Each datagram is one ``unreachable`` drop (3 datagrams counted 6 on the plain
    path, a group of 3 counted 4) and its bytes are told to ``on_unsent`` once."""
    a, b = netns_pair
    veth, _ = testing.veth_pair(a, b, "192.168.93.1/24", "192.168.93.2/24")
    with a.entered():
        tx = UDPTransport.bind(
            ("0.0.0.0", 0), peer=("192.168.93.2", 9), offload=kind == "segmented"
        )
    async with tx:
        assert tx.gso == (kind == "segmented")
        a.run("ip", "addr", "del", "192.168.93.1/24", "dev", veth)  # and its route with it
        unsent: list[tuple[object, int]] = []
        tx.on_unsent = lambda addr, n: unsent.append((addr, n))
        batch = _batch(kind)
        sent, calls = await _send(tx, batch, nowait)
        assert sent == 0
        lost = len(batch)
        s = tx.statistics()
        assert s.drops == {"unreachable": lost}
        assert (s.tx_datagrams, s.tx_bytes) == (0, 0)
        # every byte told once (a UDP_SEGMENT group's in one call)
        assert {addr for addr, _ in unsent} == {("192.168.93.2", 9)}
        assert sum(n for _, n in unsent) == sum(batch.lengths)
        # one send a group, and one more: the first tried again
        assert calls == {"lone": 2, "singles": 4, "plain": 4, "segmented": 2}[kind]


@pytest.mark.parametrize("nowait", [False, True], ids=["send_batch", "nowait"])
@pytest.mark.parametrize("kind", KINDS)
async def test_an_earlier_datagrams_icmp_error_costs_the_next_send_nothing(
    netns_pair: tuple[testing.Netns, testing.Netns], kind: str, nowait: bool
) -> None:
    """A datagram to a closed port comes back as ICMP port unreachable, which the next send
    returns (ECONNREFUSED) instead of sending: that send is tried again and goes. The earlier
    datagram is the one ``unreachable`` drop; nothing of this send is lost or told to
    ``on_unsent``."""
    a, b = netns_pair
    testing.veth_pair(a, b, "192.168.94.1/24", "192.168.94.2/24")
    b.run("sysctl", "-qw", "net.ipv4.icmp_ratemask=0")  # every error answered
    with b.entered():
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind(("192.168.94.2", 0))
        where = peer.getsockname()
        with a.entered():
            tx = UDPTransport.bind(("192.168.94.1", 0), peer=where, offload=kind == "segmented")
        async with tx:
            unsent: list[tuple[object, int]] = []
            tx.on_unsent = lambda addr, n: unsent.append((addr, n))
            peer.close()
            void = tx.new_batch()
            void.append(b"into the void")
            assert await tx.send_batch(void) == 1  # sent: the ICMP error comes afterwards
            _wait_for_pending_error(tx)
            with b.entered():
                peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            peer.bind(where)
            peer.settimeout(5)
            batch = _batch(kind)
            sent, calls = await _send(tx, batch, nowait)
            assert sent == len(batch)
            assert calls == {"lone": 2, "singles": 4, "plain": 4, "segmented": 2}[kind]
            s = tx.statistics()
            assert s.drops == {"unreachable": 1}
            assert s.tx_datagrams == 1 + len(batch)
            assert unsent == []
            assert [len(peer.recv(2048)) for _ in batch.lengths] == list(batch.lengths)
            assert tx.gso == (kind == "segmented")
    finally:
        peer.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_send_refused_after_taking_an_earlier_datagrams_error_counts_both(
    netns_pair: tuple[testing.Netns, testing.Netns], kind: str
) -> None:
    """The send that takes an earlier datagram's ICMP error is tried again, and a firewall
    rule refuses it (EPERM): the earlier datagram is an ``unreachable`` drop and each of this
    send's a ``refused`` one, its bytes told to ``on_unsent``."""
    a, b = netns_pair
    testing.veth_pair(a, b, "192.168.95.1/24", "192.168.95.2/24")
    b.run("sysctl", "-qw", "net.ipv4.icmp_ratemask=0")
    with b.entered():
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with peer:
        peer.bind(("192.168.95.2", 0))
        where = peer.getsockname()
    with a.entered():
        tx = UDPTransport.bind(("192.168.95.1", 0), peer=where, offload=kind == "segmented")
    async with tx:
        void = tx.new_batch()
        void.append(b"into the void")
        assert await tx.send_batch(void) == 1
        _wait_for_pending_error(tx)
        a.run("nft", "add", "table", "inet", "t")
        a.run("nft", "add chain inet t out { type filter hook output priority 0; }")
        a.run("nft", "add", "rule", "inet", "t", "out", "udp", "dport", str(where[1]), "drop")
        unsent: list[int] = []
        tx.on_unsent = lambda addr, n: unsent.append(n)
        batch = _batch(kind)
        sent, _ = await _send(tx, batch, False)
        assert sent == 0
        assert tx.statistics().drops == {"unreachable": 1, "refused": len(batch)}
        assert sum(unsent) == sum(batch.lengths)
