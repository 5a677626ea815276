"""``from_fd`` / ``borrow_fd`` of a Linux tun fd whose framing (the 4-byte ``tun_pi`` header, or
none) differs from the ``packet_information`` the caller gave: refused, naming the header,
instead of adopted with packets misread and misframed."""

from __future__ import annotations

import fcntl
import os
import struct

import pytest

from tests.helpers import adopt_and_close, adopt_or_close, udp_payload, udp_send
from tunflow import AsyncDevice, ConfigError, SyncDevice, testing

pytestmark = pytest.mark.needs_root

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def _raw_tun(name: str, flags: int) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
    return fd


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("adopt", ["from_fd", "borrow_fd"])
@pytest.mark.parametrize("face", [SyncDevice, AsyncDevice])
def test_an_fd_with_the_header_adopted_without_it_is_refused(
    netns: testing.Netns, adopt: str, face: type[SyncDevice] | type[AsyncDevice]
) -> None:
    # was: adopted; recv() handed out b"\x00\x00\x08\x00" + the IP packet, and
    # packet_information() said False
    name = testing.unique_name("pi")
    fd = _raw_tun(name, IFF_TUN)  # without IFF_NO_PI: every packet behind a tun_pi header
    owned = False  # (by a from_fd device made after all)
    try:
        before = _fds()
        with pytest.raises(ConfigError, match="packet_information=True"):
            owned = adopt_and_close(getattr(face, adopt), fd)
        assert _fds() == before  # nothing of the attempt left open
        os.fstat(fd)  # still the caller's
        assert os.get_blocking(fd)
    finally:
        if not owned:
            os.close(fd)


@pytest.mark.parametrize("adopt", ["from_fd", "borrow_fd"])
def test_an_fd_without_the_header_adopted_with_it_is_refused(
    netns: testing.Netns, adopt: str
) -> None:
    # was: adopted; each packet's first 4 bytes were taken for a header the fd does not carry
    name = testing.unique_name("pi")
    fd = _raw_tun(name, IFF_TUN | IFF_NO_PI)
    owned = False  # (by a from_fd device made after all)
    try:
        with pytest.raises(ConfigError, match="IFF_NO_PI"):
            owned = adopt_and_close(getattr(SyncDevice, adopt), fd, packet_information=True)
        os.fstat(fd)
    finally:
        if not owned:
            os.close(fd)


def test_matching_framing_is_adopted(netns: testing.Netns) -> None:
    name = testing.unique_name("pi")
    fd = _raw_tun(name, IFF_TUN)
    try:
        netns.run("ip", "addr", "add", "10.58.0.1/24", "dev", name)
        netns.run("ip", "link", "set", name, "up")
    except BaseException:
        os.close(fd)
        raise
    with adopt_or_close(SyncDevice.from_fd, fd, packet_information=True) as dev:
        assert dev.packet_information()
        udp_send("10.58.0.2", 5000, b"pi")
        for _ in range(20):
            packet = dev.recv(timeout=5)
            if packet[2:4] == b"\x08\x00" and udp_payload(packet[4:]):
                break
        assert udp_payload(packet[4:])[2] == b"pi"  # type: ignore[index]
    other = testing.unique_name("pi")
    with adopt_or_close(SyncDevice.from_fd, _raw_tun(other, IFF_TUN | IFF_NO_PI)) as dev:
        assert not dev.packet_information()
        assert dev.name() == other
