"""Device edges on the real kernel: what a closed device says whatever it is given, route
removals at metric 0, and what "running" means."""

from __future__ import annotations

import errno
import subprocess

import anyio
import pytest

from tunflow import ClosedDeviceError, DeviceBuilder, DeviceError, Layer, testing
from tunflow.platform._base import OffloadInfo
from tunflow.platform.linux.tun import LinuxInterface

pytestmark = pytest.mark.needs_root

#: packets a TUN's send refuses when open: a wrong version nibble, one over the MTU, nothing
BAD_PACKETS = [b"\x00" * 20, b"\x45" + bytes(70_000), b""]


@pytest.mark.parametrize("how", ["shutdown", "close"])
@pytest.mark.parametrize("packet", BAD_PACKETS, ids=["malformed", "too-large", "empty"])
def test_a_closed_sync_device_refuses_a_bad_packet_as_closed(
    netns: testing.Netns, how: str, packet: bytes
) -> None:
    # (it raised MalformedPacketError / PacketTooLargeError: a sender's loop that ends on
    # ClosedResourceError, as on the async face, took the device for still open)
    dev = DeviceBuilder().ipv4("10.44.10.1", 24).build_sync()
    getattr(dev, how)()
    with pytest.raises(ClosedDeviceError):
        dev.send(packet)
    with pytest.raises(ClosedDeviceError):
        dev.send_vectored([packet])
    with pytest.raises(ClosedDeviceError):
        dev.send_many([packet])
    dev.close()


@pytest.mark.anyio
@pytest.mark.parametrize("packet", BAD_PACKETS, ids=["malformed", "too-large", "empty"])
async def test_a_closed_async_device_refuses_a_bad_packet_as_closed(
    netns: testing.Netns, packet: bytes
) -> None:
    dev = DeviceBuilder().ipv4("10.44.10.1", 24).build_async()
    await dev.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await dev.send(packet)
    with pytest.raises(anyio.ClosedResourceError):
        dev.send_nowait(packet)
    with pytest.raises(anyio.ClosedResourceError):
        await dev.send_vectored([packet])


def _routes(ns: testing.Netns, name: str) -> set[tuple[str, str | None, int]]:
    """The static routes through ``name`` as ``ip`` lists them: (destination, gateway,
    metric)."""
    return {
        (r["dst"], r.get("gateway"), r.get("metric", 0))
        for family in ("-4", "-6")
        for r in ns.ip_json(family, "route", "show", "dev", name, "proto", "static")
    }


def test_remove_route_at_metric_0_with_a_gateway_never_takes_another_metric(
    netns: testing.Netns,
) -> None:
    # The kernel reads a removal's metric 0 as "any metric" and removes the first route in
    # metric order that matches the gateway: the one at 5 via .3 when none at 0 is via .3
    with DeviceBuilder().ipv4("10.44.14.1", 24).ipv6("fd44:14::1", 64).build_sync() as dev:
        name = dev.name()
        dev.add_route("198.51.100.0/24", gateway="10.44.14.2", metric=0)
        dev.add_route("198.51.100.0/24", gateway="10.44.14.3", metric=5)
        dev.add_route("2001:db8:14::/64", gateway="fd44:14::2", metric=0)
        dev.add_route("2001:db8:14::/64", gateway="fd44:14::3", metric=5)
        every = _routes(netns, name)
        assert every == {
            ("198.51.100.0/24", "10.44.14.2", 0),
            ("198.51.100.0/24", "10.44.14.3", 5),
            ("2001:db8:14::/64", "fd44:14::2", 1024),
            ("2001:db8:14::/64", "fd44:14::3", 5),
        }
        for dest, gw in (("198.51.100.0/24", "10.44.14.3"), ("2001:db8:14::/64", "fd44:14::3")):
            with pytest.raises(DeviceError) as info:
                dev.remove_route(dest, gateway=gw, metric=0)
            assert info.value.errno == errno.ESRCH and "metric 0" in str(info.value)
        assert _routes(netns, name) == every
        # without a gateway: the route at 0 (any gateway), never one at another metric
        dev.remove_route("198.51.100.0/24", metric=0)
        dev.remove_route("2001:db8:14::/64", metric=0)
        assert _routes(netns, name) == {
            ("198.51.100.0/24", "10.44.14.3", 5),
            ("2001:db8:14::/64", "fd44:14::3", 5),
        }
        for dest in ("198.51.100.0/24", "2001:db8:14::/64"):
            with pytest.raises(DeviceError):
                dev.remove_route(dest, metric=0)
        assert len(_routes(netns, name)) == 2


def test_remove_route_at_metric_0_without_a_gateway_matches_a_gatewayed_route_at_0(
    netns: testing.Netns,
) -> None:
    with DeviceBuilder().ipv4("10.44.15.1", 24).build_sync() as dev:
        name = dev.name()
        dev.add_route("198.51.100.0/24", metric=7)  # on-link
        dev.add_route("198.51.100.0/24", gateway="10.44.15.2", metric=0)
        dev.remove_route("198.51.100.0/24", metric=0)
        assert _routes(netns, name) == {("198.51.100.0/24", None, 7)}
        dev.remove_route("198.51.100.0/24")
        assert _routes(netns, name) == set()


def test_is_running_is_up_with_a_reader_attached(netns: testing.Netns) -> None:
    # IFF_RUNNING, not IFF_UP: a TUN's carrier is on only while a reader holds it open, so a
    # persistent TUN that is up but has no reader does not run (no packet goes anywhere)
    name = testing.unique_name("r")
    subprocess.run(["ip", "tuntap", "add", "mode", "tun", "name", name], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    watcher = LinuxInterface(
        name=name, flags=0, offload=OffloadInfo(), layer=Layer.L3, created=False
    )
    try:
        assert "UP" in netns.ip_json("link", "show", name)[0]["flags"]
        assert not watcher.is_running()
        with DeviceBuilder().attach(name).inherit_enable_state().build_sync() as dev:
            assert dev.is_running() and watcher.is_running()
            dev.enabled(False)
            assert not dev.is_running()
            dev.enabled(True)
            assert dev.is_running()
        assert "UP" in netns.ip_json("link", "show", name)[0]["flags"]
        assert not watcher.is_running()  # the reader gone, the link up still
    finally:
        watcher.close()
        subprocess.run(["ip", "link", "del", name], check=True)
