"""The builder's delete_driver() (tun-rs's, Windows/Wintun): WintunDeleteDriver after the
adapter is closed, when the device closes or its build fails; its refusal while an adapter
still uses the driver is a warning, not an error. Windows runs here only through the fake
DLLs."""

from __future__ import annotations

import logging

import pytest

from tunflow import ConfigError, DeviceBuilder, DevicePermissionError, Layer, UnsupportedError
from tunflow.platform.fake import FakeSyscalls, pretend_platform


def _wintun_calls(fake: FakeSyscalls) -> list[str]:
    return [c.name.removeprefix("wintun.") for c in fake.calls if c.name.startswith("wintun.")]


def test_after_the_adapter_is_closed() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg1").delete_driver().wintun_log().build_sync():
            assert fake.named("wintun.WintunDeleteDriver") == []
            fake.calls.clear()
        assert _wintun_calls(fake) == [
            "WintunEndSession",
            "WintunCloseAdapter",
            "WintunDeleteDriver",
            "WintunSetLogger",  # reset last, so the driver's removal is logged too
        ]
        assert fake.named("wintun.WintunDeleteDriver")[0].args == ()
        assert fake.windows.driver_deleted
        fake.close_all()


def test_a_failed_build_deletes_it_too() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        fake.on("iphlpapi.SetIpInterfaceEntry", result=5, times=1)  # ERROR_ACCESS_DENIED
        with pytest.raises(DevicePermissionError):
            DeviceBuilder().name("wg2").mtu(1400).delete_driver().build_sync()
        assert _wintun_calls(fake)[-2:] == ["WintunCloseAdapter", "WintunDeleteDriver"]
        assert fake.windows.driver_deleted
        fake.close_all()


def test_refused_while_another_adapter_uses_it(caplog: pytest.LogCaptureFixture) -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        other = DeviceBuilder().name("wg3").build_sync()
        dev = DeviceBuilder().name("wg4").delete_driver().build_sync()
        with caplog.at_level(logging.WARNING, logger="tunflow.platform.windows"):
            dev.close()  # no exception: the close itself went well
        assert not fake.windows.driver_deleted
        (record,) = [r for r in caplog.records if "WintunDeleteDriver" in r.getMessage()]
        assert record.levelno == logging.WARNING
        assert str(0xE000023D) in record.getMessage()
        assert "wg4" not in fake.windows.adapters
        other.close()
        assert fake.named("wintun.WintunDeleteDriver")  # asked once, by wg4
        assert len(fake.named("wintun.WintunDeleteDriver")) == 1
        fake.close_all()


def test_not_asked_for_no_call() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg5").build_sync():
            pass
        assert fake.named("wintun.WintunDeleteDriver") == []
        fake.close_all()


def test_a_tap_windows_device_refuses_it_before_any_call() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        fake.windows.add_tap_adapter("tap-ovpn")
        builder = DeviceBuilder().layer(Layer.L2).name("tap-ovpn").delete_driver()
        with pytest.raises(UnsupportedError, match="tap-windows6"):
            builder.build_sync()
        assert fake.named("kernel32.CreateFileW") == []
        fake.close_all()


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_the_setter_takes_a_bool(bad: object) -> None:
    with pytest.raises(ConfigError, match="delete_driver"):
        DeviceBuilder().delete_driver(bad)  # type: ignore[arg-type]
