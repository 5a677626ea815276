"""GSO split and GRO coalesce: cost per packet, side by side with what bounds them.

Run: ``.venv/bin/python benchmarks/offload_micro.py [--quick]``

* split: one 64 KiB TCPv4 super-packet (45 x 1448-byte segments, 65200 bytes) into a
  ``PacketBatch``; against a straightforward port of wireguard-go's loop (copy the headers,
  patch the fields, ``checksum()`` over pseudo-header + segment) and against the floor of
  copying the same bytes with no header work at all;
* coalesce: 128 x 1448-byte TCPv4 segments of one flow (-> 3 super-packets), the same spread
  over 4 flows, and 128 x 1400-byte UDP datagrams; split into pass 1 (classify, checksums) and
  pass 2 (write the output), with pass 2 done both ways the design allows: copy into the
  output arena (what ships) or build ``writev`` iovec lists (Tailscale's way);
* a 1448-byte checksum, the unit both are made of.

All figures come from the same run on a shared 2-core machine: compare the ratios.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.unit.offload_packets import (
    ACK,
    IP4_A,
    IP4_B,
    IP4_C,
    IP6_A,
    IP6_B,
    tcp4_packet,
    tcp6_packet,
    tcp_super_packet,
    udp4_packet,
)
from tunflow.offload import (
    _IT_KIND,
    _IT_L4H,
    _IT_MEMBERS,
    GROTable,
    gso_segment_count,
    gso_split,
)
from tunflow.packet import HEADROOM, PacketBatch, checksum

MSS = 1448


def best(fn: Callable[[], object], budget: float) -> float:
    t = timeit.Timer(fn)
    n, took = t.autorange()
    number = max(1, int(n * budget / max(took, 1e-9) / 5))
    return min(t.repeat(repeat=5, number=number)) / number


# --- split ------------------------------------------------------------------------------


def naive_split(src: bytes, out: PacketBatch) -> int:
    """wireguard-go's gsoSplit, transcribed: per segment copy headers, patch, checksum()."""
    pkt = memoryview(src)[10:]
    cs = 20
    hdr_len = 40
    gso = struct.unpack_from("=H", src, 4)[0]
    seq0 = struct.unpack_from(">I", pkt, cs + 4)[0]
    id0 = struct.unpack_from(">H", pkt, 4)[0]
    n = len(pkt)
    buf = out.buffer
    end = out.end
    i = 0
    at = hdr_len
    while at < n:
        seg_end = min(at + gso, n)
        total = hdr_len + seg_end - at
        off = end + HEADROOM
        o = memoryview(buf)[off : off + total]
        o[:cs] = pkt[:cs]
        struct.pack_into(">HH", o, 2, total, (id0 + i) & 0xFFFF)
        o[10:12] = b"\0\0"
        struct.pack_into(">H", o, 10, ~checksum(o[:cs]) & 0xFFFF)
        o[cs:hdr_len] = pkt[cs:hdr_len]
        struct.pack_into(">I", o, cs + 4, (seq0 + i * gso) & 0xFFFFFFFF)
        if seg_end != n:
            o[cs + 13] &= ~0x09
        o[hdr_len:] = pkt[at:seg_end]
        o[cs + 16 : cs + 18] = b"\0\0"
        ph = int.from_bytes(pkt[12:16], "big") + int.from_bytes(pkt[16:20], "big") + 6 + total - cs
        struct.pack_into(">H", o, cs + 16, ~checksum(o[cs:], ph) & 0xFFFF)
        out.offsets.append(off)
        out.lengths.append(total)
        end = off + total
        i += 1
        at += gso
    out.end = end
    return i


def copy_floor(src: bytes, out: PacketBatch) -> int:
    """Only the bytes: each segment's headers and payload copied, nothing patched."""
    pkt = memoryview(src)[10:]
    n = len(pkt)
    buf = out.buffer
    end = out.end
    at = 40
    i = 0
    while at < n:
        seg_end = min(at + MSS, n)
        off = end + HEADROOM
        buf[off : off + 40] = pkt[:40]
        buf[off + 40 : off + 40 + seg_end - at] = pkt[at:seg_end]
        end = off + 40 + seg_end - at
        i += 1
        at += MSS
    out.end = end
    return i


# --- coalesce, pass 2 as iovecs -------------------------------------------------------------


