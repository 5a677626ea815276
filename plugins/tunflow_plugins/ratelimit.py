"""``ratelimit``: a token bucket, global or per flow, that polices (drops) or shapes (delays).

*Police* (default): a packet passes when the bucket holds its cost, else it is dropped and
counted (``drops["rate"]``). *Shape*: every packet passes and the bucket may go into debt; the
worker then waits ``debt / rate`` before reading its next batch, so the source slows down and the
kernel queue absorbs (or drops, and counts) the excess — the pipeline's backpressure. Shaping is
global only. A global bucket is one state for every lane (``one_state``): a pipeline with more
than one worker process refuses it, as each process would hold a bucket and pass the whole rate.
Rates are ``"20mbit"`` (or ``"20mbps"``: bits either way), ``"2.5MB"``, ``"1000pps"`` or a
number of bytes per second.

In packets per second a GSO super-packet costs the segments it stands for — what goes on the
wire — not one. In bytes it costs its own length (the headers each segment repeats, a few per
cent, are not charged). A packet that costs more than the whole bucket (a super-packet of 45
segments against a burst of 10 packets) passes when the bucket is full and leaves it in debt,
so the rate holds on average instead of such packets never passing.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, Literal

import attrs

from tunflow.device import Layer
from tunflow.errors import ConfigError, MalformedPacketError, OffloadError
from tunflow.offload import decode_vnet_hdr, gso_segment_count
from tunflow.packet import HEADROOM, PacketBatch
from tunflow.pipeline import Lane, Processor, StageBase

from ._headers import NOT_IP, parse

__all__ = ["RateLimitStage", "RateLimitOptions", "parse_rate", "segment_costs"]

_UNITS = {
    "": (1.0, "bytes"),
    "b": (1.0, "bytes"),
    # bits per second, in both spellings (``bps`` is bits here, as in "100 Mbps")
    "bps": (1 / 8, "bytes"),
    "bit": (1 / 8, "bytes"),
    "kbit": (1e3 / 8, "bytes"),
    "kbps": (1e3 / 8, "bytes"),
    "mbit": (1e6 / 8, "bytes"),
    "mbps": (1e6 / 8, "bytes"),
    "gbit": (1e9 / 8, "bytes"),
    "gbps": (1e9 / 8, "bytes"),
    "kb": (1e3, "bytes"),
    "mb": (1e6, "bytes"),
    "gb": (1e9, "bytes"),
    "kib": (1024.0, "bytes"),
    "mib": (1024.0**2, "bytes"),
    "gib": (1024.0**3, "bytes"),
    "pps": (1.0, "packets"),
    "kpps": (1e3, "packets"),
    "mpps": (1e6, "packets"),
    "p": (1.0, "packets"),
    "packets": (1.0, "packets"),
}
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*(?:/s)?\s*$")


def parse_rate(value: str | float | int) -> tuple[float, str]:
    """A rate or a size as ``(amount, "bytes" | "packets")``.

    Raises:
        ValueError: not a number with a known unit, or not positive and finite.

    Example:
        >>> parse_rate("20mbit"), parse_rate("1000pps"), parse_rate(4096)
        ((2500000.0, 'bytes'), (1000.0, 'packets'), (4096.0, 'bytes'))
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a rate")
    if isinstance(value, int | float):
        amount, unit = float(value), "bytes"
    else:
        m = _RATE.match(value)
        if m is None or m.group(2).lower() not in _UNITS:
            raise ValueError(
                f"{value!r} is not a rate like '20mbit', '2.5MB', '1000pps' or a byte count"
            )
        scale, unit = _UNITS[m.group(2).lower()]
        amount = float(m.group(1)) * scale
    if not 0 < amount < math.inf:  # (NaN fails both)
        raise ValueError(f"rate {value!r} must be positive and finite")
    return amount, unit


