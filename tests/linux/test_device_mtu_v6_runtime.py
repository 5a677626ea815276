"""mtu_v6() / set_mtu_v6() are Windows's IPv6 MTU of its own: Linux refuses them (its
``set_mtu()`` is the link's MTU, IPv6's among it), before any change; the builder's mtu_v4()
is the link's MTU; if_luid() is Windows only."""

from __future__ import annotations

import anyio
import pytest

from tunflow import ConfigError, DeviceBuilder, UnsupportedError, testing

pytestmark = pytest.mark.needs_root


def test_mtu_v6_is_refused_on_linux(netns: testing.Netns) -> None:
    name = testing.unique_name("m")
    with DeviceBuilder().name(name).mtu(1400).build_sync() as dev:
        with pytest.raises(UnsupportedError, match="Windows only"):
            dev.mtu_v6()
        with pytest.raises(UnsupportedError, match="Windows only"):
            dev.set_mtu_v6(1300)
        with pytest.raises(ConfigError, match="IPv6 MTU"):
            dev.set_mtu_v6(1000)
        assert dev.mtu() == 1400 == netns.ip_json("link", "show", name)[0]["mtu"]


def test_async_mtu_v6_is_refused_on_linux(netns: testing.Netns) -> None:
    async def main() -> None:
        async with DeviceBuilder().name(testing.unique_name("m")).build_async() as dev:
            with pytest.raises(UnsupportedError, match="Windows only"):
                await dev.set_mtu_v6(1300)
            with pytest.raises(UnsupportedError, match="Windows only"):
                await dev.mtu_v6()

    anyio.run(main)


def test_builder_mtu_v4_is_the_link_mtu_and_mtu_v6_is_refused(netns: testing.Netns) -> None:
    name = testing.unique_name("m")
    with DeviceBuilder().name(name).mtu_v4(1300).build_sync() as dev:
        assert dev.mtu() == 1300 == netns.ip_json("link", "show", name)[0]["mtu"]
    with pytest.raises(UnsupportedError, match="Windows only"):
        DeviceBuilder().name(testing.unique_name("m")).mtu_v6(1300).build_sync()


def test_if_luid_is_refused_on_linux(netns: testing.Netns) -> None:
    with DeviceBuilder().name(testing.unique_name("m")).build_sync() as dev:
        with pytest.raises(UnsupportedError, match="Windows only"):
            dev.if_luid()
        assert dev.if_index() > 0
