"""A signal while ``tunflow up`` is starting: SIGINT or SIGTERM — during ``PreUp``, the endpoint
name lookups, or once the device is made (``PostUp``) — undoes what it made (device, routes,
policy rules, nftables tables, DNS record, control socket, pid file, journal), runs neither
``PreDown`` nor ``PostDown`` (wg-quick's trap runs neither), says it was stopped and exits 0,
as a running one does; SIGHUP does not stop it (it reloads once up). In throw-away namespaces,
as separate processes; each moment is reached through a file a hook writes, or a line logged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.linux.test_vpn_cli import unreachable_dns
from tunflow import testing
from tunflow.wireguard import genkey, pubkey

pytestmark = pytest.mark.needs_root

UA, UB = "192.168.96.1", "192.168.96.2"
TUNFLOW = [sys.executable, "-m", "tunflow.cli"]
#: how long a test waits for one thing (a hook to start, the process to end)
WAIT = 20.0


def hold(tmp_path: Path, hook: str) -> str:
    """A hook line that writes ``<hook>.started`` and waits (10 s at most) for ``<hook>.go``."""
    started, go = tmp_path / f"{hook}.started", tmp_path / f"{hook}.go"
    return (
        f"{hook} = touch {started}; for i in $(seq 200); do [ -e {go} ] && break; sleep 0.05; "
        f"done; echo {hook} >> {tmp_path / 'ran'}\n"
    )


def conf(
    tmp_path: Path, extra: str, *, endpoint: str = f"{UB}:51820", default: bool = False
) -> Path:
    """A file with ``extra`` [Interface] lines, PreDown and PostDown hooks that leave a mark in
    ``tmp_path/ran``, and a peer at ``endpoint`` (every address routed to it: ``default``)."""
    ran = tmp_path / "ran"
    marks = "".join(f"{h} = echo {h} >> {ran}\n" for h in ("PreDown", "PostDown"))
    allowed = "0.0.0.0/0, ::/0" if default else "10.96.0.2/32"
    path = tmp_path / f"{testing.unique_name('sig')}.conf"
    path.write_text(
        f"[Interface]\nPrivateKey = {genkey()}\nAddress = 10.96.0.1/24\n{extra}{marks}"
        f"[Peer]\nPublicKey = {pubkey(genkey())}\nAllowedIPs = {allowed}\nEndpoint = {endpoint}\n"
    )
    path.chmod(0o600)
    return path


def start(
    ns: testing.Netns, path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``tunflow up path`` in ``ns``, in a process group of its own (its hooks' too)."""
    return ns.popen(
        [*TUNFLOW, "up", str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=env,
    )


def wait_for(proc: subprocess.Popen[str], path: Path) -> None:
    """Until ``path`` exists (a hook wrote it), within WAIT; ``proc`` must still run."""
    deadline = time.monotonic() + WAIT
    while not path.exists():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"tunflow up exited {proc.returncode}: {out}")
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.01)


def wait_for_line(proc: subprocess.Popen[str], text: str) -> str:
    """What ``proc`` printed up to the line holding ``text`` (within WAIT)."""
    assert proc.stdout is not None
    out = ""
    deadline = time.monotonic() + WAIT
    for line in iter(proc.stdout.readline, ""):
        out += line
        if text in line:
            return out
        assert time.monotonic() < deadline, out
    raise AssertionError(f"tunflow up exited {proc.wait()}: {out}")


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """The exit status and the rest of the output of ``proc``, which must end within WAIT."""
    try:
        out, _ = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=WAIT)
        raise AssertionError(f"tunflow up did not stop: {out}") from None
    return proc.returncode, out


def nothing_left(ns: testing.Netns, name: str) -> None:
    """No link, control socket, pid file, journal, route, policy rule or nftables table of
    ``name``."""
    assert ns.run("ip", "link", "show", name, check=False).returncode != 0
    assert not Path(f"/var/run/wireguard/{name}.sock").exists()
    assert not Path(f"/run/tunflow/{name}.pid").exists()
    assert not Path(f"/run/tunflow/{name}.undo").exists()
    for family in ("-4", "-6"):
        rules = ns.run("ip", family, "rule", "show").stdout
        assert "fwmark" not in rules and "suppress_prefixlength" not in rules, rules
        routes = ns.run("ip", family, "route", "show", "table", "all").stdout
        assert name not in routes and "table 51820" not in routes, routes
    assert name not in ns.run("nft", "list", "tables", check=False).stdout


