"""A Linux TAP built with ``packet_information()`` (``IFF_NO_PI`` off): unlike a TAP on macOS
or the BSDs (refused there), the kernel puts its 4-byte ``struct tun_pi`` before every frame it
hands over and takes one off every frame it is given — the EtherType in ``tun_pi.proto``."""

from __future__ import annotations

import struct
import time

import pytest

from tests.helpers import udp_send
from tunflow import PACKET_INFORMATION_LENGTH, DeviceBuilder, Layer, SyncDevice, testing

pytestmark = pytest.mark.needs_root

ETH_P_ARP = 0x0806


def _read_arp(dev: SyncDevice) -> bytes:
    """The first ARP frame (with its ``tun_pi``) the device reads, within 10 s."""
    deadline = time.monotonic() + 10
    while True:
        frame = dev.recv(timeout=5)
        if struct.unpack_from("!H", frame, PACKET_INFORMATION_LENGTH + 12)[0] == ETH_P_ARP:
            return frame
        assert time.monotonic() < deadline


def test_a_linux_tap_with_packet_information_carries_the_tun_pi_header(
    netns: testing.Netns,
) -> None:
    name = testing.unique_name("tp")
    builder = DeviceBuilder().name(name).layer(Layer.L2).ipv4("10.59.0.1", 24)
    with builder.packet_information().build_sync() as dev:
        assert dev.layer is Layer.L2
        assert dev.packet_information() is True
        assert dev.max_size == 1500 + 18 + PACKET_INFORMATION_LENGTH
        udp_send("10.59.0.2", 5000, b"who")  # the kernel asks for 10.59.0.2's MAC first
        frame = _read_arp(dev)
        assert struct.unpack_from("!HH", frame) == (0, ETH_P_ARP)  # tun_pi: flags, proto
        eth = frame[PACKET_INFORMATION_LENGTH:]
        assert eth[:6] == b"\xff" * 6  # a broadcast ARP request
        assert struct.unpack_from("!H", eth, 20)[0] == 1  # (ARP op: request)

        header = struct.pack("!HH", 0, ETH_P_ARP)
        sent = header + eth
        assert dev.send(sent, timeout=5) == len(sent)
