"""``from_fd`` of a Linux TAP fd opened with ``IFF_VNET_HDR`` (as QEMU and libvirt open theirs):
the frames come through whole, never as GSO super-packets tunflow cannot split."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import time

import pytest

from tests.helpers import adopt_or_close, ipv4_udp
from tunflow import SyncDevice, testing

pytestmark = pytest.mark.needs_root

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
UDP_SEGMENT = 103
TUNSETOFFLOAD = 0x400454D0
#: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6: what a QEMU guest with
#: offloads has its TAP fd take
QEMU_OFFLOAD = 0x01 | 0x02 | 0x04 | 0x20 | 0x40


def _raw_tap(name: str, flags: int) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
    return fd


@pytest.mark.parametrize("offloaded", [False, True], ids=["fresh", "offload-set-by-opener"])
def test_a_vnet_hdr_tap_fd_hands_over_a_udp_gso_send_as_frames(
    netns: testing.Netns, offloaded: bool
) -> None:
    # was: TSO/USO were negotiated on the TAP as on a TUN; the kernel then handed over the
    # datagrams of a UDP GSO send as one super-packet, which the split (of IP packets, not
    # frames) counted in rx_malformed and dropped: none of the five reached the reader.
    # An fd whose opener had set the offload mask (QEMU) has it cleared on adoption.
    name = testing.unique_name("tv")
    fd = _raw_tap(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
    if offloaded:
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, QEMU_OFFLOAD)
        except OSError:
            os.close(fd)
            pytest.skip("this kernel has no USO on TAP devices (Linux < 6.2)")
    with adopt_or_close(SyncDevice.from_fd, fd) as dev:
        assert dev.offload_info.vnet_hdr
        assert not dev.offload_info.tso and not dev.offload_info.uso
        dev.enabled(True)
        dev.add_address_v4("10.61.0.1", 24)
        netns.run("ip", "neigh", "add", "10.61.0.2", "lladdr", "02:00:00:00:00:02", "dev", name)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, 1000)
            s.sendto(bytes(5000), ("10.61.0.2", 9999))
        sizes: list[int] = []
        deadline = time.monotonic() + 10
        while len(sizes) < 5 and time.monotonic() < deadline:
            try:
                frame = dev.recv(timeout=0.5)
            except TimeoutError:
                continue
            if frame[:6] == bytes.fromhex("020000000002") and frame[12:14] == b"\x08\x00":
                sizes.append(len(frame))
        assert sizes == [14 + 20 + 8 + 1000] * 5
        assert dev.statistics().rx_malformed == 0
        # and a frame written goes out behind a zero header, to the kernel's socket
        mac = bytes.fromhex(dev.mac_address().replace(":", ""))
        packet = ipv4_udp("10.61.0.2", "10.61.0.1", 4000, 5000, b"frame")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as r:
            r.bind(("10.61.0.1", 5000))
            r.settimeout(5)
            dev.send(mac + bytes.fromhex("020000000002") + b"\x08\x00" + packet)
            assert r.recv(100) == b"frame"
