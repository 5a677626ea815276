"""``capture``: write the packets passing this point of the chain to pcap files.

Put it anywhere in a chain (several times, with different files). Files are classic pcap with
nanosecond timestamps and the right link type (``LINKTYPE_RAW`` for a TUN, ``LINKTYPE_ETHERNET``
for a TAP), readable by Wireshark, tshark and tcpdump. With ``max_bytes`` the file rotates:
``NAME-0000.pcap``, ``NAME-0001.pcap``…, keeping the last ``max_files`` (a file is closed after
the batch that took it to ``max_bytes``, so it may pass that by up to one batch). A capture
started again goes on from the highest number already there, never over an earlier run's
files, and counts them among the ``max_files`` it keeps (the oldest go first). With
``segments = true`` (the default) packets are written as they will be on the wire: GSO
super-packets as the segments they stand for, and a TCP/UDP checksum an offload device left
partial (``NEEDS_CSUM``: the pseudo-header sum only) completed — in the file's copy; the packet
passed on keeps it partial. With ``segments = false`` they are written as the device handed them
over, super-packets whole and partial checksums partial: what tcpdump on the interface shows,
and what Wireshark then flags as bad checksums.

Writes are gathered from the worker (a memory copy) and handed to the file in whole records —
after a batch that takes them past 64 KiB, every second and on stop; the global header at once.
A write the file takes only part of (a full disk) is cut back to the last whole record, so the
file reads to its end. In processes mode each worker process writes its own files, named
``NAME.w<N>.pcap``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, BinaryIO, Literal

import attrs

from tunflow.device import Layer
from tunflow.errors import ConfigError, MalformedPacketError, OffloadError
from tunflow.offload import gso_segment_count, gso_split
from tunflow.packet import HEADROOM, PacketBatch
from tunflow.pipeline import Direction, Lane, Processor, StageBase, StageContext, StageStatistics

from .pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter

log = logging.getLogger("tunflow.capture")

#: gathered bytes handed to the file after a batch (as the 64 KiB buffered file did before)
_FLUSH_AT = 1 << 16

__all__ = ["CaptureStage", "CaptureOptions"]


@attrs.frozen
class CaptureOptions:
    """Options of the ``capture`` stage."""

    path: str = attrs.field(metadata={"help": "the pcap file (with rotation: its name pattern)"})
    max_bytes: int = attrs.field(
        default=0,
        metadata={
            "help": "rotate when a file reaches this size (0: never); checked after each batch,"
            " so a file may pass it by up to one batch"
        },
    )
    max_files: int = attrs.field(default=0, metadata={"help": "rotated files kept (0: all)"})
    snaplen: int = attrs.field(default=262144, metadata={"help": "bytes kept per packet"})
    direction: Literal["in", "out", "any"] = attrs.field(
        default="any", metadata={"help": "capture one direction only"}
    )
    segments: bool = attrs.field(
        default=True,
        metadata={
            "help": "write packets as on the wire: GSO super-packets as their MTU-sized segments,"
            " partial (offload) checksums completed; false: as the device handed them over"
        },
    )

    def __attrs_post_init__(self) -> None:
        # (found only when the stage starts: "" was the directory ".", a NUL open()'s
        # ValueError out of tunflow run, a traceback)
        if not self.path or "\0" in self.path:
            raise ValueError(f"path {self.path!r} does not name a file")
        if self.max_bytes < 0 or self.max_files < 0:
            raise ValueError("max_bytes and max_files must not be negative")
        if not 64 <= self.snaplen <= 262144:
            raise ValueError(f"snaplen {self.snaplen} is outside 64..262144")


class CaptureStage(StageBase):
    """Copy every packet passing this point into pcap files (Wireshark/tshark readable).

    Statistics: ``counters`` ``packets`` (records written), ``bytes`` (file bytes), ``files``
    (files opened), ``not_captured`` (the records gathered that a failed write left out of the
    file, then the packets passed on uncaptured);
    ``drops`` never (capturing does not change the batch). A file that cannot be written (a
    full disk, a removed mount) stops the capture, logged once, not the traffic.
    """

    plugin = "capture"
    summary = "write packets to pcap files (TUN: LINKTYPE_RAW, TAP: ETHERNET), rotating by size"
    Options = CaptureOptions
    timer_interval = 1.0

    def __init__(self, options: Any = None, /, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self._file: BinaryIO | None = None
        self._writer: PcapWriter | None = None
        self._linktype = LINKTYPE_RAW
        #: what the file holds, set by start() (or the first lane bound without one)
        self._layer: Layer | None = None
        self._base = Path(self.options.path)
        self._index = 0
        self._files: list[Path] = []
        self._written = [0, 0]
        #: a write failed: the capture stopped, the traffic goes on
        self._failed = False
        #: pipelines started and not stopped (those sharing the stage share its file)
        self._users = 0

    @property
    def files(self) -> list[Path]:
        """The files written so far (the current one last)."""
        return list(self._files)

    def _name(self) -> Path:
        base = self._base
        if self.options.max_bytes:
            return base.with_name(f"{base.stem}-{self._index:04d}{base.suffix}")
        return base

    def _open(self) -> PcapWriter:
        path = self._name()
        self._index += 1
        if not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: the writer gathers whole records itself — a buffered file wrote what
        # did not fit its 64 KiB as it came, records cut at a full disk or a crash (tshark:
        # 'cut short in the middle of a packet')
        f = open(path, "wb", buffering=0)  # noqa: SIM115 - lives until rotation or stop
        self._file = f
        self._files.append(path)
        self.count("files")
        self._writer = PcapWriter(f, self._linktype, self.options.snaplen)
        keep = self.options.max_files
        while keep and len(self._files) > keep:
            old = self._files.pop(0)
            try:
                os.unlink(old)
            except OSError:
                pass
        return self._writer

    def _close(self) -> None:
        w = self._writer
        if w is not None:
            try:
                w.flush()
            except OSError as exc:
                self._fail(exc)
                return
        f, self._file = self._file, None
        self._writer = None
        if w is not None:
            self._retire(w)
        if f is not None:
            try:
                f.close()
            except OSError as exc:
                self._fail(exc)

    def _retire(self, w: PcapWriter) -> None:
        """Count what the file of ``w``, done with, holds (after a failed write too: the
        counters fell back to the files before it, though it kept its records)."""
        self._written[0] += w.packets
        self._written[1] += w.bytes_written

    def _fail(self, exc: OSError) -> None:
        """A write failed: stop capturing (logged once); the batches go on unchanged."""
        if not self._failed:
            self._failed = True
            # (the file the error is about: a rotation's new file that could not be made is
            # not in self._files — the warning named the one before it)
            where = exc.filename if isinstance(exc.filename, str) else None
            log.warning(
                "capture %s: cannot write (%s): capturing stops, the traffic goes on",
                where or (self._files[-1] if self._files else self._base),
                exc.strerror or exc,
            )
        f, self._file = self._file, None
        w, self._writer = self._writer, None
        if w is not None:
            self._retire(w)
            # the records gathered that the file did not take (its failed flush cut it back
            # to its last whole one): counted as neither before
            self.count("not_captured", w.lost)
        if f is not None:
            try:
                f.close()
            except OSError:
                pass  # (the same failure: reported above)

    async def start(self, context: StageContext) -> None:
        """Open the file. Once for the pipelines sharing the stage: one started while another
        runs writes into the same file (its lanes of the same layer), closed when the last of
        them stops. Started again after that, it opens its file anew (without ``max_bytes``
        over the last run's, as ``tcpdump -w`` does) and captures again after a failed write."""
        if self._users:
            self._users += 1
            return
        self._set_layer(context.layer)
        base = Path(self.options.path)
        if context.process_index is not None:
            base = base.with_name(f"{base.stem}.w{context.process_index}{base.suffix}")
        self._base = base
        if self.options.max_bytes:
            self._index, self._files = _rotated_files(base)
        self._failed = False
        try:
            self._open()
        except OSError as exc:
            if self._file is None:
                raise  # (a file that cannot be made refuses the start: a configuration fault)
            self._fail(exc)  # (made, but its header did not fit: a full disk, as later on)
        self._users = 1

    async def stop(self) -> None:
        """A pipeline sharing the stage stopped; the last one closes the file."""
        self._users = max(0, self._users - 1)
        if self._users:
            return
        self._close()
        self._layer = None

    def _set_layer(self, layer: Layer) -> None:
        self._layer = layer
        self._linktype = LINKTYPE_ETHERNET if layer is Layer.L2 else LINKTYPE_RAW

    async def on_timer(self) -> None:
        if self._writer is not None:
            try:
                self._writer.flush()
            except OSError as exc:
                self._fail(exc)

    def process(self, batch: PacketBatch) -> PacketBatch:
        return self._unbound_processor()(batch)

    def bind(self, lane: Lane) -> Processor:
        opts: CaptureOptions = self.options
        want = "in" if lane.direction is Direction.INBOUND else "out"
        if opts.direction not in ("any", want):
            return _passthrough
        if self._layer is None:
            self._set_layer(lane.layer)
        elif lane.layer is not self._layer:
            # (else one file held raw IP packets and Ethernet frames alike, under one link type)
            raise ConfigError(
                f"capture {self.name!r}: a pcap file has one link type, and this stage's lanes"
                " carry both IP packets (TUN, L3) and Ethernet frames (TAP, L2); give each"
                " layer a capture of its own"
            )
        scratch = PacketBatch(capacity=1 << 20, max_packets=1024)
        split = opts.segments
        max_bytes = opts.max_bytes

        def process(batch: PacketBatch) -> PacketBatch:
            if self._failed:
                self.count("not_captured", len(batch.offsets))
                return batch
            taken = False
            try:
                w = self._writer or self._open()
                now = time.time_ns()
                if split and batch.vnet_hdr:
                    self._write_split(w, batch, scratch, now)
                else:
                    w.write_many(batch.view, batch.offsets, batch.lengths, now)
                taken = True
                if max_bytes and w.bytes_written >= max_bytes:
                    self._close()
                elif w.pending >= _FLUSH_AT:
                    w.flush()
            except OSError as exc:
                # (_fail counts the records gathered that the file did not take, this
                # batch's among them once taken)
                self._fail(exc)
                if not taken:
                    self.count("not_captured", len(batch.offsets))
            return batch

        return process

    def _write_split(
        self, w: PcapWriter, batch: PacketBatch, scratch: PacketBatch, now: int
    ) -> None:
        # One nanosecond per record, segments included, so every record of the batch has its
        # own stamp and a sort by time keeps the order.
        buf, view = batch.buffer, batch.view
        ts = now
        for i, off in enumerate(batch.offsets):
            n = batch.lengths[i]
            if not (buf[off - HEADROOM] | buf[off - HEADROOM + 1]):
                w.write(view[off : off + n], ts)
                ts += 1
                continue
            src = view[off - HEADROOM : off + n]
            try:
                count = gso_segment_count(src)
            except (MalformedPacketError, OffloadError):
                w.write(view[off : off + n], ts)  # as it came: the capture shows it
                ts += 1
                continue
            done = 0
            while done < count:  # more segments than the scratch batch holds: in turns
                scratch.clear()
                done = gso_split(src, scratch, start=done)
                w.write_many(scratch.view, scratch.offsets, scratch.lengths, ts)
                ts += len(scratch)

    def statistics(self) -> StageStatistics:
        stats = super().statistics()
        packets, nbytes = self._written
        if self._writer is not None:
            packets += self._writer.packets
            nbytes += self._writer.bytes_written
        counters = dict(stats.counters)
        counters["packets"] = packets
        counters["bytes"] = nbytes
        return attrs.evolve(stats, counters=counters)


def _rotated_files(base: Path) -> tuple[int, list[Path]]:
    """The next number after those of the rotated files of ``base`` already there
    (``STEM-NNNN.SUFFIX``: whatever they are), and those that are files, by number."""
    found = []
    prefix, suffix = base.stem + "-", base.suffix
    try:
        entries = list(base.parent.iterdir())
    except OSError:
        return 0, []  # (no directory yet: _open makes it, or says why it cannot)
    for p in entries:
        name = p.name
        digits = name[len(prefix) : len(name) - len(suffix)]
        if (
            name.startswith(prefix)
            and name.endswith(suffix)
            and len(digits) >= 4
            and digits.isascii()
            and digits.isdigit()
        ):
            found.append((int(digits), p))
    found.sort()
    return (found[-1][0] + 1 if found else 0), [p for _, p in found if p.is_file()]


def _passthrough(batch: PacketBatch) -> PacketBatch:
    return batch
