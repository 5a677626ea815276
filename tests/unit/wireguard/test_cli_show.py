"""``tunflow show`` against control sockets that do not answer as a tunflow interface does:
each is reported on stderr with status 1 and the rest are still shown (real Unix sockets in a
temporary directory standing in for ``/var/run/wireguard``)."""

from __future__ import annotations

import argparse
import base64
import socket
import threading
from pathlib import Path

import pytest

import tunflow.wireguard
from tunflow.cli.vpn import show
from tunflow.wireguard import genkey, pubkey


def serve(path: Path, answer: bytes) -> threading.Thread:
    """A control socket at ``path`` that reads one request and writes ``answer``."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(10)

    def run() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(answer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tunflow.wireguard, "UAPI_DIRECTORY", str(tmp_path), raising=False)
    return tmp_path


def run_show(name: str | None) -> int:
    return show(argparse.Namespace(name=name))


def test_binary_answer_is_an_error_not_a_traceback(
    directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(directory / "bad.sock", b"\xff\xfeprivate_key=\n\n")
    assert run_show("bad") == 1
    err = capsys.readouterr().err
    assert "bad: the control socket's answer is not UAPI text" in err


def test_one_bad_socket_does_not_hide_the_others(
    directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = genkey()
    good = f"private_key={base64.b64decode(key).hex()}\nlisten_port=51820\nerrno=0\n\n".encode()
    threads = [
        serve(directory / "a0.sock", b"\x80\n\n"),
        serve(directory / "b0.sock", good),
        serve(directory / "c0.sock", b"hello\n\n"),
        serve(directory / "d0.sock", b"listen_port=1\n"),  # closed before the blank line
    ]
    assert run_show(None) == 1
    for t in threads:
        t.join(10)
    out, err = capsys.readouterr()
    assert "interface: b0" in out and "listening port: 51820" in out
    assert pubkey(key) in out
    assert "a0: the control socket's answer is not UAPI text" in err
    assert "c0: line without '='" in err and "interface: c0" not in out
    assert "d0: the control socket closed before its answer ended" in err
    assert "interface: d0" not in out


@pytest.mark.parametrize("name", ["../x", "a/b", "a b", "x" * 16])
def test_a_name_is_not_a_path(
    directory: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    (directory.parent / "x.sock").touch()
    assert run_show(name) == 2
    assert "is not a valid interface name" in capsys.readouterr().err


def test_a_stale_socket_is_removed_and_not_listed(
    directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # what a killed process leaves: a socket file nobody listens on (wg removes it, as here)
    def stale(name: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(str(directory / f"{name}.sock"))

    stale("gone")
    serve(directory / "live.sock", b"listen_port=7\nerrno=0\n\n")
    assert run_show(None) == 0
    out, err = capsys.readouterr()
    assert "interface: live" in out and "gone" not in out + err
    assert not (directory / "gone.sock").exists()
    stale("gone2")
    assert run_show("gone2") == 1
    assert "gone2: no such interface (a stale control socket, removed)" in capsys.readouterr().err
    assert not (directory / "gone2.sock").exists()


def test_a_name_that_is_not_up_says_so(directory: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # as `wg show NAME` ("Unable to access interface: No such device"), not a bare errno
    assert run_show("absent0") == 1
    err = capsys.readouterr().err
    assert "absent0: no such interface (no control socket at " in err
    assert "Errno" not in err


def test_a_file_that_is_not_a_socket_is_left_alone(
    directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # connecting to a regular file or a directory is refused as to a stale socket; wg checks
    # that it is a socket before it removes anything (and lists no interface for the rest)
    (directory / "notes.sock").write_text("kept\n")
    (directory / "dir.sock").mkdir()
    serve(directory / "live.sock", b"listen_port=7\nerrno=0\n\n")
    assert run_show(None) == 0
    out, err = capsys.readouterr()
    assert "interface: live" in out and "notes" not in out + err and "dir" not in out + err
    assert (directory / "notes.sock").read_text() == "kept\n"
    assert (directory / "dir.sock").is_dir()
    for name in ("notes", "dir"):
        assert run_show(name) == 1
        assert f"{name}: {directory / name}.sock is not a control socket" in (
            capsys.readouterr().err
        )
    assert (directory / "notes.sock").exists() and (directory / "dir.sock").exists()


def test_a_socket_a_user_may_not_reach_says_to_use_sudo(
    directory: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the sockets are root's (mode 0600): as a user, show said a bare "[Errno 13] Permission
    # denied"; now it says which socket, and the hint down gives
    import tunflow.cli.vpn as vpn

    def refused(path: Path) -> str:
        raise PermissionError(13, "Permission denied")

    (directory / "wg7.sock").touch()
    monkeypatch.setattr(vpn, "_uapi_get", refused)
    monkeypatch.setattr(vpn.os, "geteuid", lambda: 1000)
    for name in ("wg7", None):
        assert run_show(name) == 1
        err = capsys.readouterr().err
        assert err == (
            f"tunflow: wg7: Permission denied: {directory / 'wg7.sock'} "
            "(not running as root: run it with sudo)\n"
        )


def test_no_blank_line_before_the_first_interface_shown(
    directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # an entry skipped (here a0: not UAPI) left the next one a blank line before it
    good = b"listen_port=7\nerrno=0\n\n"
    threads = [
        serve(directory / "a0.sock", b"\x80\n\n"),
        serve(directory / "b0.sock", good),
        serve(directory / "c0.sock", good),
    ]
    assert run_show(None) == 1
    for t in threads:
        t.join(10)
    out = capsys.readouterr().out
    assert out.startswith("interface: b0\n")
    assert "\n\ninterface: c0\n" in out
