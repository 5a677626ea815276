"""``tunflow run`` on a terminal (a pseudo-terminal here): the live table (rich), and with
``--json`` the JSON lines instead — docs/pipeline.md, "The ``tunflow`` command"."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.linux.test_cli import CONFIG, links, tunflow
from tunflow import testing

pytestmark = [pytest.mark.needs_root]

pytest.importorskip("rich", reason="the live table needs the cli extra")

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_a_terminal(netns: testing.Netns, tmp_path: Path, *options: str) -> tuple[str, str]:
    """``tunflow run`` of :data:`CONFIG` for a second and a half, standard output a terminal
    of 120 columns: what it showed there (escape sequences taken out) and its device's
    name. It must end by itself with status 0."""
    name = testing.unique_name("cli")
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(name=name, workers="tasks"))
    command = tunflow("run", str(path), "--interval", "0.2", "--duration", "1.5", *options)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = subprocess.Popen(
            netns.cmd(*command), stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        os.close(slave)
        slave = -1
        shown = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed (the command ended)
                break
            if not chunk:
                break
            shown += chunk
        _, err = proc.communicate(timeout=10)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return _ESCAPES.sub("", shown.decode("utf-8", "replace")), name


def test_run_on_a_terminal_draws_the_live_table(netns: testing.Netns, tmp_path: Path) -> None:
    shown, name = run_on_a_terminal(netns, tmp_path)
    assert "{" not in shown, shown  # no JSON line
    # the title (the pipeline's name and mode), the columns, a row per stage and per port
    assert "(tasks)" in shown, shown
    header = next(line for line in shown.splitlines() if "packets in" in line)
    for column in ("stage", "packets out", "pps", "Mbit/s", "dropped", "errors"):
        assert column in header, header
    rows = {line.split("│")[1].strip() for line in shown.splitlines() if line.count("│") >= 7}
    assert {"filter", "stats"} <= rows, rows
    assert any(name in row for row in rows), rows  # the device queue's own row
    assert name not in links(netns)


def test_run_with_json_on_a_terminal_prints_json_lines(
    netns: testing.Netns, tmp_path: Path
) -> None:
    shown, name = run_on_a_terminal(netns, tmp_path, "--json")
    lines = [json.loads(line) for line in shown.splitlines() if line.strip()]
    assert len(lines) >= 2, shown
    for line in lines:
        assert {"name", "mode", "running", "stages", "ports", "workers", "kernel_drops"} <= set(
            line
        ), line
        assert {"time", "elapsed"} <= set(line), line
        assert [s["name"] for s in line["stages"]] == ["filter", "stats"]
        assert line["mode"] == "tasks"
    assert all(line["running"] for line in lines[:-1])
    assert lines[-1]["running"] is False  # the last report: the pipeline stopped
    elapsed = [line["elapsed"] for line in lines]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= 1.5
    assert name not in links(netns)
