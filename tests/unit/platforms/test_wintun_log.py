"""The builder's wintun_log() (tun-rs's, Windows/Wintun): WintunSetLogger with a callback that
sends Wintun's messages to ``logging``, set before the adapter calls and reset (NULL) after the
last such device closes the adapter. Windows runs here only through the fake DLLs."""

from __future__ import annotations

import ctypes
import logging

import pytest

from tunflow import ConfigError, DeviceBuilder, DevicePermissionError
from tunflow.platform.fake import FakeSyscalls, pretend_platform
from tunflow.platform.windows import wintun


def _wintun_calls(fake: FakeSyscalls) -> list[str]:
    return [c.name.removeprefix("wintun.") for c in fake.calls if c.name.startswith("wintun.")]


def _assert_null_logger(args: tuple[object, ...]) -> None:
    """The reset is WintunSetLogger(NULL), passed as a NULL pointer of the callback's type:
    real ctypes refuses ``None`` for a function-pointer argument (ArgumentError)."""
    (callback,) = args
    assert isinstance(callback, wintun.LOGGER_CALLBACK)
    assert ctypes.cast(callback, ctypes.c_void_p).value is None


def test_messages_reach_logging(caplog: pytest.LogCaptureFixture) -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg1").wintun_log().build_sync():
            calls = _wintun_calls(fake)
            assert calls[:3] == ["WintunSetLogger", "WintunOpenAdapter", "WintunCreateAdapter"]
            (set_logger,) = fake.named("wintun.WintunSetLogger")
            assert set_logger.args == (wintun._LOGGER,)
            callback = fake.windows.logger
            with caplog.at_level(logging.INFO, logger="tunflow.platform.windows.wintun"):
                callback(0, 133_000_000_000_000_000, "Creating adapter")
                callback(1, 0, "Retrying")
                callback(2, 0, "Failed to set up adapter")
                callback(7, 0, "odd")
                callback(0, 0, None)
            got = [
                (r.name, r.levelno, r.getMessage())
                for r in caplog.records
                if r.name == "tunflow.platform.windows.wintun"
            ]
            name = "tunflow.platform.windows.wintun"
            assert got == [
                (name, logging.INFO, "Wintun: Creating adapter"),
                (name, logging.WARNING, "Wintun: Retrying"),
                (name, logging.ERROR, "Wintun: Failed to set up adapter"),
                (name, logging.ERROR, "Wintun (level 7): odd"),
                (name, logging.INFO, "Wintun: "),
            ]
            fake.calls.clear()
        # closed: the adapter first (its messages still logged), then the logger reset
        assert _wintun_calls(fake)[-2:] == ["WintunCloseAdapter", "WintunSetLogger"]
        _assert_null_logger(fake.named("wintun.WintunSetLogger")[-1].args)
        assert fake.windows.logger is None
        fake.close_all()


def test_the_last_device_resets_it() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        first = DeviceBuilder().name("wg2").wintun_log().build_sync()
        second = DeviceBuilder().name("wg3").wintun_log().build_sync()
        first.close()
        assert fake.windows.logger is wintun._LOGGER  # wg3 still wants it
        second.close()
        assert fake.windows.logger is None
        fake.close_all()


def test_a_failed_build_resets_it() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        fake.windows.deny_create = True
        with pytest.raises(DevicePermissionError):
            DeviceBuilder().name("wg4").wintun_log().build_sync()
        assert fake.windows.logger is None
        set_first, reset = fake.named("wintun.WintunSetLogger")
        assert set_first.args == (wintun._LOGGER,)
        _assert_null_logger(reset.args)
        fake.windows.deny_create = False
        # refused in configure, after the adapter was made: closed, then the logger reset
        fake.on("iphlpapi.SetIpInterfaceEntry", result=5, times=1)  # ERROR_ACCESS_DENIED
        fake.calls.clear()
        with pytest.raises(DevicePermissionError):
            DeviceBuilder().name("wg5").wintun_log().mtu(1400).build_sync()
        assert _wintun_calls(fake)[-2:] == ["WintunCloseAdapter", "WintunSetLogger"]
        assert fake.windows.logger is None
        with DeviceBuilder().name("wg6").wintun_log().build_sync():
            assert fake.windows.logger is wintun._LOGGER
        assert fake.windows.logger is None  # the count went back to zero each time
        fake.close_all()


def test_not_asked_for_no_call() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg7").build_sync():
            pass
        assert fake.named("wintun.WintunSetLogger") == []
        fake.close_all()


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_the_setter_takes_a_bool(bad: object) -> None:
    with pytest.raises(ConfigError, match="wintun_log"):
        DeviceBuilder().wintun_log(bad)  # type: ignore[arg-type]


def test_the_reset_is_a_null_function_pointer_ctypes_takes() -> None:
    """ctypes converts each argument through argtypes before the call; None is no
    WINTUN_LOGGER_CALLBACK, so WintunSetLogger(None) would raise ctypes.ArgumentError from
    close() (and in place of the real error of a failed build)."""
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        dev = DeviceBuilder().name("wg8").wintun_log().build_sync()
        dev.close()  # no ctypes.ArgumentError
        _assert_null_logger(fake.named("wintun.WintunSetLogger")[-1].args)
        with pytest.raises(TypeError):
            wintun.LOGGER_CALLBACK.from_param(None)
        assert fake.windows.logger is None
        fake.close_all()
