"""Send or receive N bytes over TCP and print their SHA-256: a byte-identity witness.

    python tests/tcp_transfer.py server ADDRESS PORT        # prints "ready", then "<bytes> <sha256>"
    python tests/tcp_transfer.py client ADDRESS PORT BYTES  # prints "<bytes> <sha256>" of what it sent

Every MiB of the stream is different (seeded by its index), so a reordered, duplicated or
dropped block changes the hash.
"""

from __future__ import annotations

import hashlib
import random
import socket
import sys

BLOCK = 1 << 20


def block(i: int) -> bytes:
    return random.Random(i).randbytes(BLOCK)


def server(address: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        s.listen(1)
        s.settimeout(60)
        print("ready", flush=True)
        conn, _ = s.accept()
        conn.settimeout(60)
        digest = hashlib.sha256()
        total = 0
        buf = bytearray(1 << 18)
        view = memoryview(buf)
        with conn:
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                digest.update(view[:n])
                total += n
    print(total, digest.hexdigest(), flush=True)


def client(address: str, port: int, nbytes: int) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    digest = hashlib.sha256()
    sent = 0
    with socket.create_connection((address, port), timeout=60) as s:
        i = 0
        while sent < nbytes:
            data = block(i)[: nbytes - sent]
            s.sendall(data)
            digest.update(data)
            sent += len(data)
            i += 1
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    del family
    print(sent, digest.hexdigest(), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
