"""``filter``: ordered allow/deny rules on direction, IP version, protocol, addresses, ports and
ICMP types, with a default policy and a counter per rule.

The first rule that matches a packet decides; no match applies ``default``. Malformed packets are
dropped and counted by reason (``malformed:truncated``…), never raised. Super-packets are judged
by their headers, which describe every segment, so the filter runs on whole GSO packets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any, Literal

import attrs

from tunflow._text import digits_value, is_decimal
from tunflow.device import Layer
from tunflow.errors import ConfigError
from tunflow.packet import PacketBatch
from tunflow.pipeline import Direction, Lane, Processor, StageBase, StageStatistics

from ._headers import NOT_IP, PROTOCOLS, parse

__all__ = ["FilterStage", "Rule", "FilterOptions"]

Action = Literal["allow", "deny"]


def _check_protocol(_inst: object, _attr: object, value: str | int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        raise ValueError(f"protocol {value!r} is neither a name nor a number")
    if isinstance(value, int):
        if not 0 <= value <= 255:
            raise ValueError(f"protocol number {value} is outside 0..255")
    elif value.lower() not in PROTOCOLS:
        raise ValueError(f"unknown protocol {value!r} (one of {', '.join(PROTOCOLS)} or a number)")


def _check_cidrs(_inst: object, _attr: object, value: Sequence[str]) -> None:
    for text in value:
        if "%" in text:  # (ipaddress keeps an IPv6 scope, which the match then ignored)
            raise ValueError(f"{text!r}: a rule's network takes no scope")
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a CIDR: {exc}") from None


def _port_range(value: int | str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise ValueError(f"port {value!r} is not a port")
    if isinstance(value, int):
        lo = hi = value
    else:
        text = value.strip()
        a, sep, b = text.partition("-")
        a, b = a.strip(), b.strip()
        # ASCII digits only: isdigit() took "٣" (int() reads it as 3) and "²" (int() refuses it)
        if not is_decimal(a) or (sep and not is_decimal(b)):
            raise ValueError(f"{value!r} is not a port or a range like '1000-2000'")
        lo = digits_value(a)
        hi = digits_value(b) if sep else lo
    if not 0 <= lo <= hi <= 65535:
        raise ValueError(f"port range {value!r} is outside 0..65535 or reversed")
    return lo, hi


def _check_ports(_inst: object, _attr: object, value: Sequence[int | str]) -> None:
    for v in value:
        _port_range(v)


def _check_icmp(_inst: object, _attr: object, value: Sequence[int]) -> None:
    for v in value:
        if isinstance(v, bool) or not 0 <= v <= 255:
            raise ValueError(f"ICMP type {v!r} is outside 0..255")


@attrs.frozen
class Rule:
    """One filter rule; every field given must match (an empty list matches anything)."""

    action: Action = attrs.field(metadata={"help": "allow or deny"})
    direction: Literal["in", "out", "any"] = attrs.field(
        default="any", metadata={"help": "in, out or any"}
    )
    ip_version: Literal[4, 6] | None = attrs.field(default=None, metadata={"help": "4 or 6"})
    protocol: str | int | None = attrs.field(
        default=None, validator=_check_protocol, metadata={"help": "tcp, udp, icmp, … or a number"}
    )
    src: list[str] = attrs.field(
        factory=list, validator=_check_cidrs, metadata={"help": "source CIDRs"}
    )
    dst: list[str] = attrs.field(
        factory=list, validator=_check_cidrs, metadata={"help": "destination CIDRs"}
    )
    src_ports: list[int | str] = attrs.field(
        factory=list, validator=_check_ports, metadata={"help": "ports or 'lo-hi' ranges"}
    )
    dst_ports: list[int | str] = attrs.field(
        factory=list, validator=_check_ports, metadata={"help": "ports or 'lo-hi' ranges"}
    )
    icmp_types: list[int] = attrs.field(
        factory=list, validator=_check_icmp, metadata={"help": "ICMP/ICMPv6 types"}
    )
    name: str | None = attrs.field(default=None, metadata={"help": "label for the counters"})


@attrs.frozen
class FilterOptions:
    """Options of the ``filter`` stage."""

    rules: list[Rule] = attrs.field(factory=list, metadata={"help": "checked in order"})
    default: Action = attrs.field(default="allow", metadata={"help": "when no rule matches"})
    non_ip: Action = attrs.field(
        default="allow", metadata={"help": "TAP frames that carry no IP packet (ARP…)"}
    )

    def __attrs_post_init__(self) -> None:
        # one counter per label: two rules of one label (a name twice, "rule1" for another rule
        # than rules[1], "default") kept only the last one's hits
        owners = {"default": "the default policy"}
        for i, rule in enumerate(self.rules):
            label = rule.name or f"rule{i}"
            if label in owners:
                raise ConfigError(
                    f"its counter would be {label!r}, which is {owners[label]}'s: name it apart",
                    path=f"rules[{i}]",
                )
            owners[label] = f"rules[{i}]"


# A compiled rule: allow, version, protocol, src nets, dst nets, sport ranges, dport ranges,
# icmp types — each None when the rule does not constrain it.
_Compiled = tuple[
    bool,
    int | None,
    int | None,
    tuple[tuple[int, int, int], ...] | None,
    tuple[tuple[int, int, int], ...] | None,
    tuple[tuple[int, int], ...] | None,
    tuple[tuple[int, int], ...] | None,
    frozenset[int] | None,
]


def _nets(cidrs: Sequence[str]) -> tuple[tuple[int, int, int], ...] | None:
    if not cidrs:
        return None
    out = []
    for text in cidrs:
        net = ipaddress.ip_network(text, strict=False)
        out.append((net.version, int(net.network_address), int(net.netmask)))
    return tuple(out)


def compile_rule(rule: Rule) -> _Compiled:
    """A rule as plain tuples for the hot loop."""
    proto: int | None
    if rule.protocol is None:
        proto = None
    elif isinstance(rule.protocol, int):
        proto = rule.protocol
    else:
        proto = PROTOCOLS[rule.protocol.lower()]
    return (
        rule.action == "allow",
        rule.ip_version,
        proto,
        _nets(rule.src),
        _nets(rule.dst),
        tuple(_port_range(p) for p in rule.src_ports) or None,
        tuple(_port_range(p) for p in rule.dst_ports) or None,
        frozenset(rule.icmp_types) or None,
    )


def _in_nets(version: int, addr: int, nets: tuple[tuple[int, int, int], ...]) -> bool:
    # Plain loops: a generator in any() costs more than the few comparisons per packet.
    for v, net, mask in nets:  # noqa: SIM110
        if v == version and addr & mask == net:
            return True
    return False


def _in_ranges(port: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    if port < 0:
        return False
    for lo, hi in ranges:  # noqa: SIM110
        if lo <= port <= hi:
            return True
    return False


def matches(rule: _Compiled, fields: tuple[int, int, int, int, int, int, int]) -> bool:
    """Whether a compiled rule matches a packet's :func:`~._headers.parse` fields."""
    _, version, proto, src, dst, sports, dports, icmp = rule
    v, p, s, d, sp, dp, it = fields
    if version is not None and version != v:
        return False
    if proto is not None and proto != p:
        return False
    if src is not None and not _in_nets(v, s, src):
        return False
    if dst is not None and not _in_nets(v, d, dst):
        return False
    if sports is not None and not _in_ranges(sp, sports):
        return False
    if dports is not None and not _in_ranges(dp, dports):
        return False
    return not (icmp is not None and it not in icmp)


