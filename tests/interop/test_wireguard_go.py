"""tunflow against Debian's wireguard-go, in two network namespaces joined by a veth pair.

    ns a: veth 192.168.93.1 — tunflow interface  10.93.0.1/24 (in this process)
    ns b: veth 192.168.93.2 — wireguard-go tun   10.93.0.2/24 (configured with wg(8) and ip(8))

Handshakes from either side, ping both ways, 64 MiB of TCP each way byte for byte, a rekey, a
restarted peer on either side, datagrams from an unknown key and replayed datagrams dropped and
counted, and ``wg show`` against the tunflow interface. And once with IPv6 on both levels:
veths fd77:93::1/2, dual-stack interfaces with fd00:93::1/2 besides.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import pytest

from tests.helpers import ipv6_input_errors
from tunflow import ConfigError, testing
from tunflow.wireguard import (
    InterfaceConfig,
    PeerConfig,
    PrivateKey,
    WireGuard,
    WireGuardInterface,
    open_interface,
)

pytestmark = [
    pytest.mark.needs_root,
    pytest.mark.interop,
    pytest.mark.anyio,
    pytest.mark.skipif(
        not (shutil.which("wireguard-go") and shutil.which("wg")),
        reason="needs wireguard-go and wireguard-tools",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
UA, UB = "192.168.93.1", "192.168.93.2"
OA, OB = "10.93.0.1", "10.93.0.2"
UA6, UB6 = "fd77:93::1", "fd77:93::2"
OA6, OB6 = "fd00:93::1", "fd00:93::2"
GO_PORT = 51820


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the protocol runs the same on every loop (see tests/linux/test_vpn_*)


class GoPeer:
    """wireguard-go in namespace ``ns``, configured with wg(8); killed and reaped on stop."""

    def __init__(self, ns: testing.Netns, key: PrivateKey, tmp: Path) -> None:
        self.ns = ns
        self.key = key
        self.name = testing.unique_name("wgo")
        self.proc: subprocess.Popen[bytes] | None = None
        self.key_file = tmp / f"{self.name}.key"
        self.key_file.write_text(key.to_base64() + "\n")
        self.key_file.chmod(0o600)
        self.log = tmp / f"{self.name}.log"

    def start(
        self,
        peer_key: PrivateKey,
        *,
        endpoint: str | None,
        allowed_ips: str = f"{OA}/32",
        addresses: Sequence[str] = (f"{OB}/24",),
    ) -> None:
        env = {
            **os.environ,
            "WG_PROCESS_FOREGROUND": "1",
            "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1",
        }
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.ns.cmd("wireguard-go", "-f", self.name), stdout=log, stderr=log, env=env
            )
        sock = Path(f"/var/run/wireguard/{self.name}.sock")
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "wireguard-go made no control socket"
            time.sleep(0.02)
        args = ["wg", "set", self.name, "private-key", str(self.key_file)]
        args += ["listen-port", str(GO_PORT), "peer", peer_key.public_key().to_base64()]
        args += ["allowed-ips", allowed_ips]
        if endpoint:
            args += ["endpoint", endpoint]
        self.ns.run(*args)
        for address in addresses:
            self.ns.run("ip", "addr", "replace", address, "dev", self.name)
        self.ns.run("ip", "link", "set", self.name, "mtu", "1420", "up")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        self.ns.run("ip", "link", "del", self.name, check=False)
        Path(f"/var/run/wireguard/{self.name}.sock").unlink(missing_ok=True)

    def show(self) -> str:
        return self.ns.run("wg", "show", self.name, "dump").stdout


@contextmanager
def go_topology(
    tmp: Path, addr_a: str, addr_b: str
) -> Iterator[tuple[testing.Netns, testing.Netns, GoPeer]]:
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, addr_a, addr_b)
        go = GoPeer(b, PrivateKey.generate(), tmp)
        try:
            yield a, b, go
        finally:
            go.stop()


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[tuple[testing.Netns, testing.Netns, GoPeer]]:
    with go_topology(tmp_path, f"{UA}/24", f"{UB}/24") as t:
        yield t


@pytest.fixture
def topology6(tmp_path: Path) -> Iterator[tuple[testing.Netns, testing.Netns, GoPeer]]:
    """The veths with only IPv6 (ULA, no DAD): the tunnel's datagrams go over IPv6."""
    with go_topology(tmp_path, f"{UA6}/64", f"{UB6}/64") as t:
        yield t


