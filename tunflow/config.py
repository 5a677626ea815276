"""The TOML configuration of a pipeline: devices, transports, the stage chain, and how to run it.

The schema is a tree of ``@attrs.frozen`` classes structured by a cattrs converter that refuses
unknown keys; every error becomes a :class:`~tunflow.ConfigError` naming the file and the dotted
path of the bad key (``devices.a.mtu``, ``stages[1].options.rate``). The same tree is built from
Python by constructing the classes directly, and :meth:`Config.open` runs it.

Example (a file)::

    [devices.wan]
    name = "tf0"
    addresses = ["10.0.0.1/24"]
    offload = true

    [transports.peer]
    listen = "0.0.0.0:51820"
    peer = "192.0.2.7:51820"

    [[stages]]
    plugin = "filter"
    options = { default = "allow", rules = [{ action = "deny", protocol = "icmp" }] }

    [tunnel]
    local = "wan"
    remote = "peer"

Example (Python):
    >>> cfg = Config(
    ...     devices={"a": DeviceSpec(name="tf0", addresses=["10.0.0.1/24"])},
    ...     stages=[StageSpec("stats")],
    ...     pipeline=PipelineSpec(source="a", sink="a"),
    ... )
    >>> cfg.check().stages[0].plugin
    'stats'
"""

from __future__ import annotations

import contextlib
import ipaddress
import tomllib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs
import cattrs

from .errors import ConfigError, PluginError
from .pipeline._engine import MAX_BUFFER, MIXED_LAYERS, one_state_refusal
from .pipeline._plugins import build_stage, config_error_from_cattrs, converter
from .pipeline._stage import ErrorPolicy, StageSpec

if TYPE_CHECKING:
    from .device import AsyncDevice, DeviceBuilder
    from .pipeline import Endpoint, Pipeline, Tunnel
    from .transport import UDPTransport

__all__ = [
    "Config",
    "DeviceSpec",
    "TransportSpec",
    "PipelineSpec",
    "TunnelSpec",
    "StageSpec",
    "load_config",
    "loads_config",
]


def _check_cidrs(kind: str) -> Any:
    def check(_inst: object, attr: attrs.Attribute[Any], value: list[str]) -> None:
        for i, text in enumerate(value):
            if "%" in text:  # (ipaddress keeps an IPv6 scope, which was then dropped unsaid)
                raise ValueError(
                    f"{attr.name}[{i}] {text!r}: no scope here: the device is its scope"
                )
            try:
                if kind == "interface":
                    ipaddress.ip_interface(text)
                else:
                    ipaddress.ip_network(text, strict=False)
            except ValueError as exc:
                raise ValueError(f"{attr.name}[{i}] {text!r}: {exc}") from None

    return check


def _within(
    low: float, high: float | None = None, *, above: bool = False, integer: bool = False
) -> Any:
    """A validator: the value lies in ``low..high`` (``above``: strictly above ``low``), and is
    an ``int`` when ``integer`` (as a file's value must be).

    It raises a :class:`ConfigError` whose path is the attribute's name, so a file's error ends
    at the key itself (``tunnel.batch_size``) and a Python caller reads which argument it was.
    """

    def check(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"must be a number, not {value!r}", path=attr.name)
        bad = (value <= low if above else value < low) or (high is not None and value > high)
        if bad or value != value:  # (NaN compares false to everything)
            if above:
                rule = "a positive number" if low == 0 else f"above {low}"
            elif high is None:
                rule = f"at least {low}"
            else:
                rule = f"within {low}..{high}"
            raise ConfigError(f"must be {rule}, not {value!r}", path=attr.name)
        if integer and not isinstance(value, int):
            raise ConfigError(f"must be an integer, not {value!r}", path=attr.name)

    return check


