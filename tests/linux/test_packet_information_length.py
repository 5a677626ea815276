"""PACKET_INFORMATION_LENGTH (tun-rs's): the length of the header a ``packet_information()``
device keeps in front of every packet — on Linux the kernel's ``struct tun_pi``, prepended to
what it hands over and expected in front of what it is given (``IFF_NO_PI`` off)."""

from __future__ import annotations

import ctypes
import socket
import struct
import time

import pytest

import tunflow
from tests.helpers import ipv4_udp, ipv6_udp, udp_payload, udp_send
from tunflow import PACKET_INFORMATION_LENGTH, DeviceBuilder, SyncDevice, testing

pytestmark = pytest.mark.needs_root


class _TunPi(ctypes.Structure):
    """``struct tun_pi`` of ``linux/if_tun.h``: ``__u16 flags; __be16 proto;``."""

    _fields_ = [("flags", ctypes.c_uint16), ("proto", ctypes.c_uint16)]


def test_the_constant_is_public() -> None:
    assert PACKET_INFORMATION_LENGTH == 4 == ctypes.sizeof(_TunPi)
    assert "PACKET_INFORMATION_LENGTH" in tunflow.__all__
    assert tunflow.packet.PACKET_INFORMATION_LENGTH is PACKET_INFORMATION_LENGTH


def _read_udp_to(dev: SyncDevice, port: int) -> bytes:
    """What the device reads until a UDP datagram to ``port`` (10 s at the most)."""
    deadline = time.monotonic() + 10
    while True:
        packet = dev.recv(timeout=5)
        parsed = udp_payload(packet[PACKET_INFORMATION_LENGTH:])
        if parsed and parsed[1] == port:
            return packet
        assert time.monotonic() < deadline


def test_the_kernel_prepends_that_many_bytes(netns: testing.Netns) -> None:
    name = testing.unique_name("pi")
    builder = DeviceBuilder().name(name).ipv4("10.58.0.1", 24).ipv6("fd58::1", 64)
    with builder.packet_information().build_sync() as dev:
        udp_send("10.58.0.2", 5000, b"four")
        packet = _read_udp_to(dev, 5000)
        flags, proto = struct.unpack_from("!HH", packet)
        assert (flags, proto) == (0, 0x0800)
        ip = packet[PACKET_INFORMATION_LENGTH:]
        assert ip[0] == 0x45
        assert struct.unpack_from("!H", ip, 2)[0] == len(ip)  # the IPv4 total length
        assert udp_payload(ip) == (udp_payload(ip)[0], 5000, b"four")  # type: ignore[index]

        udp_send("fd58::2", 5001, b"six")
        packet = _read_udp_to(dev, 5001)
        assert struct.unpack_from("!HH", packet) == (0, 0x86DD)
        ip = packet[PACKET_INFORMATION_LENGTH:]
        assert ip[0] >> 4 == 6
        assert struct.unpack_from("!H", ip, 4)[0] + 40 == len(ip)  # the IPv6 payload length

        # and the kernel takes that many bytes off what it is given
        for family, bind, packet, proto in (
            (socket.AF_INET, "10.58.0.1", ipv4_udp("10.58.0.2", "10.58.0.1", 1, 6000, b"in"), 0x0800),
            (socket.AF_INET6, "fd58::1", ipv6_udp("fd58::2", "fd58::1", 1, 6000, b"in6"), 0x86DD),
        ):  # fmt: skip
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.bind((bind, 6000))
                s.settimeout(5)
                header = struct.pack("!HH", 0, proto)
                assert len(header) == PACKET_INFORMATION_LENGTH
                assert dev.send(header + packet) == PACKET_INFORMATION_LENGTH + len(packet)
                assert s.recv(100) == udp_payload(packet)[2]  # type: ignore[index]
