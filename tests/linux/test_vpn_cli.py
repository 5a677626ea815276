"""``tunflow up``/``down``/``show``/``genkey``/``pubkey`` end to end, and ``wg show``/``wg set``
against an interface ``tunflow up`` runs — in two network namespaces, as separate processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Up, reload_cli, uapi_get
from tunflow import testing
from tunflow.wireguard import genkey, pubkey

pytestmark = pytest.mark.needs_root

UA, UB = "192.168.95.1", "192.168.95.2"
OA, OB = "10.95.0.1", "10.95.0.2"
TUNFLOW = [sys.executable, "-m", "tunflow.cli"]
HAVE_WG = shutil.which("wg") is not None
HAVE_NFT = shutil.which("nft") is not None


def conf(
    path: Path, key: str, peer_pub: str, me: str, peer: str, endpoint: str, extra: str = ""
) -> Path:
    path.write_text(
        f"[Interface]\nPrivateKey = {key}\nListenPort = 51820\nAddress = {me}/24\n\n"
        f"[Peer]\nPublicKey = {peer_pub}\nAllowedIPs = {peer}/32\nEndpoint = {endpoint}:51820\n"
        f"{extra}"
    )
    return path


@pytest.fixture
def configs(tmp_path: Path) -> Iterator[tuple[testing.Netns, testing.Netns, Path, Path]]:
    ka, kb = genkey(), genkey()
    a_name, b_name = testing.unique_name("cla"), testing.unique_name("clb")
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24")
        ca = conf(tmp_path / f"{a_name}.conf", ka, pubkey(kb), OA, OB, UB)
        cb = conf(tmp_path / f"{b_name}.conf", kb, pubkey(ka), OB, OA, UA)
        yield a, b, ca, cb


def with_interface_keys(path: Path, lines: str, base: str | None = None) -> None:
    """Write ``path`` (or ``base`` text) with ``lines`` added to its [Interface] section."""
    text = path.read_text() if base is None else base
    path.write_text(text.replace("[Peer]", f"{lines}\n\n[Peer]", 1))


def ping(ns: testing.Netns, address: str, count: int = 2) -> None:
    done = ns.run("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "3", address, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_genkey_pubkey_genpsk_match_wg() -> None:
    key = subprocess.run([*TUNFLOW, "genkey"], capture_output=True, text=True, check=True).stdout
    assert len(key.strip()) == 44
    ours = subprocess.run(
        [*TUNFLOW, "pubkey"], input=key, capture_output=True, text=True, check=True
    ).stdout
    if HAVE_WG:
        theirs = subprocess.run(
            ["wg", "pubkey"], input=key, capture_output=True, text=True, check=True
        ).stdout
        assert ours == theirs
    psk = subprocess.run([*TUNFLOW, "genpsk"], capture_output=True, text=True, check=True).stdout
    assert len(psk.strip()) == 44 and psk != key
    bad = subprocess.run([*TUNFLOW, "pubkey"], input="nope", capture_output=True, text=True)
    assert bad.returncode == 2 and "private key" in bad.stderr
    # not UTF-8, read where stdin decodes strictly: a bad key, not a UnicodeDecodeError
    strict = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    bad8 = subprocess.run([*TUNFLOW, "pubkey"], input=b"\xff\xfe", capture_output=True, env=strict)
    assert (
        bad8.returncode == 2 and b"private key" in bad8.stderr and b"Traceback" not in bad8.stderr
    )


def test_up_ping_show_down(configs: tuple[testing.Netns, testing.Netns, Path, Path]) -> None:
    a, b, ca, cb = configs
    with Up(a, ca) as up_a, Up(b, cb) as up_b:
        ping(a, OB)
        ping(b, OA)
        assert "device offload writes only" in up_a.out, up_a.out
        # routes and addresses as wg-quick sets them
        assert f"{OA}/24" in a.run("ip", "-br", "addr", "show", up_a.name).stdout
        # the peer's 10.95.0.2/32 is inside the address's prefix route: none of its own
        assert routes_via(a, up_a.name) == {("10.95.0.0/24", "kernel")}
        assert "mtu 1420" in a.run("ip", "link", "show", up_a.name).stdout
        shown = a.run(*TUNFLOW, "show", up_a.name).stdout
        assert f"interface: {up_a.name}" in shown and "latest handshake" in shown
        # tunflow down: SIGTERM to the process from its pid file, wait until it is gone
        down = a.run(*TUNFLOW, "down", up_a.name, check=False)
        assert down.returncode == 0, down.stderr
        assert up_a.proc is not None and up_a.proc.wait(10) == 0
        assert a.run("ip", "link", "show", up_a.name, check=False).returncode != 0
        assert not Path(f"/var/run/wireguard/{up_a.name}.sock").exists()
        assert not Path(f"/run/tunflow/{up_a.name}.pid").exists()
        assert up_b.stop(signal.SIGINT) == 0  # a clean stop on SIGINT too
    up_a.stop()
    assert re.search(r"down \(SIGTERM\): \d+ messages in", up_a.out), up_a.out
    assert "down (SIGINT)" in up_b.out


def test_daemon_and_down(configs: tuple[testing.Netns, testing.Netns, Path, Path]) -> None:
    a, b, ca, cb = configs
    # the daemon's log outlives it on purpose (for whoever debugs it); the test cleans up
    log_path = Path(f"/run/tunflow/{ca.stem}.log")
    last_log = Path(f"{log_path}.1")
    log_path.write_text("the log of an earlier run\n")
    try:
        started = a.run(*TUNFLOW, "up", str(ca), "--daemon")
        try:
            assert "up in the background" in started.stdout
            with Up(b, cb):
                ping(b, OA)
            # its READY=1 after a reload has nobody to go to (the parent left): not a warning
            reloaded = a.run(*TUNFLOW, "reload", ca.stem, check=False)
            assert reloaded.returncode == 0, reloaded.stderr
        finally:
            down = a.run(*TUNFLOW, "down", str(ca), check=False)  # the file works as a name too
            log = log_path.read_text() if log_path.exists() else ""
            # the earlier run's log is kept beside it, not written over (after a crash it
            # tells why)
            last = last_log.read_text() if last_log.exists() else ""
    finally:
        log_path.unlink(missing_ok=True)
        last_log.unlink(missing_ok=True)
    assert down.returncode == 0, down.stderr
    # READY=1 went to `up --daemon`, which then left: no complaint about STOPPING=1 after it
    assert f"{ca.stem} down (SIGTERM)" in log and "cannot notify" not in log, log
    assert last == "the log of an earlier run\n"
    assert a.run("ip", "link", "show", ca.stem, check=False).returncode != 0
    again = a.run(*TUNFLOW, "down", ca.stem, check=False)
    assert again.returncode == 1 and "no interface" in again.stderr


def test_two_daemons_started_at_once_leave_the_running_ones_log_in_place(
    configs: tuple[testing.Netns, testing.Netns, Path, Path],
) -> None:
    """Two `up --daemon` of one name at the same time: one comes up, the other is refused —
    and the log of the one that runs stays `<name>.log`. The refused one used to move that
    live log aside as "the last run's" (`.log.1`) before its child found the name taken."""
    a, _, ca, _ = configs
    name = ca.stem
    log_path = Path(f"/run/tunflow/{name}.log")
    last_log = Path(f"{log_path}.1")
    try:
        starts = [
            subprocess.Popen(
                a.cmd(*TUNFLOW, "up", str(ca), "--daemon"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        done = [p.communicate(timeout=60) for p in starts]
        codes = sorted(p.returncode for p in starts)
        assert codes[0] == 0 and codes[1] != 0, done
        refused = next(err for (_, err), p in zip(done, starts, strict=True) if p.returncode)
        assert "is up already" in refused, done
        log = log_path.read_text()
        assert f"{name} up: listening" in log, (log, last_log.read_text(errors="replace"))
    finally:
        a.run(*TUNFLOW, "down", name, check=False)
        log_path.unlink(missing_ok=True)
        last_log.unlink(missing_ok=True)


def test_up_tells_systemd_when_it_is_ready_and_when_it_stops(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    # Type=notify: READY=1 (with MAINPID) on $NOTIFY_SOCKET once the interface is up,
    # STOPPING=1 when it starts going down; the hooks do not inherit the variable
    a, _, ca, _ = configs
    seen = tmp_path / "seen-by-postup"
    with_interface_keys(ca, f'PostUp = echo "${{NOTIFY_SOCKET:-unset}}" > {seen}')
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(address)
        manager.settimeout(20)
        with Up(a, ca, env={**os.environ, "NOTIFY_SOCKET": address}) as up_a:
            assert up_a.proc is not None
            ready = dict(line.split("=", 1) for line in manager.recv(4096).decode().split("\n"))
            assert ready["READY"] == "1" and ready["MAINPID"] == str(up_a.proc.pid), ready
            assert "listening on UDP 51820" in ready["STATUS"]
            assert a.run("ip", "link", "show", up_a.name, check=False).returncode == 0
            assert seen.read_text().strip() == "unset"
            assert up_a.stop() == 0
        stopping = manager.recv(4096).decode().split("\n")
    assert stopping == ["STOPPING=1", "STATUS=going down (SIGTERM)"]
    # no manager listening any more: the interface still comes up (a warning, not a failure)
    with Up(a, ca, env={**os.environ, "NOTIFY_SOCKET": address}) as up_a:
        assert up_a.stop() == 0
    assert "cannot notify the service manager (READY=1)" in up_a.out, up_a.out
    assert "(STOPPING=1)" not in up_a.out  # at debug level: who listens is gone anyway


def test_sighup_reloads_the_file_as_wg_syncconf(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    a, b, ca, cb = configs
    address = str(tmp_path / "notify")
    third = pubkey(genkey())
    plain = ca.read_text()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(address)
        manager.settimeout(20)
        env = {**os.environ, "NOTIFY_SOCKET": address}
        with Up(a, ca, env=env) as up_a, Up(b, cb):
            assert up_a.proc is not None
            assert manager.recv(4096).startswith(b"READY=1")
            ping(a, OB)
            before = uapi_get(up_a.name)
            handshake = before.peers[0].last_handshake_time_sec
            assert handshake and before.listen_port == 51820

            def reload() -> list[str]:
                assert up_a.proc is not None
                up_a.proc.send_signal(signal.SIGHUP)
                reloading = manager.recv(4096).decode().split("\n")
                assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
                return manager.recv(4096).decode().split("\n")

            # a peer added, B's AllowedIPs widened; ListenPort removed from the file: kept
            ca.write_text(
                plain.replace("ListenPort = 51820\n", "").replace(
                    f"{OB}/32", f"{OB}/32, 10.96.0.0/24"
                )
                + f"\n[Peer]\nPublicKey = {third}\nAllowedIPs = 10.97.0.0/24\n"
            )
            # and, unlike wg syncconf, their routes (test_a_reload_makes_the_routes_follow_...)
            routes = "routes added 10.96.0.0/24, 10.97.0.0/24"
            assert reload() == ["READY=1", f"STATUS=reloaded, 2 peer(s); {routes}"]
            after = uapi_get(up_a.name)
            assert [p.public_key.to_base64() for p in after.peers][1] == third
            assert [str(n) for n in after.peers[0].allowed_ips] == [f"{OB}/32", "10.96.0.0/24"]
            assert after.listen_port == 51820
            ping(a, OB)  # on the session it had: no new handshake
            assert uapi_get(up_a.name).peers[0].last_handshake_time_sec == handshake
            # a file that no longer parses: nothing changes, the interface keeps running
            ca.write_text(plain + "\n[Peer]\nPublicKey = nope\n")
            status = reload()
            assert status[0] == "READY=1" and status[1].startswith("STATUS=reload refused"), status
            assert len(uapi_get(up_a.name).peers) == 2
            ping(a, OB)
            # `tunflow reload` does the same and says how it went
            refused = a.run(*TUNFLOW, "reload", up_a.name, check=False)
            assert refused.returncode == 1, refused
            assert f"{up_a.name}: reload refused, nothing changed: " in refused.stderr
            ca.write_text(plain)  # the third peer gone again
            done = a.run(*TUNFLOW, "reload", str(ca), check=False)  # the file names it too
            assert done.returncode == 0, done.stderr
            routes = "routes removed 10.96.0.0/24, 10.97.0.0/24"
            assert done.stdout == f"{up_a.name} reloaded: 1 peer(s); {routes}\n"
            assert len(uapi_get(up_a.name).peers) == 1
            assert up_a.stop() == 0
    assert "reload refused, nothing changed" in up_a.out, up_a.out
    gone = a.run(*TUNFLOW, "reload", up_a.name, check=False)
    assert gone.returncode == 1 and "is not up" in gone.stderr
    assert not Path(f"/run/tunflow/{up_a.name}.reloaded").exists()


# -- routes following a reload ----------------------------------------------------------------


def reload_files(tmp_path: Path, tag: str, interface: str = "") -> tuple[str, Path, str, str]:
    """For the reload tests: an interface name, its file's path, the file's ``[Interface]``
    section (address 10.93.0.1/24, plus ``interface`` lines) and a ``[Peer]`` head (a new key,
    no AllowedIPs yet), for the test to write and rewrite."""
    name = testing.unique_name(tag)
    head = f"[Interface]\nPrivateKey = {genkey()}\nAddress = 10.93.0.1/24\n{interface}\n"
    return name, tmp_path / f"{name}.conf", head, f"[Peer]\nPublicKey = {pubkey(genkey())}\n"


def routes_via(ns: testing.Netns, dev: str) -> set[tuple[str, str]]:
    """The main table's routes out of ``dev`` (IPv4 and IPv6, link-local left out), as
    ``(destination, protocol)``: ``("10.93.0.0/24", "kernel")``, ``("10.93.1.0/24", "static")``.
    """
    found = ns.ip_json("-4", "route", "show", "dev", dev) + ns.ip_json(
        "-6", "route", "show", "dev", dev
    )
    return {(r["dst"], r["protocol"]) for r in found if not r["dst"].startswith("fe80:")}


def test_a_reload_makes_the_routes_follow_the_allowed_ips(tmp_path: Path) -> None:
    # Unlike `wg syncconf`, `tunflow reload` routes the prefixes a reload adds into the device
    # and removes the routes it made for prefixes gone — never the kernel's own prefix route of
    # an address (IPv4, or IPv6 with its other metric), even when AllowedIPs named it.
    ka, kb = genkey(), genkey()
    an, bn = testing.unique_name("rra"), testing.unique_name("rrb")
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24")
        # behind B, beyond A's on-link 10.93.0.0/24: reached only by a route into the tunnel
        for far in ("10.93.1.1/32", "10.93.2.1/32"):
            b.run("ip", "addr", "add", far, "dev", "lo")
        ca, cb = tmp_path / f"{an}.conf", tmp_path / f"{bn}.conf"
        head = (
            f"[Interface]\nPrivateKey = {ka}\nAddress = 10.93.0.1/24, fd93::1/64\n\n"
            f"[Peer]\nPublicKey = {pubkey(kb)}\nEndpoint = {UB}:51820\n"
        )
        third = (
            f"\n[Peer]\nPublicKey = {pubkey(genkey())}\nAllowedIPs = 10.93.3.0/24, fd93:3::/64\n"
        )
        ca.write_text(head + "AllowedIPs = 10.93.1.0/24\n")
        conf(cb, kb, pubkey(ka), "10.93.0.2", "10.93.0.1", UA)
        with Up(a, ca), Up(b, cb):
            on_link = {("10.93.0.0/24", "kernel"), ("fd93::/64", "kernel")}
            assert routes_via(a, an) == on_link | {("10.93.1.0/24", "static")}
            ping(a, "10.93.1.1")
            # widened, a peer added, and the interface's own prefixes named too
            ca.write_text(
                head + "AllowedIPs = 10.93.1.0/24, 10.93.2.0/24, 10.93.0.0/24, fd93::/64\n" + third
            )
            assert reload_cli(a, an) == (
                f"{an} reloaded: 2 peer(s); routes added 10.93.2.0/24, 10.93.3.0/24, fd93:3::/64\n"
            )
            assert routes_via(a, an) == on_link | {
                ("10.93.1.0/24", "static"),
                ("10.93.2.0/24", "static"),
                ("10.93.3.0/24", "static"),
                ("fd93:3::/64", "static"),
            }
            ping(a, "10.93.2.1")  # through the new route, into the tunnel, to B
            # a prefix removed, the third peer gone, the own prefixes no longer named
            ca.write_text(head + "AllowedIPs = 10.93.2.0/24\n")
            assert reload_cli(a, an) == (
                f"{an} reloaded: 1 peer(s); routes removed 10.93.1.0/24, 10.93.3.0/24, "
                "fd93:3::/64\n"
            )
            assert routes_via(a, an) == on_link | {("10.93.2.0/24", "static")}
            ping(a, "10.93.2.1")
            # the same file again: nothing to say about routes
            assert reload_cli(a, an) == f"{an} reloaded: 1 peer(s)\n"


def test_a_reload_answers_with_every_route_it_changed(tmp_path: Path) -> None:
    # the answer to `tunflow reload` was cut where systemd's STATUS= is (512 characters, "…"):
    # a reload that routes 60 prefixes says all 60
    ka, kb = genkey(), genkey()
    an = testing.unique_name("rla")
    with testing.netns(enter=False) as a:
        ca = tmp_path / f"{an}.conf"
        head = (
            f"[Interface]\nPrivateKey = {ka}\nAddress = 10.95.0.1/24\n\n"
            f"[Peer]\nPublicKey = {pubkey(kb)}\nEndpoint = 192.0.2.1:51820\n"
        )
        ca.write_text(head + "AllowedIPs = 10.96.0.0/24\n")
        with Up(a, ca):
            prefixes = [f"10.96.{i}.0/24" for i in range(1, 61)]
            ca.write_text(head + "AllowedIPs = 10.96.0.0/24, " + ", ".join(prefixes) + "\n")
            said = reload_cli(a, an)
            assert said == f"{an} reloaded: 1 peer(s); routes added {', '.join(prefixes)}\n"
            assert len(said) > 600
            assert len(routes_via(a, an)) == 62  # the on-link prefix, 10.96.0.0/24 and the 60


def test_no_route_for_a_prefix_the_interface_has_a_route_for_as_wg_quick(
    tmp_path: Path,
) -> None:
    # wg-quick's add_route: `ip route show dev IFACE match PREFIX` finding a route (the prefix
    # route of the interface's Address) means no route of its own for a peer's address inside
    # it, IPv4 and IPv6 alike; `up` and a reload both, and a reload removes only what it added
    name, path, head, peer = reload_files(tmp_path, "rrm")
    head = head.replace("10.93.0.1/24", "10.93.0.1/24, fd93::1/64")
    peer += "AllowedIPs = 10.93.0.2/32, fd93::2/128, 10.93.0.0/24, 10.93.1.0/24"
    path.write_text(head + peer + "\n")
    on_link = {("10.93.0.0/24", "kernel"), ("fd93::/64", "kernel")}
    with testing.netns(enter=False) as ns, Up(ns, path):
        assert routes_via(ns, name) == on_link | {("10.93.1.0/24", "static")}
        path.write_text(head + peer + ", 10.93.0.3/32, fd93::3/128, 10.93.1.7/32, 10.93.8.0/22\n")
        # 10.93.1.7/32 is inside a route made here: a fresh `up` (longest prefixes first) adds it
        assert (
            reload_cli(ns, name)
            == f"{name} reloaded: 1 peer(s); routes added 10.93.1.7/32, 10.93.8.0/22\n"
        )
        path.write_text(head + peer + ", 10.93.9.0/24\n")
        assert reload_cli(ns, name) == (
            f"{name} reloaded: 1 peer(s); routes added 10.93.9.0/24; "
            "routes removed 10.93.1.7/32, 10.93.8.0/22\n"
        )
        assert routes_via(ns, name) == on_link | {
            ("10.93.1.0/24", "static"),
            ("10.93.9.0/24", "static"),
        }


@pytest.mark.parametrize("how", ["Table = off", "--no-routes"])
def test_a_reload_adds_no_routes_where_up_added_none(tmp_path: Path, how: str) -> None:
    table = f"{how}\n" if how.startswith("Table") else ""
    name, path, head, peer = reload_files(tmp_path, "rro", table)
    peer += "AllowedIPs = "
    path.write_text(head + peer + "10.93.1.0/24\n")
    with testing.netns(enter=False) as ns, Up(ns, path, *([how] if how.startswith("--") else [])):
        assert routes_via(ns, name) == {("10.93.0.0/24", "kernel")}
        path.write_text(head + peer + "10.93.1.0/24, 10.93.2.0/24\n")
        assert reload_cli(ns, name) == f"{name} reloaded: 1 peer(s)\n"
        assert routes_via(ns, name) == {("10.93.0.0/24", "kernel")}


def test_without_mtu_the_interface_gets_wg_quicks(tmp_path: Path) -> None:
    # wg-quick gives a file without MTU 80 below the MTU of the path to the peers (else of the
    # default route's link, else 1500); tunflow always took 1420 — over a 1400-byte underlay
    # the tunnel's datagrams were then IP-fragmented (lost where fragments are dropped)
    key, peer = genkey(), pubkey(genkey())
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        va, _ = testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24", mtu=1400)
        path = tmp_path / f"{testing.unique_name('mtu')}.conf"
        head = f"[Interface]\nPrivateKey = {key}\nAddress = {OA}/24\n"
        tail = f"[Peer]\nPublicKey = {peer}\nAllowedIPs = {OB}/32\n"
        for interface, peer_lines, mtu in (
            ("", f"Endpoint = {UB}:51820\n", 1320),  # the route to the endpoint: the veth
            ("MTU = 1380\n", f"Endpoint = {UB}:51820\n", 1380),  # the file's
            ("", "", 1420),  # no endpoint, no default route: 1500 - 80
        ):
            path.write_text(head + interface + tail + peer_lines)
            with Up(a, path):
                assert a.ip_json("link", "show", "dev", path.stem)[0]["mtu"] == mtu
        # a route's own mtu counts over its link's (`ip route … mtu N`, a PMTU learnt)
        a.run("ip", "route", "add", "192.0.2.0/24", "via", UB, "dev", va, "mtu", "1300")
        path.write_text(head + tail + "Endpoint = 192.0.2.7:51820\n")
        with Up(a, path):
            assert a.ip_json("link", "show", "dev", path.stem)[0]["mtu"] == 1220


def test_fwmark_off_in_the_file_clears_the_mark_on_a_reload(tmp_path: Path) -> None:
    # a file without FwMark keeps the running mark (docs/vpn.md); `FwMark = off` clears it, as
    # wg syncconf does — the parser read both as 0, and the reload kept the mark
    name, path, head, peer = reload_files(tmp_path, "rfm", "Table = off\nFwMark = 0x1234")
    path.write_text(head + peer)
    with testing.netns(enter=False) as ns, Up(ns, path):
        assert uapi_get(name).fwmark == 0x1234
        path.write_text(head.replace("FwMark = 0x1234", "") + peer)
        assert reload_cli(ns, name) == f"{name} reloaded: 1 peer(s)\n"
        assert uapi_get(name).fwmark == 0x1234
        path.write_text(head.replace("0x1234", "off") + peer)
        assert reload_cli(ns, name) == f"{name} reloaded: 1 peer(s)\n"
        assert uapi_get(name).fwmark == 0


def test_a_reload_names_what_changed_in_the_file_that_it_does_not_apply(
    tmp_path: Path,
) -> None:
    # a new Address, MTU or Table in the file was dropped without a word: the reload said
    # "reloaded" and the interface kept the old ones
    name, path, head, peer = reload_files(tmp_path, "rna", "Table = off")
    path.write_text(head + peer)
    with testing.netns(enter=False) as ns, Up(ns, path):
        path.write_text(
            head.replace("10.93.0.1/24", "10.93.5.1/24").replace("Table = off", "MTU = 1300") + peer
        )
        assert reload_cli(ns, name) == (
            f"{name} reloaded: 1 peer(s); not applied (restart for them): Address, MTU, Table\n"
        )
        assert ns.ip_json("-4", "addr", "show", "dev", name)[0]["addr_info"][0]["local"] == (
            "10.93.0.1"
        )
        path.write_text(head + peer)  # as it came up: nothing to say
        assert reload_cli(ns, name) == f"{name} reloaded: 1 peer(s)\n"


def test_routes_come_with_a_reload_when_up_had_no_allowed_ips(tmp_path: Path) -> None:
    # `up` with a peer without AllowedIPs made no routes at all; a reload giving some must
    # still route them (and take them away again)
    name, path, head, peer = reload_files(tmp_path, "rrn")
    path.write_text(head + peer)
    with testing.netns(enter=False) as ns, Up(ns, path):
        assert routes_via(ns, name) == {("10.93.0.0/24", "kernel")}
        path.write_text(head + peer + "AllowedIPs = 10.93.1.0/24\n")
        assert reload_cli(ns, name) == f"{name} reloaded: 1 peer(s); routes added 10.93.1.0/24\n"
        assert routes_via(ns, name) == {("10.93.0.0/24", "kernel"), ("10.93.1.0/24", "static")}
        path.write_text(head + peer)
        assert reload_cli(ns, name) == f"{name} reloaded: 1 peer(s); routes removed 10.93.1.0/24\n"
        assert routes_via(ns, name) == {("10.93.0.0/24", "kernel")}


def test_a_default_route_comes_and_goes_with_a_reload(tmp_path: Path) -> None:
    # Table = auto: a default route a reload adds gets what `up` would have given it — the
    # policy table, its two rules, and (no FwMark) the table as the fwmark; a reload dropping
    # it takes route and rules away again, and leaves the fwmark
    name, path, head, peer = reload_files(tmp_path, "rrd")
    peer += "AllowedIPs = 10.93.1.0/24"
    path.write_text(head + peer + "\n")
    with testing.netns(enter=False) as ns, Up(ns, path) as up:
        rules = ns.run("ip", "-4", "rule", "show").stdout
        path.write_text(head + peer + ", 0.0.0.0/0\n")
        assert reload_cli(ns, name) == f"{name} reloaded: 1 peer(s); routes added 0.0.0.0/0\n"
        shown = ns.run("ip", "-4", "rule", "show").stdout
        assert "not from all fwmark 0xca6c lookup 51820" in shown, shown
        assert "from all lookup main suppress_prefixlength 0" in shown, shown
        (route,) = ns.ip_json("-4", "route", "show", "table", "all", "default")
        assert (route["dev"], route["table"]) == (name, "51820")
        assert uapi_get(name).fwmark == 51820
        path.write_text(head + peer + "\n")
        assert reload_cli(ns, name) == f"{name} reloaded: 1 peer(s); routes removed 0.0.0.0/0\n"
        assert ns.run("ip", "-4", "rule", "show").stdout == rules
        assert ns.ip_json("-4", "route", "show", "table", "all", "default") == []
        assert uapi_get(name).fwmark == 51820  # left, as wg-quick leaves it
        assert up.stop() == 0
    assert "default routes in table 51820, which is the fwmark now" in up.out, up.out


def test_a_default_route_the_kernel_refuses_leaves_no_rules(tmp_path: Path) -> None:
    # the FwMark's table holds a default route already: the reload stands (the peer's new
    # AllowedIPs), the refusal is said, and the rules added before the route are gone again;
    # once the table is free the same file brings it
    name, path, head, peer = reload_files(tmp_path, "rrf", "FwMark = 4242\n")
    peer += "AllowedIPs = 10.93.1.0/24"
    path.write_text(head + peer + "\n")
    with testing.netns(enter=False) as ns, Up(ns, path) as up:
        rules = ns.run("ip", "-4", "rule", "show").stdout
        ns.run("ip", "route", "add", "blackhole", "default", "table", "4242")
        path.write_text(head + peer + ", 0.0.0.0/0\n")
        said = reload_cli(ns, name)
        assert said.startswith(f"{name} reloaded: 1 peer(s); routes refused: add 0.0.0.0/0: "), said
        assert "already in table 4242" in said, said
        shown = [str(n) for n in uapi_get(name).peers[0].allowed_ips]
        assert shown == ["10.93.1.0/24", "0.0.0.0/0"]
        assert ns.run("ip", "-4", "rule", "show").stdout == rules
        assert not Path(f"/run/tunflow/{name}.undo").exists()
        ns.run("ip", "route", "del", "blackhole", "default", "table", "4242")
        assert reload_cli(ns, name) == f"{name} reloaded: 1 peer(s); routes added 0.0.0.0/0\n"
        assert "not from all fwmark 0x1092 lookup 4242" in ns.run("ip", "-4", "rule").stdout
        assert uapi_get(name).fwmark == 4242
        assert up.stop() == 0
    assert "cannot add the default route 0.0.0.0/0" in up.out, up.out


def test_a_route_the_kernel_refuses_leaves_the_reload_applied(tmp_path: Path) -> None:
    # IPv6 off on the device: the kernel refuses a route into it (EACCES). The peer is applied
    # all the same, the IPv4 route added, and the refusal is said (not an error).
    name, path, head, peer = reload_files(tmp_path, "rrk")
    peer += "AllowedIPs = 10.93.1.0/24"
    path.write_text(head + peer + "\n")
    with testing.netns(enter=False) as ns, Up(ns, path) as up:
        ns.run("sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1")
        path.write_text(head + peer + ", 10.93.2.0/24, fd93:2::/64\n")
        said = reload_cli(ns, name)
        assert said.startswith(
            f"{name} reloaded: 1 peer(s); routes added 10.93.2.0/24; "
            "routes refused: add fd93:2::/64: "
        ), said
        shown = [str(n) for n in uapi_get(name).peers[0].allowed_ips]
        assert shown == ["10.93.1.0/24", "10.93.2.0/24", "fd93:2::/64"]
        assert ("10.93.2.0/24", "static") in routes_via(ns, name)
        assert up.stop() == 0
    assert "cannot add a route to fd93:2::/64" in up.out, up.out


def test_hooks_on_the_way_down_do_not_inherit_ignored_signals(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    # on the way down SIGHUP and SIGUSR1 must not end tunflow up; with SIG_IGN, PreDown and
    # PostDown (and what they start) ran with both ignored — a shell cannot even reset that
    a, _, ca, _ = configs
    masks = tmp_path / "masks"
    with_interface_keys(ca, f"PostDown = grep SigIgn /proc/$$/status >> {masks}")
    with Up(a, ca) as up_a:
        assert up_a.stop() == 0
    ignored = int(masks.read_text().split()[1], 16)
    assert not ignored & (1 << (signal.SIGHUP - 1) | 1 << (signal.SIGUSR1 - 1)), hex(ignored)


def test_notify_socket_addresses() -> None:
    from tunflow.cli.vpn import _notify_address

    assert _notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert _notify_address("@/org/freedesktop/systemd1/notify") == (
        "\0/org/freedesktop/systemd1/notify"
    )
    assert _notify_address(None) is None and _notify_address("") is None
    assert _notify_address("vsock:2:1234") is None  # not spoken: no notification, no failure


def test_down_while_up_is_starting_stops_it_in_order(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    """`down` while `up` is still starting (PostUp running: its pid not written yet) waits
    until it is up, then stops it as any other: PreDown and PostDown run. It used to delete
    the half-made link under it (nothing run), or refuse with "try again" when `up` had
    journalled something."""
    a, _, ca, _ = configs
    name = ca.stem
    started, predown, postdown = (tmp_path / n for n in ("started", "predown", "postdown"))
    with_interface_keys(
        ca,
        f"PostUp = touch {started}; sleep 1\nPreDown = touch {predown}\nPostDown = touch {postdown}",
    )
    up = subprocess.Popen(
        a.cmd(*TUNFLOW, "up", str(ca)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while not started.exists():
            assert up.poll() is None and time.monotonic() < deadline, up.communicate()[0]
            time.sleep(0.02)
        down = a.run(*TUNFLOW, "down", name, check=False)
        assert down.returncode == 0, down.stdout + down.stderr
        out = up.communicate(timeout=20)[0]
        assert up.returncode == 0, out
        assert f"{name} down (SIGTERM)" in out, out
        assert predown.exists() and postdown.exists(), out
        assert a.run("ip", "link", "show", name, check=False).returncode
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        a.run(*TUNFLOW, "down", name, check=False)


def test_down_without_a_pid_file_deletes_only_a_wireguard_interface(
    configs: tuple[testing.Netns, testing.Netns, Path, Path],
) -> None:
    a, _, _, _ = configs
    veth = a.ip_json("-d", "link", "show", "type", "veth")[0]["ifname"]
    tun = testing.unique_name("tun")
    a.run("ip", "tuntap", "add", tun, "mode", "tun")
    # neither a veth nor a TUN nobody serves is a WireGuard interface: refused, as wg-quick does
    for name in (veth, tun):
        done = a.run(*TUNFLOW, "down", name, check=False)
        assert done.returncode == 1, done.stderr
        assert done.stderr == f"tunflow: {name} is not a WireGuard interface\n"
        assert a.run("ip", "link", "show", name, check=False).returncode == 0
    # a TUN with a control socket (wireguard-go's, a tunflow whose pid file is gone): deleted
    sock_path = Path(f"/var/run/wireguard/{tun}.sock")
    sock_path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(sock_path))
        try:
            done = a.run(*TUNFLOW, "down", tun, check=False)
        finally:
            sock_path.unlink()
    assert done.returncode == 0, done.stderr
    assert a.run("ip", "link", "show", tun, check=False).returncode != 0


def test_down_of_an_interface_served_in_another_namespace_says_where_to_run_it(
    configs: tuple[testing.Netns, testing.Netns, Path, Path],
) -> None:
    # the control socket directory is shared by every namespace, the link is not: the user
    # ran `down` in the wrong namespace, which "no interface" alone does not tell them
    a, _, _, _ = configs
    name = testing.unique_name("far")
    sock_path = Path(f"/var/run/wireguard/{name}.sock")
    sock_path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(sock_path))
        sock.listen()
        try:
            done = a.run(*TUNFLOW, "down", name, check=False)
        finally:
            sock_path.unlink()
    assert done.returncode == 1
    assert "in the namespace it is in" in done.stderr, done.stderr
    assert sock_path.parent.is_dir()
    gone = a.run(*TUNFLOW, "down", name, check=False)  # nobody serves it: plainly not there
    assert gone.stderr == f"tunflow: no interface {name} to take down\n"


def test_a_deleted_device_stops_tunflow_up_and_a_second_up_is_refused(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    a, b, ca, cb = configs
    marker = tmp_path / "postdown"
    with_interface_keys(ca, f"PostDown = touch {marker}")
    with Up(a, ca) as up_a, Up(b, cb):
        ping(a, OB)  # the device's reader has been woken and waits again (uvloop, the default)
        second = a.run(*TUNFLOW, "up", str(ca), check=False)
        assert second.returncode == 2, second.stderr
        assert f"{up_a.name} is up already (pid " in second.stderr
        ping(a, OB)  # the refused second run touched nothing
        a.run("ip", "link", "del", up_a.name)
        assert up_a.proc is not None
        assert up_a.proc.wait(10) == 1  # on its own: no signal
    assert "down (the device was deleted)" in up_a.out, up_a.out
    assert marker.exists()  # PostDown ran: PostUp's changes are undone
    assert not Path(f"/var/run/wireguard/{up_a.name}.sock").exists()
    assert not Path(f"/run/tunflow/{up_a.name}.pid").exists()


@pytest.mark.skipif(not HAVE_WG, reason="needs wireguard-tools (wg)")
def test_strip_for_wg_syncconf_reloads_peers_while_up(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    a, b, ca, cb = configs
    third = pubkey(genkey())
    with Up(a, ca) as up_a, Up(b, cb):
        ping(a, OB)
        # the file edited while up: one more peer (tunflow's Native key too), wider AllowedIPs
        ca.write_text(
            ca.read_text().replace(f"{OB}/32", f"{OB}/32, 10.96.0.0/24")
            + f"\n[Peer]\nPublicKey = {third}\nAllowedIPs = 10.95.0.9/32\nNative = true\n"
        )
        stripped = a.run(*TUNFLOW, "strip", str(ca)).stdout
        assert "Address" not in stripped and "Native" not in stripped
        (tmp_path / "s.conf").write_text(stripped)
        a.run("wg", "syncconf", up_a.name, str(tmp_path / "s.conf"))
        allowed = a.run("wg", "show", up_a.name, "allowed-ips").stdout
        assert f"{third}\t10.95.0.9/32" in allowed
        assert f"{OB}/32 10.96.0.0/24" in allowed
        ping(a, OB)  # the tunnel did not go down for it
    bad = a.run(*TUNFLOW, "strip", str(tmp_path / "missing.conf"), check=False)
    assert bad.returncode == 2 and "cannot read the file" in bad.stderr


def test_native_mode_from_the_command_line(
    configs: tuple[testing.Netns, testing.Netns, Path, Path],
) -> None:
    a, b, ca, cb = configs
    with Up(a, ca, "--native") as up_a, Up(b, cb, "--native"):
        assert "native fast mode" in up_a.out
        # super-packets read and written; with WireGuard peers (below) only written
        assert "device offload on" in up_a.out, up_a.out
        ping(a, OB)
        ping(b, OA)


def test_bad_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "wgbad.conf"
    bad.write_text("[Interface]\nPrivateKey = nope\n")
    done = subprocess.run([*TUNFLOW, "up", str(bad)], capture_output=True, text=True)
    assert done.returncode == 2
    assert f"{bad}: line 2: PrivateKey" in done.stderr


def test_interface_names_are_checked_as_wg_quick_checks_them(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    a, _, ca, _ = configs
    # '%d' is a kernel template (it would make <name>0 while the control socket and the pid
    # file took the name as given); 16 characters are one too many
    bad = tmp_path / f"{ca.stem[:10]}%d.conf"
    bad.write_text(ca.read_text())
    long_name = "x" * 16
    # and as wg-quick, the file must be NAME.conf: any other suffix ('wg0.txt', 'wg0.conf.bak'
    # named the interface 'wg0', 'wg0.conf'), '.conf' alone, and '.' and '..' (which the
    # kernel refuses) are not names
    others = []
    for file_name in (f"{ca.stem}.txt", f"{ca.name}.bak", ".conf", "..conf", "...conf"):
        other = tmp_path / file_name
        other.write_text(ca.read_text())
        others.append(other)
    before = {link["ifname"] for link in a.ip_json("link", "show")}
    valid = "1 to 15 of a-z A-Z 0-9 _ = + . -, not . or .."
    for argv, who in (
        (["up", str(bad)], f"{bad}: the file's name"),
        (["up", str(ca), "--name", long_name], f"'{long_name}' is"),
        (["down", str(bad)], f"{bad}: the file's name"),
        (["down", long_name], f"'{long_name}' is"),
        (["save", "wg%d"], "'wg%d' is"),
        (["strip", "wg%d"], "'wg%d' is"),
        (["down", ".."], "'..' is"),
        *((["up", str(other)], f"{other}: the file's name") for other in others),
    ):
        done = a.run(*TUNFLOW, *argv, check=False)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        if who.endswith("the file's name"):
            assert done.stderr == (
                f"tunflow: {who} must be a valid interface name followed by .conf, as for "
                f"wg-quick ({valid}: wg0.conf)\n"
            )
        else:
            assert done.stderr == f"tunflow: {who} not a valid interface name ({valid})\n"
    assert {link["ifname"] for link in a.ip_json("link", "show")} == before


@pytest.mark.interop
@pytest.mark.skipif(not HAVE_WG, reason="needs wireguard-tools")
def test_wg_show_and_set_against_tunflow_up(
    configs: tuple[testing.Netns, testing.Netns, Path, Path],
) -> None:
    a, b, ca, cb = configs
    with Up(a, ca) as up_a, Up(b, cb):
        ping(a, OB)
        shown = a.run("wg", "show", up_a.name).stdout
        assert "latest handshake" in shown and "transfer:" in shown, shown
        assert f"allowed ips: {OB}/32" in shown
        # wg set: another allowed IP and a keepalive; wg show reads them back
        a.run(
            "wg",
            "set",
            up_a.name,
            "peer",
            pubkey(_key_of(cb)),
            "allowed-ips",
            f"{OB}/32,10.95.9.0/24",
            "persistent-keepalive",
            "25",
        )
        shown = a.run("wg", "show", up_a.name).stdout
        assert "10.95.9.0/24" in shown and "every 25 seconds" in shown, shown
        dump = a.run("wg", "show", up_a.name, "dump").stdout.splitlines()
        assert dump[0].split("\t")[2] == "51820"
        assert int(dump[1].split("\t")[5]) > 0  # rx bytes
        # wg set listen-port: the interface rebinds and keeps working (the peer roams with us)
        a.run("wg", "set", up_a.name, "listen-port", "51999")
        assert "listening port: 51999" in a.run("wg", "show", up_a.name).stdout
        ping(a, OB)
        assert os.path.exists(f"/var/run/wireguard/{up_a.name}.sock")


def _give_key_back(ns: testing.Netns, name: str, key: str, tmp_path: Path) -> None:
    """Keyless, ``name`` reaches no one; ``wg set … private-key`` brings it to life."""
    lost = ns.run("ping", "-n", "-c", "1", "-W", "1", OB, check=False)
    assert lost.returncode != 0, lost.stdout
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    ns.run("wg", "set", name, "private-key", str(key_file))
    ping(ns, OB)
    assert ns.run("wg", "show", name, "private-key").stdout == key + "\n"


@pytest.mark.interop
@pytest.mark.skipif(not HAVE_WG, reason="needs wireguard-tools")
def test_wg_set_private_key_dev_null_removes_the_key_until_one_is_set(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    a, b, ca, cb = configs
    with Up(a, ca) as up_a, Up(b, cb):
        ping(a, OB)
        a.run("wg", "set", up_a.name, "private-key", "/dev/null")
        assert a.run("wg", "show", up_a.name, "private-key").stdout == "(none)\n"
        shown = a.run("wg", "show", up_a.name).stdout
        assert "public key" not in shown and "latest handshake" in shown, shown
        _give_key_back(a, up_a.name, _key_of(ca), tmp_path)


@pytest.mark.interop
@pytest.mark.skipif(not HAVE_WG, reason="needs wireguard-tools")
def test_up_of_a_file_without_private_key_runs_keyless_until_one_is_set(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    # as wg-quick takes it (what `tunflow save` writes of an interface after `wg set …
    # private-key /dev/null`): up without a key, a key set later brings it to life; a reload
    # of the file without one removes it again (wg syncconf's), one with it sets it
    a, b, ca, cb = configs
    key = _key_of(ca)
    keyed = ca.read_text()
    ca.write_text(keyed.replace(f"PrivateKey = {key}\n", ""))
    with Up(a, ca) as up_a, Up(b, cb):
        assert f"{ca} has no PrivateKey: {up_a.name} has no key" in up_a.out, up_a.out
        assert a.run("wg", "show", up_a.name, "private-key").stdout == "(none)\n"
        _give_key_back(a, up_a.name, key, tmp_path)
        reload_cli(a, up_a.name)
        assert a.run("wg", "show", up_a.name, "private-key").stdout == "(none)\n"
        ca.write_text(keyed)
        reload_cli(a, up_a.name)
        assert a.run("wg", "show", up_a.name, "private-key").stdout == key + "\n"
        ping(a, OB)


@pytest.mark.skipif(not HAVE_WG, reason="needs wireguard-tools")
def test_a_send_the_kernel_refuses_is_dropped_not_fatal(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    a, b, ca, cb = configs
    marker = tmp_path / "postdown"
    with_interface_keys(ca, f"PostDown = touch {marker}")
    with Up(a, ca) as up_a, Up(b, cb):
        ping(a, OB)
        # the subnet's broadcast address: every send to it fails with EACCES (wireguard-go
        # logs that and goes on); the keepalive turned on goes there at once, then each second
        peer = pubkey(_key_of(cb))
        a.run("wg", "set", up_a.name, "peer", peer, "endpoint", "192.168.95.255:9")
        a.run("wg", "set", up_a.name, "peer", peer, "persistent-keepalive", "1")
        time.sleep(2.5)
        assert up_a.proc is not None and up_a.proc.poll() is None, up_a.out
        a.run("wg", "set", up_a.name, "peer", peer, "endpoint", f"{UB}:51820")
        ping(a, OB)  # still up, and working
        assert up_a.stop() == 0
    assert re.search(r"UDP drops: refused \d+", up_a.out), up_a.out
    assert marker.exists()  # went down the normal way: PostDown ran


def _key_of(conf_path: Path) -> str:
    for line in conf_path.read_text().splitlines():
        if line.startswith("PrivateKey"):
            return line.split("=", 1)[1].strip()
    raise AssertionError("no key")


def test_dns_goes_to_resolvconf_while_up(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    a, b, ca, cb = configs
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "resolvconf-calls"
    # a stand-in resolvconf that records what it is given (the real one would rewrite this
    # machine's /etc/resolv.conf for the length of the test)
    fake = bin_dir / "resolvconf"
    fake.write_text(f'#!/bin/sh\n{{ echo "ARGS $*"; cat; }} >> {calls}\n')
    fake.chmod(0o755)
    with_interface_keys(ca, "DNS = 10.95.0.53, corp.example")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    with Up(a, ca, env=env) as up_a, Up(b, cb):
        ping(a, OB)
        record = "tun." if Path("/etc/resolvconf/interface-order").exists() else ""
        assert calls.read_text() == (
            f"ARGS -a {record}{up_a.name} -m 0 -x\nnameserver 10.95.0.53\nsearch corp.example\n"
        )
        assert up_a.stop() == 0
    assert calls.read_text().endswith(f"ARGS -d {record}{up_a.name} -f\n")


@pytest.mark.skipif(shutil.which("resolvconf") is not None, reason="resolvconf is installed")
def test_dns_without_resolvconf_is_refused_before_anything_is_made(
    configs: tuple[testing.Netns, testing.Netns, Path, Path],
) -> None:
    a, _, ca, _ = configs
    with_interface_keys(ca, "DNS = 10.95.0.53")
    done = a.run(*TUNFLOW, "up", str(ca), check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "needs resolvconf" in done.stderr
    assert a.run("ip", "link", "show", ca.stem, check=False).returncode != 0


@pytest.mark.skipif(not HAVE_WG, reason="needs wg (wireguard-tools)")
def test_save_config_writes_the_running_interface_back(
    configs: tuple[testing.Netns, testing.Netns, Path, Path],
) -> None:
    from tunflow.wireguard.wgquick import load_wgquick

    a, b, ca, cb = configs
    with_interface_keys(ca, "SaveConfig = true\nPostUp = true %i")
    ca.chmod(0o644)
    key_a = _key_of(ca)
    newcomer = pubkey(genkey())
    with Up(a, ca) as up_a, Up(b, cb):
        ping(a, OB)
        # changed at run time, as wg-quick users do before `wg-quick down` saves them
        a.run("wg", "set", up_a.name, "peer", pubkey(_key_of(cb)), "persistent-keepalive", "17")
        a.run("wg", "set", up_a.name, "peer", newcomer, "allowed-ips", "10.95.7.0/24")
        a.run("ip", "addr", "add", "10.96.0.1/24", "dev", up_a.name)
        assert up_a.stop() == 0
    assert "saved the configuration" in up_a.out, up_a.out
    assert ca.stat().st_mode & 0o777 == 0o600
    saved = load_wgquick(ca)
    assert saved.save_config and saved.post_up == ("true %i",)
    assert {str(x) for x in saved.addresses} == {f"{OA}/24", "10.96.0.1/24"}
    assert saved.listen_port == 51820 and saved.private_key.to_base64() == key_a
    peers = {p.public_key.to_base64(): p for p in saved.peers}
    old = peers[pubkey(_key_of(cb))]
    assert old.persistent_keepalive == 17 and old.endpoint == f"{UB}:51820"
    assert [str(n) for n in old.allowed_ips] == [f"{OB}/32"]
    assert [str(n) for n in peers[newcomer].allowed_ips] == ["10.95.7.0/24"]


@pytest.mark.skipif(not HAVE_WG, reason="needs wg (wireguard-tools)")
def test_save_writes_the_running_interface_while_it_runs(
    configs: tuple[testing.Netns, testing.Netns, Path, Path],
) -> None:
    from tunflow.wireguard.wgquick import load_wgquick

    a, b, ca, cb = configs
    newcomer = pubkey(genkey())
    with Up(a, ca) as up_a, Up(b, cb):
        a.run("wg", "set", up_a.name, "peer", newcomer, "allowed-ips", "10.95.8.0/24")
        # edited since `up`: the file is read again, so the edit is kept (as wg-quick does)
        with_interface_keys(ca, "PostUp = echo edited")
        done = a.run(*TUNFLOW, "save", up_a.name, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{up_a.name} saved to {ca}"
        saved = load_wgquick(ca)  # now, with the interface still up
        assert newcomer in {p.public_key.to_base64() for p in saved.peers}
        assert not saved.save_config  # the file had none: not added (as wg-quick save)
        assert saved.post_up == ("echo edited",)
        # a file that no longer parses is reported, not overwritten
        good = ca.read_text()
        ca.write_text(good + "Bogus = 1\n")
        broken = a.run(*TUNFLOW, "save", up_a.name, check=False)
        assert broken.returncode == 1 and "Bogus" in broken.stderr, broken.stderr
        assert ca.read_text() == good + "Bogus = 1\n"
        ca.write_text(good)
        ping(a, OB)  # still up and working after a save
        # the file cannot be written (its temporary name is taken by a directory; root
        # ignores permission bits): the error comes back, the interface stays up
        ca.with_name(ca.name + ".tmp").mkdir()
        failed = a.run(*TUNFLOW, "save", up_a.name, check=False)
        ping(a, OB)
    assert failed.returncode == 1 and "cannot save to" in failed.stderr, failed.stderr
    assert up_a.returncode == 0
    assert not Path(f"/run/tunflow/{up_a.name}.saved").exists()
    gone = a.run(*TUNFLOW, "save", up_a.name, check=False)
    assert gone.returncode == 1 and "is not up" in gone.stderr


def test_daemon_failing_to_come_up_exits_as_the_foreground_up_does(
    configs: tuple[testing.Netns, testing.Netns, Path, Path],
) -> None:
    a, _, ca, _ = configs
    with_interface_keys(ca, "PostUp = exit 3")
    try:
        failed = a.run(*TUNFLOW, "up", str(ca), "--daemon", check=False)
    finally:
        Path(f"/run/tunflow/{ca.stem}.log").unlink(missing_ok=True)
    assert failed.returncode == 2, failed.stderr  # as without --daemon (a ConfigError)
    assert "PostUp command exited 3" in failed.stderr
    assert a.run("ip", "link", "show", ca.stem, check=False).returncode


def test_save_names_the_file_whatever_the_directory_it_runs_in(
    configs: tuple[testing.Netns, testing.Netns, Path, Path],
) -> None:
    # `up` was given a relative path; `save` from another directory must not name it
    # relative to its own (where there is no such file)
    a, _, ca, _ = configs
    argv = a.cmd(*TUNFLOW, "up", ca.name, "--daemon")
    try:
        subprocess.run(argv, cwd=ca.parent, check=True, capture_output=True, text=True)
        done = subprocess.run(
            a.cmd(*TUNFLOW, "save", ca.stem), cwd="/", capture_output=True, text=True
        )
    finally:
        a.run(*TUNFLOW, "down", ca.stem, check=False)
        Path(f"/run/tunflow/{ca.stem}.log").unlink(missing_ok=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{ca.stem} saved to {ca}"


def test_hooks_signals_and_the_pid_file(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    a, _, ca, _ = configs
    plain = ca.read_text()
    name = ca.stem
    pid_file = Path(f"/run/tunflow/{name}.pid")
    # a failing PostUp: a clear message and status 2, not a traceback; nothing left behind
    with_interface_keys(ca, "PostUp = exit 3", base=plain)
    failed = a.run(*TUNFLOW, "up", str(ca), check=False)
    assert failed.returncode == 2, failed.stderr
    assert "PostUp command exited 3" in failed.stderr and "Traceback" not in failed.stderr
    assert not pid_file.exists() and a.run("ip", "link", "show", name, check=False).returncode
    # a pid file left by a killed process names a live pid that is not a tunflow serving the
    # interface (here: this test): `down` must not signal it, `up` must not be refused
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
    stale = a.run(*TUNFLOW, "down", name, check=False)
    assert stale.returncode == 0 and "removed the stale pid file" in stale.stdout, stale.stderr
    assert not pid_file.exists()
    # `save` right after `up --daemon` returns is answered; a save while the interface goes
    # down (PreDown still running) does not kill it: PostDown runs, the exit is clean
    marker = tmp_path / "postdown"
    with_interface_keys(ca, f"PreDown = sleep 1\nPostDown = touch {marker}", base=plain)
    try:
        a.run(*TUNFLOW, "up", str(ca), "--daemon")
        saved = a.run(*TUNFLOW, "save", name, check=False)
        assert saved.returncode == 0, saved.stderr
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        time.sleep(0.4)  # in PreDown now
        os.kill(pid, signal.SIGUSR1)
        deadline = time.monotonic() + 15
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = Path(f"/run/tunflow/{name}.log").read_text()
        assert f"{name} down (SIGTERM)" in log, log
        assert marker.exists(), log
        assert not pid_file.exists() and not Path(f"/var/run/wireguard/{name}.sock").exists()
    finally:
        a.run(*TUNFLOW, "down", name, check=False)
        Path(f"/run/tunflow/{name}.log").unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)


@contextlib.contextmanager
def unreachable_dns(ns: testing.Netns) -> Iterator[None]:
    """Name lookups in ``ns`` fail for now (``EAI_AGAIN``, which wg's retries follow): `ip netns
    exec` mounts /etc/netns/NS/resolv.conf for the namespace's own, here a server that refuses."""
    etc = Path("/etc/netns") / ns.name
    etc.mkdir(parents=True)
    try:
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        yield
    finally:
        shutil.rmtree(etc, ignore_errors=True)


def add_unresolvable_peer(path: Path) -> None:
    """A peer whose endpoint is a name (looked up when the file is read)."""
    path.write_text(
        path.read_text() + f"\n[Peer]\nPublicKey = {pubkey(genkey())}\nAllowedIPs = 10.97.0.0/24\n"
        "Endpoint = peer.tunflow-test.example:51820\n"
    )


@pytest.mark.parametrize("backend", ["auto", "trio"])
def test_sigterm_during_a_reload_waiting_on_dns_goes_down_at_once(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path, backend: str
) -> None:
    # A reload whose new endpoint name cannot be resolved yet (the DNS unreachable: wg's
    # retries take a minute and more) must not hold up the way down: systemd's stop timeout
    # would kill the process before it removed its policy rules, DNS and hooks' changes
    a, _, ca, _ = configs
    with unreachable_dns(a):
        address = str(tmp_path / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
            manager.bind(address)
            manager.settimeout(20)
            env = {**os.environ, "NOTIFY_SOCKET": address}
            with Up(a, ca, "--backend", backend, env=env) as up_a:
                assert up_a.proc is not None
                assert manager.recv(4096).startswith(b"READY=1")
                add_unresolvable_peer(ca)
                up_a.proc.send_signal(signal.SIGHUP)
                assert manager.recv(4096).startswith(b"RELOADING=1")
                time.sleep(0.5)  # in the resolver's retries now
                start = time.monotonic()
                status = up_a.stop()
                took = time.monotonic() - start
    assert status == 0 and took < 5, (took, up_a.out)
    assert f"{up_a.name} down (SIGTERM)" in up_a.out, up_a.out


@pytest.mark.parametrize("backend", ["auto", "trio"])
def test_ctrl_c_while_up_waits_on_dns_stops_at_once(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], backend: str
) -> None:
    # `up` resolving an endpoint name with the DNS unreachable: wg's retries take a minute and
    # more (forever with WG_ENDPOINT_RESOLUTION_RETRIES=infinity), and Ctrl-C went unheard
    # until they ended — the lookups ran on the event loop
    a, _, ca, _ = configs
    with unreachable_dns(a):
        add_unresolvable_peer(ca)
        env = {**os.environ, "WG_ENDPOINT_RESOLUTION_RETRIES": "infinity"}
        # entered once in the resolver's retries
        with Up(a, ca, "--backend", backend, env=env, ready="trying again") as up_a:
            start = time.monotonic()
            status = up_a.stop(signal.SIGINT)
            took = time.monotonic() - start
    # stopped while coming up: status 0, as a stop once up (nothing of it is left)
    assert status == 0 and took < 5, (took, up_a.out)
    assert f"{up_a.name} stopped (SIGINT) while coming up" in up_a.out, up_a.out


def test_a_refused_reload_still_tells_systemd_it_is_done(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], tmp_path: Path
) -> None:
    # systemd ignores a notification of 4096 bytes or more, or one with a NUL byte in it
    # (manager_dispatch_notify_fd): READY=1 with the refusal in STATUS= must be neither, or
    # the reload hangs until its timeout. A file damaged on disk (a block of NULs after a crash,
    # a line pasted wrong) is when a reload is refused.
    a, _, ca, _ = configs
    plain = ca.read_text()
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(address)
        manager.settimeout(20)
        with Up(a, ca, env={**os.environ, "NOTIFY_SOCKET": address}) as up_a:
            assert up_a.proc is not None
            assert manager.recv(4096).startswith(b"READY=1")
            # and an error from resolving the endpoints (in a thread of its own) comes back too
            bad_name = f"\n[Peer]\nPublicKey = {pubkey(genkey())}\nAllowedIPs = 10.98.0.0/24\n"
            bad_name += "Endpoint = a..b:51820\n"
            for damage in ("\n[Pe\0er]\n", "\n" + "\0" * 2000 + "\n", "\nx" + "y" * 5000, bad_name):
                ca.write_text(plain + damage)
                up_a.proc.send_signal(signal.SIGHUP)
                assert manager.recv(65536).startswith(b"RELOADING=1")
                message = manager.recv(65536)
                assert len(message) < 4096 and b"\0" not in message, (len(message), message[:200])
                lines = message.decode().split("\n")
                assert lines[0] == "READY=1" and lines[1].startswith("STATUS=reload refused: ")
                assert len(lines) == 2, lines
            assert up_a.stop() == 0


def test_a_reload_keeps_the_fwmark_the_default_routes_rules_use(tmp_path: Path) -> None:
    # Table = auto with 0.0.0.0/0: rules send what lacks the running fwmark (here the table
    # picked, 51820) into the tunnel. A reload with another FwMark would mark the tunnel's own
    # datagrams with a mark the rules do not know: they would loop into the tunnel (the peer is
    # reached through the main table's default route). Refused, the tunnel keeps working.
    ka, kb = genkey(), genkey()
    an, bn = testing.unique_name("fma"), testing.unique_name("fmb")
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24")
        b.run("ip", "addr", "add", "192.168.96.2/32", "dev", "lo")
        a.run("ip", "route", "add", "default", "via", UB)
        ca, cb = tmp_path / f"{an}.conf", tmp_path / f"{bn}.conf"
        text = (
            f"[Interface]\nPrivateKey = {ka}\nAddress = {OA}/24\n\n[Peer]\n"
            f"PublicKey = {pubkey(kb)}\nAllowedIPs = 0.0.0.0/0\nEndpoint = 192.168.96.2:51820\n"
        )
        ca.write_text(text)
        conf(cb, kb, pubkey(ka), OB, OA, UA)
        address = str(tmp_path / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
            manager.bind(address)
            manager.settimeout(20)
            with Up(a, ca, env={**os.environ, "NOTIFY_SOCKET": address}) as up_a, Up(b, cb):
                assert up_a.proc is not None
                assert manager.recv(4096).startswith(b"READY=1")
                ping(a, OB)
                mark = uapi_get(an).fwmark
                assert mark == 51820, mark
                for fwmark, outcome in (("", "reloaded"), ("0x10", "reload refused: ")):
                    with_interface_keys(ca, f"FwMark = {fwmark}" if fwmark else "", base=text)
                    up_a.proc.send_signal(signal.SIGHUP)
                    assert manager.recv(4096).startswith(b"RELOADING=1")
                    status = manager.recv(4096).decode().split("\n")[1]
                    assert status.startswith(f"STATUS={outcome}"), status
                    assert uapi_get(an).fwmark == mark
                    ping(a, OB)
                assert up_a.stop() == 0
    assert "the default route's policy rules use the mark 0xca6c" in up_a.out, up_a.out


# -- after a crash: what `up` changed outside the device ----------------------------------------

#: `ip rule` in a new namespace: the kernel's own rules (local, main, default)
DEFAULT_RULES = {"-4": [0, 32766, 32767], "-6": [0, 32766]}
#: with wg-quick's pair for a default route in front of main (per IP version)
WITH_POLICY = {"-4": [0, 32764, 32765, 32766, 32767], "-6": [0, 32764, 32765, 32766]}


def rule_priorities(ns: testing.Netns, family: str) -> list[int]:
    return sorted(int(r["priority"]) for r in ns.ip_json(family, "rule", "show"))


def wg_quick_tables(ns: testing.Netns) -> list[str]:
    out = ns.run("nft", "list", "tables").stdout if HAVE_NFT else ""
    return sorted(line.split()[-1] for line in out.splitlines() if "wg-quick-" in line)


@pytest.fixture
def default_route(tmp_path: Path) -> Iterator[tuple[testing.Netns, Path, dict[str, str]]]:
    """A namespace and a file whose peer takes every address (``0.0.0.0/0, ::/0``: policy rules
    and nftables tables, which outlive the process), with DNS through a stand-in resolvconf
    (recording its calls in ``tmp_path/resolvconf-calls``) and hooks that leave markers; the
    environment to run ``up`` in. Whatever a test leaves is taken down and removed."""
    name = testing.unique_name("crk")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "resolvconf"
    fake.write_text(f'#!/bin/sh\n{{ echo "ARGS $*"; cat; }} >> {tmp_path / "resolvconf-calls"}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    path = tmp_path / f"{name}.conf"
    path.write_text(
        f"[Interface]\nPrivateKey = {genkey()}\nAddress = 10.88.0.1/24\nDNS = 10.88.0.53\n"
        f"PreDown = touch {tmp_path / 'predown'}\nPostDown = touch {tmp_path / 'postdown'}\n\n"
        f"[Peer]\nPublicKey = {pubkey(genkey())}\nAllowedIPs = 0.0.0.0/0, ::/0\n"
        "Endpoint = 192.0.2.1:51820\n"
    )
    path.chmod(0o600)
    with testing.netns(enter=False) as ns:
        try:
            yield ns, path, env
        finally:
            ns.run(*TUNFLOW, "down", name, check=False)
            for suffix in (".log", ".log.1", ".pid", ".undo", ".undo.tmp"):
                Path(f"/run/tunflow/{name}{suffix}").unlink(missing_ok=True)
            Path(f"/var/run/wireguard/{name}.sock").unlink(missing_ok=True)


def up_daemon(ns: testing.Netns, path: Path, env: dict[str, str]) -> int:
    """``tunflow up FILE --daemon``; the pid of the process serving it."""
    done = subprocess.run(
        ns.cmd(*TUNFLOW, "up", str(path), "--daemon"), capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return int(Path(f"/run/tunflow/{path.stem}.pid").read_text())


def sigkill(ns: testing.Netns, pid: int, name: str) -> None:
    """SIGKILL ``pid`` and wait until it and its device are gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10

    def gone() -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = "Z"
        return state == "Z" and ns.run("ip", "link", "show", name, check=False).returncode != 0

    while not gone():
        assert time.monotonic() < deadline, f"pid {pid} or {name} still there"
        time.sleep(0.05)


def test_down_after_a_sigkill_removes_what_up_left(
    default_route: tuple[testing.Netns, Path, dict[str, str]], tmp_path: Path
) -> None:
    ns, path, env = default_route
    name = path.stem
    journal = Path(f"/run/tunflow/{name}.undo")
    pid = up_daemon(ns, path, env)
    sigkill(ns, pid, name)
    # the device went with the process; the rules, tables and DNS record did not
    assert {f: rule_priorities(ns, f) for f in WITH_POLICY} == WITH_POLICY
    if HAVE_NFT:
        assert wg_quick_tables(ns) == [f"wg-quick-{name}"] * 2
    assert Path(f"/var/run/wireguard/{name}.sock").exists()
    down = ns.run(*TUNFLOW, "down", name, check=False)
    assert down.returncode == 0, down.stdout + down.stderr
    assert {f: rule_priorities(ns, f) for f in DEFAULT_RULES} == DEFAULT_RULES
    assert down.stdout.count("\n") == 1, down.stdout
    assert f"(pid {pid}) is gone" in down.stdout and "4 policy rules" in down.stdout
    assert "PreDown and PostDown not run" in down.stdout, down.stdout
    assert {f: rule_priorities(ns, f) for f in DEFAULT_RULES} == DEFAULT_RULES
    assert wg_quick_tables(ns) == []
    record = "tun." if Path("/etc/resolvconf/interface-order").exists() else ""
    assert (tmp_path / "resolvconf-calls").read_text().endswith(f"ARGS -d {record}{name} -f\n")
    assert not (tmp_path / "predown").exists() and not (tmp_path / "postdown").exists()
    for left in (
        journal,
        Path(f"/run/tunflow/{name}.pid"),
        Path(f"/var/run/wireguard/{name}.sock"),
    ):
        assert not left.exists(), left
    again = ns.run(*TUNFLOW, "down", name, check=False)  # nothing left: as for any name
    assert again.returncode == 1 and "no interface" in again.stderr


def test_down_after_a_sigkill_that_left_no_journal_removes_the_stale_files(
    default_route: tuple[testing.Netns, Path, dict[str, str]],
) -> None:
    # no default route, no DNS: nothing outside the device, so no journal — `down` still
    # answers for the killed `up` (its pid file and socket) rather than "no interface"
    ns, path, env = default_route
    name = path.stem
    text = path.read_text().replace("DNS = 10.88.0.53\n", "")
    path.write_text(text.replace("0.0.0.0/0, ::/0", "10.88.1.0/24"))
    pid = up_daemon(ns, path, env)
    sigkill(ns, pid, name)
    assert not Path(f"/run/tunflow/{name}.undo").exists()
    down = ns.run(*TUNFLOW, "down", name, check=False)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "no tunflow up serves it; removed the stale pid file" in down.stdout, down.stdout
    assert not Path(f"/run/tunflow/{name}.pid").exists()
    assert not Path(f"/var/run/wireguard/{name}.sock").exists()
    assert not (path.parent / "predown").exists() and not (path.parent / "postdown").exists()
    again = ns.run(*TUNFLOW, "down", name, check=False)
    assert again.returncode == 1 and "no interface" in again.stderr


def test_up_after_a_sigkill_undoes_what_the_killed_one_left_first(
    default_route: tuple[testing.Netns, Path, dict[str, str]],
) -> None:
    ns, path, env = default_route
    name = path.stem
    killed = up_daemon(ns, path, env)
    sigkill(ns, killed, name)
    pid = up_daemon(ns, path, env)
    # one pair of rules, one table per IP version: not the killed one's as well
    assert {f: rule_priorities(ns, f) for f in WITH_POLICY} == WITH_POLICY
    if HAVE_NFT:
        assert wg_quick_tables(ns) == [f"wg-quick-{name}"] * 2
    log = Path(f"/run/tunflow/{name}.log").read_text()
    assert f"(pid {killed}) is gone; removed what it left: 4 policy rules" in log, log
    assert json.loads(Path(f"/run/tunflow/{name}.undo").read_text())["pid"] == pid
    down = ns.run(*TUNFLOW, "down", name, check=False)
    assert down.returncode == 0, down.stderr
    assert {f: rule_priorities(ns, f) for f in DEFAULT_RULES} == DEFAULT_RULES
    assert wg_quick_tables(ns) == []
    assert not Path(f"/run/tunflow/{name}.undo").exists()  # a clean stop removes it


def test_what_up_left_in_another_namespace_is_left_there(
    default_route: tuple[testing.Netns, Path, dict[str, str]],
) -> None:
    # /run/tunflow is every namespace's: rules are undone only where they were made
    ns, path, env = default_route
    name = path.stem
    sigkill(ns, up_daemon(ns, path, env), name)
    with testing.netns(enter=False) as other:
        elsewhere = other.run(*TUNFLOW, "down", name, check=False)
        assert elsewhere.returncode == 1
        assert f"network namespace {ns.name}, not in this one" in elsewhere.stderr
        refused = subprocess.run(
            other.cmd(*TUNFLOW, "up", str(path)), capture_output=True, text=True, env=env
        )
        assert refused.returncode == 2 and f"run tunflow down {name} there" in refused.stderr
        assert other.run("ip", "link", "show", name, check=False).returncode != 0
    assert {f: rule_priorities(ns, f) for f in WITH_POLICY} == WITH_POLICY
    assert Path(f"/run/tunflow/{name}.undo").exists()
    assert ns.run(*TUNFLOW, "down", name, check=False).returncode == 0
    assert {f: rule_priorities(ns, f) for f in DEFAULT_RULES} == DEFAULT_RULES


@pytest.mark.skipif(
    not (shutil.which("wireguard-go") and HAVE_NFT), reason="needs wireguard-go and nft"
)
def test_what_up_left_is_not_undone_while_another_tool_serves_the_name(
    default_route: tuple[testing.Netns, Path, dict[str, str]], tmp_path: Path
) -> None:
    # killed, then the name brought up by another tool (wg-quick over wireguard-go): its
    # nftables table is wg-quick-<name> too, its resolvconf record the same, its rules equal —
    # `down` must neither take them away nor say the interface is down while it runs
    ns, path, env = default_route
    name = path.stem
    sigkill(ns, up_daemon(ns, path, env), name)
    calls = tmp_path / "resolvconf-calls"
    before = calls.read_text()
    ns.run("wireguard-go", name)  # forks into the background; the link is there on return
    try:
        ns.run("nft", "add", "table", "ip", f"wg-quick-{name}")  # as wg-quick adds it
        down = ns.run(*TUNFLOW, "down", name, check=False)
        assert down.returncode == 1, down.stdout + down.stderr
        assert f"an interface {name} is here now that no tunflow up serves" in down.stderr
        assert "Traceback" not in down.stderr
        refused = subprocess.run(
            ns.cmd(*TUNFLOW, "up", str(path)), capture_output=True, text=True, env=env
        )
        assert refused.returncode == 2 and "nothing was undone" in refused.stderr
        assert ns.run("ip", "link", "show", name, check=False).returncode == 0
        assert f"wg-quick-{name}" in wg_quick_tables(ns)
        assert {f: rule_priorities(ns, f) for f in WITH_POLICY} == WITH_POLICY
        assert calls.read_text() == before  # no resolvconf -d
        assert Path(f"/run/tunflow/{name}.undo").exists()
    finally:
        ns.run("ip", "link", "del", name, check=False)
    # the other tool's interface gone: what the killed one left is undone
    down = ns.run(*TUNFLOW, "down", name, check=False)
    assert down.returncode == 0, down.stdout + down.stderr
    assert {f: rule_priorities(ns, f) for f in DEFAULT_RULES} == DEFAULT_RULES
    assert wg_quick_tables(ns) == []


def test_up_as_a_user_says_it_needs_root() -> None:
    # what wg-quick says in a word ("must be run as root"); not a bare "[Errno 13] Permission
    # denied: '/run/tunflow/x.pid'" that leaves the user to guess
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*nobody, *TUNFLOW, "--help"], capture_output=True, timeout=60)
    if probe.returncode:
        pytest.skip("this checkout cannot be run by user nobody (a private directory)")
    with tempfile.TemporaryDirectory(dir="/tmp") as where:  # (pytest's tmp_path is root's)
        os.chmod(where, 0o755)
        conf = Path(where) / f"{testing.unique_name('tfu')}.conf"
        conf.write_text(f"[Interface]\nPrivateKey = {genkey()}\n")
        conf.chmod(0o644)
        done = subprocess.run(
            [*nobody, *TUNFLOW, "up", str(conf)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1, done.stderr
    assert "Permission denied" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.rstrip().endswith("(not running as root: run it with sudo)"), done.stderr


def test_down_as_a_user_says_it_needs_root(
    default_route: tuple[testing.Netns, Path, dict[str, str]],
) -> None:
    # a live up (SIGTERM: EPERM) and a killed one's journal (the pid file's lock: EACCES) —
    # each said in a line with the hint, not a traceback; nothing is changed
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*nobody, *TUNFLOW, "--help"], capture_output=True, timeout=60)
    if probe.returncode:
        pytest.skip("this checkout cannot be run by user nobody (a private directory)")
    ns, path, env = default_route
    name = path.stem
    pid = up_daemon(ns, path, env)
    for _ in ("live", "killed"):
        done = subprocess.run(
            ns.cmd(*nobody, *TUNFLOW, "down", name), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.rstrip().endswith("(not running as root: run it with sudo)")
        assert {f: rule_priorities(ns, f) for f in WITH_POLICY} == WITH_POLICY
        if _alive_pid(pid):
            sigkill(ns, pid, name)
    assert Path(f"/run/tunflow/{name}.undo").exists()


def _alive_pid(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("kind", ["tuntap", "veth"])
def test_up_refuses_a_name_that_exists_already(
    configs: tuple[testing.Netns, testing.Netns, Path, Path], kind: str
) -> None:
    # a persistent TUN of that name (ip tuntap add) was attached to — given the addresses,
    # routes and MTU, and deleted on the way down — and a veth was an error of TUNSETIFF's
    # about flags; now up refuses any interface that exists already, and leaves it alone
    a, _, ca, _ = configs
    name = ca.stem
    if kind == "tuntap":
        a.run("ip", "tuntap", "add", "dev", name, "mode", "tun")
    else:
        a.run("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p")
    before = a.ip_json("-d", "addr", "show", "dev", name)
    try:
        for extra in ([], ["--daemon"]):
            refused = a.run(*TUNFLOW, "up", str(ca), *extra, check=False, timeout=20)
            assert refused.returncode == 2, refused.stderr
            assert f"an interface named {name} exists already" in refused.stderr
            assert "Traceback" not in refused.stderr
            assert a.ip_json("-d", "addr", "show", "dev", name) == before
    finally:
        a.run("ip", "link", "del", name, check=False)
        for log in ("log", "log.1"):  # what the --daemon start that failed logged
            Path(f"/run/tunflow/{name}.{log}").unlink(missing_ok=True)


def test_reloads_and_saves_at_once_are_each_answered(
    configs: tuple[testing.Netns, testing.Netns, Path, Path],
) -> None:
    # two `tunflow reload` (or two `save`) at once shared one answer file and one signal
    # (SIGHUPs sent together are one for the kernel): one of them took the other's answer
    # and the other said "did not answer", or found the file gone under it (a traceback);
    # now the askers of one kind take turns. A save and a reload at once were answered.
    a, _, ca, _ = configs
    with Up(a, ca) as up_a:
        for _ in range(3):
            procs = [
                a.popen(
                    [*TUNFLOW, command, up_a.name, "--timeout", "20"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for command in ("reload", "save", "reload", "save", "reload")
            ]
            for proc in procs:
                out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, out + err
                assert "reloaded: 1 peer(s)" in out or "saved to" in out, out
        assert up_a.proc is not None and up_a.proc.poll() is None
    assert not list(Path("/run/tunflow").glob(f"{up_a.name}.*"))


def test_save_and_reload_as_a_user_say_they_need_root() -> None:
    # a user may read root's pid file but not make a lock file in /run/tunflow: that was a
    # PermissionError traceback (before the askers took turns it was the kill's EPERM, in a
    # line); now a line with the hint, status 1. The `up` is a stand-in holding its pid file.
    name = testing.unique_name("tfq")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, signal, sys, time\n"
            "os.makedirs('/run/tunflow', exist_ok=True)\n"
            f"fd = os.open('/run/tunflow/{name}.pid', os.O_RDWR | os.O_CREAT, 0o644)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.pwrite(fd, f'{os.getpid()}\\n'.encode(), 0)\n"
            "for s in (signal.SIGHUP, signal.SIGUSR1):\n"
            "    signal.signal(s, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        for command in ("reload", "save"):
            # root imports what the command needs (the interpreter may sit in root's home),
            # then the command runs as user nobody
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import fcntl, os, sys\n"
                    "from tunflow.cli import main\n"
                    "import tunflow.cli.vpn\n"
                    "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
                    f"sys.exit(main([{command!r}, {name!r}, '--timeout', '1']))\n",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
            assert "Permission denied" in done.stderr, done.stderr
            assert done.stderr.rstrip().endswith("(not running as root: run it with sudo)")
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
        for path in Path("/run/tunflow").glob(f"{name}.*"):
            path.unlink(missing_ok=True)
