"""packet_information() / set_packet_information() at run time (tun-rs's
``ignore_packet_info`` / ``set_ignore_packet_info``, the other way round) on a macOS utun, the
BSD tuns and an iOS fd, through the fake system-call layer: the kernel frames every packet
with its 4-byte address family either way, and from the switch on tunflow hands it over (and
expects it) or removes (and adds) it — on single reads and writes, batches and vectored calls."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tunflow import (
    ClosedDeviceError,
    ConfigError,
    DeviceBuilder,
    Layer,
    SyncDevice,
    TunflowError,
    UnsupportedError,
)
from tunflow.packet import PacketBatch
from tunflow.platform import _bsd
from tunflow.platform.fake import FakeSyscalls, pretend_platform

from .support import af_header, ipv4_packet, ipv6_packet

TUNS = [("darwin", "utun7"), ("freebsd", "tun3"), ("openbsd", "tun3"), ("netbsd", "tun3")]
P4 = ipv4_packet()
P6 = ipv6_packet()


@pytest.fixture(params=TUNS, ids=[p for p, _ in TUNS])
def tun(request: Any) -> Iterator[tuple[FakeSyscalls, SyncDevice, bytes, bytes]]:
    """A TUN built on each fake: ``(fake, device, AF_INET header, AF_INET6 header)``."""
    platform, name = request.param
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        assert fake.flavor is not None
        six = _bsd.header_values(fake.flavor)["af_inet6"]
        with DeviceBuilder().name(name).ipv4("10.0.0.1", 24).build_sync() as dev:
            yield fake, dev, af_header(2), af_header(six)
        fake.close_all()


def test_switching_changes_the_framing_of_reads_and_writes(
    tun: tuple[FakeSyscalls, SyncDevice, bytes, bytes],
) -> None:
    fake, dev, h4, h6 = tun
    fd = dev.fileno()
    assert dev.packet_information() is False
    fake.inject(fd, h4 + P4)
    assert dev.recv(timeout=5) == P4
    size = dev.max_size

    dev.set_packet_information(True)
    assert dev.packet_information() is True
    assert dev.max_size == size + 4
    fake.inject(fd, h6 + P6)
    assert dev.recv(timeout=5) == h6 + P6
    fake.inject(fd, h4 + P4)
    buf = bytearray(dev.max_size)
    assert buf[: dev.recv_into(buf, timeout=5)] == h4 + P4
    assert dev.send(h6 + P6, timeout=5) == len(h6 + P6)
    assert dev.send_vectored([h4, P4], timeout=5) == len(h4 + P4)
    assert fake.sent(fd) == [h6 + P6, h4 + P4]  # handed over as given, no second header
    with pytest.raises(TunflowError):
        dev.send(P4, timeout=5)  # a bare packet: its first 4 bytes are not a header
    assert fake.sent(fd) == []

    dev.set_packet_information(False)
    assert dev.max_size == size
    fake.inject(fd, h6 + P6)
    assert dev.recv(timeout=5) == P6
    assert dev.send(P6, timeout=5) == len(P6)
    assert fake.sent(fd) == [h6 + P6]


def test_batches_follow_the_switch(tun: tuple[FakeSyscalls, SyncDevice, bytes, bytes]) -> None:
    fake, dev, h4, h6 = tun
    fd = dev.fileno()
    dev.set_packet_information(True)
    fake.inject(fd, h4 + P4)
    fake.inject(fd, h6 + P6)
    batch = dev.new_batch()
    assert len(dev.recv_batch(batch, timeout=5)) == 2
    assert [bytes(p) for p in batch] == [h4 + P4, h6 + P6]
    assert dev.send_batch(batch, timeout=5) == 2
    assert fake.sent(fd) == [h4 + P4, h6 + P6]

    dev.set_packet_information(False)
    fake.inject(fd, h6 + P6)
    batch.clear()
    assert len(dev.recv_batch(batch, timeout=5)) == 1
    assert [bytes(p) for p in batch] == [P6]
    assert dev.send_batch(batch, timeout=5) == 1
    assert fake.sent(fd) == [h6 + P6]


def test_a_batch_write_keeps_the_framing_it_started_with(
    tun: tuple[FakeSyscalls, SyncDevice, bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # another thread switches while a batch is being written: the packets of that batch were
    # made for the framing the write started with, and all of them go out with it
    fake, dev, h4, h6 = tun
    fd = dev.fileno()
    batch = PacketBatch(max_packets=3)
    for packet in (P4, P6, P4):
        batch.append(packet)
    real = os.writev

    def writev(fd_: int, bufs: Any) -> int:
        n = real(fd_, bufs)
        dev.set_packet_information(True)
        return n

    monkeypatch.setattr(os, "writev", writev)
    assert dev.send_batch(batch, timeout=5) == 3
    monkeypatch.setattr(os, "writev", real)
    assert fake.sent(fd) == [h4 + P4, h6 + P6, h4 + P4]


def test_built_with_the_header_and_switched_off() -> None:
    with pretend_platform("freebsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        builder = DeviceBuilder().name("tun4").packet_information()
        with builder.build_sync() as dev:
            fd = dev.fileno()
            assert dev.packet_information() is True
            dev.set_packet_information(False)
            fake.inject(fd, af_header(28) + P6)
            assert dev.recv(timeout=5) == P6
            dev.send(P6, timeout=5)
            assert fake.sent(fd) == [af_header(28) + P6]  # FreeBSD's AF_INET6
        fake.close_all()


def test_an_ios_fd_switches_and_an_android_one_has_no_header() -> None:
    with pretend_platform("ios") as fake:
        assert isinstance(fake, FakeSyscalls)
        with SyncDevice.from_fd(fake.open("/fake/tun", 2)) as dev:
            dev.set_packet_information(True)
            fake.inject(dev.fileno(), af_header(30) + P6)
            assert dev.recv(timeout=5) == af_header(30) + P6
            dev.set_packet_information(False)
            dev.send(P6, timeout=5)
            assert fake.sent(dev.fileno()) == [af_header(30) + P6]
        fake.close_all()
    with pretend_platform("android") as fake:
        assert isinstance(fake, FakeSyscalls)
        with SyncDevice.from_fd(fake.open("/fake/tun", 2)) as dev:
            with pytest.raises(UnsupportedError):
                dev.set_packet_information(True)
            assert dev.packet_information() is False
        fake.close_all()


@pytest.mark.parametrize(
    ("platform", "layer"),
    [("darwin", Layer.L2), ("freebsd", Layer.L2), ("linux", Layer.L3), ("windows", Layer.L3)],
)
def test_unsupported_without_a_header_to_switch(platform: str, layer: Layer) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().layer(layer).build_sync() as dev:
            size = dev.max_size
            fake.calls.clear()
            for on in (True, False):
                with pytest.raises(UnsupportedError, match="run time"):
                    dev.set_packet_information(on)
            assert dev.packet_information() is False
            assert dev.max_size == size
            assert fake.calls == []
        fake.close_all()


def test_not_a_bool_and_a_closed_device(
    tun: tuple[FakeSyscalls, SyncDevice, bytes, bytes],
) -> None:
    _, dev, _, _ = tun
    with pytest.raises(ConfigError, match="True or False"):
        dev.set_packet_information("false")  # type: ignore[arg-type]
    assert dev.packet_information() is False
    dev.close()
    with pytest.raises(ClosedDeviceError):
        dev.set_packet_information(True)
    with pytest.raises(ClosedDeviceError):
        dev.packet_information()


def test_the_async_face() -> None:
    async def main() -> None:
        async with DeviceBuilder().name("tun5").build_async() as dev:
            dev.set_packet_information(True)
            assert dev.packet_information() is True
            fake.inject(dev.fileno(), af_header(2) + P4)
            assert await dev.recv() == af_header(2) + P4
            await dev.send(af_header(2) + P4)
            assert fake.sent(dev.fileno()) == [af_header(2) + P4]

    with pretend_platform("freebsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        anyio.run(main)
        fake.close_all()
