"""WireGuard as a pipeline stage: encrypt outbound, decrypt inbound.

For pipelines built by hand or from TOML where the network side is a plain transport::

    local device ──► … ──► wireguard ──► UDP transport        (outbound: encrypt_batch)
    local device ◄── … ◄── wireguard ◄── UDP transport        (inbound: decrypt_batch)

The stage wraps the same batch functions as :func:`~tunflow.wireguard.open_interface`
(:meth:`WireGuard.encrypt_batch`/:meth:`WireGuard.decrypt_batch`): outbound it turns a batch of
IP packets into a :class:`~tunflow.datagram.DatagramBatch` of sealed datagrams (handshake
initiations appended), inbound the reverse. Handshake answers found while decrypting are sent
back through the transport the datagrams came from (``DatagramBatch.origin``); retransmissions
and keepalives go out when due, from the stage's :meth:`~WireGuardStage.on_timer`. ``open_interface`` is the complete VPN (device
addresses, routes, the ``wg`` control socket); this stage is the building block.

Options (TOML)::

    [[stages]]
    plugin = "wireguard"
    options = { config = "/etc/wireguard/wg0.conf", native = false }
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..datagram import DatagramBatch
from ..errors import ConfigError
from ..packet import HEADROOM, PacketBatch, _larger_copy
from ..pipeline import Direction, Lane, Processor, StageBase, StageContext, StageStatistics
from ._split import _split_whole
from ._timers import DeadlineWait
from .protocol import MAX_NATIVE_PLAINTEXT, InterfaceConfig, WireGuard

__all__ = ["WireGuardStage", "WireGuardStageOptions"]

_CONTROL_CAPACITY = 256 * 1024
#: The longest on_timer sleeps (seconds) before it takes the protocol's events again: they wait
#: in an unbounded queue, and nothing else takes them.
_IDLE_WAKE = 5.0


@attrs.frozen
class WireGuardStageOptions:
    """Options of the ``wireguard`` stage."""

    config: str = attrs.field(metadata={"help": "a wg-quick file: keys, peers, AllowedIPs"})
    native: bool = attrs.field(
        default=False, metadata={"help": "native fast mode with every peer (tunflow peers only)"}
    )


class WireGuardStage(StageBase):
    """Encrypt IP packets into WireGuard datagrams (outbound), decrypt them back (inbound).

    Build it from options (``config``: a wg-quick file) or around a protocol object with
    :meth:`for_protocol`. One protocol object serves both directions and every queue: all
    workers of a pipeline run in one thread (tasks mode), which the protocol needs — a
    pipeline in processes mode with more than one worker process refuses the stage
    (:attr:`one_state`: each process would have its own sessions, and only one receives).

    Statistics: the protocol's drops by reason (``replay``, ``bad_aead``, ``no_route``…) as
    ``drops``, its packet and handshake counts as ``counters``.
    """

    plugin = "wireguard"
    summary = "WireGuard: encrypt outbound IP packets into datagrams, decrypt inbound ones"
    Options = WireGuardStageOptions
    timer_interval = 0.25
    one_state = True

    def __init__(self, options: Any = None, /, *, name: str | None = None, **kwargs: Any) -> None:
        wg = kwargs.pop("wg", None)
        super().__init__(options, name=name, **kwargs)
        if wg is None:
            from .wgquick import load_wgquick

            opts: WireGuardStageOptions = self.options
            try:
                config = load_wgquick(opts.config).interface_config(native=opts.native)
            except ConfigError as exc:
                # the option at fault is `config` (the file's own line is in the message)
                message = str(exc).removeprefix(f"{exc.path}: ") if exc.path else str(exc)
                where = f"{exc.file}: " if exc.file and exc.file not in message else ""
                raise ConfigError(where + message, path="config") from exc
            if config.private_key is None:
                # (`tunflow up` runs one keyless until `wg set` gives it a key; a pipeline
                # has no control socket, so the stage would never handshake)
                raise ConfigError(f"{opts.config}: [Interface] has no PrivateKey", path="config")
            wg = _protocol(config)
        self.wg: WireGuard = wg
        peers = wg.peers.values()
        all_native = bool(peers) and all(p.native_mode for p in peers)
        # WireGuard peers take MTU-sized packets; native-mode peers take super-packets whole.
        # Per instance (StageBase declares the flag per class): the engine reads it with getattr.
        object.__setattr__(self, "needs_mtu_packets", not all_native)
        # (reads planned whole: a WireGuard-mode peer added later gets its packets cut here)
        self._peers_seen = wg.peers_version
        self._cut = False
        self._origin: Any = None
        self._pending: list[tuple[bytes, Any]] = []
        self._ctl = DatagramBatch(_CONTROL_CAPACITY)
        self._running = 0  # pipelines started and not stopped (a Tunnel's two share the stage)
        # on_timer runs (one per pipeline sharing the stage); set when the protocol's next
        # deadline may have moved earlier, which every one of them waits on
        self._timer_loops = 0
        self._timer_wait: DeadlineWait | None = None  # (shared by the on_timer loops)

    @classmethod
    def for_protocol(cls, wg: WireGuard, *, name: str | None = None) -> WireGuardStage:
        """A stage around an existing protocol object (its keys and peers as configured)."""
        return cls(WireGuardStageOptions(config="<protocol object>"), name=name, wg=wg)

    @classmethod
    def for_config(cls, config: InterfaceConfig, *, name: str | None = None) -> WireGuardStage:
        """A stage for an :class:`~tunflow.wireguard.InterfaceConfig`."""
        return cls.for_protocol(_protocol(config), name=name)

    def bind(self, lane: Lane) -> Processor:
        if lane.direction is Direction.INBOUND:
            return self._decryptor(lane)
        return self._encryptor(lane)

    def process(self, batch: PacketBatch) -> PacketBatch:
        """Encrypt (a plain packet batch) or decrypt (a datagram batch)."""
        if isinstance(batch, DatagramBatch):
            return self.bind(Lane(direction=Direction.INBOUND))(batch)
        return self.bind(Lane())(batch)

    # -- the two directions ---------------------------------------------------------------

    def _encryptor(self, lane: Lane) -> Processor:
        wg = self.wg
        outs: list[DatagramBatch] = []
        whole = not self.needs_mtu_packets
        cut: list[PacketBatch | None] = [None]

        def encrypt(batch: PacketBatch) -> PacketBatch:
            if whole and batch.vnet_hdr:
                batch = self._for_wireguard_peers(batch, cut)
            need = batch.end + 48 * len(batch) + _CONTROL_CAPACITY
            out = outs[0] if outs else None
            if out is None or out.capacity < need:
                out = DatagramBatch(need)
                outs[:] = [out]
            out.clear()
            # first what waited for this batch (packets released by a handshake, answers):
            # sent before the newer packets of the batch, not after them
            _put(out, self._pending)
            self._pending.clear()
            wg.encrypt_batch(batch, time.monotonic(), out)
            _put(out, wg.datagrams_to_send())
            return out

        return encrypt

    def _for_wireguard_peers(
        self, batch: PacketBatch, cut: list[PacketBatch | None]
    ) -> PacketBatch:
        """``batch`` (read whole: every peer was native when the stage was made) as it is while
        every peer still is; else cut to MTU-sized packets with complete checksums, which a
        WireGuard-mode peer takes (native peers then get one message a packet, as in
        ``tunflow up``). Super-packets that do not split are dropped and counted."""
        wg = self.wg
        if wg.peers_version != self._peers_seen:
            self._peers_seen = wg.peers_version
            self._cut = not all(p.native_mode for p in wg.peers.values())
        if not self._cut:
            return batch
        out, malformed, lost = _split_whole(batch, 0, cut[0])
        cut[0] = out
        if malformed or lost:
            wg.count_dropped("malformed", malformed)
            wg.count_dropped("split_overflow", lost)
        return out

    def _decryptor(self, lane: Lane) -> Processor:
        wg = self.wg
        outs: list[PacketBatch] = []

        def decrypt(batch: PacketBatch) -> PacketBatch:
            if not isinstance(batch, DatagramBatch):
                raise TypeError("the wireguard stage decrypts DatagramBatches (from a transport)")
            need = batch.end + HEADROOM * (len(batch) + 1) + (1 << 17)
            out = outs[0] if outs else None
            if out is None or out.capacity < need or out.max_packets < len(batch) + 8:
                out = PacketBatch(capacity=need, max_packets=len(batch) + 64)
                outs[:] = [out]
            out.clear()
            if batch.origin is not None:
                self._origin = batch.origin
            now = time.monotonic()
            done = wg.decrypt_batch(batch, now, out)
            if done < len(batch):
                out = _decrypt_rest(wg, batch, done, now, out)
                outs[:] = [out]
            self._flush()
            return out

        return decrypt

    def _flush(self) -> None:
        control = self.wg.datagrams_to_send()
        if not control:
            return
        origin = self._origin
        if origin is None or not hasattr(origin, "send_batch_nowait"):
            # nothing received yet: the next outbound batch carries them
            self._pending.extend(control)
            return
        ctl = self._ctl
        ctl.clear()
        for data, addr in control:
            if ctl.room() < len(data):
                origin.send_batch_nowait(ctl)
                ctl.clear()
            ctl.append(data, address=addr)
        origin.send_batch_nowait(ctl)

    async def start(self, context: StageContext) -> None:
        """The interface comes up: peers with a persistent keepalive send one at once (which
        starts their handshake), through the pipeline's network side when it is a transport,
        else with the first outbound batch. Once for the pipelines sharing the stage (a
        Tunnel's two), and again when it runs anew after they all stopped — through the new
        run's transport (the last one's is closed).

        What that transport then cannot send (unreachable, refused, a bad address) comes off
        the bytes the protocol counted as sent when it sealed them (its ``on_unsent`` hook, if
        nobody else holds it): a peer's ``tx_bytes`` is what was sent, as wireguard-go counts
        it and as :func:`~tunflow.wireguard.open_interface` does."""
        remote = context.remote
        if hasattr(remote, "send_batch_nowait"):
            self._origin = remote
            if getattr(remote, "on_unsent", False) is None:
                remote.on_unsent = self.wg.unsent
        self._running += 1
        if self._running == 1:
            self.wg.start(time.monotonic())
            self._flush()

    async def stop(self) -> None:
        """A pipeline sharing the stage stopped."""
        self._running = max(0, self._running - 1)
        origin = self._origin
        if not self._running and getattr(origin, "on_unsent", None) == self.wg.unsent:
            origin.on_unsent = None  # (the transport may serve on without the stage)

    async def on_timer(self) -> None:
        """Retransmissions, keepalives, rekeying: whatever the protocol's deadlines ask, each
        when it is due. Runs until the pipeline stops (the engine's first call comes
        :attr:`timer_interval` after the start, and again that long after it raised): sleeps
        until the next deadline, woken when one is set earlier meanwhile — a packet starting a
        handshake on an idle interface (:meth:`WireGuard.on_earlier_timer`, held while it
        runs) — and at least every few seconds to take the protocol's events."""
        wg = self.wg
        waiting = self._timer_wait
        if waiting is None:
            waiting = self._timer_wait = DeadlineWait()
        self._timer_loops += 1
        wg.on_earlier_timer(waiting.wake)
        try:
            while True:
                now = time.monotonic()
                deadline = wg.get_timer()
                if deadline is not None and deadline <= now:
                    wg.handle_timer(now)
                    self._flush()
                    continue
                while wg.next_event() is not None:
                    pass
                await waiting.sleep(deadline, now, _IDLE_WAKE)
        finally:
            self._timer_loops -= 1
            if not self._timer_loops:
                wg.on_earlier_timer(None)
                self._timer_wait = None

    def statistics(self) -> StageStatistics:
        s = self.wg.statistics()
        fields = attrs.asdict(s)
        drops = {k[8:]: v for k, v in fields.items() if k.startswith("dropped_") and v}
        counters = {k: v for k, v in fields.items() if not k.startswith("dropped_")}
        return StageStatistics(
            name=self.name, plugin=self.plugin, drops=drops, counters=counters, gauges=_no_gauges
        )


