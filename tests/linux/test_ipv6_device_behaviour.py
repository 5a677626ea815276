"""IPv6 on a device, as a user of the configuration calls meets it, on the real kernel."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Interface

import pytest

from tests.helpers import refuse_renames_while_up
from tunflow import ConfigError, DeviceBuilder, SyncDevice, testing

pytestmark = pytest.mark.needs_root


def _v6(dev: SyncDevice) -> set[str]:
    return {str(a) for a in dev.addresses() if a.version == 6}


def test_remove_address_with_a_zone_is_a_config_error(netns: testing.Netns) -> None:
    # add_address_v6, the builder, add_route and its gateway refuse a "%zone"; remove_address
    # looked the scoped address up, never found it (fe80::5%tf0 is not fe80::5) and said the
    # interface had no such address while it had.
    with DeviceBuilder().ipv6("fd71::1", 64).build_sync() as dev:
        name = dev.name()
        dev.add_address_v6("fe80::5", 64)
        before = _v6(dev)
        for scoped in (
            f"fe80::5%{name}",
            f"fe80::5%{name}/64",
            IPv6Interface(f"fe80::5%{name}/64"),
            IPv6Address(f"fe80::5%{name}"),
        ):
            with pytest.raises(ConfigError, match="takes no scope"):
                dev.remove_address(scoped)
        assert _v6(dev) == before
        dev.remove_address("fe80::5")
        assert "fe80::5/64" not in _v6(dev)


def test_an_ipv6_interface_with_a_zone_is_refused_as_its_text_is(netns: testing.Netns) -> None:
    # "fe80::1%eth0/64" was refused, but IPv6Interface("fe80::1%eth0/64") — whose scope is
    # the interface's, not its .ip's — had the scope dropped without a word.
    scoped = IPv6Interface("fe80::1%eth0/64")
    with pytest.raises(ConfigError, match="takes no scope"):
        DeviceBuilder().ipv6(scoped)
    with pytest.raises(ConfigError, match="takes no scope"):
        DeviceBuilder().ipv6_tuple([scoped])
    with DeviceBuilder().ipv6("fd72::1", 64).build_sync() as dev:
        before = _v6(dev)
        with pytest.raises(ConfigError, match="takes no scope"):
            dev.add_address_v6(scoped)
        assert _v6(dev) == before


def test_a_rename_through_down_and_up_keeps_a_link_local_address_one_added(
    netns: testing.Netns,
) -> None:
    # A kernel that refuses to rename a running link has it taken down (which drops every
    # IPv6 address), renamed and brought up again with its addresses put back — but not the
    # link-local ones, so an fe80:: address the user had added was lost. The kernel's own
    # comes back by itself, the same.
    with DeviceBuilder().ipv6("fd73::1", 64).build_sync() as dev:
        dev.add_address_v6("fe80::5", 64)
        dev.add_address_v6("fe80::6", 128)
        before = _v6(dev)
        assert {"fd73::1/64", "fe80::5/64", "fe80::6/128"} < before
        assert len(before) == 4  # and the kernel's own link-local address
        nl = dev._shared.interface._nl  # type: ignore[union-attr]
        refuse_renames_while_up(nl)
        try:
            dev.set_name(testing.unique_name("r"))
        finally:
            del nl.set_link
        assert _v6(dev) == before
        assert dev.is_running()
