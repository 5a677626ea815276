"""``AsyncDevice.into_fd()`` from a worker thread while the loop runs: the loop would let go of
the fd only after it was returned (and could touch it once it was the caller's), so the call
is refused with ``RuntimeError``, and the device carries on as before."""

from __future__ import annotations

import anyio
import pytest

from tests.helpers import udp_payload, udp_send
from tunflow import DeviceBuilder, testing

pytestmark = [pytest.mark.needs_root]


@pytest.mark.anyio
async def test_into_fd_from_a_worker_thread_is_refused(netns: testing.Netns) -> None:
    dev = DeviceBuilder().ipv4("10.61.7.1", 24).build_async()
    async with dev:
        with pytest.raises(RuntimeError, match="event loop's thread"):
            await anyio.to_thread.run_sync(dev.into_fd)
        assert dev.fileno() >= 0
        udp_send("10.61.7.2", 5000, b"still here")
        with anyio.fail_after(10):
            while (udp_payload(await dev.receive()) or (0, 0, b""))[1:] != (5000, b"still here"):
                pass
