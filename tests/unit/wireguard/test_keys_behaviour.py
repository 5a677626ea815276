"""Key codec rules that the suite let a mutated keys.py break.

Asserted against keys.py's docstrings and ``wg(8)``: generated private keys are clamped as
``wg genkey``'s are (RFC 7748 §5), ``wg genkey`` output parses with its newline, preshared keys
compare by value and never appear in ``repr``.
"""

from __future__ import annotations

import base64

from tunflow.wireguard.protocol import PresharedKey, PrivateKey, genkey, pubkey


def _all_ones(n: int) -> bytes:
    return b"\xff" * n


def test_generated_private_keys_are_clamped() -> None:
    # RFC 7748 §5: clear the low three bits of the first byte, clear the top bit and set the
    # second-highest of the last
    raw = PrivateKey.generate(_all_ones).raw
    assert raw == b"\xf8" + b"\xff" * 30 + b"\x7f"
    assert base64.b64decode(genkey(_all_ones)) == raw


def test_keys_parse_as_wg_prints_them_with_a_newline() -> None:
    text = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
    assert PrivateKey.from_base64(text + "\n") == PrivateKey.from_base64(text)
    assert pubkey(text + "\n") == "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
    assert PresharedKey.from_base64(text + "\n").to_base64() == text


def test_preshared_keys_compare_by_value() -> None:
    one, other = PresharedKey(bytes([1]) * 32), PresharedKey(bytes([2]) * 32)
    assert one == PresharedKey(bytes([1]) * 32)
    assert one != other
    assert PresharedKey() != one


def test_a_preshared_key_never_appears_in_its_repr() -> None:
    psk = PresharedKey(bytes(range(32)))
    shown = repr(psk)
    assert psk.to_base64() not in shown and psk.to_hex() not in shown
    assert repr(PresharedKey()) == "PresharedKey(<zero>)"
