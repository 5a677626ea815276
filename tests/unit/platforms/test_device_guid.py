"""The builder's device_guid() (tun-rs's, Windows/Wintun): the GUID an adapter is created with,
passed as WintunCreateAdapter's RequestedGUID in Windows' GUID layout; an existing adapter of
the name is reused only with that GUID. Windows runs here only through the fake DLLs."""

from __future__ import annotations

import struct
import uuid

import pytest

from tests.unit.platforms.support import UNIX_DEVICES
from tunflow import ConfigError, DeviceBuilder, DeviceBusyError, Layer, UnsupportedError
from tunflow.platform.fake import FakeSyscalls, _FakeAdapter, pretend_platform
from tunflow.platform.windows.iphlpapi import IpHelper

WANTED = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")


@pytest.mark.parametrize(
    "given",
    [
        WANTED,
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "{6BA7B810-9DAD-11D1-80B4-00C04FD430C8}",
        "6ba7b8109dad11d180b400c04fd430c8",
        " {6ba7b810-9dad-11d1-80b4-00c04fd430c8} ",
    ],
)
def test_a_uuid_or_its_text(given: uuid.UUID | str) -> None:
    assert DeviceBuilder().device_guid(given).config().device_guid == WANTED


@pytest.mark.parametrize(
    "bad",
    ["", "nope", "6ba7b810-9dad-11d1-80b4", str(uuid.UUID(int=0)), uuid.UUID(int=0), 1, None],
)
def test_a_bad_guid_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="device_guid"):
        DeviceBuilder().device_guid(bad)  # type: ignore[arg-type]


def test_the_adapter_is_created_with_it() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg1").device_guid(WANTED).build_sync() as dev:
            (create,) = fake.named("wintun.WintunCreateAdapter")
            assert create.args[:2] == ("wg1", "tunflow")
            raw = bytes(create.args[2]._obj)  # a GUID passed by reference
            assert raw == WANTED.bytes_le
            data1, data2, data3 = struct.unpack_from("<IHH", raw)
            assert (data1, data2, data3) == (0x6BA7B810, 0x9DAD, 0x11D1)
            assert raw[8:] == bytes.fromhex("80b400c04fd430c8")
            assert str(create.args[2]._obj) == "{6BA7B810-9DAD-11D1-80B4-00C04FD430C8}"
            assert IpHelper(fake).luid_to_guid(dev.if_luid()).to_uuid() == WANTED
        fake.close_all()


def _existing(fake: FakeSyscalls, name: str, guid: uuid.UUID) -> _FakeAdapter:
    """An adapter of another process's, healthy, with the GUID ``guid``."""
    w = fake.windows
    adapter = _FakeAdapter(name, w.new_luid(), w.new_handle(), False)
    w.adapters[name] = adapter
    w.add_interface(adapter.luid, name)
    w.guids[adapter.luid] = guid.bytes_le
    return adapter


def test_an_existing_adapter_with_that_guid_is_reused() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        adapter = _existing(fake, "wg2", WANTED)
        with DeviceBuilder().name("wg2").device_guid(WANTED).build_sync() as dev:
            assert dev.if_luid() == adapter.luid
            assert fake.named("wintun.WintunCreateAdapter") == []
        fake.close_all()


def test_an_existing_adapter_with_another_guid_is_refused() -> None:
    other = uuid.UUID("00000000-0000-0000-0000-000000000001")
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        adapter = _existing(fake, "wg3", other)
        with pytest.raises(DeviceBusyError, match="6BA7B810") as info:
            DeviceBuilder().name("wg3").device_guid(WANTED).build_sync()
        assert "00000000-0000-0000-0000-000000000001" in str(info.value)
        assert fake.named("wintun.WintunStartSession") == []
        assert [c.args for c in fake.named("wintun.WintunCloseAdapter")] == [(adapter.handle,)]
        assert fake.windows.adapters["wg3"] is adapter  # not ours: left as it was
        # without a GUID asked for, it is reused as before
        with DeviceBuilder().name("wg3").build_sync() as dev:
            assert dev.if_luid() == adapter.luid
        fake.close_all()


def test_a_tap_windows_adapter_refuses_it_before_any_call() -> None:
    with pretend_platform("windows") as fake:
        assert isinstance(fake, FakeSyscalls)
        fake.windows.add_tap_adapter("tap-ovpn")
        builder = DeviceBuilder().layer(Layer.L2).name("tap-ovpn").device_guid(WANTED)
        with pytest.raises(UnsupportedError, match="tap-windows6"):
            builder.build_sync()
        assert fake.named("kernel32.CreateFileW") == []
        fake.close_all()


@pytest.mark.parametrize(("platform", "layer"), UNIX_DEVICES)
def test_ignored_elsewhere(platform: str, layer: Layer) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().layer(layer).device_guid(WANTED).build_sync() as dev:
            assert dev.is_running()
        fake.close_all()
