"""What the UDP transport, its statistics and DatagramBatch promise, in the corners the other
transport tests left open (found by mutating the code: each test here fails on a change the
rest of the suite let through)."""

from __future__ import annotations

import errno
import os
import socket
import sys
import time

import anyio
import pytest

from tests.unit.test_udp_transport import payloads, receive
from tunflow import ConfigError, testing
from tunflow.datagram import UDP_MAX_SEGMENTS
from tunflow.transport import (
    UDP_OFFLOAD_ENV,
    DatagramBatch,
    TransportStatistics,
    UDPTransport,
    parse_endpoint,
)

pytestmark = pytest.mark.anyio

LINUX = sys.platform.startswith("linux")


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["off", "false", "no", " NO "])
async def test_every_documented_word_for_off_keeps_the_plain_path(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # UDP_OFFLOAD_ENV: "0 (or off/false/no)"
    monkeypatch.setenv(UDP_OFFLOAD_ENV, value)
    async with UDPTransport.bind("127.0.0.1:0") as t:
        assert (t.gso, t.gro) == (False, False)


@pytest.mark.parametrize("text", ["127.0.0.1:65536", "[::1]:65536", ":99999"])
def test_a_port_past_65535_is_refused_when_parsed(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_endpoint(text)
    assert parse_endpoint("127.0.0.1:65535") == ("127.0.0.1", 65535)


@pytest.mark.parametrize(("what", "value"), [("max_datagram", 0), ("max_packets", 0)])
def test_limits_of_zero_are_refused(what: str, value: int) -> None:
    # the constructor's Raises: not within 1..65535 / 1..65536; the socket stays the caller's
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(ConfigError):
            UDPTransport(sock, **{what: value})  # type: ignore[arg-type]
        assert sock.fileno() >= 0


def test_an_empty_arena_is_refused() -> None:
    with pytest.raises(ValueError):
        DatagramBatch(0)


async def test_a_default_bind_with_an_ipv6_peer_speaks_ipv6() -> None:
    # the default local address is IPv4's 0.0.0.0: an IPv6 peer makes it the dual-stack "::"
    async with (
        UDPTransport.bind("[::1]:0") as rx,
        UDPTransport.bind(peer=rx.local_address) as tx,
    ):
        out = tx.new_batch()
        out.append(b"over ipv6")
        assert await tx.send_batch(out) == 1
        assert (await receive(rx, 1)).to_list() == [b"over ipv6"]


@pytest.mark.skipif(not LINUX, reason="UDP_SEGMENT/UDP_GRO are Linux's")
async def test_a_transport_rebuilt_from_its_fd_keeps_udp_gro_after_gso_was_refused() -> None:
    """reopen_params rebuilds the transport elsewhere: a socket whose segmentation the kernel
    refused (EIO) still reads with UDP_GRO, and so does its rebuilt self."""

    class NoSegmentation(socket.socket):
        def sendmsg(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise OSError(errno.EIO, "no checksum offload")

    sock = NoSegmentation(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    async with UDPTransport.from_socket(sock) as t, UDPTransport.bind("127.0.0.1:0") as rx:
        out = DatagramBatch()
        for p in payloads(4, 100):
            out.append(p, address=rx.local_address)
        assert await t.send_batch(out) == 4
        assert (t.gso, t.gro) == (False, True)
        async with UDPTransport.from_fd(os.dup(t.fileno()), **t.reopen_params()) as again:
            assert again.gro


# -- statistics ---------------------------------------------------------------------------


async def test_statistics_are_a_snapshot_not_a_live_view() -> None:
    async with UDPTransport.bind("127.0.0.1:0") as t:
        out = DatagramBatch()
        out.extend(payloads(2, 10))  # unconnected: nowhere to go
        await t.send_batch(out)
        before = t.statistics()
        await t.send_batch(out)
        assert before.drops == {"no_address": 2}
        assert t.statistics().drops == {"no_address": 4}


def test_merged_statistics_add_up_and_take_the_later_offloads() -> None:
    earlier = TransportStatistics(1, 10, 1, 2, 20, 2, 1, 2, True, True, {"refused": 1, "x": 2})
    later = TransportStatistics(3, 30, 3, 4, 40, 4, 3, 4, False, False, {"refused": 5})
    merged = earlier.merge(later)
    assert merged == TransportStatistics(
        4, 40, 4, 6, 60, 6, 4, 6, False, False, {"refused": 6, "x": 2}
    )
    assert earlier.drops == {"refused": 1, "x": 2}  # (neither record changed)


# -- receive ------------------------------------------------------------------------------


@pytest.mark.parametrize("offload", [True, False], ids=["gro", "plain"])
async def test_a_receive_takes_at_most_max_packets(offload: bool) -> None:
    """``max_packets``: datagrams per received batch, whatever room the batch has."""
    async with (
        UDPTransport.bind("127.0.0.1:0", max_packets=4, offload=offload) as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address, offload=False) as tx,
    ):
        out = tx.new_batch()
        out.extend(payloads(10, 100))
        assert await tx.send_batch(out) == 10
        got = DatagramBatch(4 << 20)
        with anyio.fail_after(5):
            await rx.recv_batch(got)
        assert len(got) == 4 and rx.backlogged
        assert (await receive(rx, 6)).to_list() == payloads(10, 100)[4:]


async def test_recv_nowait_into_a_batch_at_its_datagram_limit_reads_nothing() -> None:
    # "-1 having read nothing because ... batch has no room"
    async with (
        UDPTransport.bind("127.0.0.1:0") as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address) as tx,
    ):
        out = tx.new_batch()
        out.append(b"waiting")
        await tx.send_batch(out)
        full = DatagramBatch(1 << 20, max_packets=1)
        full.append(b"already here")
        assert rx.recv_nowait(full) == -1
        assert full.to_list() == [b"already here"]
        assert (await receive(rx, 1)).to_list() == [b"waiting"]


@pytest.mark.parametrize("offload", [True, False], ids=["gro", "plain"])
async def test_not_at_rest_after_a_receive_that_stopped_on_a_full_batch(offload: bool) -> None:
    """``at_rest``: the last receive found one datagram *and then nothing*; one that stopped
    because the batch was full left more waiting."""
    async with (
        UDPTransport.bind("127.0.0.1:0", offload=offload) as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address, offload=offload) as tx,
    ):

        async def send(data: bytes) -> None:
            out = tx.new_batch()
            out.append(data)
            await tx.send_batch(out)

        with anyio.fail_after(5):
            await send(b"ping")
            assert (await rx.recv_batch()).to_list() == [b"ping"]
            assert rx.at_rest
            await send(b"one")
            await send(b"two!")
            one = DatagramBatch(1 << 17, max_packets=1)
            assert (await rx.recv_batch(one)).to_list() == [b"one"]
            assert rx.backlogged and not rx.at_rest
            assert (await rx.recv_batch()).to_list() == [b"two!"]


@pytest.mark.skipif(not LINUX, reason="UDP_GRO is Linux's")
@pytest.mark.parametrize("kept", [1, 2, 3])
async def test_a_read_whose_segment_size_was_cut_part_way_is_dropped(
    kept: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segment size the control buffer cut to ``kept`` of its 4 bytes cannot be trusted:
    the read is dropped as ``truncated`` (not read as one datagram, not a struct.error), and
    the next one is read. A 16-byte timestamp (its message: 32 bytes) comes before it."""
    from tunflow.transport import udp

    monkeypatch.setattr(udp, "_ANCBUF", 32 + 16 + kept)  # (16: the size's message header)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, 29, 1)  # SO_TIMESTAMP
    async with (
        UDPTransport.from_socket(sock) as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address) as tx,
    ):
        assert rx.gro and tx.gso
        out = tx.new_batch()
        out.extend(payloads(10, 100))
        assert await tx.send_batch(out) == 10
        out.clear()
        out.append(b"next")
        assert await tx.send_batch(out) == 1
        got = DatagramBatch(1 << 20)
        with anyio.fail_after(5):
            while b"next" not in got.to_list():
                await rx.recv_batch(got)
        assert got.to_list() == [b"next"]
        assert rx.statistics().drops == {"truncated": 1}


@pytest.mark.skipif(not LINUX, reason="UDP_GRO is Linux's")
async def test_a_new_batch_still_receives_after_a_udp_gro_read_past_max_packets() -> None:
    """recv_batch: a UDP_GRO read goes in whole, so the batch may end up to 64 datagrams over
    its max_packets — "new_batch leaves room for it": the batch is not left too full for the
    next receive."""
    async with (
        UDPTransport.bind("127.0.0.1:0", max_packets=1) as rx,
        UDPTransport.bind("127.0.0.1:0", peer=rx.local_address) as tx,
    ):
        assert rx.gro and tx.gso
        out = tx.new_batch()
        out.extend(payloads(UDP_MAX_SEGMENTS, 100))
        assert await tx.send_batch(out) == UDP_MAX_SEGMENTS  # one send: one read
        out.clear()
        out.append(b"after the run")
        assert await tx.send_batch(out) == 1
        got = rx.new_batch()
        with anyio.fail_after(5):
            await rx.recv_batch(got)
            assert len(got) == UDP_MAX_SEGMENTS
            await rx.recv_batch(got)
        assert got.to_list() == [*payloads(UDP_MAX_SEGMENTS, 100), b"after the run"]


async def test_an_unconnected_read_raises_an_error_no_icmp_error_explains() -> None:
    """Only a connected socket is told its peer's ICMP errors (EACCES: ICMPv6 administratively
    prohibited); a socket without a peer that reads EACCES was denied (an LSM): raised, not
    counted as ``refused`` and read on."""
    from tests.unit.test_udp_transport import _FailingReads

    async with UDPTransport.bind("127.0.0.1:0", offload=False) as t:
        real = t._sock
        assert real is not None
        t._sock = _FailingReads(real, [errno.EACCES])  # type: ignore[assignment]
        try:
            with pytest.raises(PermissionError):
                t._recv_some(t.new_batch())
            assert t.statistics().drops == {}
        finally:
            t._sock = real


@pytest.mark.needs_root
async def test_an_ipv6_peer_that_only_starts_like_an_ipv4_mapped_one_keeps_its_address(
    netns: testing.Netns,
) -> None:
    """IPv4-mapped peers (``::ffff:192.0.2.1``) are handed out as plain IPv4; ``::ffff:1:2:3``
    (0:0:0:0:ffff:1:2:3) is no mapped address: handed out as it is, not cut to ``1:2:3`` (an
    address an answer could not go to)."""
    netns.run("ip", "-6", "addr", "add", "::ffff:1:2:3/128", "dev", "lo", "nodad")
    async with UDPTransport.bind(("::", 0)) as rx:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as peer:
            peer.bind(("::ffff:1:2:3", 0))
            peer.sendto(b"hello", ("::1", rx.local_address[1]))
            with anyio.fail_after(5):
                got = await rx.recv_batch()
            assert got.addresses == [peer.getsockname()[:2]]


# -- send ---------------------------------------------------------------------------------


@pytest.mark.skipif(not LINUX, reason="UDP_SEGMENT is Linux's")
async def test_a_group_refused_once_leaves_the_next_group_segmented() -> None:
    """EMSGSIZE (a segment above the path MTU) refuses that send only: its group goes out
    plainly and the next group of the batch is segmented again."""

    class RefusesOnce(socket.socket):
        refused = False

        def sendmsg(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if not self.refused:
                self.refused = True
                raise OSError(errno.EMSGSIZE, "Message too long")
            return super().sendmsg(*args, **kwargs)

    sock = RefusesOnce(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    async with UDPTransport.bind("127.0.0.1:0") as rx, UDPTransport.from_socket(sock) as tx:
        out = DatagramBatch()
        sent = payloads(5, 100) + payloads(5, 200)
        for p in sent:
            out.append(p, address=rx.local_address)
        assert await tx.send_batch(out) == 10
        s = tx.statistics()
        assert tx.gso and s.drops == {"gso_refused": 1}
        assert s.tx_syscalls == 5 + 1  # the first group a datagram a call, the second one call
        assert (await receive(rx, 10)).to_list() == sent


class _FullAfterOne(socket.socket):
    """A socket whose send buffer takes one datagram, then is full (EAGAIN)."""

    sends = 0

    def sendto(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.sends += 1
        if self.sends > 1:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return super().sendto(*args, **kwargs)


async def test_send_nowait_that_sent_part_of_a_group_does_not_ask_for_it_again() -> None:
    """``drop_when_full=False`` sends nothing (-1) only when nothing went: once a datagram
    went, the rest is lost and counted as always — a -1 would have the caller send the first
    datagram twice."""
    sock = _FullAfterOne(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    async with (
        UDPTransport.bind("127.0.0.1:0") as rx,
        UDPTransport.from_socket(sock, offload=False) as tx,
    ):
        out = DatagramBatch()
        for p in payloads(3, 100):  # one group, sent a datagram at a time
            out.append(p, address=rx.local_address)
        assert tx.send_batch_nowait(out, drop_when_full=False) == 1
        assert tx.statistics().drops == {"would_block": 2}
        assert (await receive(rx, 1)).to_list() == payloads(1, 100)


class _NoSourceAddress(socket.socket):
    """A socket that has no usable source address for its sends (EADDRNOTAVAIL: the link's
    link-local address still tentative while DAD runs)."""

    def sendto(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")

    sendmsg = sendto


@pytest.mark.parametrize("count", [1, 3])
async def test_a_send_without_a_source_address_is_lost_as_unreachable(count: int) -> None:
    sock = _NoSourceAddress(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    async with UDPTransport.from_socket(sock, offload=False) as tx:
        unsent: list[tuple[object, int]] = []
        tx.on_unsent = lambda addr, n: unsent.append((addr, n))
        out = DatagramBatch()
        for p in payloads(count, 100):
            out.append(p, address=("127.0.0.1", 9))
        assert await tx.send_batch(out) == 0
        assert tx.statistics().drops == {"unreachable": count}
        assert sum(n for _, n in unsent) == 100 * count


# -- link-local scopes, in a namespace ----------------------------------------------------


async def test_a_scope_is_any_32_bit_interface_index() -> None:
    """has_scope: a scope that is a number is what ``wg set`` and the kernel take — an
    interface index, 32 bits unsigned, the largest too; past it the socket module would wrap
    the number to another link's index."""
    async with UDPTransport.bind("[::]:0") as t:
        assert t.has_scope(("fe80::1%4294967295", 9))
        assert not t.has_scope(("fe80::1%4294967296", 9))


@pytest.mark.needs_root
async def test_a_scope_of_sixteen_characters_names_no_link(netns: testing.Netns) -> None:
    """The kernel reads at most 15 bytes of an interface name: a 16-character scope whose
    first 15 are a link's name must not name that link."""
    name = testing.unique_name("s").ljust(15, "x")[:15]
    netns.run("ip", "link", "add", name, "type", "veth", "peer", "name", testing.unique_name("s"))
    async with UDPTransport.bind("[::]:0") as t:
        assert t.has_scope((f"fe80::1%{name}", 9))
        assert not t.has_scope((f"fe80::1%{name}y", 9))
        assert t.numeric_scope((f"fe80::1%{name}y", 9)) == ("fe80::1", 9)


@pytest.mark.needs_root
async def test_sends_find_a_link_deleted_and_made_again_under_its_name(
    netns: testing.Netns,
) -> None:
    """A scoped destination whose link went is looked up anew by name after a failed send: a
    link made again under that name (another index) carries the next datagrams."""
    name = testing.unique_name("d")
    netns.run("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")  # (no tentative source)

    def make_link() -> None:
        other = testing.unique_name("d")
        netns.run("ip", "link", "add", name, "type", "veth", "peer", "name", other)
        for link in (name, other):
            netns.run("ip", "link", "set", link, "up")
        # sends to it fail until its link-local address (their source) is there, a moment after
        # the carrier: until a plain socket's send goes
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            while True:
                try:
                    probe.sendto(b"", ("fe80::2", 9, 0, socket.if_nametoindex(name)))
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"nothing goes out of {name}"
                    time.sleep(0.02)

    make_link()
    async with UDPTransport.bind("[::]:0") as t:
        out = DatagramBatch()
        out.append(b"hello", address=(f"fe80::2%{name}", 9))
        assert await t.send_batch(out) == 1
        netns.run("ip", "link", "del", name)
        assert await t.send_batch(out) == 0  # no such link: lost
        make_link()
        assert await t.send_batch(out) == 1
        assert await t.send_batch(out) == 1
        assert t.statistics().tx_datagrams == 3


class _PendingErrors:
    """A connected transport's socket whose sends number ``at`` (1-based) return an earlier
    datagram's ICMP error (``ECONNREFUSED``) instead of sending, as the kernel's do."""

    def __init__(self, sock: socket.socket, at: set[int]) -> None:
        self._sock, self._at, self.calls = sock, at, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)

    def _call(self, name: str, *args: object) -> int:
        self.calls += 1
        if self.calls in self._at:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        result: int = getattr(self._sock, name)(*args)
        return result

    def send(self, *args: object) -> int:
        return self._call("send", *args)

    def sendto(self, *args: object) -> int:
        return self._call("sendto", *args)


