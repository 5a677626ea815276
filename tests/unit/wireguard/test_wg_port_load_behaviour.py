"""WireGuardPort on loopback (no root) where the socket is the bottleneck: a lone packet the
express path could not send because the socket buffer was full is counted once, when the task
sends it; and a socket that overflows — the kernel dropping datagrams, or receive after
receive finding more waiting than a batch holds — makes the interface answer handshake
initiations with a cookie reply for a while (docs/vpn.md, "Under load")."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable

import anyio
import pytest
from wgpair import A_IP, B_IP, batch_of, ip4

from tunflow.packet import PacketBatch
from tunflow.transport import DatagramBatch, UDPTransport
from tunflow.wireguard import PeerConfig, PrivateKey, WireGuard, WireGuardPort
from tunflow.wireguard.runtime import _BACKLOG_READS, _SCATTER_READS, _UNDER_LOAD_FOR

pytestmark = pytest.mark.anyio

INITIATION, RESPONSE, COOKIE_REPLY = 1, 2, 3


async def received(transport: UDPTransport, count: int = 1) -> list[bytes]:
    """The next ``count`` datagrams ``transport`` receives (bounded wait)."""
    got = DatagramBatch(1 << 20)
    with anyio.fail_after(5):
        while len(got) < count:
            await transport.recv_batch(got)
    return [d for d, _ in got.to_pairs()]


def _peers(mine: UDPTransport, far: UDPTransport) -> tuple[WireGuard, WireGuard, PrivateKey]:
    """``mine``'s interface, with ``far``'s as its peer, and ``far``'s (no session yet)."""
    key, far_key = PrivateKey.generate(), PrivateKey.generate()
    wg = WireGuard(key)
    wg.add_peer(
        PeerConfig(far_key.public_key(), endpoint=far.local_address, allowed_ips=f"{B_IP}/32")
    )
    other = WireGuard(far_key)
    other.add_peer(PeerConfig(wg.public_key, allowed_ips=f"{A_IP}/32"))
    return wg, other, far_key


def _in_session(
    mine: UDPTransport, far: UDPTransport
) -> tuple[WireGuard, WireGuard, WireGuardPort, PrivateKey]:
    """``mine``'s interface and port, with a session to ``far``'s (its staged packet sent)."""
    wg, other, far_key = _peers(mine, far)
    wg.send_packet(ip4(A_IP, B_IP), 0.0)
    for d, _ in wg.datagrams_to_send():
        other.receive_datagram(d, mine.local_address, 0.0)
    for d, _ in other.datagrams_to_send():
        wg.receive_datagram(d, far.local_address, 0.0)
    wg.datagrams_to_send()
    return wg, other, WireGuardPort(wg, mine, mtu=1420, clock=lambda: 0.0), far_key


def _full_once(monkeypatch: pytest.MonkeyPatch, transport: UDPTransport) -> list[bool]:
    """The next waiting-allowed ``send_batch_nowait`` on ``transport`` meets a full socket."""
    real = transport.send_batch_nowait
    full = [True]

    def send_batch_nowait(batch: PacketBatch, *, drop_when_full: bool = True) -> int:
        if full[0] and not drop_when_full:
            full[0] = False
            return -1  # the socket buffer is full: nothing went, nothing counted
        return real(batch, drop_when_full=drop_when_full)

    monkeypatch.setattr(transport, "send_batch_nowait", send_batch_nowait)
    return full


