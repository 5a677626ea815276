"""RtNetlink and LinkWatch where the kernel's answer is not the common one: an older kernel
without strict dump checking, an ack or a dump cut short or interrupted, notifications dropped,
a link deleted, a removal that must not widen into "any metric". Real kernel, throw-away
namespace; a spy around the socket counts and shapes what passes.
"""

from __future__ import annotations

import errno
import socket
import struct
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest

from tests.linux.conftest import Link
from tests.linux.test_netlink import ip_link, ip_routes, missing_index
from tunflow import testing
from tunflow.netconfig import rtnetlink as rt
from tunflow.platform.linux.netlink import LinkWatch, RtNetlink

pytestmark = pytest.mark.needs_root


class Spy:
    """Stands in for an RtNetlink's socket: passes everything to the real one, keeps the
    requests sent, and marks the first ``interrupt`` dumps ``NLM_F_DUMP_INTR``."""

    def __init__(self, sock: socket.socket, interrupt: int = 0) -> None:
        self.sock = sock
        self.sent: list[bytes] = []
        self.interrupt = interrupt

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return self.sock.send(data)

    def recv_into(self, buf: bytearray, nbytes: int, flags: int) -> int:
        n = self.sock.recv_into(buf, nbytes, flags)
        if self.interrupt and n <= len(buf):
            offset = 0
            while offset + 16 <= n:
                length, type_, msg_flags = struct.unpack_from("=IHH", buf, offset)
                struct.pack_into("=H", buf, offset + 6, msg_flags | rt.NLM_F_DUMP_INTR)
                if type_ == rt.NLMSG_DONE:
                    self.interrupt -= 1
                offset += (length + 3) & ~3
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def spy_on(nl: RtNetlink, interrupt: int = 0) -> Spy:
    assert nl._sock is not None
    spy = Spy(nl._sock, interrupt)
    nl._sock = spy  # type: ignore[assignment]
    return spy


# --- an older kernel: no NETLINK_GET_STRICT_CHK ------------------------------------------------


class _NoStrictChecking(socket.socket):
    """A socket refusing ``NETLINK_GET_STRICT_CHK`` as kernels before 4.20 do."""

    def setsockopt(self, level: int, option: int, value: Any, *rest: Any) -> None:
        if (level, option) == (rt.SOL_NETLINK, rt.NETLINK_GET_STRICT_CHK):
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        super().setsockopt(level, option, value, *rest)


def test_without_strict_checking_listings_keep_to_their_link_and_a_missing_one_is_enodev(
    netns: testing.Netns, monkeypatch: pytest.MonkeyPatch, link: Link
) -> None:
    # Without strict checking the kernel ignores a dump's interface filter and dumps every
    # link's addresses and routes; the client filters them itself and reports ENODEV for a
    # missing index as a strict kernel would.
    with monkeypatch.context() as m:
        m.setattr(socket, "socket", _NoStrictChecking)
        old = RtNetlink()
    with old:
        testing.run("ip", "addr", "add", "198.51.100.1/24", "dev", link.peer)
        testing.run("ip", "link", "set", link.name, "up")
        old.add_address(link.index, "192.0.2.1/24")
        # (IPv4 only: the link-local IPv6 address and its route come when the carrier does)
        v4 = [a for a in old.addresses(link.index) if a.version == 4]
        assert v4 == [IPv4Interface("192.0.2.1/24")]
        v4_routes = {r.destination for r in old.routes(link.index) if r.destination.version == 4}
        assert v4_routes == {IPv4Network("192.0.2.0/24")}
        gone = missing_index(old)
        for call in (old.addresses, old.address_details, old.routes):
            with pytest.raises(OSError) as info:
                call(gone)
            assert info.value.errno == errno.ENODEV


# --- sequence numbers -------------------------------------------------------------------------


def test_the_sequence_number_wraps_after_2_to_the_32_requests(nl: RtNetlink, link: Link) -> None:
    spy = spy_on(nl)
    nl._seq = 2**32 - 2
    for _ in range(3):
        assert nl.link(link.index).name == link.name
    # 0 is left out: the kernel's own notifications carry it
    assert [struct.unpack_from("=I", m, 8)[0] for m in spy.sent] == [2**32 - 1, 1, 2]


# --- replies cut short or inconsistent -------------------------------------------------------


def test_a_truncated_ack_is_emsgsize_and_the_change_is_not_sent_again(
    nl: RtNetlink, link: Link
) -> None:
    spy = spy_on(nl)
    nl._buf = bytearray(16)  # an ack is 36 bytes
    with pytest.raises(OSError) as info:
        nl.add_address(link.index, "192.0.2.1/24")
    assert info.value.errno == errno.EMSGSIZE
    assert len(spy.sent) == 1
    # the change was made once, and the client goes on working
    assert nl.addresses(link.index) == [IPv4Interface("192.0.2.1/24")]  # (the link is down)


