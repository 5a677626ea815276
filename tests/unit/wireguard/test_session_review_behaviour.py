"""An endpoint of a type neither ``(ip, port)`` tuple nor ``"ip:port"`` string — a list, a
port alone, bytes — is refused with ``ConfigError`` by ``WireGuard.set_endpoint`` and
``PeerConfig``, as any other bad endpoint is, and the peer's endpoint is left as it was."""

from __future__ import annotations

from typing import Any

import pytest

from tunflow import ConfigError
from tunflow.wireguard.protocol import PeerConfig, PrivateKey, WireGuard

KEY = PrivateKey(bytes(range(1, 33)))
PEER = PrivateKey(bytes([7]) * 32).public_key()
BAD = [51820, ["192.0.2.1", 51820], b"192.0.2.1:51820", bytearray(b"[2001:db8::1]:51820")]


@pytest.mark.parametrize("endpoint", BAD)
def test_set_endpoint_refuses_an_endpoint_of_another_type(endpoint: Any) -> None:
    wg = WireGuard(KEY)
    wg.add_peer(PeerConfig(PEER, endpoint="192.0.2.9:1"))
    # AttributeError ('list' object has no attribute 'strip') or TypeError escaped
    with pytest.raises(ConfigError, match="endpoint"):
        wg.set_endpoint(PEER, endpoint)
    assert wg.peer(PEER).endpoint == ("192.0.2.9", 1)  # type: ignore[union-attr]


@pytest.mark.parametrize("endpoint", BAD)
def test_peer_config_refuses_an_endpoint_of_another_type(endpoint: Any) -> None:
    with pytest.raises(ConfigError, match="endpoint"):
        PeerConfig(PEER, endpoint=endpoint)