async def test_a_lone_packet_the_full_socket_did_not_take_is_counted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_express_send``: when the socket buffer is full it returns ``False`` and "the task
    then sends the packet, waiting for room": that packet went out once, so the port counts
    one packet and the peer's ``tx_bytes`` (``wg show``'s transfer, "only what was sent")
    one datagram — not the copy sealed for the socket that did not take it as well."""
    async with UDPTransport.bind("127.0.0.1:0") as mine, UDPTransport.bind("127.0.0.1:0") as far:
        wg, other, port, far_key = _in_session(mine, far)
        before = wg.peer_statistics(far_key.public_key()).tx_bytes
        wg_before = wg.statistics().tx_bytes
        full = _full_once(monkeypatch, mine)
        packet = ip4(A_IP, B_IP, b"z" * 100)
        assert not port._express_send(batch_of([packet]))
        assert not full[0]  # the full socket was met
        assert port.statistics().tx_packets == 0
        await port.send_batch(batch_of([packet]))
        (datagram,) = await received(far)
        assert other.receive_datagram(datagram, mine.local_address, 0.0) == [packet]
        stats = port.statistics()
        assert (stats.tx_packets, stats.tx_bytes) == (1, len(packet))
        after = wg.peer_statistics(far_key.public_key()).tx_bytes
        assert after - before == len(datagram)
        assert wg.statistics().tx_bytes - wg_before == len(datagram)


async def test_a_lone_packets_initiation_the_full_socket_did_not_take_goes_with_the_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lone packet for a peer without a session is staged and its handshake initiation is
    what ``_express_send`` has to send: when the full socket buffer takes nothing, the task
    sends that initiation once there is room — not 5 s later with the retry — and the packet
    is staged once (delivered once when the handshake completes), the initiation counted
    once."""
    async with UDPTransport.bind("127.0.0.1:0") as mine, UDPTransport.bind("127.0.0.1:0") as far:
        wg, other, _ = _peers(mine, far)
        port = WireGuardPort(wg, mine, mtu=1420, clock=lambda: 0.0)
        full = _full_once(monkeypatch, mine)
        packet = ip4(A_IP, B_IP, b"z" * 100)
        sent = port._express_send(batch_of([packet]))
        assert not full[0]  # the full socket was met
        if not sent:
            await port.send_batch(batch_of([packet]))  # the task, as the engine does
        with anyio.fail_after(5):
            while not select.select([far.fileno()], [], [], 0)[0]:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        (init,) = await received(far)
        assert init[0] == INITIATION
        assert wg.statistics().handshake_initiations_sent == 1
        assert other.receive_datagram(init, mine.local_address, 0.0) == []
        ((response, _),) = other.datagrams_to_send()
        wg.receive_datagram(response, far.local_address, 0.0)
        staged = [d for d, _ in wg.datagrams_to_send() if d[0] == 4]
        delivered = [p for d in staged for p in other.receive_datagram(d, mine.local_address, 0.0)]
        assert delivered == [packet]


async def test_after_the_held_packet_went_the_same_packet_again_is_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the full socket did not take goes once, with the task's send of that packet: the
    same packet sent after it (a repeated ping) is sealed and sent anew, and counted."""
    async with UDPTransport.bind("127.0.0.1:0") as mine, UDPTransport.bind("127.0.0.1:0") as far:
        _, other, port, _ = _in_session(mine, far)
        full = _full_once(monkeypatch, mine)
        packet = ip4(A_IP, B_IP, b"p" * 60)
        assert not port._express_send(batch_of([packet]))
        assert not full[0]
        await port.send_batch(batch_of([packet]))
        await port.send_batch(batch_of([packet]))
        datagrams = await received(far, 2)
        opened = [p for d in datagrams for p in other.receive_datagram(d, mine.local_address, 0.0)]
        assert opened == [packet, packet]
        assert port.statistics().tx_packets == 2


async def test_what_was_held_for_another_packet_is_lost_and_counted_as_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``send_batch`` of a batch that is not the held packet: what was held is lost — its
    bytes come off the peer's transfer, as a lost datagram's do — and the batch goes as
    usual, sealed for itself."""
    async with UDPTransport.bind("127.0.0.1:0") as mine, UDPTransport.bind("127.0.0.1:0") as far:
        wg, other, port, far_key = _in_session(mine, far)
        before = wg.peer_statistics(far_key.public_key()).tx_bytes
        full = _full_once(monkeypatch, mine)
        assert not port._express_send(batch_of([ip4(A_IP, B_IP, b"h" * 60)]))
        assert not full[0]
        other_packet = ip4(A_IP, B_IP, b"o" * 90)
        await port.send_batch(batch_of([other_packet]))
        (datagram,) = await received(far)
        assert other.receive_datagram(datagram, mine.local_address, 0.0) == [other_packet]
        assert wg.peer_statistics(far_key.public_key()).tx_bytes - before == len(datagram)
        assert port.statistics().tx_packets == 1


def initiation(key: PrivateKey, responder: WireGuard, address: tuple[str, int]) -> bytes:
    """A fresh handshake initiation from ``key`` to ``responder`` (no cookie: mac2 empty)."""
    initiator = WireGuard(key)
    initiator.add_peer(PeerConfig(responder.public_key, endpoint=address, allowed_ips=f"{A_IP}/32"))
    initiator.send_packet(ip4(B_IP, A_IP), 0.0)  # staged; the initiation is queued
    ((datagram, _),) = initiator.datagrams_to_send()
    assert datagram[0] == INITIATION
    return datagram


def initiator_socket(port: WireGuardPort) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.bind(("127.0.0.1", 0))
    s.connect(port.transport.local_address)
    return s


