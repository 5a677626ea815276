"""Windows (Wintun, tap-windows6) single reads of a packet larger than the room offered."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tunflow import DeviceBuilder, Layer, PacketTooLargeError
from tunflow.platform.fake import pretend_platform

from .support import ipv4_packet


def test_a_wintun_packet_larger_than_the_buffer_is_never_handed_out_cut_short() -> None:
    # the MTU raised outside tunflow (netsh): WintunQueue.recv cut the packet to the buffer and
    # handed it out as if whole, where an fd-backed device drops it, counts it in rx_truncated
    # and raises PacketTooLargeError (docs/devices.md, SyncDevice.recv_into)
    fake: Any
    with pretend_platform("windows") as fake:
        dev = DeviceBuilder().name("wg1").ipv4("10.0.0.1", 24).mtu(1400).build_sync()
        try:
            big, small = ipv4_packet(b"b" * (dev.max_size + 100)), ipv4_packet(b"s")
            fake.windows.inject(big)
            fake.windows.inject(small)
            buf = bytearray(dev.max_size)
            with pytest.raises(PacketTooLargeError):
                dev.recv_into(buf, timeout=1)
            assert dev.statistics().rx_truncated == 1
            assert fake.windows.session().held == {}  # the dropped packet was released
            assert dev.recv_into(buf, timeout=1) == len(small)
            assert bytes(buf[: len(small)]) == small
            fake.windows.inject(big)
            assert dev.recv(timeout=1) == big  # recv offers room for any packet
        finally:
            dev.close()
            fake.close_all()


def test_a_tap_windows_frame_larger_than_the_buffer_is_never_handed_out_cut_short() -> None:
    fake: Any
    with pretend_platform("windows") as fake:
        adapter = fake.windows.add_tap_adapter("tap-ovpn")
        k32 = fake.windows.kernel32
        dev = (
            DeviceBuilder()
            .layer(Layer.L2)
            .name("tap-ovpn")
            .ipv4("10.8.0.2", 24)
            .mtu(1400)
            .build_sync()
        )
        try:
            head = b"\xff" * 12 + b"\x08\x00"
            big, small = head + b"b" * (dev.max_size + 100), head + b"s" * 46
            buf = bytearray(dev.max_size)
            threading.Timer(0.05, adapter.inject, (k32, big)).start()
            with pytest.raises(PacketTooLargeError):
                dev.recv_into(buf, timeout=5)
            assert dev.statistics().rx_truncated == 1
            threading.Timer(0.05, adapter.inject, (k32, small)).start()
            assert dev.recv_into(buf, timeout=5) == len(small)
            assert bytes(buf[: len(small)]) == small
        finally:
            dev.close()
            fake.close_all()
