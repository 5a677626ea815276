"""``from_fd(fd, layer=Layer.L2)`` / ``borrow_fd`` on FreeBSD, OpenBSD and NetBSD (and on macOS
and iOS for an fd that is not a utun), through the fake system-call layer: the kernel cannot be
asked what the fd carries, so the caller's ``layer`` decides its framing. A tap fd carries bare
Ethernet frames, as a built TAP does — nothing is removed from a frame read or added to one
written — while a tun fd keeps its 4-byte address-family header handling."""

from __future__ import annotations

import struct

import anyio
import pytest

from tunflow import AsyncDevice, ConfigError, Layer, SyncDevice, UnsupportedError
from tunflow.platform.fake import FakeSyscalls, pretend_platform

from .support import af_header, ipv4_packet

BSDS = ["freebsd", "openbsd", "netbsd"]
P4 = ipv4_packet()
#: dst 02:00:00:00:00:01, src 02:00:00:00:00:02, EtherType IPv4
FRAME = bytes.fromhex("020000000001020000000002") + struct.pack("!H", 0x0800) + P4


def _reads_and_writes_bare_frames(fake: FakeSyscalls, dev: SyncDevice) -> None:
    """``dev`` is an L2 device whose frames go in and out as they are, nothing added or
    removed."""
    assert dev.layer is Layer.L2
    fake.inject(dev.fileno(), FRAME)
    assert dev.recv(timeout=5) == FRAME
    dev.send(FRAME, timeout=5)
    assert fake.sent(dev.fileno()) == [FRAME]


@pytest.mark.parametrize("platform", BSDS)
def test_a_sync_tap_fd_reads_and_writes_bare_frames(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with SyncDevice.from_fd(fake.open("/dev/tap3", 2), layer=Layer.L2) as dev:
            _reads_and_writes_bare_frames(fake, dev)
        fake.close_all()


@pytest.mark.parametrize("platform", BSDS)
def test_an_async_tap_fd_reads_and_writes_bare_frames(platform: str) -> None:
    async def main(fake: FakeSyscalls) -> None:
        async with AsyncDevice.from_fd(fake.open("/dev/tap3", 2), layer=Layer.L2) as dev:
            assert dev.layer is Layer.L2
            fake.inject(dev.fileno(), FRAME)
            assert await dev.recv() == FRAME
            await dev.send(FRAME)
            assert fake.sent(dev.fileno()) == [FRAME]

    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        anyio.run(main, fake)
        fake.close_all()


@pytest.mark.parametrize("platform", BSDS)
def test_a_borrowed_tap_fd_is_framed_the_same(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        fd = fake.open("/dev/tap3", 2)
        with SyncDevice.borrow_fd(fd, layer=Layer.L2) as dev:
            fake.inject(fd, FRAME)
            assert dev.recv(timeout=5) == FRAME
            dev.send(FRAME, timeout=5)
            assert fake.sent(fd) == [FRAME]
        fake.close_all()


@pytest.mark.parametrize("platform", BSDS)
def test_packet_information_cannot_be_switched_on_an_adopted_tap(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with SyncDevice.from_fd(fake.open("/dev/tap3", 2), layer=Layer.L2) as dev:
            for on in (True, False):
                with pytest.raises(UnsupportedError, match="run time"):
                    dev.set_packet_information(on)
            assert dev.packet_information() is False
            fake.inject(dev.fileno(), FRAME)
            assert dev.recv(timeout=5) == FRAME
        fake.close_all()


@pytest.mark.parametrize("platform", BSDS)
def test_a_tun_fd_keeps_its_family_header_handling(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with SyncDevice.from_fd(fake.open("/dev/tun3", 2)) as dev:
            assert dev.layer is Layer.L3
            fake.inject(dev.fileno(), af_header(2) + P4)
            assert dev.recv(timeout=5) == P4
            dev.send(P4, timeout=5)
            assert fake.sent(dev.fileno()) == [af_header(2) + P4]
            dev.set_packet_information(True)
            fake.inject(dev.fileno(), af_header(2) + P4)
            assert dev.recv(timeout=5) == af_header(2) + P4
        fake.close_all()


@pytest.mark.parametrize("platform", ["darwin", "ios"])
def test_a_tap_fd_that_is_not_a_utun_reads_and_writes_bare_frames(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with SyncDevice.from_fd(fake.open("/dev/tap3", 2), layer=Layer.L2) as dev:
            _reads_and_writes_bare_frames(fake, dev)
            with pytest.raises(UnsupportedError, match="run time"):
                dev.set_packet_information(True)
        fake.close_all()


@pytest.mark.parametrize("layer", ["tap", "L2", None, 2])
def test_a_layer_that_is_not_a_layer_is_refused(layer: object) -> None:
    with pretend_platform("freebsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        fd = fake.open("/dev/tap3", 2)
        with pytest.raises(ConfigError, match="layer"):
            SyncDevice.from_fd(fd, layer=layer)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="layer"):
            AsyncDevice.from_fd(fd, layer=layer)  # type: ignore[arg-type]
        assert fake.sent(fd) == []
        fake.close_all()