def stop_in_hook(
    pair: testing.Netns,
    tmp_path: Path,
    path: Path,
    proc: subprocess.Popen[str],
    hook: str,
    sig: signal.Signals,
    group: bool,
) -> None:
    """Send ``sig`` to ``proc`` (or its process group) while ``hook``, held by :func:`hold`,
    runs; let the hook go on; check that `up` stopped as wg-quick's trap stops it — status 0,
    saying so, neither PreDown nor PostDown run — and left nothing."""
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    (tmp_path / f"{hook}.go").touch()
    status, out = finish(proc)
    assert status == 0, out
    assert f"{path.stem} stopped ({sig.name}) while coming up" in out, out
    assert "Traceback" not in out and "exited" not in out, out
    ran = (tmp_path / "ran").read_text() if (tmp_path / "ran").exists() else ""
    assert "Down" not in ran, ran  # no PreDown, no PostDown
    assert group or ran == f"{hook}\n", ran
    nothing_left(pair, path.stem)


@pytest.fixture
def pair() -> Iterator[testing.Netns]:
    """A namespace with a veth to another (the peer's address, UB, on its far end)."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24")
        yield a


@pytest.mark.parametrize("group", [False, True], ids=["process", "group"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_pre_up_stops_it_and_leaves_nothing(
    pair: testing.Netns, tmp_path: Path, sig: signal.Signals, group: bool
) -> None:
    # to the process alone (`kill PID`), the hook is waited for, as wg-quick's trap waits for
    # its hook; to the process group (Ctrl-C, systemd's stop) the hook gets it too — and
    # that is no hook failing
    path = conf(tmp_path, hold(tmp_path, "PreUp"))
    proc = start(pair, path)
    wait_for(proc, tmp_path / "PreUp.started")
    stop_in_hook(pair, tmp_path, path, proc, "PreUp", sig, group)


@pytest.mark.parametrize("backend", ["auto", "trio"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_endpoint_lookup_stops_it_and_leaves_nothing(
    pair: testing.Netns, tmp_path: Path, sig: signal.Signals, backend: str
) -> None:
    path = conf(tmp_path, "", endpoint="peer.tunflow-test.example:51820")
    env = {**os.environ, "WG_ENDPOINT_RESOLUTION_RETRIES": "infinity"}
    with unreachable_dns(pair):
        proc = start(pair, path, "--backend", backend, env=env)
        wait_for_line(proc, "trying again")
        proc.send_signal(sig)
        status, out = finish(proc)
    assert status == 0, out
    assert f"{path.stem} stopped ({sig.name}) while coming up" in out, out
    assert "Traceback" not in out, out
    assert not (tmp_path / "ran").exists()
    nothing_left(pair, path.stem)


@pytest.mark.parametrize("group", [False, True], ids=["process", "group"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_once_the_device_is_made_undoes_all_of_it(
    pair: testing.Netns, tmp_path: Path, sig: signal.Signals, group: bool
) -> None:
    # during PostUp: the device, a default route through policy rules and nftables tables,
    # and the DNS record are made; all of it goes, as wg-quick's trap (del_if) takes it down
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "resolvconf-calls"
    fake = bin_dir / "resolvconf"
    fake.write_text(f'#!/bin/sh\n{{ echo "ARGS $*"; cat; }} >> {calls}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    path = conf(tmp_path, "DNS = 10.96.0.53\n" + hold(tmp_path, "PostUp"), default=True)
    proc = start(pair, path, env=env)
    wait_for(proc, tmp_path / "PostUp.started")
    assert "fwmark" in pair.run("ip", "rule", "show").stdout  # (made by now)
    stop_in_hook(pair, tmp_path, path, proc, "PostUp", sig, group)
    record = "tun." if Path("/etc/resolvconf/interface-order").exists() else ""
    assert calls.read_text().endswith(f"ARGS -d {record}{path.stem} -f\n"), calls.read_text()


def test_sighup_while_starting_does_not_stop_it_and_reloads_once_up(
    pair: testing.Netns, tmp_path: Path
) -> None:
    # SIGHUP reloads a running `up`; while it starts, it neither kills it (its default action,
    # which left the pid file) nor is lost: the file is applied again once up
    path = conf(tmp_path, hold(tmp_path, "PreUp"))
    proc = start(pair, path)
    try:
        wait_for(proc, tmp_path / "PreUp.started")
        proc.send_signal(signal.SIGHUP)
        (tmp_path / "PreUp.go").touch()
        out = wait_for_line(proc, f"reloaded {path}")
        assert f"{path.stem} up: listening" in out, out
    finally:
        proc.send_signal(signal.SIGTERM)
    status, rest = finish(proc)
    assert status == 0, out + rest
    assert f"{path.stem} down (SIGTERM)" in rest, out + rest
    nothing_left(pair, path.stem)
