"""The WireGuard configuration records: endpoints, AllowedIPs, the MTU's range, the peers."""

from __future__ import annotations

import ipaddress
import re

import pytest

from tunflow.errors import ConfigError
from tunflow.wireguard.protocol import InterfaceConfig, PeerConfig, PrivateKey, parse_endpoint
from tunflow.wireguard.protocol.config import format_endpoint

K1 = PrivateKey(bytes(range(32)))
P1 = PrivateKey(bytes(range(1, 33))).public_key()
P2 = PrivateKey(bytes(range(2, 34))).public_key()


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("192.0.2.1:1", ("192.0.2.1", 1)),
        ("192.0.2.1:65535", ("192.0.2.1", 65535)),
        ("[2001:db8::1]:65535", ("2001:db8::1", 65535)),
        (("192.0.2.1", 1), ("192.0.2.1", 1)),
        (("2001:db8::1", 65535), ("2001:db8::1", 65535)),
        # a socket address of AF_INET6 (flow info and scope id after the port)
        (("2001:db8::1", 51820, 0, 0), ("2001:db8::1", 51820)),
        # whitespace around the value is not part of it (wg drops every space of a line)
        (" 192.0.2.1:51820\n", ("192.0.2.1", 51820)),
        ("\t[2001:db8::1]:51820 ", ("2001:db8::1", 51820)),
    ],
)
def test_an_endpoint_is_an_ip_and_a_port_in_1_to_65535(
    value: str | tuple[object, ...], address: tuple[str, int]
) -> None:
    assert parse_endpoint(value) == address
    assert PeerConfig(P1, endpoint=value).endpoint == address


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("192.0.2.1:0", "port must be 1…65535"),
        ("192.0.2.1:65536", "port must be 1…65535"),
        ("[2001:db8::1]:0", "port must be 1…65535"),
        ("[2001:db8::1]:65536", "port must be 1…65535"),
        (("192.0.2.1", 0), "port must be 1…65535"),
        (("192.0.2.1", 65536), "port must be 1…65535"),
        (("192.0.2.1", -1), "port must be 1…65535"),
        # a port is an integer: not its text, not a float, not a bool
        (("192.0.2.1", "51820"), "port must be 1…65535"),
        (("192.0.2.1", 51820.0), "port must be 1…65535"),
        (("192.0.2.1", None), "port must be 1…65535"),
        # (True was taken as port 1 and kept as True: `wg show` read "endpoint=192.0.2.1:True")
        (("192.0.2.1", True), "port must be 1…65535"),
        (("192.0.2.1", False), "port must be 1…65535"),
        (("192.0.2.1",), "needs a host and a port"),
        ((), "needs a host and a port"),
        # wg: "Unable to find matching brace of endpoint", "Unable to find port of endpoint"
        ("[2001:db8::1", "expected [IPv6]:port"),
        ("[2001:db8::1:51820", "expected [IPv6]:port"),
        ("[2001:db8::1]51820", "expected [IPv6]:port"),
        ("[2001:db8::1]:", "port is not a number"),
        ("192.0.2.1", "expected IPv4:port or [IPv6]:port"),
        ("2001:db8::1:51820", "expected IPv4:port or [IPv6]:port"),
        ("192.0.2.1:", "port is not a number"),
        ("host.example:51820", "'host.example' is not an IP address"),
    ],
)
def test_an_endpoint_out_of_range_or_not_host_and_port_is_refused(
    value: str | tuple[object, ...], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_endpoint(value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        PeerConfig(P1, endpoint=value)


def test_an_endpoint_read_is_written_back_the_same() -> None:
    for text in ("192.0.2.1:51820", "[2001:db8::1]:1", "[fe80::1%eth0]:65535"):
        assert format_endpoint(parse_endpoint(text)) == text


@pytest.mark.parametrize(
    ("value", "networks"),
    [
        ("", ()),
        ("   ", ()),
        ("10.0.0.2/32", ("10.0.0.2/32",)),
        (" 10.0.0.2/32 ,fd00::/64 ", ("10.0.0.2/32", "fd00::/64")),
        ("10.0.0.2/32,\tfd00::1/64", ("10.0.0.2/32", "fd00::/64")),
        (["10.0.0.2/32", " fd00::/64"], ("10.0.0.2/32", "fd00::/64")),
        ((), ()),
    ],
)
def test_allowed_ips_as_text_or_items(value: str | list[str], networks: tuple[str, ...]) -> None:
    peer = PeerConfig(P1, allowed_ips=value)
    assert peer.allowed_ips == tuple(ipaddress.ip_network(n) for n in networks)


@pytest.mark.parametrize("value", [["10.0.0.2/32", ""], "10.0.0.2/32, nowhere", ["10.0.0.300/32"]])
def test_an_allowed_ips_item_that_is_not_a_prefix_is_refused(value: str | list[str]) -> None:
    with pytest.raises(ConfigError, match="not an IP prefix"):
        PeerConfig(P1, allowed_ips=value)


def test_the_mtu_s_range_holds_both_ends() -> None:
    # 576: the smallest datagram every IPv4 host takes (RFC 791), and the least wg-quick files
    # are read with here; 65475: a packet of it, with its 32 bytes of transport header and tag,
    # is the largest UDP datagram IPv4 carries (65507 bytes)
    assert InterfaceConfig(K1, mtu=576).mtu == 576
    assert InterfaceConfig(K1, mtu=65507 - 32).mtu == 65475
    with pytest.raises(ConfigError, match="mtu must be an integer 576…65475, got 575"):
        InterfaceConfig(K1, mtu=575)
    with pytest.raises(ConfigError, match="mtu must be an integer 576…65475, got 65476"):
        InterfaceConfig(K1, mtu=65476)
    with pytest.raises(ConfigError, match="mtu must be an integer 576…65475, got True"):
        InterfaceConfig(K1, mtu=True)


def test_two_peers_with_one_public_key_are_refused() -> None:
    with pytest.raises(ConfigError, match="two peers have the same public key"):
        InterfaceConfig(K1, peers=[PeerConfig(P1), PeerConfig(P2), PeerConfig(P1)])
    # the same key written two ways is one key
    with pytest.raises(ConfigError, match="two peers have the same public key"):
        InterfaceConfig(K1, peers=[PeerConfig(P1), PeerConfig(P1.to_base64())])
    config = InterfaceConfig(K1, peers=[PeerConfig(P1), PeerConfig(P2)])
    assert [p.public_key for p in config.peers] == [P1, P2]
