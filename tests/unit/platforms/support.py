"""Test support: small IPv4/IPv6 packets, the 4-byte family header, call traces, and the
Unix backends each device kind runs on."""

from __future__ import annotations

import struct

from tunflow import Layer

#: every (platform, layer) a Unix fake builds other than Linux: macOS utun and feth, FreeBSD
#: tun and tap, OpenBSD and NetBSD tun
UNIX_DEVICES = [
    ("darwin", Layer.L3),
    ("darwin", Layer.L2),
    ("freebsd", Layer.L3),
    ("freebsd", Layer.L2),
    ("openbsd", Layer.L3),
    ("netbsd", Layer.L3),
]


def ipv4_packet(payload: bytes = b"ping", src: str = "10.0.0.2", dst: str = "10.0.0.1") -> bytes:
    """A minimal, valid IPv4/UDP packet (checksums left zero; the backends do not look)."""
    import ipaddress

    udp = struct.pack("!HHHH", 1234, 5678, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        0,
        0,
        64,
        17,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + udp


def ipv6_packet(payload: bytes = b"ping6", src: str = "fd00::2", dst: str = "fd00::1") -> bytes:
    """A minimal, valid IPv6/UDP packet."""
    import ipaddress

    udp = struct.pack("!HHHH", 1234, 5678, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(udp),
        17,
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return header + udp


def af_header(family: int) -> bytes:
    """The 4-byte big-endian address family utun and TUNSIFHEAD tuns put before a packet."""
    return struct.pack("!I", family)


def trace(fake: object) -> list[tuple[object, ...]]:
    """The calls a fake saw, reduced to what identifies them: the ioctl request number, the
    socket triple, the opened path, the interface looked up, the command run."""
    out: list[tuple[object, ...]] = []
    for call in fake.calls:  # type: ignore[attr-defined]
        name, args = call.name, call.args
        if name == "ioctl":
            out.append(("ioctl", args[1]))
        elif name == "socket":
            out.append(("socket", *args))
        elif name in ("open", "if_nametoindex", "run", "load_library"):
            out.append((name, args[0]))
        else:
            out.append((name,))
    return out
