"""The macOS TAP queue (feth: frames read from BPF, written through ``AF_NDRV``) held to what an
fd-backed device does, through the fake system-call layer."""

from __future__ import annotations

import errno
import struct
from typing import Any

import pytest

from tunflow import ClosedDeviceError, DeviceBuilder, DeviceGoneError, Layer, PacketBatch
from tunflow.packet import HEADROOM
from tunflow.platform import darwin
from tunflow.platform.fake import pretend_platform

from .test_darwin_edges_behaviour import frame, record


def test_a_frame_the_kernel_refuses_in_a_batch_is_skipped_and_counted() -> None:
    # SyncDevice.send_batch: a packet the kernel refuses (EMSGSIZE) is skipped and counted in
    # tx_dropped["kernel_refused_packet"], never raised, and the rest of the batch is written
    fake: Any
    with pretend_platform("darwin") as fake:
        dev = DeviceBuilder().layer(Layer.L2).ipv4("10.1.0.1", 24).mtu(1400).build_sync()
        try:
            ndrv = dev._queue._ndrv
            small, big, last = frame(100, b"a"), frame(1600, b"b"), frame(120, b"c")
            fake.fail("write", errno.EMSGSIZE, when=lambda c: len(c.args[1]) == 1600, times=None)
            batch = PacketBatch()
            batch.extend([small, big, last])
            assert dev.send_batch(batch, timeout=1) == 3
            assert fake.sent(ndrv) == [small, last]
            stats = dev.statistics()
            assert stats.tx_dropped == {"kernel_refused_packet": 1}
        finally:
            dev.close()


def test_a_batch_write_that_fails_half_way_counts_the_frames_it_wrote() -> None:
    # SyncDevice.send_batch: a write that raises has written the packets before that point,
    # and those are counted in statistics() (the queue reports its progress, as FdQueue does)
    fake: Any
    with pretend_platform("darwin") as fake:
        dev = DeviceBuilder().layer(Layer.L2).ipv4("10.1.0.1", 24).mtu(1400).build_sync()
        try:
            ndrv = dev._queue._ndrv
            first, second = frame(100, b"a"), frame(110, b"b")
            fake.fail("write", errno.ENXIO, when=lambda c: c.args[1] == second, times=None)
            batch = PacketBatch()
            batch.extend([first, second, frame(120, b"c")])
            with pytest.raises(DeviceGoneError):
                dev.send_batch(batch, timeout=1)
            assert fake.sent(ndrv) == [first]
            stats = dev.statistics()
            assert (stats.tx_packets, stats.tx_bytes) == (1, len(first))
        finally:
            dev.close()


def feth(fake: Any) -> tuple[Any, darwin.FethQueue]:
    """A feth TAP's interface and queue, opened on ``fake``."""
    config = DeviceBuilder().layer(Layer.L2).ipv4("10.1.0.1", 24).mtu(1400).config()
    iface, queue = darwin.open_device(config, syscalls=fake)
    assert isinstance(queue, darwin.FethQueue)
    return iface, queue


def test_bpf_records_without_a_frame_are_skipped() -> None:
    # net/bpf.h: a record is bpf_hdr, then bh_caplen bytes at bh_hdrlen; the last one need not
    # be padded, a record capturing nothing holds no frame, and a zero bh_hdrlen ends the read
    first, last = b"\x01" * 64, b"\x03" * 61
    empty = struct.pack("<8xIIH", 0, 0, 18) + b"\0" * 2
    raw = record(first) + empty + record(last)[: 18 + len(last)]
    assert darwin.parse_bpf_records(raw) == [first, last]
    junk = struct.pack("<8xIIH", 4, 4, 0) + b"\0" * 6
    assert darwin.parse_bpf_records(record(first) + junk) == [first]


def test_a_bpf_read_without_a_frame_is_nothing_waiting_not_a_crash(make_fake: Any) -> None:
    fake = make_fake("darwin")
    iface, queue = feth(fake)
    try:
        fake.inject(queue.fileno(), struct.pack("<8xIIH", 0, 0, 18) + b"\0" * 2)
        with pytest.raises(BlockingIOError):
            queue.recv(2000)
        ok = frame(60)
        fake.inject(queue.fileno(), record(ok))
        assert queue.recv(2000) == ok
    finally:
        queue.close()
        iface.close()


