"""A peer's state: handshake, the three sessions, staged packets and its five timers.

The timers follow wireguard-go's ``device/timers.go`` (itself the kernel's ``timers.c``), but as
*deadlines* — plain floats or ``None`` — that :meth:`WireGuard.get_timer` folds into one
wake-up time and :meth:`WireGuard.handle_timer` fires. The ``on_*`` hooks below are the
``timers*`` functions of wireguard-go, called by the interface at the same points.

=====================  =====================================================================
deadline               fires
=====================  =====================================================================
``retransmit_at``      REKEY_TIMEOUT (+ jitter) after an initiation without a response:
                       retry, or give up after MAX_TIMER_HANDSHAKES retries
``keepalive_at``       KEEPALIVE_TIMEOUT after data was received and nothing was sent back
``new_handshake_at``   KEEPALIVE_TIMEOUT + REKEY_TIMEOUT (+ jitter) after data was sent and
                       nothing authenticated came back: start a new handshake
``zero_keys_at``       3 x REJECT_AFTER_TIME after the last session was derived: erase all keys
``persistent_at``      the persistent keepalive interval after any authenticated packet
=====================  =====================================================================

The hooks that set a deadline also put the peer in the interface's heap of wake-ups (one entry
per peer, at its earliest deadline or before it: entries left behind by a deadline moved or
cleared are skipped when they come up), so that the interface finds the next deadline and the
peers due without walking every peer; an entry that goes to the top of the heap calls the
interface's timer hook (:meth:`WireGuard.on_earlier_timer`), if any.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable

from .constants import (
    KEEPALIVE_TIMEOUT,
    MAX_STAGED_PACKETS,
    REJECT_AFTER_TIME,
    REKEY_TIMEOUT,
)
from .cookie import CookieGenerator
from .datagrams import Address
from .keys import PresharedKey, PublicKey
from .noise import Handshake, StaticIdentity
from .session import Session

__all__ = ["Peer"]


class Peer:
    """One configured peer of a :class:`~tunflow.wireguard.protocol.WireGuard` interface.

    Created by :meth:`WireGuard.add_peer`; read its attributes, change it through the interface.

    Attributes:
        public_key: the peer's static public key.
        preshared_key: the PSK (all zeros when none).
        endpoint: where datagrams for the peer go; updated to the source of every authenticated
            datagram (roaming). ``None`` until configured or learnt.
        persistent_keepalive: seconds between keepalives when idle (0 = off).
        native_mode: whether to send tunflow native fast-mode messages (tunflow peers only).
        current / previous / next: the sessions (wireguard-go's keypairs). We send with
            ``current``; ``next`` is a responder's session awaiting its first packet.
        staged: packets waiting for a session (at most ``MAX_STAGED_PACKETS``, oldest dropped).
        rx_bytes / tx_bytes: datagram bytes received from / sent to the peer.
        last_handshake: wall-clock time (UNIX, see :class:`WireGuard`) of the last completed
            handshake, or ``None``.
    """

    __slots__ = (
        "_earlier",
        "_heap",
        "_serial",
        "_wake",
        "cookies",
        "current",
        "endpoint",
        "handshake",
        "handshake_attempts",
        "keepalive_at",
        "last_handshake",
        "last_sent_handshake",
        "native_mode",
        "need_another_keepalive",
        "new_handshake_at",
        "next",
        "persistent_at",
        "persistent_keepalive",
        "preshared_key",
        "previous",
        "public_key",
        "retransmit_at",
        "rx_bytes",
        "sent_last_minute_handshake",
        "staged",
        "tx_bytes",
        "zero_keys_at",
    )

    def __init__(
        self,
        identity: StaticIdentity,
        public_key: PublicKey,
        preshared_key: PresharedKey | None = None,
        endpoint: Address | None = None,
        persistent_keepalive: int = 0,
        native_mode: bool = False,
        *,
        static_static: bytes | None = None,
    ) -> None:
        self.public_key = public_key
        self.preshared_key = preshared_key or PresharedKey()
        self.handshake = Handshake(
            identity, public_key, self.preshared_key, static_static=static_static
        )
        self.cookies = CookieGenerator(public_key)
        self.endpoint = endpoint
        self.persistent_keepalive = persistent_keepalive
        self.native_mode = native_mode
        self.current: Session | None = None
        self.previous: Session | None = None
        self.next: Session | None = None
        self.staged: deque[bytes] = deque(maxlen=MAX_STAGED_PACKETS)
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.last_handshake: float | None = None
        self.last_sent_handshake: float | None = None
        self.handshake_attempts = 0
        self.sent_last_minute_handshake = False
        self.need_another_keepalive = False
        self.retransmit_at: float | None = None
        self.keepalive_at: float | None = None
        self.new_handshake_at: float | None = None
        self.zero_keys_at: float | None = None
        self.persistent_at: float | None = None
        # the interface's heap of (time, serial, peer) wake-ups (None: not in an interface),
        # this peer's place in its order of peers, and the time of its live entry there
        self._heap: list[tuple[float, int, Peer]] | None = None
        self._serial = 0
        self._wake: float | None = None
        # the interface's timer hook (WireGuard.on_earlier_timer), called when an entry of this
        # peer goes to the top of the heap
        self._earlier: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<Peer {self.public_key.to_base64()} endpoint={self.endpoint}>"

    def sessions(self) -> list[Session]:
        """The live sessions (current, previous, next)."""
        return [s for s in (self.current, self.previous, self.next) if s is not None]

    def next_deadline(self) -> float | None:
        """The earliest of the peer's timer deadlines, or ``None``."""
        best: float | None = None
        for t in (
            self.retransmit_at,
            self.keepalive_at,
            self.new_handshake_at,
            self.zero_keys_at,
            self.persistent_at,
        ):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def _arm(self, t: float) -> None:
        """A deadline is now ``t``: the interface wakes up for this peer by then."""
        wake = self._wake
        heap = self._heap
        if (wake is None or t < wake) and heap is not None:
            self._wake = t
            heapq.heappush(heap, (t, self._serial, self))
            if heap[0][2] is self and self._earlier is not None:
                self._earlier()

    # -- wireguard-go's timers* hooks ---------------------------------------------------------

    def on_data_sent(self, now: float, jitter: float) -> None:
        """After an authenticated data packet was sent (``timersDataSent``)."""
        if self.new_handshake_at is None:
            t = self.new_handshake_at = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter
            self._arm(t)

    def on_data_received(self, now: float) -> None:
        """After an authenticated data packet was received (``timersDataReceived``)."""
        if self.keepalive_at is None:
            t = self.keepalive_at = now + KEEPALIVE_TIMEOUT
            self._arm(t)
        else:
            self.need_another_keepalive = True

    def on_any_authenticated_sent(self) -> None:
        """After any authenticated packet was sent (``timersAnyAuthenticatedPacketSent``)."""
        self.keepalive_at = None

    def on_any_authenticated_received(self) -> None:
        """After any authenticated packet was received."""
        self.new_handshake_at = None

    def on_handshake_initiated(self, now: float, jitter: float) -> None:
        """After an initiation was sent (``timersHandshakeInitiated``)."""
        t = self.retransmit_at = now + REKEY_TIMEOUT + jitter
        self._arm(t)

    def on_handshake_complete(self, wall_time: float) -> None:
        """After a response was consumed, or a responder's session got its first packet."""
        self.retransmit_at = None
        self.handshake_attempts = 0
        self.sent_last_minute_handshake = False
        self.last_handshake = wall_time

    def on_session_derived(self, now: float) -> None:
        """After new transport keys were derived (``timersSessionDerived``)."""
        t = self.zero_keys_at = now + REJECT_AFTER_TIME * 3
        self._arm(t)

    def on_any_authenticated_traversal(self, now: float) -> None:
        """Before sending or after receiving any authenticated packet (persistent keepalive)."""
        if self.persistent_keepalive > 0:
            t = self.persistent_at = now + self.persistent_keepalive
            wake = self._wake
            if wake is None or t < wake:  # (per run sent or received: mostly later than it)
                self._arm(t)