class FilterStage(StageBase):
    """Allow or deny packets by ordered rules; count hits per rule.

    Options (TOML ``[stages.options]``):

    * ``rules`` — a list of ``{action, direction, ip_version, protocol, src, dst, src_ports,
      dst_ports, icmp_types, name}`` tables; the first match decides;
    * ``default`` — ``"allow"`` (default) or ``"deny"`` when no rule matches;
    * ``non_ip`` — what to do with TAP frames that carry no IP (ARP): ``"allow"`` by default.

    Statistics: ``counters`` has one entry per rule (its ``name`` or ``rule<N>``) and
    ``default``; ``drops`` has ``denied``, ``default`` (denied by the default policy),
    ``non_ip`` and ``malformed:<reason>``.

    Example:
        >>> f = FilterStage(rules=[{"action": "deny", "protocol": "udp", "dst_ports": [53]}])
        >>> f.options.rules[0].dst_ports
        [53]
    """

    plugin = "filter"
    summary = "ordered allow/deny rules on direction, version, protocol, CIDRs, ports, ICMP types"
    Options = FilterOptions

    def __init__(self, options: Any = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        opts: FilterOptions = self.options
        self._rules = [compile_rule(r) for r in opts.rules]
        self._labels = [r.name or f"rule{i}" for i, r in enumerate(opts.rules)]
        self._hits = [0] * len(opts.rules)
        self._default_hits = [0]

    def bind(self, lane: Lane) -> Processor:
        opts: FilterOptions = self.options
        want = "in" if lane.direction is Direction.INBOUND else "out"
        rules = [
            (i, r)
            for i, (r, spec) in enumerate(zip(self._rules, opts.rules, strict=True))
            if spec.direction in ("any", want)
        ]
        return self._processor(rules, lane.layer is Layer.L2)

    def process(self, batch: PacketBatch) -> PacketBatch:
        # Outside a lane there is no direction: every rule applies. Built once, then kept.
        if self._unbound is None:
            self._unbound = self._processor(list(enumerate(self._rules)), False)
        return self._unbound(batch)

    def _processor(self, rules: list[tuple[int, _Compiled]], l2: bool) -> Processor:
        opts: FilterOptions = self.options
        default_allow = opts.default == "allow"
        non_ip_allow = opts.non_ip == "allow"
        hits = self._hits
        default_hits = self._default_hits
        drops = self._drops

        def process(batch: PacketBatch) -> PacketBatch:
            buf = batch.buffer
            lengths = batch.lengths
            keep: list[int] = []
            add = keep.append
            denied = defaulted = 0
            for i, off in enumerate(batch.offsets):
                fields = parse(buf, off, lengths[i], l2)
                if isinstance(fields, str):
                    if fields == NOT_IP:
                        if non_ip_allow:
                            add(i)
                        else:
                            drops["non_ip"] = drops.get("non_ip", 0) + 1
                        continue
                    reason = "malformed:" + fields
                    drops[reason] = drops.get(reason, 0) + 1
                    continue
                for idx, rule in rules:
                    if matches(rule, fields):
                        hits[idx] += 1
                        if rule[0]:
                            add(i)
                        else:
                            denied += 1
                        break
                else:
                    default_hits[0] += 1
                    if default_allow:
                        add(i)
                    else:
                        defaulted += 1
            if denied:
                drops["denied"] = drops.get("denied", 0) + denied
            if defaulted:
                drops["default"] = drops.get("default", 0) + defaulted
            if len(keep) != len(lengths):
                batch.keep(keep)
            return batch

        return process

    def statistics(self) -> StageStatistics:
        stats = super().statistics()
        counters = dict(zip(self._labels, self._hits, strict=True))
        counters["default"] = self._default_hits[0]
        return attrs.evolve(stats, counters=counters)
