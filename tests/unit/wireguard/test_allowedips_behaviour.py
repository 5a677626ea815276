"""AllowedIPs (cryptokey routing) and a peer's prefixes on :class:`WireGuard`, held to what
the docstrings, docs/wireguard.md and wireguard-go's ``allowedips.go`` say: cases the codec and
pair tests leave out."""

from __future__ import annotations

import ipaddress

import pytest
from wgpair import Drbg

from tunflow.errors import ConfigError
from tunflow.wireguard.protocol import PeerConfig, PrivateKey, WireGuard


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
