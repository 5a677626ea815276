"""``WireGuard(...)`` refuses a listen port or fwmark one past its range's edge, as
``InterfaceConfig`` does (a UDP port is 16 bits, a fwmark 32)."""

from __future__ import annotations

from typing import Any

import pytest

from tunflow import ConfigError
from tunflow.wireguard.protocol import InterfaceConfig, PrivateKey, WireGuard

KEY = PrivateKey(bytes(range(1, 33)))


@pytest.mark.parametrize(("name", "value"), [("listen_port", 65536), ("fwmark", 1 << 32)])
def test_one_past_the_edge_is_refused_as_interface_config_refuses_it(name: str, value: Any) -> None:
    with pytest.raises(ConfigError):
        InterfaceConfig(KEY, **{name: value})
    with pytest.raises(ConfigError, match=name):
        WireGuard(KEY, **{name: value})
