"""The run-time setters of :class:`WireGuard` take what :class:`PeerConfig` takes for the same
setting, and refuse what it refuses (``ConfigError``, nothing changed): a value the interface
stored unchecked would fail later, out of a receive call, when a peer's handshake uses it."""

from __future__ import annotations

from typing import Any

import pytest
from wgpair import A_IP, B_IP, Pair, ip4

from tunflow.errors import ConfigError
from tunflow.wireguard.protocol import PeerConfig, PresharedKey, PrivateKey, WireGuard


@pytest.mark.parametrize("form", ["base64", "hex", "raw"])
def test_set_preshared_key_takes_the_forms_peerconfig_takes(form: str) -> None:
    p = Pair()
    psk = PresharedKey.generate()
    given = {"base64": psk.to_base64(), "hex": psk.raw.hex(), "raw": psk.raw}[form]
    p.a.set_preshared_key(p.kb.public_key(), given)
    p.b.set_preshared_key(p.ka.public_key(), psk)
    p.handshake()
    assert p.transfer("a", [ip4(A_IP, B_IP)]) == [ip4(A_IP, B_IP)]


@pytest.mark.parametrize("bad", [b"short", "not a key", 42])
def test_set_preshared_key_refuses_what_is_no_key(bad: object) -> None:
    p = Pair()
    pk = p.kb.public_key()
    with pytest.raises(ConfigError):
        PeerConfig(pk, preshared_key=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        p.a.set_preshared_key(pk, bad)
    with pytest.raises(ConfigError):
        p.b.set_preshared_key(p.ka.public_key(), bad)
    # the PSK is still the one it was (none): the handshake and its receive calls work
    p.handshake()
    assert p.transfer("a", [ip4(A_IP, B_IP)]) == [ip4(A_IP, B_IP)]
    assert p.a.statistics().handshakes_completed == 1


def test_set_allowed_ips_takes_a_comma_separated_string_as_peerconfig_does() -> None:
    p = Pair()
    pk = p.kb.public_key()
    p.a.set_allowed_ips(pk, "10.0.0.2/32, 10.7.0.0/24,fd00::2/128")
    assert (
        p.a.peer_statistics(pk).allowed_ips
        == PeerConfig(pk, allowed_ips="10.0.0.2/32, 10.7.0.0/24,fd00::2/128").allowed_ips
    )
    p.a.set_allowed_ips(pk, "10.0.0.2/32")
    assert [str(n) for n in p.a.peer_statistics(pk).allowed_ips] == ["10.0.0.2/32"]
    p.handshake()
    assert p.transfer("a", [ip4(A_IP, B_IP)]) == [ip4(A_IP, B_IP)]


def test_set_allowed_ips_refusing_a_string_leaves_them_as_they_were() -> None:
    p = Pair()
    pk = p.kb.public_key()
    before = p.a.peer_statistics(pk).allowed_ips
    with pytest.raises(ConfigError, match=r"10\.0\.0\.300/32"):
        p.a.set_allowed_ips(pk, "10.0.0.2/32, 10.0.0.300/32")
    assert p.a.peer_statistics(pk).allowed_ips == before


@pytest.mark.parametrize("form", ["base64", "hex", "raw"])
def test_peer_methods_take_the_public_key_forms_peerconfig_takes(form: str) -> None:
    p = Pair()
    pk = p.kb.public_key()
    given: Any = {"base64": pk.to_base64(), "hex": pk.to_hex(), "raw": pk.raw}[form]
    assert p.a.peer(given) is p.peer_of_a
    assert p.a.peer_statistics(given).public_key == pk
    p.a.set_endpoint(given, "192.0.2.9:51821")
    p.a.set_allowed_ips(given, ["10.0.0.2/32"])
    p.a.add_allowed_ip(given, "10.8.0.0/24")
    assert p.a.remove_allowed_ip(given, "10.8.0.0/24")
    p.a.set_persistent_keepalive(given, 25, None)
    p.a.set_preshared_key(given, None)
    stats = p.a.peer_statistics(pk)
    assert stats.endpoint == ("192.0.2.9", 51821)
    assert [str(n) for n in stats.allowed_ips] == ["10.0.0.2/32"]
    assert stats.persistent_keepalive == 25
    assert p.a.remove_peer(given)
    assert p.a.peer(pk) is None


def test_a_string_that_is_no_key_is_named_as_such_not_as_an_unknown_peer() -> None:
    p = Pair()
    for call in (
        lambda: p.a.set_endpoint("not a key", "192.0.2.9:51821"),
        lambda: p.a.peer("not a key"),
        lambda: p.a.remove_peer("not a key"),
    ):
        with pytest.raises(ConfigError, match="public key is neither base64 nor hex"):
            call()
    assert p.peer_of_a is not None


def test_the_interface_key_is_taken_as_interfaceconfig_takes_it() -> None:
    key = PrivateKey.generate()
    wg = WireGuard(key.to_base64())
    assert wg.public_key == key.public_key()
    other = PrivateKey.generate()
    wg.set_private_key(other.raw)
    assert wg.public_key == other.public_key()
    with pytest.raises(ConfigError):
        WireGuard("not a key")
    with pytest.raises(ConfigError):
        wg.set_private_key("not a key")
    assert wg.public_key == other.public_key()
