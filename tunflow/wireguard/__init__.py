"""tunflow's WireGuard-compatible VPN.

The protocol core lives in :mod:`tunflow.wireguard.protocol` and is sans-I/O; the names most
users need are re-exported here. See ``docs/wireguard.md``.
"""

from __future__ import annotations

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

__all__ = [
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