def test_a_truncated_dump_is_asked_again_with_room(nl: RtNetlink, link: Link) -> None:
    nl.add_address(link.index, "192.0.2.1/24")
    spy = spy_on(nl)
    nl._buf = bytearray(16)
    assert nl.addresses(link.index) == [IPv4Interface("192.0.2.1/24")]
    assert len(spy.sent) == 2


def test_an_interrupted_dump_is_taken_again(nl: RtNetlink, link: Link) -> None:
    nl.add_address(link.index, "192.0.2.1/24")
    spy = spy_on(nl, interrupt=2)
    assert nl.addresses(link.index) == [IPv4Interface("192.0.2.1/24")]
    assert len(spy.sent) == 3


def test_a_dump_interrupted_every_time_gives_up_with_eintr(nl: RtNetlink, link: Link) -> None:
    spy = spy_on(nl, interrupt=1000)
    with pytest.raises(InterruptedError) as info:
        nl.routes(link.index)
    assert info.value.errno == errno.EINTR
    assert 1 < len(spy.sent) <= 10  # bounded retries, not a loop


# --- links -----------------------------------------------------------------------------------


def test_rename_with_down_sends_the_down_first(nl: RtNetlink, link: Link) -> None:
    # Before Linux 6.2 a running link cannot be renamed (EBUSY): "down" goes in its own
    # request, ahead of the rename.
    nl.set_link(link.index, up=True)
    spy = spy_on(nl)
    new = testing.unique_name("r")
    nl.set_link(link.index, up=False, name=new, mtu=1400)
    (down,), (rename,) = (list(rt.iter_messages(m)) for m in spy.sent)  # two, in this order
    assert struct.unpack_from("=II", down.payload, 8) == (0, rt.IFF_UP)  # flags, change
    assert [t for t, _ in rt.iter_attributes(down.payload, 16)] == []
    assert struct.unpack_from("=II", rename.payload, 8) == (0, 0)
    assert {t for t, _ in rt.iter_attributes(rename.payload, 16)} == {3, 4}  # IFNAME, MTU
    shown = ip_link(new)
    assert "UP" not in shown["flags"] and shown["mtu"] == 1400


def test_link_watch_reports_a_deletion(nl: RtNetlink, link: Link) -> None:
    watch = LinkWatch(link.index)
    try:
        assert not watch.removed
        testing.run("ip", "link", "del", link.name)
        watch.changes()
        assert watch.removed
    finally:
        watch.close()


def test_link_watch_reports_dropped_notifications_as_none(nl: RtNetlink, link: Link) -> None:
    watch = LinkWatch(link.index)
    try:
        sock = watch._sock
        assert sock is not None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
        for _ in range(40):
            nl.set_link(link.index, up=True)
            nl.set_link(link.index, up=False)
        seen = watch.changes()
        assert None in seen
        assert all(s is None or s.index == link.index for s in seen)
    finally:
        watch.close()


# --- routes ----------------------------------------------------------------------------------


def test_remove_route_at_metric_0_with_a_gateway_leaves_that_gateways_other_metrics(
    nl: RtNetlink, link: Link
) -> None:
    # metric=0 is "the route at metric 0", never the kernel's "any metric": a route through
    # this gateway at another metric stays, even when a metric-0 route through another does.
    nl.set_link(link.index, up=True)
    nl.add_address(link.index, "192.0.2.1/24")
    net = IPv4Network("198.51.100.0/24")
    nl.add_route(link.index, net, gateway="192.0.2.7", metric=100)
    nl.add_route(link.index, net, gateway="192.0.2.8", metric=0)
    before = ip_routes(link.name)
    with pytest.raises(ProcessLookupError) as info:
        nl.remove_route(link.index, net, gateway="192.0.2.7", metric=0)
    assert info.value.errno == errno.ESRCH
    assert ip_routes(link.name) == before
    nl.remove_route(link.index, net, gateway="192.0.2.8", metric=0)
    assert {(r[0], r[1], r[2]) for r in ip_routes(link.name) if r[0] == net} == {
        (net, IPv4Address("192.0.2.7"), 100)
    }


def test_default_route_is_the_ipv4_default_and_nothing_else(nl: RtNetlink, link: Link) -> None:
    # "The main table's first IPv4 default route": not an IPv6 one, not another IPv4 route.
    nl.set_link(link.index, up=True)
    nl.add_address(link.index, "192.0.2.1/24")
    nl.add_address(link.index, "2001:db8::1/64")
    nl.add_route(link.index, "::/0", gateway="2001:db8::fe")
    nl.add_route(link.index, "198.51.100.0/24", gateway="192.0.2.254")
    assert nl.default_route() is None
    nl.add_route(link.index, "0.0.0.0/0", gateway="192.0.2.254", metric=5)
    default = nl.default_route()
    assert default is not None
    assert (default.destination, default.gateway, default.oif, default.metric) == (
        IPv4Network("0.0.0.0/0"),
        IPv4Address("192.0.2.254"),
        link.index,
        5,
    )
