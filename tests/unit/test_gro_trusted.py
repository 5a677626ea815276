"""GRO for packets a VPN already authenticated: ``GROTable.verify_checksums = False`` merges
without checking TCP/UDP checksums (the kernel's WireGuard marks decrypted packets
CHECKSUM_UNNECESSARY for the same reason); by default a bad checksum keeps a packet apart."""

from __future__ import annotations

import socket
import struct

from tunflow.offload import GROTable
from tunflow.packet import PacketBatch, checksum, pseudo_header_checksum_no_fold


def tcp(seq: int, payload: bytes, *, good: bool = True) -> bytes:
    s, d = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
    seg = bytearray(struct.pack("!HHIIBBHHH", 5201, 40000, seq, 1, 0x50, 0x10, 65535, 0, 0))
    seg += payload
    cs = ~checksum(seg, pseudo_header_checksum_no_fold(6, s, d, len(seg))) & 0xFFFF
    seg[16:18] = struct.pack("!H", cs if good else cs ^ 0x5555)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 0, 0x4000, 64, 6, 0, s, d))
    ip[10:12] = struct.pack("!H", ~checksum(ip) & 0xFFFF)
    return bytes(ip + seg)


def coalesce(table: GROTable, packets: list[bytes]) -> PacketBatch:
    src, out = PacketBatch(1 << 20), PacketBatch(1 << 20)
    src.extend(packets)
    table.coalesce(src, out)
    return out


def test_bad_checksums_are_kept_apart_unless_trusted() -> None:
    packets = [tcp(1 + 1000 * i, bytes([i]) * 1000, good=i != 2) for i in range(4)]
    strict = GROTable()
    assert strict.verify_checksums
    assert len(coalesce(strict, packets)) > 1
    assert strict.statistics().invalid_checksum >= 1
    trusting = GROTable()
    trusting.verify_checksums = False
    out = coalesce(trusting, packets)
    assert len(out) == 1 and out.lengths[0] == 40 + 4000
    assert trusting.statistics().invalid_checksum == 0
    # the merged payload is the packets' payloads in order
    assert bytes(out.packet(0)[40:]) == b"".join(bytes([i]) * 1000 for i in range(4))
