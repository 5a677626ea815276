"""Build steps every backend shares: add a configuration's addresses and routes, remembering
each addition so a build that fails half-way can take them back.

The order of the steps is each backend's own (Linux brings the link up before adding
addresses, the BSDs after), so backends call these pieces rather than one fixed sequence.
"""

from __future__ import annotations

import logging
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Protocol

from ..errors import ConfigError, UnsupportedError
from ..netconfig.device import IPV6_MIN_MTU, DeviceConfig
from ._base import Route

__all__ = ["Additions", "add_addresses", "add_routes", "reject_windows_only"]

log = logging.getLogger("tunflow.platform")


class _Configurable(Protocol):
    def add_address(
        self, iface: IPv4Interface | IPv6Interface, peer: IPv4Address | None = None
    ) -> None: ...
    def remove_address(self, address: IPv4Address | IPv6Address) -> None: ...
    def add_route(self, route: Route) -> None: ...
    def remove_route(self, route: Route) -> None: ...


class Additions:
    """What a build added to an interface, newest last."""

    def __init__(self) -> None:
        self._items: list[
            tuple[IPv4Interface | IPv6Interface, IPv4Address | None] | IPv4Network | IPv6Network
        ] = []

    def __len__(self) -> int:
        return len(self._items)

    def address(
        self, iface: IPv4Interface | IPv6Interface, peer: IPv4Address | None = None
    ) -> None:
        self._items.append((iface, peer))

    def route(self, network: IPv4Network | IPv6Network) -> None:
        self._items.append(network)

    def undo(self, iface: _Configurable, name: str = "the interface") -> None:
        """Remove every addition, newest first; a failure to remove one does not stop the rest
        (this runs while another error is already on its way to the caller): it is logged, as
        a warning naming the interface ``name``, on ``tunflow.platform``.

        A backend with ``undo_address(iface, peer)`` removes exactly the address added (an
        attached device may hold the same IPv4 address with another prefix or a peer); others
        remove the first address with that IP. Likewise ``undo_route(route)`` removes exactly
        the route added (the device may have another to the same network with another metric).
        """
        undo_address = getattr(iface, "undo_address", None)
        remove_route = getattr(iface, "undo_route", iface.remove_route)
        for item in reversed(self._items):
            try:
                if isinstance(item, IPv4Network | IPv6Network):
                    remove_route(Route(item))
                elif undo_address is not None:
                    undo_address(*item)
                else:
                    iface.remove_address(item[0].ip)
            except Exception as exc:
                what = f"the route to {item}" if not isinstance(item, tuple) else str(item[0])
                log.warning("%s: could not take back %s after a failed build: %s", name, what, exc)
        self._items.clear()


def add_addresses(iface: _Configurable, config: DeviceConfig, added: Additions) -> None:
    """Add the IPv4 addresses (with their peers), then the IPv6 addresses, of ``config``."""
    for setting in config.ipv4:
        iface.add_address(setting.interface, peer=setting.destination)
        added.address(setting.interface, setting.destination)
    for v6 in config.ipv6:
        iface.add_address(v6)
        added.address(v6)


def add_routes(iface: _Configurable, config: DeviceConfig, added: Additions) -> None:
    """Add the routes of ``config`` (after the link is up: kernels refuse them on a down one)."""
    for network in config.routes:
        iface.add_route(Route(network))
        added.route(network)


def reject_windows_only(config: DeviceConfig, platform: str) -> None:
    """Refuse, before any system call, the Windows options that would change routing or name
    resolution (an interface metric, DNS servers): ignoring them would leave a program
    believing its traffic and queries go where they do not. The Windows options that change
    nothing elsewhere (``description``, ``wintun_file``, ``ring_capacity``, ``device_guid``,
    ``wintun_log``, ``delete_driver``) are ignored, so one builder chain serves every OS.

    The link has one MTU for both families here: ``mtu_v4`` is taken as it (over ``mtu``, when
    the two are equal), and an IPv6 MTU of its own (``mtu_v6``, or ``mtu_v4`` differing from
    ``mtu``) is refused.

    Raises:
        UnsupportedError: a Windows-only option named above.
        ConfigError: ``mtu_v4`` below 1280 on a device with IPv6 addresses.
    """
    if config.mtu_v6 is not None:
        raise UnsupportedError(
            f"an IPv6 MTU of its own (mtu_v6) is Windows only, not {platform}: mtu() sets the "
            "link's MTU, IPv6's among it"
        )
    if config.mtu_v4 is not None and config.mtu is not None and config.mtu_v4 != config.mtu:
        raise UnsupportedError(
            f"mtu_v4({config.mtu_v4}) after mtu({config.mtu}) asks for separate IPv4 and IPv6 "
            f"MTUs, which are Windows only, not {platform}: the link has one MTU"
        )
    mtu = config.link_mtu
    if config.ipv6 and mtu is not None and mtu < IPV6_MIN_MTU:
        raise ConfigError(
            f"IPv6 addresses need an MTU of at least {IPV6_MIN_MTU}; the link's MTU "
            f"(mtu_v4) is {mtu}"
        )
    if config.metric is not None:
        raise UnsupportedError(f"the interface metric is Windows only, not {platform}")
    if config.dns_servers:
        raise UnsupportedError(
            f"interface DNS servers are Windows only, not {platform}: configure the "
            "resolver (resolvconf, systemd-resolved, scutil) instead"
        )
