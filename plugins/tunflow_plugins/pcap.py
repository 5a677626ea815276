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
    """Writes records to a binary file object in whole records; counts what it wrote.

    Records are gathered here and handed to the file by :meth:`flush` (the caller's to call:
    the capture stage does after a batch that took the buffer past ``buffer_size``, every
    second and on stop). A file that takes part of a flush and fails (a full disk) is cut back
    to its last whole record. Give it an unbuffered file (``open(path, "wb", buffering=0)``): a
    buffered one writes what it cannot hold as it comes, and cannot say how much of it the
    file took. The global header goes to the file at once, so a run that ended before its first
    packet leaves a valid empty capture.

    Args:
        file: opened for binary writing; its ``write()`` may take part of what it is given.
        linktype: :data:`LINKTYPE_RAW` or :data:`LINKTYPE_ETHERNET`.
        snaplen: longer packets are cut to this many bytes (their original length is kept).

    Raises:
        OSError: from the header's write (the file is cut back to nothing).

    Example:
        >>> import io
        >>> f = io.BytesIO()
        >>> w = PcapWriter(f, LINKTYPE_RAW)
        >>> w.write(b"\\x45" + bytes(19), 1_000_000_123)
        >>> len(f.getvalue()), w.bytes_written, w.pending
        (24, 60, 36)
        >>> w.flush()
        >>> len(f.getvalue()), w.bytes_written, w.pending
        (60, 60, 0)
    """

    def __init__(self, file: BinaryIO, linktype: int, snaplen: int = 262144) -> None:
        self.file = file
        self.snaplen = snaplen
        #: records (and the header) not yet handed to the file
        self._pending = bytearray(GLOBAL_HEADER.pack(MAGIC_NS, 2, 4, 0, 0, snaplen, linktype))
        self._pending_records = 0
        self._flushed = 0  # bytes in the file: where the pending ones go
        #: bytes taken: in the file or pending (less what a failed flush lost)
        self.bytes_written = GLOBAL_HEADER.size
        #: records taken: in the file or pending (less what a failed flush lost)
        self.packets = 0
        #: records a failed :meth:`flush` could not put in the file
        self.lost = 0
        self.flush()

    @property
    def pending(self) -> int:
        """Bytes gathered and not yet in the file."""
        return len(self._pending)

    def write(self, packet: bytes | bytearray | memoryview, ts_ns: int) -> None:
        """Append one record stamped ``ts_ns`` (nanoseconds since the epoch)."""
        n = len(packet)
        cut = min(n, self.snaplen)
        sec, ns = divmod(ts_ns, 1_000_000_000)
        pending = self._pending
        pending += RECORD_HEADER.pack(sec, ns, cut, n)
        pending += packet[:cut] if cut < n else packet
        self._pending_records += 1
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
        pending = self._pending
        total = 0
        for i, off in enumerate(offsets):
            n = lengths[i]
            cut = n if n <= snap else snap
            sec, ns = divmod(ts_ns + i, 1_000_000_000)
            pending += pack(sec, ns, cut, n)
            pending += view[off : off + cut]
            total += 16 + cut
        self._pending_records += len(offsets)
        self.bytes_written += total
        self.packets += len(offsets)

    def flush(self) -> None:
        """Hand the gathered records to the file.

        Raises:
            OSError: the file's. What it took is cut back to its last whole record (a full
                disk takes part of a write, then none), so every reader reads it to its end —
                not tshark's 'cut short in the middle of a packet'; :attr:`packets` and
                :attr:`bytes_written` then say what the file holds, :attr:`lost` how many
                records it did not take. Nothing stays pending.
        """
        pending = self._pending
        done = 0
        try:
            with memoryview(pending) as view:
                while done < len(pending):
                    done += self.file.write(view[done:])
        except OSError:
            keep, records = _whole_records(pending, done, header=self._flushed == 0)
            try:
                self.file.truncate(self._flushed + keep)
                # truncate keeps the position where the write stopped: the next flush goes
                # on from the cut, not past a hole of zeros that no reader reads through
                self.file.seek(self._flushed + keep)
            except OSError:
                pass  # (not a regular file — /dev/full — or the same failure: as it is)
            lost = self._pending_records - records
            self.lost += lost
            self.packets -= lost
            self.bytes_written -= len(pending) - keep
            self._flushed += keep
            raise
        else:
            self._flushed += done
        finally:
            # a new buffer, not ``clear()``: a file whose ``write`` raised may keep a view of
            # this one (in its traceback), and resizing it would raise BufferError over the
            # file's own error
            self._pending = bytearray()
            self._pending_records = 0


def _whole_records(data: bytearray, size: int, *, header: bool) -> tuple[int, int]:
    """How many bytes of the first ``size`` of ``data`` (records, the global header first
    with ``header``) are whole records, and how many records that is."""
    at = 0
    if header:
        if size < GLOBAL_HEADER.size:
            return 0, 0
        at = GLOBAL_HEADER.size
    records = 0
    while at + RECORD_HEADER.size <= size:
        end = at + RECORD_HEADER.size + int.from_bytes(data[at + 8 : at + 12], "little")
        if end > size:
            break
        at = end
        records += 1
    return at, records
