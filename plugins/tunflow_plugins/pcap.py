"""A classic pcap writer (nanosecond timestamps) — what Wireshark, tshark and tcpdump read.

Classic pcap rather than pcapng: one link type per file is all a TUN or TAP needs, and every
reader takes it. Magic ``0xa1b23c4d`` (nanosecond resolution), version 2.4, little-endian as
written by this host. ``LINKTYPE_RAW`` (101) holds IPv4 and IPv6 packets from a TUN,
``LINKTYPE_ETHERNET`` (1) frames from a TAP. (Not dpkt's ``DLT_RAW``: that is the platform's
DLT value, 12 on Linux, not the file's link type.)
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Final

__all__ = ["LINKTYPE_RAW", "LINKTYPE_ETHERNET", "MAGIC_NS", "PcapWriter", "GLOBAL_HEADER"]

LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
MAGIC_NS: Final = 0xA1B23C4D
GLOBAL_HEADER: Final = struct.Struct("<IHHiIII")
RECORD_HEADER: Final = struct.Struct("<IIII")


class PcapWriter:
    """Writes records to a binary file object; counts what it wrote.

    Args:
        file: opened for binary writing; the writer writes the global header at once.
        linktype: :data:`LINKTYPE_RAW` or :data:`LINKTYPE_ETHERNET`.
        snaplen: longer packets are cut to this many bytes (their original length is kept).

    Example:
        >>> import io
        >>> f = io.BytesIO()
        >>> w = PcapWriter(f, LINKTYPE_RAW)
        >>> w.write(b"\\x45" + bytes(19), 1_000_000_123)
        >>> len(f.getvalue()), w.bytes_written
        (60, 60)
    """

    def __init__(self, file: BinaryIO, linktype: int, snaplen: int = 262144) -> None:
        self.file = file
        self.snaplen = snaplen
        file.write(GLOBAL_HEADER.pack(MAGIC_NS, 2, 4, 0, 0, snaplen, linktype))
        self.bytes_written = GLOBAL_HEADER.size
        self.packets = 0

    def write(self, packet: bytes | bytearray | memoryview, ts_ns: int) -> None:
        """Append one record stamped ``ts_ns`` (nanoseconds since the epoch)."""
        n = len(packet)
        cut = min(n, self.snaplen)
        sec, ns = divmod(ts_ns, 1_000_000_000)
        self.file.write(RECORD_HEADER.pack(sec, ns, cut, n))
        self.file.write(packet[:cut] if cut < n else packet)
        self.bytes_written += RECORD_HEADER.size + cut
        self.packets += 1

    def write_many(
        self,
        view: memoryview,
        offsets: list[int],
        lengths: list[int],
        ts_ns: int,
    ) -> None:
        """Append one record per packet of a batch, all stamped ``ts_ns`` (+1 ns each, so
        their order survives a sort by time)."""
        pack = RECORD_HEADER.pack
        snap = self.snaplen
        parts: list[bytes | memoryview] = []
        add = parts.append
        total = 0
        for i, off in enumerate(offsets):
            n = lengths[i]
            cut = n if n <= snap else snap
            sec, ns = divmod(ts_ns + i, 1_000_000_000)
            add(pack(sec, ns, cut, n))
            add(view[off : off + cut])
            total += 16 + cut
        self.file.write(b"".join(parts))
        self.bytes_written += total
        self.packets += len(offsets)