@attrs.frozen
class DeviceSpec:
    """A TUN/TAP device to make (or attach to).

    Attributes:
        name: the interface name (default: the kernel picks ``tunN``/``tapN``).
        layer: ``"tun"`` (IP packets) or ``"tap"`` (Ethernet frames).
        mtu: the MTU.
        addresses: ``"10.0.0.1/24"``, ``"fd00::1/64"``…
        routes: networks routed into the device.
        queues: queues to open (more than one makes a multi-queue device; one worker each).
        offload: Linux TUN offload (GSO/GRO super-packets).
        tx_queue_len: the kernel's queue length towards the device.
        mac: a TAP's MAC address.
        attach: attach to an existing interface of that name.
        netns: make the device inside this network namespace (Linux).
    """

    name: str | None = None
    layer: Literal["tun", "tap"] = "tun"
    mtu: int | None = None
    addresses: list[str] = attrs.field(factory=list, validator=_check_cidrs("interface"))
    routes: list[str] = attrs.field(factory=list, validator=_check_cidrs("network"))
    queues: int = attrs.field(default=1, validator=_within(1, 256, integer=True))
    offload: bool = False
    tx_queue_len: int | None = None
    mac: str | None = None
    attach: bool = False
    netns: str | None = None

    def builder(self) -> DeviceBuilder:
        """The :class:`~tunflow.DeviceBuilder` for this device (values checked).

        Raises:
            ConfigError: a value the builder refuses.
        """
        from .device import DeviceBuilder

        b = DeviceBuilder().layer(self.layer)
        if self.name is not None:
            b = b.attach(self.name) if self.attach else b.name(self.name)
        elif self.attach:
            # (the builder's attach() takes the name: attach = true alone was left out, and a
            # new device made in place of the existing one asked for)
            raise ConfigError("attaching to an existing device needs its name")
        if self.netns is not None:
            b = b.netns(self.netns)
        if self.mtu is not None:
            b = b.mtu(self.mtu)
        for text in self.addresses:
            iface = ipaddress.ip_interface(text)
            if iface.version == 4:
                b = b.ipv4(str(iface.ip), iface.network.prefixlen)
            else:
                b = b.ipv6(str(iface.ip), iface.network.prefixlen)
        for text in self.routes:
            b = b.route(text)
        if self.queues > 1:
            b = b.multi_queue(True)
        if self.offload:
            b = b.offload(True)
        if self.tx_queue_len is not None:
            b = b.tx_queue_len(self.tx_queue_len)
        if self.mac is not None:
            b = b.mac_addr(self.mac)
        b.config()
        return b


@attrs.frozen
class TransportSpec:
    """A transport to open.

    Attributes:
        kind: ``"udp"``.
        listen: the local ``host:port``.
        peer: the default destination ``host:port`` (connects the socket).
        reuse_port: ``SO_REUSEPORT``.
        max_datagram: the largest datagram received.
        netns: make the socket inside this network namespace (Linux), as a device's ``netns``
            takes it; ``listen`` and ``peer`` are then that namespace's addresses (host names
            are still resolved where the caller is, as :meth:`UDPTransport.bind` says).
    """

    kind: Literal["udp"] = "udp"
    listen: str = "0.0.0.0:0"
    peer: str | None = None
    reuse_port: bool = False
    max_datagram: int = attrs.field(default=65507, validator=_within(1, 65535, integer=True))
    netns: str | None = None

    def __attrs_post_init__(self) -> None:
        from .netconfig.device import parse_netns
        from .transport import parse_endpoint

        parse_endpoint(self.listen)
        if self.peer is not None:
            parse_endpoint(self.peer)
        if self.netns is not None:
            parse_netns(self.netns)


@attrs.frozen
class _RunSpec:
    workers: Literal["tasks", "processes"] = "tasks"
    on_error: Literal["drop", "stop"] = "drop"
    buffer: int = attrs.field(default=0, validator=_within(0, MAX_BUFFER, integer=True))
    batch_size: int = attrs.field(default=128, validator=_within(1, 65536, integer=True))
    statistics_interval: float = attrs.field(default=0.5, validator=_within(0, above=True))
    name: str | None = None


@attrs.frozen
class PipelineSpec(_RunSpec):
    """Run one direction: ``source`` → stages → ``sink`` (names of devices or transports).

    Attributes:
        source: a device or transport name.
        sink: a device or transport name.
        direction: what the stages are told: ``"out"`` or ``"in"``.
        workers: ``"tasks"`` or ``"processes"``.
        on_error: ``"drop"`` or ``"stop"``.
        buffer: batches in flight between a worker's reader and its chain.
        batch_size: packets per batch.
        statistics_interval: how often worker processes report (seconds).
        name: the pipeline's name.
    """

    source: str = ""
    sink: str = ""
    direction: Literal["out", "in"] = "out"


@attrs.frozen
class TunnelSpec(_RunSpec):
    """Run both directions: ``local`` → stages → ``remote`` and back through them reversed.

    Attributes:
        local: a device name.
        remote: a device or transport name.
        workers, on_error, buffer, batch_size, statistics_interval, name: as
            :class:`PipelineSpec`.
    """

    local: str = ""
    remote: str = ""


