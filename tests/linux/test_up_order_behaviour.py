"""``tunflow up`` in wg-quick's order: ``PreUp`` first, then the endpoints resolved (``wg
setconf``) and the automatic MTU worked out (``set_mtu_up``) — a ``PreUp`` may make what they
need (a route to the peers, a name in /etc/hosts) — and a failure after ``PreUp`` leaves
nothing of tunflow's behind; in throw-away namespaces, as separate processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Up
from tunflow import testing
from tunflow.wireguard import genkey, pubkey

pytestmark = pytest.mark.needs_root

UA, UB = "192.168.94.1", "192.168.94.2"
#: b's address that a reaches only through the route a PreUp adds
FAR = "10.94.9.2"
TUNFLOW = [sys.executable, "-m", "tunflow.cli"]


def conf(tmp_path: Path, endpoint: str, extra: str) -> Path:
    """A file with no MTU line, a peer at ``endpoint``, and ``extra`` [Interface] lines."""
    path = tmp_path / f"{testing.unique_name('ord')}.conf"
    path.write_text(
        f"[Interface]\nPrivateKey = {genkey()}\nAddress = 10.94.0.1/24\n{extra}\n"
        f"[Peer]\nPublicKey = {pubkey(genkey())}\nAllowedIPs = 10.94.0.2/32\n"
        f"Endpoint = {endpoint}\n"
    )
    return path


def up_fails(ns: testing.Netns, path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``tunflow up path`` in ``ns``, expected to exit; stopped (SIGTERM) if it comes up."""
    proc = ns.popen(
        [*TUNFLOW, "up", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"it came up: {out}{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def nothing_left(ns: testing.Netns, name: str) -> None:
    """No link, control socket, pid file nor journal of ``name``."""
    assert ns.run("ip", "link", "show", name, check=False).returncode != 0
    assert not Path(f"/var/run/wireguard/{name}.sock").exists()
    assert not Path(f"/run/tunflow/{name}.pid").exists()
    assert not Path(f"/run/tunflow/{name}.undo").exists()


def test_the_automatic_mtu_follows_the_route_pre_up_adds(tmp_path: Path) -> None:
    # the peer is reachable only through the 1400-byte veth once PreUp routes it there:
    # wg-quick's set_mtu_up (after PreUp) gives 1400 - 80; before PreUp there is no route
    # to it nor default route (1500 - 80)
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24", mtu=1400)
        b.run("ip", "addr", "add", f"{FAR}/32", "dev", "lo")
        path = conf(tmp_path, f"{FAR}:51820", f"PreUp = ip route add {FAR}/32 via {UB}\n")
        with Up(a, path):
            assert a.ip_json("link", "show", "dev", path.stem)[0]["mtu"] == 1320


def test_an_endpoint_name_pre_up_puts_in_the_hosts_file_resolves(tmp_path: Path) -> None:
    # run with a hosts file of its own (a mount namespace): PreUp adds the peer's name to it,
    # as it may start a resolver or bring up the uplink to the DNS; wg-quick's `wg setconf`
    # looks the name up after PreUp
    host = f"{testing.unique_name('per')}.test"
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24")
        path = conf(tmp_path, f"{host}:51820", f"PreUp = echo '{UB} {host}' >> /etc/hosts\n")
        up = Up(a, path, env={**os.environ, "WG_ENDPOINT_RESOLUTION_RETRIES": "0"})
        command = 'mount --bind "$0" /etc/hosts && exec "$@"'
        up.argv = a.cmd("unshare", "-m", "sh", "-c", command, str(hosts), *up.argv[4:])
        with up:
            shown = a.run(*TUNFLOW, "show", path.stem).stdout
            assert f"endpoint: {UB}:51820" in shown, shown


def test_an_endpoint_that_does_not_resolve_after_pre_up_leaves_nothing(tmp_path: Path) -> None:
    # wg-quick's error path after PreUp (its EXIT trap: del_if) runs neither PreDown nor
    # PostDown; nothing of tunflow's is left, and the message names the endpoint
    ran = tmp_path / "ran"
    hooks = "".join(f"{h} = echo {h} >> {ran}\n" for h in ("PreUp", "PreDown", "PostDown"))
    path = conf(tmp_path, f"{testing.unique_name('nx')}.invalid:51820", hooks)
    with testing.netns(enter=False) as a:
        done = up_fails(a, path, WG_ENDPOINT_RESOLUTION_RETRIES="0")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "does not resolve" in done.stderr and str(path) in done.stderr, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert ran.read_text() == "PreUp\n"
        nothing_left(a, path.stem)


def test_an_automatic_mtu_refused_after_pre_up_leaves_nothing(tmp_path: Path) -> None:
    # the route PreUp adds gives 1300 - 80 = 1220, below what IPv6 takes: refused once it is
    # known (after PreUp, where wg-quick works it out), and nothing of tunflow's is left
    ran = tmp_path / "ran"
    hooks = "".join(f"{h} = echo {h} >> {ran}\n" for h in ("PreDown", "PostDown"))
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24", mtu=1300)
        b.run("ip", "addr", "add", f"{FAR}/32", "dev", "lo")
        extra = f"Address = fd94::1/64\nPreUp = ip route add {FAR}/32 via {UB}\n{hooks}"
        path = conf(tmp_path, f"{FAR}:51820", extra)
        done = up_fails(a, path)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "1220" in done.stderr and f"the route to {FAR}" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert not ran.exists()
        nothing_left(a, path.stem)


def test_a_failure_once_the_interface_is_made_leaves_nothing(tmp_path: Path) -> None:
    # resolvconf refuses the DNS record after the device, its default route through fwmark
    # rules and nftables tables are made: all of it goes, PreDown and PostDown do not run
    ran = tmp_path / "ran"
    hooks = "".join(f"{h} = echo {h} >> {ran}\n" for h in ("PreUp", "PreDown", "PostDown"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "resolvconf"
    fake.write_text('#!/bin/sh\ncat >/dev/null\necho "resolvconf: no" >&2\nexit 1\n')
    fake.chmod(0o755)
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24")
        path = conf(tmp_path, f"{UB}:51820", f"DNS = 10.94.0.53\n{hooks}")
        path.write_text(path.read_text().replace("10.94.0.2/32", "0.0.0.0/0, ::/0"))
        done = up_fails(a, path, PATH=f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        assert done.returncode != 0, done.stdout + done.stderr
        assert "resolvconf -a" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert ran.read_text() == "PreUp\n"
        nothing_left(a, path.stem)
        for family in ("-4", "-6"):
            rules = a.run("ip", family, "rule", "show").stdout
            assert "fwmark" not in rules and "suppress_prefixlength" not in rules, rules
            routes = a.run("ip", family, "route", "show", "table", "all").stdout
            assert path.stem not in routes and "table 51820" not in routes, routes
        assert path.stem not in a.run("nft", "list", "tables", check=False).stdout


def test_post_up_and_pre_down_may_ask_the_interface(tmp_path: Path) -> None:
    # wg-quick(8)'s own example is `PostUp = wg set %i private-key <(…)`: the hooks ran on the
    # event loop that serves the control socket, so one that asked it waited for ever (here:
    # until its timeout)
    show = f"timeout 10 {sys.executable} -m tunflow.cli show %i"
    extra = "".join(f"{h} = {show} > {tmp_path / h}\n" for h in ("PostUp", "PreDown"))
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24")
        path = conf(tmp_path, f"{UB}:51820", extra)
        up = Up(a, path)
        with up:
            assert f"interface: {path.stem}" in (tmp_path / "PostUp").read_text()
        assert up.returncode == 0, up.out
        assert f"interface: {path.stem}" in (tmp_path / "PreDown").read_text(), up.out
