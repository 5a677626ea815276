"""``from_fd`` / ``borrow_fd`` of a Linux tun fd whose interface lives in another network
namespace than the calling thread's: the interface is found in its own namespace (the kernel
says which, ``TUNGETDEVNETNS``), never a device of the same name in the caller's."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from collections.abc import Iterator

import pytest

from tests.helpers import adopt_and_close, adopt_or_close, ipv4_udp
from tunflow import ConfigError, SyncDevice, UnsupportedError, testing
from tunflow.platform.linux import tun

pytestmark = pytest.mark.needs_root

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def _raw_tun(ns: testing.Netns, name: str, flags: int) -> int:
    with ns.entered():
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
    return fd


def _mtu(ns: testing.Netns, name: str) -> int:
    return int(ns.ip_json("link", "show", name)[0]["mtu"])


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("adopt", ["from_fd", "borrow_fd"])
def test_a_same_named_device_here_with_other_framing_does_not_refuse_the_fd(
    netns_pair: tuple[testing.Netns, testing.Netns], adopt: str
) -> None:
    # was: ConfigError "opened without IFF_NO_PI", read from the other device's IFLA_TUN_PI
    there, here = netns_pair
    name = testing.unique_name("ns")
    fd = _raw_tun(there, name, IFF_TUN | IFF_NO_PI)
    other = _raw_tun(here, name, IFF_TUN)
    owned = False  # (by the device: from_fd's, once it is made)
    try:
        with here.entered(), getattr(SyncDevice, adopt)(fd) as dev:
            owned = adopt == "from_fd"
            assert not dev.packet_information()
            assert dev.name() == name
    finally:
        os.close(other)
        if not owned:
            os.close(fd)


def test_configuration_goes_to_the_fds_interface_not_a_same_named_one_here(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # was: set_mtu() changed the caller's namespace's device of that name
    there, here = netns_pair
    name = testing.unique_name("ns")
    fd = _raw_tun(there, name, IFF_TUN | IFF_NO_PI)
    other = _raw_tun(here, name, IFF_TUN | IFF_NO_PI)
    try:
        with here.entered(), adopt_or_close(SyncDevice.from_fd, fd) as dev:
            dev.set_mtu(1300)
            assert dev.mtu() == 1300
            assert _mtu(there, name) == 1300
            assert _mtu(here, name) == 1500
    finally:
        os.close(other)


def test_the_fds_interface_in_another_namespace_is_configured_there(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # was: not found here, so every configuration method raised UnsupportedError
    there, here = netns_pair
    name = testing.unique_name("ns")
    fd = _raw_tun(there, name, IFF_TUN | IFF_NO_PI)
    with here.entered():
        before = _fds()
        with adopt_or_close(SyncDevice.from_fd, fd) as dev:
            assert dev.name() == name
            dev.set_mtu(1400)
            dev.add_address_v4("10.59.0.1", 24)
            assert _mtu(there, name) == 1400
            assert there.ip_json("-4", "addr", "show", name)[0]["addr_info"][0]["local"] == (
                "10.59.0.1"
            )
        assert _fds() == before - 1  # the fd went with the device; nothing else left open


def test_the_framing_of_an_fd_in_another_namespace_is_checked_there(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    there, here = netns_pair
    name = testing.unique_name("ns")
    fd = _raw_tun(there, name, IFF_TUN)
    owned = False  # (by a from_fd device made after all)
    try:
        with here.entered(), pytest.raises(ConfigError, match="packet_information=True"):
            owned = adopt_and_close(SyncDevice.from_fd, fd)
    finally:
        if not owned:
            os.close(fd)


def test_where_the_kernel_does_not_say_the_callers_namespace_is_taken(
    netns: testing.Netns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before Linux 5.2, or without CAP_NET_ADMIN over the fd's namespace, TUNGETDEVNETNS is
    refused: the interface is looked up here, and found when it is here."""
    name = testing.unique_name("ns")
    fd = _raw_tun(netns, name, IFF_TUN | IFF_NO_PI)
    real = tun._ioctl

    def ioctl(fd: int, request: int, arg: bytes | int) -> bytes | int:
        if request == tun.TUNGETDEVNETNS:
            raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
        return real(fd, request, arg)

    monkeypatch.setattr(tun, "_ioctl", ioctl)
    with SyncDevice.from_fd(fd) as dev:
        assert dev.name() == name
        dev.set_mtu(1400)
        assert _mtu(netns, name) == 1400


def test_an_fd_whose_namespace_cannot_be_entered_is_adopted_unconfigured(
    netns_pair: tuple[testing.Netns, testing.Netns], monkeypatch: pytest.MonkeyPatch
) -> None:
    there, here = netns_pair
    name = testing.unique_name("ns")
    fd = _raw_tun(there, name, IFF_TUN | IFF_NO_PI)

    @contextlib.contextmanager
    def refused(target: int | str | None) -> Iterator[None]:
        if target is not None:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        yield

    there.run("ip", "link", "set", name, "up")
    monkeypatch.setattr(tun, "entered", refused)
    with here.entered():
        before = _fds()
        with SyncDevice.from_fd(fd) as dev:
            with pytest.raises(UnsupportedError):
                dev.name()
            packet = ipv4_udp("10.59.1.2", "10.59.1.1", 1, 9, b"x")
            assert dev.send(packet) == len(packet)  # the fd carries packets all the same
        assert _fds() == before - 1
