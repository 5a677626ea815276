"""Paired in-memory WireGuard interfaces for tests (aioquic's ``client_and_server`` idea).

Two real :class:`WireGuard` objects exchange datagrams through lists; time is explicit and only
moves when a test says so (no sleeping). Randomness is deterministic per seed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from collections.abc import Callable, Iterable
from typing import Any

from tunflow.packet import PacketBatch, checksum
from tunflow.wireguard.protocol import DatagramBatch, PeerConfig, PrivateKey, WireGuard

A_ADDR = ("192.0.2.1", 51820)
B_ADDR = ("192.0.2.2", 51821)
A_IP, B_IP = "10.0.0.1", "10.0.0.2"
A_IP6, B_IP6 = "fd00::1", "fd00::2"
T0 = 1_700_000_000.0


class Drbg:
    """A deterministic ``random(n)`` for reproducible keys, indices and jitter."""

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self.counter = 0

    def __call__(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.blake2b(self.seed + self.counter.to_bytes(8, "little")).digest()
            self.counter += 1
        return out[:n]


def ip4(src: str, dst: str, payload: bytes = b"x" * 20, proto: int = 17) -> bytes:
    """A minimal IPv4 packet, its header checksum right (WireGuard does not check it; GRO
    does, and keeps a packet whose header checksum is wrong out of any super-packet)."""
    total = 20 + len(payload)
    header = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            total,
            0,
            0,
            64,
            proto,
            0,
            ipaddress.IPv4Address(src).packed,
            ipaddress.IPv4Address(dst).packed,
        )
    )
    header[10:12] = struct.pack("!H", ~checksum(header) & 0xFFFF)
    return bytes(header) + payload


def ip6(src: str, dst: str, payload: bytes = b"y" * 20) -> bytes:
    """A minimal IPv6 packet."""
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), 17, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + payload
    )


def batch_of(packets: Iterable[bytes], capacity: int = 1 << 20) -> PacketBatch:
    b = PacketBatch(capacity=capacity, max_packets=16384)
    b.extend(packets)
    return b


class Pair:
    """Interface ``a`` (192.0.2.1, 10.0.0.1) and ``b`` (192.0.2.2, 10.0.0.2), peers of each other.

    ``a`` knows ``b``'s endpoint; ``b`` learns ``a``'s from the handshake unless
    ``b_knows_a`` is set.
    """

    def __init__(
        self,
        seed: bytes = b"pair",
        *,
        a_peer: dict[str, Any] | None = None,
        b_peer: dict[str, Any] | None = None,
        b_knows_a: bool = False,
        **kwargs: Any,
    ) -> None:
        self.now = T0
        self.ka = PrivateKey.generate(Drbg(seed + b"-ka"))
        self.kb = PrivateKey.generate(Drbg(seed + b"-kb"))
        self.a = WireGuard(self.ka, random=Drbg(seed + b"-a"), **kwargs)
        self.b = WireGuard(self.kb, random=Drbg(seed + b"-b"), **kwargs)
        self.a_addr, self.b_addr = A_ADDR, B_ADDR
        self.a.add_peer(
            PeerConfig(
                self.kb.public_key(),
                endpoint=B_ADDR,
                allowed_ips=(f"{B_IP}/32", f"{B_IP6}/128"),
                **(a_peer or {}),
            )
        )
        self.b.add_peer(
            PeerConfig(
                self.ka.public_key(),
                endpoint=A_ADDR if b_knows_a else None,
                allowed_ips=(f"{A_IP}/32", f"{A_IP6}/128"),
                **(b_peer or {}),
            )
        )
        #: packets delivered to each side's TUN, in order
        self.got: dict[str, list[bytes]] = {"a": [], "b": []}
        #: every datagram that crossed the wire: (sender, datagram)
        self.wire: list[tuple[str, bytes]] = []
        #: where each control datagram was addressed: (sender, address)
        self.destinations: list[tuple[str, Any]] = []

    @property
    def peer_of_a(self) -> Any:
        return self.a.peer(self.kb.public_key())

    @property
    def peer_of_b(self) -> Any:
        return self.b.peer(self.ka.public_key())

    def side(self, name: str) -> WireGuard:
        return self.a if name == "a" else self.b

    def addr(self, name: str) -> tuple[str, int]:
        return self.a_addr if name == "a" else self.b_addr

    def deliver(
        self, to: str, datagrams: Iterable[bytes], src: tuple[str, int] | None = None
    ) -> list[bytes]:
        """Hand datagrams to side ``to`` through the batch path; return the packets it yields."""
        frm = "b" if to == "a" else "a"
        batch = DatagramBatch(4 << 20)
        for d in datagrams:
            batch.append(d, address=src or self.addr(frm))
        out = PacketBatch(capacity=4 << 20, max_packets=16384)
        consumed = self.side(to).decrypt_batch(batch, self.now, out)
        assert consumed == len(batch)
        pkts = (
            [bytes(out.with_header(i)) for i in range(len(out))] if out.vnet_hdr else out.to_list()
        )
        self.got[to].extend(pkts)
        return pkts

    def flush(self, drop: Callable[[str, bytes], bool] | None = None, rounds: int = 10) -> int:
        """Move queued control datagrams both ways until both sides are quiet.

        ``drop(sender, datagram)`` returning True loses a datagram. Returns how many moved.
        """
        moved = 0
        for _ in range(rounds):
            quiet = True
            for frm, to in (("a", "b"), ("b", "a")):
                out = self.side(frm).datagrams_to_send(self.now)
                if out:
                    quiet = False
                for d, dst in out:
                    self.wire.append((frm, d))
                    self.destinations.append((frm, dst))
                    moved += 1
                    if drop is None or not drop(frm, d):
                        self.deliver(to, [d], src=self.addr(frm))
            if quiet:
                break
        return moved

    def send(self, frm: str, packets: Iterable[bytes], vnet_hdr: bool = False) -> list[bytes]:
        """Encrypt packets on side ``frm`` through the batch path; return the datagrams."""
        batch = batch_of(packets)
        if vnet_hdr:
            batch.zero_headers()
        out = DatagramBatch(4 << 20)
        consumed = self.side(frm).encrypt_batch(batch, self.now, out)
        assert consumed == len(batch)
        return [d for d, _ in out.to_pairs()]

    def transfer(
        self, frm: str, packets: Iterable[bytes], drop: Callable[[str, bytes], bool] | None = None
    ) -> list[bytes]:
        """Send packets from ``frm`` and deliver the datagrams (plus any control traffic)."""
        to = "b" if frm == "a" else "a"
        before = len(self.got[to])
        datagrams = self.send(frm, packets)
        for d in datagrams:
            self.wire.append((frm, d))
        self.deliver(to, [d for d in datagrams if drop is None or not drop(frm, d)])
        self.flush(drop)
        return self.got[to][before:]

    def handshake(self) -> None:
        """Complete a handshake a→b and confirm it with a keepalive."""
        self.a.send_packet(ip4(A_IP, B_IP), self.now)
        self.flush()
        assert self.peer_of_a.current is not None and self.peer_of_b.current is not None

    def advance(self, seconds: float, drop: Callable[[str, bytes], bool] | None = None) -> None:
        """Move time forward, firing each timer at its deadline and flushing after it."""
        target = self.now + seconds
        while True:
            deadlines = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
            nxt = min(deadlines) if deadlines else None
            if nxt is None or nxt > target:
                break
            self.now = max(self.now, nxt)
            self.a.handle_timer(self.now)
            self.b.handle_timer(self.now)
            self.flush(drop)
        self.now = target

    def events(self, name: str) -> list[Any]:
        wg = self.side(name)
        out = []
        while (e := wg.next_event()) is not None:
            out.append(e)
        return out
