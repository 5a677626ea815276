"""``into_fd`` on the BSDs: the fd is not closed (the queue's closer is not run) and an
interface the build created is not destroyed (``SIOCIFDESTROY``) — nothing is undone; it is
the caller's."""

from __future__ import annotations

import os

import anyio
import pytest

from tunflow import DeviceBuilder, Layer, SyncDevice
from tunflow.platform.fake import FakeSyscalls, pretend_platform


@pytest.mark.parametrize("platform", ["freebsd", "openbsd", "netbsd"])
def test_into_fd_closes_and_destroys_nothing(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        dev = DeviceBuilder().layer(Layer.L3).name("tun3").ipv4("10.0.0.1", 24).build_sync()
        fake.calls.clear()
        fd = dev.into_fd()
        assert [c for c in fake.calls if c.name in ("close", "ioctl") and fd in c.args] == []
        assert "tun3" in fake.interfaces
        assert not fake._fd(fd).closed
        fake.close_all()


@pytest.mark.parametrize("platform", ["freebsd", "openbsd", "netbsd", "darwin"])
def test_into_fd_gives_a_built_devices_fd_non_blocking(platform: str) -> None:
    """As on Linux: the fd the build opened (blocking, here) is given up as tunflow keeps it;
    an adopted one gets back the mode it came with."""
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        fd = DeviceBuilder().ipv4("10.0.0.1", 24).build_sync().into_fd()
        assert not os.get_blocking(fd)
        adopted = fake.open("/fake/tun", 2)
        assert os.get_blocking(adopted)
        assert SyncDevice.from_fd(adopted).into_fd() == adopted
        assert os.get_blocking(adopted)
        fake.close_all()


@pytest.mark.parametrize("platform", ["freebsd", "openbsd", "netbsd"])
def test_async_into_fd_closes_and_destroys_nothing(platform: str) -> None:
    """AsyncDevice.into_fd does what SyncDevice.into_fd does: the interface the build
    created is the caller's too, not destroyed as aclose() would."""

    async def main() -> int:
        dev = DeviceBuilder().layer(Layer.L3).name("tun3").ipv4("10.0.0.1", 24).build_async()
        fake.calls.clear()
        fd = dev.into_fd()
        await dev.aclose()  # nothing more
        return fd

    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        fd = anyio.run(main)
        assert [c for c in fake.calls if c.name in ("close", "ioctl") and fd in c.args] == []
        assert "tun3" in fake.interfaces
        assert not fake._fd(fd).closed
        fake.close_all()
