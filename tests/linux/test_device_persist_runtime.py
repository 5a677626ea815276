"""persist() at run time (tun-rs's ``persist()``, Linux ``TUNSETPERSIST``) on both faces."""

from __future__ import annotations

import pytest

from tests.helpers import tun_info
from tunflow import (
    ClosedDeviceError,
    ConfigError,
    DeviceBuilder,
    DeviceNotFoundError,
    testing,
)

pytestmark = pytest.mark.needs_root


def _links(ns: testing.Netns) -> set[str]:
    return {link["ifname"] for link in ns.ip_json("link", "show")}


def test_persist_keeps_a_built_device_and_false_lets_it_go(netns: testing.Netns) -> None:
    name = testing.unique_name("p")
    with DeviceBuilder().name(name).ipv4("10.61.0.1", 24).build_sync() as dev:
        assert tun_info(netns, name)["persist"] is False
        dev.persist()
        assert tun_info(netns, name)["persist"] is True
    assert name in _links(netns)  # kept, configured
    with DeviceBuilder().attach(name).build_sync() as again:
        assert any(str(a) == "10.61.0.1/24" for a in again.addresses())
        again.persist(False)
        assert tun_info(netns, name)["persist"] is False
    assert name not in _links(netns)


def test_persist_false_on_an_ip_tuntap_device_removes_it_at_close(netns: testing.Netns) -> None:
    name = testing.unique_name("p")
    netns.run("ip", "tuntap", "add", "dev", name, "mode", "tap")
    with DeviceBuilder().attach(name).layer("tap").build_sync() as dev:
        dev.persist(False)
        dev.persist(False)  # (already off: nothing changes)
    assert name not in _links(netns)


def test_persist_through_one_queue_of_a_multi_queue_device(netns: testing.Netns) -> None:
    name = testing.unique_name("p")
    first = DeviceBuilder().name(name).multi_queue().build_sync()
    second = first.try_clone()
    second.persist()
    first.close()
    second.close()
    try:
        assert tun_info(netns, name)["persist"] is True
    finally:
        netns.run("ip", "tuntap", "del", "dev", name, "mode", "tun", "multi_queue")


def test_persist_errors_are_typed(netns: testing.Netns) -> None:
    name = testing.unique_name("p")
    dev = DeviceBuilder().name(name).build_sync()
    with pytest.raises(ConfigError, match="True or False"):
        dev.persist("false")  # type: ignore[arg-type]
    assert tun_info(netns, name)["persist"] is False
    dev.shutdown()  # the fd stays open: configuration still works
    dev.persist(True)
    dev.persist(False)
    netns.run("ip", "link", "del", name)
    with pytest.raises(DeviceNotFoundError, match="is gone"):
        dev.persist()
    dev.close()
    with pytest.raises(ClosedDeviceError):
        dev.persist()


@pytest.mark.anyio
async def test_async_persist(netns: testing.Netns) -> None:
    name = testing.unique_name("p")
    async with DeviceBuilder().name(name).build_async() as dev:
        await dev.persist()
        assert tun_info(netns, name)["persist"] is True
        with pytest.raises(ConfigError):
            await dev.persist(1)  # type: ignore[arg-type]
        await dev.persist(False)
    assert name not in _links(netns)
    with pytest.raises(ClosedDeviceError):
        await dev.persist()
