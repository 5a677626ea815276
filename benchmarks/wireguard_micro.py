"""Per-packet cost of the WireGuard data path: batch API vs a naive loop; native fast mode.

Run: ``.venv/bin/python benchmarks/wireguard_micro.py`` (single core, a few seconds).

Compares, for 1420-byte IP packets in batches of 64:

* AEAD floor — only ``ChaCha20Poly1305.encrypt_into`` per packet, nothing else;
* naive — what a straightforward per-packet implementation does: build nonce and header, pad,
  ``encrypt``, concatenate (and the mirror image for decryption, with the replay window);
* batch — ``WireGuard.encrypt_batch`` / ``decrypt_batch`` (routing, padding, counters, replay,
  AllowedIPs source check and timers included);

and for a 64 KiB offload super-packet: WireGuard mode (split into 1420-byte packets, one AEAD
each) against tunflow's native fast mode (one AEAD for the whole super-packet, fragmented into
datagrams and reassembled); and native mode's one-fragment messages (52-byte TCP ACKs, the
traffic coming back), sealed and opened in batches of 64. Not a test: it prints figures and
ratios.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from tunflow.packet import PacketBatch
from tunflow.wireguard.protocol import (
    NATIVE_HEADER_SIZE,
    DatagramBatch,
    PeerConfig,
    PrivateKey,
    ReplayWindow,
    SendSlots,
    WireGuard,
    open_native,
    open_native_scattered,
    seal_native,
    seal_native_gathered,
)

BATCH = 64
SIZE = 1420
ROUNDS = 200


def ip4(src: bytes, dst: bytes, total: int) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 6, 0, src, dst)
    return (
        hdr
        + bytes(range(256)) * (total // 256)
        + bytes(total % 256 - 20 % 256)[: total - 20 - 256 * (total // 256)]
    )


def best(fn: Callable[[], object], rounds: int = ROUNDS, repeat: int = 5) -> float:
    """Best-of-``repeat`` seconds per call of ``fn``."""
    fn()
    results = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(rounds):
            fn()
        results.append((time.perf_counter() - t) / rounds)
    return min(results)


def pair(native: bool = False) -> tuple[WireGuard, WireGuard]:
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    a, b = WireGuard(ka), WireGuard(kb)
    a.add_peer(
        PeerConfig(
            kb.public_key(),
            endpoint=("192.0.2.2", 51820),
            allowed_ips="10.0.0.2/32",
            native_mode=native,
        )
    )
    b.add_peer(
        PeerConfig(
            ka.public_key(),
            endpoint=("192.0.2.1", 51820),
            allowed_ips="10.0.0.1/32",
            native_mode=native,
        )
    )
    a.send_packet(ip4(b"\n\0\0\1", b"\n\0\0\2", 40), 0.0)
    for _ in range(3):
        for d, _ in a.datagrams_to_send():
            b.receive_datagram(d, ("192.0.2.1", 51820), 0.0)
        for d, _ in b.datagrams_to_send():
            a.receive_datagram(d, ("192.0.2.2", 51820), 0.0)
    return a, b


def main() -> None:
    a, b = pair()
    sess_a = a.peer(b.public_key).current  # type: ignore[union-attr]
    assert sess_a is not None
    pkt = ip4(b"\n\0\0\1", b"\n\0\0\2", SIZE)
    assert len(pkt) == SIZE
    batch = PacketBatch(capacity=BATCH * (SIZE + 64), max_packets=BATCH)
    batch.extend([pkt] * BATCH)
    out = DatagramBatch(BATCH * (SIZE + 64))
    key = ChaCha20Poly1305.generate_key()
    aead = ChaCha20Poly1305(key)
    nonce = bytearray(12)
    arena = bytearray(SIZE + 64)
    mv = memoryview(arena)
    padded = (SIZE + 15) & ~15

    def floor() -> None:
        for _ in range(BATCH):
            aead.encrypt_into(nonce, mv[16 : 16 + padded], None, mv[16 : 16 + padded + 16])

    counter = [0]

    def naive_encrypt() -> list[bytes]:
        outs = []
        for p in batch:
            c = counter[0]
            counter[0] = c + 1
            n = len(p)
            padded = min((n + 15) & ~15, 1420)  # WireGuard's rule (see padded_length)
            plain = bytes(p) + bytes(padded - n)
            outs.append(
                struct.pack("<IIQ", 4, 1, c) + aead.encrypt(struct.pack("<4xQ", c), plain, None)
            )
        return outs

    def batch_encrypt() -> None:
        out.clear()
        a.encrypt_batch(batch, 1.0, out)

    def session_encrypt() -> None:
        out.clear()
        sess_a.encrypt_batch(batch, out, ("192.0.2.2", 51820), 1420)

    t_floor = best(floor) / BATCH
    t_naive_enc = best(naive_encrypt) / BATCH
    t_batch_enc = best(batch_encrypt) / BATCH
    t_sess_enc = best(session_encrypt) / BATCH

    # decryption: fresh datagrams each round (the replay window refuses repeats), placed in
    # their arenas beforehand as a UDP_GRO/recvmmsg read would leave them
    rounds = 60
    rx_batches = []
    for _ in range(rounds * 3 + 1):
        rx = DatagramBatch(BATCH * (SIZE + 64))
        a.encrypt_batch(batch, 1.0, rx)
        rx.addresses[:] = [("192.0.2.1", 51820)] * len(rx)
        rx_batches.append(rx)
    it = iter(rx_batches)
    plain = PacketBatch(capacity=BATCH * (SIZE + 64), max_packets=BATCH)
    sess_b = b.peer(a.public_key).current  # type: ignore[union-attr]
    assert sess_b is not None

    def batch_decrypt() -> None:
        plain.clear()
        b.decrypt_batch(next(it), 1.0, plain)
        assert len(plain) == BATCH

    t_batch_dec = best(batch_decrypt, rounds, 3) / BATCH

    recv_key = ChaCha20Poly1305(key)
    window = ReplayWindow()
    naive_stream = [naive_encrypt() for _ in range(rounds * 3 + 1)]
    it2 = iter(naive_stream)

    def naive_decrypt() -> None:
        for d in next(it2):
            _, _, c = struct.unpack_from("<IIQ", d)
            p = recv_key.decrypt(struct.pack("<4xQ", c), d[16:], None)
            if window.check(c):
                n = (p[2] << 8) | p[3]
                p = p[:n]

    t_naive_dec = best(naive_decrypt, rounds, 3) / BATCH

    # the same loop with what decrypt_batch also does: check the IP header and the source
    # against AllowedIPs, and write the packet into one arena
    window2 = ReplayWindow()
    table = b.allowed_ips
    peer_b = b.peer(a.public_key)
    naive_stream2 = [naive_encrypt() for _ in range(rounds * 3 + 1)]
    it3 = iter(naive_stream2)
    arena = PacketBatch(capacity=BATCH * (SIZE + 64), max_packets=BATCH)

    def naive_decrypt_checked() -> None:
        arena.clear()
        for d in next(it3):
            _, _, c = struct.unpack_from("<IIQ", d)
            p = recv_key.decrypt(struct.pack("<4xQ", c), d[16:], None)
            if not window2.check(c) or p[0] >> 4 != 4:
                continue
            n = (p[2] << 8) | p[3]
            if table.lookup_v4(int.from_bytes(p[12:16], "big")) is peer_b and n <= len(p):
                arena.append(memoryview(p)[:n])

    t_naive_dec2 = best(naive_decrypt_checked, rounds, 3) / BATCH

    # 64 KiB super-packet: WireGuard mode (46 x 1420) vs native (one AEAD)
    sp_len = 65535
    per = 1420 - 40  # TCP payload per MTU-sized segment, as GSO would cut it
    nseg = -(-(sp_len - 40) // per)
    wg_batch = PacketBatch(capacity=nseg * (SIZE + 64), max_packets=nseg)
    wg_batch.extend([pkt] * nseg)
    wg_out = DatagramBatch(nseg * (SIZE + 64))

    def wg_mode() -> None:
        wg_out.clear()
        a.encrypt_batch(wg_batch, 1.0, wg_out)

    big = PacketBatch(capacity=70_000, max_packets=1)
    big.append(ip4(b"\n\0\0\1", b"\n\0\0\2", sp_len))
    big.zero_headers()
    msg = big.with_header(0)
    scratch = bytearray(70_000)
    nat_out = DatagramBatch(80_000)

    def native_seal() -> None:
        nat_out.clear()
        seal_native(sess_a, msg, nat_out, ("192.0.2.2", 51820), 1452, scratch)

    slots = SendSlots()
    gat_out = DatagramBatch(1024, gather=True)

    def native_seal_gathered() -> None:
        gat_out.clear()
        seal_native_gathered(sess_a, msg, gat_out, ("192.0.2.2", 51820), 1452, slots)

    t_wg_sp = best(wg_mode, 100)
    t_nat_seal = best(native_seal, 100)
    t_nat_gather = best(native_seal_gathered, 100)
    frags_list = []
    for _ in range(301):
        native_seal()
        frags_list.append([bytes(nat_out.datagram(i)) for i in range(len(nat_out))])
    it3 = iter(frags_list)
    opened = PacketBatch(capacity=70_000, max_packets=1)

    def native_open() -> None:
        opened.clear()
        for f in next(it3):
            open_native(sess_b, f, opened)
        assert len(opened) == 1

    t_nat_open = best(native_open, 100, 3)

    # the receiver's scatter read: headers back to back in one buffer, chunks in another
    scattered = []
    for _ in range(301):
        native_seal()
        frags = [bytes(nat_out.datagram(i)) for i in range(len(nat_out))]
        headers = memoryview(b"".join(f[:NATIVE_HEADER_SIZE] for f in frags))
        bodies = memoryview(b"".join(f[NATIVE_HEADER_SIZE:] for f in frags))
        scattered.append((headers, bodies, len(frags), len(frags[-1])))
    it5 = iter(scattered)

    def native_open_scattered() -> None:
        opened.clear()
        headers, bodies, count, last = next(it5)
        assert open_native_scattered(sess_b, headers, bodies, count, last, opened) == 1
        assert len(opened) == 1

    t_nat_scat = best(native_open_scattered, 100, 3)

    wg_streams = []
    for _ in range(301):
        d = DatagramBatch(nseg * (SIZE + 64))
        a.encrypt_batch(wg_batch, 1.0, d)
        d.addresses[:] = [("192.0.2.1", 51820)] * len(d)
        wg_streams.append(d)
    it4 = iter(wg_streams)
    wg_plain = PacketBatch(capacity=nseg * (SIZE + 64), max_packets=nseg)

    def wg_mode_decrypt() -> None:
        wg_plain.clear()
        b.decrypt_batch(next(it4), 1.0, wg_plain)
        assert len(wg_plain) == nseg

    t_wg_sp_dec = best(wg_mode_decrypt, 100, 3)
    one_aead = best(lambda: aead.encrypt(bytes(12), bytes(msg), None), 100)

    # native mode's small messages: what carries the TCP ACKs back (one fragment each)
    na, nb = pair(native=True)
    ack = ip4(b"\n\0\0\1", b"\n\0\0\2", 52)
    acks = PacketBatch(capacity=BATCH * 256, max_packets=BATCH)
    acks.extend([ack] * BATCH)
    acks.zero_headers()
    ack_out = DatagramBatch(BATCH * 256, gather=True)

    def native_acks_seal() -> None:
        ack_out.clear()
        assert na.encrypt_batch(acks, 1.0, ack_out) == BATCH

    t_ack_seal = best(native_acks_seal, rounds, 3) / BATCH
    ack_streams = []
    for _ in range(rounds * 3 + 2):
        d = DatagramBatch(BATCH * 256)
        na.encrypt_batch(acks, 1.0, d)
        d.addresses[:] = [("192.0.2.1", 51820)] * len(d)
        ack_streams.append(d)
    it6 = iter(ack_streams)
    ack_plain = PacketBatch(capacity=BATCH * 256, max_packets=BATCH)

    def native_acks_open() -> None:
        ack_plain.clear()
        nb.decrypt_batch(next(it6), 1.0, ack_plain)
        assert len(ack_plain) == BATCH

    t_ack_open = best(native_acks_open, rounds, 3) / BATCH

    def gbit(seconds: float, nbytes: int) -> float:
        return nbytes * 8 / seconds / 1e9

    print(f"WireGuard data path, {SIZE}-byte packets, batches of {BATCH} (one core)")
    print(f"  AEAD floor (encrypt_into only)   {t_floor * 1e6:6.2f} µs/packet")
    print(f"  encrypt: naive per-packet loop   {t_naive_enc * 1e6:6.2f} µs/packet")
    print(f"  encrypt: Session.encrypt_batch   {t_sess_enc * 1e6:6.2f} µs/packet")
    print(
        f"  encrypt: WireGuard.encrypt_batch {t_batch_enc * 1e6:6.2f} µs/packet "
        f"({gbit(t_batch_enc, SIZE):.2f} Gbit/s)  naive/batch = {t_naive_enc / t_batch_enc:.2f}x"
    )
    print(
        f"  decrypt: naive loop, bare        {t_naive_dec * 1e6:6.2f} µs/packet  (AEAD, replay, trim)"
    )
    print(
        f"  decrypt: naive loop, same checks {t_naive_dec2 * 1e6:6.2f} µs/packet  (+ IP header, AllowedIPs, arena)"
    )
    print(
        f"  decrypt: WireGuard.decrypt_batch {t_batch_dec * 1e6:6.2f} µs/packet "
        f"({gbit(t_batch_dec, SIZE):.2f} Gbit/s)  naive/batch = {t_naive_dec / t_batch_dec:.2f}x bare, "
        f"{t_naive_dec2 / t_batch_dec:.2f}x same checks"
    )
    print(
        f"  batch overhead over the AEAD floor: encrypt {(t_batch_enc - t_floor) * 1e6:.2f} µs, "
        f"decrypt {(t_batch_dec - t_floor) * 1e6:.2f} µs per packet"
    )
    print(f"64 KiB super-packet ({sp_len} bytes) as {nseg} x {SIZE}-byte packets or one message")
    print(
        f"  WireGuard mode encrypt_batch      {t_wg_sp * 1e6:7.1f} µs  ({gbit(t_wg_sp, sp_len):.2f} Gbit/s)"
    )
    print(
        f"  native seal (1 AEAD, {len(frags_list[0])} fragments) {t_nat_seal * 1e6:5.1f} µs  "
        f"({gbit(t_nat_seal, sp_len):.2f} Gbit/s)  {t_wg_sp / t_nat_seal:.2f}x faster"
    )
    print(
        f"  native seal, gathered (no cut)    {t_nat_gather * 1e6:7.1f} µs  "
        f"({gbit(t_nat_gather, sp_len):.2f} Gbit/s)  {t_nat_seal / t_nat_gather:.2f}x faster than cut"
    )
    print(
        f"  WireGuard mode decrypt_batch      {t_wg_sp_dec * 1e6:7.1f} µs  "
        f"({gbit(t_wg_sp_dec, sp_len):.2f} Gbit/s)"
    )
    print(
        f"  native open (reassemble + 1 AEAD) {t_nat_open * 1e6:7.1f} µs  "
        f"({gbit(t_nat_open, sp_len):.2f} Gbit/s)  {t_wg_sp_dec / t_nat_open:.2f}x faster"
    )
    print(
        f"  native open, scattered read       {t_nat_scat * 1e6:7.1f} µs  "
        f"({gbit(t_nat_scat, sp_len):.2f} Gbit/s)  {t_nat_open / t_nat_scat:.2f}x faster"
    )
    print(f"  one bare AEAD call on 64 KiB      {one_aead * 1e6:7.1f} µs")
    print(f"native one-fragment messages (52-byte TCP ACKs), batches of {BATCH}")
    print(f"  seal (encrypt_batch)              {t_ack_seal * 1e6:7.2f} µs/message")
    print(f"  open (decrypt_batch)              {t_ack_open * 1e6:7.2f} µs/message")


if __name__ == "__main__":
    main()
