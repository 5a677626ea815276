"""set_metric() at run time is Windows's interface metric: Linux refuses it, as the builder's
``metric()``, before any change (a route's own metric is ``add_route(..., metric=)``)."""

from __future__ import annotations

import anyio
import pytest

from tunflow import ConfigError, DeviceBuilder, UnsupportedError, testing

pytestmark = pytest.mark.needs_root


def test_set_metric_is_refused_on_linux(netns: testing.Netns) -> None:
    with pytest.raises(UnsupportedError, match="metric is Windows only"):
        DeviceBuilder().name(testing.unique_name("m")).metric(5).build_sync()
    name = testing.unique_name("m")
    with DeviceBuilder().name(name).ipv4("10.9.0.1", 24).build_sync() as dev:
        routes = dev.routes()
        with pytest.raises(UnsupportedError, match="metric is Windows only"):
            dev.set_metric(5)
        with pytest.raises(ConfigError, match="metric"):
            dev.set_metric(-1)
        assert dev.routes() == routes


def test_async_set_metric_is_refused_on_linux(netns: testing.Netns) -> None:
    async def main() -> None:
        async with DeviceBuilder().name(testing.unique_name("m")).build_async() as dev:
            with pytest.raises(UnsupportedError, match="metric is Windows only"):
                await dev.set_metric(5)

    anyio.run(main)
