"""``into_fd`` on the BSDs: the fd is not closed (the queue's closer is not run) and an
interface the build created is not destroyed (``SIOCIFDESTROY``) — nothing is undone; it is
the caller's."""

from __future__ import annotations

import pytest

from tunflow import DeviceBuilder, Layer
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
