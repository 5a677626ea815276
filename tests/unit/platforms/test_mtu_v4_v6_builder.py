"""The builder's mtu_v4() / mtu_v6() (tun-rs's, Windows): each family's MTU set alone at the
build, ``NlMtu`` of that family's interface row; elsewhere mtu_v4 is the link's MTU and an IPv6
MTU of its own is refused before any system call. Windows runs here only through the fakes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.platforms.support import UNIX_DEVICES
from tunflow import ConfigError, DeviceBuilder, Layer, UnsupportedError
from tunflow.platform._build import reject_windows_only
from tunflow.platform.fake import FakeSyscalls, pretend_platform
from tunflow.platform.windows.iphlpapi import AF_INET, AF_INET6


def _rows_set(fake: FakeSyscalls) -> list[tuple[int, int, int]]:
    """(family, NlMtu, LUID) of every SetIpInterfaceEntry, in order."""
    rows = [c.args[0]._obj for c in fake.named("iphlpapi.SetIpInterfaceEntry")]
    return [(r.Family, r.NlMtu, r.InterfaceLuid.Value) for r in rows]


def _mtus(fake: FakeSyscalls) -> tuple[int, int]:
    (iface,) = fake.windows.interfaces.values()
    return iface["v4"]["mtu"], iface["v6"]["mtu"]


def _build(builder: DeviceBuilder) -> Any:
    dev = builder.build_sync()
    return dev, dev._iface().luid


def test_each_family_alone() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        dev, luid = _build(DeviceBuilder().name("wg1").mtu_v4(1400).mtu_v6(9000))
        with dev:
            assert _rows_set(fake) == [(AF_INET, 1400, luid), (AF_INET6, 9000, luid)]
            assert _mtus(fake) == (1400, 9000)
            assert (dev.mtu(), dev.mtu_v6()) == (1400, 9000)
            assert dev.max_size == 9000  # the limits follow the larger, from the build on
        fake.close_all()


def test_mtu_v4_alone_leaves_ipv6_as_it_is() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        dev, luid = _build(DeviceBuilder().name("wg2").mtu_v4(1300))
        with dev:
            assert _rows_set(fake) == [(AF_INET, 1300, luid)]
            assert _mtus(fake) == (1300, 1500)
        fake.close_all()


def test_mtu_v6_alone_leaves_ipv4_as_it_is() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        dev, luid = _build(DeviceBuilder().name("wg3").mtu_v6(1280))
        with dev:
            assert _rows_set(fake) == [(AF_INET6, 1280, luid)]
            assert _mtus(fake) == (1500, 1280)
        fake.close_all()


def test_a_family_override_after_mtu() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        dev, luid = _build(DeviceBuilder().name("wg4").mtu(1500).mtu_v4(1400))
        with dev:
            assert _rows_set(fake) == [(AF_INET, 1400, luid), (AF_INET6, 1500, luid)]
        fake.close_all()


def test_mtu_after_them_wins_as_in_tun_rs() -> None:
    builder = DeviceBuilder().mtu_v4(1300).mtu_v6(1400).mtu(1420)
    config = builder.config()
    assert (config.mtu, config.mtu_v4, config.mtu_v6) == (1420, None, None)
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        dev, luid = _build(builder.name("wg5"))
        with dev:
            assert _rows_set(fake) == [(AF_INET, 1420, luid), (AF_INET6, 1420, luid)]
        fake.close_all()


def test_an_ipv4_mtu_below_1280_with_ipv6_addresses_is_fine_on_windows() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        builder = DeviceBuilder().name("wg6").ipv6("fd00::1", 64).mtu(1000).mtu_v6(1280)
        dev = builder.build_sync()
        with dev:
            assert _mtus(fake) == (1000, 1280)
        fake.close_all()
    with pytest.raises(ConfigError, match="at least 1280"):
        DeviceBuilder().ipv6("fd00::1", 64).mtu(1000).config()


def test_no_ipv6_stack() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        fake.windows.ipv6 = False
        # IPv6's MTU from mtu() is skipped there, as mtu() alone skips it
        dev, luid = _build(DeviceBuilder().name("wg7").mtu(1500).mtu_v4(1400))
        with dev:
            assert _rows_set(fake) == [(AF_INET, 1400, luid)]
        # an IPv6 MTU asked for by name cannot be set: the build fails and takes its adapter
        with pytest.raises(UnsupportedError, match="no IPv6 stack"):
            DeviceBuilder().name("wg8").mtu_v6(1400).build_sync()
        assert "wg8" not in fake.windows.adapters
        fake.close_all()


@pytest.mark.parametrize(
    ("setter", "bad"),
    [
        ("mtu_v4", 67),
        ("mtu_v4", 65536),
        ("mtu_v4", True),
        ("mtu_v4", "1400"),
        ("mtu_v6", 1279),
        ("mtu_v6", 65536),
        ("mtu_v6", False),
        ("mtu_v6", 1400.0),
    ],
)
def test_bad_values_are_refused_by_the_setter(setter: str, bad: object) -> None:
    with pytest.raises(ConfigError, match="MTU"):
        getattr(DeviceBuilder(), setter)(bad)


def test_off_windows_the_rules() -> None:
    # mtu_v4 is the link's MTU; an IPv6 MTU of its own is refused
    reject_windows_only(DeviceBuilder().mtu_v4(1400).config(), "Linux")
    reject_windows_only(DeviceBuilder().mtu(1400).mtu_v4(1400).config(), "Linux")
    with pytest.raises(UnsupportedError, match="Windows only"):
        reject_windows_only(DeviceBuilder().mtu_v6(1400).config(), "Linux")
    with pytest.raises(UnsupportedError, match="Windows only"):
        reject_windows_only(DeviceBuilder().mtu(1500).mtu_v4(1400).config(), "Linux")
    with pytest.raises(ConfigError, match="at least 1280"):
        reject_windows_only(DeviceBuilder().ipv6("fd00::1", 64).mtu_v4(1000).config(), "Linux")
    assert DeviceBuilder().mtu(1500).mtu_v4(1400).config().link_mtu == 1400


@pytest.mark.parametrize(("platform", "layer"), UNIX_DEVICES)
def test_off_windows_mtu_v4_is_the_link_mtu(platform: str, layer: Layer) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().layer(layer).mtu_v4(1400).build_sync() as dev:
            assert dev.mtu() == 1400
            assert fake.interfaces[dev.name()].mtu == 1400
        fake.calls.clear()
        with pytest.raises(UnsupportedError, match="Windows only"):
            DeviceBuilder().layer(layer).mtu_v6(1400).build_sync()
        assert fake.calls == []
        fake.close_all()