@attrs.frozen
class Config:
    """A whole configuration. Exactly one of :attr:`pipeline` and :attr:`tunnel` is set.

    Attributes:
        devices: devices by name (the name used by ``pipeline``/``tunnel``).
        transports: transports by name.
        stages: the chain, in (outbound) order.
        pipeline: run one direction.
        tunnel: run both directions.
        file: the file it was read from (set by :func:`load_config`).
    """

    devices: dict[str, DeviceSpec] = attrs.field(factory=dict)
    transports: dict[str, TransportSpec] = attrs.field(factory=dict)
    stages: list[StageSpec] = attrs.field(factory=list)
    pipeline: PipelineSpec | None = None
    tunnel: TunnelSpec | None = None
    file: str | None = attrs.field(default=None, eq=False)

    def _error(self, message: str, path: str | None) -> ConfigError:
        return ConfigError(message, path=path, file=self.file)

    def check(self) -> Config:
        """Check what the types cannot: names that exist, plugins and their options, device
        settings the builder refuses, and what running it would refuse before any packet moves
        (an interface name given to two devices, a TAP joined to a TUN, a stage keeping one state
        for every lane in more than one worker process). Builds every stage once (nothing is
        opened).

        Returns:
            ``self``.

        Raises:
            ConfigError: the first problem, naming the file and the key's path.
        """
        if (self.pipeline is None) == (self.tunnel is None):
            raise self._error("give exactly one of [pipeline] or [tunnel]", None)
        overlap = set(self.devices) & set(self.transports)
        if overlap:
            raise self._error(f"{sorted(overlap)[0]!r} names a device and a transport", None)
        known = set(self.devices) | set(self.transports)
        if self.pipeline is not None:
            ends = [
                ("pipeline.source", self.pipeline.source),
                ("pipeline.sink", self.pipeline.sink),
            ]
        else:
            assert self.tunnel is not None
            ends = [("tunnel.local", self.tunnel.local), ("tunnel.remote", self.tunnel.remote)]
        for path, value in ends:
            if value not in known:
                hint = f" (defined: {', '.join(sorted(known))})" if known else ""
                if not value:
                    raise self._error(f"missing: name a device or transport{hint}", path)
                raise self._error(f"{value!r} is not a device or transport{hint}", path)
        if self.tunnel is not None and self.tunnel.local == self.tunnel.remote:
            # (both directions read the one end: BusyResourceError out of tunflow run)
            raise self._error(
                f"{self.tunnel.remote!r} is tunnel.local too: a tunnel joins two ends",
                "tunnel.remote",
            )
        named: dict[tuple[str, str | None], str] = {}
        for name, dev in self.devices.items():
            try:
                dev.builder()
            except ConfigError as exc:
                raise self._error(str(exc), f"devices.{name}") from None
            if dev.name is not None and "%" not in dev.name:
                first = named.setdefault((dev.name, dev.netns), name)
                if first != name:
                    raise self._error(
                        f"{dev.name!r} is devices.{first}'s name too: one device per interface "
                        "(more queues: queues = N)",
                        f"devices.{name}.name",
                    )
        layers = {self.devices[value].layer for _, value in ends if value in self.devices}
        if len(layers) > 1:
            raise self._error(MIXED_LAYERS, ends[1][0])
        built = []
        for i, spec in enumerate(self.stages):
            try:
                built.append(build_stage(spec, path=f"stages[{i}]"))
            except ConfigError as exc:
                raise self._error(_strip_path(exc), exc.path or f"stages[{i}]") from None
            except PluginError as exc:
                raise self._error(str(exc), f"stages[{i}].plugin") from None
        run = self.pipeline or self.tunnel
        assert run is not None
        # as the engine counts them: one per queue of a direction's source
        sources = [ends[0][1]] if self.pipeline is not None else [value for _, value in ends]
        processes = max(self.devices[v].queues if v in self.devices else 1 for v in sources)
        refused = one_state_refusal(built, processes) if run.workers == "processes" else None
        if refused is not None:
            i, why = refused
            raise self._error(f"stage {built[i].name!r} {why}", f"stages[{i}]")
        return self

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Pipeline | Tunnel]:
        """Make the devices and transports, run the pipeline or tunnel, and yield it; on exit
        stop it and close everything made here.

        Raises:
            ConfigError: as :meth:`check`.
            DeviceError: a device could not be made (permissions…).
            OSError: a transport could not bind.
        """
        from .pipeline import open_pipeline, open_tunnel
        from .transport import UDPTransport

        self.check()
        async with contextlib.AsyncExitStack() as stack:
            ends: dict[str, list[AsyncDevice] | UDPTransport] = {}
            for name, dev in self.devices.items():
                first: AsyncDevice = dev.builder().build_async()
                stack.push_async_callback(first.aclose)
                queues = [first]
                for _ in range(dev.queues - 1):
                    q = await first.try_clone()
                    stack.push_async_callback(q.aclose)
                    queues.append(q)
                ends[name] = queues
            for name, tr in self.transports.items():
                transport = UDPTransport.bind(
                    tr.listen,
                    peer=tr.peer,
                    reuse_port=tr.reuse_port,
                    max_datagram=tr.max_datagram,
                    netns=tr.netns,
                    name=name,
                )
                stack.push_async_callback(transport.aclose)
                ends[name] = transport
            running: Pipeline | Tunnel
            if self.pipeline is not None:
                p = self.pipeline
                running = await stack.enter_async_context(
                    open_pipeline(
                        _ports(ends[p.source], p.batch_size),
                        self.stages,
                        _ports(ends[p.sink], p.batch_size),
                        name=p.name or "pipeline",
                        direction=p.direction,
                        workers=p.workers,
                        on_error=p.on_error,
                        buffer=p.buffer,
                        statistics_interval=p.statistics_interval,
                    )
                )
            else:
                assert self.tunnel is not None
                t = self.tunnel
                running = await stack.enter_async_context(
                    open_tunnel(
                        _ports(ends[t.local], t.batch_size),
                        _ports(ends[t.remote], t.batch_size),
                        self.stages,
                        name=t.name or "tunnel",
                        workers=t.workers,
                        on_error=t.on_error,
                        buffer=t.buffer,
                        statistics_interval=t.statistics_interval,
                    )
                )
            yield running


