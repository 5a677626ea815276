"""``packet_information`` on a TAP where the OS puts no header before a frame (FreeBSD,
OpenBSD, NetBSD, macOS, iOS), through the fake system-call layer: the builder's
``packet_information()`` with ``Layer.L2`` and ``from_fd(fd, layer=Layer.L2,
packet_information=True)`` are refused with :class:`~tunflow.UnsupportedError` — the build
before any system call, the adoption before the fd is taken (it stays the caller's) — rather
than making a device that says ``packet_information() is True`` over bare frames. A TUN keeps
its header as before, and a macOS utun fd adopted with ``layer=Layer.L2`` is still learnt as a
utun."""

from __future__ import annotations

import anyio
import pytest

from tunflow import AsyncDevice, DeviceBuilder, Layer, SyncDevice, UnsupportedError
from tunflow.platform.fake import FakeSyscalls, pretend_platform

from .support import af_header, ipv4_packet

BSDS = ["freebsd", "openbsd", "netbsd"]
P4 = ipv4_packet()
TAP_NAMES = {"freebsd": "tap3", "openbsd": "tap3", "netbsd": "tap3", "darwin": "feth3"}


@pytest.mark.parametrize("platform", [*BSDS, "darwin"])
@pytest.mark.parametrize("named", [True, False])
def test_the_builder_refuses_a_tap_with_packet_information(platform: str, named: bool) -> None:
    builder = DeviceBuilder().layer(Layer.L2).packet_information().ipv4("10.0.0.1", 24)
    if named:
        builder = builder.name(TAP_NAMES[platform])
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with pytest.raises(UnsupportedError, match="no packet-information header"):
            builder.build_sync()
        with pytest.raises(UnsupportedError, match="no packet-information header"):
            anyio.run(builder.build_async)
        assert fake.calls == []
        assert fake.open_fds() == set()


@pytest.mark.parametrize("platform", [*BSDS, "darwin", "ios"])
@pytest.mark.parametrize("borrow", [False, True])
def test_a_tap_fd_with_packet_information_is_refused_and_left_open(
    platform: str, borrow: bool
) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        fd = fake.open("/dev/tap3", 2)
        for adopt in (
            SyncDevice.borrow_fd if borrow else SyncDevice.from_fd,
            AsyncDevice.borrow_fd if borrow else AsyncDevice.from_fd,
        ):
            with pytest.raises(UnsupportedError, match="no packet-information header"):
                adopt(fd, layer=Layer.L2, packet_information=True)
        assert fd in fake.open_fds()
        assert fake.named("close") == []
        with SyncDevice.from_fd(fd, layer=Layer.L2) as dev:  # still the caller's to use
            assert dev.packet_information() is False
        fake.close_all()


@pytest.mark.parametrize("platform", BSDS)
def test_a_tun_fd_with_packet_information_keeps_its_header(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with SyncDevice.from_fd(fake.open("/dev/tun3", 2), packet_information=True) as dev:
            assert dev.packet_information() is True
            fake.inject(dev.fileno(), af_header(2) + P4)
            assert dev.recv(timeout=5) == af_header(2) + P4
        fake.close_all()


@pytest.mark.parametrize("platform", [*BSDS, "darwin"])
def test_a_built_tun_with_packet_information_keeps_its_header(platform: str) -> None:
    name = "utun7" if platform == "darwin" else "tun3"
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        builder = DeviceBuilder().name(name).packet_information().ipv4("10.0.0.1", 24)
        with builder.build_sync() as dev:
            assert dev.packet_information() is True
            fake.inject(dev.fileno(), af_header(2) + P4)
            assert dev.recv(timeout=5) == af_header(2) + P4
        fake.close_all()


def test_a_utun_fd_adopted_as_layer_2_is_still_a_utun_with_its_header() -> None:
    with pretend_platform("darwin") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("utun7").build_sync() as made:
            fd = made.into_fd()
        with SyncDevice.from_fd(fd, layer=Layer.L2, packet_information=True) as dev:
            assert dev.layer is Layer.L3
            assert dev.packet_information() is True
            fake.inject(fd, af_header(2) + P4)
            assert dev.recv(timeout=5) == af_header(2) + P4
        fake.close_all()
