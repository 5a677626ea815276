"""Answers to ping, ARP and neighbour solicitation, shared by the examples.

Pure functions over ``bytes``: give them a packet (or an Ethernet frame) read from a device, get
back the reply to write, or ``None``. They use :func:`tunflow.packet.checksum` and nothing else.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

from tunflow.packet import checksum, pseudo_header_checksum_no_fold


def _finish(s: int) -> int:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def echo_reply(packet: bytes) -> bytes | None:
    """The ICMP or ICMPv6 echo reply to an echo request, else ``None``."""
    if len(packet) < 28:
        return None
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if packet[9] != 1 or len(packet) < ihl + 8 or packet[ihl] != 8:
            return None
        reply = bytearray(packet)
        reply[12:16], reply[16:20] = packet[16:20], packet[12:16]
        reply[8] = 64
        reply[10:12] = b"\0\0"
        reply[10:12] = struct.pack("!H", _finish(checksum(reply[:ihl])))
        reply[ihl] = 0  # echo reply
        reply[ihl + 2 : ihl + 4] = b"\0\0"
        reply[ihl + 2 : ihl + 4] = struct.pack("!H", _finish(checksum(reply[ihl:])))
        return bytes(reply)
    if version == 6:
        if len(packet) < 48 or packet[6] != 58 or packet[40] != 128:
            return None
        reply = bytearray(packet)
        reply[8:24], reply[24:40] = packet[24:40], packet[8:24]
        reply[7] = 64
        reply[40] = 129  # echo reply
        reply[42:44] = b"\0\0"
        body = reply[40:]
        s = pseudo_header_checksum_no_fold(58, bytes(reply[8:24]), bytes(reply[24:40]), len(body))
        reply[42:44] = struct.pack("!H", _finish(checksum(body, s)))
        return bytes(reply)
    return None


def _ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def tap_reply(frame: bytes, mac: bytes, ipv4: IPv4Address, ipv6: IPv6Address) -> bytes | None:
    """The answer of a host with ``mac``/``ipv4``/``ipv6`` to an Ethernet frame: ARP reply,
    neighbour advertisement or echo reply; ``None`` for anything else."""
    if len(frame) < 14:
        return None
    dst, src = frame[0:6], frame[6:12]
    ethertype = int.from_bytes(frame[12:14], "big")
    payload = frame[14:]
    if ethertype == 0x0806 and len(payload) >= 28:
        op = int.from_bytes(payload[6:8], "big")
        target_ip = payload[24:28]
        if op == 1 and target_ip == ipv4.packed:
            sender_mac, sender_ip = payload[8:14], payload[14:18]
            arp = payload[0:6] + struct.pack("!H", 2) + mac + ipv4.packed + sender_mac + sender_ip
            return _ethernet(src, mac, 0x0806, arp)
        return None
    if dst not in (mac, b"\xff" * 6) and not dst.startswith(b"\x33\x33"):
        return None
    if ethertype == 0x0800 and len(payload) >= 20 and payload[16:20] == ipv4.packed:
        reply = echo_reply(payload)
        return _ethernet(src, mac, 0x0800, reply) if reply else None
    if ethertype == 0x86DD and len(payload) >= 48 and payload[6] == 58:
        icmp_type = payload[40]
        if icmp_type == 135 and len(payload) >= 64 and payload[48:64] == ipv6.packed:
            return _ethernet(src, mac, 0x86DD, _neighbour_advert(payload, mac, ipv6))
        if icmp_type == 128 and payload[24:40] == ipv6.packed:
            reply = echo_reply(payload)
            return _ethernet(src, mac, 0x86DD, reply) if reply else None
    return None


def _neighbour_advert(solicit: bytes, mac: bytes, ipv6: IPv6Address) -> bytes:
    src = ipv6.packed
    dst = solicit[8:24]  # back to the soliciting address
    # type 136, code 0, checksum, flags Solicited|Override, target, option 2 (target LL addr)
    body = bytearray(struct.pack("!BBHI", 136, 0, 0, 0x60000000) + ipv6.packed + b"\x02\x01" + mac)
    s = pseudo_header_checksum_no_fold(58, src, dst, len(body))
    body[2:4] = struct.pack("!H", _finish(checksum(body, s)))
    header = struct.pack("!IHBB", 0x60000000, len(body), 58, 255) + src + dst
    return header + bytes(body)
