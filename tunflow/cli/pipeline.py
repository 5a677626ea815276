"""``tunflow run``, ``tunflow check`` and ``tunflow stages``.

``run`` prints live per-stage statistics: a table redrawn in place on a terminal (rich), one
JSON object per line otherwise (and with ``--json``), written from a thread so that a reader
that does not read never stops the traffic (nor, for more than a few seconds, the end). SIGINT,
SIGTERM and SIGHUP (unless ignored, as under ``nohup``) stop it cleanly: the pipeline is
cancelled, every device and transport closed, a last report printed, exit status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import anyio
import attrs

from ..errors import ConfigError, PluginError, TunflowError
from . import _stdout_closed, add_backend_option, anyio_backend, command

__all__ = ["run", "check", "stages"]


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG", help="the TOML configuration file")


def _seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _run_args(p: argparse.ArgumentParser) -> None:
    _config_arg(p)
    p.add_argument(
        "--interval", type=_seconds, default=1.0, help="seconds between reports (default 1)"
    )
    p.add_argument("--json", action="store_true", help="JSON lines even on a terminal")
    add_backend_option(p)
    p.add_argument("--duration", type=_seconds, default=None, help="stop after this many seconds")


def _error(exc: BaseException) -> int:
    print(f"tunflow: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, ConfigError | PluginError) else 1


def snapshot(stats: Any, elapsed: float) -> dict[str, Any]:
    """A pipeline's statistics as plain data (what a JSON line holds)."""
    data: dict[str, Any] = attrs.asdict(stats, recurse=True)
    data["time"] = round(time.time(), 3)
    data["elapsed"] = round(elapsed, 3)
    return data


def _rich_installed() -> bool:
    """Whether the live table's library (the ``cli`` extra) can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class _Table:
    """The live table on a terminal."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=out)
        self._live = Live(console=self._console, auto_refresh=False, transient=False)
        self._prev: dict[str, tuple[float, int, int]] = {}

    def __enter__(self) -> _Table:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)

    def show(self, stats: Any, elapsed: float, now: float) -> None:
        """Redraw the table with ``stats``, taken ``elapsed`` seconds into the run, at ``now``
        (``time.monotonic()``)."""
        from rich.table import Table

        table = Table(title=f"{stats.name} ({stats.mode}) — {elapsed:.0f} s")
        for col in ("stage", "packets in", "packets out", "pps", "Mbit/s", "dropped", "errors"):
            table.add_column(col, justify="left" if col == "stage" else "right")
        for s in stats.stages:
            t0, p0, b0 = self._prev.get(s.name, (now, s.packets_out, s.bytes_out))
            dt = max(now - t0, 1e-9)
            pps = (s.packets_out - p0) / dt if now > t0 else 0.0
            mbps = (s.bytes_out - b0) * 8 / dt / 1e6 if now > t0 else 0.0
            self._prev[s.name] = (now, s.packets_out, s.bytes_out)
            drops = ", ".join(f"{k} {v}" for k, v in sorted(s.drops.items())) or "0"
            table.add_row(
                s.name,
                f"{s.packets_in:,}",
                f"{s.packets_out:,}",
                f"{pps:,.0f}",
                f"{mbps:,.1f}",
                drops,
                str(s.errors),
            )
        for p in stats.ports:
            table.add_row(
                f"[dim]{p.kind} {p.name}[/dim]",
                f"{p.rx_packets:,}",
                f"{p.tx_packets:,}",
                "",
                "",
                ", ".join(f"{k} {v}" for k, v in p.drops.items()) or "",
                "",
            )
        for name, n in stats.kernel_drops.items():
            table.add_row(f"[dim]kernel drops {name}[/dim]", "", "", "", "", f"{n:,}", "")
        self._live.update(table, refresh=True)


def _write_line(out: TextIO, line: str) -> None:
    """Write ``line`` to ``out``: to its descriptor when it has one, past the buffer (a write
    left blocked at exit then holds no lock the interpreter's last flush of ``out`` needs)."""
    try:
        fd = out.fileno()
    except (OSError, ValueError, AttributeError):
        out.write(line)
        out.flush()
        return
    out.flush()
    data = memoryview(line.encode(out.encoding or "utf-8", "replace"))
    while data:
        data = data[os.write(fd, data) :]