def segment_costs(batch: PacketBatch) -> list[int] | None:
    """What each packet of ``batch`` costs in packets mode: the wire packets it stands for.

    A GSO super-packet is charged its segment count (:func:`~tunflow.offload.gso_segment_count`;
    for one whose headers do not add up — they cannot be told from its payload — its whole
    length over ``gso_size``, rounded up), anything else one. ``None`` when the batch holds
    no super-packet (every cost is one).
    """
    if not batch.vnet_hdr:
        return None
    buf, view, lengths = batch.buffer, batch.view, batch.lengths
    costs: list[int] | None = None
    for i, off in enumerate(batch.offsets):
        if buf[off - HEADROOM + 1]:  # a GSO type: a super-packet
            if costs is None:
                costs = [1] * len(lengths)
            try:
                costs[i] = gso_segment_count(view[off - HEADROOM : off + lengths[i]])
            except (MalformedPacketError, OffloadError):
                gso_size = decode_vnet_hdr(buf, off - HEADROOM)[3]
                costs[i] = max(1, -(-lengths[i] // gso_size)) if gso_size else 1
    return costs


def _check_rate(_inst: object, _attr: object, value: str | float) -> None:
    parse_rate(value)


def _check_burst(_inst: object, _attr: object, value: str | float | None) -> None:
    if value is not None:
        parse_rate(value)


@attrs.frozen
class RateLimitOptions:
    """Options of the ``ratelimit`` stage."""

    rate: str | float = attrs.field(
        validator=_check_rate, metadata={"help": "'20mbit', '2.5MB', '1000pps' or bytes/s"}
    )
    burst: str | float | None = attrs.field(
        default=None,
        validator=_check_burst,
        metadata={"help": "bucket size (default: 0.1 s of rate, at least 64 KiB or 1 packet)"},
    )
    mode: Literal["police", "shape"] = attrs.field(
        default="police", metadata={"help": "police drops, shape delays the source"}
    )
    per_flow: bool = attrs.field(
        default=False, metadata={"help": "one bucket per 5-tuple instead of one for all"}
    )
    max_flows: int = attrs.field(
        default=65536,
        metadata={
            "help": "flow buckets kept at most; a new flow beyond is dropped until idle ones are"
            " forgotten (idle_timeout and a sweep later)"
        },
    )
    idle_timeout: float = attrs.field(
        default=30.0, metadata={"help": "seconds after which an idle flow's bucket is forgotten"}
    )

    def __attrs_post_init__(self) -> None:
        if self.mode == "shape" and self.per_flow:
            raise ValueError("shape mode is global only (per_flow = false)")
        if self.max_flows < 1:
            raise ValueError("max_flows must be at least 1")
        if not self.idle_timeout > 0:  # (NaN too)
            raise ValueError(f"idle_timeout must be positive (seconds), not {self.idle_timeout!r}")


class RateLimitStage(StageBase):
    """Hold traffic to a rate with a token bucket (globally or per 5-tuple flow).

    Per flow, the frames of a TAP that carry no IP (ARP…) share one bucket of their own.

    Statistics: ``drops`` ``rate`` (over the rate), ``flow_table_full`` and
    ``malformed:<reason>`` (per-flow mode parses packets); ``counters`` ``flows`` (buckets made),
    ``delays`` (shape waits); ``gauges`` ``tokens`` and ``flows``.

    Example:
        >>> RateLimitStage(rate="8mbit").rate
        1000000.0
    """

    plugin = "ratelimit"
    summary = "token bucket (global or per flow): police (drop) or shape (delay the source)"
    Options = RateLimitOptions

    def __init__(self, options: Any = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        opts: RateLimitOptions = self.options
        self.rate, self.unit = parse_rate(opts.rate)
        if opts.burst is None:
            floor = 65536.0 if self.unit == "bytes" else 1.0
            self.burst = max(self.rate * 0.1, floor)
        else:
            burst: str | float = opts.burst
            self.burst, unit = parse_rate(burst)
            if unit != self.unit:
                raise ConfigError(f"burst is in {unit} but rate in {self.unit}", path="burst")
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._flows: dict[tuple[int, ...], list[float]] = {}
        if opts.per_flow:
            self.timer_interval = max(0.5, opts.idle_timeout / 2)
        else:
            # one bucket for every lane: a bucket per worker process would pass the rate once
            # per process (a flow stays on its queue, so per-flow buckets split by process)
            self.one_state = True

    def _refill(self, now: float) -> float:
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens = tokens
        return tokens

    def process(self, batch: PacketBatch) -> PacketBatch:
        return self._unbound_processor()(batch)

    def bind(self, lane: Lane) -> Processor:
        opts: RateLimitOptions = self.options
        packets = self.unit == "packets"
        if opts.per_flow:
            return self._per_flow(lane.layer is Layer.L2, packets)
        if opts.mode == "shape":

            def shape(batch: PacketBatch) -> PacketBatch:
                self._refill(time.monotonic())
                if packets:
                    costs = segment_costs(batch)
                    self._tokens -= len(batch) if costs is None else sum(costs)
                else:
                    self._tokens -= sum(batch.lengths)
                return batch

            return shape

        burst = self.burst

        def police(batch: PacketBatch) -> PacketBatch:
            tokens = self._refill(time.monotonic())
            if not packets:
                costs = batch.lengths
            else:
                maybe = segment_costs(batch)
                if maybe is None:  # plain packets, one token each: keep a prefix
                    n = len(batch)
                    if tokens >= n:
                        self._tokens = tokens - n
                        return batch
                    allowed = max(0, int(tokens))  # in debt (after a super-packet): none
                    if not allowed and tokens >= burst:
                        allowed = 1  # a bucket under one packet: one from a full one
                    self._tokens = tokens - allowed
                    self.drop("rate", n - allowed)
                    batch.keep(range(allowed))
                    return batch
                costs = maybe
            total = sum(costs)
            if tokens >= total:
                self._tokens = tokens - total
                return batch
            keep = []
            for i, cost in enumerate(costs):
                if tokens >= cost or (cost > burst and tokens >= burst):
                    tokens -= cost  # (an oversized packet from a full bucket leaves a debt)
                    keep.append(i)
            self._tokens = tokens
            self.drop("rate", len(costs) - len(keep))
            batch.keep(keep)
            return batch

        return police

    def _per_flow(self, l2: bool, packets: bool) -> Processor:
        flows = self._flows
        rate, burst = self.rate, self.burst
        max_flows = self.options.max_flows
        drops = self._drops
        counters = self._counters

        def process(batch: PacketBatch) -> PacketBatch:
            now = time.monotonic()
            buf = batch.buffer
            lengths = batch.lengths
            costs = segment_costs(batch) if packets else lengths
            keep = []
            over = 0
            for i, off in enumerate(batch.offsets):
                fields = parse(buf, off, lengths[i], l2)
                if isinstance(fields, str):
                    if fields != NOT_IP:
                        reason = "malformed:" + fields
                        drops[reason] = drops.get(reason, 0) + 1
                        continue
                    key: tuple[int, ...] = ()  # frames that carry no IP (ARP…) share one bucket
                else:
                    key = fields[:6]
                bucket = flows.get(key)
                if bucket is None:
                    if len(flows) >= max_flows:
                        drops["flow_table_full"] = drops.get("flow_table_full", 0) + 1
                        continue
                    bucket = flows[key] = [burst, now]
                    counters["flows"] = counters.get("flows", 0) + 1
                tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
                bucket[1] = now
                cost = 1 if costs is None else costs[i]
                if tokens >= cost or (cost > burst and tokens >= burst):
                    bucket[0] = tokens - cost
                    keep.append(i)
                else:
                    bucket[0] = tokens
                    over += 1
            if over:
                drops["rate"] = drops.get("rate", 0) + over
            if len(keep) != len(lengths):
                batch.keep(keep)
            return batch

        return process

    def delay(self) -> float:
        if self.options.mode != "shape":
            return 0.0
        tokens = self._refill(time.monotonic())
        if tokens >= 0:
            return 0.0
        self.count("delays")
        return -tokens / self.rate

    async def on_timer(self) -> None:
        now = time.monotonic()
        idle = self.options.idle_timeout
        stale = [k for k, b in self._flows.items() if now - b[1] > idle]
        for k in stale:
            del self._flows[k]

    def gauges(self) -> dict[str, float]:
        return {"tokens": self._tokens, "flows": float(len(self._flows))}