async def serve(port: WireGuardPort, until: Callable[[], bool]) -> None:
    """Let the port receive (and answer) until ``until()`` holds (bounded)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(port.recv_batch, port.new_batch(), False)
        with anyio.fail_after(5):
            while not until():  # noqa: ASYNC110
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()


async def answer(port: WireGuardPort, s: socket.socket, datagram: bytes) -> bytes:
    """What the port answers ``datagram`` sent from ``s`` with."""
    s.send(datagram)
    await serve(port, lambda: bool(select.select([s], [], [], 0)[0]))
    return s.recv(2048)


async def test_a_socket_the_kernel_dropped_datagrams_on_demands_cookies_for_a_while() -> None:
    """Under load when the kernel drops datagrams because the socket queue is full: the next
    initiation is answered with a cookie reply (docs/vpn.md), for ``_UNDER_LOAD_FOR`` seconds;
    once that is over with no drops since, an initiation is answered again (the drops already
    seen do not keep the interface under load for ever)."""
    async with UDPTransport.bind("127.0.0.1:0") as mine:
        if not mine.gro:
            pytest.skip("no UDP_GRO: the kernel's drop count is read with it")
        now = [0.0]
        wg = WireGuard(PrivateKey.generate())
        key = PrivateKey.generate()
        wg.add_peer(PeerConfig(key.public_key(), allowed_ips=f"{B_IP}/32"))
        port = WireGuardPort(wg, mine, mtu=1420, clock=lambda: now[0])
        with socket.fromfd(mine.fileno(), socket.AF_INET, socket.SOCK_DGRAM) as dup:
            dup.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
        with initiator_socket(port) as s:
            for _ in range(200):
                s.send(b"\x04" + bytes(63))  # junk: dropped by the protocol, unanswered
            await serve(port, lambda: not select.select([mine.fileno()], [], [], 0)[0])
            # (the kernel tells the count with the next datagram it queues)
            reply = await answer(port, s, initiation(key, wg, mine.local_address))
            assert mine.kernel_drops > 0
            assert reply[0] == COOKIE_REPLY
            now[0] += 2 * _UNDER_LOAD_FOR
            reply = await answer(port, s, initiation(key, wg, mine.local_address))
            assert reply[0] == RESPONSE


async def test_receives_that_keep_finding_more_waiting_demand_cookies() -> None:
    """Under load when "eight receives in a row found more waiting than a batch holds"
    (docs/vpn.md): an initiation queued behind that backlog is answered with a cookie reply;
    one behind twice seven such receives, one that found less than a batch between them, with
    a handshake response (in a row, not in all)."""
    async with UDPTransport.bind("127.0.0.1:0", max_packets=8) as mine:
        wg = WireGuard(PrivateKey.generate())
        key = PrivateKey.generate()
        wg.add_peer(PeerConfig(key.public_key(), allowed_ips=f"{B_IP}/32"))
        port = WireGuardPort(wg, mine, mtu=1420, clock=lambda: 0.0)
        with initiator_socket(port) as s:
            for _ in range((_BACKLOG_READS + 1) * mine.max_packets + 3):
                s.send(b"\x04" + bytes(63))
            reply = await answer(port, s, initiation(key, wg, mine.local_address))
            assert mine.kernel_drops == 0  # (the backlog alone)
            assert reply[0] == COOKIE_REPLY
        wg = WireGuard(PrivateKey.generate())
        wg.add_peer(PeerConfig(key.public_key(), allowed_ips=f"{B_IP}/32"))
        port = WireGuardPort(wg, mine, mtu=1420, clock=lambda: 0.0)
        with initiator_socket(port) as s:
            seven = (_BACKLOG_READS - 1) * mine.max_packets
            for _ in range(seven + 3):  # the eighth receive finds 3
                s.send(b"\x04" + bytes(63))
            await serve(port, lambda: not select.select([mine.fileno()], [], [], 0)[0])
            for _ in range(seven):
                s.send(b"\x04" + bytes(63))
            reply = await answer(port, s, initiation(key, wg, mine.local_address))
            assert reply[0] == RESPONSE


async def test_eight_receives_in_a_row_that_found_more_waiting_are_enough() -> None:
    """Exactly "eight receives in a row found more waiting than a batch holds" (docs/vpn.md):
    the initiation queued behind them is answered with a cookie reply."""
    async with UDPTransport.bind("127.0.0.1:0", max_packets=8) as mine:
        wg = WireGuard(PrivateKey.generate())
        key = PrivateKey.generate()
        wg.add_peer(PeerConfig(key.public_key(), allowed_ips=f"{B_IP}/32"))
        port = WireGuardPort(wg, mine, mtu=1420, clock=lambda: 0.0)
        with initiator_socket(port) as s:
            for _ in range(_BACKLOG_READS * mine.max_packets):
                s.send(b"\x04" + bytes(63))
            reply = await answer(port, s, initiation(key, wg, mine.local_address))
            assert mine.kernel_drops == 0
            assert reply[0] == COOKIE_REPLY


@pytest.mark.parametrize("reads", ["gro", "plain", "scattered"])
async def test_a_receive_that_found_the_queue_empty_ends_the_row(reads: str) -> None:
    """Seven receives that found more waiting than a batch holds, then a read that found the
    queue empty, then one more that found more waiting: not "eight receives in a row"
    (docs/vpn.md), and an initiation behind them is answered with a handshake response —
    whichever way the socket is read (``UDP_GRO``, plain ``recvfrom``, or scattered reads
    for native peers, 16 reads a receive)."""
    async with UDPTransport.bind("127.0.0.1:0", max_packets=8, offload=reads != "plain") as mine:
        if reads != "plain" and not mine.gro:
            pytest.skip("no UDP_GRO")
        native = reads == "scattered"
        per_receive = _SCATTER_READS if native else mine.max_packets
        wg = WireGuard(PrivateKey.generate())
        key = PrivateKey.generate()
        wg.add_peer(PeerConfig(key.public_key(), allowed_ips=f"{B_IP}/32", native_mode=native))
        port = WireGuardPort(wg, mine, whole=native, mtu=1420, clock=lambda: 0.0)
        assert (port._scatter is not None) == native
        with initiator_socket(port) as s:
            for _ in range((_BACKLOG_READS - 1) * per_receive):  # seven full receives
                s.send(b"\x04" + bytes(63))
            quiet: list[bool] = []

            def emptied() -> bool:
                # the queue read to its end, and the port's task given turns to find it empty
                quiet.append(not select.select([mine.fileno()], [], [], 0)[0])
                return quiet[-5:] == [True] * 5

            await serve(port, emptied)
            for _ in range(per_receive):  # one more full receive
                s.send(b"\x04" + bytes(63))
            reply = await answer(port, s, initiation(key, wg, mine.local_address))
            assert reply[0] == RESPONSE


async def test_drops_on_a_new_listen_port_socket_demand_cookies_too() -> None:
    """After ``replace_transport`` (a new listen port), the kernel dropping datagrams on the new
    socket puts the interface under load as it did on the old one — however many the old
    socket had dropped (each socket counts its own drops from 0)."""
    async with (
        UDPTransport.bind("127.0.0.1:0") as old,
        UDPTransport.bind("127.0.0.1:0") as new,
    ):
        if not old.gro:
            pytest.skip("no UDP_GRO: the kernel's drop count is read with it")
        now = [0.0]
        wg = WireGuard(PrivateKey.generate())
        key = PrivateKey.generate()
        wg.add_peer(PeerConfig(key.public_key(), allowed_ips=f"{B_IP}/32"))
        port = WireGuardPort(wg, old, mtu=1420, clock=lambda: now[0])
        for t in (old, new):
            with socket.fromfd(t.fileno(), socket.AF_INET, socket.SOCK_DGRAM) as dup:
                dup.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
        with initiator_socket(port) as s:
            for _ in range(1000):
                s.send(b"\x04" + bytes(63))
            await serve(port, lambda: not select.select([old.fileno()], [], [], 0)[0])
            reply = await answer(port, s, initiation(key, wg, old.local_address))
            assert reply[0] == COOKIE_REPLY
        now[0] += 2 * _UNDER_LOAD_FOR
        port.replace_transport(new)
        with initiator_socket(port) as s:
            for _ in range(100):
                s.send(b"\x04" + bytes(63))
            await serve(port, lambda: not select.select([new.fileno()], [], [], 0)[0])
            reply = await answer(port, s, initiation(key, wg, new.local_address))
            assert 0 < new.kernel_drops < old.kernel_drops
            assert reply[0] == COOKIE_REPLY


async def test_a_row_of_receives_on_the_old_socket_does_not_go_on_on_a_new_one() -> None:
    """Seven receives that found more waiting on one socket, its queue then read to the end,
    and the listen port changed: one such receive on the new socket is not the eighth "in a
    row" — an initiation behind it is answered with a handshake response."""
    async with (
        UDPTransport.bind("127.0.0.1:0", max_packets=8) as old,
        UDPTransport.bind("127.0.0.1:0", max_packets=8) as new,
    ):
        wg = WireGuard(PrivateKey.generate())
        key = PrivateKey.generate()
        wg.add_peer(PeerConfig(key.public_key(), allowed_ips=f"{B_IP}/32"))
        port = WireGuardPort(wg, old, mtu=1420, clock=lambda: 0.0)
        with initiator_socket(port) as s:
            for _ in range((_BACKLOG_READS - 1) * old.max_packets):
                s.send(b"\x04" + bytes(63))
            await serve(port, lambda: not select.select([old.fileno()], [], [], 0)[0])
        port.replace_transport(new)
        with initiator_socket(port) as s:
            for _ in range(new.max_packets):
                s.send(b"\x04" + bytes(63))
            reply = await answer(port, s, initiation(key, wg, new.local_address))
            assert reply[0] == RESPONSE
