"""The macOS TAP queue (feth: frames read from BPF, written through ``AF_NDRV``) held to what an
fd-backed device does, through the fake system-call layer."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from tunflow import DeviceBuilder, DeviceGoneError, Layer, PacketBatch
from tunflow.platform.fake import pretend_platform

from .test_darwin_edges_behaviour import frame


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