class _Writer:
    """Writes reports from a thread, one at a time, so that a reader that does not read
    (``| less`` not scrolled, ``| sleep 60``, a terminal paused with Ctrl-S) holds up the
    reports, never the pipeline: a write blocked in the event loop stopped the traffic and the
    signals that would end it. A report due while the last is still being written is skipped.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self.failed: BaseException | None = None

    @property
    def busy(self) -> bool:
        """Whether a report is being written."""
        return self._thread is not None and self._thread.is_alive()

    def write(self, report: Callable[[], None]) -> None:
        """Write ``report`` (a call) in a thread of its own."""
        self._thread = threading.Thread(
            target=self._call, args=(report,), name="tunflow report", daemon=True
        )
        self._thread.start()

    def _call(self, report: Callable[[], None]) -> None:
        try:
            report()
        except BaseException as exc:  # (raised again by the event loop's side)
            self.failed = exc

    def last(self, report: Callable[[], None] | None) -> None:
        """Wait (at most :data:`_LAST_WAIT` seconds) for the report being written, then write
        ``report`` here (unless a write failed). A reader that takes longer gets no last
        report: the command ends (its devices are closed by then) rather than wait for it."""
        if self._thread is not None:
            self._thread.join(_LAST_WAIT)
            if self._thread.is_alive():
                return
        if report is not None and self.failed is None:
            self._call(report)


#: seconds the last report waits for a reader that does not read (``| less`` not scrolled)
_LAST_WAIT = 5.0


def _stop_signals() -> list[signal.Signals]:
    """The signals that stop ``run`` cleanly: SIGINT, SIGTERM, and SIGHUP (its terminal went
    away) unless it is ignored (``nohup``: the command is to outlive its terminal)."""
    stops = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        stops.append(signal.SIGHUP)
    return stops


async def _run(args: argparse.Namespace, config: Any, out: TextIO | None) -> None:
    """Run the pipeline ``config`` describes until a signal, ``--duration`` or its end,
    reporting to ``out`` (``None``: standard output is closed, and the pipeline runs without
    reports).

    Raises:
        BrokenPipeError: ``out``'s reader went away; the pipeline was stopped for it, as a C
            tool killed by ``SIGPIPE`` stops.
    """
    start = time.monotonic()
    # Without rich (installed without the ``cli`` extra) a terminal gets the JSON lines too.
    use_table = out is not None and out.isatty() and not args.json and _rich_installed()
    table = _Table(out) if use_table and out is not None else None
    opened: list[Any] = []
    writer = _Writer()
    stop = anyio.CancelScope()

    def report() -> Callable[[], None] | None:
        """The report of now, as a call that writes it (``None``: no output)."""
        if out is None:
            return None
        stats = opened[0].statistics()
        now = time.monotonic()
        if table is not None:
            shown = table
            return lambda: shown.show(stats, now - start, now)
        line = json.dumps(snapshot(stats, now - start), default=str) + "\n"
        return lambda: _write_line(out, line)

    async def reporter() -> None:
        while True:
            await anyio.sleep(args.interval)
            if writer.failed is not None:
                # nobody reads the reports (or they cannot be written): the pipeline stops
                stop.cancel()
                return
            if not writer.busy and (due := report()) is not None:
                writer.write(due)

    async def signals(received: Any, scope: anyio.CancelScope) -> None:
        async for _ in received:
            scope.cancel()
            return

    # caught from before the start: one that comes while the devices are made and the workers
    # start waits in the receiver, and stops the pipeline as soon as it runs (its default
    # action killed the command, no stage stopped, no last report)
    try:
        with anyio.open_signal_receiver(*_stop_signals()) as received:
            async with config.open() as running:
                opened.append(running)
                if table is not None:
                    table.__enter__()
                with stop:
                    if args.duration is not None:
                        stop.deadline = anyio.current_time() + args.duration
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(signals, received, tg.cancel_scope)
                        tg.start_soon(reporter)
    finally:
        # the last report comes once the pipeline has stopped (its devices closed): its final
        # counts, running false — after the one being written, however long its reader takes
        try:
            if opened:
                writer.last(report())
        finally:
            if table is not None and opened:
                table.__exit__(None, None, None)
    if writer.failed is not None:
        raise writer.failed


@command("run", "run the pipeline a configuration describes, with live statistics", _run_args)
def run(args: argparse.Namespace) -> int:
    """``tunflow run CONFIG``. With standard output closed (``tunflow run CONFIG >&-``) it runs
    without reports; when their reader goes away (``tunflow run CONFIG | head -1``) the pipeline
    stops and the command ends quietly with status 1."""
    from ..config import load_config

    # Ctrl-C stops it however `run` was started: a shell's background job inherits SIGINT
    # ignored, which Python leaves so — heard once running (by its receiver), but not while
    # the configuration and its plugins still load
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        config = load_config(args.config)
        backend, options = anyio_backend(args.backend)
        anyio.run(_run, args, config, sys.stdout, backend=backend, backend_options=options)
    except BrokenPipeError:
        raise  # (main ends quietly when it is standard output's)
    except (TunflowError, OSError) as exc:
        return _error(exc)
    return 0


@command("check", "check a configuration: syntax, names, plugins and their options", _config_arg)
def check(args: argparse.Namespace) -> int:
    """``tunflow check CONFIG``: exit 0 and a summary if it is good, else the error and 2 (a
    configuration that is wrong, a plugin missing or refusing its options) or 1 (a file that
    cannot be read). The summary names each device and transport made in another network
    namespace, and that namespace."""
    from ..config import load_config

    try:
        config = load_config(args.config)
    except (TunflowError, OSError) as exc:
        return _error(exc)
    kind = "pipeline" if config.pipeline is not None else "tunnel"
    chain = " → ".join(s.name or s.plugin for s in config.stages) or "(no stages)"
    spaces = {name: dev.netns for name, dev in config.devices.items()}
    spaces.update((name, tr.netns) for name, tr in config.transports.items())
    elsewhere = ", ".join(f"{name} in {ns!r}" for name, ns in spaces.items() if ns is not None)
    print(
        f"{args.config}: ok — {len(config.devices)} device(s), {len(config.transports)} "
        f"transport(s), {kind}: {chain}" + (f"; netns: {elsewhere}" if elsewhere else "")
    )
    return 0


def _stages_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON document")


@command("stages", "list the stage plugins found, with their options", _stages_args)
def stages(args: argparse.Namespace) -> int:
    """``tunflow stages``: every plugin of the ``tunflow.stages`` group and its options."""
    from ..pipeline import available_stages

    if (closed := _stdout_closed()) is not None:
        return closed
    found = available_stages()
    listing: list[dict[str, Any]] = []
    status = 0
    for name, plugin in found.items():
        entry: dict[str, Any] = {
            "name": name,
            "target": plugin.target,
            "distribution": plugin.distribution,
        }
        try:
            entry["summary"] = plugin.summary()
            entry["options"] = [attrs.asdict(o) for o in plugin.options()]
        except PluginError as exc:
            if exc.missing_extra is not None:
                entry["needs"] = exc.missing_extra
                entry["error"] = str(exc)
            else:
                entry["error"] = str(exc)
                status = 1
        listing.append(entry)
    if args.json:
        print(json.dumps(listing, indent=2))
        return status
    for entry in listing:
        print(f"{entry['name']}  ({entry['target']}, {entry['distribution'] or 'unknown'})")
        if "needs" in entry:
            print(f"    not installed: {entry['error']}")
            continue
        if "error" in entry:
            print(f"    error: {entry['error']}")
            continue
        print(f"    {entry['summary']}")
        for o in entry["options"]:
            default = "required" if o["required"] else f"default {o['default']}"
            help_ = f" — {o['help']}" if o["help"] else ""
            print(f"    {o['name']}: {o['type']} ({default}){help_}")
    if not listing:
        print("no stage plugins found in the 'tunflow.stages' entry-point group")
    return status
