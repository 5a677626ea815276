"""Private and preshared keys stay out of what tunflow says about a configuration file: its
errors reach the terminal, the journal, ``systemctl status`` (a reload's STATUS=) and the
answer file of ``tunflow reload`` — all of them readable by more than root."""

from __future__ import annotations

import pytest

from tunflow.errors import ConfigError
from tunflow.wireguard.protocol import PresharedKey, PrivateKey
from tunflow.wireguard.wgquick import parse_wgquick

KEY = PrivateKey(bytes(range(1, 33))).to_base64()
PSK = PresharedKey(bytes(range(40, 72))).to_base64()
PEER = PrivateKey(bytes(range(3, 35))).public_key().to_base64()


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f"PrivateKey {KEY}", KEY),  # the '=' forgotten: the key's own '=' splits the line
        (f"PrivateKey: {KEY.rstrip('=')}", KEY),  # no '=' at all
        (f"PrivateKey={KEY}", None),  # (fine: parsed)
        (KEY, KEY),  # the key pasted alone
        (f"[Interface] PrivateKey = {KEY}", KEY),  # a header with more on its line
        (f"PrivateKey = {KEY[:-1]}", KEY),  # a bad value
        (f"PrivateKey = {KEY} {KEY}", KEY),
    ],
)
def test_a_line_that_does_not_parse_does_not_show_the_private_key(
    line: str, secret: str | None
) -> None:
    text = f"[Interface]\n{line}\n"
    if secret is None:
        parse_wgquick(text)
        return
    with pytest.raises(ConfigError) as caught:
        parse_wgquick(text, file="wg0.conf")
    message = str(caught.value)
    assert "line 2" in message
    assert secret.rstrip("=")[:20] not in message


@pytest.mark.parametrize(
    "line",
    [f"PresharedKey {PSK}", f"PresharedKey: {PSK.rstrip('=')}", PSK, f"PresharedKey = {PSK}x"],
)
def test_a_line_that_does_not_parse_does_not_show_the_preshared_key(line: str) -> None:
    text = f"[Interface]\nPrivateKey = {KEY}\n[Peer]\nPublicKey = {PEER}\n{line}\n"
    with pytest.raises(ConfigError) as caught:
        parse_wgquick(text)
    assert PSK.rstrip("=")[:20] not in str(caught.value)


def test_a_key_before_any_section_is_not_shown() -> None:
    with pytest.raises(ConfigError, match="outside a section") as caught:
        parse_wgquick(f"PrivateKey {KEY}\n[Interface]\n")
    assert KEY.rstrip("=")[:20] not in str(caught.value)


def test_an_unknown_key_is_still_named() -> None:
    # what is kept out is what may be a key: a misspelt name is shown, as before
    with pytest.raises(ConfigError, match="unknown key 'PersistentKeepalive' in"):
        parse_wgquick(f"[Interface]\nPrivateKey = {KEY}\nPersistentKeepalive = 25\n")
    with pytest.raises(ConfigError, match=r"got 'Address 10\.0\.0\.1/24'"):
        parse_wgquick(f"[Interface]\nPrivateKey = {KEY}\nAddress 10.0.0.1/24\n")
