"""Building Linux devices: the TUNSETIFF flags, owner and group the kernel reports, and the
undo of a failed build on an attached device."""

from __future__ import annotations

import pytest

from tests.helpers import tun_info
from tunflow import DeviceBuilder, DeviceExistsError, testing

pytestmark = pytest.mark.needs_root


def test_owner_group_and_flags_reach_the_kernel(netns: testing.Netns) -> None:
    name = testing.unique_name("o")
    builder = (
        DeviceBuilder()
        .name(name)
        .owner(1234)
        .group(2345)
        .multi_queue()
        .packet_information()
        .persist()
    )
    with builder.build_sync():
        pass
    try:
        info = tun_info(netns, name)
        assert (info["user"], info["group"]) == (1234, 2345)
        assert info["multi_queue"] is True
        assert info["pi"] is True
        assert info["persist"] is True
        assert info["type"] == "tun"
    finally:
        netns.run("ip", "tuntap", "del", "dev", name, "mode", "tun", "multi_queue")


def test_a_plain_tap_has_no_owner_no_pi_and_goes_away_at_close(netns: testing.Netns) -> None:
    name = testing.unique_name("o")
    with DeviceBuilder().name(name).layer("tap").build_sync():
        info = tun_info(netns, name)
        assert info["type"] == "tap"
        assert info["pi"] is False
        assert info["multi_queue"] is False
        assert info["persist"] is False
        assert "user" not in info and "group" not in info
    assert name not in {link["ifname"] for link in netns.ip_json("link", "show")}


def test_undoing_a_failed_build_removes_its_point_to_point_address(
    netns: testing.Netns,
) -> None:
    # a point-to-point address is known to the kernel by its peer: the undo must name it, or
    # the removal misses and the address stays on the owner's device
    name = testing.unique_name("a")
    netns.run("ip", "tuntap", "add", "dev", name, "mode", "tun")
    netns.run("ip", "addr", "add", "10.57.1.1/24", "dev", name)
    with pytest.raises(DeviceExistsError):
        DeviceBuilder().attach(name).ipv4("10.57.0.1", 32, "10.57.0.2").ipv4(
            "10.57.1.1", 24
        ).build_sync()
    details = netns.ip_json("addr", "show", "dev", name)[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in details] == [("10.57.1.1", 24)]


def test_ipv6_is_taken_at_exactly_the_minimum_mtu(netns: testing.Netns) -> None:
    # "at least 1280 when the device has IPv6 addresses": 1280 itself is enough
    name = testing.unique_name("s")
    with DeviceBuilder().name(name).mtu(1280).ipv6("fd00:58::1", 64).build_sync() as dev:
        dev.add_address_v6("fd00:58::2", 64)
        dev.set_mtu(1280)
        have = {str(a) for a in dev.addresses()}
        assert {"fd00:58::1/64", "fd00:58::2/64"} <= have


def test_owner_and_group_above_2_31_reach_the_kernel(netns: testing.Netns) -> None:
    # ids up to 0xFFFFFFFE are valid (user namespaces map such ranges); the build passed them
    # to fcntl.ioctl as a C int and failed with an untyped OverflowError
    name = testing.unique_name("o")
    with DeviceBuilder().name(name).owner(0x80000000).group(0xFFFFFFFE).build_sync():
        info = tun_info(netns, name)
        assert (info["user"], info["group"]) == (0x80000000, 0xFFFFFFFE)


def test_an_adopted_multi_queue_fd_can_open_more_queues(netns: testing.Netns) -> None:
    # the kernel reports IFF_MULTI_QUEUE for the fd: try_clone works as on a built device
    import fcntl
    import os
    import struct

    from tunflow import SyncDevice
    from tunflow.platform.linux.tun import IFF_MULTI_QUEUE, IFF_NO_PI, IFF_TUN, TUNSETIFF

    name = testing.unique_name("q")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
    with SyncDevice.from_fd(fd) as dev, dev.try_clone() as clone:
        assert clone.name() == name
        assert tun_info(netns, name)["numqueues"] == 2
