"""The floor for a tunnel written in Python: a bare relay, TUN ↔ AEAD ↔ UDP.

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
* ``native`` — the floor of tunflow's *native mode*: the TUN device with the virtio-net header
  and TSO, so a read is a whole super-packet; one AES-256-GCM call per super-packet; the
  sealed message cut into 1452-byte fragments, each with a 20-byte header, as native mode's
  wire format cuts them, sent with ``UDP_SEGMENT`` from a gathered list (header, chunk,
  header, chunk …) and received with ``UDP_GRO`` into a scattered one, so the ciphertext lands
  contiguous — what native mode does, without its handshake, replay window, routing, batches
  or event loop (blocking, ``epoll``, as ``blocking``).
* ``native-flat`` — the same with one 20-byte header per *message*, not per fragment: the
  sealed message is one contiguous buffer, sent from one piece and received into one. What
  the per-fragment headers (which let a receiver reassemble fragments that come apart or out
  of order) cost in the gather and scatter calls. Not a format tunflow speaks.

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
    if mode in ("native", "native-flat"):
        _native(name, local, peer, flat=mode == "native-flat")
        return
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
        _epoll_relay(tun, sock, outbound, inbound)
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


_IFF_VNET_HDR = 0x4000
_TUNSETOFFLOAD = 0x400454D0
_TUN_F_CSUM, _TUN_F_TSO4, _TUN_F_TSO6 = 0x01, 0x02, 0x04
_SOL_UDP, _UDP_SEGMENT, _UDP_GRO = 17, 103, 104
_FRAGMENT = 1452  # 1500 (the veth) - 20 (IPv4) - 8 (UDP), as native mode picks it
_NATIVE_HEADER = struct.Struct("<BBBBIQHH")  # native mode's fragment header (20 bytes)
_HSIZE = _NATIVE_HEADER.size
_CHUNK = _FRAGMENT - _HSIZE
_PER_SEND = 65507 // _FRAGMENT  # fragments in one UDP_SEGMENT send


def _native(name: str, local: str, peer: str, *, flat: bool) -> None:
    """Relay super-packets: one read, one AES-GCM call, one (rarely two) gathered sends each."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    tun = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    flags = _IFF_TUN | _IFF_NO_PI | _IFF_VNET_HDR
    fcntl.ioctl(tun, _TUNSETIFF, struct.pack("16sH", name.encode(), flags))
    fcntl.ioctl(tun, _TUNSETOFFLOAD, _TUN_F_CSUM | _TUN_F_TSO4 | _TUN_F_TSO6)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((local, PORT))
    sock.connect((peer, PORT))
    sock.setblocking(False)
    sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    aead = AESGCM(bytes(32))
    seal, open_ = aead.encrypt_into, aead.decrypt_into
    size = 10 + 65535 + 16  # virtio-net header, the largest super-packet, the tag
    plain, sealed = memoryview(bytearray(size)), memoryview(bytearray(_HSIZE + size))
    got, opened = memoryview(bytearray(_HSIZE + size + 4096)), memoryview(bytearray(size))
    headers = memoryview(bytearray(_HSIZE * 64))
    segment = [(_SOL_UDP, _UDP_SEGMENT, struct.pack("=H", _FRAGMENT))]
    nonce, counter_at = bytearray(12), struct.Struct("<Q")
    body = sealed[_HSIZE:] if flat else sealed
    # where a scattered read puts a GRO batch of whole fragments: headers apart, chunks together
    scatter = [
        part
        for k in range(64)
        for part in (headers[k * _HSIZE : (k + 1) * _HSIZE], got[k * _CHUNK : (k + 1) * _CHUNK])
    ]
    gathers: dict[int, list[list[memoryview]]] = {}
    sent = 0

    def gathered(length: int) -> list[list[memoryview]]:
        # the parts of a message of ``length`` sealed bytes, one list per send (cached)
        parts = gathers.get(length)
        if parts is None:
            count = -(-length // _CHUNK)
            flatparts = [
                part
                for k in range(count)
                for part in (
                    headers[k * _HSIZE : (k + 1) * _HSIZE],
                    sealed[k * _CHUNK : min((k + 1) * _CHUNK, length)],
                )
            ]
            step = 2 * _PER_SEND
            parts = gathers[length] = [
                flatparts[i : i + step] for i in range(0, len(flatparts), step)
            ]
        return parts

    def outbound() -> None:
        nonlocal sent
        while True:
            try:
                n = os.readv(tun, [plain])
            except BlockingIOError:
                return
            sent += 1
            counter_at.pack_into(nonce, 4, sent)
            seal(nonce, plain[:n], None, body[: n + 16])
            length = n + 16
            if flat:
                _NATIVE_HEADER.pack_into(sealed, 0, 0x7F, 0, 0, 1, length, sent, 0, 0)
                length += _HSIZE
                for start in range(0, length, _PER_SEND * _FRAGMENT):
                    piece = sealed[start : min(length, start + _PER_SEND * _FRAGMENT)]
                    sock.sendmsg([piece], segment if len(piece) > _FRAGMENT else [])
            else:
                count = -(-length // _CHUNK)
                header = _NATIVE_HEADER.pack(0x7F, 0, count, 1, 0, sent, _CHUNK, 0)
                headers[: _HSIZE * count] = header * count
                headers[1 : _HSIZE * count : _HSIZE] = bytes(range(count))
                for parts in gathered(length):
                    sock.sendmsg(parts, segment if len(parts) > 2 else [])

    pending = bytearray()  # a message that came in two reads (the largest super-packets)

    # A read is one message, or the first or second half of the largest. That holds here:
    # a message goes out in one or two UDP_SEGMENT sends, a small one alone, and the veth
    # does no GRO of its own, so a read never merges two messages (checked: every ACK
    # read at one end is written at the other). tunflow's transport does not rely on it.
    def inbound() -> None:
        while True:
            try:
                n = sock.recv_into(got) if flat else sock.recvmsg_into(scatter)[0]
            except BlockingIOError:
                return
            if flat:
                data = got[:n]
                if pending or _NATIVE_HEADER.unpack_from(got)[4] + _HSIZE > n:
                    pending.extend(data)
                    length = _NATIVE_HEADER.unpack_from(pending)[4]
                    if len(pending) < length + _HSIZE:
                        continue
                    data = memoryview(bytes(pending))[: length + _HSIZE]
                    pending.clear()
                counter = _NATIVE_HEADER.unpack_from(data)[5]
                ciphertext = data[_HSIZE:]
            else:
                fragments = -(-n // _FRAGMENT)
                (_t, index, count, _v, _r, counter, _c, _z) = _NATIVE_HEADER.unpack_from(headers)
                chunks = n - _HSIZE * fragments
                if fragments < count:  # the first of two reads: keep its chunks
                    pending[:] = got[:chunks]
                    continue
                if index:  # the second: the first's chunks, then these
                    pending.extend(got[:chunks])
                    ciphertext = memoryview(bytes(pending))
                    pending.clear()
                else:
                    ciphertext = got[:chunks]
            counter_at.pack_into(nonce, 4, counter)
            try:
                open_(nonce, ciphertext, None, opened[: len(ciphertext) - 16])
            except InvalidTag:  # a floor: what does not open is dropped
                continue
            os.write(tun, opened[: len(ciphertext) - 16])

    _epoll_relay(tun, sock, outbound, inbound)


def _epoll_relay(
    tun: int, sock: socket.socket, outbound: Callable[[], None], inbound: Callable[[], None]
) -> None:
    """Relay forever: one blocking ``epoll`` over both, each readable side's relay called."""
    poll = select.epoll()
    poll.register(tun, select.EPOLLIN)
    poll.register(sock.fileno(), select.EPOLLIN)
    while True:
        for fd, _events in poll.poll():
            outbound() if fd == tun else inbound()


if __name__ == "__main__":
    main()
