"""if_luid() (tun-rs's, Windows): the interface's NET_LUID as an int — the value
WintunGetAdapterLUID wrote for the adapter (ConvertInterfaceAliasToLuid for tap-windows6),
which every IP Helper call of the device names. UnsupportedError elsewhere, before any system
call. Windows runs here only through the fake DLLs."""

from __future__ import annotations

import anyio
import pytest

from tests.unit.platforms.support import UNIX_DEVICES
from tunflow import ClosedDeviceError, DeviceBuilder, Layer, UnsupportedError
from tunflow.platform.fake import FakeSyscalls, pretend_platform


def test_the_luid_wintun_gave() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg1").mtu(1400).build_sync() as dev:
            adapter = fake.windows.adapters["wg1"]
            (call,) = fake.named("wintun.WintunGetAdapterLUID")
            assert call.args[0] == adapter.handle
            assert dev.if_luid() == call.args[1]._obj.Value == adapter.luid
            rows = [c.args[0]._obj for c in fake.named("iphlpapi.SetIpInterfaceEntry")]
            assert {r.InterfaceLuid.Value for r in rows} == {dev.if_luid()}
            fake.calls.clear()
            assert isinstance(dev.if_luid(), int)
            assert fake.calls == []  # it never changes: no call to ask again
        with pytest.raises(ClosedDeviceError):
            dev.if_luid()
        fake.close_all()


def test_the_luid_of_a_tap_windows_adapter() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        fake.windows.add_tap_adapter("tap-ovpn")
        builder = DeviceBuilder().layer(Layer.L2).name("tap-ovpn")
        with builder.build_sync() as dev:
            (call,) = fake.named("iphlpapi.ConvertInterfaceAliasToLuid")
            assert call.args[0] == "tap-ovpn"
            assert dev.if_luid() == call.args[1]._obj.Value
            (luid,) = [k for k, v in fake.windows.interfaces.items() if v["alias"] == "tap-ovpn"]
            assert dev.if_luid() == luid
        fake.close_all()


def test_if_luid_on_an_async_device_is_a_plain_method() -> None:
    async def main() -> None:
        async with DeviceBuilder().name("wg2").build_async() as dev:
            assert dev.if_luid() == fake.windows.adapters["wg2"].luid

    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        anyio.run(main)
        fake.close_all()


@pytest.mark.parametrize(("platform", "layer"), UNIX_DEVICES)
def test_if_luid_is_refused_off_windows(platform: str, layer: Layer) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().layer(layer).build_sync() as dev:
            fake.calls.clear()
            with pytest.raises(UnsupportedError, match="Windows only"):
                dev.if_luid()
            assert fake.calls == []
        fake.close_all()
