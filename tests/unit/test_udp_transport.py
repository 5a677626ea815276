"""The UDP transport's batching (UDP_SEGMENT sends, UDP_GRO reads) and its plain path, over
loopback (no root needed), on asyncio, uvloop and trio."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys

import anyio
import pytest

from tests.helpers import assert_a_new_socket_is_waited_on
from tunflow.transport import UDP_OFFLOAD_ENV, DatagramBatch, UDPTransport

pytestmark = pytest.mark.anyio

LINUX = sys.platform.startswith("linux")


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def payloads(n: int, size: int = 1400) -> list[bytes]:
    return [bytes([i % 251]) * size for i in range(n)]


async def receive(t: UDPTransport, count: int, timeout: float = 5.0) -> DatagramBatch:
    """Receive ``count`` datagrams into one batch (several receives if need be)."""
    batch = DatagramBatch(4 << 20)
    with anyio.fail_after(timeout):
        while len(batch) < count:
            await t.recv_batch(batch)
    return batch


@pytest.mark.skipif(not LINUX, reason="UDP_SEGMENT/UDP_GRO are Linux's")
async def test_segmented_sends_and_coalesced_reads() -> None:
    async with UDPTransport.bind("127.0.0.1:0") as rx, UDPTransport.bind("127.0.0.1:0") as tx:
        assert (tx.gso, rx.gro) == (True, True)
        out = DatagramBatch(1 << 20)
        for p in payloads(100):
            out.append(p, address=rx.local_address)
        assert await tx.send_batch(out) == 100
        got = await receive(rx, 100)
        assert got.to_list() == payloads(100)
        assert set(got.addresses) == {tx.local_address}
        s, r = tx.statistics(), rx.statistics()
        # 46 datagrams of 1400 bytes fit one 65507-byte send: 3 sends, 3 reads for 100
        assert s.tx_syscalls == 3 and s.tx_datagrams == 100
        assert r.rx_syscalls <= 4 and r.rx_datagrams == 100
        assert r.rx_bytes == s.tx_bytes == 140_000


@pytest.mark.parametrize("how", ["option", "env"])
async def test_plain_path_when_told(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = {}
    if how == "env":
        monkeypatch.setenv(UDP_OFFLOAD_ENV, "0")
    else:
        kwargs["offload"] = False
    async with (
        UDPTransport.bind("127.0.0.1:0", **kwargs) as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address, **kwargs) as tx,
    ):
        assert (tx.gso, rx.gro) == (False, False)
        out = tx.new_batch()
        out.extend(payloads(30, 200))
        assert await tx.send_batch(out) == 30
        got = await receive(rx, 30)
        assert got.to_list() == payloads(30, 200)
        assert tx.statistics().tx_syscalls == 30
        assert rx.statistics().rx_syscalls == 30


async def test_groups_by_peer_and_size() -> None:
    async with (
        UDPTransport.bind("127.0.0.1:0") as a,
        UDPTransport.bind("127.0.0.1:0") as b,
        UDPTransport.bind("127.0.0.1:0") as tx,
    ):
        out = DatagramBatch(1 << 20)
        plan = [(a, 300), (a, 300), (a, 100), (b, 300), (b, 500), (a, 300)]
        for i, (dst, size) in enumerate(plan):
            out.append(bytes([i]) * size, address=dst.local_address)
        assert await tx.send_batch(out) == 6
        got_a = await receive(a, 4)
        got_b = await receive(b, 2)
        assert got_a.to_list() == [bytes([i]) * n for i, (d, n) in enumerate(plan) if d is a]
        assert got_b.to_list() == [bytes([3]) * 300, bytes([4]) * 500]
        if tx.gso:
            # a,a,a(shorter last) | b | b | a
            assert tx.statistics().tx_syscalls == 4


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 on this host")
async def test_dual_stack_socket_speaks_plain_ipv4_addresses() -> None:
    async with (
        UDPTransport.bind("[::]:0") as dual,
        UDPTransport.bind("127.0.0.1:0") as v4,
        UDPTransport.bind("[::1]:0") as v6,
    ):
        port = dual.local_address[1]
        out = DatagramBatch()
        out.append(b"to v4", address=("127.0.0.1", v4.local_address[1]))
        out.append(b"to v6", address=("::1", v6.local_address[1]))
        assert await dual.send_batch(out) == 2
        assert (await receive(v4, 1)).to_pairs() == [(b"to v4", ("127.0.0.1", port))]
        assert (await receive(v6, 1)).to_pairs() == [(b"to v6", ("::1", port))]
        for src, text in ((v4, b"from v4"), (v6, b"from v6")):
            back = DatagramBatch()
            dst = "127.0.0.1" if src is v4 else "::1"
            back.append(text, address=(dst, port))
            await src.send_batch(back)
        got = await receive(dual, 2)
        assert sorted(got.to_pairs()) == sorted(
            [(b"from v4", v4.local_address), (b"from v6", v6.local_address)]
        )
        assert all(len(a) == 2 for a in got.addresses)


async def test_undeliverable_datagrams_are_counted() -> None:
    async with UDPTransport.bind("127.0.0.1:0") as t:
        out = DatagramBatch()
        out.append(b"nowhere")  # unconnected, no address
        out.append(b"v6 on a v4 socket", address=("::1", 9))
        out.append(b"x" * 70_000, address=("127.0.0.1", 9))  # too large for UDP
        assert await t.send_batch(out) == 0
        drops = t.statistics().drops
        assert drops["no_address"] == 1
        assert drops["bad_address"] == 1
        assert drops["too_large"] == 1


@pytest.mark.skipif(not LINUX, reason="SO_RXQ_OVFL is Linux's")
async def test_kernel_receive_queue_drops_are_reported() -> None:
    async with (
        UDPTransport.bind("127.0.0.1:0", buffer_size=4096) as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address, offload=False) as tx,
    ):
        out = tx.new_batch()
        out.extend(payloads(200, 1000))
        sent = await tx.send_batch(out)
        first = await receive(rx, 1)
        # the count rides on datagrams queued after the drops
        two = tx.new_batch()
        two.extend([b"after", b"and after"])
        await tx.send_batch(two)
        with anyio.fail_after(5):
            while b"and after" not in first.to_list():
                await rx.recv_batch(first)
        # the count is the socket's drops since it was made (socket(7)), on each datagram
        # after them: the last one read has them all, not a sum over the reads
        assert 0 < rx.statistics().drops["rx_overflow"] == sent + 2 - len(first)


class _NoSegmentation(socket.socket):
    """A socket whose kernel refuses UDP_SEGMENT sends as a device without checksum offload
    does (EIO)."""

    def sendmsg(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.EIO, "no checksum offload")


@pytest.mark.skipif(not LINUX, reason="UDP_SEGMENT is Linux's")
async def test_refused_segmentation_falls_back_to_plain_sends() -> None:
    sock = _NoSegmentation(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    async with UDPTransport.bind("127.0.0.1:0") as rx, UDPTransport.from_socket(sock) as tx:
        assert tx.gso
        out = DatagramBatch()
        for p in payloads(10, 100):
            out.append(p, address=rx.local_address)
        assert await tx.send_batch(out) == 10
        assert not tx.gso
        s = tx.statistics()
        assert s.drops == {"gso_refused": 1} and s.tx_syscalls == 10
        assert (await receive(rx, 10)).to_list() == payloads(10, 100)


class _Firewalled(socket.socket):
    """A socket whose sends an nftables ``output ... drop`` rule refuses (EPERM)."""

    def sendto(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EPERM, "Operation not permitted")

    def sendmsg(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EPERM, "Operation not permitted")


@pytest.mark.skipif(not LINUX, reason="Linux's errno for a broadcast send")
async def test_sends_the_kernel_refuses_are_counted_not_raised() -> None:
    # a broadcast address without SO_BROADCAST: EACCES; the other datagrams still go
    async with UDPTransport.bind("127.0.0.1:0") as rx, UDPTransport.bind("127.0.0.1:0") as tx:
        out = DatagramBatch()
        out.append(b"to broadcast", address=("127.255.255.255", 9))
        for p in payloads(3, 100):
            out.append(p, address=rx.local_address)
        assert await tx.send_batch(out) == 3
        assert tx.statistics().drops == {"refused": 1}
        assert (await receive(rx, 3)).to_list() == payloads(3, 100)
    # a firewall rule (EPERM), on the one-datagram and the segmented path alike
    sock = _Firewalled(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    async with UDPTransport.from_socket(sock) as fw:
        out = DatagramBatch()
        out.append(b"one", address=("127.0.0.1", 9))
        for p in payloads(5, 100):
            out.append(p, address=("127.0.0.2", 9))
        assert await fw.send_batch(out) == 0
        assert fw.send_batch_nowait(out) == 0
        assert fw.statistics().drops == {"refused": 12}


class _Full(socket.socket):
    """A socket whose send buffer stays full (EAGAIN), as behind a slow link."""

    def sendto(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    def sendmsg(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")


async def test_send_nowait_to_a_full_buffer_loses_and_counts_or_sends_nothing() -> None:
    """By default what a full buffer does not take is lost and counted; with
    ``drop_when_full=False`` nothing is sent or counted and the caller is told (-1), so that
    it can wait for room and send it all (a pipeline lane's packet at rest does)."""
    sock = _Full(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    async with UDPTransport.from_socket(sock) as full:
        for n in (1, 5):  # the one-datagram path and the grouped one
            out = DatagramBatch()
            for p in payloads(n, 100):
                out.append(p, address=("127.0.0.1", 9))
            assert full.send_batch_nowait(out, drop_when_full=False) == -1
            assert full.statistics().drops == {}
            assert full.statistics().tx_datagrams == 0
        assert full.send_batch_nowait(out) == 0
        assert full.statistics().drops == {"would_block": 5}


class _FullOnce(socket.socket):
    """A socket whose send buffer is full (EAGAIN) and that fails a test spinning on it."""

    calls = 0

    def _full(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        assert self.calls < 100, "sent to a full buffer again and again"
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    sendto = sendmsg = _full


async def test_a_full_buffer_on_the_plain_path_sends_nothing_and_counts_nothing() -> None:
    sock = _FullOnce(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    async with UDPTransport.from_socket(sock, offload=False) as full:
        out = DatagramBatch()
        for p in payloads(5, 100):
            out.append(p, address=("127.0.0.1", 9))
        assert full.send_batch_nowait(out, drop_when_full=False) == -1
        assert full.statistics().drops == {} and sock.calls == 1


class _NoBuffers(socket.socket):
    """A socket whose sends find no buffer memory (ENOBUFS)."""

    def sendto(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOBUFS, "No buffer space available")

    def sendmsg(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOBUFS, "No buffer space available")


async def test_sends_without_buffer_memory_are_lost_and_counted_not_raised() -> None:
    sock = _NoBuffers(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    async with UDPTransport.from_socket(sock) as t:
        unsent: list[tuple[object, int]] = []
        t.on_unsent = lambda addr, n: unsent.append((addr, n))
        for n in (1, 5):  # the one-datagram path and the grouped one
            out = DatagramBatch()
            for p in payloads(n, 100):
                out.append(p, address=("127.0.0.1", 9))
            assert await t.send_batch(out) == 0
        assert t.statistics().drops == {"would_block": 6}
        assert sum(n for _, n in unsent) == 600


@pytest.mark.skipif(not LINUX, reason="Linux's errno for a broadcast send")
@pytest.mark.parametrize("offload", [True, False], ids=["segmented", "plain"])
async def test_on_unsent_hears_the_address_and_bytes_of_what_was_lost(offload: bool) -> None:
    async with (
        UDPTransport.bind("127.0.0.1:0") as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address, offload=offload) as tx,
    ):
        unsent: list[tuple[object, int]] = []
        tx.on_unsent = lambda addr, n: unsent.append((addr, n))
        out = DatagramBatch(1 << 17)
        for size in (100, 100, 40):  # a broadcast address without SO_BROADCAST: EACCES
            out.append(bytes(size), address=("127.255.255.255", 9))
        out.append(bytes(65508))  # to the peer: above IPv4's 65507, EMSGSIZE
        assert await tx.send_batch(out) == 0
        bcast = ("127.255.255.255", 9)
        lost = [(bcast, 240)] if offload else [(bcast, 100), (bcast, 100), (bcast, 40)]
        assert unsent == [*lost, (rx.local_address, 65508)]
        assert tx.statistics().drops == {"refused": 3, "too_large": 1}


async def test_datagrams_without_an_address_are_each_counted() -> None:
    async with UDPTransport.bind("127.0.0.1:0") as t:
        unsent: list[tuple[object, int]] = []
        t.on_unsent = lambda addr, n: unsent.append((addr, n))
        out = DatagramBatch()
        out.extend(payloads(3, 100))  # unconnected: nowhere to go
        assert await t.send_batch(out) == 0
        assert t.statistics().drops == {"no_address": 3}
        # told, as every datagram a send drops is (they were only counted)
        assert sum(n for _, n in unsent) == 300 and {a for a, _ in unsent} == {None}


@pytest.mark.skipif(not LINUX, reason="UDP_SEGMENT is Linux's")
async def test_a_group_of_the_byte_limit_is_one_segmented_send() -> None:
    async with UDPTransport.bind("127.0.0.1:0") as rx, UDPTransport.bind("127.0.0.1:0") as tx:
        # the kernel takes 65507 bytes in one UDP_SEGMENT send over IPv4, and not one more
        udp_segment = [(socket.SOL_UDP, 103, (1452).to_bytes(2, sys.byteorder))]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            assert s.sendmsg([bytes(65507)], udp_segment, 0, ("127.0.0.1", 9)) == 65507
            with pytest.raises(OSError) as info:
                s.sendmsg([bytes(65508)], udp_segment, 0, ("127.0.0.1", 9))
            assert info.value.errno == errno.EMSGSIZE
        sizes = [1452] * 45 + [167]  # 65507 bytes
        out = DatagramBatch(1 << 17)
        for i, size in enumerate(sizes):
            out.append(bytes([i]) * size, address=rx.local_address)
        assert await tx.send_batch(out) == 46
        s = tx.statistics()
        assert (s.tx_syscalls, s.tx_bytes, s.drops) == (1, 65507, {})
        assert (await receive(rx, 46)).to_list() == [bytes([i]) * n for i, n in enumerate(sizes)]


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 on this host")
async def test_a_gathered_datagram_of_the_ipv6_limit_is_sent() -> None:
    # one datagram needs no UDP_SEGMENT: the 65507-byte limit of a segmented send is not its
    async with UDPTransport.bind("[::1]:0") as rx, UDPTransport.bind("[::1]:0") as tx:
        out = DatagramBatch(64, gather=True)
        body = b"x" * 65517
        out.add_gathered([memoryview(bytes(10)), memoryview(body)], 65527, 65527, rx.local_address)
        assert await tx.send_batch(out) == 1
        assert (await receive(rx, 1)).to_list() == [bytes(10) + body]


async def test_send_nowait_and_batches_of_many_reads() -> None:
    async with (
        UDPTransport.bind("127.0.0.1:0", max_packets=16) as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address, offload=False) as tx,
    ):
        out = tx.new_batch()
        out.extend(payloads(40, 64))
        assert tx.send_batch_nowait(out) == 40
        first = await receive(rx, 1)
        assert 1 <= len(first) <= 16  # max_packets bounds one receive
        assert rx.backlogged == (len(first) == 16)
        rest = await receive(rx, 40 - len(first))
        assert first.to_list() + rest.to_list() == payloads(40, 64)


async def test_plain_packet_batches_go_to_the_peer() -> None:
    from tunflow.packet import PacketBatch

    async with (
        UDPTransport.bind("127.0.0.1:0") as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address) as tx,
    ):
        batch = PacketBatch()
        batch.extend(payloads(5, 300))
        assert await tx.send_batch(batch) == 5
        assert (await receive(rx, 5)).to_list() == payloads(5, 300)
        with pytest.raises(TypeError):
            await rx.recv_batch(PacketBatch())


@pytest.mark.parametrize("local", ["127.0.0.1:0", "[::]:0"])
async def test_an_adopted_fd_keeps_its_peer(local: str) -> None:
    """A worker process adopts a connected socket with ``from_fd`` (and the handle's params):
    plain packet batches still go to the peer, not dropped as ``no_address``."""
    import os

    from tunflow.packet import PacketBatch

    if local.startswith("[") and not _has_ipv6():
        pytest.skip("no IPv6 on this host")
    async with (
        UDPTransport.bind("127.0.0.1:0") as rx,
        UDPTransport.bind(local, peer=rx.local_address) as tx,
        UDPTransport.from_fd(os.dup(tx.fileno()), **tx.reopen_params()) as adopted,
        UDPTransport.from_fd(os.dup(rx.fileno())) as unconnected,
    ):
        assert adopted.peer == tx.peer == rx.local_address  # plain IPv4, not ::ffff:127.0.0.1
        assert unconnected.peer is None
        batch = PacketBatch()
        batch.extend(payloads(3, 300))
        assert await adopted.send_batch(batch) == 3
        assert (await receive(rx, 3)).to_list() == payloads(3, 300)
        assert adopted.statistics().drops == {}


async def test_an_adopted_connected_socket_keeps_its_peer() -> None:
    """from_socket, as from_fd: a connected socket's batches without addresses go to its peer
    (they were dropped as ``no_address``); an unconnected one has none; ``peer`` still wins."""
    from tunflow.packet import PacketBatch

    async with UDPTransport.bind("127.0.0.1:0") as rx, UDPTransport.bind("127.0.0.1:0") as rx2:
        connected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        connected.connect(rx.local_address)
        async with (
            UDPTransport.from_socket(connected) as adopted,
            UDPTransport.from_socket(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as loose,
        ):
            assert adopted.peer == rx.local_address and loose.peer is None
            batch = PacketBatch()
            batch.extend(payloads(3, 200))
            assert await adopted.send_batch(batch) == 3
            assert (await receive(rx, 3)).to_list() == payloads(3, 200)
            assert adopted.statistics().drops == {}
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.connect(rx.local_address)
        async with UDPTransport.from_socket(other, peer=rx2.local_address) as told:
            assert told.peer == rx2.local_address


@pytest.mark.skipif(not LINUX, reason="UDP_GRO is Linux's")
@pytest.mark.parametrize("how", ["from_socket", "from_fd"])
async def test_an_adopted_socket_with_udp_gro_on_reads_plainly_datagram_by_datagram(
    how: str,
) -> None:
    """A socket adopted for the plain path (offload=False, TUNFLOW_UDP_OFFLOAD=0) that had
    UDP_GRO on already — its maker's, or another transport's on the same fd — took a
    segmented send's run of datagrams as one datagram (ten 100-byte ones: one of 1000)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_UDP, 104, 1)  # UDP_GRO
    if how == "from_fd":
        rx = UDPTransport.from_fd(sock.detach(), offload=False)
    else:
        rx = UDPTransport.from_socket(sock, offload=False)
    async with rx, UDPTransport.bind("127.0.0.1:0", peer=rx.local_address) as tx:
        assert (tx.gso, rx.gro) == (True, False)
        out = tx.new_batch()
        out.extend(payloads(10, 100))
        assert await tx.send_batch(out) == 10
        assert tx.statistics().tx_syscalls == 1  # one segmented send
        assert (await receive(rx, 10)).lengths == [100] * 10


@pytest.mark.skipif(not LINUX, reason="UDP_SEGMENT is Linux's")
@pytest.mark.parametrize("offload", [True, False], ids=["segmented", "plain"])
async def test_an_adopted_socket_with_a_segment_size_of_its_own_sends_datagrams_whole(
    offload: bool,
) -> None:
    """A socket adopted with UDP_SEGMENT set on it (a default segment size for every send):
    the kernel cut each send without a segment size of its own — a lone datagram, every one
    on the plain path — into datagrams of that size (1400 bytes: 500, 500 and 400)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_UDP, 103, 500)  # UDP_SEGMENT
    async with (
        UDPTransport.bind("127.0.0.1:0", offload=False) as rx,
        UDPTransport.from_socket(sock, offload=offload) as tx,
    ):
        sizes = [1400, 1400, 700, 2000]
        out = tx.new_batch()
        for size in sizes:
            out.append(bytes([size % 251]) * size, address=rx.local_address)
        assert await tx.send_batch(out) == len(sizes)
        assert (await receive(rx, len(sizes))).lengths == sizes
        with anyio.move_on_after(0.2):  # and nothing more
            await rx.recv_batch()
            pytest.fail("more datagrams than were sent")


@pytest.mark.skipif(not LINUX, reason="UDP_GRO is Linux's")
async def test_scattered_read_splits_every_datagram() -> None:
    async with UDPTransport.bind("127.0.0.1:0") as rx, UDPTransport.bind("127.0.0.1:0") as tx:
        out = DatagramBatch()
        datagrams = [bytes([i]) * 4 + bytes([100 + i]) * 96 for i in range(10)]
        for d in datagrams:
            out.append(d, address=rx.local_address)
        await tx.send_batch(out)
        heads, bodies = bytearray(4 * 16), bytearray(96 * 16)
        hv, bv = memoryview(heads), memoryview(bodies)
        iov = [v for i in range(16) for v in (hv[4 * i : 4 * i + 4], bv[96 * i : 96 * i + 96])]
        got = 0
        with anyio.fail_after(5):
            while got < 1000:
                try:
                    n, seg, addr = rx.recv_scattered_nowait(iov)
                except BlockingIOError:
                    await rx.wait_readable()
                    continue
                assert seg == 100 and addr == tx.local_address
                k0 = got // 100
                for k in range(n // 100):
                    assert heads[4 * k : 4 * k + 4] == bytes([k0 + k]) * 4
                    assert bodies[96 * k : 96 * k + 96] == bytes([100 + k0 + k]) * 96
                got += n
        with pytest.raises(BlockingIOError):
            rx.recv_scattered_nowait(iov)
        # every read that returned datagrams is a batch receive, as a recv_batch is (native
        # mode receives only this way: its transport reported no batches at all)
        s = rx.statistics()
        assert s.rx_datagrams == 10 and s.rx_bytes == 1000
        assert 1 <= s.rx_batches == s.rx_syscalls <= 10


async def test_a_scattered_read_counts_the_empty_datagram_it_passes_over() -> None:
    # it skipped them uncounted: a sender of empty datagrams showed nowhere
    async with UDPTransport.bind("127.0.0.1:0") as rx:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"", rx.local_address)
            s.sendto(b"", rx.local_address)
            s.sendto(b"data", rx.local_address)
            buf = memoryview(bytearray(100))
            with anyio.fail_after(5):
                while True:
                    try:
                        n, seg, addr = rx.recv_scattered_nowait([buf])
                        break
                    except BlockingIOError:
                        await rx.wait_readable()
            assert (n, seg, addr[1]) == (4, 4, s.getsockname()[1]) and buf[:4] == b"data"
        stats = rx.statistics()
        assert stats.drops == {"empty": 2} and stats.rx_datagrams == 1


@pytest.mark.skipif(not LINUX, reason="UDP_GRO is Linux's")
@pytest.mark.parametrize("scattered", [False, True], ids=["batch", "scattered"])
async def test_a_read_whose_segment_size_did_not_fit_is_dropped_not_merged(
    scattered: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket adopted with reports of its own on (timestamps) gets their control messages
    before UDP_GRO's segment size, which did not fit the room a read offered (32 bytes): a
    64-byte timestamp left it out — ten 100-byte datagrams were read as one of 1000 — and a
    16-byte one cut it (struct.error out of the receive). Now the room fits them; a read whose
    segment size is cut or left out anyway (the room made smaller here) is dropped, counted
    as ``truncated``, and the next one is read."""
    from tunflow.transport import udp

    async def read(count: int) -> list[int]:
        """The sizes of the next ``count`` datagrams read."""
        sizes: list[int] = []
        got = DatagramBatch(1 << 20)
        buf = memoryview(bytearray(1 << 16))
        with anyio.fail_after(5):
            while len(sizes) < count:
                if not scattered:
                    await rx.recv_batch(got)
                    sizes = got.lengths
                    continue
                try:
                    n, seg, _ = rx.recv_scattered_nowait([buf])
                except BlockingIOError:
                    await rx.wait_readable()
                else:
                    sizes += [seg] * (n // seg) + ([n % seg] if n % seg else [])
        return sizes

    for option, value, room in ((37, 0x18, None), (29, 1, 32)):  # SO_TIMESTAMPING, SO_TIMESTAMP
        if room is not None:
            monkeypatch.setattr(udp, "_ANCBUF", room)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, option, value)
        async with (
            UDPTransport.from_socket(sock) as rx,
            UDPTransport.bind("127.0.0.1:0", peer=rx.local_address) as tx,
        ):
            out = tx.new_batch()
            out.extend(payloads(10, 100))
            assert await tx.send_batch(out) == 10
            if room is None:
                assert await read(10) == [100] * 10
                assert rx.statistics().drops == {}
                continue
            out.clear()
            out.append(b"next")
            assert await tx.send_batch(out) == 1
            assert await read(1) == [4]  # (the ten before it dropped)
            assert rx.statistics().drops == {"truncated": 1}


@pytest.mark.parametrize("offload", [True, False])
async def test_gathered_groups_go_out_as_their_datagrams(offload: bool) -> None:
    # a group that stays in its writer's buffers: header, body, header, body… (what native
    # fast mode sends without cutting), beside an ordinary datagram in the arena
    heads = [bytes([0x7F, k]) * 10 for k in range(5)]
    bodies = [bytes([k]) * 300 for k in range(4)] + [b"tail"]
    parts = [memoryview(p) for pair in zip(heads, bodies, strict=True) for p in pair]
    expected = [h + b for h, b in zip(heads, bodies, strict=True)]
    async with (
        UDPTransport.bind("127.0.0.1:0", offload=offload) as rx,
        UDPTransport.bind("127.0.0.1:0", offload=offload) as tx,
    ):
        out = DatagramBatch(1 << 16, gather=True)
        out.append(b"plain", address=rx.local_address)
        out.add_gathered(parts, sum(map(len, parts)), 320, rx.local_address)
        out.add_gathered([memoryview(b"one"), memoryview(b"-part")], 8, 320, rx.local_address)
        assert len(out) == 1 and out.gathered_bytes == 4 * 320 + 24 + 8
        assert await tx.send_batch(out) == 7
        got = await receive(rx, 7)
        assert got.to_list() == [b"plain", *expected, b"one-part"]
        s = tx.statistics()
        assert s.tx_bytes == 5 + 4 * 320 + 24 + 8
        assert s.tx_syscalls == (3 if offload else 7)
        out.clear()
        assert not out.gathered and out.gathered_bytes == 0


def test_gathered_groups_are_checked() -> None:
    with pytest.raises(ValueError, match="gather=True"):
        DatagramBatch(1024).add_gathered([memoryview(b"x")], 1, 1, None)
    b = DatagramBatch(1024, gather=True)
    with pytest.raises(ValueError):
        b.add_gathered([], 0, 100, None)
    with pytest.raises(ValueError):  # more than one UDP_SEGMENT send takes
        b.add_gathered([memoryview(bytes(65 * 100))], 65 * 100, 100, None)
    assert not b.gathered


async def test_send_batch_without_checkpoint_is_not_one() -> None:
    async with (
        UDPTransport.bind("127.0.0.1:0") as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address) as tx,
    ):
        out = tx.new_batch()
        out.append(b"through")
        with anyio.CancelScope() as scope:
            scope.cancel()
            assert await tx.send_batch(out, checkpoint=False) == 1
            await tx.send_batch(out)
            raise AssertionError("a cancelled scope let a checkpointing send through")
        assert scope.cancelled_caught
        assert (await receive(rx, 1)).to_list() == [b"through"]
        assert tx.statistics().tx_datagrams == 1


async def test_a_transport_dropped_without_aclose_lets_go_of_its_fd() -> None:
    import gc

    t = UDPTransport.bind("127.0.0.1:0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"x", t.local_address)
        await receive(t, 1)  # its fd is now registered with the event loop
    del t
    gc.collect()
    # a new socket, likely with the same number, is waited on normally
    await assert_a_new_socket_is_waited_on()


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 on this host")
async def test_a_scope_that_names_no_interface_is_a_bad_address() -> None:
    # The kernel reads an interface name up to a NUL and at most 15 bytes: "lo\0x" and a
    # 16-character name whose first 15 are a link's would name that link. Nor is such a host
    # handed to the socket as it is (getaddrinfo: the process's namespace, a TypeError on a
    # NUL): the datagram is dropped as a bad address, and the others still go.
    from tunflow.transport.udp import _scope_index, _scope_name

    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        fd = s.fileno()
        assert _scope_index(fd, "lo") == 1 and _scope_name(fd, 1) == "lo"
        assert _scope_index(fd, "7") == 7
        assert _scope_index(fd, "lo\0x") == -1
        assert _scope_index(fd, "lo" + "\0" * 14 + "o") == -1
        assert _scope_index(fd, "x" * 16) == -1
        assert _scope_index(fd, str(2**32 + 1)) == -1  # not index 1 modulo 2**32
        assert _scope_index(fd, "no-such-link") == -1
    async with UDPTransport.bind("[::]:0") as tx, UDPTransport.bind("[::1]:0") as rx:
        out = DatagramBatch()
        for scope in ("lo\0x", "no-such-link", str(2**32 + 1)):
            out.append(b"scoped", address=(f"fe80::1%{scope}", 9))
        out.append(b"plain", address=rx.local_address)
        assert await tx.send_batch(out) == 1
        assert tx.statistics().drops == {"bad_address": 3}
        assert (await receive(rx, 1)).to_list() == [b"plain"]


async def test_numeric_scope_gives_the_links_index() -> None:
    # what the control socket shows `wg` for a link-local endpoint: the index, in the
    # socket's namespace; never a name wg would look up in its own and crash over (a link
    # deleted since: the index it last had, tests/linux/test_vpn_tunflow.py; else no scope)
    async with UDPTransport.bind(("::1", 0)) as t:
        lo = socket.if_nametoindex("lo")
        assert t.numeric_scope(("fe80::1%lo", 9)) == (f"fe80::1%{lo}", 9)
        assert t.numeric_scope(("fe80::1%7", 9)) == ("fe80::1%7", 9)
        assert t.numeric_scope(("fe80::1%nosuchlink0", 9)) == ("fe80::1", 9)
        # what a set or a configuration may name (wg and wireguard-go refuse the rest)
        assert t.has_scope(("fe80::1%lo", 9)) and t.has_scope(("fe80::1%7", 9))
        assert t.has_scope(("2001:db8::1", 9)) and t.has_scope(("192.0.2.1", 9))
        assert not t.has_scope(("fe80::1%nosuchlink0", 9))
        assert t.numeric_scope(("192.0.2.1", 9)) == ("192.0.2.1", 9)
        assert t.numeric_scope(("2001:db8::1", 9)) == ("2001:db8::1", 9)


@pytest.mark.skipif(not LINUX, reason="Linux's pending socket errors")
@pytest.mark.parametrize("offload", [True, False], ids=["segmented", "plain"])
async def test_an_earlier_datagrams_icmp_error_does_not_lose_the_next_ones(offload: bool) -> None:
    """On a connected socket the kernel keeps the ICMP error an earlier datagram met (port
    unreachable: the peer was down) and returns it from the next send — which it then did not
    send. The group of that send (up to 64 datagrams with UDP_SEGMENT) was dropped as
    "unreachable" though it was never tried and the peer is back. The error itself is counted:
    one datagram — the first — lost as unreachable."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        where = probe.getsockname()
    async with UDPTransport.bind("127.0.0.1:0", peer=where, offload=offload) as tx:
        first = tx.new_batch()
        first.append(b"into the void")
        assert await tx.send_batch(first) == 1  # the port is closed: ICMP port unreachable
        await anyio.sleep(0.1)
        async with UDPTransport.bind(f"127.0.0.1:{where[1]}") as rx:  # the peer is back
            out = tx.new_batch()
            out.extend(payloads(4, 500))
            assert await tx.send_batch(out) == 4
            assert (await receive(rx, 4)).to_list() == payloads(4, 500)
            assert tx.statistics().drops == {"unreachable": 1}


@pytest.mark.parametrize("offload", [True, False], ids=["segmented", "plain"])
async def test_empty_datagrams_are_sent_or_counted(offload: bool) -> None:
    """An empty datagram is a valid one: sent where it can go, counted as a drop where it
    cannot — counting it divided by its zero length (ZeroDivisionError out of send_batch)."""
    async with (
        UDPTransport.bind("127.0.0.1:0", offload=False) as rx,
        UDPTransport.bind("127.0.0.1:0", offload=offload) as tx,
    ):
        out = DatagramBatch()
        out.append(b"")  # unconnected, no address
        out.append(b"", address=("::1", 9))  # IPv6 on an IPv4 socket
        out.append(b"", address=rx.local_address)
        out.append(b"after", address=rx.local_address)
        assert await tx.send_batch(out) == 2
        assert tx.send_batch_nowait(out) == 2
        assert tx.statistics().drops == {"no_address": 2, "bad_address": 2}
        assert (await receive(rx, 4)).to_list() == [b"", b"after"] * 2


@pytest.mark.parametrize("offload", [True, False], ids=["segmented", "plain"])
async def test_an_empty_datagram_after_a_longer_one_is_sent(offload: bool) -> None:
    """gso_groups let an empty datagram close a group as its "shorter last" one: the group's
    length did not change, so it was never sent — nor counted as a drop."""
    async with (
        UDPTransport.bind("127.0.0.1:0", offload=False) as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address, offload=offload) as tx,
    ):
        out = tx.new_batch()
        out.extend([b"", b"after", b"after", b""])
        assert await tx.send_batch(out) == 4
        assert (await receive(rx, 4)).to_list() == [b"", b"after", b"after", b""]


@pytest.mark.parametrize("offload", [True, False], ids=["coalesced", "plain"])
async def test_empty_datagrams_are_received_on_either_path(offload: bool) -> None:
    """The plain path hands out an empty datagram as one of length 0; the UDP_GRO path threw
    it away without a count — what a receiver got depended on the kernel's offloads."""
    async with (
        UDPTransport.bind("127.0.0.1:0", offload=offload) as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address, offload=False) as tx,
    ):
        assert rx.gro == (offload and LINUX)
        out = tx.new_batch()
        out.extend([b"", b"after", b""])
        assert await tx.send_batch(out) == 3
        got = await receive(rx, 3)
        assert got.to_list() == [b"", b"after", b""]
        assert rx.statistics().rx_datagrams == 3


@pytest.mark.needs_root
@pytest.mark.skipif(sys.platform != "linux", reason="SO_MARK is Linux's")
@pytest.mark.parametrize("mark", [0x80000000, 0xFFFFFFFF])
async def test_a_fwmark_with_the_high_bit_set(mark: int) -> None:
    # a mark is 32 unsigned bits (wg takes up to 0xffffffff); passed to setsockopt as a Python
    # int over 2**31 - 1 it raised TypeError: `FwMark = 0x80000000` ended `tunflow up` with a
    # traceback, and `wg set wg0 fwmark 0x80000000` brought a running interface down
    async with UDPTransport.bind(("127.0.0.1", 0), fwmark=mark) as t:
        sock = t._socket()
        assert sock.getsockopt(socket.SOL_SOCKET, 36) & 0xFFFFFFFF == mark  # SO_MARK
        t.set_fwmark(0)
        assert sock.getsockopt(socket.SOL_SOCKET, 36) == 0
        t.set_fwmark(mark)
        assert sock.getsockopt(socket.SOL_SOCKET, 36) & 0xFFFFFFFF == mark


def counted_reads(rx: UDPTransport, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The datagrams each of ``rx``'s reads takes from now on (0: it found nothing)."""
    reads: list[int] = []
    recv_some = rx._recv_some

    def counted(batch: DatagramBatch) -> int:
        reads.append(recv_some(batch))
        return reads[-1]

    monkeypatch.setattr(rx, "_recv_some", counted)
    return reads


@pytest.mark.parametrize("offload", [True, False], ids=["segmented", "plain"])
async def test_at_rest_a_receive_waits_before_it_reads(
    offload: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a receive of one datagram that then found nothing (a ping), the next one waits
    for the socket before it reads — no read that finds nothing — and still takes at once a
    datagram that came in between; after several datagrams it reads first again."""
    async with (
        UDPTransport.bind("127.0.0.1:0", offload=offload) as rx,
        UDPTransport.bind("127.0.0.1:0", peer=None, offload=offload) as tx,
    ):
        reads = counted_reads(rx, monkeypatch)

        async def send(*data: bytes) -> None:
            out = tx.new_batch()
            for d in data:
                out.append(d, address=rx.local_address)
            await tx.send_batch(out)

        with anyio.fail_after(10):
            await send(b"one")
            assert (await rx.recv_batch()).to_list() == [b"one"]
            assert rx.at_rest
            await send(b"two")  # there before the call: the wait returns at once
            reads.clear()
            assert (await rx.recv_batch()).to_list() == [b"two"]
            assert reads == [1]
            async with anyio.create_task_group() as tg:

                async def later() -> None:
                    await anyio.sleep(0.05)
                    await send(b"three", b"four")

                tg.start_soon(later)
                reads.clear()
                got = await receive(rx, 2)
            assert got.to_list() == [b"three", b"four"] and reads[0] > 0
            assert not rx.at_rest  # two at once: not at rest, the next call reads first
            reads.clear()
            with anyio.move_on_after(0.05):
                await rx.recv_batch()
            assert reads[0] == 0


async def test_at_rest_waits_only_while_nothing_was_passed_over(
    anyio_backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A readiness report uvloop made while nobody waited, passed over (maybe its only
    report of an error on the socket), makes the next receive read first."""
    if anyio_backend_name == "trio" or "uvloop" not in type(asyncio.get_running_loop()).__module__:
        pytest.skip("selector loops report the fd on every turn, trio's waits start afresh")
    async with (
        UDPTransport.bind("127.0.0.1:0") as rx,
        UDPTransport.bind("127.0.0.1:0", peer=None) as tx,
    ):
        out = tx.new_batch()
        out.append(b"one", address=rx.local_address)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(rx.recv_batch)  # waits, and is woken by the datagram
                await anyio.wait_all_tasks_blocked()
                await tx.send_batch(out)
            assert rx.at_rest
            rx._reader._ready()  # the loop reports the socket right after the wake: passed over
            assert not rx.at_rest
            reads = counted_reads(rx, monkeypatch)
            await tx.send_batch(out)
            with anyio.move_on_after(0.05):  # (the datagram may not have arrived yet)
                await rx.recv_batch()
            assert reads, "the receive did not read before it waited"


@pytest.mark.skipif(not LINUX, reason="UDP_GRO is Linux's")
async def test_at_rest_after_a_lone_scattered_read() -> None:
    async with UDPTransport.bind("127.0.0.1:0") as rx, UDPTransport.bind("127.0.0.1:0") as tx:
        buf = bytearray(1 << 16)
        iov = [memoryview(buf)]

        async def read_all(count: int) -> None:
            got = 0
            while got < count:
                try:
                    n, seg, _ = rx.recv_scattered_nowait(iov)
                    got += -(-n // seg)
                except BlockingIOError:
                    await rx.wait_readable()
            with pytest.raises(BlockingIOError):
                rx.recv_scattered_nowait(iov)

        with anyio.fail_after(10):
            for count, rest in ((1, True), (3, False), (1, True)):
                out = tx.new_batch()
                for _ in range(count):
                    out.append(b"x" * 100, address=rx.local_address)
                await tx.send_batch(out)
                await anyio.sleep(0.05)  # all of them there: one read takes them
                await read_all(count)
                assert rx.at_rest is rest


@pytest.mark.skipif(not LINUX, reason="a connected socket's ICMP error as Linux reports it")
@pytest.mark.parametrize("by", ["batch", "scattered"])
async def test_a_receive_cancelled_after_an_error_woke_it_reads_first_next_time(
    anyio_backend_name: str, by: str
) -> None:
    """A receive at rest waits before it reads. When it is cancelled after the socket's ICMP
    error woke it but before it read (asyncio's own task.cancel(), which anyio's scopes never
    do there), that report went unread — on uvloop the last one, for the loop stops polling
    the socket — so the next receive must read first, not wait: it used to wait for good."""
    if anyio_backend_name == "trio":
        pytest.skip("an asyncio cancellation")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        where = probe.getsockname()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind(where)
        async with UDPTransport.bind("127.0.0.1:0", peer=where) as t:
            buf = bytearray(1 << 16)
            iov = [memoryview(buf)]

            async def receive() -> bytes:
                if by == "batch":
                    return b"".join((await t.recv_batch()).to_list())
                while True:
                    if t.at_rest:
                        await t.wait_readable()
                    try:
                        n, _, _ = t.recv_scattered_nowait(iov)
                    except BlockingIOError:
                        await t.wait_readable()
                    else:
                        return bytes(buf[:n])

            with anyio.fail_after(10):
                task = asyncio.ensure_future(receive())
                await anyio.wait_all_tasks_blocked()
                peer.sendto(b"one", t.local_address)
                assert await task == b"one"
                if by == "scattered":
                    with pytest.raises(BlockingIOError):
                        t.recv_scattered_nowait(iov)
                assert t.at_rest
                peer.close()
                task = asyncio.ensure_future(receive())
                await anyio.wait_all_tasks_blocked()  # waiting before it reads
                out = t.new_batch()
                out.append(b"into the void")
                await t.send_batch(out)  # comes back as an ICMP error: the socket reports it
                while t._reader._future is not None:  # woken (the loop polled it), not yet run
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert not t.statistics().drops  # the error was not read
                assert not t.at_rest
                peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                peer.bind(where)
                peer.sendto(b"two", t.local_address)
                assert await receive() == b"two"
    finally:
        peer.close()


class _FailingReads:
    """A socket whose reads raise ``errors`` first (then read the real one)."""

    def __init__(self, sock: socket.socket, errors: list[int]) -> None:
        self._sock = sock
        self._errors = errors

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)

    def recvfrom_into(self, *args: object) -> object:
        if self._errors:
            code = self._errors.pop(0)
            raise OSError(code, os.strerror(code))
        return self._sock.recvfrom_into(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("errors", "raised"),
    [
        ([errno.EACCES], False),  # a pending ICMPv6 "administratively prohibited": skipped
        ([errno.ECONNREFUSED, errno.EACCES, errno.ECONNREFUSED], False),
        ([errno.EACCES, errno.EACCES], True),  # read after read: no ICMP error (an LSM's)
        ([errno.EACCES] * 1000, True),
    ],
)
async def test_a_connected_read_skips_an_icmp_error_once_not_forever(
    errors: list[int], raised: bool
) -> None:
    async with UDPTransport.bind("127.0.0.1:0", peer="127.0.0.1:9", offload=False) as t:
        real = t._sock
        assert real is not None
        t._sock = _FailingReads(real, list(errors))  # type: ignore[assignment]
        batch = t.new_batch()
        try:
            if raised:
                with pytest.raises(PermissionError):
                    t._recv_some(batch)
            else:
                assert t._recv_some(batch) == 0  # nothing else there
                assert t.statistics().drops == {"refused": len(errors)}
        finally:
            t._sock = real


_LONE_CASES = {
    "delivered": (lambda rx: rx.local_address, {}),
    "no address": (lambda rx: None, {"no_address": 1}),
    "IPv6 on an IPv4 socket": (lambda rx: ("::1", 9), {"bad_address": 1}),
    "broadcast": (lambda rx: ("127.255.255.255", 9), {"refused": 1}),
}


@pytest.mark.skipif(not LINUX, reason="Linux's errno for a broadcast send")
@pytest.mark.parametrize("case", list(_LONE_CASES))
async def test_a_lone_datagram_is_sent_and_counted_as_in_a_batch(case: str) -> None:
    """A batch of one datagram is sent with one plain sendto, without working out groups; what
    it sends and counts is what the general path (send_batch_nowait) does with it."""
    where, drops = _LONE_CASES[case]
    async with (
        UDPTransport.bind("127.0.0.1:0", offload=False) as rx,
        UDPTransport.bind("127.0.0.1:0") as lone,
        UDPTransport.bind("127.0.0.1:0") as general,
    ):
        sent = []
        for tx in (lone, general):
            out = DatagramBatch()
            out.append(b"alone", address=where(rx))
            sent.append(await tx.send_batch(out) if tx is lone else tx.send_batch_nowait(out))
            s = tx.statistics()
            assert (s.drops, s.tx_datagrams, s.tx_batches) == (drops, sent[-1], 1)
        assert sent == [0 if drops else 1] * 2
        if not drops:
            assert (await receive(rx, 2)).to_list() == [b"alone"] * 2
        # a datagram over UDP's limit, and a closed transport, go the general way
        big = DatagramBatch(1 << 17)
        big.append(b"x" * 70_000, address=rx.local_address)
        assert await lone.send_batch(big) == 0
        assert lone.statistics().drops == {**drops, "too_large": 1}
    out = DatagramBatch()
    out.append(b"late", address=("127.0.0.1", 9))
    with pytest.raises(anyio.ClosedResourceError):
        await lone.send_batch(out)


@pytest.mark.skipif(not LINUX, reason="Linux's pending socket errors")
async def test_a_lone_datagram_after_an_icmp_error_is_sent() -> None:
    """The pending ICMP error of a connected socket comes back from a lone datagram's send as
    from a group's: counted once as unreachable, and the datagram is sent after all."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        where = probe.getsockname()
    async with UDPTransport.bind("127.0.0.1:0", peer=where) as tx:
        first = tx.new_batch()
        first.append(b"into the void")
        assert await tx.send_batch(first) == 1  # the port is closed: ICMP port unreachable
        await anyio.sleep(0.1)
        async with UDPTransport.bind(f"127.0.0.1:{where[1]}") as rx:  # the peer is back
            again = tx.new_batch()
            again.append(b"now it listens")
            assert await tx.send_batch(again) == 1
            assert (await receive(rx, 1)).to_list() == [b"now it listens"]
            assert tx.statistics().drops == {"unreachable": 1}


async def test_an_empty_batch_after_close_is_refused_as_any_batch() -> None:
    # it returned 0 (and was counted as a batch sent) where a batch of one raised — by
    # send_batch_nowait too
    t = UDPTransport.bind(("127.0.0.1", 0))
    assert await t.send_batch(DatagramBatch(64)) == 0
    assert t.send_batch_nowait(DatagramBatch(64)) == 0
    assert t.statistics().tx_batches == 0
    await t.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await t.send_batch(DatagramBatch(64))
    with pytest.raises(anyio.ClosedResourceError):
        t.send_batch_nowait(DatagramBatch(64))
