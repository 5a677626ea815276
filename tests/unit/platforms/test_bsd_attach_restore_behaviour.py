"""A build that attaches to an existing macOS/BSD device and fails half-way leaves the device as
it found it: its MAC, MTU and up/down state, as well as its addresses and routes (through the
fake system-call layer)."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from tunflow import DeviceBuilder, DeviceError, Layer
from tunflow.netconfig.device import DeviceConfig
from tunflow.platform import darwin, freebsd, netbsd, openbsd
from tunflow.platform._bsd import IFF_UP
from tunflow.platform.fake import FakeSyscalls

Fake = Callable[[str], FakeSyscalls]

BACKENDS: dict[str, ModuleType] = {"freebsd": freebsd, "openbsd": openbsd, "netbsd": netbsd}
OWN_MAC = bytes.fromhex("02aabbccdd01")
BUILD_MAC = bytes.fromhex("020000000099")


def tap_config(name: str, *, attach: bool = False, peer_feth: str | None = None) -> DeviceConfig:
    builder = DeviceBuilder().layer(Layer.L2)
    builder = builder.attach(name) if attach else builder.name(name)
    if peer_feth is not None:
        builder = builder.peer_feth(peer_feth)
    return (
        builder.mac_addr(BUILD_MAC)
        .mtu(1400)
        .ipv4("10.0.0.1", 24)
        .ipv6("fd00::1", 64)
        .route("192.0.2.0/24")
        .config()
    )


def state(fake: FakeSyscalls, name: str) -> tuple[Any, ...]:
    iface = fake.interfaces[name]
    return (iface.mtu, iface.mac, bool(iface.flags & IFF_UP), tuple(iface.v4), tuple(iface.v6))


def existing_tap(fake: FakeSyscalls, name: str, kind: str = "tap", up: bool = False) -> None:
    fake.add_interface(name, kind=kind, mtu=1500, mac=OWN_MAC, flags=0x8802 | (IFF_UP if up else 0))


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_a_failed_route_leaves_the_attached_tap_as_it_was(make_fake: Fake, platform: str) -> None:
    fake = make_fake(platform)
    existing_tap(fake, "tap5")
    before = state(fake, "tap5")
    fake.fail("write", errno.ENETUNREACH, times=None)  # the route: the last step
    with pytest.raises(DeviceError, match=r"192\.0\.2\.0/24"):
        BACKENDS[platform].open_device(tap_config("tap5", attach=True), syscalls=fake)
    assert state(fake, "tap5") == before  # MAC, MTU, down, no addresses
    assert fake.routes == []
    assert fake.open_fds() == set()


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_a_device_that_was_up_stays_up(make_fake: Fake, platform: str) -> None:
    fake = make_fake(platform)
    existing_tap(fake, "tap5", up=True)
    before = state(fake, "tap5")
    fake.fail("write", errno.ENETUNREACH, times=None)
    with pytest.raises(DeviceError):
        BACKENDS[platform].open_device(tap_config("tap5", attach=True), syscalls=fake)
    assert state(fake, "tap5") == before


@pytest.mark.parametrize("platform", sorted(BACKENDS))
def test_an_attach_failing_at_every_step_leaves_the_tap_as_it_was(
    make_fake: Fake, platform: str
) -> None:
    cfg = tap_config("tap5", attach=True)
    probe = make_fake(platform)
    existing_tap(probe, "tap5")
    before = state(probe, "tap5")
    iface, queue = BACKENDS[platform].open_device(cfg, syscalls=probe)
    steps = len(probe.calls)
    queue.close()
    iface.close()
    failed = 0
    for step in range(steps):
        fake = make_fake(platform)
        existing_tap(fake, "tap5")
        fake.fail_call(step, errno.EIO)
        what = f"step {step} ({probe.calls[step].name})"
        try:
            iface, queue = BACKENDS[platform].open_device(cfg, syscalls=fake)
        except (DeviceError, OSError):
            failed += 1
        else:
            assert probe.calls[step].name in ("if_nametoindex", "close"), f"{what} did not fail"
            queue.close()
            iface.close()
            continue
        assert state(fake, "tap5") == before, what
        assert fake.routes == [], what
        assert fake.open_fds() == set(), what
    assert failed > steps // 2


def test_netbsd_removes_the_link_address_the_failed_build_added(make_fake: Fake) -> None:
    # SIOCALIFADDR with IFLR_ACTIVE keeps the previous address as an inactive one: putting the
    # old one back makes it active again, and the build's is deleted (SIOCDLIFADDR)
    fake = make_fake("netbsd")
    existing_tap(fake, "tap5")
    fake.fail("write", errno.ENETUNREACH, times=None)
    with pytest.raises(DeviceError):
        netbsd.open_device(tap_config("tap5", attach=True), syscalls=fake)
    added = [c.args[2] for c in fake.ioctls(netbsd.SIOCALIFADDR)]
    assert [a[32 : 32 + 6] for a in added] == [BUILD_MAC, OWN_MAC]
    # sys/sockio.h: SIOCDLIFADDR _IOW('i', 30, struct if_laddrreq); golang.org/x/sys
    # unix/zerrors_netbsd_amd64.go: SIOCDLIFADDR = 0x8118691e
    assert netbsd.SIOCDLIFADDR == 0x8118691E
    deleted = [c.args[2] for c in fake.ioctls(netbsd.SIOCDLIFADDR)]
    assert [(d[:5], d[32 : 32 + 6]) for d in deleted] == [(b"tap5\0", BUILD_MAC)]
    assert fake.interfaces["tap5"].mac == OWN_MAC


def test_a_failure_while_putting_back_is_logged_and_the_build_error_raised(
    make_fake: Fake, caplog: pytest.LogCaptureFixture
) -> None:
    fake = make_fake("freebsd")
    existing_tap(fake, "tap5")
    fake.fail("write", errno.ENETUNREACH, times=None)
    # the second SIOCSIFMTU is the one putting 1500 back
    fake.on("ioctl", when=lambda c: c.args[1] == freebsd.FLAVOR.SIOCSIFMTU, times=1)
    fake.fail_ioctl(freebsd.FLAVOR.SIOCSIFMTU, errno.EIO, times=None)
    with caplog.at_level(logging.WARNING, logger="tunflow"), pytest.raises(DeviceError) as info:
        freebsd.open_device(tap_config("tap5", attach=True), syscalls=fake)
    assert "192.0.2.0/24" in str(info.value)
    assert any("MTU" in r.getMessage() and "tap5" in r.getMessage() for r in caplog.records)
    assert fake.interfaces["tap5"].mac == OWN_MAC  # the rest was still put back
    assert not fake.interfaces["tap5"].flags & IFF_UP


def test_a_failed_build_on_a_reused_feth_puts_back_its_mac_mtu_and_state(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    existing_tap(fake, "feth8", kind="feth")
    existing_tap(fake, "feth9", kind="feth")
    before = (state(fake, "feth8"), state(fake, "feth9"))
    fake.fail("write", errno.ENETUNREACH, times=None)
    with pytest.raises(DeviceError):
        darwin.open_device(tap_config("feth8", peer_feth="feth9"), syscalls=fake)
    # both reused: the device gets back its MAC, MTU and down state; the peer (given the MTU
    # and brought up for I/O) its MTU and down state
    assert (state(fake, "feth8"), state(fake, "feth9")) == before
    assert fake.open_fds() == set()


def test_a_failed_build_on_a_reused_feth_with_a_new_peer(make_fake: Fake) -> None:
    fake = make_fake("darwin")
    existing_tap(fake, "feth8", kind="feth", up=True)
    before = state(fake, "feth8")
    fake.fail_ioctl(darwin.FLAVOR.SIOCAIFADDR_IN6, errno.EIO)
    with pytest.raises(DeviceError):
        darwin.open_device(tap_config("feth8"), syscalls=fake)
    assert state(fake, "feth8") == before
    assert set(fake.interfaces) == {"lo0", "feth8"}  # the peer it made is gone


def test_a_reused_feth_pair_failing_at_every_step_is_left_as_it_was(make_fake: Fake) -> None:
    cfg = tap_config("feth8", peer_feth="feth9")

    def reused_pair(fake: FakeSyscalls) -> None:
        existing_tap(fake, "feth8", kind="feth")
        existing_tap(fake, "feth9", kind="feth")

    probe = make_fake("darwin")
    reused_pair(probe)
    before = (state(probe, "feth8"), state(probe, "feth9"))
    iface, queue = darwin.open_device(cfg, syscalls=probe)
    steps = len(probe.calls)
    queue.close()
    iface.close()
    for step in range(steps):
        fake = make_fake("darwin")
        reused_pair(fake)
        fake.fail_call(step, errno.EIO)
        what = f"step {step} ({probe.calls[step].name})"
        try:
            iface, queue = darwin.open_device(cfg, syscalls=fake)
        except (DeviceError, OSError):
            pass
        else:
            assert probe.calls[step].name == "close", f"{what} did not fail"
            queue.close()
            iface.close()
            continue
        assert (state(fake, "feth8"), state(fake, "feth9")) == before, what
        assert fake.routes == [], what
        assert fake.open_fds() == set(), what
