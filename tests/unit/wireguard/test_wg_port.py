"""WireGuardPort without a device (loopback UDP, no root): super-packets read whole for native
peers are split for a WireGuard peer that joins later."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest
from wgpair import A_IP, ip4

from tests.unit.offload_packets import IP4_A, IP4_B, pattern, tcp_super_packet as make_super_packet
from tunflow.offload import GROTable
from tunflow.packet import PacketBatch
from tunflow.transport import DatagramBatch, UDPTransport
from tunflow.wireguard import PeerConfig, PrivateKey, WireGuard, WireGuardPort
from tunflow.wireguard.runtime import _split_whole

pytestmark = pytest.mark.anyio


def tcp_super_packet(dst: str, segments: int) -> PacketBatch:
    """One TSO super-packet (virtio-net header in the headroom) made by coalescing segments."""
    import socket
    import struct

    from tunflow.packet import checksum, pseudo_header_checksum_no_fold

    src_b, dst_b = socket.inet_aton(A_IP), socket.inet_aton(dst)
    plain = PacketBatch(1 << 20)
    for i in range(segments):
        seg = bytearray(struct.pack("!HHIIBBHHH", 1, 2, 1 + 1000 * i, 1, 0x50, 0x10, 1000, 0, 0))
        seg += bytes([i]) * 1000
        cs = ~checksum(seg, pseudo_header_checksum_no_fold(6, src_b, dst_b, len(seg))) & 0xFFFF
        seg[16:18] = struct.pack("!H", cs)
        plain.append(bytes(ip4(A_IP, dst, bytes(seg), proto=6)))
    out = PacketBatch(1 << 20)
    GROTable().coalesce(plain, out)
    assert len(out) == 1 and out.vnet_hdr
    return out


async def test_a_wireguard_peer_joining_native_ones_gets_mtu_packets() -> None:
    async with UDPTransport.bind("127.0.0.1:0") as mine, UDPTransport.bind("127.0.0.1:0") as far:
        native_key, wg_key = PrivateKey.generate(), PrivateKey.generate()
        wg = WireGuard(PrivateKey.generate())
        wg.add_peer(
            PeerConfig(native_key.public_key(), allowed_ips="10.1.0.0/16", native_mode=True)
        )
        port = WireGuardPort(wg, mine, whole=True, device_offload=True, mtu=1420, clock=lambda: 0.0)
        assert port.offload.vnet_hdr
        # a WireGuard peer joins (wg set) with an endpoint and a session of its own
        wg.add_peer(
            PeerConfig(wg_key.public_key(), endpoint=far.local_address, allowed_ips="10.0.0.2/32")
        )
        other = WireGuard(wg_key)
        other.add_peer(PeerConfig(wg.public_key, allowed_ips=f"{A_IP}/32"))
        port.peers_changed()
        wg.send_packet(ip4(A_IP, "10.0.0.2"), 0.0)  # staged; the initiation is queued
        for d, _ in wg.datagrams_to_send():
            other.receive_datagram(d, mine.local_address, 0.0)
        for d, _ in other.datagrams_to_send():
            wg.receive_datagram(d, far.local_address, 0.0)
        wg.datagrams_to_send()
        await port.send_batch(tcp_super_packet("10.0.0.2", 8))
        got = DatagramBatch(1 << 20)
        with anyio.fail_after(5):
            while len(got) < 8:
                await far.recv_batch(got)
        assert all(n <= 1420 + 32 for n in got.lengths)
        packets = [p for d, a in got.to_pairs() for p in other.receive_datagram(d, a, 0.0)]
        assert len(packets) == 8 and all(len(p) == 1040 for p in packets)


@contextlib.asynccontextmanager
async def native_port(
    sender_mtu: int = 1420,
) -> AsyncIterator[tuple[WireGuardPort, WireGuard, UDPTransport]]:
    """A native-mode WireGuardPort on loopback with a handshake done, the sans-I/O peer that
    sends to it, and the socket that peer sends from (the first packet already received)."""
    async with UDPTransport.bind("127.0.0.1:0") as mine, UDPTransport.bind("127.0.0.1:0") as far:
        if not (mine.gro and far.gso):
            pytest.skip("no UDP_GRO/UDP_SEGMENT on loopback")
        key_a, key_b = PrivateKey.generate(), PrivateKey.generate()
        wg = WireGuard(key_a)
        wg.add_peer(PeerConfig(key_b.public_key(), allowed_ips=f"{A_IP}/32", native_mode=True))
        port = WireGuardPort(wg, mine, whole=True, device_offload=True, mtu=1420, clock=lambda: 0.0)
        sender = WireGuard(key_b, mtu=sender_mtu)
        sender.add_peer(
            PeerConfig(
                key_a.public_key(),
                endpoint=mine.local_address,
                allowed_ips="10.0.0.0/8",
                native_mode=True,
            )
        )
        sender.send_packet(ip4(A_IP, "10.0.0.2"), 0.0)  # staged; the initiation is queued
        for d, _ in sender.datagrams_to_send():
            wg.receive_datagram(d, far.local_address, 0.0)
        for d, _ in wg.datagrams_to_send():
            sender.receive_datagram(d, mine.local_address, 0.0)
        staged = DatagramBatch(1 << 16)
        for d, a in sender.datagrams_to_send():
            staged.append(d, address=a)
        await far.send_batch(staged)  # the staged packet: a small message
        batch = port.new_batch()
        with anyio.fail_after(10):
            await port.recv_batch(batch, True)
        assert [len(p) for p in batch] == [len(ip4(A_IP, "10.0.0.2"))]
        yield port, sender, far


async def send_one(sender: WireGuard, far: UDPTransport, packets: PacketBatch) -> None:
    out = DatagramBatch(1 << 20)
    assert sender.encrypt_batch(packets, 0.0, out) == len(packets)
    await far.send_batch(out)


def small_packet(i: int, size: int | None = None) -> PacketBatch:
    small = PacketBatch(1 << 16)
    small.append(ip4(A_IP, f"10.0.0.{2 + i % 200}", bytes([i % 256]) * ((size or 50 + i) - 20)))
    small.zero_headers()
    return small


async def test_native_reads_switch_lists_and_lose_nothing() -> None:
    # Reads use the long scatter list after a message of many whole fragments, and the
    # short one once a few small messages (pings, ACKs) came in a row (one or two between
    # big ones — a transfer each way — keep the long list); the first big message after
    # small ones lands in the short list's tail and is put back together. Every kind, in
    # every order.
    from tunflow.wireguard.runtime import _SHORT_AFTER

    async with native_port() as (port, sender, far):
        kinds = ["small", "big", "big", "small", "big", "small", "small", "big", "big"]
        kinds += ["small"] * _SHORT_AFTER + ["big", "small", "big"]
        got: list[bytes] = []
        expected: list[bytes] = []
        batch = port.new_batch()
        with anyio.fail_after(10):
            for i, kind in enumerate(kinds):
                packets = (
                    tcp_super_packet(f"10.0.0.{2 + i}", 40 + i % 5)
                    if kind == "big"
                    else small_packet(i)
                )
                await send_one(sender, far, packets)
                batch.clear()
                await port.recv_batch(batch, True)
                assert len(batch) == 1
                got.append(bytes(batch.with_header(0)))
                expected.append(bytes(packets.with_header(0)))
                since_big = [*kinds[: i + 1][::-1], "big"].index("big")
                long_list = "big" in kinds[: i + 1] and since_big < _SHORT_AFTER
                assert port._scatter is not None and port._scatter.bulk is long_list, (i, kind)
        assert got == expected
        assert port.wg.statistics().dropped_malformed == 0


async def test_native_datagrams_longer_than_our_fragments_are_opened() -> None:
    # A peer with a larger MTU cuts at a larger fragment size: its one-fragment messages
    # can be longer than our stride, and must not be opened from the scatter buffers as if
    # they had landed as one header and one chunk (they were dropped as bad AEAD before).
    async with native_port(sender_mtu=1500) as (port, sender, far):
        assert sender.native_fragment_size > port.wg.native_fragment_size
        batch = port.new_batch()
        for size in (100, 1400, 1430, 1470, 1486, 1400, 60):
            packets = small_packet(size, size)
            await send_one(sender, far, packets)
            batch.clear()
            with anyio.fail_after(5):
                await port.recv_batch(batch, True)
            assert [bytes(batch.with_header(i)) for i in range(len(batch))] == [
                bytes(packets.with_header(0))
            ]
        assert port.wg.statistics().dropped_bad_aead == 0


async def test_native_receive_under_a_steady_stream_lets_others_run_and_is_cancellable() -> None:
    # Datagrams always waiting: every call after one that did not have to wait starts with a
    # checkpoint, so other tasks run between batches and a cancelled scope stops the reader
    # before it reads anything.
    async with native_port() as (port, sender, far):
        sizes = [60 + i for i in range(40)]  # all different: no GRO, one read each
        for i, size in enumerate(sizes):
            await send_one(sender, far, small_packet(i, size))
        await anyio.sleep(0.05)
        batch = port.new_batch()
        ticks: list[int] = []

        async def other() -> None:
            while True:
                ticks.append(1)
                await anyio.lowlevel.checkpoint()

        got = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
            await anyio.lowlevel.checkpoint()
            before = len(ticks)
            with anyio.fail_after(5):
                for _ in range(3):  # 16 reads a call at most: the data outlasts them
                    batch.clear()
                    await port.recv_batch(batch, True)
                    got += len(batch)
            assert len(ticks) > before, "the receiver never let another task run"
            with anyio.CancelScope() as scope:
                scope.cancel()
                await port.recv_batch(batch, True)
            assert scope.cancelled_caught
            tg.cancel_scope.cancel()
        rest = 0
        with anyio.fail_after(5):
            while got + rest < len(sizes):
                batch.clear()
                await port.recv_batch(batch, True)
                rest += len(batch)
        assert got + rest == len(sizes)  # the cancelled call lost nothing


async def test_native_messages_completed_by_one_read_past_the_batchs_room_are_kept() -> None:
    # The last fragments of three 64 KiB messages, their other fragments stored from earlier
    # reads, arrive in one UDP_GRO read (one size): the read is put back together and opened
    # by decrypt_batch, each completion taking room for a whole super-packet. With room for
    # one left, the other two were dropped (decrypt_batch's consumed count was ignored) and
    # their complete fragments waited until pushed out.
    async with native_port() as (port, sender, far):
        messages = []
        for i in range(3):
            out = DatagramBatch(1 << 20)
            assert sender.encrypt_batch(tcp_super_packet(f"10.0.0.{2 + i}", 62), 0.0, out) == 1
            messages.append(out.to_pairs())
        assert all(len(m) == 44 and len(m[-1][0]) < len(m[0][0]) for m in messages)
        wire = DatagramBatch(1 << 20)
        for m in messages:
            for d, a in m[:-1]:
                wire.append(d, address=a)
        await far.send_batch(wire)
        wire.clear()
        for m in messages:
            wire.append(m[-1][0], address=m[-1][1])
        await far.send_batch(wire)  # one UDP_SEGMENT send: one read
        await anyio.sleep(0.1)
        batch = port.new_batch()
        assert port._scatter is not None
        # room for the reads' checks and one completed super-packet, not three
        filler = bytes(60000)
        while batch.room() > port._scatter.largest + 70000:
            batch.append(filler)
        start = len(batch)
        got: list[bytes] = []
        with anyio.move_on_after(3):
            while len(got) < 3:
                await port.recv_batch(batch, True)
                got += [bytes(batch.with_header(i)) for i in range(start, len(batch))]
                batch.clear()
                start = 0
        assert sorted(p[29] for p in got) == [2, 3, 4]  # the destinations' last bytes
        assert port.wg.statistics().dropped_incomplete == 0


def whole_read(*raw: bytes) -> PacketBatch:
    """A batch as an offload device's whole read leaves it: each packet's virtio-net header
    (``raw``'s first 10 bytes) in its headroom."""
    batch = PacketBatch(1 << 20)
    batch.vnet_hdr = True
    for r in raw:
        batch.append(r[10:], header=r[:10])
    return batch


def test_split_whole_takes_every_segment_of_a_super_packet_of_tiny_segments() -> None:
    # 10,000 two-byte segments: more than the split batch's 8192 slots. The rest of the
    # super-packet was lost without a trace, and the plain packet after it raised
    # PacketTooLargeError out of the split (and stopped the lane).
    plain = bytes(10) + ip4(A_IP, "10.0.0.2", b"x" * 30)
    batch = whole_read(make_super_packet(IP4_A, IP4_B, 20_000, 2), plain)
    out, malformed, lost = _split_whole(batch, 0, None)
    assert (len(out), malformed, lost) == (10_001, 0, 0)
    assert b"".join(p[40:] for p in out.to_list()[:-1]) == pattern(0, 20_000)
    assert out.to_list()[-1] == plain[10:]


async def test_what_a_split_for_a_plain_device_cannot_keep_is_counted() -> None:
    # Native super-packets decrypted for a device without offload are split into the batch
    # the engine passed in. Segments beyond its room, and super-packets that do not split,
    # were dropped without a count.
    async with UDPTransport.bind("127.0.0.1:0") as mine:
        wg = WireGuard(PrivateKey.generate())
        wg.add_peer(
            PeerConfig(
                PrivateKey.generate().public_key(), allowed_ips="10.0.0.0/8", native_mode=True
            )
        )
        port = WireGuardPort(wg, mine, whole=True, device_offload=False, mtu=1420)
        batch = port.new_batch()
        bad = bytearray(make_super_packet(IP4_A, IP4_B, 3000, 1000))
        bad[4:6] = bytes(2)  # gso_size 0
        raw = make_super_packet(IP4_A, IP4_B, 60_000, 1)
        batch.vnet_hdr = True
        for r in (bytes(bad), raw):
            batch.append(r[10:], header=r[:10])
        port._count_rx(batch, 0)
        assert 0 < len(batch) < 60_000 and not batch.vnet_hdr
        stats = wg.statistics()
        assert stats.dropped_malformed == 1
        assert stats.dropped_split_overflow == 60_000 - len(batch)
