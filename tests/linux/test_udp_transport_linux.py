"""The UDP transport against what a real link does (a veth pair between two namespaces)."""

from __future__ import annotations

import gc
import os
import socket

import anyio
import pytest

from tunflow import ConfigError, testing
from tunflow.packet import PacketBatch
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
                assert tx.gso  # (refused for this send's segment size: the next one may go)


@pytest.mark.parametrize("offload", [True, False], ids=["coalesced", "plain"])
@pytest.mark.parametrize("taken_by", ["receive", "scattered", "send"])
async def test_a_connected_transport_receives_after_an_icmp_error(
    taken_by: str, offload: bool
) -> None:
    """A datagram to a peer that is not listening comes back as ICMP port unreachable, which
    the connected socket reports as an error (EPOLLERR) until a read or send takes it. uvloop
    stops polling a socket that reports one, for good: the next datagram was never received
    (asyncio and trio poll it again). The error is taken by a receive that waits when it comes
    (by batch or scattered reads), or by the next send while nobody receives."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, "192.168.96.1/24", "192.168.96.2/24")

        def peer_socket(port: int = 0) -> socket.socket:
            with b.entered():
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("192.168.96.2", port))
            return sock

        peer = peer_socket()
        where = peer.getsockname()
        with a.entered():
            tx = UDPTransport.bind(("192.168.96.1", 0), peer=where, offload=offload)
        received: list[bytes] = []

        async def receive() -> None:
            if taken_by != "scattered":
                received.extend((await tx.recv_batch()).to_list())
                return
            buf = bytearray(1 << 16)
            while True:
                try:
                    n, _, _ = tx.recv_scattered_nowait([memoryview(buf)])
                except BlockingIOError:
                    await tx.wait_readable()
                else:
                    received.append(bytes(buf[:n]))
                    return

        async def receive_from_peer(data: bytes) -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                await anyio.wait_all_tasks_blocked()  # waiting for the socket
                peer.sendto(data, tx.local_address)
            assert received.pop() == data

        async def send(data: bytes) -> None:
            out = tx.new_batch()
            out.append(data)
            assert await tx.send_batch(out) == 1

        try:
            async with tx:
                with anyio.fail_after(20):
                    # at rest after a receive that waited (what uvloop then hears of the
                    # socket, it hears while nobody waits: passed over as maybe stale)
                    await receive_from_peer(b"one")
                    peer.close()
                    if taken_by == "send":
                        await send(b"into the void")  # the ICMP error comes while idle
                        await anyio.sleep(0.2)  # the event loop polls the socket meanwhile
                        peer = peer_socket(where[1])
                        await send(b"two")  # takes the error, and is sent again
                        assert peer.recv(100) == b"two"
                        assert tx.statistics().drops == {"unreachable": 1}
                    else:
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(receive)
                            await anyio.wait_all_tasks_blocked()
                            await send(b"into the void")  # the receive wakes to the error
                            while not tx.statistics().drops:  # noqa: ASYNC110 - a counter, no event
                                await anyio.sleep(0.01)
                            assert tx.statistics().drops == {"refused": 1}
                            await anyio.wait_all_tasks_blocked()  # and waits again
                            peer = peer_socket(where[1])
                            peer.sendto(b"two", tx.local_address)
                        assert received.pop() == b"two"
                    await receive_from_peer(b"three")
        finally:
            peer.close()


@pytest.mark.parametrize("taken_by", ["receive", "send"])
async def test_a_connected_transport_survives_an_administratively_prohibited_icmpv6_error(
    taken_by: str,
) -> None:
    """A router (or firewall) refusing the peer's network answers ICMPv6 "administratively
    prohibited", which a connected IPv6 socket keeps as EACCES for its next read or send. A
    receive raised PermissionError (the data path failed); a send counted it but, on uvloop,
    left the socket unpolled for good. Both now count it, as an unreachable peer's error is
    counted, and the transport goes on receiving."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, "fd97::1/64", "fd97::2/64")
        a.run("ip", "-6", "route", "add", "fd98::/64", "via", "fd97::2")
        b.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        # every error answered: not rate-limited (the global limit is shared by all namespaces)
        b.run("sysctl", "-qw", "net.ipv6.icmp.ratemask=0,3-127")
        b.run("ip", "-6", "route", "add", "prohibit", "fd98::/64")
        # neighbours found both ways first (a fresh link may lose its first packets meanwhile)
        a.run("ping", "-6", "-q", "-c", "1", "-w", "10", "fd97::2")
        # the peer's address (a local one wins over the prohibit route)
        b.run("ip", "addr", "add", "fd98::1/128", "dev", "lo", "nodad")
        with b.entered():
            peer = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        peer.bind(("fd98::1", 9999))
        with a.entered():
            tx = UDPTransport.bind(("fd97::1", 0), peer=("fd98::1", 9999), offload=False)
        received: list[bytes] = []

        async def receive() -> None:
            received.extend((await tx.recv_batch()).to_list())

        async def receive_from_peer(data: bytes) -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                await anyio.wait_all_tasks_blocked()  # waiting for the socket
                peer.sendto(data, tx.local_address)
            assert received.pop() == data

        async def send(data: bytes) -> None:
            out = tx.new_batch()
            out.append(data)
            await tx.send_batch(out)

        try:
            async with tx:
                with anyio.fail_after(20):
                    await receive_from_peer(b"one")  # at rest, after a receive that waited
                    b.run("ip", "addr", "del", "fd98::1/128", "dev", "lo")  # now prohibited
                    async with anyio.create_task_group() as tg:
                        if taken_by == "receive":
                            tg.start_soon(receive)  # wakes to the error, counts it, waits again
                            await anyio.wait_all_tasks_blocked()
                        while not tx.statistics().drops:  # (an ICMP error may be lost: resend)
                            await send(b"into the void")
                            await anyio.sleep(0.1)  # the loop polls the socket meanwhile
                            if taken_by == "send":
                                await send(b"into the void")  # takes the error
                        assert tx.statistics().drops.get("refused", 0) >= 1
                        # the peer's network is reachable again: a datagram from it is received
                        b.run("ip", "addr", "add", "fd98::1/128", "dev", "lo", "nodad")
                        if taken_by == "send":
                            tg.start_soon(receive)
                            await anyio.wait_all_tasks_blocked()
                        peer.sendto(b"two", tx.local_address)
                    assert received == [b"two"]
        finally:
            peer.close()


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "gro"])
async def test_a_datagram_over_max_datagram_is_dropped_and_counted_not_cut(
    netns: testing.Netns, offload: bool
) -> None:
    # the plain path delivered it cut to max_datagram, uncounted; a GRO read offered only
    # max_datagram bytes was cut by the kernel and lost every datagram in it
    async with UDPTransport.bind(("127.0.0.1", 0), offload=offload, max_datagram=1000) as t:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"y" * 2000, t.local_address)
            if offload:  # ten datagrams in one UDP_SEGMENT send: one UDP_GRO read of 6000
                udp_segment = (socket.SOL_UDP, 103, (600).to_bytes(2, "little"))
                s.sendmsg([b"z" * 6000], [udp_segment], 0, t.local_address)
            else:
                for _ in range(10):
                    s.sendto(b"z" * 600, t.local_address)
            got: list[bytes] = []
            with anyio.fail_after(10):
                while len(got) < 10:
                    got += (await t.recv_batch()).to_list()
        assert got == [b"z" * 600] * 10
        assert t.statistics().drops == {"truncated": 1}


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "gro"])
async def test_datagrams_of_max_datagram_are_taken_and_each_longer_one_counted(
    netns: testing.Netns, offload: bool
) -> None:
    async with UDPTransport.bind(("127.0.0.1", 0), offload=offload, max_datagram=1000) as t:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for size in (1000, 1500):  # three of each: one UDP_GRO read of three, or three
                if offload:
                    udp_segment = (socket.SOL_UDP, 103, size.to_bytes(2, "little"))
                    s.sendmsg([b"z" * 3 * size], [udp_segment], 0, t.local_address)
                else:
                    for _ in range(3):
                        s.sendto(b"z" * size, t.local_address)
            s.sendto(b"end", t.local_address)
            with anyio.fail_after(10):
                # a batch with just the room a receive needs (documented: 65535 with GRO)
                got = (await t.recv_batch(DatagramBatch(65535 if offload else 1000))).to_list()
                while b"end" not in got:
                    got += (await t.recv_batch()).to_list()
        assert got == [b"z" * 1000] * 3 + [b"end"]
        assert t.statistics().drops == {"truncated": 3}


