"""The device faces' offload glue, through a scripted queue.

The kernel here accepts GSO writes and never hands over malformed super-packets, so the paths
for a kernel that refuses GSO writes (``EINVAL``, tailscale/tailscale#13041) and for splits that
run out of room are driven by a queue that behaves like such a kernel. Everything else about
offload runs on real devices in tests/linux/test_offload_forwarder.py.
"""

from __future__ import annotations

import errno
import time
from typing import Any

import pytest

from tests.unit.offload_packets import (
    ACK,
    IP4_A,
    IP4_B,
    IP6_A,
    IP6_B,
    partial_csum,
    tcp4_packet,
    tcp_super_packet,
    udp4_packet,
    udp_super_packet,
    vnet_hdr,
)
from tunflow import ClosedDeviceError, Layer, PacketBatch, SyncDevice
from tunflow.device._core import SharedInterface
from tunflow.offload import (
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_UDP_L4,
    GROTable,
    gso_split,
)
from tunflow.packet import HEADROOM
from tunflow.platform._base import OffloadInfo
from tunflow.platform._unix import PipeWaker

A = IP4_A
B = IP4_B


class ScriptedQueue:
    """A vnet-header queue: reads come from ``incoming``; GSO writes may be refused."""

    def __init__(
        self, *, refuse_gso: bool = False, uso: bool = False, refuse_types: Any = None
    ) -> None:
        self.offload = OffloadInfo(vnet_hdr=True, flags=7, tso=True, uso=uso)
        self.incoming: list[bytes] = []  # each: virtio header + packet
        self.written: list[bytes] = []  # each: virtio header + packet
        self.refuse_gso = refuse_gso
        #: GSO types refused when ``refuse_gso`` is off (``None``: none)
        self.refuse_types = set(refuse_types or ())

    def fileno(self) -> int:
        return -1

    def make_waker(self) -> PipeWaker:
        return PipeWaker()

    def wait(self, writable: bool, timeout: float | None, waker: Any) -> bool:
        return False

    def recv_batch(self, batch: PacketBatch, max_size: int) -> int:
        n = 0
        while self.incoming and batch.room() >= max_size and not batch.full:
            raw = self.incoming.pop(0)
            batch.append(raw[HEADROOM:], header=raw[:HEADROOM])
            n += 1
        batch.vnet_hdr = True
        return n

    def send_batch(self, batch: PacketBatch, start: int = 0) -> int:
        i = start
        while i < len(batch):
            frame = (
                bytes(batch.with_header(i))
                if batch.vnet_hdr
                else bytes(HEADROOM) + bytes(batch.packet(i))
            )
            if frame[1] != 0 and (self.refuse_gso or frame[1] in self.refuse_types):
                if i == start:
                    raise OSError(errno.EINVAL, "Invalid argument")
                return i
            self.written.append(frame)
            i += 1
        return i

    def send(self, packet: Any) -> int:
        self.written.append(bytes(HEADROOM) + bytes(packet))
        return len(packet)

    def close(self) -> None:
        pass


def device(queue: ScriptedQueue) -> SyncDevice:
    return SyncDevice(SharedInterface(None, Layer.L3, False), queue)


def segments(n: int, size: int = 100) -> list[bytes]:
    return [tcp4_packet(A, B, ACK, size, 1 + i * size) for i in range(n)]


def test_refused_gso_write_turns_gro_off_and_loses_nothing() -> None:
    queue = ScriptedQueue(refuse_gso=True)
    dev = device(queue)
    batch = PacketBatch()
    plain = segments(6)
    batch.extend(plain)
    dev.send_batch(batch)
    # the coalesced packet was refused, split again and written as the original segments
    # (the same TCP segments, checksums included; only the IPv4 IDs are renumbered by the split)
    assert [frame[HEADROOM + 20 :] for frame in queue.written] == [p[20:] for p in plain]
    assert [frame[HEADROOM : HEADROOM + 4] for frame in queue.written] == [p[:4] for p in plain]
    assert all(frame[:HEADROOM] == bytes(HEADROOM) for frame in queue.written)
    stats = dev.statistics()
    assert stats.gro_disabled == 1
    assert dev.gro is not None and not dev.gro.tcp
    # from now on nothing is coalesced, so nothing is refused
    queue.written.clear()
    dev.send_batch(batch)
    assert [frame[HEADROOM:] for frame in queue.written] == plain
    assert dev.statistics().gro_disabled == 1


