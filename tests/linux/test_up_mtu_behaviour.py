"""``tunflow up``: the automatic MTU below IPv6's least with an IPv6 ``Address`` among them, or
below 576, is refused — after ``PreUp``, where wg-quick works it out (a ``PreUp`` may make the
route it follows) — in throw-away namespaces, as separate processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import Up
from tunflow import testing
from tunflow.wireguard import genkey, pubkey

pytestmark = pytest.mark.needs_root

UA, UB = "192.168.96.1", "192.168.96.2"
TUNFLOW = [sys.executable, "-m", "tunflow.cli"]


def conf(tmp_path: Path, addresses: str, extra: str = "") -> Path:
    """A file with no MTU line, ``addresses`` and ``extra`` lines, and a peer across the veth."""
    path = tmp_path / f"{testing.unique_name('mtu')}.conf"
    path.write_text(
        f"[Interface]\nPrivateKey = {genkey()}\nAddress = {addresses}\n{extra}\n"
        f"[Peer]\nPublicKey = {pubkey(genkey())}\nAllowedIPs = 10.96.0.2/32\n"
        f"Endpoint = {UB}:51820\n"
    )
    return path


def test_an_automatic_mtu_below_1280_with_ipv6_is_refused(tmp_path: Path) -> None:
    # no MTU line: wg-quick's, 80 below the path's 1300 = 1220, which IPv6 does not take (the
    # file's own MTU = 1220 is refused when it is read); worked out after PreUp, as wg-quick's
    # set_mtu_up, so PreUp has run, and no interface is left
    marker = tmp_path / "pre-up-ran"
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        va, _ = testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24", mtu=1300)
        path = conf(tmp_path, "10.96.0.1/24, fd96::1/64", f"PreUp = touch {marker}\n")
        done = a.run(*TUNFLOW, "up", str(path), check=False)
        assert done.returncode == 2, done.stdout + done.stderr
        assert marker.exists(), done.stderr
        marker.unlink()
        assert "Traceback" not in done.stderr
        message = done.stderr
        assert str(path) in message and "1220" in message and "fd96::1/64" in message, message
        assert va in message and "1300" in message, message  # where the 1220 came from
        assert "MTU = 1280" in message, message
        assert a.run("ip", "link", "show", path.stem, check=False).returncode != 0
        # the same path with IPv4 addresses only comes up at 1220, as wg-quick's
        path.write_text(path.read_text().replace(", fd96::1/64", ""))
        with Up(a, path):
            assert a.ip_json("link", "show", "dev", path.stem)[0]["mtu"] == 1220
        assert marker.exists()


def test_an_automatic_mtu_below_576_names_the_file_and_the_path(tmp_path: Path) -> None:
    # a 600-byte path: 520, below what an MTU line may say
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        va, _ = testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24", mtu=600)
        path = conf(tmp_path, "10.96.0.1/24")
        done = a.run(*TUNFLOW, "up", str(path), check=False)
        assert done.returncode == 2, done.stdout + done.stderr
        message = done.stderr
        assert str(path) in message and "520" in message and va in message, message
        assert "MTU = 576" in message and "Traceback" not in message, message
