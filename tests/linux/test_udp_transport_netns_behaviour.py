"""``UDPTransport.bind(netns=)``: a socket made in another network namespace, the calling thread
in it for the ``socket()`` call only, with the builder's errors for one it cannot enter."""

from __future__ import annotations

import errno
import gc
import os
import socket
import warnings

import anyio
import pytest

from tests.helpers import ROOT, run_without_caps
from tunflow import (
    ConfigError,
    DeviceNotFoundError,
    DevicePermissionError,
    UnsupportedError,
    testing,
)
from tunflow.platform.linux._netns import current_inode
from tunflow.transport import DatagramBatch, UDPTransport, udp as udp_module

pytestmark = pytest.mark.needs_root


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.anyio
async def test_transports_bound_in_two_namespaces_talk_over_a_veth_pair(
    netns_pair: tuple[testing.Netns, testing.Netns], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each end's address exists only in its own namespace (bound elsewhere: EADDRNOTAVAIL);
    one namespace is given by name, the other by path. The calling thread (the event loop's)
    stays home: the bind and the connect run where it was."""
    a, b = netns_pair
    testing.veth_pair(a, b, "192.168.97.1/24", "192.168.97.2/24")
    home = current_inode()
    seen: list[int] = []
    real_bind = socket.socket.bind

    def bind(sock: socket.socket, address: object) -> None:
        seen.append(current_inode())
        real_bind(sock, address)

    monkeypatch.setattr(socket.socket, "bind", bind)
    rx = UDPTransport.bind(("192.168.97.2", 0), netns=b.name)
    async with rx:
        port = rx.local_address[1]
        tx = UDPTransport.bind(
            "192.168.97.1:0", peer=f"192.168.97.2:{port}", netns=f"/run/netns/{a.name}"
        )
        async with tx:
            assert seen == [home, home]
            assert current_inode() == home
            out = DatagramBatch()
            out.append(b"over the veth")
            with anyio.fail_after(10):
                assert await tx.send_batch(out) == 1
                got = await rx.recv_batch()
            assert got.to_list() == [b"over the veth"]
            assert got.addresses == [tx.local_address]
    with pytest.raises(OSError) as info:
        UDPTransport.bind(("192.168.97.2", 0))  # (not an address of this namespace)
    assert not isinstance(info.value, ConfigError)


def test_the_namespace_name_is_the_one_the_socket_keeps(
    netns: testing.Netns, netns_pair: tuple[testing.Netns, testing.Netns]
) -> None:
    """The port taken in ``a`` is free here and in ``b`` (three separate port spaces; "here" a
    namespace of its own, where no other program holds that port)."""
    a, b = netns_pair
    first = UDPTransport.bind(("127.0.0.1", 0), netns=a.name)
    try:
        port = first.local_address[1]
        with pytest.raises(OSError) as info:
            UDPTransport.bind(("127.0.0.1", port), netns=a.name)
        assert info.value.errno == errno.EADDRINUSE
        for where in (b.name, None):
            other = UDPTransport.bind(("127.0.0.1", port), netns=where)
            anyio.run(other.aclose)
    finally:
        anyio.run(first.aclose)


@pytest.mark.parametrize(
    "netns",
    ["", ".", "..", "ns\0", 5, b"ns"],
    ids=["empty", "dot", "dotdot", "nul", "int", "bytes"],
)
def test_a_value_that_is_no_namespace_name_or_path_is_a_config_error(netns: object) -> None:
    before = _open_fds()
    with pytest.raises(ConfigError, match="netns must be a namespace name or path"):
        UDPTransport.bind(("127.0.0.1", 0), netns=netns)  # type: ignore[arg-type]
    assert _open_fds() == before


def test_a_namespace_that_does_not_exist_is_the_builders_not_found_error() -> None:
    name = testing.unique_name("nx")
    before = _open_fds()
    home = current_inode()
    with pytest.raises(DeviceNotFoundError, match=f"no network namespace at /run/netns/{name}"):
        UDPTransport.bind(("127.0.0.1", 0), netns=name)
    assert _open_fds() == before
    assert current_inode() == home


def test_a_file_that_is_no_network_namespace_is_a_config_error() -> None:
    before = _open_fds()
    home = current_inode()
    for path in ("/proc/self/ns/uts", "/etc/hostname"):
        with pytest.raises(ConfigError, match="is not a network namespace"):
            UDPTransport.bind(("127.0.0.1", 0), netns=path)
    assert _open_fds() == before
    assert current_inode() == home


def test_without_cap_sys_admin_entering_is_the_builders_permission_error(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    a, b = netns_pair
    code = (
        "from tunflow import DevicePermissionError\n"
        "from tunflow.transport import UDPTransport\n"
        "try:\n"
        f"    UDPTransport.bind(('127.0.0.1', 0), netns={b.name!r})\n"
        "except DevicePermissionError as e:\n"
        "    print('refused', e.errno, 'CAP_SYS_ADMIN' in str(e))\n"
        "else:\n"
        "    print('bound')\n"
    )
    done = run_without_caps(a, code, cwd=ROOT, drop="-sys_admin")
    assert done.stdout.split() == ["refused", "1", "True"], done.stderr
    assert issubclass(DevicePermissionError, PermissionError)


def test_off_linux_a_namespace_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udp_module, "_LINUX", False)
    before = _open_fds()
    with pytest.raises(UnsupportedError, match="Linux only"):
        UDPTransport.bind(("127.0.0.1", 0), netns="vpn")
    assert _open_fds() == before


def test_a_bind_that_fails_in_the_namespace_closes_its_socket(
    netns: testing.Netns, netns_pair: tuple[testing.Netns, testing.Netns]
) -> None:
    """The socket made in the namespace, then the bind refused: closed at once, no fd left
    and no ResourceWarning for it later. (The address is one of the caller's namespace: a
    socket made there would bind.)"""
    a, _ = netns_pair
    netns.run("ip", "addr", "add", "192.0.2.1/32", "dev", "lo")
    before = _open_fds()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with pytest.raises(OSError, match=r"bind 192\.0\.2\.1"):
            UDPTransport.bind(("192.0.2.1", 0), netns=a.name)  # (no such address there)
        gc.collect()
    assert _open_fds() == before
