"""``DeviceBuilder``: describe a TUN/TAP device, then build it blocking or async."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ConfigError
from ..netconfig.device import (
    DeviceConfig,
    IPAddressLike,
    IPv4Setting,
    Layer,
    NetworkLike,
    PrefixLike,
    address_list,
    int_setting,
    parse_address,
    parse_dns_servers,
    parse_ipv4,
    parse_ipv6,
    parse_mac,
    parse_netns,
    parse_network,
)

if TYPE_CHECKING:
    from typing import Self

    from ._async import AsyncDevice
    from ._sync import SyncDevice

__all__ = ["DeviceBuilder", "OFFLOAD_ENV"]

#: Set to ``0`` (or ``off``/``false``/``no``) to turn offload off whatever the code asks for.
OFFLOAD_ENV = "TUNFLOW_OFFLOAD"


def _offload_allowed() -> bool:
    return os.environ.get(OFFLOAD_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def _flag(value: object, what: str) -> bool:
    """``value`` if it is a ``bool``: ``"false"``, ``"no"`` or ``0`` are refused, not taken as
    their truth (``enable("false")`` brought the link up)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be True or False, not {value!r}")
    return value


class DeviceBuilder:
    """Describe a device with chained calls (tun-rs names), then :meth:`build_sync` or
    :meth:`build_async`.

    Each setter checks its own value at once and raises :class:`~tunflow.ConfigError`; the
    combination is checked by the build, before the first system call. A build that fails
    half-way removes whatever it had created.

    Unlike tun-rs, :meth:`ipv4` and :meth:`ipv6` may be called several times: every call adds an
    address.

    Example:
        >>> from tunflow import DeviceBuilder
        >>> builder = (
        ...     DeviceBuilder()
        ...     .name("tf0")
        ...     .ipv4("10.0.0.1", 24)
        ...     .ipv4("10.1.0.1", "255.255.0.0")
        ...     .ipv6("fd00::1", 64)
        ...     .route("192.0.2.0/24")
        ...     .mtu(1400)
        ... )
        >>> [str(s.interface) for s in builder.config().ipv4]
        ['10.0.0.1/24', '10.1.0.1/16']
        >>> device = builder.build_sync()                        # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._config = DeviceConfig()

    def __repr__(self) -> str:
        return f"DeviceBuilder({self._config!r})"

    def _set(self, **changes: Any) -> Self:
        self._config = attrs.evolve(self._config, **changes)
        return self

    # -- identity ---------------------------------------------------------------------------

    def name(self, name: str) -> Self:
        """The interface name (at most 15 bytes). Unset: the kernel picks ``tunN``/``tapN``;
        one ``%d`` in the name is replaced by the kernel's first free number (``tf%d``).

        If an interface of that name exists with matching flags, the build attaches to it.
        """
        if not isinstance(name, str):
            raise ConfigError(f"name must be a str, not {name!r}")
        probe = DeviceConfig(name=name)
        probe.validate()
        return self._set(name=name)

    def attach(self, name: str) -> Self:
        """Attach to the existing interface ``name``; the build fails if it does not exist."""
        self.name(name)
        return self._set(attach=True)

    def layer(self, layer: Layer | str) -> Self:
        """:attr:`Layer.L3` (TUN, the default) or :attr:`Layer.L2` (TAP)."""
        if isinstance(layer, str):
            try:
                layer = {"l3": Layer.L3, "tun": Layer.L3, "l2": Layer.L2, "tap": Layer.L2}[
                    layer.lower()
                ]
            except KeyError:
                raise ConfigError(f"layer must be L3/tun or L2/tap, not {layer!r}") from None
        if not isinstance(layer, Layer):
            raise ConfigError(f"layer must be a Layer, not {layer!r}")
        return self._set(layer=layer)

    # -- addresses and routes ---------------------------------------------------------------

    def ipv4(
        self,
        address: IPAddressLike,
        prefix_or_netmask: PrefixLike | None = None,
        destination: IPAddressLike | None = None,
    ) -> Self:
        """Add an IPv4 address, with a prefix length or dotted netmask, and optionally the
        point-to-point peer address: ``("10.0.0.1", 24)``, or ``"10.0.0.1/24"`` (an
        ``IPv4Interface``) with no ``prefix_or_netmask``. Repeatable."""
        iface = parse_ipv4(address, prefix_or_netmask)
        dest = None
        if destination is not None:
            d = parse_address(destination)
            if not isinstance(d, IPv4Address):
                raise ConfigError(f"destination {destination!r} is not an IPv4 address")
            dest = d
        setting = IPv4Setting(iface, dest)
        return self._set(ipv4=(*self._config.ipv4, setting))

    def ipv6(self, address: IPAddressLike, prefix: PrefixLike | None = None) -> Self:
        """Add an IPv6 address with its prefix length: ``("fd00::1", 64)``, or
        ``"fd00::1/64"`` (an ``IPv6Interface``) with no ``prefix``. Repeatable."""
        return self._set(ipv6=(*self._config.ipv6, parse_ipv6(address, prefix)))

    def ipv6_tuple(
        self,
        addresses: Iterable[IPAddressLike | tuple[IPAddressLike, PrefixLike]],
    ) -> Self:
        """Add several IPv6 addresses at once (tun-rs's ``ipv6_tuple``): each an
        ``(address, prefix)`` pair or an address with its prefix (``"fd00::1/64"``, an
        ``IPv6Interface``). One bad item is a :class:`~tunflow.ConfigError` and adds none."""
        given = address_list(addresses, f"ipv6_tuple takes a list of addresses, not {addresses!r}")
        added = []
        for item in given:
            if isinstance(item, str | IPv4Address | IPv6Address):
                added.append(parse_ipv6(item))
                continue
            try:
                address, prefix = item
            except (TypeError, ValueError):
                raise ConfigError(
                    "ipv6_tuple takes (address, prefix) pairs or addresses with their "
                    f'prefix ("fd00::1/64"), not {item!r}'
                ) from None
            added.append(parse_ipv6(address, prefix))
        return self._set(ipv6=(*self._config.ipv6, *added))

    def route(self, cidr: NetworkLike) -> Self:
        """Route the network ``cidr`` into the device. Repeatable.

        Routes are added after the link is brought up, so they cannot be combined with
        ``enable(False)`` (:class:`~tunflow.ConfigError`); with :meth:`inherit_enable_state`
        the device must already be up (:class:`~tunflow.DeviceError`, ``ENETDOWN``).
        """
        return self._set(routes=(*self._config.routes, parse_network(cidr)))

    # -- link settings ----------------------------------------------------------------------

    def mtu(self, mtu: int) -> Self:
        """The MTU (68..65535; at least 1280 when the device has IPv6 addresses). On Windows it
        sets the IPv4 and the IPv6 MTU, and replaces an earlier :meth:`mtu_v4` /
        :meth:`mtu_v6` (the last call wins, as in tun-rs)."""
        return self._set(mtu=int_setting(mtu, "MTU", 68, 65535), mtu_v4=None, mtu_v6=None)

    def mtu_v4(self, mtu: int) -> Self:
        """Windows: the IPv4 MTU alone (68..65535), ``NlMtu`` of the interface's IPv4 row; the
        IPv6 MTU is :meth:`mtu`'s, or :meth:`mtu_v6`'s, or left as it is. Elsewhere the link
        has one MTU and this is it; after a different :meth:`mtu` the build there raises
        :class:`~tunflow.UnsupportedError`."""
        return self._set(mtu_v4=int_setting(mtu, "IPv4 MTU", 68, 65535))

    def mtu_v6(self, mtu: int) -> Self:
        """Windows: the IPv6 MTU alone (1280..65535), ``NlMtu`` of the interface's IPv6 row
        (a machine without an IPv6 stack fails the build with
        :class:`~tunflow.UnsupportedError`). Elsewhere the build raises
        :class:`~tunflow.UnsupportedError`: the link has one MTU, :meth:`mtu`'s."""
        return self._set(mtu_v6=int_setting(mtu, "IPv6 MTU", 1280, 65535))

    def mac_addr(self, mac: str | bytes | Sequence[int]) -> Self:
        """The MAC address of a TAP (layer 2) device."""
        return self._set(mac=parse_mac(mac))

    def enable(self, up: bool = True) -> Self:
        """Bring the link up (default) or leave it down after the build."""
        return self._set(enabled=_flag(up, "enabled"))

    def inherit_enable_state(self) -> Self:
        """Leave the link's up/down state alone (for devices made by someone else, so no
        CAP_NET_ADMIN is needed for the ``up`` call)."""
        return self._set(enabled=None)

    def tx_queue_len(self, length: int) -> Self:
        """The transmit queue length (``txqueuelen``)."""
        return self._set(tx_queue_len=int_setting(length, "tx_queue_len", 0, 0xFFFFFFFF))

    # -- Linux-specific ---------------------------------------------------------------------

    def multi_queue(self, enabled: bool = True) -> Self:
        """Linux ``IFF_MULTI_QUEUE``: :meth:`SyncDevice.try_clone` opens more queues."""
        return self._set(multi_queue=_flag(enabled, "multi_queue"))

    def offload(self, enabled: bool = True) -> Self:
        """Linux offload: ``IFF_VNET_HDR`` with TSO (and USO where the kernel has it).

        The environment variable ``TUNFLOW_OFFLOAD=0`` turns it off whatever is asked here.
        """
        return self._set(offload=_flag(enabled, "offload"))

    def packet_information(self, enabled: bool = True) -> Self:
        """Keep the OS's packet-information header on every packet (Linux ``tun_pi``, the
        4-byte address family on macOS/BSD). Off by default: bare packets. A TAP has such a
        header on Linux only: elsewhere the build raises :class:`~tunflow.UnsupportedError`."""
        return self._set(packet_information=_flag(enabled, "packet_information"))

    def persist(self, enabled: bool = True) -> Self:
        """Keep the interface after the process exits (needs a fixed :meth:`name`)."""
        return self._set(persist=_flag(enabled, "persist"))

    def netns(self, name_or_path: str) -> Self:
        """Make the device inside another network namespace: a name made by ``ip netns add``
        or a path such as ``/proc/PID/ns/net`` (Linux; needs CAP_SYS_ADMIN).

        Only the build enters the namespace; the device, its queues and its configuration
        socket stay bound to it, so the rest of the program runs where it is.
        """
        return self._set(netns=parse_netns(name_or_path))

    def owner(self, uid: int) -> Self:
        """Let user ``uid`` open the device without CAP_NET_ADMIN (``TUNSETOWNER``)."""
        return self._set(owner=int_setting(uid, "owner", 0, 0xFFFFFFFE))

    def group(self, gid: int) -> Self:
        """Let group ``gid`` open the device without CAP_NET_ADMIN (``TUNSETGROUP``)."""
        return self._set(group=int_setting(gid, "group", 0, 0xFFFFFFFE))

    # -- other platforms --------------------------------------------------------------------

    def associate_route(self, enabled: bool = True) -> Self:
        """macOS/BSD: add the subnet route of each address, as ``route add -net`` would."""
        return self._set(associate_route=_flag(enabled, "associate_route"))

    def metric(self, metric: int) -> Self:
        """Windows: the interface metric."""
        return self._set(metric=int_setting(metric, "metric", 0, 0xFFFF))

    def description(self, text: str) -> Self:
        """Windows: the adapter description (Wintun "tunnel type")."""
        return self._set(description=str(text))

    def wintun_file(self, path: str) -> Self:
        """Windows: where ``wintun.dll`` is (default: next to the program, then the DLL path)."""
        return self._set(wintun_file=str(path))

    def ring_capacity(self, size: int) -> Self:
        """Windows: the Wintun ring size in bytes (128 KiB..64 MiB)."""
        return self._set(ring_capacity=int_setting(size, "ring_capacity", 0x20000, 0x4000000))

    def device_guid(self, guid: uuid.UUID | str) -> Self:
        """Windows (Wintun): the GUID to create the adapter with (``WintunCreateAdapter``'s
        ``RequestedGUID``; unset, the system picks one at random, so each new adapter is a new
        network to Windows' network location awareness). A :class:`uuid.UUID` or its text
        (``"{6BA7B810-9DAD-11D1-80B4-00C04FD430C8}"``, with or without braces). An adapter of
        the name that exists with another GUID fails the build with
        :class:`~tunflow.DeviceBusyError`; a tap-windows6 adapter's GUID is fixed
        (:class:`~tunflow.UnsupportedError`). Ignored elsewhere.

        Raises:
            ConfigError: not a UUID or UUID text, or the nil UUID.
        """
        if isinstance(guid, str):
            try:
                parsed = uuid.UUID(guid.strip())
            except ValueError:
                raise ConfigError(f"device_guid {guid!r} is not a GUID") from None
        elif isinstance(guid, uuid.UUID):
            parsed = guid
        else:
            raise ConfigError(f"device_guid must be a uuid.UUID or GUID text, not {guid!r}")
        if parsed.int == 0:
            raise ConfigError("device_guid: the nil GUID is not an adapter GUID")
        return self._set(device_guid=parsed)

    def wintun_log(self, enabled: bool = True) -> Self:
        """Windows (Wintun): send Wintun's own diagnostic messages (``WintunSetLogger``) to the
        ``logging`` logger ``tunflow.platform.windows.wintun`` — its levels INFO, WARNING and
        ERROR as Wintun's ``WINTUN_LOG_INFO``, ``_WARN``, ``_ERR`` — from before the adapter
        is opened or created until the device closes. Wintun has one logger per process: while
        any device asked for it, every adapter's messages come; the last one to close resets it.
        Ignored for tap-windows6 and elsewhere."""
        return self._set(wintun_log=_flag(enabled, "wintun_log"))

    def delete_driver(self, enabled: bool = True) -> Self:
        """Windows (Wintun): when the device closes (or its build fails), after the adapter is
        closed, call ``WintunDeleteDriver``, which removes the Wintun driver from the system if
        no adapter uses it any more — for a program that installs nothing and wants to leave
        nothing behind. While another adapter, of this process or another, still uses it, the
        driver stays and a warning is logged on ``tunflow.platform.windows``. A tap-windows6
        device refuses it (:class:`~tunflow.UnsupportedError`); ignored elsewhere."""
        return self._set(delete_driver=_flag(enabled, "delete_driver"))

    def dns_servers(self, servers: Sequence[IPAddressLike]) -> Self:
        """Windows: DNS servers of the interface (a list; either family, or both)."""
        return self._set(dns_servers=parse_dns_servers(servers))

    def peer_feth(self, name: str) -> Self:
        """macOS TAP: the name of the ``feth`` peer used for I/O."""
        return self._set(peer_feth=str(name))

    # -- build ------------------------------------------------------------------------------

    def config(self) -> DeviceConfig:
        """The validated configuration the build would use.

        Raises:
            ConfigError: a combination that cannot work (IPv6 below MTU 1280, a MAC on a TUN,
                persist without a name, …).
        """
        config = self._config
        if config.offload and not _offload_allowed():
            config = attrs.evolve(config, offload=False)
        config.validate()
        return config

    def build_sync(self) -> SyncDevice:
        """Create (or attach to) the device and return a blocking :class:`~tunflow.SyncDevice`.

        Raises:
            ConfigError: an invalid value (nothing was created).
            DevicePermissionError: the process lacks CAP_NET_ADMIN.
            DeviceBusyError: the name exists with other flags or is not a TUN/TAP, or is in use.
            DeviceNotFoundError: ``/dev/net/tun`` is missing, or :meth:`attach` found nothing.
            DeviceError: any other refusal by the OS (``errno`` is kept).
            PlatformNotSupportedError: tunflow has no backend for this OS.
        """
        from ._sync import SyncDevice

        return SyncDevice._build(self.config())

    def build_async(self) -> AsyncDevice:
        """Like :meth:`build_sync`, returning an :class:`~tunflow.AsyncDevice`.

        A plain method, as in tun-rs: call it from inside the event loop (it makes a few fast
        system calls; wrap it in ``anyio.to_thread.run_sync`` if you must not block at all).
        """
        from ._async import AsyncDevice

        return AsyncDevice._build(self.config())
