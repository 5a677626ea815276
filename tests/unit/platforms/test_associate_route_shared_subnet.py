"""Removing one of two addresses in one subnet from a macOS/BSD TUN with ``associate_route``
keeps the subnet route the other address still needs (through the fake system-call layer);
the route goes with the last address of the subnet."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from tunflow import DeviceBuilder
from tunflow.platform.fake import FakeSyscalls, pretend_platform

TUNS = [("darwin", "utun7"), ("freebsd", "tun3"), ("openbsd", "tun3"), ("netbsd", "tun3")]


def _routes(fake: FakeSyscalls, index: int) -> set[object]:
    return {dest for dest, gateway, at in fake.routes if at == index and gateway is None}


@pytest.mark.parametrize(("platform", "name"), TUNS)
def test_the_subnet_route_stays_while_another_address_uses_it(platform: str, name: str) -> None:
    with pretend_platform(platform) as fake:
        assert isinstance(fake, FakeSyscalls)
        builder = DeviceBuilder().name(name).ipv4("10.0.0.1", 24).ipv6("fd00::1", 64)
        with builder.build_sync() as dev:
            index = dev.if_index()
            dev.add_address_v4("10.0.0.2", 24)
            dev.add_address_v6("fd00::2", 64)
            subnets = {ip_network("10.0.0.0/24"), ip_network("fd00::/64")}
            assert _routes(fake, index) == subnets
            dev.remove_address("10.0.0.1")
            dev.remove_address("fd00::2")
            assert _routes(fake, index) == subnets
            dev.remove_address("10.0.0.2")
            assert _routes(fake, index) == {ip_network("fd00::/64")}
            dev.remove_address("fd00::1")
            assert _routes(fake, index) == set()
        fake.close_all()
