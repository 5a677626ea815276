"""Closing a BSD / macOS feth device whose interface the kernel refuses to destroy
(SIOCIFDESTROY) raises a typed DeviceError naming the interface — not the bare OSError of the
ioctl — and the device's own resources (its wake-up pipe) are released all the same."""

from __future__ import annotations

import errno
import os

import anyio
import pytest

from tunflow import DeviceBuilder, DeviceError, DevicePermissionError
from tunflow.platform import freebsd, netbsd, openbsd
from tunflow.platform.fake import FakeSyscalls, pretend_platform

FLAVORS = {"freebsd": freebsd.FLAVOR, "openbsd": openbsd.FLAVOR, "netbsd": netbsd.FLAVOR}


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.parametrize("platform", sorted(FLAVORS))
def test_a_refused_destroy_is_a_typed_error_and_the_device_is_closed(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        dev = DeviceBuilder().name("tun3").build_sync()
        pipe = (dev._waker._r, dev._waker._w)
        fake.fail_ioctl(FLAVORS[platform].SIOCIFDESTROY, errno.EPERM)
        with pytest.raises(DevicePermissionError, match="tun3"):
            dev.close()
        assert not any(_open(fd) for fd in pipe)
        dev.close()  # (closed: nothing again)
        fake.close_all()


def test_persist_false_on_an_attached_device_refused_at_close() -> None:
    with pretend_platform("freebsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        DeviceBuilder().name("tun4").persist().build_sync().close()
        dev = DeviceBuilder().attach("tun4").build_sync()
        dev.persist(False)
        fake.fail_ioctl(freebsd.FLAVOR.SIOCIFDESTROY, errno.EBUSY)
        with pytest.raises(DeviceError, match="tun4") as caught:
            dev.close()
        assert caught.value.errno == errno.EBUSY
        fake.close_all()


def test_async_close_raises_the_typed_error() -> None:
    async def main() -> None:
        dev = DeviceBuilder().name("tun5").build_async()
        fake.fail_ioctl(openbsd.FLAVOR.SIOCIFDESTROY, errno.EPERM)
        with pytest.raises(DevicePermissionError, match="tun5"):
            await dev.aclose()

    with pretend_platform("openbsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        anyio.run(main)
        fake.close_all()