def test_a_refused_tcp_write_leaves_udp_coalescing_on() -> None:
    # the kernel refuses TCP super-packets only: TCP coalescing goes off, UDP stays on (a real
    # device refusing a USO write, the other way round, is in tests/linux/test_device_sync.py)
    queue = ScriptedQueue(uso=True, refuse_types={VIRTIO_NET_HDR_GSO_TCPV4})
    dev = device(queue)
    assert dev.gro is not None and dev.gro.tcp
    tcp = PacketBatch()
    tcp.extend(segments(6))
    dev.send_batch(tcp)
    assert len(queue.written) == 6  # refused, written split
    stats = dev.statistics()
    assert (stats.gro_disabled, stats.gro_disabled_tcp, stats.gro_disabled_udp) == (1, 1, 0)
    assert not dev.gro.tcp and dev.gro.udp
    queue.written.clear()
    udp = PacketBatch()
    udp.extend(udp4_packet(A, B, 100, start=100 * k) for k in range(6))
    dev.send_batch(udp)
    assert len(queue.written) == 1 and queue.written[0][1] == VIRTIO_NET_HDR_GSO_UDP_L4
    # TCP is coalesced by no table from now on, the device's switched back on or a caller's
    queue.written.clear()
    dev.gro.tcp = True
    dev.send_batch(tcp)
    dev.send_multiple(GROTable(tcp=True), segments(6))
    assert len(queue.written) == 12 and all(frame[1] == 0 for frame in queue.written)
    assert dev.statistics().gro_disabled == 1


def test_gro_coalesces_a_plain_batch() -> None:
    queue = ScriptedQueue()
    dev = device(queue)
    batch = PacketBatch()
    batch.extend(segments(6))
    assert dev.send_batch(batch) == 6
    assert len(queue.written) == 1
    assert queue.written[0][1] == 1  # GSO TCPV4
    stats = dev.statistics()
    assert stats.tx_coalesced == 5 and stats.tx_super_packets == 1 and stats.tx_packets == 6


def test_split_that_runs_out_of_room_keeps_the_rest() -> None:
    queue = ScriptedQueue()
    dev = device(queue)
    super_packet = tcp_super_packet(A, B, 10 * 1000, 1000)
    queue.incoming.append(super_packet)
    small = PacketBatch(capacity=64 * 1024, max_packets=4)
    got: list[bytes] = []
    for _ in range(3):
        small.clear()
        dev.recv_batch(small, timeout=0)
        got += small.to_list()
    assert len(got) == 10  # 4 + 4 + 2: nothing lost across calls
    seqs = [int.from_bytes(p[24:28], "big") for p in got]
    assert seqs == [1 + 1000 * i for i in range(10)]
    assert dev.statistics().rx_super_packets == 1


def test_recv_one_packet_at_a_time_from_a_super_packet() -> None:
    queue = ScriptedQueue()
    dev = device(queue)
    queue.incoming.append(tcp_super_packet(A, B, 3 * 500, 500))
    first = dev.recv(timeout=0)
    rest = [dev.recv(timeout=0), dev.recv(timeout=0)]
    assert [len(p) for p in [first, *rest]] == [540, 540, 540]
    with pytest.raises(TimeoutError):
        dev.recv(timeout=0)


def test_whole_reads_keep_headers() -> None:
    queue = ScriptedQueue()
    dev = device(queue)
    raw = tcp_super_packet(A, B, 4 * 500, 500)
    queue.incoming.append(raw)
    batch = dev.recv_batch(whole=True, timeout=0)
    assert batch.vnet_hdr
    assert bytes(batch.with_header(0)) == raw
    # and whole batches are written with their headers, untouched
    dev.send_batch(batch)
    assert queue.written == [raw]
    assert dev.statistics().tx_super_packets == 1


def test_recv_multiple_needs_big_enough_buffers() -> None:
    dev = device(ScriptedQueue())
    with pytest.raises(ValueError, match="each buffer needs"):
        dev.recv_multiple([bytearray(100)], [0], 0)
    with pytest.raises(ValueError, match="sizes"):
        dev.recv_multiple([bytearray(2000)], [0, 0], 0)


def _whole(*raws: bytes, capacity: int = 256 * 1024) -> PacketBatch:
    """A batch of ``raws`` (virtio-net header, then the packet) as a caller hands them whole."""
    batch = PacketBatch(capacity=capacity)
    batch.vnet_hdr = True
    for raw in raws:
        batch.append(raw[HEADROOM:], header=raw[:HEADROOM])
    return batch


