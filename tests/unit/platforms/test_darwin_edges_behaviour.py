"""The macOS TAP (feth: BPF reads) with frames larger than the room a read offers."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from tunflow import DeviceBuilder, Layer, PacketTooLargeError
from tunflow.platform.fake import pretend_platform


def record(frame: bytes) -> bytes:
    """One BPF record (net/bpf.h bpf_hdr, hdrlen 18, padded to 4 bytes)."""
    raw = struct.pack("<8xIIH", len(frame), len(frame), 18) + frame
    return raw + b"\0" * (-len(raw) % 4)


def frame(size: int, fill: bytes = b"x") -> bytes:
    return bytes.fromhex("0200000000010200000000020800") + fill * (size - 14)


def test_a_frame_larger_than_the_buffer_is_never_handed_out_cut_short() -> None:
    # the MTU raised outside tunflow: FethQueue cut the frame to the buffer and handed it out as
    # if whole, where an fd-backed device drops it, counts it and raises PacketTooLargeError
    fake: Any
    with pretend_platform("darwin") as fake:
        dev = DeviceBuilder().layer(Layer.L2).ipv4("10.1.0.1", 24).mtu(1400).build_sync()
        try:
            big, small = frame(dev.max_size + 200, b"b"), frame(100, b"s")
            fake.inject(dev.fileno(), record(big) + record(small))
            buf = bytearray(dev.max_size)
            with pytest.raises(PacketTooLargeError):
                dev.recv_into(buf, timeout=1)
            assert dev.statistics().rx_truncated == 1
            assert dev.recv_into(buf, timeout=1) == len(small)
            assert bytes(buf[: len(small)]) == small
            # a batch read: whole when the batch has room for it, as on an fd-backed device
            fake.inject(dev.fileno(), record(big) + record(small))
            assert dev.recv_batch(timeout=1).to_list() == [big, small]
            assert dev.statistics().rx_packets == 3
        finally:
            dev.close()