def _ports(end: list[AsyncDevice] | UDPTransport, batch_size: int) -> Endpoint:
    """A device's queues as ports with ``batch_size`` packets a batch; a transport as it is."""
    from .pipeline import DevicePort

    if isinstance(end, list):
        return [DevicePort(q, queue=i, max_packets=batch_size) for i, q in enumerate(end)]
    return end


def _strip_path(exc: ConfigError) -> str:
    text = str(exc)
    if exc.path and text.startswith(f"{exc.path}: "):
        return text[len(exc.path) + 2 :]
    return text


converter.register_structure_hook(ErrorPolicy, lambda v, _: ErrorPolicy(v))
converter.register_unstructure_hook(ErrorPolicy, lambda v: v.value)


def _structure_stage(value: Any, _: type) -> StageSpec:
    if not isinstance(value, Mapping):
        raise ValueError(f"a stage is a table with a 'plugin' key, not {value!r}")
    extra = set(value) - {"plugin", "options", "name", "on_error"}
    if extra:
        raise cattrs.ForbiddenExtraKeysError("", StageSpec, extra)
    if "plugin" not in value or not isinstance(value["plugin"], str):
        raise ValueError("a stage needs plugin = NAME (see `tunflow stages`)")
    options = value.get("options", {})
    if not isinstance(options, Mapping):
        raise ValueError(f"options must be a table, not {options!r}")
    name = value.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"name must be a string, not {name!r}")
    on_error = value.get("on_error")
    return StageSpec(
        value["plugin"],
        dict(options),
        name=name,
        on_error=on_error,  # (StageSpec takes a policy's name)
    )


converter.register_structure_hook(StageSpec, _structure_stage)


def loads_config(text: str, *, file: str | None = None) -> Config:
    """Parse and check a TOML configuration.

    Args:
        text: the TOML.
        file: its name, for error messages.

    Raises:
        ConfigError: bad TOML (line and column), an unknown or mistyped key, a missing plugin,
            bad stage options… — ``file`` and ``path`` say where.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from None
    except RecursionError:
        raise ConfigError("not valid TOML: nested too deeply", file=file) from None
    try:
        config = converter.structure(data, Config)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        err = config_error_from_cattrs(exc, file=file)
        raise err from None
    return attrs.evolve(config, file=file).check()


def load_config(path: str | Path) -> Config:
    """Read, parse and check a TOML configuration file.

    Raises:
        ConfigError: as :func:`loads_config`, or the file cannot be read or is not UTF-8.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8
        bad = exc.object[exc.start]
        raise ConfigError(
            f"not UTF-8 text (byte {bad:#04x} at offset {exc.start})", file=str(path)
        ) from None
    return loads_config(text, file=str(path))
