"""AllowedIPs (cryptokey routing) and a peer's prefixes on :class:`WireGuard`, held to what
the docstrings, docs/wireguard.md and wireguard-go's ``allowedips.go`` say: cases the codec and
pair tests leave out."""

from __future__ import annotations

import ipaddress
import weakref

import pytest
from hypothesis import given, settings, strategies as st
from wgpair import Drbg

from tunflow.errors import ConfigError
from tunflow.wireguard.protocol import AllowedIPs, PeerConfig, PrivateKey, WireGuard
from tunflow.wireguard.protocol.allowedips import parse_network


def test_set_allowed_ips_with_a_bad_prefix_changes_nothing() -> None:
    # a ConfigError for bad input leaves the peer as it was: not without the prefixes it had,
    # nor with those of the new list before the bad one
    wg = WireGuard(PrivateKey.generate(Drbg(b"wg")))
    pk = PrivateKey.generate(Drbg(b"peer")).public_key()
    peer = wg.add_peer(PeerConfig(pk, allowed_ips="10.0.0.0/24, fd00::/64"))
    before = wg.allowed_ips.networks(peer)
    with pytest.raises(ConfigError, match="bogus"):
        wg.set_allowed_ips(pk, ["192.168.0.0/16", "bogus"])
    assert wg.allowed_ips.networks(peer) == before
    assert wg.allowed_ips.lookup("10.0.0.7") is peer
    assert wg.allowed_ips.lookup("192.168.0.1") is None
    wg.set_allowed_ips(pk, iter(["192.168.0.0/16", ipaddress.ip_network("fd01::/64")]))
    assert [str(n) for n in wg.allowed_ips.networks(peer)] == ["192.168.0.0/16", "fd01::/64"]
    assert wg.allowed_ips.lookup("10.0.0.7") is None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128), st.sampled_from("pqrs")),
        max_size=40,
    ),
    st.lists(st.integers(0, 2**128 - 1), min_size=1, max_size=40),
)
def test_a_cleared_table_matches_longest_ipv6_prefixes_as_a_new_one(
    entries: list[tuple[int, int, str]], probes: list[int]
) -> None:
    # (clear() makes the table new: the IPv6 side as well as the IPv4 one)
    t: AllowedIPs[str] = AllowedIPs()
    t.insert("fd00::/8", "old")
    t.insert("10.0.0.0/8", "old")
    t.clear()
    assert len(t) == 0 and t.networks("old") == []
    ref: dict[ipaddress.IPv6Network, str] = {}
    for addr, plen, owner in entries:
        net = ipaddress.IPv6Network((addr, plen), strict=False)
        t.insert(net, owner)
        ref[net] = owner
    for p in probes + [addr for addr, _, _ in entries]:
        ip = ipaddress.IPv6Address(p)
        matches = [n for n in ref if ip in n]
        expected = ref[max(matches, key=lambda n: n.prefixlen)] if matches else None
        assert t.lookup_v6(p) == expected and t.lookup(ip) == expected
    assert sorted(t.items(), key=str) == sorted(ref.items(), key=str)


@pytest.mark.parametrize("value", [5, None, b"10.0.0.0/8", ("10.0.0.0", 8)])
def test_a_prefix_that_is_neither_text_nor_a_network_is_a_config_error(value: object) -> None:
    with pytest.raises(ConfigError, match="not an IP prefix"):
        parse_network(value)  # type: ignore[arg-type]
    table: AllowedIPs[str] = AllowedIPs()
    with pytest.raises(ConfigError):
        table.insert(value, "a")  # type: ignore[arg-type]
    assert table.networks("a") == []


@pytest.mark.parametrize("address", ["junk", "10.0.0.0/8", b"\x01\x02\x03", 3.5])
def test_looking_up_what_is_not_an_address_is_a_config_error(address: object) -> None:
    table: AllowedIPs[str] = AllowedIPs()
    table.insert("0.0.0.0/0", "a")
    with pytest.raises(ConfigError, match="not an IP address"):
        table.lookup(address)  # type: ignore[arg-type]


def test_all_networks_are_listed_ipv4_first_then_longest_first() -> None:
    # (networks() and items(): "IPv4 first, longest prefixes first")
    t: AllowedIPs[str] = AllowedIPs()
    given_order = ["fd00::/64", "10.0.0.0/8", "::/0", "0.0.0.0/0", "10.1.2.3/32", "10.1.0.0/16"]
    for n, net in enumerate(given_order):
        t.insert(net, "ab"[n % 2])
    listed = ["10.1.2.3/32", "10.1.0.0/16", "10.0.0.0/8", "0.0.0.0/0", "fd00::/64", "::/0"]
    assert [str(n) for n in t.networks()] == listed
    assert [str(n) for n, _ in t.items()] == listed


def test_a_network_object_with_an_ipv6_scope_is_refused_as_its_text_is() -> None:
    scoped = ipaddress.ip_network("fd00::%eth0/64")
    with pytest.raises(ConfigError, match="scope"):
        parse_network(scoped)
    t: AllowedIPs[str] = AllowedIPs()
    with pytest.raises(ConfigError, match="scope"):
        t.insert(scoped, "a")
    assert len(t) == 0 and t.networks("a") == []


def test_the_table_keeps_no_owner_that_holds_no_prefix() -> None:
    # a peer whose prefixes were removed or moved to another is not kept alive by the table
    class Peer:
        pass

    t: AllowedIPs[Peer] = AllowedIPs()
    peer, other = Peer(), Peer()
    gone = weakref.ref(peer)
    t.insert("10.0.0.0/8", peer)
    t.insert("fd00::/64", peer)
    t.remove("fd00::/64")
    t.insert("10.0.0.0/8", other)
    del peer
    assert gone() is None
    assert t.lookup("10.1.1.1") is other and t.networks(other) == [parse_network("10.0.0.0/8")]
