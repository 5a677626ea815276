"""Ports on real devices: a SyncDevice in an async pipeline, a TAP, a UDP transport sink, and the
Python forwarder example."""

from __future__ import annotations

import ast
import json
import signal
import socket
import subprocess
import sys
from typing import Any

import anyio
import pytest

from tests.helpers import EXAMPLES, ROOT, example_environment, udp_send
from tunflow import AsyncDevice, DeviceAttribute, DeviceBuilder, Layer, testing
from tunflow.pipeline import MemorySink, StageSpec, open_pipeline, open_tunnel
from tunflow.transport import UDPTransport

from .pipeline_topology import Receiver, devices, send_udp, wait_until

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    sock.settimeout(0.3)
    try:
        while True:
            out.append(sock.recv(65535))
    except TimeoutError:
        return out


async def test_sync_device_source_to_udp_transport(netns: testing.Netns) -> None:
    with (
        DeviceBuilder().ipv4("10.240.7.1", 24).build_sync() as dev,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
    ):
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        async with UDPTransport.bind("127.0.0.1:0", peer=rx.getsockname()) as udp:
            chain = [
                StageSpec(
                    "filter",
                    {
                        "rules": [{"action": "deny", "protocol": "udp", "dst_ports": [1]}],
                        "default": "allow",
                    },
                )
            ]
            async with open_pipeline(dev, chain, udp) as p:
                for port in (1, 2):
                    udp_send("10.240.7.2", port, b"payload")
                with anyio.fail_after(5):
                    while p.statistics().stages[0].packets_in < 2:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
            # the datagram to port 2 arrived at the transport's peer as a whole IP packet
            got = await anyio.to_thread.run_sync(drain, rx)
            ipv4 = [d for d in got if d[0] >> 4 == 4]
            assert [d[22:24] for d in ipv4] == [b"\x00\x02"] and ipv4[0].endswith(b"payload")
            assert p.statistics().port(udp.name).tx_packets >= 1


def arp_request_for(frame: bytes, ip: str) -> bool:
    """Whether ``frame`` is an Ethernet frame carrying an ARP request for ``ip``."""
    import dpkt

    eth = dpkt.ethernet.Ethernet(frame)
    return (
        isinstance(eth.data, dpkt.arp.ARP)
        and eth.data.op == dpkt.arp.ARP_OP_REQUEST
        and eth.data.tpa == socket.inet_aton(ip)
    )


async def test_tap_frames_through_filter_and_capture(
    netns: testing.Netns, tmp_path: object
) -> None:
    import dpkt

    path = f"{tmp_path}/tap.pcap"
    async with DeviceBuilder().layer(Layer.L2).ipv4("10.240.8.1", 24).build_async() as tap:
        sink = MemorySink()
        chain = [StageSpec("filter", {"non_ip": "allow"}), StageSpec("capture", {"path": path})]
        async with open_pipeline(tap, chain, sink) as p:
            udp_send("10.240.8.2", 9, b"x")  # ARP first: the neighbour is unknown
            await wait_until(
                lambda: any(arp_request_for(f, "10.240.8.2") for f in sink.packets),
                "the kernel's ARP request",
            )
        assert p.statistics().stage("filter").drops == {}
    with open(path, "rb") as f:  # noqa: ASYNC230 - a small file, after the pipeline stopped
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == 1  # LINKTYPE_ETHERNET
        frames = [bytes(buf) for _, buf in reader]
    # the non-IP frame passed the filter (non_ip = allow) and the capture holds it, whole
    assert any(arp_request_for(f, "10.240.8.2") for f in frames), frames
    # (the sink may miss the very last batch: a write cancelled when the pipeline stopped)
    assert frames[: len(sink.packets)] == sink.packets


def test_forwarder_example_needs_no_test_helpers() -> None:
    tree = ast.parse((EXAMPLES / "pipeline_forwarder.py").read_text())
    imported = {
        f"{node.module}.{alias.name}" if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {name for name in imported if "testing" in name}, imported


def report(proc: subprocess.Popen[str]) -> Any:
    """The example's next JSON line; when it ended instead, fail with its exit status and
    stderr (which say why)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        pytest.fail(f"the example closed stdout (exit status {proc.returncode}); stderr:\n{err}")
    return json.loads(line)


@pytest.mark.parametrize(("workers", "queues"), [("processes", 1), ("tasks", 2)])
def test_forwarder_example(
    netns_pair: tuple[testing.Netns, testing.Netns], workers: str, queues: int
) -> None:
    a, b = netns_pair
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "pipeline_forwarder.py"),
            a.name,
            b.name,
            "--workers",
            workers,
            "--queues",
            str(queues),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=example_environment(),
    )
    try:
        report(proc)  # running: one report a second
        with Receiver(b, [7500]) as rx:
            send_udp(a, "10.202.2.1", 7500, [b"through the example"] * 3, 0.01)
            lines = [report(proc) for _ in range(2)]
        assert [d for _, d in rx.got[7500]] == [b"through the example"] * 3
        assert lines[-1][2]["counters"]["udp"] >= 3
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err


async def test_kernel_drops_only_for_interfaces_in_the_pipelines_namespace(
    netns: testing.Netns, netns_pair: tuple[testing.Netns, testing.Netns]
) -> None:
    a, b = netns_pair
    # Here, in ``netns``, a TUN takes index 2 — the index A and B have in their namespaces.
    async with DeviceBuilder().ipv4("10.240.9.1", 24).build_async() as here:
        assert here.if_index() == 2
        async with devices(a, b) as (qa, qb):
            assert qa[0].if_index() == qb[0].if_index() == 2
            async with open_tunnel(qa, qb, []) as t:
                assert (
                    t.statistics().kernel_drops == {}
                )  # not ``here``'s counters under their names
        async with open_pipeline(here, [], MemorySink()) as p:
            assert list(p.statistics().kernel_drops) == [here.extra(DeviceAttribute.name)]


async def test_a_device_port_subclass_sees_every_packet_even_at_rest(
    netns: testing.Netns, anyio_backend: object
) -> None:
    """A lane without stages relays a packet at rest in the reader callback (the express path),
    but not past a port subclass's own ``recv_batch``/``send_batch`` (a port that filters or
    counts what it moves): those see every packet, lone ones too, on every event loop. The
    express path skipped them before (the subclass inherited the shortcut)."""
    from tunflow.packet import PacketBatch
    from tunflow.pipeline import DevicePort

    class Counting(DevicePort):
        def __init__(self, device: AsyncDevice) -> None:
            super().__init__(device)
            self.received = self.sent = 0

        async def recv_batch(self, batch: PacketBatch, whole: bool) -> PacketBatch:
            got = await super().recv_batch(batch, whole)
            self.received += len(got)
            return got

        async def send_batch(self, batch: PacketBatch) -> None:
            self.sent += len(batch)
            await super().send_batch(batch)

    n = 8
    async with (
        DeviceBuilder().ipv4("10.240.11.1", 24).build_async() as src,
        DeviceBuilder().ipv4("10.240.12.1", 24).build_async() as dst,
    ):
        source, sink = Counting(src), Counting(dst)
        async with open_pipeline(source, [], sink) as p:
            for _ in range(n):
                udp_send("10.240.11.2", 9, b"at rest")  # one packet, then quiet
                await anyio.sleep(0.05)
            with anyio.fail_after(10):
                while p.statistics().workers[0].packets_out < n:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
        # (and maybe a stray IPv6 packet of the kernel's own)
        assert source.received == sink.sent == p.statistics().workers[0].packets_out >= n
        assert dst.statistics().tx_packets == sink.sent