def write_iovecs(src: PacketBatch, slots: list[object]) -> list[list[bytes | memoryview]]:
    """Tailscale's layout: [virtio header, head packet, payload fragment, ...] per output.

    The header patching (lengths, checksums, virtio header) is the same work as the copying
    path's; it is done here on a 64-byte copy of the head's headers, as an iovec writer must
    (the input batch is not ours to modify).
    """
    view = src.view
    offsets, lengths = src.offsets, src.lengths
    iovs: list[list[bytes | memoryview]] = []
    zero = bytes(10)
    for slot in slots:
        if isinstance(slot, int):
            o = offsets[slot]
            iovs.append([zero, view[o : o + lengths[slot]]])
            continue
        members: list[int] = slot[_IT_MEMBERS]  # type: ignore[index]
        head = members[0]
        o = offsets[head]
        if len(members) == 1:
            iovs.append([zero, view[o : o + lengths[head]]])
            continue
        kind = slot[_IT_KIND]  # type: ignore[index]
        iph = 20 if kind in (1, 3) else 40
        tcp = kind <= 2
        hlen = iph + slot[_IT_L4H]  # type: ignore[index, operator]
        hdr = bytearray(view[o : o + hlen])
        total = lengths[head] + sum(lengths[m] - hlen for m in members[1:])
        struct.pack_into(">H", hdr, 2, total)
        hdr[10:12] = b"\0\0"
        struct.pack_into(">H", hdr, 10, ~checksum(hdr[:20]) & 0xFFFF)
        if not tcp:
            struct.pack_into(">H", hdr, iph + 4, total - iph)
        ph = int.from_bytes(hdr[12:20], "big") + (6 if tcp else 17) + total - iph
        cso = 16 if tcp else 6
        struct.pack_into(">H", hdr, iph + cso, (ph - 1) % 0xFFFF + 1)
        iov: list[bytes | memoryview] = [
            struct.pack("=BBHHHH", 1, 1 if tcp else 5, hlen, MSS, iph, cso),
            hdr,
            view[o + hlen : o + lengths[head]],
        ]
        for m in members[1:]:
            mo = offsets[m]
            iov.append(view[mo + hlen : mo + lengths[m]])
        iovs.append(iov)
    return iovs


