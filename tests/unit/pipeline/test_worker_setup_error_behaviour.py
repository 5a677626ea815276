"""A worker process whose set-up fails with an error other than a configuration one (its
port's fd refused by the OS, say) reports that error to the parent, with its class, instead
of dying with "exited without reporting". ``_run`` is driven in this process over a socket
pair, as the worker's ``main`` drives it."""

from __future__ import annotations

import socket

import anyio
import pytest

from tunflow.pipeline._ports import PortHandle
from tunflow.pipeline._processes import receive_message
from tunflow.pipeline._worker import _run


@pytest.mark.anyio
async def test_a_port_that_cannot_be_opened_is_reported_with_its_class() -> None:
    bad = 1 << 20  # (above any open fd: the OS refuses it, EBADF)
    job = {
        "index": 0,
        "name": "p",
        "handles": [PortHandle("device", bad, "tun0/0", {"layer": "tun"})],
        "lanes": [],
        "stages": [],
        "on_error": "stop",
        "buffer": 0,
        "interval": 1.0,
    }
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with parent, child:
        parent.setblocking(False)
        child.setblocking(False)
        with anyio.fail_after(10):
            status = await _run(child, job)
            message = await receive_message(parent, [])
    assert status == 1
    assert message[:2] == ("error", "worker")
    assert "DeviceError" in message[2]
    assert message[4] == ("tunflow.errors", "DeviceError")
