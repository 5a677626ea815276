"""``ReadWaiter.close`` (and so a dropped ``UDPTransport``'s finalizer) when the loop the fd was
registered with is stopped — not running anywhere, not closed — while another loop runs in the
calling thread: nothing would ever run what is handed to the stopped loop, so the closing is
done at once."""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings
import weakref

from tunflow._readiness import ReadWaiter
from tunflow.transport import UDPTransport


def _registered_on_a_stopped_loop(
    waiter: ReadWaiter, sock: socket.socket
) -> asyncio.AbstractEventLoop:
    """A loop, stopped and left open, that has ``waiter``'s fd registered."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def wait_once() -> None:
        peer.sendto(b"x", sock.getsockname())
        await waiter.wait()  # (the datagram is there already)
        sock.recv(16)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(wait_once())
    finally:
        peer.close()
    assert waiter._registered  # (the wake leaves the fd registered for the next wait)
    return loop


def test_close_from_another_loop_calls_then_when_the_waiters_loop_is_stopped() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    waiter = ReadWaiter(sock.fileno())
    stopped = _registered_on_a_stopped_loop(waiter, sock)
    fd = sock.fileno()
    try:

        async def drop() -> None:
            waiter.close(then=sock.close)

        asyncio.run(drop())
        assert sock.fileno() == -1
        assert fd not in stopped._selector.get_map()  # type: ignore[attr-defined]
    finally:
        sock.close()
        stopped.close()


def test_a_transport_dropped_under_another_loop_closes_its_socket() -> None:
    """A transport that waited on one loop (a helper's run_until_complete) and is dropped while
    another runs: before, its socket stayed open, its port bound, until "ResourceWarning:
    unclosed socket" at exit."""
    transport = UDPTransport.bind(("127.0.0.1", 0))
    sock = transport._socket()
    stopped = asyncio.new_event_loop()
    try:

        async def receive_once(transport: UDPTransport) -> None:
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                # (sent once the receive waits: the wait registers the fd)
                asyncio.get_running_loop().call_later(
                    0.01, peer.sendto, b"x", transport.local_address
                )
                assert (await transport.recv_batch()).to_list() == [b"x"]
            finally:
                peer.close()

        stopped.run_until_complete(receive_once(transport))
        assert transport._reader._registered
        ref = weakref.ref(transport)
        held = [transport]
        del transport

        async def main() -> None:
            held.clear()  # (dropped while this loop runs)
            gc.collect()
            await asyncio.sleep(0)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            asyncio.run(main())
        assert ref() is None
        assert sock.fileno() == -1
        assert [w for w in caught if w.category is ResourceWarning] == []
    finally:
        sock.close()
        stopped.close()


def test_close_in_the_loops_own_thread_does_it_all_at_once() -> None:
    """In the loop's thread "all of it happens now": the fd unregistered and ``then``
    called before ``close`` returns, not handed to the loop for later."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    waiter = ReadWaiter(sock.fileno())
    fd = sock.fileno()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:

        async def main() -> None:
            peer.sendto(b"x", sock.getsockname())
            await waiter.wait()
            sock.recv(16)
            selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
            assert fd in selector.get_map()
            waiter.close(then=sock.close)
            assert sock.fileno() == -1
            assert fd not in selector.get_map()

        asyncio.run(main())
    finally:
        peer.close()
        sock.close()