def tunflow_config(
    key: PrivateKey,
    go: GoPeer,
    *,
    endpoint: bool,
    go_address: str = UB,
    allowed_ips: str = f"{OB}/32",
) -> InterfaceConfig:
    return InterfaceConfig(
        key,
        listen_port=0,
        peers=[
            PeerConfig(
                go.key.public_key(),
                endpoint=(go_address, GO_PORT) if endpoint else None,
                allowed_ips=allowed_ips,
            )
        ],
    )


@asynccontextmanager
async def tunflow(
    a: testing.Netns,
    config: InterfaceConfig,
    name: str | None = None,
    addresses: Sequence[str] = (f"{OA}/24",),
) -> AsyncIterator[WireGuardInterface]:
    async with open_interface(
        config, name=name or testing.unique_name("wtf"), addresses=addresses, netns=a.name
    ) as iface:
        yield iface


async def ping(ns: testing.Netns, address: str, count: int = 3) -> None:
    done = await anyio.run_process(
        ns.cmd("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "3", address), check=False
    )
    out = done.stdout.decode()
    assert done.returncode == 0, f"ping {address} from {ns}: {out}{done.stderr.decode()}"
    assert f"{count} received" in out, out


def last_handshake(dump: str, public: str) -> int:
    for line in dump.splitlines():
        fields = line.split("\t")
        if fields[0] == public:
            return int(fields[4])
    raise AssertionError(f"peer {public} not in {dump!r}")


# -- handshakes and ping --------------------------------------------------------------------------


async def test_tunflow_initiates_and_ping_goes_both_ways(
    topology: tuple[testing.Netns, testing.Netns, GoPeer],
) -> None:
    a, b, go = topology
    key = PrivateKey.generate()
    go.start(key, endpoint=None)  # wireguard-go learns where we are from our handshake
    async with tunflow(a, tunflow_config(key, go, endpoint=True)) as wg:
        await ping(a, OB)
        await ping(b, OA)
        s = wg.statistics().wireguard
        assert s.handshake_initiations_sent >= 1 and s.handshake_responses_received >= 1
        assert s.handshake_initiations_received == 0
        peer = wg.peer(go.key.public_key())
        assert peer.last_handshake is not None and peer.rx_bytes > 0 and peer.tx_bytes > 0
        assert last_handshake(go.show(), key.public_key().to_base64()) > 0


async def test_wireguard_go_initiates_and_ping_goes_both_ways(
    topology: tuple[testing.Netns, testing.Netns, GoPeer],
) -> None:
    a, b, go = topology
    key = PrivateKey.generate()
    async with tunflow(a, tunflow_config(key, go, endpoint=False)) as wg:
        go.start(key, endpoint=f"{UA}:{wg.listen_port}")
        await ping(b, OA)  # only wireguard-go knows an endpoint: it must initiate
        await ping(a, OB)
        s = wg.statistics().wireguard
        assert s.handshake_initiations_received >= 1 and s.handshake_responses_sent >= 1
        assert s.handshake_initiations_sent == 0
        assert wg.peer(go.key.public_key()).endpoint == (UB, GO_PORT)  # learnt from it


# -- bulk TCP ------------------------------------------------------------------------------------


async def tcp_transfer(
    client: testing.Netns, server: testing.Netns, address: str, size: int
) -> None:
    script = str(ROOT / "tests" / "tcp_transfer.py")
    port = 5300 + os.getpid() % 500
    async with await anyio.open_process(
        server.cmd(sys.executable, script, "server", address, str(port))
    ) as srv:
        assert srv.stdout is not None
        lines = srv.stdout
        buf = b""
        with anyio.fail_after(10):
            while b"ready" not in buf:
                buf += await lines.receive()
        with anyio.fail_after(120):
            sent = await anyio.run_process(
                client.cmd(sys.executable, script, "client", address, str(port), str(size))
            )
            rest = buf.split(b"ready", 1)[1]
            while rest.count(b"\n") < 2:
                rest += await lines.receive()
        await srv.wait()
    got = rest.split()[-2:]
    assert sent.stdout.split() == got, f"sent {sent.stdout!r}, received {got!r}"
    assert int(got[0]) == size


@pytest.mark.slow
async def test_64_mib_of_tcp_each_way_byte_identical(
    topology: tuple[testing.Netns, testing.Netns, GoPeer],
) -> None:
    a, b, go = topology
    key = PrivateKey.generate()
    go.start(key, endpoint=None)
    async with tunflow(a, tunflow_config(key, go, endpoint=True)) as wg:
        await ping(a, OB, 1)
        await tcp_transfer(a, b, OB, 64 << 20)  # tunflow -> wireguard-go
        await tcp_transfer(b, a, OA, 64 << 20)  # wireguard-go -> tunflow
        s = wg.statistics()
        assert s.wireguard.rx_bytes > 64 << 20 and s.wireguard.tx_bytes > 64 << 20
        assert s.wireguard.dropped_bad_aead == 0 and s.wireguard.dropped_replay == 0
        # datagrams moved in batches: UDP_SEGMENT sends carry many
        assert s.transport.tx_datagrams > 2 * s.transport.tx_syscalls


@pytest.mark.slow
async def test_ipv6_inside_and_outside_byte_identical_each_way(
    topology6: tuple[testing.Netns, testing.Netns, GoPeer],
) -> None:
    """IPv6 underlay, dual-stack inside: the handshake and transport messages over an IPv6
    socket (UDP_SEGMENT/UDP_GRO on AF_INET6), IPv6 AllowedIPs both ways and IPv6 TCP
    coalesced on our device's writes, all against wireguard-go's reading of them."""
    a, b, go = topology6
    key = PrivateKey.generate()
    go.start(
        key,
        endpoint=None,  # learnt from our handshake: an IPv6 endpoint
        allowed_ips=f"{OA}/32,{OA6}/128",
        addresses=(f"{OB}/24", f"{OB6}/64"),
    )
    config = tunflow_config(
        key, go, endpoint=True, go_address=UB6, allowed_ips=f"{OB}/32,{OB6}/128"
    )
    async with tunflow(a, config, addresses=(f"{OA}/24", f"{OA6}/64")) as wg:
        await ping(a, OB6)
        await ping(b, OA6)
        await ping(a, OB, 1)  # and IPv4 through the same session
        s = wg.statistics().wireguard
        assert s.handshakes_completed == 1 and s.handshake_initiations_received == 0
        assert f"\t[{UA6}]:{wg.listen_port}\t" in go.show()  # wireguard-go learnt it
        size = 12 << 20
        await tcp_transfer(a, b, OB6, size)  # tunflow -> wireguard-go
        await tcp_transfer(b, a, OA6, size)  # wireguard-go -> tunflow
        st = wg.statistics()
        s = st.wireguard
        assert s.rx_bytes > size and s.tx_bytes > size
        assert s.dropped_bad_aead == 0 and s.dropped_replay == 0 and s.dropped_malformed == 0
        assert s.dropped_not_allowed_source == 0
        assert s.handshakes_completed == 1
        assert wg.peer(go.key.public_key()).endpoint == (UB6, GO_PORT)
        # datagrams moved in batches over the IPv6 socket, and IPv6 TCP was coalesced
        assert st.transport.tx_datagrams > 2 * st.transport.tx_syscalls, st.transport
        assert st.device.tx_coalesced > 0, st.device
        # and the kernel took every one of them (a wrong one would only cost a retransmission)
        assert ipv6_input_errors(a, wg.name) == {}


# -- rekey and restarts ----------------------------------------------------------------------------


async def test_rekey_while_traffic_flows(
    topology: tuple[testing.Netns, testing.Netns, GoPeer],
) -> None:
    a, b, go = topology
    key = PrivateKey.generate()
    go.start(key, endpoint=None)
    async with tunflow(a, tunflow_config(key, go, endpoint=True)) as wg:
        await ping(a, OB, 1)
        first = wg.peer(go.key.public_key()).last_handshake
        assert wg.statistics().wireguard.handshakes_completed == 1
        # REKEY_AFTER_TIME (120 s) passes on our clock: the next packet we send starts a new
        # handshake while the old session still carries traffic. (Real time passes a little
        # too: wireguard-go ignores a second initiation within 20 ms of one it took.)
        await anyio.sleep(0.1)
        wg.skip_time(121)
        await ping(a, OB, 5)
        s = wg.statistics().wireguard
        assert (s.handshakes_completed, s.handshake_initiations_sent) == (2, 2), s
        assert wg.peer(go.key.public_key()).last_handshake != first
        await ping(b, OA, 2)  # the new session works both ways


async def test_restarted_wireguard_go_recovers(
    topology: tuple[testing.Netns, testing.Netns, GoPeer],
) -> None:
    a, b, go = topology
    key = PrivateKey.generate()
    async with tunflow(a, tunflow_config(key, go, endpoint=True)) as wg:
        go.start(key, endpoint=f"{UA}:{wg.listen_port}")
        await ping(a, OB)
        go.stop()
        go.start(key, endpoint=f"{UA}:{wg.listen_port}")  # same keys, no sessions
        # the new process initiates for its first packet; tunflow accepts its newer timestamp
        await ping(b, OA)
        await ping(a, OB)
        assert wg.statistics().wireguard.handshake_initiations_received >= 1


async def test_restarted_tunflow_recovers(
    topology: tuple[testing.Netns, testing.Netns, GoPeer],
) -> None:
    a, b, go = topology
    key = PrivateKey.generate()
    name = testing.unique_name("wtf")
    config = tunflow_config(key, go, endpoint=True)
    go.start(key, endpoint=None)
    async with tunflow(a, config, name) as wg:
        await ping(a, OB)
    async with tunflow(a, config, name) as wg:  # a new process would be the same: no state
        await ping(a, OB)
        await ping(b, OA)
        assert wg.statistics().wireguard.handshakes_completed == 1


# -- hostile datagrams --------------------------------------------------------------------------


@contextmanager
def capture_udp(ns: testing.Netns, dport: int) -> Iterator[list[bytes]]:
    """UDP payloads to ``dport`` seen on every interface of ``ns`` (AF_PACKET, a thread)."""
    got: list[bytes] = []
    stop = threading.Event()
    with ns.entered():
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    s.settimeout(0.05)

    def run() -> None:
        while not stop.is_set():
            try:
                pkt = s.recv(65535)
            except OSError:
                continue
            ihl = (pkt[0] & 15) * 4
            if pkt[9] == 17 and struct.unpack_from("!H", pkt, ihl + 2)[0] == dport:
                got.append(pkt[ihl + 8 :])

    t = threading.Thread(target=run)
    t.start()
    try:
        yield got
    finally:
        stop.set()
        t.join()
        s.close()


def send_udp_from(ns: testing.Netns, datagrams: list[bytes], dst: tuple[str, int]) -> None:
    with ns.entered():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        for d in datagrams:
            s.sendto(d, dst)


async def test_unknown_keys_and_replays_are_dropped_and_counted(
    topology: tuple[testing.Netns, testing.Netns, GoPeer],
) -> None:
    a, b, go = topology
    key = PrivateKey.generate()
    go.start(key, endpoint=None)
    async with tunflow(a, tunflow_config(key, go, endpoint=True)) as wg:
        port = wg.listen_port
        with capture_udp(a, port) as captured:
            await ping(a, OB, 3)
            await ping(b, OA, 3)
        transport = [d for d in captured if d[0] == 4 and len(d) > 32]
        assert len(transport) >= 6, f"captured {len(captured)} datagrams"
        before = wg.statistics().wireguard
        # replays: wireguard-go's own transport messages, sent again (from another port)
        await anyio.to_thread.run_sync(send_udp_from, b, transport, (UA, port))
        # an unknown key: a valid initiation (right mac1) from a key tunflow does not know
        stranger = WireGuard(PrivateKey.generate())
        stranger.add_peer(PeerConfig(key.public_key(), endpoint=(UA, port), allowed_ips=f"{OA}/32"))
        stranger.send_packet(
            bytes.fromhex("4500001c00000000400100000a5d00020a5d0001") + bytes(8), 0.0
        )
        initiation = [d for d, _ in stranger.datagrams_to_send()]
        assert len(initiation) == 1 and len(initiation[0]) == 148
        await anyio.to_thread.run_sync(send_udp_from, b, initiation, (UA, port))
        with anyio.fail_after(5):
            while True:
                s = wg.statistics().wireguard
                if (
                    s.dropped_replay - before.dropped_replay >= len(transport)
                    and s.dropped_unknown_peer > before.dropped_unknown_peer
                ):
                    break
                await anyio.sleep(0.05)
        assert s.dropped_replay - before.dropped_replay == len(transport)
        assert s.dropped_unknown_peer - before.dropped_unknown_peer == 1
        assert s.rx_packets == before.rx_packets  # nothing of it was delivered
        assert wg.peer(go.key.public_key()).endpoint == (UB, GO_PORT)  # no roaming to the replayer
        await ping(a, OB, 1)  # and the session is unharmed


# -- wg(8) against tunflow --------------------------------------------------------------------


async def test_wg_show_lists_the_peer_with_handshake_and_transfer(
    topology: tuple[testing.Netns, testing.Netns, GoPeer],
) -> None:
    a, _, go = topology
    key = PrivateKey.generate()
    go.start(key, endpoint=None)
    async with tunflow(a, tunflow_config(key, go, endpoint=True)) as wg:
        await ping(a, OB, 3)
        shown = (await anyio.run_process(a.cmd("wg", "show", wg.name))).stdout.decode()
        assert f"interface: {wg.name}" in shown
        assert f"public key: {key.public_key().to_base64()}" in shown
        assert f"listening port: {wg.listen_port}" in shown
        assert f"peer: {go.key.public_key().to_base64()}" in shown
        assert f"endpoint: {UB}:{GO_PORT}" in shown
        assert f"allowed ips: {OB}/32" in shown
        assert re.search(r"latest handshake: (Now|\d+ seconds? ago)", shown), shown
        assert re.search(r"transfer: [\d.]+ \w*B received, [\d.]+ \w*B sent", shown), shown
        dump = (await anyio.run_process(a.cmd("wg", "show", wg.name, "dump"))).stdout.decode()
        fields = dump.splitlines()[1].split("\t")
        peer = wg.peer(go.key.public_key())
        assert int(fields[5]) == peer.rx_bytes and int(fields[6]) == peer.tx_bytes
        assert abs(int(fields[4]) - (peer.last_handshake or 0)) <= 1
        # and the counters match what wireguard-go counted the other way
        go_fields = go.show().splitlines()[1].split("\t")
        assert int(go_fields[5]) > 0 and int(go_fields[6]) > 0


async def test_a_failed_open_leaves_the_control_socket_of_wireguard_go_alone(
    topology: tuple[testing.Netns, testing.Netns, GoPeer],
) -> None:
    a, _, go = topology
    key = PrivateKey.generate()
    go.start(key, endpoint=None)
    # the same name in another namespace: the device can be made there, but the control
    # socket (one directory for every namespace) is wireguard-go's, served: refused, and
    # the way out must not unlink it
    with anyio.fail_after(20), pytest.raises(ConfigError, match="served by a running process"):
        async with tunflow(a, tunflow_config(key, go, endpoint=True), name=go.name):
            pass
    assert await anyio.Path(f"/var/run/wireguard/{go.name}.sock").exists()
    assert key.public_key().to_base64() in go.show()  # wg still reaches wireguard-go
