"""tunflow's WireGuard-compatible VPN.

The protocol core lives in :mod:`tunflow.wireguard.protocol` and is sans-I/O; the running
interface (TUN device + UDP transport + timers + the ``wg`` control socket) is
:func:`open_interface`; :mod:`tunflow.wireguard.wgquick` reads wg-quick files. The names most
users need are re-exported here. See ``docs/wireguard.md`` and ``docs/vpn.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .protocol import (
    DatagramBatch,
    EndpointChanged,
    Event,
    HandshakeCompleted,
    HandshakeFailed,
    InterfaceConfig,
    KeysZeroed,
    PeerConfig,
    PeerStatistics,
    PresharedKey,
    PrivateKey,
    PublicKey,
    WireGuard,
    WireGuardStatistics,
    genkey,
    genpsk,
    pubkey,
)

if TYPE_CHECKING:
    from ._routing import RouteChanges, RoutingRecord
    from .runtime import (
        UAPI_DIRECTORY,
        InterfaceStatistics,
        WireGuardInterface,
        WireGuardPort,
        open_interface,
    )
    from .wgquick import QuickConfig, QuickPeer, load_wgquick, parse_wgquick, strip_wgquick

# The running interface pulls in devices, the pipeline and anyio; load it on first use so
# ``tunflow.wireguard.protocol`` stays a light, sans-I/O import.
_LAZY = {
    "UAPI_DIRECTORY": "runtime",
    "InterfaceStatistics": "runtime",
    "WireGuardInterface": "runtime",
    "WireGuardPort": "runtime",
    "open_interface": "runtime",
    "RouteChanges": "_routing",
    "RoutingRecord": "_routing",
    "QuickConfig": "wgquick",
    "QuickPeer": "wgquick",
    "load_wgquick": "wgquick",
    "parse_wgquick": "wgquick",
    "strip_wgquick": "wgquick",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "open_interface",
    "WireGuardInterface",
    "WireGuardPort",
    "InterfaceStatistics",
    "RouteChanges",
    "RoutingRecord",
    "UAPI_DIRECTORY",
    "load_wgquick",
    "parse_wgquick",
    "strip_wgquick",
    "QuickConfig",
    "QuickPeer",
    "WireGuard",
    "InterfaceConfig",
    "PeerConfig",
    "PrivateKey",
    "PublicKey",
    "PresharedKey",
    "DatagramBatch",
    "Event",
    "HandshakeCompleted",
    "HandshakeFailed",
    "KeysZeroed",
    "EndpointChanged",
    "WireGuardStatistics",
    "PeerStatistics",
    "genkey",
    "pubkey",
    "genpsk",
]
