"""The device faces' limits, counts and return values, on socket pairs (and scripted queues)
standing in for a device."""

from __future__ import annotations

import errno
import io
import socket
import time

import anyio
import pytest

from tests.helpers import ipv6_udp
from tests.unit.offload_packets import IP4_A, IP4_B, udp4_packet
from tests.unit.test_device_offload import FullingQueue, device as offload_device, segments
from tunflow import (
    AsyncDevice,
    ClosedDeviceError,
    ConfigError,
    DeviceError,
    DeviceGoneError,
    Layer,
    LinkDownError,
    PacketBatch,
    PacketTooLargeError,
    SyncDevice,
)
from tunflow.device._core import SharedInterface
from tunflow.packet import HEADROOM
from tunflow.platform._base import OffloadInfo
from tunflow.platform._unix import FdQueue, PipeWaker


class _Interface:
    """An interface whose MTU is ``mtu`` (all a face asks of it here)."""

    def __init__(self, mtu: int) -> None:
        self._mtu = mtu

    def mtu(self) -> int:
        return self._mtu

    def set_mtu(self, mtu: int) -> None:
        self._mtu = mtu

    def close(self) -> None:
        pass


def _device(sock: socket.socket, layer: Layer = Layer.L3, mtu: int | None = None) -> SyncDevice:
    iface = _Interface(mtu) if mtu is not None else None
    shared = SharedInterface(iface, layer, False)  # type: ignore[arg-type]
    return SyncDevice(shared, FdQueue(sock.fileno(), close_fd=False))


@pytest.mark.parametrize("vectored", [False, True])
def test_a_tap_frame_of_exactly_the_frame_limit_is_sent_and_one_byte_more_refused(
    pair: tuple[socket.socket, socket.socket], vectored: bool
) -> None:
    # send: PacketTooLargeError for a frame *larger than* the device's frame limit (max_size:
    # the MTU, an Ethernet header and a VLAN tag); a frame of the limit itself goes out
    a, b = pair
    with _device(a, Layer.L2) as dev:
        assert dev.max_size == 1500 + 14 + 4

        def send(frame: bytes) -> int:
            if vectored:
                return dev.send_vectored([frame[:14], frame[14:]], timeout=1)
            return dev.send(frame, timeout=1)

        frame = bytes(range(256)) * 5 + bytes(dev.max_size - 1280)
        assert send(frame) == dev.max_size
        assert b.recv(65536) == frame
        with pytest.raises(PacketTooLargeError):
            send(frame + b"\0")
        assert dev.statistics().tx_packets == 1


