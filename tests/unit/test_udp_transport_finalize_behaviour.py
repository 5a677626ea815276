"""A ``UDPTransport`` dropped without ``aclose()`` closes its socket itself — after the event
loop let go of the fd — also when it is collected in a reference cycle (a traceback's frames,
an object that refers to itself): no ``ResourceWarning: unclosed socket``, at once or at exit."""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import sys
import warnings
import weakref

import anyio
import anyio.lowlevel
import pytest

from tests.helpers import ROOT
from tunflow.transport import DatagramBatch, UDPTransport

pytestmark = pytest.mark.anyio


class _Holder:
    """Something of the user's that keeps a transport and is in a cycle with itself."""

    def __init__(self, transport: UDPTransport) -> None:
        self.transport = transport
        self.me = self


async def test_a_transport_collected_in_a_cycle_closes_its_socket_without_a_warning() -> None:
    """gc finalizes the objects of a cycle in no set order: the socket's own finalizer ran
    before the transport's ``__del__`` ("unclosed socket"; the fd closed while an asyncio loop
    still had it registered for reads)."""
    rx = UDPTransport.bind(("127.0.0.1", 0))
    async with UDPTransport.bind(("127.0.0.1", 0), peer=rx.local_address) as tx:
        out = DatagramBatch()
        out.append(b"x")
        await tx.send_batch(out)
        with anyio.fail_after(10):
            assert (await rx.recv_batch()).to_list() == [b"x"]
        with anyio.move_on_after(0.01):  # (a wait that registered the fd, on asyncio)
            await rx.recv_batch()
        socks = [weakref.ref(rx._socket())]
        _Holder(rx)
        del rx
        for _ in range(3):  # (and some made and dropped at once)
            socks.append(
                weakref.ref(_Holder(UDPTransport.bind(("127.0.0.1", 0))).me.transport._socket())
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                gc.collect()
                await anyio.lowlevel.checkpoint()
        assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
        for ref in socks:
            left = ref()
            assert left is None or left.fileno() == -1


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_transport_left_in_a_cycle_at_exit_gives_no_warning(backend: str) -> None:
    code = f"""
import anyio
from tunflow.transport import UDPTransport

class Holder:
    def __init__(self, transport):
        self.transport, self.me = transport, self

async def main():
    for _ in range(3):
        Holder(UDPTransport.bind(("127.0.0.1", 0)))
    kept.append(Holder(UDPTransport.bind(("127.0.0.1", 0))))
    await anyio.sleep(0)

kept = []
anyio.run(main, backend={backend!r})
"""
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "unclosed" not in done.stderr and "ResourceWarning" not in done.stderr, done.stderr


def test_a_socket_the_constructor_refuses_stays_the_callers() -> None:
    """(What the finalizer covers starts with a made transport.)"""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(ValueError):
            UDPTransport(sock, max_packets=0)
        gc.collect()
        assert sock.fileno() >= 0
    finally:
        sock.close()


def test_a_dropped_transport_is_let_go_of_by_the_loop_before_its_fd_is_closed() -> None:
    """Collected while its asyncio loop runs (with the fd registered between waits): the
    loop forgets the fd first, then the socket is closed — else the number, free at once,
    goes to the next socket, and a wait on it only updates the loop's stale entry: never
    woken."""

    async def main() -> None:
        selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
        dropped = UDPTransport.bind(("127.0.0.1", 0))
        with anyio.move_on_after(0.01):  # (a wait that registers the fd)
            await dropped.recv_batch()
        fd = dropped.fileno()
        assert fd in selector.get_map()
        _Holder(dropped)
        del dropped
        gc.collect()
        await asyncio.sleep(0)
        assert fd not in selector.get_map()
        async with UDPTransport.bind(("127.0.0.1", 0)) as again:
            assert again.fileno() == fd  # (the lowest free number)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                # (sent once the receive waits)
                asyncio.get_running_loop().call_later(0.05, peer.sendto, b"y", again.local_address)
                with anyio.fail_after(5):
                    assert (await again.recv_batch()).to_list() == [b"y"]

    asyncio.run(main())