_no_gauges: Mapping[str, float] = {}


def _decrypt_rest(
    wg: WireGuard, batch: DatagramBatch, done: int, now: float, out: PacketBatch
) -> PacketBatch:
    """Decrypt datagrams ``done…`` of ``batch`` that found no room in ``out``: a native
    message completed by a datagram of this batch from fragments stored before takes room for
    its whole super-packet, which ``batch``'s own size does not foresee. ``out`` is grown (its
    packets copied, the arena doubled) until every datagram is taken; ``batch`` is left as it
    was."""
    saved = batch.offsets, batch.lengths, batch.addresses
    try:
        while done < len(batch):
            out = _larger_copy(
                out,
                max(2 * out.capacity, out.end + HEADROOM + MAX_NATIVE_PLAINTEXT),
                max(out.max_packets, len(out) + len(batch) - done),
            )
            batch.keep(range(done, len(batch)))
            done = wg.decrypt_batch(batch, now, out)
    finally:
        batch.offsets, batch.lengths, batch.addresses = saved
    return out


def _put(out: DatagramBatch, datagrams: Iterable[tuple[bytes, Any]]) -> None:
    """Append ``(data, address)`` pairs to ``out`` while there is room (control datagrams)."""
    for data, addr in datagrams:
        if out.room() >= len(data):
            out.append(data, address=addr)


def _protocol(config: InterfaceConfig) -> WireGuard:
    return WireGuard.from_config(config, wall_clock=time.time)
