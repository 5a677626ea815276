"""The forwarder topology for pipeline tests: two namespaces, each reaching the other only
through its own TUN; the test process joins the two TUNs with a pipeline.

    ns a: tun A 10.201.1.1/24, fd21:1::1/64, routes 10.201.2.0/24, fd21:2::/64 into A
    ns b: tun B 10.201.2.1/24, fd21:2::1/64, routes 10.201.1.0/24, fd21:1::/64 into B
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio

from tunflow import AsyncDevice, DeviceBuilder, testing

T = TypeVar("T")

A4, B4 = "10.201.1.1", "10.201.2.1"


def builder(
    ns: testing.Netns, side: str, *, offload: bool = False, queues: int = 1
) -> DeviceBuilder:
    mine, theirs = ("1", "2") if side == "a" else ("2", "1")
    b = (
        DeviceBuilder()
        .netns(ns.name)
        .name(testing.unique_name(side))
        .ipv4(f"10.201.{mine}.1", 24)
        .ipv6(f"fd21:{mine}::1", 64)
        .route(f"10.201.{theirs}.0/24")
        .route(f"fd21:{theirs}::/64")
        .tx_queue_len(1000)
    )
    if offload:
        b = b.offload(True)
    if queues > 1:
        b = b.multi_queue(True)
    return b


@contextlib.asynccontextmanager
async def devices(
    a: testing.Netns, b: testing.Netns, *, offload: bool = False, queues: int = 1
) -> AsyncIterator[tuple[list[AsyncDevice], list[AsyncDevice]]]:
    """Queues of A (in ns a) and of B (in ns b), every one closed on the way out — also those
    already open when a later one fails to open."""
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for ns, side in ((a, "a"), (b, "b")):
            first = builder(ns, side, offload=offload, queues=queues).build_async()
            stack.push_async_callback(first.aclose)
            qs = [first]
            for _ in range(queues - 1):
                q = await first.try_clone()  # the device opens it in its namespace
                stack.push_async_callback(q.aclose)
                qs.append(q)
            out.append(qs)
        yield out[0], out[1]


async def wait_until(
    predicate: Callable[[], bool], what: str, timeout: float = 30.0, step: float = 0.02
) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds (generous:
    it bounds a failure, a passing test waits only as long as the traffic takes)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(step)


def in_netns(ns: testing.Netns, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a new thread inside ``ns``; return its result (or raise)."""
    result: list[Any] = []

    def target() -> None:
        try:
            with ns.entered():
                result.append((True, fn(*args)))
        except BaseException as exc:
            result.append((False, exc))

    t = threading.Thread(target=target)
    t.start()
    t.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


class Receiver:
    """UDP sockets bound in a namespace, read by a thread until stopped."""

    def __init__(self, ns: testing.Netns, ports: list[int], host: str = "0.0.0.0") -> None:
        self.ns = ns
        self.got: dict[int, list[tuple[float, bytes]]] = {p: [] for p in ports}
        self._socks = in_netns(ns, self._open, host, ports)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    @staticmethod
    def _open(host: str, ports: list[int]) -> list[socket.socket]:
        socks = []
        for p in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((host, p))
            s.settimeout(0.05)
            socks.append(s)
        return socks

    def _run(self) -> None:
        import select

        while not self._stop.is_set():
            ready, _, _ = select.select(self._socks, [], [], 0.05)
            for s in ready:
                try:
                    data = s.recv(65535)
                except OSError:
                    continue
                self.got[s.getsockname()[1]].append((time.monotonic(), data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for s in self._socks:
            s.close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PacedSender:
    """UDP datagrams sent from a thread inside ``ns`` at ``pps`` a second on average, until the
    ``with`` block ends. After a stall (a busy machine) it catches up, so the load it offers is
    delayed but not reduced; :attr:`sent` counts what it sent."""

    def __init__(self, ns: testing.Netns, dst: str, port: int, payload: bytes, pps: float) -> None:
        self._ns, self._dst, self._port, self._payload, self._pps = ns, dst, port, payload, pps
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self.sent = 0

    def _run(self) -> None:
        with self._ns.entered(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            start = time.monotonic()
            while not self._stop.is_set():
                due = int((time.monotonic() - start) * self._pps)
                while self.sent < due:
                    try:
                        s.sendto(self._payload, (self._dst, self._port))
                    except OSError:  # the TUN's queue is full: the pipeline is behind
                        pass
                    self.sent += 1
                time.sleep(0.002)

    def __enter__(self) -> PacedSender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def send_udp(
    ns: testing.Netns, dst: str, port: int, payloads: list[bytes], gap: float = 0.0
) -> None:
    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for p in payloads:
                s.sendto(p, (dst, port))
                if gap:
                    time.sleep(gap)

    in_netns(ns, send)


def tcp_transfer(
    a: testing.Netns, b: testing.Netns, data: bytes, port: int = 5201, timeout: float = 60
) -> str:
    """Send ``data`` over TCP from ns a to B's address in ns b; the sha256 the server saw."""
    server = in_netns(b, _listen, port)
    digest: list[str] = []

    def serve() -> None:
        server.settimeout(timeout)
        conn, _ = server.accept()
        h = hashlib.sha256()
        with conn:
            conn.settimeout(timeout)
            while chunk := conn.recv(1 << 20):
                h.update(chunk)
        digest.append(h.hexdigest())

    t = threading.Thread(target=serve)
    t.start()
    try:

        def client() -> None:
            with socket.create_connection((B4, port), timeout=timeout) as c:
                c.sendall(data)

        in_netns(a, client)
    finally:
        t.join(timeout)
        server.close()
    return digest[0]


def _listen(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((B4, port))
    s.listen(1)
    return s


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