@pytest.mark.parametrize("kind", ["singles", "plain"])
async def test_each_pending_error_of_a_batch_costs_its_send_nothing(kind: str) -> None:
    """A connected socket returns an earlier datagram's ICMP error from its next send, which
    is tried once more: so is the next one to meet such an error after a send went — each is
    one earlier datagram's ``unreachable`` drop, and every datagram of the batch is sent."""
    async with (
        UDPTransport.bind(("127.0.0.1", 0)) as rx,
        UDPTransport.bind(("127.0.0.1", 0), peer=rx.local_address, offload=False) as tx,
    ):
        batch = DatagramBatch()
        for size in (100, 200, 300) if kind == "singles" else (100, 100, 100):
            batch.append(b"x" * size)
        real = tx._sock
        assert real is not None
        scripted = _PendingErrors(real, {1, 3})
        tx._sock = scripted  # type: ignore[assignment]
        try:
            sent = tx.send_batch_nowait(batch)
        finally:
            tx._sock = real
        assert (sent, scripted.calls) == (3, 5)
        assert tx.statistics().drops == {"unreachable": 2}
        got = DatagramBatch()
        with anyio.fail_after(5):
            while len(got) < 3:
                await rx.recv_batch(got)
        assert sorted(got.lengths) == sorted(batch.lengths)
