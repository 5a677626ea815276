"""``tunflow down`` of an interface no ``tunflow up`` serves, with a stand-in ``ip`` command on
``$PATH`` (or none): what it says when ``ip`` is missing or refuses (nothing reaches the
kernel; a temporary directory stands in for ``/run/tunflow``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pytest

import tunflow.wireguard
from tunflow.cli import vpn

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="iproute2")


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(vpn, "PID_DIRECTORY", str(tmp_path / "run"))
    monkeypatch.setattr(tunflow.wireguard, "UAPI_DIRECTORY", str(tmp_path / "wg"), raising=False)
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def down(name: str) -> int:
    return vpn.down(argparse.Namespace(name=name, timeout=1.0))


def test_without_ip_it_says_so(bin_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert down("wg7") == 1  # was a FileNotFoundError traceback
    err = capsys.readouterr().err
    assert err == "tunflow: cannot look for wg7: no 'ip' command (iproute2)\n"


def test_a_refused_delete_says_why(bin_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a WireGuard link is there; deleting it is refused (as it is for a user who is not root):
    # that is not "no interface to take down"
    shown = json.dumps([{"ifname": "wg7", "linkinfo": {"info_kind": "wireguard"}}])
    ip = bin_dir / "ip"
    ip.write_text(
        "#!/bin/sh\n"
        f"if [ \"$1\" = -j ]; then echo '{shown}'; exit 0; fi\n"
        "echo 'RTNETLINK answers: Operation not permitted' >&2\n"
        "exit 2\n"
    )
    ip.chmod(0o755)
    assert down("wg7") == 1
    err = capsys.readouterr().err
    assert err.startswith("tunflow: cannot delete wg7: RTNETLINK answers: Operation not permitted")
    assert ("run it with sudo" in err) == (os.geteuid() != 0)


@pytest.mark.parametrize(
    "text", ["-1\n", "0\n", "+7\n", "-4242\n", "99999999999999999999\n", "٧\n"]
)
def test_a_pid_file_that_holds_no_pid_signals_nobody(
    text: str, bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # os.kill(-1, SIGTERM) signals every process there is, os.kill(-N, …) a process group:
    # a damaged pid file (its lock held) must not make `down` send either
    import fcntl

    run = Path(vpn.PID_DIRECTORY)
    run.mkdir()
    (run / "wg7.pid").write_text(text)
    killed: list[int] = []
    monkeypatch.setattr(vpn.os, "kill", lambda pid, sig: killed.append(pid))
    fd = os.open(run / "wg7.pid", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a live `tunflow up` holds it
        assert vpn._running_pid("wg7") == 0  # held, no pid: one still starting
        vpn.down(argparse.Namespace(name="wg7", timeout=0.1))
    finally:
        os.close(fd)
    assert killed == []


def test_an_up_still_starting_after_the_timeout_is_left_alone(
    bin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # its PostUp runs longer than --timeout: its half-made link is not another tool's to
    # delete (a stand-in ip shows a TUN with a control socket, and would delete it)
    import fcntl

    run, sockets = Path(vpn.PID_DIRECTORY), Path(tunflow.wireguard.UAPI_DIRECTORY)
    run.mkdir()
    sockets.mkdir()
    (sockets / "wg7.sock").touch()
    calls = bin_dir / "calls"
    shown = json.dumps([{"ifname": "wg7", "linkinfo": {"info_kind": "tun"}}])
    ip = bin_dir / "ip"
    ip.write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\necho '{shown}'\n")
    ip.chmod(0o755)
    fd = os.open(run / "wg7.pid", os.O_RDWR | os.O_CREAT)  # locked, no pid yet: starting
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert vpn.down(argparse.Namespace(name="wg7", timeout=0.2)) == 1
    finally:
        os.close(fd)
    assert "wg7 is still starting after 0.2 s" in capsys.readouterr().err
    assert not calls.exists()  # ip was not even asked