def batch(pkts: list[bytes]) -> PacketBatch:
    b = PacketBatch(capacity=sum(len(p) + HEADROOM for p in pkts) + 1024, max_packets=1024)
    b.extend(pkts)
    return b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    args = ap.parse_args()
    budget = 0.1 if args.quick else 0.5
    print(f"Python {sys.version.split()[0]} on {os.uname().machine}; best of 5, same run\n")

    # --- split
    src = tcp_super_packet(IP4_A, IP4_B, 45 * MSS, MSS)
    segs = gso_segment_count(src)
    outs = [PacketBatch(capacity=1 << 17) for _ in range(3)]
    for f, o in zip((gso_split, naive_split, copy_floor), outs, strict=True):
        assert f(src, o) == segs
    assert outs[0].to_list() == outs[1].to_list(), "the naive port must agree"

    def run(f: Callable[[bytes, PacketBatch], int], o: PacketBatch) -> Callable[[], object]:
        def go() -> None:
            o.clear()
            f(src, o)

        return go

    t_split = best(run(gso_split, outs[0]), budget)
    t_naive = best(run(naive_split, outs[1]), budget)
    t_copy = best(run(copy_floor, outs[2]), budget)
    c1448 = os.urandom(MSS + 20)
    t_sum = best(lambda: checksum(c1448), budget)
    print(f"GSO split of one {len(src) - 10}-byte TCPv4 super-packet into {segs} x {MSS}")
    print(f"  {'':34}{'µs/call':>10}{'µs/segment':>12}{'vs gso_split':>14}")
    for name, t in (
        ("tunflow gso_split", t_split),
        ("naive wireguard-go transcription", t_naive),
        ("copy only (no header work)", t_copy),
    ):
        print(f"  {name:34}{t * 1e6:>10.1f}{t * 1e6 / segs:>12.2f}{t / t_split:>13.2f}x")
    print(
        f"  {'checksum() of 1468 bytes':34}{'':>10}{t_sum * 1e6:>12.2f}{t_sum * segs / t_split:>13.2f}x"
    )
    print(
        f"  -> {segs / t_split / 1e3:.0f}k segments/s, "
        f"{(len(src) - 10) * 8 / t_split / 1e9:.2f} Gbit/s of TCP payload per core\n"
    )

    # --- coalesce
    one_flow = [tcp4_packet(IP4_A, IP4_B, ACK, MSS, 1 + i * MSS) for i in range(128)]
    dsts = [IP4_B, IP4_C, (IP4_B[0], 2), (IP4_C[0], 2)]
    four_flows = [tcp4_packet(IP4_A, dsts[i % 4], ACK, MSS, 1 + (i // 4) * MSS) for i in range(128)]
    udp = [udp4_packet(IP4_A, IP4_B, 1400, start=i) for i in range(128)]
    print("GRO coalesce of 128 packets (pass 1 = classify + verify checksums; pass 2 = write)")
    print(
        f"  {'':32}{'out':>4}{'µs/batch':>10}{'µs/pkt':>8}{'pass1':>8}"
        f"{'copy':>8}{'iovec':>8}{'copy/iovec':>11}"
    )
    for name, pkts in (
        ("TCPv4 1 flow, 1448 B", one_flow),
        ("TCPv4 4 flows, 1448 B", four_flows),
        ("UDPv4 1 flow, 1400 B", udp),
    ):
        b = batch(pkts)
        out = PacketBatch(capacity=b.capacity, max_packets=1024)
        table = GROTable(tcp=True, udp=True)
        n = table.coalesce(b, out)
        t_all = best(lambda b=b, out=out, table=table: table.coalesce(b, out), budget)
        t_p1 = best(lambda b=b, table=table: table._classify(b), budget)
        slots = table._classify(b)[0]

        def p2_copy(
            b: PacketBatch = b,
            out: PacketBatch = out,
            slots: list[object] = slots,
            table: GROTable = table,
        ) -> None:
            out.clear()
            table._write(b, out, slots)  # type: ignore[arg-type]

        t_copy2 = best(p2_copy, budget)
        t_iov = best(lambda b=b, slots=slots: write_iovecs(b, slots), budget)  # type: ignore[misc]
        print(
            f"  {name:32}{n:>4}{t_all * 1e6:>10.1f}{t_all * 1e6 / 128:>8.2f}"
            f"{t_p1 * 1e6 / 128:>8.2f}{t_copy2 * 1e6 / 128:>8.2f}{t_iov * 1e6 / 128:>8.2f}"
            f"{t_copy2 / t_iov:>10.2f}x"
        )
    print(f"  (for scale: checksum() of 1468 bytes = {t_sum * 1e6:.2f} µs)")

    # --- trusted input: what a VPN writes after its AEAD authenticated every packet
    ts = [bytes([1, 1, 8, 10]) + (1 + i // 32).to_bytes(4, "big") + bytes(4) for i in range(128)]
    ts_flow = [
        tcp4_packet(IP4_A, IP4_B, ACK, MSS - 12, 1 + i * (MSS - 12), tcp_options=ts[i])
        for i in range(128)
    ]
    print(
        "\nGRO of trusted packets (verify_checksums off): pass 1 by the general classifier, by "
        "the in-order fast path (a packet at a time) and by the uniform path (a byte position at "
        "a time, one flow at one stride; '-' where it declines); coalesce = the whole call"
    )
    print(
        f"  {'µs/packet':42}{'out':>4}{'general':>9}{'fast':>8}{'uniform':>9}{'coalesce':>10}"
        f"{'fast/uniform':>13}"
    )
    for name, pkts in (
        ("TCPv4 1 flow, 1448 B", one_flow),
        ("TCPv4 1 flow, 1448 B, batches of 32", one_flow[:32]),
        ("TCPv4 1 flow, timestamps move every 32", ts_flow),
        ("TCPv4 4 flows interleaved, 1448 B", four_flows),
        (
            "TCPv4 4 flows in runs of 32, 1448 B",
            [tcp4_packet(IP4_A, dsts[i // 32], ACK, MSS, 1 + (i % 32) * MSS) for i in range(128)],
        ),
        (
            "TCPv6 1 flow, 1428 B",
            [tcp6_packet(IP6_A, IP6_B, ACK, MSS - 20, 1 + i * (MSS - 20)) for i in range(128)],
        ),
        # packets lost on the way (the sender's TUN queue overflowing): gaps in the numbers
        ("TCPv4 1 flow, 2 lost", [p for i, p in enumerate(one_flow) if i not in (40, 90)]),
        (
            "TCPv4 4 flows in runs of 32, 1 lost each",
            [
                tcp4_packet(IP4_A, dsts[i // 32], ACK, MSS, 1 + (i % 32) * MSS)
                for i in range(128)
                if i % 32 != 20
            ],
        ),
    ):
        b = batch(pkts)
        out = PacketBatch(capacity=b.capacity, max_packets=1024)
        table = GROTable()
        table.verify_checksums = False
        n = table.coalesce(b, out)
        t_gen = best(lambda b=b, table=table: table._classify(b), budget)
        k = len(pkts)
        # each fast path is timed only where it takes the batch (a gap: only the uniform one)
        t_fast = t_uni = 0.0
        fast = uni = f"{'-':>8}"
        if table._classify_tcp_run(b) is not None:
            t_fast = best(lambda b=b, table=table: table._classify_tcp_run(b), budget)
            fast = f"{t_fast * 1e6 / k:>8.2f}"
        if table._classify_uniform(b) is not None:
            t_uni = best(lambda b=b, table=table: table._classify_uniform(b), budget)
            uni = f"{t_uni * 1e6 / k:>8.2f}"
        t_all = best(lambda b=b, out=out, table=table: table.coalesce(b, out), budget)
        ratio = f"{t_fast / t_uni:>12.2f}x" if t_fast and t_uni else f"{'-':>13}"
        print(
            f"  {name:42}{n:>4}{t_gen * 1e6 / k:>9.2f}{fast} {uni}{t_all * 1e6 / k:>10.2f}{ratio}"
        )


if __name__ == "__main__":
    main()
