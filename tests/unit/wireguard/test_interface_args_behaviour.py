"""``WireGuard(...)``'s listen port, fwmark and load threshold are checked as
``InterfaceConfig`` checks them: ``ConfigError`` for a value out of range."""

from __future__ import annotations

from typing import Any

import pytest

from tunflow import ConfigError
from tunflow.wireguard.protocol import PrivateKey, WireGuard

KEY = PrivateKey(bytes(range(1, 33)))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("listen_port", 70000),
        ("listen_port", -1),
        ("listen_port", 51820.0),
        ("listen_port", True),
        ("fwmark", -1),
        ("fwmark", 1 << 32),
        ("load_threshold", -1),
        ("load_threshold", 1.5),
    ],
)
def test_an_argument_out_of_range_is_refused(name: str, value: Any) -> None:
    # each was stored as given: the UAPI then reported listen_port=70000, and a negative load
    # threshold put the interface under load at its first handshake message
    with pytest.raises(ConfigError, match=name):
        WireGuard(KEY, **{name: value})


def test_the_edges_of_each_range_are_taken() -> None:
    wg = WireGuard(KEY, listen_port=65535, fwmark=0xFFFFFFFF, load_threshold=0)
    assert (wg.listen_port, wg.fwmark, wg.load_threshold) == (65535, 0xFFFFFFFF, 0)
