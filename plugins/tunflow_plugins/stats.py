"""``stats``: count traffic by IP version and protocol, and measure rates.

The pipeline already counts packets and bytes into and out of every stage; this stage adds what
is *in* the traffic (IPv4/IPv6, TCP/UDP/ICMP/other, frames that are not IP) and rates over the
last interval (``pps``, ``bps``), as gauges. One byte read per packet; an IPv6 packet's extension
headers are walked to its transport protocol.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from tunflow.device import Layer
from tunflow.packet import PacketBatch
from tunflow.pipeline import Lane, Processor, StageBase, StageStatistics

from ._headers import ethernet_header_length, parse

__all__ = ["StatsStage", "StatsOptions"]

_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
#: IPv6 next headers that are not the transport protocol: hop-by-hop, routing, fragment,
#: authentication, destination options
_V6_EXTENSIONS = frozenset({0, 43, 44, 51, 60})
#: where a packet whose extension headers do not parse is counted (reserved: ``other``)
_OTHER = 255


@attrs.frozen
class StatsOptions:
    """Options of the ``stats`` stage."""

    interval: float = attrs.field(
        default=1.0, metadata={"help": "seconds over which rates are measured"}
    )
    protocols: bool = attrs.field(
        default=True, metadata={"help": "count by IP version and protocol (one byte per packet)"}
    )

    @interval.validator
    def _check(self, _attr: object, value: float) -> None:
        if not value > 0:
            raise ValueError(f"interval must be > 0, not {value}")


class StatsStage(StageBase):
    """Count packets by IP version and protocol; report packet and bit rates.

    Statistics: ``counters`` ``ipv4``, ``ipv6``, ``tcp``, ``udp``, ``icmp``, ``icmpv6``,
    ``other``, ``not_ip``, ``packets``, ``bytes``; ``gauges`` ``pps`` and ``bps``. A packet
    shorter than its IP version's header (20 bytes, 40 for IPv6) counts as ``not_ip``; an IPv6
    packet counts by the protocol behind its extension headers (``other`` where they do not
    parse), an ICMPv6 message behind a hop-by-hop header (MLD) as ``icmpv6``.
    """

    plugin = "stats"
    summary = "count traffic by IP version and protocol; packet and bit rates"
    Options = StatsOptions

    def __init__(self, options: Any = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self.timer_interval = self.options.interval
        # version nibble -> count, protocol number -> count
        self._versions = [0] * 16
        self._protos = [0] * 256
        self._totals = [0, 0]
        self._last = (time.monotonic(), 0, 0)
        self._rates = (0.0, 0.0)

    def process(self, batch: PacketBatch) -> PacketBatch:
        return self._unbound_processor()(batch)

    def bind(self, lane: Lane) -> Processor:
        versions, protos, totals = self._versions, self._protos, self._totals
        detail = self.options.protocols
        l2 = lane.layer is Layer.L2

        def process(batch: PacketBatch) -> PacketBatch:
            totals[0] += len(batch)
            lengths = batch.lengths
            totals[1] += sum(lengths)
            if detail:
                buf = batch.buffer
                for i, off in enumerate(batch.offsets):
                    n = lengths[i]
                    if l2:  # past the Ethernet header and VLAN tags; ARP and the like: not IP
                        hdr = ethernet_header_length(buf, off, n)
                        if hdr < 0:
                            versions[0] += 1
                            continue
                        off += hdr
                        n -= hdr
                    if n < 20:
                        versions[0] += 1
                        continue
                    v = buf[off] >> 4
                    if v == 4:
                        protos[buf[off + 9]] += 1
                    elif v == 6:
                        if n < 40:  # shorter than the IPv6 header
                            versions[0] += 1
                            continue
                        nh = buf[off + 6]
                        if nh in _V6_EXTENSIONS:  # (the transport header is further on)
                            fields = parse(buf, off, n)
                            nh = _OTHER if isinstance(fields, str) else fields[1]
                        protos[nh] += 1
                    versions[v] += 1
            return batch

        return process

    async def on_timer(self) -> None:
        now = time.monotonic()
        t0, p0, b0 = self._last
        p1, b1 = self._totals
        dt = now - t0
        if dt > 0:
            self._rates = ((p1 - p0) / dt, (b1 - b0) * 8 / dt)
        self._last = (now, p1, b1)

    def gauges(self) -> dict[str, float]:
        return {"pps": self._rates[0], "bps": self._rates[1]}

    def statistics(self) -> StageStatistics:
        stats = super().statistics()
        v, p = self._versions, self._protos
        known = sum(p[k] for k in _PROTO_NAMES)
        counters = {
            "packets": self._totals[0],
            "bytes": self._totals[1],
            "ipv4": v[4],
            "ipv6": v[6],
            "not_ip": sum(v) - v[4] - v[6],
            **{name: p[k] for k, name in _PROTO_NAMES.items()},
            "other": sum(p) - known,
        }
        return attrs.evolve(stats, counters=counters)