def test_a_refused_one_segment_gso_packet_leaves_gro_on() -> None:
    # a caller's GSO packet of one segment (segment size above its payload), refused: it is
    # written as its one plain segment, and GRO — which never makes such a packet — stays on
    queue = ScriptedQueue(refuse_gso=True)
    dev = device(queue)
    batch = _whole(tcp_super_packet(A, B, 1000, 60000))
    assert dev.send_batch(batch) == 1
    assert len(queue.written) == 1 and queue.written[0][1] == 0
    assert (dev.statistics().tx_gso_refused, dev.statistics().gro_disabled) == (1, 0)
    assert dev.gro is not None and dev.gro.tcp


def test_a_refused_super_packet_passed_through_whole_leaves_gro_on() -> None:
    # a caller's super-packet (a peer's, carried whole by a pipeline) the kernel refuses: it is
    # written split and counted, and GRO — which did not make it — stays on for the device; a
    # super-packet GRO makes and the kernel refuses still turns it off
    queue = ScriptedQueue(refuse_gso=True)
    dev = device(queue)
    raw = tcp_super_packet(A, B, 3000, 1000)
    batch = _whole(raw)
    assert dev.send_batch(batch) == 1
    assert len(queue.written) == 3 and all(frame[1] == 0 for frame in queue.written)
    stats = dev.statistics()
    assert (stats.tx_gso_refused, stats.gro_disabled, stats.gro_disabled_tcp) == (1, 0, 0)
    assert (stats.tx_packets, stats.tx_bytes, stats.tx_dropped) == (1, len(raw) - HEADROOM, {})
    assert dev.gro is not None and dev.gro.tcp
    plain = PacketBatch()
    plain.extend(segments(6))
    dev.send_batch(plain)  # coalesced, refused: now GRO goes off
    stats = dev.statistics()
    assert (stats.tx_gso_refused, stats.gro_disabled, stats.gro_disabled_tcp) == (2, 1, 1)
    assert not dev.gro.tcp


def test_a_refused_super_packet_of_too_many_segments_is_dropped_not_split() -> None:
    # A caller's USO super-packet of one-byte segments (a peer's, carried whole), refused by
    # the kernel (more than UDP_MAX_SEGMENTS): it was split into 60,000 packets written one by
    # one, ~0.2 s of CPU each. Beyond MAX_REFUSED_SEGMENTS it is dropped and counted; one of
    # as many segments is still written split.
    from tunflow.device._offload import MAX_REFUSED_SEGMENTS

    queue = ScriptedQueue(refuse_types={VIRTIO_NET_HDR_GSO_UDP_L4}, uso=True)
    dev = device(queue)
    sizes = (60_000, MAX_REFUSED_SEGMENTS + 1, MAX_REFUSED_SEGMENTS)
    batch = _whole(*(udp_super_packet(A, B, n, 1) for n in sizes), capacity=1 << 18)
    assert dev.send_batch(batch) == 3
    assert len(queue.written) == MAX_REFUSED_SEGMENTS
    stats = dev.statistics()
    assert (stats.tx_gso_refused, stats.tx_dropped) == (1, {"kernel_refused_packet": 2})


@pytest.mark.parametrize("uso", [True, False])
def test_a_callers_default_table_coalesces_udp_as_the_device_allows(uso: bool) -> None:
    # tun-rs decides UDP GRO in send_multiple from the device: GROTable() (udp=None) does the
    # same, so a port of `send_multiple(&mut GROTable::default(), …)` keeps UDP coalescing
    queue = ScriptedQueue(uso=uso)
    dev = device(queue)
    datagrams = [udp4_packet(A, B, 100, start=100 * k) for k in range(6)]
    dev.send_multiple(GROTable(), datagrams)
    if uso:
        assert len(queue.written) == 1 and queue.written[0][1] == VIRTIO_NET_HDR_GSO_UDP_L4
    else:
        assert len(queue.written) == 6 and all(frame[1] == 0 for frame in queue.written)
    # an explicit udp=False is kept
    queue.written.clear()
    dev.send_multiple(GROTable(udp=False), datagrams)
    assert len(queue.written) == 6


