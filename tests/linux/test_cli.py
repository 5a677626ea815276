"""``tunflow run``, ``check`` and ``stages`` end to end, as a user runs them."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunflow import testing

pytestmark = pytest.mark.needs_root

CONFIG = """
[devices.lan]
name = "{name}"
addresses = ["10.230.0.1/24"]

[[stages]]
plugin = "filter"
options = {{ rules = [{{ action = "deny", protocol = "udp", dst_ports = [9999] }}] }}

[[stages]]
plugin = "stats"

[pipeline]
source = "lan"
sink = "lan"
workers = "{workers}"
"""


def tunflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "tunflow.cli", *args]


@contextlib.contextmanager
def running(
    netns: testing.Netns, tmp_path: Path, interval: str, workers: str = "tasks", **popen: Any
) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """``tunflow run`` of :data:`CONFIG` (a device of a name of its own) in ``netns``, reporting
    every ``interval`` seconds to a pipe: the device's name and the process — killed at the
    end if it still runs."""
    name = testing.unique_name("cli")
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(name=name, workers=workers))
    proc = subprocess.Popen(
        netns.cmd(*tunflow("run", str(path), "--interval", interval)),
        stdout=subprocess.PIPE,
        **popen,
    )
    try:
        yield name, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def links(netns: testing.Netns) -> list[str]:
    """The names of the interfaces in ``netns``."""
    return [link["ifname"] for link in netns.ip_json("link", "show")]


@pytest.mark.parametrize(
    ("sig", "workers"), [(signal.SIGINT, "tasks"), (signal.SIGTERM, "processes")]
)
def test_run_reports_json_lines_and_stops_cleanly(
    netns: testing.Netns, tmp_path: Path, sig: signal.Signals, workers: str
) -> None:
    with running(netns, tmp_path, "0.2", workers, stderr=subprocess.PIPE, text=True) as (
        name,
        proc,
    ):
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert [s["name"] for s in first["stages"]] == ["filter", "stats"]
        assert first["running"] is True
        for port in (9999, 9998):
            netns.run(
                sys.executable,
                "-c",
                f"import socket; socket.socket(2, 2).sendto(b'x', ('10.230.0.2', {port}))",
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = json.loads(proc.stdout.readline())
            if line["stages"][0]["drops"].get("denied"):
                break
        else:
            raise AssertionError("the filter never counted the denied datagram")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    last = json.loads(out.strip().splitlines()[-1])
    assert last["running"] is False  # the last report is of the stopped pipeline
    assert last["stages"][0]["drops"]["denied"] >= 1
    assert last["stages"][1]["counters"]["udp"] >= 1
    assert name not in links(netns)  # the device went away with the command


def test_check_and_stages(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(name="tf0", workers="tasks"))
    ok = subprocess.run(tunflow("check", str(path)), capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "filter → stats" in ok.stdout
    path.write_text(CONFIG.format(name="tf0", workers="tasks").replace("9999", '"x"'))
    bad = subprocess.run(tunflow("check", str(path)), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert f"{path}: stages[0].options.rules[0]" in bad.stderr
    listing = subprocess.run(
        tunflow("stages"), capture_output=True, text=True, timeout=60, check=True
    )
    for name in ("gro", "gso", "filter", "capture", "ratelimit", "stats"):
        assert f"\n{name}  (" in "\n" + listing.stdout


@pytest.mark.parametrize("workers", ["tasks", "processes"])
def test_run_reports_a_failing_stage_in_one_line(
    netns: testing.Netns, tmp_path: Path, workers: str
) -> None:
    """A stage whose start() fails (a capture file it cannot create): exit 1 and one line naming
    the error — not a traceback of task groups, nor a worker's 'ExceptionGroup'."""
    path = tmp_path / "capture.toml"
    text = CONFIG.format(name=testing.unique_name("cli"), workers=workers)
    path.write_text(
        text.replace(
            'plugin = "stats"',
            'plugin = "capture"\noptions = { path = "/proc/nonexistent/x.pcap" }',
        )
    )
    done = subprocess.run(
        netns.cmd(*tunflow("run", str(path))), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tunflow: ") and "No such file or directory" in lines[0]
    assert "Group" not in lines[0]


def test_run_stops_quietly_when_the_reader_of_its_reports_goes_away(
    netns: testing.Netns, tmp_path: Path
) -> None:
    # `tunflow run CONFIG | head -1`: "tunflow: [Errno 32] Broken pipe" and status 1 — now
    # status 1 without a word, as the other commands (and a C tool killed by SIGPIPE) end,
    # and the pipeline stopped with its device closed
    with running(netns, tmp_path, "0.1", stderr=subprocess.PIPE) as (name, proc):
        assert proc.stdout is not None and proc.stderr is not None
        assert json.loads(proc.stdout.readline())["running"] is True
        proc.stdout.close()  # the reader goes away
        status = proc.wait(timeout=30)
        err = proc.stderr.read().decode()
    assert status == 1, err
    assert err == ""
    assert name not in links(netns)


@pytest.mark.parametrize("backend", ["uvloop", "asyncio", "trio"])
def test_run_with_stdout_closed_runs_without_reports(
    netns: testing.Netns, tmp_path: Path, backend: str
) -> None:
    # `tunflow run CONFIG >&-`: the device took descriptor 1 — asyncio and trio failed with an
    # AttributeError traceback (sys.stdout is None), uvloop aborted the process (an assertion
    # when it closed a descriptor below 3); now /dev/null stands in for the closed descriptor
    # and the pipeline runs its time without reports
    pytest.importorskip(backend)
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(name=testing.unique_name("cli"), workers="tasks"))
    command = tunflow("run", str(path), "--backend", backend, "--duration", "0.5")
    done = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *netns.cmd(*command)],
        stderr=subprocess.PIPE,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""


