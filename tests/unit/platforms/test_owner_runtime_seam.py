"""owner() and group() at run time are Linux's TUNSETOWNER / TUNSETGROUP: every other backend
refuses them with UnsupportedError, before any system call; a bad id is a ConfigError first."""

from __future__ import annotations

import anyio
import pytest

from tests.unit.platforms.support import UNIX_DEVICES
from tunflow import ConfigError, DeviceBuilder, Layer, UnsupportedError
from tunflow.platform.fake import FakeSyscalls, pretend_platform


@pytest.mark.parametrize(("platform", "layer"), [*UNIX_DEVICES, ("windows", Layer.L3)])
def test_owner_and_group_at_run_time_are_refused_off_linux(platform: str, layer: Layer) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        builder = DeviceBuilder().layer(layer).ipv4("10.0.0.1", 24)
        if platform == "windows":
            builder = builder.name("wg5")
        with builder.build_sync() as dev:
            fake.calls.clear()
            with pytest.raises(UnsupportedError, match="Linux only"):
                dev.owner(1000)
            with pytest.raises(UnsupportedError, match="Linux only"):
                dev.group(1000)
            with pytest.raises(ConfigError):
                dev.owner(-1)
            assert fake.calls == []
        fake.close_all()


def test_async_owner_is_refused_off_linux() -> None:
    async def main() -> None:
        async with DeviceBuilder().ipv4("10.0.0.1", 24).build_async() as dev:
            with pytest.raises(UnsupportedError, match="Linux only"):
                await dev.owner(1000)
            with pytest.raises(UnsupportedError, match="Linux only"):
                await dev.group(1000)

    with pretend_platform("darwin") as fake:
        anyio.run(main)
        fake.close_all()
