"""Processes mode on a 4-queue device: the kernel spreads flows over the queues, and each queue's
worker process carries its share; statistics come back to the parent."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from tests.helpers import child_processes, udp_send
from tunflow import DeviceBuilder, testing
from tunflow.pipeline import DevicePort, StageSpec, WorkerStatistics, open_pipeline, open_tunnel
from tunflow.transport import UDPTransport

from .pipeline_topology import B4, Receiver, devices, in_netns, wait_until

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def send_flows(ports: range, count: int) -> None:
    import socket

    socks = []
    try:
        for i, _ in enumerate(ports):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", 40000 + i))
            socks.append(s)
        for _ in range(count):
            for s, port in zip(socks, ports, strict=True):
                s.sendto(b"flow", (B4, port))
    finally:
        for s in socks:
            s.close()


async def test_flows_spread_over_worker_processes(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    a, b = netns_pair
    ports = range(7400, 7464)  # 64 flows: each of 4 queues gets some with near certainty
    async with (
        devices(a, b, queues=4) as (qa, qb),
        open_tunnel(
            qa, qb, [StageSpec("stats")], workers="processes", statistics_interval=0.1
        ) as t,
    ):
        with Receiver(b, list(ports)) as rx:
            await anyio.to_thread.run_sync(lambda: in_netns(a, send_flows, ports, 20))
            await wait_until(
                lambda: sum(len(v) for v in rx.got.values()) >= 64 * 20, "every datagram"
            )

        def reported() -> bool:  # every worker's report since the traffic ended is in
            s = t.statistics()
            return s.stage("stats").counters.get("udp", 0) >= 64 * 20 and (
                len([w for w in s.workers if w.direction == "out"]) == 4
            )

        await wait_until(reported, "the workers' reports")
        stats = t.statistics()
    out = [w for w in stats.workers if w.direction == "out"]
    pids = {w.pid for w in out}
    assert len(out) == 4 and len(pids) == 4 and os.getpid() not in pids
    per_worker = {w.index: w.packets_in for w in out}
    udp = sum(len(v) for v in rx.got.values())
    assert udp == 64 * 20
    assert all(n > 0 for n in per_worker.values()), per_worker
    assert stats.stage("stats").counters["udp"] >= 64 * 20


async def test_a_worker_sends_to_the_transports_peer(netns: testing.Netns) -> None:
    """The worker adopts the transport's connected socket: packets without an address of their
    own go to its peer (they were all dropped as ``no_address``)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(0.1)
        async with (
            DeviceBuilder().ipv4("10.240.17.1", 24).build_async() as dev,
            UDPTransport.bind("127.0.0.1:0", peer=rx.getsockname()) as udp,
            open_pipeline(dev, [], udp, workers="processes", statistics_interval=0.05) as p,
        ):
            got: list[bytes] = []

            def arrived() -> bool:
                udp_send("10.240.17.2", 7, b"to the peer")
                try:
                    while True:
                        got.append(rx.recv(65535))
                except TimeoutError:
                    pass
                return any(d.endswith(b"to the peer") for d in got)

            await wait_until(arrived, "a datagram at the transport's peer", timeout=10)
            await wait_until(lambda: p.statistics().port(udp.name).tx_packets > 0, "a report")
            assert p.statistics().port(udp.name).drops.get("no_address", 0) == 0


async def test_a_worker_reads_batches_of_the_ports_size(netns: testing.Netns) -> None:
    """``batch_size`` (a device port's ``max_packets``) reaches the worker process: 20 packets
    already queued are read two at a time, not in one batch of the default size."""
    async with DeviceBuilder().ipv4("10.240.18.1", 24).build_async() as dev:
        port = DevicePort(dev, max_packets=2)
        handle = port.handle()
        assert handle is not None and handle.params["max_packets"] == 2
        for i in range(20):  # queued in the TUN before anything reads
            udp_send("10.240.18.2", 9, b"queued", src_port=41000 + i)
        async with open_pipeline(
            port, [], port, workers="processes", statistics_interval=0.05
        ) as p:

            def read() -> WorkerStatistics | None:
                out = [w for w in p.statistics().workers if w.packets_in >= 20]
                return out[0] if out else None

            await wait_until(lambda: read() is not None, "the worker's report of 20 packets")
            w = read()
            assert w is not None and w.batches * 2 >= w.packets_in, w


