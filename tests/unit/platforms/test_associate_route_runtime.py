"""associate_route() / set_associate_route() at run time (tun-rs's ``associate_route`` and
``set_associate_route``) on a macOS utun and the BSD tuns, through the fake system-call layer:
the subnet routes of the addresses the device has follow the setting, and later address
changes add or leave them as it says; a TAP's kernel adds the route itself."""

from __future__ import annotations

import errno
from ipaddress import IPv4Address, ip_network

import anyio
import pytest

from tunflow import ConfigError, DeviceBuilder, DeviceError, Layer, UnsupportedError
from tunflow.platform.fake import FakeSyscalls, pretend_platform

TUNS = [("darwin", "utun7"), ("freebsd", "tun3"), ("openbsd", "tun3"), ("netbsd", "tun3")]


def _builder(name: str) -> DeviceBuilder:
    return DeviceBuilder().name(name).ipv4("10.0.0.1", 24).ipv6("fd00::1", 64)


def _routes(fake: FakeSyscalls, index: int) -> set[object]:
    return {dest for dest, gateway, at in fake.routes if at == index and gateway is None}


SUBNETS = {ip_network("10.0.0.0/24"), ip_network("fd00::/64")}


@pytest.mark.parametrize(("platform", "name"), TUNS)
def test_turning_it_off_removes_the_subnet_routes_and_on_puts_them_back(
    platform: str, name: str
) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with _builder(name).build_sync() as dev:
            index = dev.if_index()
            assert dev.associate_route() is True
            assert _routes(fake, index) == SUBNETS
            dev.set_associate_route(False)
            assert dev.associate_route() is False
            assert _routes(fake, index) == set()
            assert {a.ip for a in dev.addresses()} >= {IPv4Address("10.0.0.1")}
            # later address changes leave the route alone
            dev.add_address_v4("10.1.0.1", 16)
            assert _routes(fake, index) == set()
            dev.set_associate_route(True)
            assert _routes(fake, index) == SUBNETS | {ip_network("10.1.0.0/16")}
            dev.remove_address("10.1.0.1")
            assert _routes(fake, index) == SUBNETS
        fake.close_all()


@pytest.mark.parametrize(("platform", "name"), TUNS)
def test_off_from_the_builder_and_on_at_run_time(platform: str, name: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with _builder(name).associate_route(False).build_sync() as dev:
            index = dev.if_index()
            assert dev.associate_route() is False
            assert _routes(fake, index) == set()
            fake.calls.clear()
            dev.set_associate_route(False)  # as it is: no system call
            assert fake.calls == []
            dev.set_associate_route(True)
            assert _routes(fake, index) == SUBNETS
            dev.remove_address("10.0.0.1")
            assert _routes(fake, index) == {ip_network("fd00::/64")}
        fake.close_all()


def test_two_addresses_in_one_subnet_make_one_route_and_link_local_is_left() -> None:
    with pretend_platform("freebsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("tun4").associate_route(False).build_sync() as dev:
            index = dev.if_index()
            dev.add_address_v4("10.0.0.1", 24)
            dev.add_address_v4("10.0.0.2", 24)
            dev.add_address_v6("fe80::1", 64)
            fake.calls.clear()
            dev.set_associate_route(True)
            writes = [c for c in fake.calls if c.name == "write"]
            assert len(writes) == 1  # one RTM_ADD: 10.0.0.0/24 once, fe80::/64 not at all
            assert _routes(fake, index) == {ip_network("10.0.0.0/24")}
        fake.close_all()


def test_a_route_that_exists_or_is_gone_already_is_fine() -> None:
    with pretend_platform("freebsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        with _builder("tun5").build_sync() as dev:
            index = dev.if_index()
            dev.remove_route(ip_network("10.0.0.0/24"))  # ESRCH on the way off
            dev.set_associate_route(False)
            assert _routes(fake, index) == set()
            dev.add_route(ip_network("fd00::/64"))  # EEXIST on the way on
            dev.set_associate_route(True)
            assert _routes(fake, index) == SUBNETS
        fake.close_all()


def test_a_refused_route_puts_back_what_the_call_changed() -> None:
    with pretend_platform("freebsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        with _builder("tun6").associate_route(False).build_sync() as dev:
            index = dev.if_index()
            # the first RTM_ADD (10.0.0.0/24) goes through, the second (fd00::/64) is refused
            before = len(fake.routes)
            fake.fail("write", errno.ENOBUFS, when=lambda c: len(fake.routes) > before)
            with pytest.raises(DeviceError):
                dev.set_associate_route(True)
            assert _routes(fake, index) == set()
            assert dev.associate_route() is False
        fake.close_all()


def test_a_refused_route_leaves_a_route_the_call_found_in_place() -> None:
    """A subnet route that existed before the call (the user's own) is not the call's to
    put back: a later refusal removes only the routes the call added."""
    with pretend_platform("freebsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        with _builder("tun6").associate_route(False).build_sync() as dev:
            index = dev.if_index()
            dev.add_route(ip_network("10.0.0.0/24"))  # EEXIST on the way on
            v6 = ip_network("fd00::/64").network_address.packed
            fake.fail("write", errno.ENOBUFS, when=lambda c: v6 in bytes(c.args[1]))
            with pytest.raises(DeviceError):
                dev.set_associate_route(True)
            assert _routes(fake, index) == {ip_network("10.0.0.0/24")}
            assert dev.associate_route() is False
        fake.close_all()


@pytest.mark.parametrize("platform", ["darwin", "freebsd"])
def test_a_tap_is_always_off(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().layer(Layer.L2).build_sync() as dev:
            assert dev.associate_route() is False
            fake.calls.clear()
            dev.set_associate_route(False)
            with pytest.raises(UnsupportedError, match="TAP"):
                dev.set_associate_route(True)
            assert fake.calls == []
        fake.close_all()


@pytest.mark.parametrize("platform", ["linux", "windows"])
def test_unsupported_where_the_system_adds_the_route(platform: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        with DeviceBuilder().name("wg9").build_sync() as dev:
            with pytest.raises(UnsupportedError, match="associate_route"):
                dev.associate_route()
            with pytest.raises(UnsupportedError, match="associate_route"):
                dev.set_associate_route(True)
        fake.close_all()


def test_not_a_bool_is_a_config_error() -> None:
    with pretend_platform("freebsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        with _builder("tun7").build_sync() as dev:
            fake.calls.clear()
            with pytest.raises(ConfigError, match="True or False"):
                dev.set_associate_route("false")  # type: ignore[arg-type]
            assert fake.calls == []
        fake.close_all()


def test_the_async_face() -> None:
    async def main() -> None:
        async with _builder("tun8").build_async() as dev:
            await dev.set_associate_route(False)
            assert await dev.associate_route() is False
            assert not [r for r in fake.routes if r[1] is None and r[0] in SUBNETS]

    with pretend_platform("freebsd") as fake:
        assert isinstance(fake, FakeSyscalls)
        anyio.run(main)
        fake.close_all()
