"""``sync_request`` against ``wg syncconf`` itself: the request wg(8) sends to a control socket
we serve, applied to one interface, must leave it as ours leaves an identical one."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tunflow import testing
from tunflow.wireguard.protocol import (
    PeerConfig,
    PresharedKey,
    PrivateKey,
    SetRequest,
    UapiConnection,
    WireGuard,
    apply_set,
    device_info,
    handle_request,
    sync_request,
)
from tunflow.wireguard.wgquick import parse_wgquick

pytestmark = [
    pytest.mark.needs_root,  # /var/run/wireguard
    pytest.mark.skipif(shutil.which("wg") is None, reason="needs wg (wireguard-tools)"),
]

KEY = PrivateKey(bytes(range(1, 33)))
STAY, GONE, NEW = (PrivateKey(bytes([n] * 32)).public_key() for n in (3, 4, 5))


def running(psk: PresharedKey | None = None, keepalive: int = 0) -> WireGuard:
    """An interface as it runs (the file below moves 10.9.0.0/24 to a new peer, drops one)."""
    wg = WireGuard(KEY, listen_port=51820)
    wg.add_peer(
        PeerConfig(
            STAY,
            preshared_key=psk,
            endpoint="192.0.2.1:51820",
            allowed_ips="10.1.0.0/16, 10.9.0.0/24",
            persistent_keepalive=keepalive,
        )
    )
    wg.add_peer(PeerConfig(GONE, allowed_ips="10.2.0.0/16"))
    return wg


FILE = f"""[Interface]
PrivateKey = {KEY.to_base64()}
FwMark = 0x42

[Peer]
PublicKey = {STAY.to_base64()}
AllowedIPs = 10.1.0.0/16, fd00::/64

[Peer]
PublicKey = {NEW.to_base64()}
AllowedIPs = 10.9.0.0/24
Endpoint = 198.51.100.7:4000
PersistentKeepalive = 5
"""


def serve(path: Path, wg: WireGuard, sets: list[SetRequest], ready: threading.Event) -> None:
    """Answer wg(8) on ``path`` until it has sent one set (get, then set, as syncconf does)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()
        listener.settimeout(20)
        ready.set()
        while not sets:
            client, _ = listener.accept()
            with client:
                client.settimeout(20)
                conn = UapiConnection()
                while data := client.recv(65536):
                    conn.receive_data(data)
                    while (request := conn.next_request()) is not None:
                        if isinstance(request, SetRequest):
                            sets.append(request)
                        client.sendall(handle_request(wg, request))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    # a file without PrivateKey (as `tunflow save` writes a keyless interface): wg sends
    # the all-zero key, which removes the key
    [FILE, FILE.replace(f"PrivateKey = {KEY.to_base64()}\n", "")],
    ids=["key", "no-key"],
)
def test_sync_request_does_what_wg_syncconf_does(tmp_path: Path, text: str) -> None:
    name = testing.unique_name("sy")
    path = Path(f"/var/run/wireguard/{name}.sock")
    path.parent.mkdir(parents=True, exist_ok=True)
    conf = tmp_path / f"{name}.conf"
    conf.write_text(text)
    theirs, sets, ready = running(), [], threading.Event()
    server = threading.Thread(target=serve, args=(path, theirs, sets, ready), daemon=True)
    server.start()
    try:
        assert ready.wait(10)
        done = subprocess.run(
            ["wg", "syncconf", name, str(conf)], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        server.join(20)
    finally:
        path.unlink(missing_ok=True)
    assert len(sets) == 1
    quick = parse_wgquick(text)
    ours = running()
    # as wg: the port and fwmark the file gives — none given is 0 (a new random port)
    apply_set(ours, sync_request(ours, quick.interface_config()))
    # every field wg show reports: keys, port, fwmark, peers, PSKs, endpoints, keepalives,
    # AllowedIPs in order
    assert device_info(ours) == device_info(theirs)
    got = device_info(ours)
    assert [p.public_key for p in got.peers] == [STAY, NEW] and got.fwmark == 0x42
    assert got.peers[0].endpoint == ("192.0.2.1", 51820)  # none in the file: the one it had
    assert got.private_key == quick.private_key


def test_sync_request_clears_what_the_file_no_longer_has() -> None:
    # current wireguard-tools (setconf.c, sync_conf): a PSK or a
    # persistent keepalive the running peer has and the file does not is cleared (Debian's
    # wg 1.0.20210914, the oracle above, leaves them: it predates that change)
    ours = running(psk=PresharedKey(bytes([9] * 32)), keepalive=25)
    config = parse_wgquick(FILE).interface_config()
    request = sync_request(ours, config, listen_port=False, fwmark=False)
    assert request.listen_port is None and request.fwmark is None
    apply_set(ours, request)
    stay = device_info(ours).peers[0]
    assert stay.preshared_key == PresharedKey() and stay.persistent_keepalive_interval == 0
    assert ours.listen_port == 51820 and ours.fwmark == 0  # left alone