def test_the_rest_of_a_split_counts_as_readable() -> None:
    # the kernel queue is empty (ScriptedQueue.wait: nothing), but two segments of the
    # super-packet already read wait in the device: a reader told "not readable" would stall
    queue = ScriptedQueue()
    dev = device(queue)
    queue.incoming.append(tcp_super_packet(A, B, 3 * 500, 500))
    assert not dev.wait_readable(timeout=0)  # nothing read from the kernel yet
    dev.recv(timeout=0)
    assert dev.wait_readable(timeout=0)
    dev.recv(timeout=0)
    assert dev.wait_readable(timeout=0)
    dev.recv(timeout=0)
    assert not dev.wait_readable(timeout=0)
    dev.shutdown()
    with pytest.raises(ClosedDeviceError):
        dev.wait_readable(timeout=0)


class FullingQueue(ScriptedQueue):
    """Refuses GSO writes, and is full (``EAGAIN``) after ``room`` frames until given more."""

    def __init__(self, room: int) -> None:
        super().__init__(refuse_gso=True)
        self.room = room

    def wait(self, writable: bool, timeout: float | None, waker: Any) -> bool:
        time.sleep(0.005)  # (nothing to wait for: the test gives room by hand)
        return False

    def send_batch(self, batch: PacketBatch, start: int = 0) -> int:
        if self.room <= 0:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        before = len(self.written)
        end = super().send_batch(batch, start)  # (EINVAL for a GSO frame at start)
        end = min(end, start + self.room)
        del self.written[before + end - start :]
        self.room -= end - start
        return end


def _udp_batch(n: int) -> PacketBatch:
    batch = PacketBatch()
    batch.extend(udp4_packet(A, B, 50 + k, start=0) for k in range(n))
    return batch


def test_a_timed_out_split_write_does_not_eat_the_next_batch() -> None:
    # The refused super-packet's segments were kept pending after the timeout; the next batch
    # then finished them and skipped its own first packet (not written, not counted).
    queue = FullingQueue(room=2)
    dev = device(queue)
    first = PacketBatch()
    first.extend(segments(6))
    with pytest.raises(TimeoutError):
        dev.send_batch(first, timeout=0.05)
    assert len(queue.written) == 2  # two of the refused super-packet's six segments
    queue.written.clear()
    queue.room = 100
    second = _udp_batch(3)
    dev.send_batch(second)
    assert [frame[HEADROOM:] for frame in queue.written] == second.to_list()


def test_a_cancelled_split_write_does_not_eat_the_next_batch() -> None:
    import anyio

    from tunflow import AsyncDevice

    queue = FullingQueue(room=2)
    dev = AsyncDevice(SharedInterface(None, Layer.L3, False), queue)
    second = _udp_batch(3)

    async def main() -> None:
        first = PacketBatch()
        first.extend(segments(6))
        with anyio.move_on_after(0.1):
            await dev.send_batch(first)
        assert len(queue.written) == 2
        queue.written.clear()
        queue.room = 100
        await dev.send_batch(second)

    anyio.run(main)
    assert [frame[HEADROOM:] for frame in queue.written] == second.to_list()


class PlainFullingQueue(FullingQueue):
    """A queue without offload, full (``EAGAIN``) after ``room`` packets."""

    def __init__(self, room: int) -> None:
        super().__init__(room)
        self.offload = OffloadInfo()


def test_a_raised_batch_write_counts_the_packets_it_wrote() -> None:
    # A write that timed out (or was cancelled, or shut down) half-way counted nothing in
    # tx_packets/tx_bytes, though it had written the packets before that point.
    import anyio

    from tunflow import AsyncDevice

    queue = PlainFullingQueue(room=3)
    dev = device(queue)
    batch = _udp_batch(5)
    with pytest.raises(TimeoutError):
        dev.send_batch(batch, timeout=0.05)
    assert len(queue.written) == 3
    stats = dev.statistics()
    assert (stats.tx_packets, stats.tx_bytes, stats.tx_batches) == (3, sum(batch.lengths[:3]), 1)
    queue.room = 0
    with pytest.raises(TimeoutError):
        dev.send_batch(batch, timeout=0.02)  # nothing written: no batch counted
    assert dev.statistics().tx_batches == 1

    queue = PlainFullingQueue(room=2)
    adev = AsyncDevice(SharedInterface(None, Layer.L3, False), queue)

    async def main() -> None:
        with anyio.move_on_after(0.1):
            await adev.send_batch(batch)
        queue.room = 100
        await adev.send_batch(batch)

    anyio.run(main)
    assert len(queue.written) == 2 + 5
    stats = adev.statistics()
    assert (stats.tx_packets, stats.tx_bytes) == (7, sum(batch.lengths[:2]) + batch.nbytes)
    assert stats.tx_batches == 2


