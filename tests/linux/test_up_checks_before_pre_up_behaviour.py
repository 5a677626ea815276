"""``tunflow up`` refuses what it can know is wrong before a ``PreUp`` hook runs: the hook's
side effects are not left behind for an interface that was never going to come up."""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path

import pytest

from tunflow import testing
from tunflow.wireguard import genkey, pubkey

pytestmark = pytest.mark.needs_root

TUNFLOW = [sys.executable, "-m", "tunflow.cli"]


def write(path: Path, marker: Path, interface: str) -> None:
    path.write_text(
        f"[Interface]\nPrivateKey = {genkey()}\n{interface}PreUp = touch {marker}\n\n"
        f"[Peer]\nPublicKey = {pubkey(genkey())}\nAllowedIPs = 10.97.0.2/32\n"
    )


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("10.97.0.1/24, 10.97.0.1/32", "10.97.0.1 is given twice"),
        ("fd97::1/64\nAddress = fd97::1/64", "fd97::1 is given twice"),
        ("224.0.0.5/24", "multicast"),
        ("ff02::5/64", "multicast"),
        ("0.0.0.0/8", "unspecified"),
    ],
)
def test_an_address_the_device_refuses_is_refused_before_pre_up(
    tmp_path: Path, address: str, said: str
) -> None:
    marker = tmp_path / "pre-up-ran"
    path = tmp_path / f"{testing.unique_name('adr')}.conf"
    write(path, marker, f"Address = {address}\n")
    with testing.netns(enter=False) as ns:
        done = ns.run(*TUNFLOW, "up", str(path), check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert not marker.exists(), done.stderr
    assert f"{path}: line " in done.stderr and said in done.stderr, done.stderr


@pytest.mark.parametrize("what", ["live", "not a socket"])
def test_a_control_socket_in_the_way_is_refused_before_pre_up(tmp_path: Path, what: str) -> None:
    # /var/run/wireguard/NAME.sock served by another process (wireguard-go of that name in
    # another namespace: `wg show NAME` answers for it), or a file that is not a socket
    marker = tmp_path / "pre-up-ran"
    path = tmp_path / f"{testing.unique_name('uap')}.conf"
    write(path, marker, "Address = 10.97.0.1/24\n")
    sock_path = Path("/var/run/wireguard") / f"{path.stem}.sock"
    sock_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        stack.callback(sock_path.unlink, missing_ok=True)
        if what == "live":
            server = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            server.bind(str(sock_path))
            server.listen()
        else:
            sock_path.write_text("")
        with testing.netns(enter=False) as ns:
            done = ns.run(*TUNFLOW, "up", str(path), check=False)
            assert ns.run("ip", "link", "show", path.stem, check=False).returncode != 0
        assert done.returncode == 2, done.stdout + done.stderr
        assert not marker.exists(), done.stderr
        assert str(sock_path) in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert sock_path.exists()  # not someone else's to remove
