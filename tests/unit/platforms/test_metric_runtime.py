"""set_metric() at run time (tun-rs's ``set_metric``): Windows's interface metric of both
families through ``SetIpInterfaceEntry``, as the builder's ``metric()``; refused with
UnsupportedError elsewhere, before any system call, as the builder's is."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from tests.unit.platforms.support import UNIX_DEVICES
from tunflow import ClosedDeviceError, ConfigError, DeviceBuilder, Layer, UnsupportedError
from tunflow.platform import windows
from tunflow.platform.fake import FakeSyscalls, pretend_platform
from tunflow.platform.windows import iphlpapi


def _settings(fake: FakeSyscalls) -> list[dict[str, int]]:
    (iface,) = fake.windows.interfaces.values()
    return [iface["v4"], iface["v6"]]


def test_set_metric_sets_both_families_on_windows() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg5").build_sync() as dev:
            fake.calls.clear()
            dev.set_metric(42)
            sets = [c.args[0]._obj for c in fake.named("iphlpapi.SetIpInterfaceEntry")]
            assert [r.Family for r in sets] == [iphlpapi.AF_INET, iphlpapi.AF_INET6]
            assert all(r.Metric == 42 and r.UseAutomaticMetric == 0 for r in sets)
            assert [(s["metric"], s["auto"]) for s in _settings(fake)] == [(42, 0), (42, 0)]
            assert all(s["mtu"] == 1500 for s in _settings(fake))  # the MTU stays
            dev.set_metric(0)
            dev.set_metric(0xFFFF)
            assert [s["metric"] for s in _settings(fake)] == [0xFFFF, 0xFFFF]
        with pytest.raises(ClosedDeviceError):
            dev.set_metric(5)
        fake.close_all()


def test_set_metric_on_a_machine_without_ipv6() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        fake.windows.ipv6 = False
        with DeviceBuilder().name("wg6").build_sync() as dev:
            fake.calls.clear()
            dev.set_metric(9)
            sets = [c.args[0]._obj for c in fake.named("iphlpapi.SetIpInterfaceEntry")]
            assert [r.Family for r in sets] == [iphlpapi.AF_INET]
        fake.close_all()


def test_set_metric_on_a_tap_windows_adapter(make_fake: Callable[[str], FakeSyscalls]) -> None:
    from .test_windows import tap_config

    fake = make_fake("windows")
    fake.windows.add_tap_adapter("tap-ovpn")
    iface, queue = windows.open_device(tap_config(), syscalls=fake)
    iface.set_metric(3)
    (settings,) = [s for s in fake.windows.interfaces.values() if s["alias"] == "tap-ovpn"]
    assert settings["v4"]["metric"] == settings["v6"]["metric"] == 3
    queue.close()
    iface.close()


@pytest.mark.parametrize("bad", [-1, 0x10000, True, 1.0, "5", None])
def test_a_bad_metric_is_refused_before_any_call(bad: object) -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg7").build_sync() as dev:
            fake.calls.clear()
            with pytest.raises(ConfigError, match="metric"):
                dev.set_metric(bad)  # type: ignore[arg-type]
            assert fake.calls == []
        fake.close_all()


def test_a_refused_metric_is_a_device_error() -> None:
    from tunflow import DevicePermissionError

    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg8").build_sync() as dev:
            fake.on("iphlpapi.SetIpInterfaceEntry", result=5)  # ERROR_ACCESS_DENIED
            with pytest.raises(DevicePermissionError, match="SetIpInterfaceEntry"):
                dev.set_metric(4)
        fake.close_all()


@pytest.mark.parametrize(("platform", "layer"), UNIX_DEVICES)
def test_set_metric_is_refused_off_windows(platform: str, layer: Layer) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().layer(layer).ipv4("10.0.0.1", 24).build_sync() as dev:
            fake.calls.clear()
            with pytest.raises(UnsupportedError, match="metric is Windows only"):
                dev.set_metric(10)
            with pytest.raises(ConfigError):
                dev.set_metric(-1)
            assert fake.calls == []
        fake.close_all()


def test_set_metric_is_awaited_on_an_async_device() -> None:
    async def main() -> None:
        async with DeviceBuilder().name("wg9").build_async() as dev:
            await dev.set_metric(17)
            assert [s["metric"] for s in _settings(fake)] == [17, 17]
            with pytest.raises(ConfigError):
                await dev.set_metric(-1)

    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        anyio.run(main)
        fake.close_all()


def test_async_set_metric_is_refused_off_windows() -> None:
    async def main() -> None:
        async with DeviceBuilder().ipv4("10.0.0.1", 24).build_async() as dev:
            with pytest.raises(UnsupportedError, match="metric is Windows only"):
                await dev.set_metric(10)

    with pretend_platform("freebsd") as fake:
        anyio.run(main)
        fake.close_all()