async def test_a_port_out_of_range_is_a_bad_address_not_the_rest_of_the_batch_lost(
    netns: testing.Netns,
) -> None:
    # OverflowError left send_batch, the valid datagrams after it unsent and uncounted
    for local in (("127.0.0.1", 0), ("::", 0)):
        async with UDPTransport.bind(local) as rx, UDPTransport.bind(local) as tx:
            port = rx.local_address[1]
            batch = DatagramBatch(4096)
            batch.append(b"bad", address=("127.0.0.1", 70000))
            batch.append(b"good", address=("127.0.0.1", port))
            batch.append(b"good2", address=("127.0.0.1", port))
            await tx.send_batch(batch)
            assert tx.statistics().drops == {"bad_address": 1}
            got: list[bytes] = []
            with anyio.fail_after(10):
                while len(got) < 2:
                    got += (await rx.recv_batch()).to_list()
            assert sorted(got) == [b"good", b"good2"]


@pytest.mark.parametrize("gathered", [False, True], ids=["arena", "gathered"])
async def test_the_plain_path_waits_for_room_rather_than_lose_the_rest_of_a_group(
    gathered: bool,
) -> None:
    """The plain path (no UDP_SEGMENT) sends a group a datagram at a time; when the socket
    buffer filled part way through one, the rest of the group — up to 63 datagrams — was
    counted lost (``would_block``) even in an awaited send_batch: behind a 20 Mbit shaper,
    284 of 600. Now the rest is sent once there is room, nothing twice."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        veth, _ = testing.veth_pair(a, b, "192.168.97.1/24", "192.168.97.2/24")
        a.run("tc", "qdisc", "add", "dev", veth, "root", "tbf", "rate", "20mbit", "burst",
              "16kb", "limit", "1mb")  # fmt: skip
        with b.entered():
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with rx:
            rx.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE: all 600 wait
            rx.bind(("192.168.97.2", 0))
            rx.settimeout(10)
            with a.entered():
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("192.168.97.1", 0))
            payloads = [i.to_bytes(2, "big") * 500 for i in range(600)]
            async with UDPTransport(sock, offload=False) as tx:
                # (after the transport's own, larger: the shaper's queue fills this one)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 << 10)
                # the peer's address resolved first: datagrams queued for ARP meanwhile may be
                # dropped by the neighbour table, not the transport (seen once in CI)
                sock.sendto(b"arp", rx.getsockname())
                assert rx.recv(2048) == b"arp"
                out = DatagramBatch(1 << 20, gather=gathered)
                for i in range(0, len(payloads), 60):  # groups of 60 datagrams
                    run = payloads[i : i + 60]
                    if gathered:  # (kept in the writer's buffers, in two parts)
                        whole = memoryview(b"".join(run))
                        parts = [whole[:1500], whole[1500:]]
                        out.add_gathered(parts, len(whole), 1000, rx.getsockname())
                    else:
                        for p in run:
                            out.append(p, address=rx.getsockname())
                with anyio.fail_after(60):
                    assert await tx.send_batch(out) == len(payloads), tx.statistics().drops
                assert tx.statistics().drops == {}
                got = [rx.recv(2048) for _ in payloads]
        assert got == payloads  # all of them, in order, none twice


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "gso"])
async def test_a_send_cancelled_while_waiting_for_room_counts_what_did_not_go(
    offload: bool,
) -> None:
    # the datagrams not yet sent were counted nowhere, and never told to on_unsent (the
    # WireGuard counters kept them as sent)
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        veth, _ = testing.veth_pair(a, b, "192.168.98.1/24", "192.168.98.2/24")
        a.run("tc", "qdisc", "add", "dev", veth, "root", "tbf", "rate", "1mbit", "burst",
              "16kb", "limit", "64kb")  # fmt: skip
        with a.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("192.168.98.1", 0))
        async with UDPTransport(sock, offload=offload) as tx:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 << 10)
            unsent: list[int] = []
            tx.on_unsent = lambda addr, n: unsent.append(n)
            out = DatagramBatch(1 << 20)
            for _ in range(600):  # 600 kB: ~5 s through the shaper
                out.append(bytes(1000), address=("192.168.98.2", 9))
            with anyio.move_on_after(0.3) as scope:
                await tx.send_batch(out)
            assert scope.cancelled_caught
            s = tx.statistics()
            assert s.drops.keys() == {"cancelled"}
            assert s.tx_datagrams + s.drops["cancelled"] == 600 and s.drops["cancelled"] > 0
            assert sum(unsent) == 1000 * s.drops["cancelled"]


async def test_the_plain_path_counts_the_bytes_that_went(netns: testing.Netns) -> None:
    # a group of three datagrams none of which could go counted 300 bytes sent
    async with UDPTransport.bind(("127.0.0.1", 0), offload=False) as tx:
        batch = DatagramBatch(4096)
        for _ in range(3):
            batch.append(b"x" * 100, address=("10.99.0.1", 9))  # no route in the namespace
        await tx.send_batch(batch)
        s = tx.statistics()
        assert (s.tx_datagrams, s.tx_bytes) == (0, 0) and s.drops == {"unreachable": 3}


def test_a_failed_adoption_leaves_the_callers_socket_open(netns: testing.Netns) -> None:
    # the half-made transport's finalizer closed the caller's socket; from_fd's own socket
    # object closed the caller's fd when the fd was refused
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with pytest.raises(OSError):
            UDPTransport.from_socket(s, peer=("203.0.113.9", 9))  # no route: ENETUNREACH
        gc.collect()
        assert s.fileno() != -1
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        with pytest.raises(ConfigError):
            UDPTransport.from_fd(tcp.fileno())
        gc.collect()
        os.fstat(tcp.fileno())  # still open


@pytest.mark.parametrize("offload", [True, False], ids=["segmented", "plain"])
async def test_a_lone_datagram_to_a_peer_with_no_route_is_counted_as_in_a_batch(
    netns_pair: tuple[testing.Netns, testing.Netns], offload: bool
) -> None:
    """A connected socket whose route went: a send fails with ENETUNREACH, tried once more in
    case it was an earlier datagram's pending ICMP error. A batch of one datagram is counted as
    the general path counts it (a plain packet batch of one goes that way); the lone path's
    second try fell back to the general path, which tried once more again: three
    ``unreachable`` drops for one datagram, where the general path counts two."""
    a, b = netns_pair
    veth, _ = testing.veth_pair(a, b, "192.168.96.1/24", "192.168.96.2/24")
    with a.entered():
        tx = UDPTransport.bind(("0.0.0.0", 0), peer=("192.168.96.2", 9), offload=offload)
    async with tx:
        a.run("ip", "addr", "del", "192.168.96.1/24", "dev", veth)  # and its route with it
        unsent: list[int] = []
        tx.on_unsent = lambda addr, n: unsent.append(n)
        counted = []
        for batch in (PacketBatch(), DatagramBatch()):
            batch.append(b"nowhere to go")
            before = tx.statistics().drops.get("unreachable", 0)
            with anyio.fail_after(5):
                assert await tx.send_batch(batch) == 0
            counted.append(tx.statistics().drops["unreachable"] - before)
        assert counted == [1, 1], counted
        assert unsent == [13, 13]
        assert tx.statistics().drops.keys() == {"unreachable"}