def test_a_raised_send_multiple_counts_the_packets_it_wrote_as_send_batch_does() -> None:
    # send_multiple counted nothing in statistics() when it raised half-way (timed out,
    # cancelled), though send_batch counts what it wrote.
    import anyio

    from tunflow import AsyncDevice

    bufs = _udp_batch(5).to_list()
    queue = PlainFullingQueue(room=3)
    dev = device(queue)
    with pytest.raises(TimeoutError):
        dev.send_multiple(None, bufs, timeout=0.05)
    assert len(queue.written) == 3
    stats = dev.statistics()
    assert (stats.tx_packets, stats.tx_bytes, stats.tx_batches) == (3, sum(map(len, bufs[:3])), 1)

    queue = PlainFullingQueue(room=2)
    adev = AsyncDevice(SharedInterface(None, Layer.L3, False), queue)

    async def main() -> None:
        with anyio.move_on_after(0.1):
            await adev.send_multiple(None, bufs)
        queue.room = 100
        await adev.send_multiple(None, bufs)

    anyio.run(main)
    assert len(queue.written) == 2 + 5
    stats = adev.statistics()
    assert (stats.tx_packets, stats.tx_bytes, stats.tx_batches) == (
        7,
        sum(map(len, bufs[:2])) + sum(map(len, bufs)),
        2,
    )


