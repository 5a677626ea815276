"""More of the VPN commands' rules as a user sees them: what a reload names as not applied,
a zombie counted as gone, which links ``tunflow down`` deletes, and an asker that stops
waiting for an ``up`` that died."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tunflow.wireguard
from tunflow.cli import vpn
from tunflow.wireguard import genkey
from tunflow.wireguard.wgquick import parse_wgquick

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc, iproute2")

_HEAD = "[Interface]\nPrivateKey = {key}\nAddress = 10.9.0.1/24\n"


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("DNS = 10.9.0.53", "DNS"),
        ("MTU = 1300", "MTU"),
        ("Table = off", "Table"),
        ("SaveConfig = true", "SaveConfig"),
    ],
)
def test_a_reload_names_each_setting_it_does_not_apply(line: str, key: str) -> None:
    # docs/vpn.md: addresses, MTU, DNS, Table, hooks and SaveConfig are not applied by a
    # reload, and one changed is named in the answer ("not applied (restart for them): DNS")
    head = _HEAD.format(key=genkey())
    running = parse_wgquick(head)
    assert vpn._not_reloaded(running, parse_wgquick(head)) == []
    assert vpn._not_reloaded(running, parse_wgquick(head + line + "\n")) == [key]


def _zombie() -> subprocess.Popen[bytes]:
    """A child that has exited and is not reaped yet (state Z)."""
    child = subprocess.Popen(["true"])
    stat = Path(f"/proc/{child.pid}/stat")
    deadline = time.monotonic() + 10
    while stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    return child


def test_a_process_that_exited_is_not_alive_before_it_is_reaped() -> None:
    # `tunflow down` waits until the process is gone: one that exited and waits for its
    # parent to reap it (a supervisor, a shell) is gone, not still stopping
    child = _zombie()
    try:
        assert not vpn._alive(child.pid)
    finally:
        child.wait()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert vpn._alive(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(vpn, "PID_DIRECTORY", str(tmp_path / "run"))
    monkeypatch.setattr(tunflow.wireguard, "UAPI_DIRECTORY", str(tmp_path / "wg"), raising=False)
    (tmp_path / "wg").mkdir()
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    return path


def _stand_in_ip(bin_dir: Path, kind: str) -> Path:
    """An ``ip`` that shows a link of ``kind`` and logs every other call (then succeeds)."""
    shown = json.dumps([{"ifname": "wg7", "linkinfo": {"info_kind": kind}}])
    log = bin_dir / "calls"
    ip = bin_dir / "ip"
    ip.write_text(
        f'#!/bin/sh\nif [ "$1" = -j ]; then echo \'{shown}\'; exit 0; fi\necho "$@" >> {log}\n'
    )
    ip.chmod(0o755)
    return log


@pytest.mark.parametrize("kind", ["veth", "dummy", "bridge"])
def test_down_deletes_no_other_link_with_a_control_socket_of_its_name(
    bin_dir: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # without a pid file only a WireGuard link is deleted: the kernel's, or a TUN served by a
    # control socket (wireguard-go's) — never a veth or bridge that shares its name with a
    # socket file
    log = _stand_in_ip(bin_dir, kind)
    Path(tunflow.wireguard.UAPI_DIRECTORY, "wg7.sock").touch()
    assert vpn.down(argparse.Namespace(name="wg7", timeout=1.0)) == 1
    assert capsys.readouterr().err == "tunflow: wg7 is not a WireGuard interface\n"
    assert not log.exists()


def test_down_deletes_a_tun_served_by_a_control_socket(bin_dir: Path) -> None:
    log = _stand_in_ip(bin_dir, "tun")
    Path(tunflow.wireguard.UAPI_DIRECTORY, "wg7.sock").touch()
    assert vpn.down(argparse.Namespace(name="wg7", timeout=1.0)) == 0
    assert log.read_text() == "link del wg7\n"


@pytest.mark.parametrize("command", [vpn.reload, vpn.save])
def test_an_asker_stops_waiting_when_the_up_dies_without_answering(
    bin_dir: Path,
    command: Callable[[argparse.Namespace], int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the up is killed by the signal (or dies on its way): `tunflow reload`/`save` says it did
    # not answer as soon as it is gone, not after the whole --timeout
    # SIGHUP and SIGUSR1 end it (their default action)
    dying = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(vpn, "_running_pid", lambda name: dying.pid)
    (bin_dir.parent / "run").mkdir()
    try:
        started = time.monotonic()
        assert command(argparse.Namespace(name="wg7", timeout=30.0)) == 1
        assert time.monotonic() - started < 20
    finally:
        dying.kill()
        dying.wait()
    assert capsys.readouterr().err == f"tunflow: wg7 (pid {dying.pid}) did not answer\n"


@pytest.mark.parametrize(
    ("address", "mtu", "refused"),
    [
        ("fd00::1/64", 1280, False),  # the least IPv6 takes is taken
        ("fd00::1/64", 1279, True),
        ("10.9.0.1/24", 576, False),  # the least an MTU line takes is taken
        ("10.9.0.1/24", 575, True),
    ],
)
def test_an_automatic_mtu_is_refused_only_below_the_least_the_device_takes(
    address: str, mtu: int, refused: bool
) -> None:
    # as the file's own MTU is checked: "below 1280 with an IPv6 Address, or below 576"
    from tunflow.errors import ConfigError
    from tunflow.wireguard._routing import AutomaticMTU

    quick = parse_wgquick(_HEAD.format(key=genkey()).replace("10.9.0.1/24", address))
    auto = AutomaticMTU(mtu, "the route to 192.0.2.7 (dev eth0, MTU 1360)")
    if refused:
        with pytest.raises(ConfigError, match=f"is {mtu}, below"):
            vpn._check_automatic_mtu(quick, auto)
    else:
        vpn._check_automatic_mtu(quick, auto)
