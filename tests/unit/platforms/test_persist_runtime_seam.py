"""persist() at run time is Linux's TUNSETPERSIST: every other backend refuses it with
UnsupportedError, before any system call, and the device closes as it was built."""

from __future__ import annotations

import anyio
import pytest

from tunflow import DeviceBuilder, Layer, UnsupportedError
from tunflow.platform.fake import FakeSyscalls, pretend_platform


@pytest.mark.parametrize(
    ("platform", "layer"),
    [
        ("darwin", Layer.L3),
        ("darwin", Layer.L2),
        ("freebsd", Layer.L3),
        ("freebsd", Layer.L2),
        ("openbsd", Layer.L3),
        ("netbsd", Layer.L3),
        ("windows", Layer.L3),
    ],
)
def test_persist_at_run_time_is_refused_off_linux(platform: str, layer: Layer) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        name = "wg5" if platform == "windows" else None
        builder = DeviceBuilder().layer(layer).ipv4("10.0.0.1", 24)
        with (builder.name(name) if name else builder).build_sync() as dev:
            fake.calls.clear()
            for enabled in (True, False):
                with pytest.raises(UnsupportedError, match="Linux only"):
                    dev.persist(enabled)
            assert fake.calls == []
        if platform != "windows":
            assert set(fake.interfaces) == {"lo0"}  # not kept: the refusal changed nothing
        fake.close_all()


def test_async_persist_is_refused_off_linux() -> None:
    async def main() -> None:
        async with DeviceBuilder().ipv4("10.0.0.1", 24).build_async() as dev:
            with pytest.raises(UnsupportedError, match="Linux only"):
                await dev.persist()

    with pretend_platform("freebsd") as fake:
        anyio.run(main)
        fake.close_all()
