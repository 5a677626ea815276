"""What a new user met in the first hour: an address written with its prefix, the hint of
``tunflow up`` over a name taken by another kind of interface."""

from __future__ import annotations

import json
from collections.abc import Callable
from ipaddress import IPv4Interface, IPv6Interface
from pathlib import Path

import pytest

import tunflow.wireguard
from tunflow import ConfigError, DeviceBuilder
from tunflow.cli import vpn
from tunflow.netconfig.device import parse_ipv4, parse_ipv6


def test_ipv4_takes_an_address_with_its_prefix() -> None:
    config = (
        DeviceBuilder()
        .ipv4("10.0.0.1/24")
        .ipv4(IPv4Interface("10.1.0.1/16"), destination="10.1.0.2")
        .ipv4(" 10.2.0.1/255.255.255.0 ")
        .ipv4("10.3.0.1", 24)  # (the tun-rs form, as before)
        .config()
    )
    assert [s.interface for s in config.ipv4] == [
        IPv4Interface("10.0.0.1/24"),
        IPv4Interface("10.1.0.1/16"),
        IPv4Interface("10.2.0.1/24"),
        IPv4Interface("10.3.0.1/24"),
    ]
    assert str(config.ipv4[1].destination) == "10.1.0.2"


def test_ipv6_takes_an_address_with_its_prefix() -> None:
    config = (
        DeviceBuilder()
        .ipv6("fd00::1/64")
        .ipv6(IPv6Interface("fd01::1/48"))
        .ipv6("fd02::1", 56)
        .config()
    )
    assert config.ipv6 == (
        IPv6Interface("fd00::1/64"),
        IPv6Interface("fd01::1/48"),
        IPv6Interface("fd02::1/56"),
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_ipv4("10.0.0.1"), "needs a prefix"),
        (lambda: parse_ipv4("10.0.0.1/24", 24), "already has a prefix"),
        (lambda: parse_ipv4(IPv4Interface("10.0.0.1/24"), 24), "already has a prefix"),
        (lambda: parse_ipv6("fd00::1"), "needs a prefix"),
        (lambda: parse_ipv6("fd00::1/64", 64), "already has a prefix"),
        (lambda: parse_ipv6(IPv6Interface("fd00::1/64"), 64), "already has a prefix"),
    ],
)
def test_no_prefix_or_two_is_a_config_error_showing_both_forms(call: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        call()  # type: ignore[operator]
    text = str(refused.value)
    assert "/" in text and "(" in text  # both forms: "a/n" and ("a", n)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_ipv4("10.0.0.1/"), "nothing after"),
        (lambda: parse_ipv4("10.0.0.1/33"), "outside 0..32"),
        (lambda: parse_ipv4("10.0.0.1/0.0.0.255"), "not contiguous"),  # (ipaddress: a hostmask)
        (lambda: parse_ipv4("fd00::1/64"), "not an IPv4 address"),
        (lambda: parse_ipv4("224.0.0.1/4"), "multicast"),
        (lambda: parse_ipv6("fd00::1/129"), "outside 0..128"),
        (lambda: parse_ipv6("fe80::1%eth0/64"), "no scope"),
        (lambda: parse_ipv6(IPv4Interface("10.0.0.1/24")), "not an IPv6 address"),
    ],
)
def test_a_bad_address_with_its_prefix_is_a_config_error(call: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()  # type: ignore[operator]


@pytest.fixture
def stand_in_ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """An ``ip`` that shows ``wg7`` as a link of the kind given; a control-socket directory of
    the test's own; ``wg7`` is there to stay."""
    monkeypatch.setattr(tunflow.wireguard, "UAPI_DIRECTORY", str(tmp_path / "wg"), raising=False)
    (tmp_path / "wg").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(vpn, "_link_stays", lambda name: True)

    def show(kind: str) -> None:
        shown = json.dumps([{"ifname": "wg7", "linkinfo": {"info_kind": kind}}])
        ip = tmp_path / "ip"
        ip.write_text(f"#!/bin/sh\necho '{shown}'\n")
        ip.chmod(0o755)

    return show


@pytest.mark.parametrize("kind", ["veth", "tun", "dummy"])
def test_up_over_a_link_down_leaves_alone_does_not_suggest_down(
    stand_in_ip: Callable[[str], None], kind: str
) -> None:
    stand_in_ip(kind)
    with pytest.raises(ConfigError) as refused:
        vpn._refuse_existing_link("wg7")
    text = str(refused.value)
    assert f"exists already and is a {kind}, not a WireGuard interface" in text
    assert "tunflow down wg7" not in text


def test_up_over_a_link_down_takes_suggests_down(stand_in_ip: Callable[[str], None]) -> None:
    stand_in_ip("tun")
    Path(tunflow.wireguard.UAPI_DIRECTORY, "wg7.sock").touch()  # (wireguard-go's)
    with pytest.raises(ConfigError, match="tunflow down wg7"):
        vpn._refuse_existing_link("wg7")
    stand_in_ip("wireguard")
    with pytest.raises(ConfigError, match="tunflow down wg7"):
        vpn._refuse_existing_link("wg7")
