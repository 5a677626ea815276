"""persist() at run time on Windows: refused with UnsupportedError, before any system call, and
the device closes as it was built (the BSDs and macOS feth: test_persist_runtime_bsd.py)."""

from __future__ import annotations

import anyio
import pytest

from tunflow import DeviceBuilder, UnsupportedError
from tunflow.platform.fake import FakeSyscalls, pretend_platform


def test_persist_at_run_time_is_refused_on_windows() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg5").ipv4("10.0.0.1", 24).build_sync() as dev:
            fake.calls.clear()
            for enabled in (True, False):
                with pytest.raises(UnsupportedError, match="not possible on Windows"):
                    dev.persist(enabled)
            assert fake.calls == []
        fake.close_all()


def test_async_persist_is_refused_on_windows() -> None:
    async def main() -> None:
        async with DeviceBuilder().name("wg6").ipv4("10.0.0.1", 24).build_async() as dev:
            with pytest.raises(UnsupportedError, match="not possible on Windows"):
                await dev.persist()

    with pretend_platform("windows") as fake:
        anyio.run(main)
        fake.close_all()
