"""A session (WireGuard's *keypair*): transport keys, counters, and the batch data path.

:meth:`Session.encrypt_batch` is the outbound hot path. Per packet it does one header
``pack_into``, one copy of the plaintext into the output arena (plus zero padding to a multiple
of 16, capped at the MTU, as wireguard-go pads) and one in-place
``ChaCha20Poly1305.encrypt_into`` — no per-packet objects beyond the memoryview slices the AEAD
call needs. Decryption happens in :meth:`tunflow.wireguard.protocol.WireGuard.decrypt_batch`,
which must dispatch each datagram to its session by receiver index first.

Each session also holds the keys of tunflow's *native fast mode* (:mod:`.native`), derived
from the WireGuard transport keys with a tunflow-specific label, so native messages never share
a (key, nonce) pair with WireGuard messages.
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import Any, Final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ...packet import HEADROOM, PacketBatch
from ._crypto import InvalidTag, kdf1
from .constants import (
    MESSAGE_TRANSPORT,
    PADDING_MULTIPLE,
    REJECT_AFTER_MESSAGES,
    TAG_SIZE,
    TRANSPORT_HEADER_SIZE,
)
from .datagrams import Address, DatagramBatch
from .messages import TRANSPORT_HEADER
from .noise import SessionKeys
from .replay import ReplayWindow

__all__ = ["Session", "padded_length", "NATIVE_KEY_LABEL"]

#: Label of the native-mode key derivation: native key = KDF₁(WireGuard key, label). Version 1
#: of the native format seals with AES-256-GCM under this key (version 0 used
#: ChaCha20-Poly1305 under the label "…v1"; a new cipher takes a new key).
NATIVE_KEY_LABEL: Final = b"tunflow native fast mode v2 aes-256-gcm"
_COUNTER: Final = struct.Struct("<Q")
_PADS: Final = tuple(bytes(k) for k in range(PADDING_MULTIPLE))
_OVERHEAD: Final = TRANSPORT_HEADER_SIZE + TAG_SIZE
#: encrypt_batch's run-at-once step (_encrypt_uniform) takes runs of at least this many packets
_UNIFORM_MIN: Final = 8
_BIG_ENDIAN: Final = sys.byteorder == "big"


def padded_length(n: int, mtu: int) -> int:
    """The plaintext length WireGuard encrypts for an ``n``-byte packet (wireguard-go's rule).

    Pads to a multiple of 16 but never past ``mtu``; packets longer than ``mtu`` pad their last
    ``mtu``-sized unit. ``mtu <= 0`` pads without a cap.

    Example:
        >>> padded_length(1, 1420), padded_length(1419, 1420), padded_length(0, 1420)
        (16, 1420, 0)
    """
    if mtu <= 0:
        return (n + 15) & ~15
    last = n % mtu if n > mtu else n
    padded_last = min((last + 15) & ~15, mtu)
    return n + padded_last - last


class Session:
    """One set of transport keys between us and a peer, named by two 32-bit indices.

    Args:
        keys: what :meth:`~tunflow.wireguard.protocol.noise.Handshake.derive_keys` returned.
        created: ``now`` when the keys were derived (sessions expire ``REJECT_AFTER_TIME`` later).
        peer: the owning peer object (opaque here; the interface sets it).

    Attributes:
        local_index: the receiver index the peer puts on messages to us.
        remote_index: the receiver index we put on messages to the peer.
        send_counter: the next counter to send (WireGuard messages).
        replay: the :class:`~.replay.ReplayWindow` of received WireGuard counters.
        native_send_counter / native_replay: the same for native-mode messages.
        is_initiator: whether we initiated the handshake that made this session.
    """

    __slots__ = (
        "_native_nonce",
        "_send_nonce",
        "created",
        "is_initiator",
        "local_index",
        "native_evicted",
        "native_open",
        "native_partial",
        "native_replay",
        "native_seal",
        "native_send_counter",
        "open",
        "peer",
        "remote_index",
        "replay",
        "seal",
        "send_counter",
    )

    def __init__(self, keys: SessionKeys, created: float, peer: Any = None) -> None:
        send = ChaCha20Poly1305(keys.send_key)
        recv = ChaCha20Poly1305(keys.receive_key)
        #: bound ``encrypt_into`` / ``decrypt_into`` of the send and receive AEADs
        self.seal = send.encrypt_into
        self.open = recv.decrypt_into
        # Native messages are whole super-packets, so the cipher's cost per byte decides, not
        # its cost per call: AES-256-GCM takes 6.7 µs per 62 KiB here against 19 µs for
        # ChaCha20-Poly1305 (AES instructions; benchmarks/vpn.py: native mode +18 %).
        self.native_seal = AESGCM(kdf1(keys.send_key, NATIVE_KEY_LABEL)).encrypt_into
        self.native_open = AESGCM(kdf1(keys.receive_key, NATIVE_KEY_LABEL)).decrypt_into
        self.local_index = keys.local_index
        self.remote_index = keys.remote_index
        self.is_initiator = keys.is_initiator
        self.created = created
        self.peer = peer
        self.send_counter = 0
        self.replay = ReplayWindow()
        self.native_send_counter = 0
        self.native_replay = ReplayWindow()
        #: native messages being reassembled: counter -> state (see :mod:`.native`)
        self.native_partial: dict[int, Any] = {}
        #: incomplete native messages pushed out by newer ones, not yet counted as dropped
        self.native_evicted = 0
        self._send_nonce = bytearray(12)
        self._native_nonce = bytearray(12)

    def __repr__(self) -> str:
        role = "initiator" if self.is_initiator else "responder"
        return (
            f"<Session {role} local={self.local_index:#010x} remote={self.remote_index:#010x} "
            f"sent={self.send_counter}>"
        )

    @property
    def exhausted(self) -> bool:
        """Whether the send counter reached ``REJECT_AFTER_MESSAGES`` (the session can't send)."""
        return self.send_counter >= REJECT_AFTER_MESSAGES

    def expire(self) -> None:
        """Make the session unable to send (as wireguard-go's ``ExpireCurrentKeypairs``)."""
        self.send_counter = REJECT_AFTER_MESSAGES
        self.native_send_counter = REJECT_AFTER_MESSAGES

    def encrypt_batch(
        self,
        packets: PacketBatch,
        out: DatagramBatch,
        address: Address | None,
        mtu: int,
        indices: list[int] | range | None = None,
    ) -> int:
        """Encrypt packets of ``packets`` into transport messages appended to ``out``.

        Each message is written in place at ``out.end``: the 16-byte header, then the packet
        padded with zeros, then encrypted in place (one ``encrypt_into``), then the tag.

        Args:
            packets: plain IP packets (headroom ignored).
            out: where the datagrams go; each gets ``address``.
            address: the peer's endpoint.
            mtu: the interface MTU (caps the padding).
            indices: which packets, in order (default all).

        Returns:
            How many packets were encrypted: fewer than asked when ``out`` is full or the
            counter reaches ``REJECT_AFTER_MESSAGES``; the caller keeps the rest.
        """
        # (with or without virtio-net headers: they sit in the headroom, which both paths skip;
        # a device's plain reads — what WireGuard peers get — carry them)
        if type(indices) is range and len(indices) >= _UNIFORM_MIN and indices.step == 1:
            done = self._encrypt_uniform(packets, out, address, mtu, indices)
            if done:
                return done
            runs = _size_runs(packets, indices)
            if len(runs) > 1:
                # Sizes mixed (traffic both ways: acknowledgements among full-size packets):
                # each long run at once, what lies between them packet by packet.
                total = 0
                for run, long in runs:
                    want = len(run)
                    done = self._encrypt_uniform(packets, out, address, mtu, run) if long else 0
                    if not done:
                        done = self._encrypt_loop(packets, out, address, mtu, run)
                    total += done
                    if done < want:
                        break
                return total
        return self._encrypt_loop(packets, out, address, mtu, indices)

    def encrypt_one(
        self, packet: memoryview, out: DatagramBatch, address: Address | None, mtu: int
    ) -> bool:
        """Encrypt one packet into a transport message appended to ``out`` (as
        :meth:`encrypt_batch` does each packet, without a batch's setup: a lone packet — a
        ping, a request — costs a third of the Python lines).

        Returns:
            Whether it was: ``False`` when ``out`` has no room or the counter reached
            ``REJECT_AFTER_MESSAGES`` (nothing changed).
        """
        n = len(packet)
        padded = (n + 15) & ~15
        if mtu > 0 and padded > mtu:  # as _encrypt_loop: the padding capped at the MTU
            padded = mtu if n <= mtu else padded_length(n, mtu)
        counter = self.send_counter
        if counter >= REJECT_AFTER_MESSAGES or out.room() < padded + _OVERHEAD:
            return False
        pos = out.end
        end = pos + padded + _OVERHEAD
        obuf = out.buffer
        TRANSPORT_HEADER.pack_into(obuf, pos, MESSAGE_TRANSPORT, self.remote_index, counter)
        nonce = self._send_nonce
        _COUNTER.pack_into(nonce, 4, counter)
        start = pos + TRANSPORT_HEADER_SIZE
        obuf[start : start + n] = packet
        pad = padded - n
        if pad:
            obuf[start + n : start + padded] = _PADS[pad] if pad < PADDING_MULTIPLE else bytes(pad)
        view = out.view
        self.seal(nonce, view[start : start + padded], None, view[start:end])
        self.send_counter = counter + 1
        out.offsets.append(pos)
        out.lengths.append(end - pos)
        out.addresses.append(address)
        out.end = end
        return True

    def _encrypt_loop(
        self,
        packets: PacketBatch,
        out: DatagramBatch,
        address: Address | None,
        mtu: int,
        indices: list[int] | range | None,
    ) -> int:
        """encrypt_batch packet by packet."""
        src = packets.view
        offs, lens = packets.offsets, packets.lengths
        obuf, oview = out.buffer, out.view
        cap = len(obuf)
        pos = out.end
        o_offs, o_lens = out.offsets, out.lengths
        first = counter = self.send_counter
        stop_counter = REJECT_AFTER_MESSAGES
        receiver = self.remote_index
        seal = self.seal
        nonce = self._send_nonce
        pack_nonce = _COUNTER.pack_into
        pack_hdr = TRANSPORT_HEADER.pack_into
        pads = _PADS
        cap_mtu = mtu if mtu > 0 else 1 << 30
        for i in range(len(offs)) if indices is None else indices:
            n = lens[i]
            padded = (n + 15) & ~15
            if padded > cap_mtu:  # MTU-sized packets: cap the padding at the MTU
                padded = cap_mtu if n <= cap_mtu else padded_length(n, mtu)
            end = pos + padded + _OVERHEAD
            if end > cap or counter >= stop_counter:
                break
            pack_hdr(obuf, pos, MESSAGE_TRANSPORT, receiver, counter)
            pack_nonce(nonce, 4, counter)
            start = pos + TRANSPORT_HEADER_SIZE
            off = offs[i]
            if padded == n:
                # full-MTU packets need no padding: seal straight from the source arena
                seal(nonce, src[off : off + n], None, oview[start:end])
            else:
                obuf[start : start + n] = src[off : off + n]
                pad = padded - n
                if pad < PADDING_MULTIPLE:
                    obuf[start + n : start + padded] = pads[pad]
                else:  # a packet longer than the MTU (see padded_length)
                    obuf[start + n : start + padded] = bytes(pad)
                seal(nonce, oview[start : start + padded], None, oview[start:end])
            o_offs.append(pos)
            o_lens.append(end - pos)
            pos = end
            counter += 1
        done = counter - first
        if done:
            out.addresses.extend([address] * done)
            out.end = pos
            self.send_counter = counter
        return done

    def _encrypt_uniform(
        self,
        packets: PacketBatch,
        out: DatagramBatch,
        address: Address | None,
        mtu: int,
        run: range,
    ) -> int:
        """encrypt_batch for a run of packets of one size that needs no padding (full-MTU
        packets read back to back from a TUN) laid out at one stride: the headers written a
        byte position at a time across the run (extended slice assignments), per packet only
        the nonce and the AEAD call. Returns how many it encrypted — all of them, or 0 when the
        run is not like that (encrypt_batch then takes it packet by packet); the datagrams are
        those encrypt_batch makes."""
        offs, lens = packets.offsets, packets.lengths
        first, k = run.start, len(run)
        n = lens[first]
        o0 = offs[first]
        stride = n + HEADROOM
        cap_mtu = mtu if mtu > 0 else 1 << 30
        if (
            (n % PADDING_MULTIPLE and n != cap_mtu)  # it would be padded
            or n > cap_mtu
            or lens[first : run.stop].count(n) != k
            or offs[first : run.stop] != list(range(o0, o0 + k * stride, stride))
        ):
            return 0
        c0 = self.send_counter
        ostride = n + _OVERHEAD
        pos0 = out.end
        obuf = out.buffer
        if c0 + k > REJECT_AFTER_MESSAGES or pos0 + k * ostride > len(obuf):
            return 0
        # the headers: type, reserved bytes and receiver the same in each, then the counters
        stop = pos0 + (k - 1) * ostride + 1
        head = TRANSPORT_HEADER.pack(MESSAGE_TRANSPORT, self.remote_index, 0)
        for f in range(8):
            obuf[pos0 + f : stop + f : ostride] = head[f : f + 1] * k
        counters = array("Q", range(c0, c0 + k))
        if _BIG_ENDIAN:
            counters.byteswap()
        raw = counters.tobytes()
        for f in range(8):
            obuf[pos0 + 8 + f : stop + 8 + f : ostride] = raw[f::8]
        seal = self.seal
        nonce = self._send_nonce
        pack_nonce = _COUNTER.pack_into
        src, oview = packets.view, out.view
        off = o0
        at = pos0 + TRANSPORT_HEADER_SIZE
        for counter in range(c0, c0 + k):
            pack_nonce(nonce, 4, counter)
            seal(nonce, src[off : off + n], None, oview[at : at + n + TAG_SIZE])
            off += stride
            at += ostride
        out.offsets.extend(range(pos0, pos0 + k * ostride, ostride))
        out.lengths.extend([ostride] * k)
        out.addresses.extend([address] * k)
        out.end = pos0 + k * ostride
        self.send_counter = c0 + k
        return k

    def encrypt(self, packet: bytes | bytearray | memoryview, mtu: int) -> bytes | None:
        """One transport message for ``packet`` (slow path: keepalives, staged packets).

        Returns:
            The datagram, or ``None`` if the session's counter is exhausted.
        """
        counter = self.send_counter
        if counter >= REJECT_AFTER_MESSAGES:
            return None
        n = len(packet)
        padded = padded_length(n, mtu)
        buf = bytearray(padded + _OVERHEAD)
        TRANSPORT_HEADER.pack_into(buf, 0, MESSAGE_TRANSPORT, self.remote_index, counter)
        buf[16 : 16 + n] = packet
        view = memoryview(buf)
        _COUNTER.pack_into(self._send_nonce, 4, counter)
        self.seal(self._send_nonce, view[16 : 16 + padded], None, view[16:])
        self.send_counter = counter + 1
        return bytes(buf)

    def decrypt(self, datagram: bytes | bytearray | memoryview) -> bytes | None:
        """Open one transport message addressed to this session (slow path, for tests/tools).

        Checks the tag, then the replay window. The receiver index is not checked.

        Returns:
            The padded plaintext (empty for a keepalive), or ``None`` if it does not
            authenticate, is a replay, or is too short.
        """
        n = len(datagram)
        if n < _OVERHEAD:
            return None
        _, _, counter = TRANSPORT_HEADER.unpack_from(datagram)
        out = bytearray(n - _OVERHEAD)
        nonce = bytearray(12)
        _COUNTER.pack_into(nonce, 4, counter)
        try:
            self.open(nonce, memoryview(datagram)[16:], None, out)
        except InvalidTag:
            return None
        if not self.replay.check(counter):
            return None
        return bytes(out)


def _size_runs(packets: PacketBatch, run: range) -> list[tuple[range, bool]]:
    """``run`` cut into runs of one packet size at one stride at least ``_UNIFORM_MIN`` long
    (``True``) and the ranges between them (``False``), in order."""
    offs, lens = packets.offsets, packets.lengths
    start, stop = run.start, run.stop
    out: list[tuple[range, bool]] = []
    loose = a = start  # loose: where the stretch not yet in a long run begins
    n = lens[start]
    end = offs[start] + n
    for i in range(start + 1, stop + 1):
        if i < stop:
            m = lens[i]
            off = offs[i]
            if m == n and off == end + HEADROOM:
                end = off + m
                continue
        # a run of one size ends at i
        if i - a >= _UNIFORM_MIN:
            if a > loose:
                out.append((range(loose, a), False))
            out.append((range(a, i), True))
            loose = i
        if i < stop:
            a, n, end = i, m, off + m
    if stop > loose:
        out.append((range(loose, stop), False))
    return out
