"""``tunflow up --daemon``: the command line of the background ``up``, and its own exit status
when the background ``up`` fails to come up."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tunflow.cli import vpn

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

#: what `tunflow up --daemon wg0.conf` parses to
ARGS = argparse.Namespace(
    config="wg0.conf",
    native=False,
    no_routes=False,
    quiet=False,
    verbose=False,
    offload="auto",
    backend="asyncio",
)


@pytest.mark.parametrize(
    ("script", "status"),
    [
        ("raise SystemExit(2)", 2),  # a bad file: up's own status
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 128 + 9),  # as a shell says
    ],
    ids=["exit-2", "killed"],
)
def test_a_background_up_that_fails_gives_its_status(
    script: str, status: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vpn, "PID_DIRECTORY", str(tmp_path))
    popen = subprocess.Popen

    def fake(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return popen([sys.executable, "-c", script], **kwargs)

    monkeypatch.setattr(vpn.subprocess, "Popen", fake)
    assert vpn._daemonize(ARGS, "wg0") == status  # a positive exit status, not -9


def test_a_background_up_is_heard_whatever_tmpdir_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the notify socket's path must fit a sockaddr_un (108 bytes): not under a long $TMPDIR
    run = tmp_path / "run"
    monkeypatch.setattr(vpn, "PID_DIRECTORY", str(run))
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    popen = subprocess.Popen
    ready = (
        "import os, socket\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "s.sendto(b'READY=1\\nMAINPID=1', os.environ['NOTIFY_SOCKET'])\n"
    )

    children: list[subprocess.Popen[bytes]] = []

    def fake(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        children.append(popen([sys.executable, "-c", ready], **kwargs))
        return children[-1]

    monkeypatch.setattr(vpn.subprocess, "Popen", fake)
    try:
        assert vpn._daemonize(ARGS, "wg0") == 0
    finally:
        for child in children:
            child.wait(10)
    assert "wg0 up in the background" in capsys.readouterr().out
    assert [p.name for p in run.iterdir()] == ["wg0.log"]  # the socket's directory is gone


def test_a_start_stuck_holding_the_lock_does_not_hang_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `up --daemon` starts one at a time (a lock on the directory); one stopped half-way
    # (SIGSTOP) must not hang every later start: the wait is bounded and says why
    import fcntl
    import os
    import time

    from tunflow.errors import ConfigError

    monkeypatch.setattr(vpn, "PID_DIRECTORY", str(tmp_path))
    monkeypatch.setattr(vpn, "_DAEMON_START_WAIT", 0.3)
    held = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        began = time.monotonic()
        with pytest.raises(ConfigError, match="has been starting for"):
            vpn._daemonize(ARGS, "wg0")
        assert time.monotonic() - began < 10
        assert list(tmp_path.iterdir()) == []  # no log moved or made
    finally:
        os.close(held)


def background_ups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The command lines ``_daemonize`` starts, each run as a child that exits with status 2
    at once (as a background ``up`` that failed)."""
    monkeypatch.setattr(vpn, "PID_DIRECTORY", str(tmp_path))
    popen = subprocess.Popen
    started: list[list[str]] = []

    def fake(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(argv)
        return popen([sys.executable, "-c", "raise SystemExit(2)"], **kwargs)

    monkeypatch.setattr(vpn.subprocess, "Popen", fake)
    return started


@pytest.mark.parametrize("config", ["wg0.conf", "-wg0.conf", "--native"])
def test_the_background_up_reads_the_file_it_was_given(
    config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `tunflow up --daemon -- -wg0.conf`: the background `up` took the file's name for an
    # option (and failed to start, or took --native for a flag and went on without a file)
    from tunflow.cli import build_parser

    started = background_ups(tmp_path, monkeypatch)
    args = argparse.Namespace(**{**vars(ARGS), "config": config, "native": True})
    assert vpn._daemonize(args, "wg0") == 2
    (argv,) = started
    assert argv[1:5] == ["-P", "-m", "tunflow.cli", "up"]
    child = build_parser().parse_args(argv[4:])
    assert (child.config, child.name, child.native, child.daemon) == (config, "wg0", True, False)
    assert (child.offload, child.backend) == ("auto", "asyncio")


def test_the_background_up_runs_this_tunflow_not_the_working_directory_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `python -m` put the working directory first on the background up's sys.path: `sudo
    # tunflow up --daemon wg0` from a directory holding a tunflow package (another checkout,
    # or one planted in /tmp) — or any module tunflow imports — ran that code, as root
    monkeypatch.setattr(vpn, "PID_DIRECTORY", str(tmp_path / "run"))
    here = tmp_path / "here"
    (here / "tunflow" / "cli").mkdir(parents=True)
    (here / "tunflow" / "__init__.py").write_text("")
    (here / "tunflow" / "cli" / "__init__.py").write_text("")
    (here / "tunflow" / "cli" / "__main__.py").write_text("raise SystemExit(42)\n")
    monkeypatch.chdir(here)
    # this tunflow's `up` of a file that is not there: its own status for a bad file
    assert vpn._daemonize(ARGS, "wg0") == 2
    assert "wg0.conf: cannot read the file" in capsys.readouterr().err
