"""The run-time setters of :class:`WireGuard` take what :class:`PeerConfig` takes for the same
setting, and refuse what it refuses (``ConfigError``, nothing changed): a value the interface
stored unchecked would fail later, out of a receive call, when a peer's handshake uses it."""

from __future__ import annotations

import pytest
from wgpair import A_IP, B_IP, Pair, ip4

from tunflow.errors import ConfigError
from tunflow.wireguard.protocol import PeerConfig, PresharedKey


@pytest.mark.parametrize("form", ["base64", "hex", "raw"])
def test_set_preshared_key_takes_the_forms_peerconfig_takes(form: str) -> None:
    p = Pair()
    psk = PresharedKey.generate()
    given = {"base64": psk.to_base64(), "hex": psk.raw.hex(), "raw": psk.raw}[form]
    p.a.set_preshared_key(p.kb.public_key(), given)  # type: ignore[arg-type]
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
        p.a.set_preshared_key(pk, bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        p.b.set_preshared_key(p.ka.public_key(), bad)  # type: ignore[arg-type]
    # the PSK is still the one it was (none): the handshake and its receive calls work
    p.handshake()
    assert p.transfer("a", [ip4(A_IP, B_IP)]) == [ip4(A_IP, B_IP)]
    assert p.a.statistics().handshakes_completed == 1
