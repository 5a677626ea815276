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
