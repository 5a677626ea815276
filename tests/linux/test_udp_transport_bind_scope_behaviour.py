"""``UDPTransport.bind`` on a link-local address with its scope (``"[fe80::1%eth0]:port"``): the
scope names an interface of the socket's namespace, as a peer's scope does."""

from __future__ import annotations

import errno

import anyio
import pytest

from tunflow import testing
from tunflow.transport import DatagramBatch, UDPTransport

pytestmark = pytest.mark.needs_root


def _link_local_pair(ns: testing.Netns) -> None:
    """lk0 (fe80::99) and lk1 (fe80::98), the two ends of a veth pair in ``ns``."""
    ns.run("ip", "link", "add", "lk0", "type", "veth", "peer", "name", "lk1")
    for link, address in (("lk0", "fe80::99/64"), ("lk1", "fe80::98/64")):
        ns.run("ip", "-6", "addr", "add", address, "dev", link, "nodad")
        ns.run("ip", "link", "set", link, "up")


@pytest.mark.anyio
@pytest.mark.parametrize("by", ["name", "index"])
async def test_a_scoped_link_local_address_in_another_namespace_is_bound_there(
    netns_pair: tuple[testing.Netns, testing.Netns], by: str
) -> None:
    """The scope is looked up where the socket is (lk0 exists only in ``a``); before, bind
    gave EINVAL (the scope dropped) whether the namespace was entered or not."""
    a, _ = netns_pair
    _link_local_pair(a)
    scope = "lk0" if by == "name" else str(a.ip_json("link", "show", "lk0")[0]["ifindex"])
    rx = UDPTransport.bind(f"[fe80::99%{scope}]:0", netns=a.name)
    async with rx:
        port = rx.local_address[1]
        async with UDPTransport.bind(
            "[fe80::98%lk1]:0", peer=f"[fe80::99%lk1]:{port}", netns=a.name
        ) as tx:
            out = DatagramBatch()
            out.append(b"on the link")
            with anyio.fail_after(10):
                assert await tx.send_batch(out) == 1
                got = await rx.recv_batch()
            assert got.to_list() == [b"on the link"]
            assert got.addresses == [("fe80::98%lk0", tx.local_address[1])]


def test_a_scope_that_names_no_interface_there_is_enodev(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    a, _ = netns_pair
    _link_local_pair(a)
    for scope in ("nosuch0", "x" * 16):
        with pytest.raises(OSError) as info:
            UDPTransport.bind(f"[fe80::99%{scope}]:0", netns=a.name)
        assert info.value.errno == errno.ENODEV
        assert f"no interface {scope!r}" in str(info.value)