def test_a_reader_that_does_not_read_holds_up_the_reports_not_the_pipeline(
    netns: testing.Netns, tmp_path: Path
) -> None:
    # `tunflow run CONFIG | less`, not scrolled: once the pipe was full the report's write
    # blocked the event loop — no packet moved, and SIGTERM did nothing until the reader read
    with running(netns, tmp_path, "0.005", stderr=subprocess.DEVNULL) as (name, proc):
        assert proc.stdout is not None
        json.loads(proc.stdout.readline())  # running; from now on, nobody reads
        time.sleep(2)  # ~400 reports of ~1 KB: the pipe's 64 KiB are full
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while name in links(netns):
            assert time.monotonic() < deadline, "SIGTERM did not stop the pipeline"
            time.sleep(0.05)
        out, _ = proc.communicate(timeout=30)  # the last report waited for its reader
    assert proc.returncode == 0
    last = json.loads(out.splitlines()[-1])
    assert last["running"] is False


def test_a_reader_that_never_reads_again_does_not_keep_it_from_ending(
    netns: testing.Netns, tmp_path: Path
) -> None:
    # the last report waited for its reader however long: a terminal paused with Ctrl-S kept
    # the command (its devices closed already) from ending on SIGTERM
    with running(netns, tmp_path, "0.005", stderr=subprocess.DEVNULL) as (name, proc):
        assert proc.stdout is not None
        json.loads(proc.stdout.readline())  # running; from now on, nobody reads, ever
        time.sleep(2)  # the pipe's 64 KiB are full
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0  # the last report given up after a while
    assert name not in links(netns)


@pytest.mark.parametrize("ignored", [False, True], ids=["hangup", "nohup"])
def test_a_hangup_stops_it_cleanly_unless_ignored(
    netns: testing.Netns, tmp_path: Path, ignored: bool
) -> None:
    # SIGHUP (its terminal closed) killed the command: status 129, no stage stop() (a
    # capture's last second lost), no last report; under nohup it must go on

    def ignore_hangup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    with running(
        netns,
        tmp_path,
        "0.2",
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore_hangup if ignored else None,
    ) as (name, proc):
        assert proc.stdout is not None
        json.loads(proc.stdout.readline())  # running
        proc.send_signal(signal.SIGHUP)
        if ignored:
            time.sleep(1)
            assert proc.poll() is None
            json.loads(proc.stdout.readline())  # still reporting
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["running"] is False
    assert name not in links(netns)


def test_a_signal_while_starting_stops_it_cleanly(netns: testing.Netns, tmp_path: Path) -> None:
    # SIGTERM between the device made and the pipeline running (worker processes starting):
    # the default action killed the command (status -15, no stage stop(), no last report)
    with running(netns, tmp_path, "60", "processes", stderr=subprocess.PIPE, text=True) as (
        name,
        proc,
    ):
        deadline = time.monotonic() + 30
        while name not in links(netns):
            assert time.monotonic() < deadline and proc.poll() is None, "no device made"
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["running"] is False
    assert name not in links(netns)


def test_an_interrupt_while_loading_stops_a_background_job(
    netns: testing.Netns, tmp_path: Path
) -> None:
    # `sh -c 'tunflow run x.toml &'`: a background job inherits SIGINT ignored; one sent before
    # the pipeline ran (its plugins still importing) was lost, and the command ran on
    plugins = tmp_path / "plugins"
    dist = plugins / "slowplug-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slowplug\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[tunflow.stages]\nslow = slowplug:Slow\n")
    importing = tmp_path / "importing"
    (plugins / "slowplug.py").write_text(
        "import pathlib, time\n"
        f"pathlib.Path({str(importing)!r}).touch()\n"
        "time.sleep(3)\n"
        "from tunflow_plugins.stats import StatsStage as Slow\n"
    )
    name = testing.unique_name("cli")
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(name=name, workers="tasks").replace('"stats"', '"slow"'))

    def ignore_interrupt() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = subprocess.Popen(
        netns.cmd("env", f"PYTHONPATH={plugins}", *tunflow("run", str(path))),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore_interrupt,
    )
    try:
        deadline = time.monotonic() + 30
        while not importing.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the plugin never loaded"
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert name not in links(netns)
