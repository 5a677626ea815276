"""A worker process that cannot enter the parent's network namespace (the OS refuses the
namespace fd) reports that to the parent, with the error's class, instead of dying with
"exited without reporting". ``main`` runs in this process over a socket pair, with a
namespace fd the OS refuses (so this process stays where it is)."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sys

from tunflow.pipeline._processes import _chunks, receive_message_blocking
from tunflow.pipeline._worker import main


def test_a_namespace_the_worker_cannot_enter_is_reported() -> None:
    job = {"netns_fd": 1 << 20}  # (above any open fd: EBADF)
    envelope = {"sys_path": list(sys.path), "job": pickle.dumps(job)}
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        for chunk in _chunks(envelope):
            parent.send(chunk)
        status = main([str(os.dup(child.fileno()))])
        parent.settimeout(10)
        message = receive_message_blocking(parent)
    finally:
        signal.signal(signal.SIGINT, sigint)
        parent.close()
        child.close()
    assert status == 1
    assert message[:2] == ("error", "worker")
    assert "network namespace" in message[2] and "Bad file descriptor" in message[2]
    assert message[4] == ("builtins", "OSError")
