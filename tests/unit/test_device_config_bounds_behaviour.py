"""DeviceConfig.validate's bounds and DeviceBuilder's setter checks at their edges: what a
mutation of each comparison would change (the rest in test_builder.py and
test_builder_behaviour.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tunflow import ConfigError, DeviceBuilder, DeviceConfig


@pytest.mark.parametrize("mask", ["ffff:ffff::ffff", "ffff:0:ffff::", "0:ffff::"])
def test_an_ipv6_netmask_with_a_gap_is_refused(mask: str) -> None:
    # a netmask is a prefix: one with a hole in it names no prefix length (not its count of 1s)
    with pytest.raises(ConfigError, match="not contiguous"):
        DeviceBuilder().ipv6("fd00::1", mask)


def test_a_contiguous_ipv6_netmask_is_its_prefix_length() -> None:
    config = DeviceBuilder().ipv6("fd00::1", "ffff:ffff:ffff:fff0::").config()
    assert config.ipv6[0].network.prefixlen == 60


@pytest.mark.parametrize("name", [".", ".."])
def test_a_dot_name_is_refused_by_the_setter(name: str) -> None:
    # "Each setter checks its own value at once": not left to the build
    with pytest.raises(ConfigError, match="'\\.'/'\\.\\.'"):
        DeviceBuilder().name(name)
    with pytest.raises(ConfigError):
        DeviceConfig(name=name).validate()


def test_a_dotted_name_that_is_not_a_dot_is_taken() -> None:
    assert DeviceBuilder().name("tf.0").config().name == "tf.0"


@pytest.mark.parametrize("mtu", [68, 65535])
def test_validate_takes_the_mtu_bounds_themselves(mtu: int) -> None:
    DeviceConfig(mtu=mtu).validate()


@pytest.mark.parametrize("mtu", [67, 65536, 0])
def test_validate_refuses_an_mtu_outside_its_bounds(mtu: int) -> None:
    with pytest.raises(ConfigError, match=r"outside 68\.\.65535"):
        DeviceConfig(mtu=mtu).validate()


def test_attach_to_a_kernel_numbered_name_is_refused() -> None:
    # attach never creates: "tf%d" names no existing device, only one the kernel would number
    builder = DeviceBuilder().attach("tf%d")
    with pytest.raises(ConfigError, match="needs its name"):
        builder.config()


@pytest.mark.parametrize("field", ["owner", "group"])
def test_validate_refuses_the_no_id_value(field: str) -> None:
    # (uid_t)-1 means "no user" to TUNSETOWNER/TUNSETGROUP, not a user; 0xFFFFFFFE is one
    none: dict[str, Any] = {field: 0xFFFFFFFF}
    with pytest.raises(ConfigError, match=f"{field} 4294967295 is not a valid id"):
        DeviceConfig(**none).validate()
    largest: dict[str, Any] = {field: 0xFFFFFFFE}
    DeviceConfig(**largest).validate()
