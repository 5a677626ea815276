"""Android and iOS: adopted fds with the right framing, nothing configurable, and the iOS utun
fd scan (WireGuardKit's method)."""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable

import pytest

from tunflow import DeviceBuilder, SyncDevice, UnsupportedError
from tunflow.packet import PacketBatch
from tunflow.platform import fd as fdmod
from tunflow.platform.fake import FakeSyscalls, pretend_platform

from .support import af_header, ipv4_packet, ipv6_packet

Fake = Callable[[str], FakeSyscalls]


def test_android_has_no_header(make_fake: Fake) -> None:
    fake = make_fake("android")
    fd = fake.open("/fake/vpnservice", 2)
    iface, queue = fdmod.adopt_fd(fd, close_fd=True, syscalls=fake, platform="android")
    assert iface is None
    p4, p6 = ipv4_packet(), ipv6_packet()
    fake.inject(fd, p4)
    fake.inject(fd, p6)
    assert queue.recv(2000) == p4
    buf = bytearray(2000)
    assert queue.recv_into(memoryview(buf)) == len(p6)
    fake.inject(fd, p6)
    batch = PacketBatch()
    assert queue.recv_batch(batch, 2000) == 1 and batch.to_list() == [p6]
    queue.send(p4)
    out = PacketBatch()
    out.extend([p6])
    queue.send_batch(out)
    assert fake.sent(fd) == [p4, p6]
    queue.close()
    assert fake.named("close")[0].args == (fd,)
    assert fake.open_fds() == set()


def test_ios_has_the_darwin_header(make_fake: Fake) -> None:
    fake = make_fake("ios")
    fd = fake.open("/fake/utun", 2)
    _, queue = fdmod.adopt_fd(fd, close_fd=False, syscalls=fake, platform="ios")
    p4, p6 = ipv4_packet(), ipv6_packet()
    fake.inject(fd, af_header(2) + p4)
    fake.inject(fd, af_header(30) + p6)
    batch = PacketBatch()
    assert queue.recv_batch(batch, 2000) == 2 and batch.to_list() == [p4, p6]
    fake.inject(fd, af_header(30) + p6)
    buf = bytearray(2000)
    assert queue.recv_into(memoryview(buf)) == len(p6)
    queue.send(p6)
    out = PacketBatch()
    out.extend([p4])
    queue.send_batch(out)
    assert fake.sent(fd) == [af_header(30) + p6, af_header(2) + p4]
    queue.close()
    assert fake.named("close") == []  # borrowed: the fd stays open
    assert fake.open_fds() == {fd}


def test_ios_packet_information_keeps_it(make_fake: Fake) -> None:
    fake = make_fake("ios")
    fd = fake.open("/fake/utun", 2)
    _, queue = fdmod.adopt_fd(
        fd, close_fd=True, packet_information=True, syscalls=fake, platform="ios"
    )
    framed = af_header(30) + ipv6_packet()
    fake.inject(fd, framed)
    assert queue.recv(2000) == framed
    queue.close()


@pytest.mark.parametrize("platform", ["android", "ios"])
def test_no_configuration_and_no_creation(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        fd = fake.open("/fake/tun", 2)
        with SyncDevice.from_fd(fd) as dev:
            for call in (dev.name, dev.mtu, dev.addresses, dev.if_index, dev.routes):
                with pytest.raises(UnsupportedError, match="configure it where it was made"):
                    call()
            with pytest.raises(UnsupportedError):
                dev.add_address_v4("10.0.0.1", 24)
        with pytest.raises(UnsupportedError, match="from_fd") as info:
            DeviceBuilder().build_sync()
        hint = "VpnService" if platform == "android" else "NEPacketTunnelProvider"
        assert hint in str(info.value)
        fake.close_all()


def sockaddr_ctl(ctl_id: int, unit: int, family: int = 32) -> bytes:
    # sys/kern_control.h struct sockaddr_ctl {sc_len, sc_family, ss_sysaddr, sc_id, sc_unit,
    # sc_reserved[5]}
    return struct.pack("<BBHII20x", 32, family, 2, ctl_id, unit)


def test_find_utun_fd_scans_like_wireguardkit(make_fake: Fake) -> None:
    fake = make_fake("ios")
    # fd 3: a UDP socket; fd 5: a kernel-control socket of another control; fd 9: the utun
    fake.peernames[3] = struct.pack("<BBH4s8x", 16, 2, 53, b"\x01\x01\x01\x01")
    fake.peernames[5] = sockaddr_ctl(99, 1)
    fake.peernames[9] = sockaddr_ctl(fake.UTUN_CTL_ID, 4)
    ioctl_fds: list[int] = []

    def ctliocginfo(fd: int, request: int, arg: bytes) -> bytes:
        ioctl_fds.append(fd)
        return struct.pack("<I", fake.UTUN_CTL_ID) + arg[4:]

    fake.on("ioctl", handler=ctliocginfo)
    assert fdmod.find_utun_fd(fake) == 9
    peers = [c.args[0] for c in fake.named("getpeername")]
    assert peers == list(range(10))
    # CTLIOCGINFO (0xc0644e03, sys/kern_control.h) asked once, on the first AF_SYSTEM fd
    assert ioctl_fds == [5]
    (ctl,) = fake.ioctls()
    assert ctl.args[1] == 0xC0644E03
    assert ctl.args[2][4:30] == b"com.apple.net.utun_control"


def test_find_utun_fd_none(make_fake: Fake) -> None:
    fake = make_fake("ios")
    assert fdmod.find_utun_fd(fake, limit=16) is None
    assert len(fake.named("getpeername")) == 17  # 0…limit inclusive, as WireGuardKit's 0...1024
    fake.fail("getpeername", errno.EBADF, times=None)
    assert fdmod.find_utun_fd(fake, limit=4) is None


@pytest.mark.parametrize("platform", ["android", "ios"])
def test_fd_closed_by_its_maker_first_closes_quietly(make_fake: Fake, platform: str) -> None:
    """Android's ParcelFileDescriptor (getFd() rather than detachFd()) or the iOS extension may
    close the fd before the device does: the device's close then has nothing left to close and
    says nothing, as FdQueue's own close does (EBADF), rather than raising a raw OSError."""
    fake = make_fake(platform)
    fd = fake.open("/fake/vpn", 2)
    _, queue = fdmod.adopt_fd(fd, close_fd=True, syscalls=fake, platform=platform)
    fake.close(fd)  # closed by whoever made it
    queue.close()
    assert [c.error.errno for c in fake.named("close") if c.error is not None] == [errno.EBADF]