def test_max_size_never_drops_below_the_ipv6_minimum_link_mtu(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # a read buffer of max_size takes any packet of up to 1280 bytes (IPv6's minimum link
    # MTU, RFC 8200 §5) whole, on a device whose MTU is lower
    a, b = pair
    with _device(b, mtu=1000) as dev:
        assert dev.max_size == 1280
        packet = ipv6_udp("fd00::2", "fd00::1", 1, 2, bytes(1280 - 48))
        a.send(packet)
        buf = bytearray(dev.max_size)
        assert dev.recv_into(buf, timeout=1) == 1280
        assert bytes(buf) == packet


def test_send_multiple_returns_the_bytes_given_past_the_offset(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # tun-rs's send_multiple returns the bytes written, not the number of buffers
    a, b = pair
    with _device(a) as dev:
        packets = [ipv6_udp("fd00::1", "fd00::2", 1, 2, bytes(n)) for n in (10, 200)]
        bufs = [bytes(12) + p for p in packets]
        assert dev.send_multiple(None, bufs, 12, timeout=1) == sum(map(len, packets))
        assert [b.recv(65536), b.recv(65536)] == packets


@pytest.mark.parametrize("af_header", [False, True])
def test_a_batch_with_room_for_exactly_max_size_bytes_loses_no_packet_of_max_size(
    pair: tuple[socket.socket, socket.socket], af_header: bool
) -> None:
    # Room for one packet of max_size and one more after it, less a byte: each read is offered
    # more than max_size (a read that fills the room offered was cut short), so the second
    # packet waits for the next batch, whole — it is not read into too little room, found
    # "cut" and dropped.
    a, b = pair
    header = b"\0\0\0\2" if af_header else b""
    shared = SharedInterface(None, Layer.L3, False)
    with SyncDevice(shared, FdQueue(b.fileno(), close_fd=False, af_header=af_header)) as dev:
        size = dev.max_size
        packets = [bytes([0x45, i]) + bytes(size - 2) for i in range(2)]
        for p in packets:
            a.send(header + p)
        got: list[bytes] = []
        for _ in range(2):
            batch = PacketBatch(capacity=2 * (HEADROOM + size), max_packets=8)
            got += dev.recv_batch(batch, timeout=1).to_list()
        assert got == packets
        assert dev.statistics().rx_truncated == 0


def test_a_batch_too_small_for_a_read_is_a_value_error_not_a_wait(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # recv_batch: ValueError when the batch has no room for another packet. A read needs
    # max_size + 1 bytes (to see a packet cut short); with one byte less and a packet waiting,
    # nothing can ever be read — the call must say so, not spin until its timeout.
    a, b = pair
    with _device(b) as dev:
        a.send(b"\x45" + bytes(99))
        batch = PacketBatch(capacity=HEADROOM + dev.max_size, max_packets=8)
        start = time.monotonic()
        with pytest.raises(ValueError, match="no room"):
            dev.recv_batch(batch, timeout=5)
        assert time.monotonic() - start < 4
        assert dev.recv(timeout=1) == b"\x45" + bytes(99)  # still there


class _LinkGoesDown:
    """A queue that takes ``up_for`` packets, then finds the link down (``EIO``) as Linux tun
    does: a batch write reports what it wrote, and the next write raises."""

    def __init__(self, up_for: int) -> None:
        self.offload = OffloadInfo()
        self.up_for = up_for
        self.written: list[bytes] = []

    def fileno(self) -> int:
        return -1

    def make_waker(self) -> PipeWaker:
        return PipeWaker()

    def send_batch(self, batch: PacketBatch, start: int = 0) -> int:
        i = start
        while i < len(batch) and len(self.written) < self.up_for:
            self.written.append(bytes(batch.packet(i)))
            i += 1
        if i == start:
            raise LinkDownError(errno.EIO, "write: the link is down")
        return i

    def close(self) -> None:
        pass


def test_a_link_going_down_mid_batch_drops_and_counts_only_what_was_left() -> None:
    # send_batch on a down link: "what is left of the batch is dropped and counted in
    # tx_dropped['link_down']" (docs/devices.md) — not the packets written before it went down
    queue = _LinkGoesDown(up_for=2)
    dev = SyncDevice(SharedInterface(None, Layer.L3, False), queue)
    packets = [bytes([0x45, i]) + bytes(98) for i in range(5)]
    batch = PacketBatch()
    batch.extend(packets)
    assert dev.send_batch(batch, timeout=1) == 5
    assert queue.written == packets[:2]
    stats = dev.statistics()
    assert stats.tx_dropped == {"link_down": 3}
    assert stats.tx_packets == 5  # (packets the caller gave)


class _FailsAfter:
    """``readinto`` of a file whose device goes away after ``reads`` reads (``ENODEV``)."""

    def __init__(self, file: io.FileIO, reads: int) -> None:
        self._file = file
        self.reads = reads

    def readinto(self, buf: memoryview) -> int | None:
        if not self.reads:
            raise OSError(errno.ENODEV, "No such device")
        self.reads -= 1
        return self._file.readinto(buf)

    def __getattr__(self, name: str) -> object:
        return getattr(self._file, name)


def test_a_batch_read_that_fails_part_way_hands_out_what_it_read_first(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # packets read before a read fails are the caller's: the batch holds them, and the error
    # comes with the next call
    a, b = pair
    q = FdQueue(b.fileno(), close_fd=False)
    q._file = _FailsAfter(q._file, reads=2)  # type: ignore[assignment]
    packets = [bytes([0x45, i]) + bytes(98) for i in range(3)]
    for p in packets:
        a.send(p)
    with SyncDevice(SharedInterface(None, Layer.L3, False), q) as dev:
        assert dev.recv_batch(timeout=1).to_list() == packets[:2]
        with pytest.raises(DeviceGoneError):
            dev.recv_batch(timeout=1)


@pytest.mark.anyio
async def test_a_failed_batch_write_counts_nothing_left_over_from_an_earlier_one(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # A send_batch that raises counts the packets it wrote itself (statistics(), as
    # SyncDevice.send_batch): none, when its first write fails — not those a cancelled batch
    # before it had written.
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    dev = AsyncDevice(SharedInterface(None, Layer.L3, False), FdQueue(a.fileno(), close_fd=False))
    batch = PacketBatch(capacity=1 << 20)
    for _ in range(100):
        batch.append(b"\x45" + bytes(999))  # more than the socket takes: the send waits
    with anyio.move_on_after(0.2):
        await dev.send_batch(batch)
    written = dev.statistics().tx_packets
    assert 0 < written < 100
    b.close()  # the next write fails at once
    with pytest.raises(DeviceError):
        await dev.send_batch(batch)
    assert dev.statistics().tx_packets == written
    await dev.aclose()


def test_a_raised_write_of_a_coalesced_batch_counts_nothing() -> None:
    # SyncDevice.send_batch: a write that raises counts what it wrote "where the batch went
    # to the queue as given; one that GRO coalesced ... counts nothing" (no count would be
    # exact: one super-packet written stands for several of the caller's packets)
    queue = FullingQueue(room=1)
    queue.refuse_gso = False
    dev = offload_device(queue)
    batch = PacketBatch()
    batch.extend(segments(6))  # one flow: coalesced into one super-packet
    batch.extend(udp4_packet((IP4_A[0], 1000 + k), IP4_B, 50) for k in range(2))
    with pytest.raises(TimeoutError):
        dev.send_batch(batch, timeout=0.05)
    assert len(queue.written) == 1  # the super-packet
    stats = dev.statistics()
    assert (stats.tx_packets, stats.tx_bytes, stats.tx_batches) == (0, 0, 0)


@pytest.mark.parametrize("mtu", [68, 65535])
def test_set_mtu_takes_both_ends_of_68_to_65535(
    pair: tuple[socket.socket, socket.socket], mtu: int
) -> None:
    a, _ = pair
    with _device(a, mtu=1500) as dev:
        dev.set_mtu(mtu)
        assert dev.max_size == max(mtu, 1280)
        for bad in (67, 65536):
            with pytest.raises(ConfigError, match=r"68\.\.65535"):
                dev.set_mtu(bad)
        assert dev.max_size == max(mtu, 1280)


def test_a_lone_write_to_a_closed_queue_is_a_closed_device(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # FdQueue.send_lone raises as send_batch does: a closed queue is ClosedDeviceError
    a, _ = pair
    q = FdQueue(a.fileno(), close_fd=False)
    batch = PacketBatch()
    batch.append(b"\x45" + bytes(99))
    q.close()
    with pytest.raises(ClosedDeviceError):
        q.send_batch(batch)
    with pytest.raises(ClosedDeviceError):
        q.send_lone(batch)


def test_a_family_header_alone_is_no_packet_in_a_batch_read(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # with a 4-byte family header (macOS utun, the BSDs), a read of the header alone carries
    # no packet: a batch read skips it, and hands out no empty packet
    a, b = pair
    q = FdQueue(b.fileno(), close_fd=False, af_header=True)
    a.send(b"\0\0\0\2")
    a.send(b"\0\0\0\2" + b"\x45" + bytes(19))
    batch = PacketBatch()
    assert q.recv_batch(batch, 1500) == 1
    assert batch.to_list() == [b"\x45" + bytes(19)]
    q.close()
