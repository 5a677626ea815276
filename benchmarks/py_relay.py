"""The floor for a tunnel written in Python: a bare relay, TUN ↔ ChaCha20-Poly1305 ↔ UDP.

Not a VPN — no handshake (a fixed all-zero key), no replay window, no routing, no batches, one
peer — only what every packet of a WireGuard-mode tunnel costs at the least: one read, one
AEAD call and one write or send per packet, in CPython with ``cryptography``. It exists so
``benchmarks/vpn.py`` can show, in the same run, how much of tunflow's round trip is Python
itself and how much is tunflow's own code (candidates ``py-relay`` and ``py-relay-tasks``).

Modes:

* ``blocking`` — one thread, ``epoll``, blocking calls: the least a CPython process can do.
* ``tasks`` — two anyio tasks on uvloop, each waiting for its fd with tunflow's
  :class:`~tunflow._readiness.ReadWaiter` and relaying what is there: the cost of waking a task
  instead of running a callback, as tunflow's pipeline lanes do under load.
* ``callbacks`` — uvloop's reader callbacks relaying what is there, no task woken: what
  tunflow's lanes do with a packet at rest (``ReadWaiter.serve``).

Run (root; ``benchmarks/vpn.py`` does): ``python benchmarks/py_relay.py MODE TUN LOCAL PEER``
in each namespace, then give the TUN an address and bring it up.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

PORT = 51820
_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000
_HEADER = struct.Struct("<IIQ")  # a WireGuard transport message's header
_MESSAGE_TRANSPORT = 4


def main() -> None:
    mode, name, local, peer = sys.argv[1:5]
    tun = os.open("/dev/net/tun", os.O_RDWR | (os.O_NONBLOCK if mode != "blocking" else 0))
    fcntl.ioctl(tun, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((local, PORT))
    sock.connect((peer, PORT))
    aead = ChaCha20Poly1305(bytes(32))
    pack, unpack = _HEADER.pack, _HEADER.unpack_from
    sent = 0

    def outbound() -> None:
        nonlocal sent
        while True:
            try:
                packet = os.read(tun, 2048)
            except BlockingIOError:
                return
            sent += 1
            nonce = b"\0\0\0\0" + sent.to_bytes(8, "little")
            sock.send(pack(_MESSAGE_TRANSPORT, 0, sent) + aead.encrypt(nonce, packet, None))
            if mode == "blocking":
                return

    def inbound() -> None:
        while True:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                return
            counter = unpack(data)[2]
            nonce = b"\0\0\0\0" + counter.to_bytes(8, "little")
            os.write(tun, aead.decrypt(nonce, data[_HEADER.size :], None))
            if mode == "blocking":
                return

    if mode == "blocking":
        poll = select.epoll()
        poll.register(tun, select.EPOLLIN)
        poll.register(sock.fileno(), select.EPOLLIN)
        while True:
            for fd, _events in poll.poll():
                outbound() if fd == tun else inbound()
    elif mode == "tasks":
        import anyio

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tunflow._readiness import ReadWaiter

        sock.setblocking(False)

        async def lane(fd: int, relay: Callable[[], None]) -> None:
            waiter = ReadWaiter(fd)
            while True:
                await waiter.wait()
                relay()

        async def run() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lane, tun, outbound)
                tg.start_soon(lane, sock.fileno(), inbound)

        anyio.run(run, backend="asyncio", backend_options={"use_uvloop": True})
    elif mode == "callbacks":
        import asyncio

        import uvloop

        sock.setblocking(False)

        async def serve() -> None:
            loop = asyncio.get_running_loop()
            loop.add_reader(tun, outbound)
            loop.add_reader(sock.fileno(), inbound)
            await asyncio.Event().wait()

        uvloop.run(serve())
    else:
        raise SystemExit(f"unknown mode {mode!r} (blocking, tasks or callbacks)")


if __name__ == "__main__":
    main()
