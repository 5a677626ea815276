"""A configuration whose transport is bound in another network namespace than its device's, run
by :meth:`Config.open` from a thread that stays in neither."""

from __future__ import annotations

import socket

import anyio
import pytest

from tunflow import DeviceNotFoundError, testing
from tunflow.config import loads_config
from tunflow.platform.linux._netns import current_inode
from tunflow.transport import UDPTransport

from .pipeline_topology import send_udp, wait_until

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]

CONFIG = """
[devices.lan]
name = "{name}"
addresses = ["10.231.0.1/24"]
netns = "{a}"

[transports.wan]
listen = "127.0.0.1:0"
peer = "127.0.0.1:{port}"
netns = "{b}"

[pipeline]
source = "lan"
sink = "wan"
"""


async def test_a_device_in_one_namespace_sends_over_a_transport_bound_in_another(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    """A datagram sent in ``a`` to the device's network is read from the device (made in
    ``a``) and sent by the transport to ``127.0.0.1:PORT`` of ``b``: a loopback address no other
    namespace reaches, so it arrives only when the transport's socket is ``b``'s."""
    a, b = netns_pair
    home = current_inode()
    rx = UDPTransport.bind(("127.0.0.1", 0), netns=b.name)
    async with rx:
        name = testing.unique_name("cfg")
        config = loads_config(
            CONFIG.format(name=name, a=a.name, b=b.name, port=rx.local_address[1])
        )
        got: list[bytes] = []

        async def receive() -> None:
            while True:
                got.extend((await rx.recv_batch()).to_list())

        async with config.open(), anyio.create_task_group() as tg:
            assert current_inode() == home
            assert name in [link["ifname"] for link in a.ip_json("link", "show")]
            tg.start_soon(receive)

            def sent_and_arrived() -> bool:
                send_udp(a, "10.231.0.2", 9, [b"through two namespaces"])
                return any(p.endswith(b"through two namespaces") for p in got)

            await wait_until(sent_and_arrived, "the datagram at b's 127.0.0.1", step=0.1)
            tg.cancel_scope.cancel()
    packet = next(p for p in got if p.endswith(b"through two namespaces"))
    assert packet[0] >> 4 == 4 and socket.inet_ntoa(packet[16:20]) == "10.231.0.2"
    assert name not in [link["ifname"] for link in a.ip_json("link", "show")]


async def test_a_transport_in_a_namespace_that_is_not_there_fails_to_open(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    """The device already made is closed again; the error names the namespace's path."""
    a, _ = netns_pair
    name = testing.unique_name("cfg")
    missing = testing.unique_name("non")
    config = loads_config(CONFIG.format(name=name, a=a.name, b=missing, port=9))
    with pytest.raises(DeviceNotFoundError, match=f"/run/netns/{missing}"):
        async with config.open():
            raise AssertionError("opened")
    assert name not in [link["ifname"] for link in a.ip_json("link", "show")]