def _dest_opts(size: int, next_header: int) -> bytes:
    """An IPv6 destination options header of ``size`` bytes (a multiple of 8, up to 2048)
    filled with padding options."""
    opts = b""
    left = size - 2
    while left:
        if left == 1:
            opts += b"\0"  # Pad1
            break
        n = min(left - 2, 255)
        opts += bytes([1, n]) + bytes(n)  # PadN
        left -= n + 2
    return bytes([next_header, size // 8 - 1]) + opts


@pytest.mark.parametrize(("ext", "payload", "gso"), [(320, 6000, 1000), (1024, 20000, 200)])
def test_a_refused_super_packet_with_long_headers_is_written_whole_split(
    ext: int, payload: int, gso: int
) -> None:
    # The split's room comes from the super-packet's own headers, which every segment repeats
    # (here IPv6 extension headers far longer than a TCP/IP header): none is lost.
    queue = ScriptedQueue(refuse_gso=True)
    dev = device(queue)
    raw = tcp_super_packet(
        IP6_A, IP6_B, payload, gso, v6=True, ext_headers=_dest_opts(ext, 6), ext_first=60
    )
    batch = _whole(raw, capacity=1 << 17)
    assert dev.send_batch(batch) == 1
    want = PacketBatch(capacity=1 << 20, max_packets=1024)
    assert gso_split(raw, want) == payload // gso
    assert [frame[HEADROOM:] for frame in queue.written] == want.to_list()
    assert all(frame[:HEADROOM] == bytes(HEADROOM) for frame in queue.written)
    assert dev.statistics().tx_dropped == {}
    assert (dev.statistics().tx_gso_refused, dev.statistics().gro_disabled) == (1, 0)


def _plain_needs_csum() -> tuple[bytes, bytes]:
    """A plain TCP packet as the kernel hands one over with checksum offload: a zero GSO type
    behind ``NEEDS_CSUM``, its checksum field the pseudo-header sum; and the packet whole."""
    whole = tcp4_packet(A, B, ACK, 100, 1)
    header = vnet_hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, 0, 0, 20, 16)
    return header + partial_csum(whole, 20), whole


def test_a_plain_packet_with_a_partial_checksum_is_completed_and_no_super_packet() -> None:
    # split reads hand out complete checksums, and rx_super_packets counts GSO types, not
    # the NEEDS_CSUM flag the kernel sets on plain packets too
    queue = ScriptedQueue()
    dev = device(queue)
    raw, whole = _plain_needs_csum()
    queue.incoming.append(raw)
    assert dev.recv(timeout=0) == whole
    queue.incoming.append(raw)
    assert bytes(dev.recv_batch(whole=True, timeout=0).with_header(0)) == raw
    assert dev.statistics().rx_super_packets == 0


def test_split_reads_resume_each_super_packet_at_its_own_first_segment() -> None:
    # a super-packet split across calls, then the next one: it starts at its segment 0
    queue = ScriptedQueue()
    dev = device(queue)
    queue.incoming += [tcp_super_packet(A, B, 10 * 1000, 1000, seq=1 + 10_000 * k) for k in (0, 1)]
    small = PacketBatch(capacity=64 * 1024, max_packets=4)
    got: list[bytes] = []
    for _ in range(5):
        small.clear()
        dev.recv_batch(small, timeout=0)
        got += small.to_list()
    assert [int.from_bytes(p[24:28], "big") for p in got] == [1 + 1000 * i for i in range(20)]
    assert dev.statistics().rx_super_packets == 2


def test_a_super_packet_the_split_cannot_follow_is_dropped_and_counted() -> None:
    queue = ScriptedQueue()
    dev = device(queue)
    bad = bytearray(tcp_super_packet(A, B, 3000, 1000))
    bad[4:6] = b"\0\0"  # gso_size 0
    good = tcp4_packet(A, B, ACK, 100, 1)
    queue.incoming += [bytes(bad), bytes(HEADROOM) + good]
    assert dev.recv_batch(timeout=0).to_list() == [good]
    assert dev.statistics().rx_malformed == 1


def test_reads_fill_a_batch_or_buffer_to_the_last_byte() -> None:
    # a packet exactly as large as the room left (in a batch, a buffer, buffers) is handed out
    queue = ScriptedQueue()
    dev = device(queue)
    plain = tcp4_packet(A, B, ACK, 100, 1)
    queue.incoming.append(bytes(HEADROOM) + plain)
    exact = PacketBatch(capacity=HEADROOM + len(plain), max_packets=1)
    assert dev.recv_batch(exact, timeout=0).to_list() == [plain]
    # (max_size is 1500: segments of 1460 bytes of TCP payload are as large)
    queue.incoming.append(tcp_super_packet(A, B, 4 * 1460, 1460))
    assert dev.max_size == 1500
    assert len(dev.recv(timeout=0)) == 1500  # three segments left, read already
    assert dev.recv_into(bytearray(1500), timeout=0) == 1500
    assert dev.recv_vectored([bytearray(700), bytearray(800)], timeout=0) == 1500
    exact = PacketBatch(capacity=HEADROOM + 1500, max_packets=1)
    assert len(dev.recv_batch(exact, timeout=0).to_list()[0]) == 1500
    assert not dev.wait_readable(timeout=0)


def test_whole_reads_hand_out_what_a_split_read_left_first() -> None:
    # "leftovers of a split go first": the rest of a super-packet split for recv(), and for a
    # split read that ran out of room, come (split) before anything read later
    queue = ScriptedQueue()
    dev = device(queue)
    queue.incoming.append(tcp_super_packet(A, B, 3 * 500, 500))
    first = dev.recv(timeout=0)
    rest = dev.recv_batch(whole=True, timeout=0).to_list()
    assert [int.from_bytes(p[24:28], "big") for p in [first, *rest]] == [1, 501, 1001]
    later = tcp_super_packet(A, B, 2 * 500, 500, seq=5001)
    queue.incoming.append(later)
    assert bytes(dev.recv_batch(whole=True, timeout=0).with_header(0)) == later
    queue.incoming.append(tcp_super_packet(A, B, 10 * 1000, 1000))
    small = PacketBatch(capacity=64 * 1024, max_packets=4)
    assert len(dev.recv_batch(small, timeout=0)) == 4
    rest = dev.recv_batch(PacketBatch(max_packets=16), whole=True, timeout=0).to_list()
    assert [int.from_bytes(p[24:28], "big") for p in rest] == [1 + 1000 * i for i in range(4, 10)]


def test_whole_reads_appended_to_a_batch_count_only_the_new_super_packets() -> None:
    queue = ScriptedQueue()
    dev = device(queue)
    batch = PacketBatch()
    for k in range(3):
        queue.incoming.append(tcp_super_packet(A, B, 3 * 500, 500, seq=1 + 1500 * k))
        dev.recv_batch(batch, whole=True, timeout=0)
    assert len(batch) == 3
    assert dev.statistics().rx_super_packets == 3


def test_a_device_without_uso_leaves_udp_uncoalesced() -> None:
    queue = ScriptedQueue(uso=False)
    dev = device(queue)
    assert dev.gro is not None and not dev.gro.udp
    dev.send_batch(_udp_batch(6))
    assert len(queue.written) == 6 and all(frame[1] == 0 for frame in queue.written)


def test_a_refused_udp_write_leaves_udp_uncoalesced_whatever_the_callers_table_says() -> None:
    queue = ScriptedQueue(uso=True, refuse_types={VIRTIO_NET_HDR_GSO_UDP_L4})
    dev = device(queue)
    datagrams = [udp4_packet(A, B, 100, start=100 * k) for k in range(6)]
    dev.send_multiple(None, datagrams)
    assert len(queue.written) == 6  # refused, written split
    assert dev.statistics().gro_disabled_udp == 1
    queue.written.clear()
    dev.send_multiple(GROTable(udp=True), datagrams)
    assert len(queue.written) == 6 and all(frame[1] == 0 for frame in queue.written)
    assert dev.statistics().tx_gso_refused == 1  # (not coalesced, so not refused again)


def test_a_refused_protocol_leaves_the_callers_table_as_it_was() -> None:
    # the table may serve other devices, whose kernels take GSO writes
    queue = ScriptedQueue(refuse_gso=True)
    dev = device(queue)
    dev.send_multiple(None, segments(6))
    assert dev.gro is not None and not dev.gro.tcp
    table = GROTable(tcp=True, udp=True)
    queue.written.clear()
    dev.send_multiple(table, segments(6))
    assert len(queue.written) == 6
    assert table.tcp and table.udp


def test_a_batch_of_more_packets_than_a_default_batch_holds_is_coalesced_whole() -> None:
    queue = ScriptedQueue()
    dev = device(queue)
    flows = [tcp4_packet(A, (B[0], 1000 + k), ACK, 100, 1) for k in range(300)]
    batch = PacketBatch(max_packets=len(flows))
    batch.extend(flows)
    assert dev.send_batch(batch) == len(flows)
    assert [frame[HEADROOM:] for frame in queue.written] == flows


def test_a_refused_super_packet_coalesced_here_is_split_whatever_its_segments() -> None:
    # MAX_REFUSED_SEGMENTS bounds a caller's super-packets only: one GRO made holds no more
    # segments than the packets it was made of, all of which the caller meant to write
    from tunflow.device._offload import MAX_REFUSED_SEGMENTS

    queue = ScriptedQueue(refuse_gso=True)
    dev = device(queue)
    count = MAX_REFUSED_SEGMENTS + 4
    batch = PacketBatch(capacity=1 << 19, max_packets=count)
    batch.extend(segments(count, size=1))
    assert dev.send_batch(batch) == count
    assert len(queue.written) == count
    stats = dev.statistics()
    assert (stats.tx_gso_refused, stats.gro_disabled, stats.tx_dropped) == (1, 1, {})


class PlainQueue(ScriptedQueue):
    """A queue without offload."""

    def __init__(self) -> None:
        super().__init__()
        self.offload = OffloadInfo()


@pytest.mark.parametrize("packet_information", [False, True])
def test_headed_packets_a_queue_without_offload_cannot_take_are_each_counted(
    packet_information: bool,
) -> None:
    # A batch with headers written to a device without offload: a header no split can follow
    # (a plain TUN splits the others), or any header (a packet-information or TAP queue), is
    # that packet's loss, counted — also when it is every packet of the batch.
    queue = PlainQueue()
    dev = SyncDevice(SharedInterface(None, Layer.L3, packet_information), queue)
    uso = udp_super_packet(A, B, 4 * 100, 100)
    bad = bytearray(uso[:HEADROOM])
    bad[4:6] = b"\0\0"  # gso_size 0
    plain = udp4_packet(A, B, 50)
    batch = PacketBatch()
    batch.vnet_hdr = True
    batch.append(uso[HEADROOM:], header=bytes(bad))
    batch.append(plain)
    batch.append(uso[HEADROOM:], header=bytes(bad))
    assert dev.send_batch(batch) == 3
    assert [frame[HEADROOM:] for frame in queue.written] == [plain]
    assert dev.statistics().tx_dropped == {"kernel_refused_packet": 2}
    batch.clear()
    batch.vnet_hdr = True
    batch.append(uso[HEADROOM:], header=bytes(bad))
    assert dev.send_batch(batch) == 1
    assert len(queue.written) == 1
    assert dev.statistics().tx_dropped == {"kernel_refused_packet": 3}
