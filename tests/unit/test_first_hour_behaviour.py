"""What a new user meets in the first hour — the natural mistakes (a port taken, a peer with no
route, a typo in a namespace's name) — and whether the error says which thing was wrong."""

from __future__ import annotations

import errno
import socket
import sys

import pytest

from tunflow import DeviceNotFoundError
from tunflow.transport import UDPTransport
from tunflow.wireguard import InterfaceConfig, PrivateKey, open_interface


class _Unreachable(socket.socket):
    """A socket with no route to any peer (ENETUNREACH on connect)."""

    def connect(self, address: object) -> None:
        raise OSError(errno.ENETUNREACH, "Network is unreachable")


def test_a_port_in_use_names_the_address() -> None:
    # `tunflow run` printed "tunflow: [Errno 98] Address already in use", naming no transport
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as caught:
            UDPTransport.bind(f"127.0.0.1:{port}")
    assert caught.value.errno == errno.EADDRINUSE
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "Address already in use" in str(caught.value)


def test_a_peer_without_a_route_is_named() -> None:
    with _Unreachable(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(OSError) as caught:
            UDPTransport.from_socket(sock, peer=("192.0.2.7", 7000))
        assert sock.fileno() != -1  # the caller's socket stays the caller's
    assert caught.value.errno == errno.ENETUNREACH
    assert "192.0.2.7:7000" in str(caught.value)


@pytest.mark.anyio
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="network namespaces: Linux")
async def test_a_misspelt_namespace_is_named_as_for_a_device() -> None:
    # DeviceBuilder().netns("vpx") said DeviceNotFoundError "no network namespace at
    # /run/netns/vpx"; open_interface(netns="vpx") let a bare FileNotFoundError out of setns
    config = InterfaceConfig(PrivateKey.generate(), listen_port=0)
    with pytest.raises(DeviceNotFoundError, match="no network namespace at /run/netns/tf-no"):
        async with open_interface(config, name="tfnons0", netns="tf-no-such-namespace"):
            pass
