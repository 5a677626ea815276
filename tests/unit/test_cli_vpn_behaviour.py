"""The VPN commands' small rules as a user sees them: ``show``'s times and sizes as ``wg show``
prints them, the pid file's bounds, ``pubkey``'s input limit, ``genkey``'s warning, and what
goes to systemd's ``STATUS=``."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import pytest

from tunflow.cli import main, vpn
from tunflow.wireguard import genkey, pubkey

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "Now"),
        (0.9, "Now"),
        (1, "1 second ago"),
        (2, "2 seconds ago"),
        (60, "1 minute ago"),
        (61, "1 minute, 1 second ago"),
        (3600, "1 hour ago"),
        (7322, "2 hours, 2 minutes, 2 seconds ago"),
        (86400 + 1, "1 day, 1 second ago"),
        (2 * 31_536_000 + 3 * 86400 + 60, "2 years, 3 days, 1 minute ago"),
    ],
)
def test_latest_handshake_names_only_the_units_there_are(seconds: float, text: str) -> None:
    # wg show's ago() (wireguard-tools show.c): each unit that is not 0, years of 365 days
    # and days included, singular for 1 ("1 hour ago", never "1 hour, 0 seconds ago"); "Now"
    # within the second
    assert vpn._ago(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        ((1 << 20) - 1, "1024.00 KiB"),
        (1 << 20, "1.00 MiB"),
        (1 << 30, "1.00 GiB"),
        (1 << 40, "1.00 TiB"),
    ],
)
def test_transfer_switches_unit_at_each_power_of_1024(n: int, text: str) -> None:
    # wg show's bytes(): B below 1024, then KiB, MiB, GiB, TiB from each power on
    assert vpn._bytes(n) == text


def test_a_status_of_the_limit_is_sent_whole_and_a_longer_one_cut() -> None:
    # STATUS= text is at most _STATUS_MAX characters: one of exactly that many is not cut
    whole = "x" * vpn._STATUS_MAX
    assert vpn._status(whole) == whole
    cut = vpn._status(whole + "y")
    assert len(cut) == vpn._STATUS_MAX and cut.endswith("…")


@pytest.mark.parametrize(
    ("text", "pid"),
    [("2147483647\n", 2147483647), ("2147483648\n", 0), ("4294967295\n", 0), ("0\n", 0)],
)
def test_a_pid_file_holds_only_a_pid_t(text: str, pid: int, tmp_path: Path) -> None:
    # past pid_t's largest, os.kill raises OverflowError: `tunflow down` was a traceback
    path = tmp_path / "wg0.pid"
    path.write_text(text)
    assert vpn._read_pid(path) == pid


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_pubkey_takes_4_KiB_of_input_and_refuses_a_byte_more(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    private = genkey()
    line = private.encode() + b"\n"
    _stdin(monkeypatch, line.ljust(vpn._PUBKEY_INPUT_LIMIT, b" "))
    assert main(["pubkey"]) == 0
    assert capsys.readouterr().out == pubkey(private) + "\n"
    _stdin(monkeypatch, line.ljust(vpn._PUBKEY_INPUT_LIMIT + 1, b" "))
    assert main(["pubkey"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "more than 4096 bytes of input" in captured.err


@pytest.mark.parametrize(
    ("mode", "warned"),
    [(0o600, False), (0o640, False), (0o604, True), (0o602, True), (0o601, True)],
)
def test_genkey_warns_when_others_have_any_access_to_the_file(
    mode: int,
    warned: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # wg genkey: `if (S_ISREG(st.st_mode) && (st.st_mode & S_IRWXO))` — read, write or
    # execute for others
    path = tmp_path / "key"
    path.touch()
    path.chmod(mode)
    with path.open("w") as out:
        monkeypatch.setattr(sys, "stdout", out)
        assert main(["genkey"]) == 0
    assert ("world accessible file" in capsys.readouterr().err) is warned
    assert len(path.read_text().strip()) == 44
    assert stat.S_IMODE(path.stat().st_mode) == mode  # its mode is the shell's business


@pytest.mark.parametrize(("euid", "hinted"), [(0, False), (1000, True)])
def test_the_sudo_hint_is_for_a_user_only(
    euid: int, hinted: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a PermissionError as root is not for want of root: no "run it with sudo" then
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    assert vpn._error(PermissionError(13, "Permission denied", "/run/tunflow")) == 1
    assert ("run it with sudo" in capsys.readouterr().err) is hinted


@pytest.mark.parametrize("status", [1, 2, 255])
def test_a_hook_that_fails_with_any_status_fails_the_command(status: int) -> None:
    # wg-quick runs its hooks under `set -e`: any status but 0 stops it (`PostUp = false`, a
    # grep that found nothing)
    from tunflow.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"PostUp command exited {status}: exit {status}"):
        vpn._run_hooks(["true", f"exit {status}"], "PostUp")


def test_hooks_run_in_bash_in_order(tmp_path: Path) -> None:
    out = tmp_path / "out"
    vpn._run_hooks([f"[[ -n x ]] && echo one >> {out}", f"echo two >> {out}"], "PreUp")
    assert out.read_text() == "one\ntwo\n"


def test_a_starting_up_is_not_taken_for_the_pid_a_killed_one_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the pid file a SIGKILLed `up` left holds its pid, which the kernel may have given to
    # another process: until the new `up` publishes its own, `down` must see "starting" (0),
    # not signal that pid
    monkeypatch.setattr(vpn, "PID_DIRECTORY", str(tmp_path))
    (tmp_path / "wg0.pid").write_text("1234567\n")
    assert vpn._lock_holder("wg0") is None  # nobody holds it
    with vpn._PidFile("wg0") as pid_file:
        assert vpn._lock_holder("wg0") == 0
        pid_file.publish()
        assert vpn._lock_holder("wg0") == os.getpid()
    assert not (tmp_path / "wg0.pid").exists()


def test_the_background_up_gets_every_flag_of_the_foreground_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `tunflow up --daemon --no-routes wg0.conf` must add no routes, as without --daemon
    import argparse

    from tests.unit.test_cli_daemon import background_ups
    from tunflow.cli import build_parser

    started = background_ups(tmp_path, monkeypatch)
    args = build_parser().parse_args(
        ["up", "--daemon", "--no-routes", "--quiet", "--offload=off", "--backend=trio", "wg0.conf"]
    )
    assert isinstance(args, argparse.Namespace)
    assert vpn._daemonize(args, "wg0") == 2
    (argv,) = started
    child = build_parser().parse_args(argv[4:])
    assert (child.no_routes, child.quiet, child.verbose, child.native) == (True, True, False, False)
    assert (child.offload, child.backend, child.daemon) == ("off", "trio", False)