def test_a_frame_of_exactly_the_room_offered_is_handed_out(make_fake: Any) -> None:
    fake = make_fake("darwin")
    iface, queue = feth(fake)
    try:
        exact = frame(100)
        fake.inject(queue.fileno(), record(exact) + record(exact))
        assert queue.recv(100) == exact
        batch = PacketBatch(capacity=HEADROOM + 100)
        assert queue.recv_batch(batch, 100) == 1
        assert batch.to_list() == [exact]
        assert queue.rx_truncated == 0
    finally:
        queue.close()
        iface.close()


def test_a_batch_read_leaves_headroom_and_drops_what_does_not_fit(make_fake: Any) -> None:
    # PacketBatch: headroom before each packet; FethQueue.recv_batch as FdQueue's: a frame larger
    # than the room left is dropped and counted in rx_truncated, never handed out cut
    fake = make_fake("darwin")
    iface, queue = feth(fake)
    try:
        a, big, b = frame(60, b"a"), frame(300, b"x"), frame(70, b"b")
        fake.inject(queue.fileno(), record(a) + record(big) + record(b))
        batch = PacketBatch(capacity=2 * HEADROOM + 200)
        assert queue.recv_batch(batch, 100) == 2
        assert batch.to_list() == [a, b]
        assert batch.offsets[0] == HEADROOM
        assert batch.offsets[1] == batch.offsets[0] + len(a) + HEADROOM
        assert queue.rx_truncated == 1
    finally:
        queue.close()
        iface.close()


def test_a_batch_read_that_fails_after_frames_hands_them_out_first(make_fake: Any) -> None:
    # as FdQueue.recv_batch: what was read is reported; the error shows again on the next call
    fake = make_fake("darwin")
    iface, queue = feth(fake)
    try:
        a = frame(60, b"a")
        fake.inject(queue.fileno(), record(a))
        reads = [0]

        def gone(call: Any) -> bool:
            reads[0] += 1
            return reads[0] > 1

        fake.fail("read", errno.ENXIO, when=gone, times=None)
        batch = PacketBatch()
        assert queue.recv_batch(batch, 2000) == 1
        assert batch.to_list() == [a]
        with pytest.raises(DeviceGoneError):
            queue.recv_batch(PacketBatch(), 2000)
    finally:
        queue.close()
        iface.close()


def test_wait_sees_the_frames_a_read_left_over(make_fake: Any) -> None:
    # one BPF read may return several frames: the extra ones are readable at once, and they say
    # nothing about room to write
    fake = make_fake("darwin")
    iface, queue = feth(fake)
    try:
        fake.inject(queue.fileno(), record(frame(60, b"a")) + record(frame(60, b"b")))
        queue.recv(2000)
        assert queue.wait(False, 0, None)
        full = False
        for _ in range(100_000):
            try:
                queue.send(frame(1000))
            except BlockingIOError:
                full = True
                break
        assert full
        assert not queue.wait(True, 0, None)
        assert queue.recv(2000) == frame(60, b"b")
    finally:
        queue.close()
        iface.close()


def test_a_full_feth_send_queue_is_blocking_io(make_fake: Any) -> None:
    # ENOBUFS from the AF_NDRV socket: the queue is full for now, not a device error
    fake = make_fake("darwin")
    iface, queue = feth(fake)
    try:
        fake.fail("write", errno.ENOBUFS, times=2)
        with pytest.raises(BlockingIOError):
            queue.send(frame(60))
        batch = PacketBatch()
        batch.extend([frame(60)])
        with pytest.raises(BlockingIOError):
            queue.send_batch(batch)
        assert queue.send_batch(batch) == 1
    finally:
        queue.close()
        iface.close()


def test_close_is_idempotent_and_a_closed_queue_says_so(make_fake: Any) -> None:
    fake = make_fake("darwin")
    iface, queue = feth(fake)
    before = len(fake.calls)
    queue.close()
    queue.close()
    assert [c.name for c in fake.calls[before:]] == ["close", "close"]  # BPF, socket: once
    iface.close()
    assert fake.open_fds() == set()
    for op in (lambda: queue.recv(2000), lambda: queue.send(frame(60))):
        with pytest.raises(ClosedDeviceError):
            op()
