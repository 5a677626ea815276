"""``from_fd`` of a Linux TAP fd whose interface is in another network namespace (a parent
process that made it there): the kernel's word that it is a TAP decides the layer, as it does
when the interface is found."""

from __future__ import annotations

import errno
import fcntl
import os
import struct

import pytest

from tests.helpers import adopt_or_close
from tunflow import AsyncDevice, Layer, SyncDevice, testing
from tunflow.platform.linux import netlink

pytestmark = pytest.mark.needs_root

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def _raw_tap(name: str, flags: int) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
    return fd


_FRAME = b"\xff" * 6 + bytes.fromhex("020000000002") + b"\x08\x06" + bytes(28)  # (an ARP frame)


def test_a_tap_fd_whose_interface_is_in_another_namespace_is_adopted_as_a_tap(
    netns: testing.Netns,
) -> None:
    # was: TUNGETIFF said TAP, but with the interface not found here the layer fell back to
    # from_fd's default, L3: max_size 1500, and every frame sent was refused as a bad IP packet
    with testing.netns(enter=False) as other:
        name = testing.unique_name("to")
        with other.entered():
            fd = _raw_tap(name, IFF_TAP | IFF_NO_PI)
        other.run("ip", "link", "set", name, "up")
        with adopt_or_close(SyncDevice.from_fd, fd) as dev:
            assert dev.layer is Layer.L2
            assert dev.max_size == 1500 + 18
            assert dev.send(_FRAME) == len(_FRAME)


@pytest.mark.anyio
async def test_an_async_tap_fd_from_another_namespace_is_adopted_as_a_tap(
    netns: testing.Netns,
) -> None:
    with testing.netns(enter=False) as other:
        name = testing.unique_name("to")
        with other.entered():
            fd = _raw_tap(name, IFF_TAP | IFF_NO_PI)
        other.run("ip", "link", "set", name, "up")
        async with adopt_or_close(AsyncDevice.from_fd, fd) as dev:
            assert dev.layer is Layer.L2
            await dev.send(_FRAME)


IFF_VNET_HDR = 0x4000


@pytest.mark.anyio
async def test_a_tap_fd_whose_interface_cannot_be_asked_is_adopted_as_a_tap(
    netns: testing.Netns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where rtnetlink is refused (a sandbox), the interface is not looked up at all: the
    kernel's word from TUNGETIFF still makes it a TAP, on both faces, and an IFF_VNET_HDR
    fd gets no TSO/USO (the split reads IP packets, not frames)."""

    def refused(self: object) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    name = testing.unique_name("to")
    fd = _raw_tap(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
    netns.run("ip", "link", "set", name, "up")
    monkeypatch.setattr(netlink.RtNetlink, "__init__", refused)
    with SyncDevice.borrow_fd(fd) as dev:
        assert dev.layer is Layer.L2
        assert dev.offload_info.vnet_hdr
        assert not dev.offload_info.tso and not dev.offload_info.uso
        assert dev.send(_FRAME) == len(_FRAME)
    async with AsyncDevice.from_fd(fd) as adev:
        assert adev.layer is Layer.L2
        await adev.send(_FRAME)
