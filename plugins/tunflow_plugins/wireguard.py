"""``wireguard``: encrypt outbound IP packets into WireGuard datagrams, decrypt inbound ones.

The stage lives in :mod:`tunflow.wireguard.stage` (the VPN runtime and this plugin share it);
this module registers it in the ``tunflow.stages`` group like every built-in. Put it last in a
tunnel's chain, next to the transport::

    [[stages]]                 # ...the other stages before it
    plugin = "wireguard"
    options = { config = "wg0.conf" }

    [tunnel]
    local = "tun"              # a device
    remote = "peer"            # a UDP transport

For a whole VPN (device addresses, routes, ``wg show``/``wg set``) use ``tunflow up``.
"""

from __future__ import annotations

from tunflow.wireguard.stage import WireGuardStage, WireGuardStageOptions

__all__ = ["WireGuardStage", "WireGuardStageOptions"]
