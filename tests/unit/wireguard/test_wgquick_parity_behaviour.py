"""The wg-quick file format against the real tools: what ``wg setconf`` and wg-quick refuse
(checked with wireguard-tools 1.0.20210914 on a wireguard-go interface) is refused here too."""

from __future__ import annotations

import pytest

from tests.unit.wireguard.test_wgquick import KEY_A, PUB_B
from tunflow import ConfigError
from tunflow.wireguard.wgquick import parse_wgquick


def peer_file(allowed_ips: str) -> str:
    return f"[Interface]\nPrivateKey = {KEY_A}\n[Peer]\nPublicKey = {PUB_B}\n{allowed_ips}\n"


@pytest.mark.parametrize(
    "line",
    [
        "AllowedIPs = 10.0.0.0/8, , fd00::/64",
        "AllowedIPs = 10.0.0.0/8,",
        "AllowedIPs = ,10.0.0.0/8",
        "AllowedIPs =",
    ],
)
def test_an_empty_allowed_ips_item_is_refused_as_wg_refuses_it(line: str) -> None:
    # wg setconf: "Unable to parse IP address: `'" (an empty item), "Line unrecognized:
    # `AllowedIPs='" (an empty value); tunflow dropped them, so a file `tunflow up` took made
    # `wg syncconf wg0 <(tunflow strip wg0)` fail
    with pytest.raises(ConfigError, match=r"^wg0\.conf: line 5: AllowedIPs: .*empty"):
        parse_wgquick(peer_file(line), file="wg0.conf")


def test_allowed_ips_spaced_around_commas_still_read() -> None:
    config = parse_wgquick(peer_file("AllowedIPs = 10.0.0.0/8 ,fd00::/64 , 10.1.0.0/16"))
    assert [str(n) for n in config.peers[0].allowed_ips] == [
        "10.0.0.0/8",
        "fd00::/64",
        "10.1.0.0/16",
    ]


@pytest.mark.parametrize(("value", "saved"), [("true", True), ("TRUE", True), ("False", False)])
def test_save_config_is_true_or_false_in_any_case(value: str, saved: bool) -> None:
    config = parse_wgquick(f"[Interface]\nPrivateKey = {KEY_A}\nSaveConfig = {value}\n")
    assert config.save_config is saved


@pytest.mark.parametrize("value", ["yes", "on", "1", "no", "off", "0"])
def test_save_config_other_than_true_or_false_is_refused_as_wg_quick_refuses_it(
    value: str,
) -> None:
    # wg-quick's read_bool: "`yes' is neither true nor false" (case "$2" in true|false, under
    # nocasematch); tunflow took yes/on/1 and no/off/0, so a file it ran stopped wg-quick
    with pytest.raises(
        ConfigError, match=r"^wg0\.conf: line 3: SaveConfig: .*neither true nor false"
    ):
        parse_wgquick(f"[Interface]\nPrivateKey = {KEY_A}\nSaveConfig = {value}\n", file="wg0.conf")


def test_an_mtu_below_1280_with_an_ipv6_address_is_refused_naming_the_mtu_line() -> None:
    # IPv6 needs 1280: wg-quick sets MTU after the addresses and the kernel silently drops
    # the IPv6 ones; tunflow up ran PreUp and then failed at the device ("IPv6 addresses
    # need an MTU of at least 1280"), naming neither file nor line. Now refused when read.
    text = f"[Interface]\nPrivateKey = {KEY_A}\nMTU = 1000\nAddress = 10.0.0.1/24, fd00::1/64\n"
    with pytest.raises(
        ConfigError, match=r"^wg0\.conf: line 3: MTU: 1000 is below 1280.*fd00::1/64"
    ):
        parse_wgquick(text, file="wg0.conf")
    assert parse_wgquick(text.replace(", fd00::1/64", "")).mtu == 1000
    assert parse_wgquick(text.replace("1000", "1280")).mtu == 1280


@pytest.mark.parametrize("endpoint", ["1.2.3.4 :51820", "peer host:51820", "[fd00:: 1]:51820"])
def test_a_space_inside_an_endpoint_is_refused_when_read(endpoint: str) -> None:
    # wg drops every space of a line ("1.2.3.4 :51820" is 1.2.3.4:51820 to it); tunflow took
    # the host with its space and looked it up as a name when the interface came up
    # ("does not resolve", after wg's retries when DNS is unreachable)
    with pytest.raises(ConfigError, match=r"^line 5: Endpoint: .*space"):
        parse_wgquick(peer_file(f"Endpoint = {endpoint}"))