def test_worker_enters_the_namespace_it_is_handed(netns: testing.Netns) -> None:
    """A worker started outside the parent's namespace joins it (``setns``) and closes the fd;
    one already there stays. Run in throw-away threads: ``setns`` moves only the caller."""
    import threading

    from tunflow.pipeline._worker import _enter_netns
    from tunflow.platform.linux._netns import current_inode, setns

    target = current_inode()  # the test thread is inside ``netns``
    seen: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def worker(start_in: str) -> None:
        try:
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)  # the test's namespace...
            elsewhere = os.open(start_in, os.O_RDONLY)
            try:
                setns(elsewhere)  # ...and the thread starts in another one (or the same)
            finally:
                os.close(elsewhere)
            _enter_netns(fd)
            seen.append((current_inode(), os.path.exists(f"/proc/thread-self/fd/{fd}")))
        except BaseException as exc:
            errors.append(exc)

    with testing.netns(enter=False) as other:
        for start_in in (f"/run/netns/{other.name}", "/proc/thread-self/ns/net"):
            t = threading.Thread(target=worker, args=(start_in,))
            t.start()
            t.join()
    assert errors == []
    assert seen == [(target, False), (target, False)]


async def test_a_stage_with_one_state_is_refused_across_worker_processes(
    netns: testing.Netns, tmp_path: Path
) -> None:
    # The wireguard stage: each worker process built its own protocol object, and only the one
    # with the inbound lane received — handshakes started by the others were answered to it
    # and dropped (unknown_index), so the flows on their queues were lost without a word
    from tunflow import ConfigError
    from tunflow.wireguard import PrivateKey

    key, peer = PrivateKey.generate(), PrivateKey.generate().public_key()
    conf = tmp_path / "wg0.conf"
    conf.write_text(
        f"[Interface]\nPrivateKey = {key.to_base64()}\n"
        f"[Peer]\nPublicKey = {peer.to_base64()}\nAllowedIPs = 10.0.0.2/32\n"
    )
    stage = StageSpec("wireguard", {"config": str(conf)})
    async with (
        DeviceBuilder().ipv4("10.240.18.1", 24).multi_queue().build_async() as dev,
        UDPTransport.bind("127.0.0.1:0") as udp,
    ):
        clone = await dev.try_clone()
        try:
            with pytest.raises(ConfigError, match=r"stages\[0\] \(wireguard\) keeps one"):
                async with open_tunnel([dev, clone], udp, [stage], workers="processes"):
                    pass
            async with open_tunnel([dev], udp, [stage], workers="processes"):
                pass  # one process: it has both lanes, and so the one state
        finally:
            await clone.aclose()


async def test_a_job_and_reports_larger_than_the_socket_buffer_reach_their_peer(
    netns: testing.Netns,
) -> None:
    """A filter of 20000 rules: its job (~600 KB pickled) and its reports (a counter per rule,
    ~260 KB) are larger than one datagram of the control socket (~208 KB). The job's send
    failed with EMSGSIZE, was taken for a child that died, and parent and child each waited
    for the other for ever; reports that large were lost."""
    rules = [{"action": "deny", "dst": [f"10.{i >> 8 & 255}.{i & 255}.0/24"]} for i in range(20000)]
    stage = StageSpec("filter", {"rules": rules})
    async with DeviceBuilder().ipv4("10.240.18.1", 24).build_async() as dev:
        with anyio.fail_after(30):
            async with open_pipeline(
                dev, [stage], dev, workers="processes", statistics_interval=0.05
            ) as p:
                await wait_until(
                    lambda: len(p.statistics().stage("filter").counters) == 20001,
                    "the worker's report of every rule's counter",
                )


async def test_stage_options_that_do_not_pickle_are_a_config_error(netns: testing.Netns) -> None:
    """A rule given as a ``MappingProxyType``: the filter built from it in the parent, but the
    job could not be pickled for the worker — a bare ``TypeError`` from deep in ``_spawn``,
    raised after the child was started (its socket and process left to the garbage collector)."""
    import types

    from tunflow import ConfigError

    stage = StageSpec("filter", {"rules": [types.MappingProxyType({"action": "deny"})]})
    stage.build()  # the options are fine: only pickling them fails
    async with DeviceBuilder().ipv4("10.240.18.1", 24).build_async() as dev:
        before = child_processes()
        fds = set(os.listdir("/proc/self/fd"))
        with anyio.fail_after(10), pytest.raises(ConfigError, match="mappingproxy"):
            async with open_pipeline(dev, [stage], dev, workers="processes"):
                pass
        assert child_processes() == before
        assert set(os.listdir("/proc/self/fd")) == fds


async def test_a_worker_runs_the_parents_tunflow_not_one_where_it_starts(
    netns: testing.Netns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m tunflow.pipeline._worker`` put the working directory first on the child's
    sys.path: started where another checkout lies, the child ran that tunflow (a message
    format of another version, or none at all) — the parent waited on it."""
    fake = tmp_path / "tunflow"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('the tunflow in the working directory')")
    monkeypatch.chdir(tmp_path)
    async with DeviceBuilder().ipv4("10.240.19.1", 24).build_async() as dev:
        with anyio.fail_after(30):
            async with open_pipeline(
                dev, [StageSpec("stats")], dev, workers="processes", statistics_interval=0.05
            ) as p:
                await wait_until(lambda: len(p.statistics().workers) == 1, "the worker's report")
