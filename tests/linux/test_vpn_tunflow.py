"""tunflow ↔ tunflow in two network namespaces: WireGuard mode and native fast mode.

    ns a: veth 192.168.94.1 — interface 10.94.0.1/24
    ns b: veth 192.168.94.2 — interface 10.94.0.2/24

In-process (``open_interface``): ping on asyncio, uvloop and trio; TCP byte for byte in both
modes, also with the receiving device without offload (native super-packets split on the way in).
The ``tunflow up``/``down`` command end to end and ``wg show``/``wg set`` against it are in
``test_vpn_cli.py``.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.helpers import ipv6_input_errors
from tunflow import ConfigError, DeviceGoneError, testing
from tunflow.offload import GROTable
from tunflow.packet import PacketBatch
from tunflow.wireguard import (
    InterfaceConfig,
    PeerConfig,
    PrivateKey,
    WireGuardInterface,
    open_interface,
)
from tunflow.wireguard.protocol import KeysZeroed, WireGuard
from tunflow.wireguard.protocol.session import Session

pytestmark = [pytest.mark.needs_root, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[2]
UA, UB = "192.168.94.1", "192.168.94.2"
OA, OB = "10.94.0.1", "10.94.0.2"
# the IPv6 underlay and the IPv6 half of a dual-stack tunnel (ULA; each namespace has its own)
UA6, UB6 = "fd77:94::1", "fd77:94::2"
OA6, OB6 = "fd00:94::1", "fd00:94::2"


@pytest.fixture
def pair() -> Iterator[tuple[testing.Netns, testing.Netns]]:
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24")
        yield a, b


@asynccontextmanager
async def two_sides(
    a: testing.Netns,
    b: testing.Netns,
    *,
    native: bool,
    offload_b: bool | None = None,
    endpoint: str = f"{UB}:51820",
    addresses_a: Sequence[str] = (f"{OA}/24",),
    addresses_b: Sequence[str] = (f"{OB}/24",),
) -> AsyncIterator[tuple[WireGuardInterface, WireGuardInterface]]:
    """a and b, a told b's ``endpoint``, b learning a's from the handshake; each side's
    AllowedIPs are the other's addresses as host prefixes (/32, /128)."""
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    ca = InterfaceConfig(
        ka,
        listen_port=51820,
        peers=[
            PeerConfig(
                kb.public_key(),
                endpoint=endpoint,
                allowed_ips=hosts(addresses_b),
                native_mode=native,
            )
        ],
    )
    cb = InterfaceConfig(
        kb,
        listen_port=51820,
        peers=[PeerConfig(ka.public_key(), allowed_ips=hosts(addresses_a), native_mode=native)],
    )
    async with AsyncExitStack() as stack:
        ia = await stack.enter_async_context(
            open_interface(ca, name=testing.unique_name("wa"), addresses=addresses_a, netns=a.name)
        )
        ib = await stack.enter_async_context(
            open_interface(
                cb,
                name=testing.unique_name("wb"),
                addresses=addresses_b,
                netns=b.name,
                offload=offload_b,
            )
        )
        yield ia, ib


def hosts(addresses: Sequence[str]) -> list[str]:
    """The host prefixes of ``"10.0.0.1/24"``-style addresses: ``["10.0.0.1/32"]``."""
    return [str(ipaddress.ip_network(ipaddress.ip_interface(a).ip)) for a in addresses]


def cut_underlay(ns: testing.Netns) -> None:
    """Delete the veth of ``ns``: the underlay gone (a send to the peer: ``ENETUNREACH``)."""
    (veth,) = [
        line.split(":")[1].strip().split("@")[0]
        for line in ns.run("ip", "-o", "link", "show", "type", "veth").stdout.splitlines()
    ]
    ns.run("ip", "link", "del", veth)


async def ping(ns: testing.Netns, address: str, count: int = 3) -> str:
    done = await anyio.run_process(
        ns.cmd("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "3", address), check=False
    )
    out = done.stdout.decode()
    assert done.returncode == 0 and f"{count} received" in out, out + done.stderr.decode()
    return out


@pytest.mark.parametrize("native", [False, True], ids=["wireguard", "native"])
async def test_ping_both_ways_on_every_loop(
    pair: tuple[testing.Netns, testing.Netns], native: bool
) -> None:
    a, b = pair
    async with two_sides(a, b, native=native) as (ia, ib):
        await ping(a, OB)
        await ping(b, OA)
        assert ia.statistics().wireguard.handshakes_completed == 1
        assert ib.statistics().wireguard.handshakes_completed == 1
        # a virtio-net header either way: TSO for native super-packets; for WireGuard peers
        # plain packets in (the kernel asked for no TSO) and coalesced packets out
        assert ia.device.offload_info.vnet_hdr


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_persistent_keepalive_starts_the_handshake_without_traffic(
    pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # as wireguard-go and the kernel: coming up, a peer with a persistent keepalive sends one
    a, b = pair
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    peer_of_a = PeerConfig(
        kb.public_key(), endpoint=(UB, 51820), allowed_ips=f"{OB}/32", persistent_keepalive=25
    )
    ca = InterfaceConfig(ka, listen_port=51820, peers=[peer_of_a])
    cb = InterfaceConfig(kb, listen_port=51820, peers=[PeerConfig(ka.public_key())])
    async with (
        open_interface(cb, name=testing.unique_name("wb"), netns=b.name) as ib,  # b listens
        open_interface(ca, name=testing.unique_name("wa"), netns=a.name) as ia,
    ):
        await ia.wait_handshake(kb.public_key(), timeout=4)  # before any retransmission
        await ib.wait_handshake(ka.public_key(), timeout=4)  # confirmed by a's keepalive
        sa, sb = ia.statistics().wireguard, ib.statistics().wireguard
        assert sa.handshake_initiations_sent == 1 and sb.handshake_initiations_sent == 0
        assert sa.keepalives_sent == sa.tx_packets == 1  # no data
        assert sb.keepalives_received == sb.rx_packets == 1


@pytest.mark.parametrize("native", [False, True], ids=["wireguard", "native"])
async def test_deleting_the_device_ends_the_block_with_device_gone_on_every_loop(
    pair: tuple[testing.Netns, testing.Netns], native: bool
) -> None:
    a, b = pair
    with anyio.fail_after(30), pytest.raises(DeviceGoneError):
        async with two_sides(a, b, native=native) as (ia, _):
            # the device's reader is woken by traffic, reads and waits again; then the device
            # goes: uvloop reports that (EPOLLERR) only once, and it must still wake the reader
            await ping(a, OB)
            await anyio.sleep(0.3)
            await anyio.run_process(a.cmd("ip", "link", "del", ia.name))
            await anyio.sleep_forever()
    assert ia.stop_reason == "the device was deleted"
    assert isinstance(ia.failure, DeviceGoneError)
    assert ia.statistics().listen_port == 51820  # counters are still there after the end


async def test_an_exception_raised_in_the_block_comes_out_unwrapped() -> None:
    # not in an ExceptionGroup (asyncio and trio alike), as open_pipeline does it; and the
    # interface is still taken down
    config = InterfaceConfig(PrivateKey.generate(), listen_port=0)
    name = testing.unique_name("wx")
    with testing.netns(enter=False) as ns:
        why = KeyError("why")
        with anyio.fail_after(20), pytest.raises(LookupError, match="mine") as raised:
            async with open_interface(config, name=name, netns=ns.name):
                raise LookupError("mine") from why
        assert raised.value.__cause__ is why  # its own cause kept
        assert name not in {link["ifname"] for link in ns.ip_json("link", "show")}
        assert not await anyio.Path(f"/var/run/wireguard/{name}.sock").exists()


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()], ids=["exit", "ctrl-c"])
async def test_exit_and_ctrl_c_in_the_block_come_out_unwrapped(exc: BaseException) -> None:
    # sys.exit(3) in the block must still end the program with status 3, and Ctrl-C (trio
    # raises KeyboardInterrupt in the sleeping task) be caught by `except KeyboardInterrupt`
    config = InterfaceConfig(PrivateKey.generate(), listen_port=0)
    name = testing.unique_name("wx")
    with testing.netns(enter=False) as ns:
        with anyio.fail_after(20), pytest.raises(type(exc)) as raised:
            async with open_interface(config, name=name, netns=ns.name):
                raise exc
        assert raised.value is exc
        assert name not in {link["ifname"] for link in ns.ip_json("link", "show")}
        assert not await anyio.Path(f"/var/run/wireguard/{name}.sock").exists()


async def test_a_cancelled_block_still_ends_quietly() -> None:
    # an outer cancel scope (a Cancelled/CancelledError leaf) is not mistaken for an error
    config = InterfaceConfig(PrivateKey.generate(), listen_port=0)
    name = testing.unique_name("wx")
    with testing.netns(enter=False) as ns:
        with anyio.fail_after(20):
            with anyio.move_on_after(0.5) as scope:
                async with open_interface(config, name=name, netns=ns.name):
                    await anyio.sleep_forever()
            assert scope.cancelled_caught
        assert name not in {link["ifname"] for link in ns.ip_json("link", "show")}


async def tcp_transfer(
    client: testing.Netns, server: testing.Netns, address: str, size: int, *, port: int = 5800
) -> None:
    script = str(ROOT / "tests" / "tcp_transfer.py")
    port += os.getpid() % 500
    async with await anyio.open_process(
        server.cmd(sys.executable, script, "server", address, str(port))
    ) as srv:
        assert srv.stdout is not None
        buf = b""
        with anyio.fail_after(10):
            while b"ready" not in buf:
                buf += await srv.stdout.receive()
        with anyio.fail_after(120):
            sent = await anyio.run_process(
                client.cmd(sys.executable, script, "client", address, str(port), str(size))
            )
            rest = buf.split(b"ready", 1)[1]
            while rest.count(b"\n") < 2:
                rest += await srv.stdout.receive()
        await srv.wait()
    got = rest.split()[-2:]
    assert sent.stdout.split() == got, f"sent {sent.stdout!r}, received {got!r}"
    assert int(got[0]) == size


@pytest.mark.slow
@pytest.mark.parametrize(
    ("native", "offload_b"),
    [(False, None), (True, None), (True, False)],
    ids=["wireguard", "native", "native-to-plain-device"],
)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_tcp_byte_identical_both_ways(
    pair: tuple[testing.Netns, testing.Netns], native: bool, offload_b: bool | None
) -> None:
    a, b = pair
    async with two_sides(a, b, native=native, offload_b=offload_b) as (ia, ib):
        await ping(a, OB, 1)
        await tcp_transfer(a, b, OB, 48 << 20)
        await tcp_transfer(b, a, OA, 48 << 20)
        sa, sb = ia.statistics(), ib.statistics()
        for s in (sa, sb):
            w = s.wireguard
            assert w.dropped_bad_aead == 0 and w.dropped_malformed == 0
            assert w.handshakes_completed == 1
        if native and offload_b is None:
            # whole super-packets: far fewer messages than 48 MiB of MTU-sized packets
            assert sa.wireguard.tx_packets < (48 << 20) // 1400 // 4
            assert sa.device.rx_super_packets > 0
        if offload_b is False:
            assert not ib.device.offload_info.vnet_hdr


@pytest.fixture
def pair6() -> Iterator[tuple[testing.Netns, testing.Netns]]:
    """Two namespaces joined by a veth pair with only IPv6 (ULA, no DAD) on it."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA6}/64", f"{UB6}/64")
        yield a, b


@pytest.mark.slow
@pytest.mark.parametrize(
    ("native", "offload_b"),
    [(False, None), (False, True), (True, None), (True, False)],
    ids=["wireguard", "wireguard-from-offload-device", "native", "native-to-plain-device"],
)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_ipv6_tcp_byte_identical_both_ways_over_an_ipv6_underlay(
    pair6: tuple[testing.Netns, testing.Netns], native: bool, offload_b: bool | None
) -> None:
    """Dual-stack inside, IPv6 outside: the IPv6 paths against the kernel — AllowedIPs v6
    lookups both ways, the v6 length/source check on decryption, UDP GSO/GRO on an AF_INET6
    socket, and IPv6 TCP super-packets: coalesced (GSO_TCPV6) on the device's writes in
    WireGuard mode; read (TSO) and split before sealing from an offload device; read, sealed
    and carried whole in native mode, and split for a device without offload. Every transfer
    before ran IPv4 inside, so none of this had met a real kernel."""
    a, b = pair6
    size = 24 << 20
    async with two_sides(
        a,
        b,
        native=native,
        offload_b=offload_b,
        endpoint=f"[{UB6}]:51820",
        addresses_a=(f"{OA}/24", f"{OA6}/64"),
        addresses_b=(f"{OB}/24", f"{OB6}/64"),
    ) as (ia, ib):
        await ping(a, OB6)
        await ping(b, OA6)
        await ping(a, OB, 1)  # and IPv4 through the same session
        await ping(b, OA, 1)
        # only the IPv6 transfers below make or take super-packets (pings do not)
        was_a, was_b = ia.statistics().device, ib.statistics().device
        await tcp_transfer(a, b, OB6, size)
        await tcp_transfer(b, a, OA6, size)
        sa, sb = ia.statistics(), ib.statistics()
        for s in (sa, sb):
            w = s.wireguard
            assert w.dropped_bad_aead == 0 and w.dropped_malformed == 0, w
            assert w.dropped_not_allowed_source == 0, w
            assert w.handshakes_completed == 1, w
            assert w.rx_bytes > size and w.tx_bytes > size, w
            # the datagrams went over the IPv6 socket many a system call (UDP_SEGMENT, UDP_GRO)
            t = s.transport
            assert t.tx_datagrams > 2 * t.tx_syscalls and t.rx_datagrams > 2 * t.rx_syscalls, t
            assert t.drops == {} and s.device.tx_dropped == {}, s
        # the kernel took every IPv6 packet written to either device (a wrong one would only
        # have cost a retransmission)
        for ns, iface in ((a, ia), (b, ib)):
            assert ipv6_input_errors(ns, iface.name) == {}, iface.name
        (peer_of_b,) = ib.wg.peers.values()
        assert peer_of_b.endpoint == (UA6, 51820)  # learnt from the handshake, IPv6
        da, db = sa.device, sb.device
        if not native:
            # decrypted IPv6 TCP segments merged into GSO_TCPV6 writes to either device
            assert da.tx_coalesced > was_a.tx_coalesced, da
            assert db.tx_coalesced > was_b.tx_coalesced, db
            assert da.gro_disabled == db.gro_disabled == 0, (da, db)
        if offload_b:
            # b read IPv6 TCP as TSO super-packets and split them for its WireGuard peer
            assert db.rx_super_packets > was_b.rx_super_packets, db
        if native:
            # a read IPv6 TCP as TSO super-packets and sealed them whole
            assert da.rx_super_packets > was_a.rx_super_packets, da
        if native and offload_b is None:
            # and b too: far fewer messages either way than MTU-sized packets
            assert db.rx_super_packets > was_b.rx_super_packets, db
            for w in (sa.wireguard, sb.wireguard):
                assert w.tx_packets < size // 1400 // 4, w
        if offload_b is False:
            # b split a's super-packets into the segments its device takes: it wrote more
            # than half a transfer's segments more than the messages it took in
            assert not ib.device.offload_info.vnet_hdr
            assert db.tx_packets > sb.wireguard.rx_packets + size // 1400 // 2, (db, sb)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_bulk_transfer_takes_the_run_at_once_paths(
    pair: tuple[testing.Netns, testing.Netns], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run-at-once steps (sealing, opening, GRO) are taken on what real devices and sockets
    hand out, not only on batches a test builds: sealing once declined every batch with
    virtio-net headers — all of a device's reads — and no test noticed."""
    taken: Counter[str] = Counter()

    def spy(cls: type, name: str, handled: Callable[[object], int]) -> None:
        real = getattr(cls, name)

        def counted(self: object, *args: object) -> object:
            result = real(self, *args)
            taken[name] += handled(result)
            return result

        monkeypatch.setattr(cls, name, counted)

    spy(Session, "_encrypt_uniform", lambda done: int(done))  # type: ignore[arg-type]
    spy(WireGuard, "_open_uniform", lambda done: int(done))  # type: ignore[arg-type]
    spy(GROTable, "_classify_uniform", lambda result: result is not None)
    a, b = pair
    async with two_sides(a, b, native=False):
        await ping(a, OB, 1)
        await tcp_transfer(a, b, OB, 16 << 20)
    # ~11 700 full-size packets went through each step's side; any share proves it is reached
    assert taken["_encrypt_uniform"] > 0, taken
    assert taken["_open_uniform"] > 0, taken
    assert taken["_classify_uniform"] > 0, taken


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_transfers_both_ways_take_the_in_order_gro_paths(
    pair: tuple[testing.Netns, testing.Netns], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a transfer each way, every batch a tunnel decrypts holds one transfer's segments
    and the other's pure ACKs: the in-order GRO steps take them (a pure ACK passes through).
    _classify_tcp_run declined every batch with a pure ACK in it, and the uniform step any
    batch of mixed sizes — ~80 % of the packets went the general (slower) way."""
    fast: Counter[str] = Counter()

    def spy(name: str) -> None:
        real = getattr(GROTable, name)

        def counted(self: GROTable, src: PacketBatch) -> object:
            result = real(self, src)
            fast["in"] += len(src) if name == "_classify_uniform" else 0
            fast["fast"] += len(src) if result is not None else 0
            return result

        monkeypatch.setattr(GROTable, name, counted)

    spy("_classify_uniform")  # tried first on every batch of 12 or more
    spy("_classify_tcp_run")
    # and sealing: the packets of each side's reads (its transfer's segments, the other's
    # ACKs), and those sealed a run at once
    real_batch, real_run = Session.encrypt_batch, Session._encrypt_uniform

    def sealed(self: Session, packets: PacketBatch, *args: Any) -> int:
        done = real_batch(self, packets, *args)
        fast["sealed"] += done
        return done

    def sealed_run(self: Session, *args: Any) -> int:
        done = real_run(self, *args)
        fast["sealed_run"] += done
        return done

    monkeypatch.setattr(Session, "encrypt_batch", sealed)
    monkeypatch.setattr(Session, "_encrypt_uniform", sealed_run)
    a, b = pair
    async with two_sides(a, b, native=False):
        await ping(a, OB, 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(tcp_transfer, a, b, OB, 16 << 20)
            tg.start_soon(partial(tcp_transfer, b, a, OA, 16 << 20, port=5300))
    # ~12 000 packets each way through each side's GRO; before: ~20 % on the fast steps
    assert fast["fast"] > fast["in"] // 2, fast
    # sealing took only reads of one size whole: ~25 % of the packets
    assert fast["sealed_run"] > fast["sealed"] // 2, fast
    print(fast)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_link_local_endpoint_keeps_its_scope() -> None:
    """``Endpoint = [fe80::b%veth]:port`` goes out of that link, and the endpoint the other
    side learns from the handshake keeps the link it came in on — with a second link holding
    the same fe80::/64 route in each namespace, an unscoped reply would leave by the wrong one.
    The scope is looked up in the socket's namespace, not the test process's."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        for ns in (a, b):
            # only the addresses given here: no link's own fe80:: address (once it comes up,
            # it may become the source, and the endpoint roams to it)
            ns.run("sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1")
        for ns in (a, b):  # the decoy links (a veth pair inside the namespace), made first
            d1, d2 = testing.unique_name("dl"), testing.unique_name("dl")
            ns.run("ip", "link", "add", d1, "type", "veth", "peer", "name", d2)
            for d, address in ((d1, "fe80::d/64"), (d2, "fe80::e/64")):
                ns.run("ip", "addr", "add", address, "dev", d, "nodad")
                ns.run("ip", "link", "set", d, "up")
        va, vb = testing.veth_pair(a, b, "fe80::a/64", "fe80::b/64")
        async with two_sides(a, b, native=False, endpoint=f"[fe80::b%{va}]:51820") as (ia, ib):
            await ping(a, OB)
            await ping(b, OA)
            (peer_of_b,) = ib.wg.peers.values()
            (peer_of_a,) = ia.wg.peers.values()
            assert peer_of_b.endpoint == (f"fe80::a%{vb}", 51820)
            assert peer_of_a.endpoint == (f"fe80::b%{va}", 51820)
            # `wg show`, inside the namespace, names the link; from outside it (where that
            # name means nothing — wg crashed on such a name) it runs too: the control
            # socket gives the link's index, which wg needs not look up
            inside = await anyio.run_process(a.cmd("wg", "show", ia.name, "endpoints"))
            assert inside.stdout.decode().split()[1] == f"[fe80::b%{va}]:51820"
            outside = await anyio.run_process(["wg", "show", ia.name, "endpoints"], check=False)
            assert outside.returncode == 0, outside
            assert "[fe80::b%" in outside.stdout.decode()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_link_local_endpoint_finds_its_link_made_anew() -> None:
    """The link an endpoint is scoped to goes and comes back under the same name (a replugged
    NIC, a recreated veth) with another index: the next sends find it. The index was cached
    under the name for good, and a datagram that came in by the new link did not change it
    (the name was the same): both sides' sends went on failing."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        va, vb = testing.veth_pair(a, b, "fe80::a/64", "fe80::b/64")
        async with two_sides(a, b, native=False, endpoint=f"[fe80::b%{va}]:51820"):
            await ping(a, OB)
            a.run("ip", "link", "del", va)
            testing.run(
                "ip", "link", "add", va, "netns", a.name, "type", "veth",
                "peer", "name", vb, "netns", b.name,
            )  # fmt: skip
            for ns, link, address in ((a, va, "fe80::a/64"), (b, vb, "fe80::b/64")):
                ns.run("ip", "addr", "add", address, "dev", link, "nodad")
                ns.run("ip", "link", "set", link, "up")
            # the first packet may still meet the old index (dropped as unreachable)
            await anyio.run_process(a.cmd("ping", "-n", "-c", "1", "-W", "1", OB), check=False)
            await ping(a, OB)
            await ping(b, OA)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_wg_reads_an_endpoint_whose_link_is_gone_and_no_link_is_refused() -> None:
    """The control socket shows a scoped endpoint by its link's index. A link deleted under a
    running interface left only the name there, which ``wg`` looked up, failed on and crashed
    over (SIGSEGV: ``wg show``, ``showconf``, ``syncconf``); now the index the name last had is
    shown. A scope that names no link is refused, as ``wg`` and wireguard-go refuse it: a set
    answered EINVAL, nothing changed (it was accepted); a configuration, by open_interface."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        va, _ = testing.veth_pair(a, b, "fe80::a/64", "fe80::b/64")
        index = a.run("cat", f"/sys/class/net/{va}/ifindex").stdout.strip()
        async with two_sides(a, b, native=False, endpoint=f"[fe80::b%{va}]:51820") as (ia, _):
            await ping(a, OB)
            (pk,) = ia.wg.peers
            bad = f"set=1\npublic_key={pk.to_hex()}\nendpoint=[fe80::1%nolink]:5\n\n"
            assert await ia.apply_uapi(bad.encode()) == b"errno=-22\n\n"
            assert ia.wg.peers[pk].endpoint == (f"fe80::b%{va}", 51820)
            a.run("ip", "link", "del", va)
            shown = await anyio.run_process(a.cmd("wg", "show", ia.name, "endpoints"), check=False)
            assert shown.returncode == 0, shown
            assert shown.stdout.decode().split()[1] == f"[fe80::b%{index}]:51820"
        with pytest.raises(ConfigError, match="no link 'nolink' here"):
            async with two_sides(a, b, native=False, endpoint="[fe80::b%nolink]:51820"):
                pass
        assert not a.run("ip", "-o", "link", "show", "type", "tun").stdout  # nothing left


async def test_an_allowed_ip_removed_by_wg_set_stops_its_traffic(
    pair: tuple[testing.Netns, testing.Netns],
) -> None:
    """``wg set wg0 peer K allowed-ips -10.94.0.2/32`` (recent wireguard-tools) sends
    ``allowed_ip=-10.94.0.2/32``: tunflow answered EINVAL. Now, as wireguard-go, the prefix
    leaves the peer and its traffic stops (``no_route``); the routes stay as they were, as
    ``wg set``'s changes leave routes alone under wg-quick; added back, the traffic flows again."""
    a, b = pair
    async with two_sides(a, b, native=False) as (ia, _):
        await ping(a, OB)
        (pk,) = ia.wg.peers
        # (the interface's own prefix route carries it: no route of its own, as wg-quick)
        routes = a.run("ip", "route", "show", "dev", ia.name).stdout
        remove = f"set=1\npublic_key={pk.to_hex()}\nallowed_ip=-{OB}/32\n\n"
        assert await ia.apply_uapi(remove.encode()) == b"errno=0\n\n"
        assert b"allowed_ip=" not in await ia.apply_uapi(b"get=1\n\n")
        assert ia.wg.peer(pk) is not None
        assert a.run("ip", "route", "show", "dev", ia.name).stdout == routes
        before = ia.wg.statistics().dropped_no_route
        lost = await anyio.run_process(a.cmd("ping", "-n", "-c", "2", "-W", "1", OB), check=False)
        assert lost.returncode != 0
        assert ia.wg.statistics().dropped_no_route >= before + 2
        add = f"set=1\npublic_key={pk.to_hex()}\nallowed_ip={OB}/32\n\n"
        assert await ia.apply_uapi(add.encode()) == b"errno=0\n\n"
        await ping(a, OB)


async def test_the_link_set_down_under_the_peers_traffic_loses_packets_not_the_tunnel() -> None:
    """``ip link set wg0 down`` (a network manager cycling the link) while the peer sends: the
    kernel refuses writes to a down TUN (EIO), and the first packet from the peer stopped the
    whole interface ("the data path failed", the device removed). Now they are lost and
    counted, as wireguard-go and the kernel's WireGuard lose them, and the tunnel works again
    once the link is up."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24")
        async with two_sides(a, b, native=False) as (ia, _):
            await ping(a, OB)
            a.run("ip", "link", "set", ia.name, "down")
            # the peer's pings reach A's tunnel, which writes them to its down TUN
            await anyio.run_process(
                b.cmd("ping", "-n", "-c", "4", "-i", "0.2", "-W", "1", OA), check=False
            )
            assert ia.stop_reason is None, ia.failure
            assert ia.statistics().device.tx_dropped.get("link_down", 0) >= 1
            a.run("ip", "link", "set", ia.name, "up")
            await ping(a, OB)
            await ping(b, OA)


async def until_ping(ns: testing.Netns, address: str, within: float = 20) -> None:
    """Ping ``address`` once a second until it answers (``within`` seconds at most)."""
    with anyio.fail_after(within):
        while True:
            done = await anyio.run_process(
                ns.cmd("ping", "-n", "-c", "1", "-W", "1", address), check=False
            )
            if done.returncode == 0:
                return
            await anyio.sleep(0.2)


async def test_the_link_set_down_and_up_gets_back_its_addresses_and_routes(
    pair: tuple[testing.Netns, testing.Netns],
) -> None:
    """When the link goes down the kernel removes its routes — the AllowedIPs routes among
    them — and its IPv6 addresses, and puts back only its IPv4 addresses' own routes when it is
    up again: a tunnel whose peer's addresses lie outside its own prefix carried nothing after
    ``ip link set wg0 down; ip link set wg0 up`` (nor with wg-quick). The running interface puts
    them back."""
    a, b = pair
    far = "10.95.0.2"  # b's, outside a's 10.94.0.0/24: reached through its AllowedIPs route
    async with two_sides(
        a,
        b,
        native=False,
        addresses_a=(f"{OA}/24", f"{OA6}/64"),
        addresses_b=(f"{OB}/24", f"{OB6}/64", f"{far}/24"),
    ) as (ia, _):
        await ping(a, far, 1)
        await ping(a, OB6, 1)
        for _ in range(2):  # and again: the watch goes on
            a.run("ip", "link", "set", ia.name, "down")
            routes = a.run("ip", "route", "show", "dev", ia.name).stdout
            assert far not in routes and OA6 not in a.run("ip", "addr").stdout
            a.run("ip", "link", "set", ia.name, "up")
            await until_ping(a, far)
            await until_ping(a, OB6)
            assert ia.stop_reason is None, ia.failure


async def test_what_the_socket_could_not_send_is_not_counted_as_sent(
    pair: tuple[testing.Netns, testing.Netns],
) -> None:
    """A peer's ``tx_bytes`` (``wg show``'s "sent") counted what was sealed, also when the
    send then failed (the underlay gone: ENETUNREACH); wireguard-go counts what was sent."""
    a, b = pair
    async with two_sides(a, b, native=False) as (ia, _):
        await ping(a, OB, 1)
        cut_underlay(a)
        before = ia.statistics()
        await anyio.run_process(
            a.cmd("ping", "-n", "-c", "5", "-i", "0.1", "-W", "1", OB), check=False
        )
        after = ia.statistics()
        assert after.transport.tx_datagrams == before.transport.tx_datagrams  # none went
        assert after.transport.drops.get("unreachable", 0) > before.transport.drops.get(
            "unreachable", 0
        )
        assert after.peers[0].tx_bytes == before.peers[0].tx_bytes
        assert after.wireguard.tx_bytes == before.wireguard.tx_bytes


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_tentative_source_address_loses_datagrams_not_the_interface() -> None:
    """A link-local endpoint on a link whose own link-local address is still tentative (DAD
    runs: a replugged NIC, a link made anew) — the kernel refuses the send with EADDRNOTAVAIL.
    That is a lost datagram, as for an unreachable network; it took the whole interface down
    ("the data path failed"). Once the address is usable, the handshake goes through."""
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        a.run("sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1")  # no fe80:: of its own
        va, vb = testing.unique_name("va"), testing.unique_name("vb")
        testing.run(
            "ip", "link", "add", va, "netns", a.name, "type", "veth",
            "peer", "name", vb, "netns", b.name,
        )  # fmt: skip
        a.run("sysctl", "-qw", f"net.ipv6.conf.{va}.dad_transmits=100")  # tentative ~100 s
        b.run("ip", "addr", "add", "fe80::b/64", "dev", vb, "nodad")
        for ns, link in ((a, va), (b, vb)):
            ns.run("ip", "link", "set", link, "up")
        a.run("ip", "addr", "add", "fe80::a/64", "dev", va)
        assert "tentative" in a.run("ip", "addr", "show", "dev", va).stdout
        async with two_sides(a, b, native=False, endpoint=f"[fe80::b%{va}]:51820") as (ia, _):
            # the handshake initiation cannot leave (no usable source address on va)
            await anyio.run_process(a.cmd("ping", "-n", "-c", "1", "-W", "1", OB), check=False)
            assert ia.stop_reason is None, ia.failure
            assert ia.statistics().transport.drops.get("unreachable", 0) >= 1
            a.run("ip", "addr", "del", "fe80::a/64", "dev", va)
            a.run("ip", "addr", "add", "fe80::a/64", "dev", va, "nodad")
            # the next initiation (retransmitted after REKEY_TIMEOUT, 5 s) goes through
            with anyio.fail_after(20):
                while True:
                    done = await anyio.run_process(
                        a.cmd("ping", "-n", "-c", "1", "-W", "1", OB), check=False
                    )
                    if done.returncode == 0:
                        break
            assert ia.stop_reason is None
            await ping(b, OA)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_failing_timer_task_is_reported_as_the_data_path_is(
    pair: tuple[testing.Netns, testing.Netns],
) -> None:
    """What fails in the timer task (here an event hook raising on the keys being zeroed, which
    the timers do) stops the interface as a failing data path does: ``failure`` and
    ``stop_reason`` say so and ``wait_closed`` returns. The task's exception cancelled the
    block with stop_reason "closed", no failure, and wait_closed cancelled."""
    a, b = pair

    def hook(event: object) -> None:
        if isinstance(event, KeysZeroed):
            raise LookupError("the hook failed")

    reason = None
    with anyio.fail_after(30), pytest.raises(LookupError, match="the hook failed"):
        async with two_sides(a, b, native=False) as (ia, _):
            await ping(a, OB, 1)
            ia.port.on_event(hook)
            ia.skip_time(600)  # past REJECT_AFTER_TIME * 3: the next timer zeroes the keys
            reason = await ia.wait_closed()
    assert reason is not None and "the hook failed" in reason
    assert ia.stop_reason == reason
    assert isinstance(ia.failure, LookupError)


@pytest.mark.parametrize("native", [False, True], ids=["wireguard", "native"])
async def test_a_packet_at_rest_waits_for_room_when_the_socket_buffer_is_full(
    native: bool, anyio_backend: Any
) -> None:
    """A lone packet sent while the tunnel's socket buffer is full (as right after a burst of
    the lane's own) gets through once there is room, as on the task's path: the express path
    hands it to the task, which waits, instead of losing it as ``would_block``. Here the
    underlay is slowed to 200 kbit/s and the buffer filled (through a duplicate of the
    socket) just before each packet."""
    import socket

    def socket_in(ns: testing.Netns) -> socket.socket:
        with ns.entered():
            return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    rounds = 3
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        veth, _ = testing.veth_pair(a, b, f"{UA}/24", f"{UB}/24")
        with anyio.fail_after(90):
            async with two_sides(a, b, native=native) as (ia, _ib):
                await ping(a, OB, 2)
                tbf = ("tbf", "rate", "200kbit", "burst", "4kb", "limit", "1mb")
                a.run("tc", "qdisc", "add", "dev", veth, "root", *tbf)
                transport = ia.port.transport
                filler = socket.socket(fileno=os.dup(transport.fileno()))
                sink, sender, receiver = socket_in(b), socket_in(a), socket_in(b)
                with filler, sink, sender, receiver:
                    filler.setblocking(False)
                    filler.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
                    sink.bind((UB, 9999))
                    to_sink = ("::ffff:" + UB if filler.family == socket.AF_INET6 else UB, 9999)
                    receiver.bind((OB, 5555))
                    receiver.settimeout(10)

                    def fill_then_send(i: int) -> int:
                        filled = 0
                        while True:
                            try:
                                filler.sendto(bytes(1000), to_sink)
                            except BlockingIOError:
                                break
                            filled += 1
                        sender.sendto(b"at rest %d" % i, (OB, 5555))  # into a's TUN
                        return filled

                    for i in range(rounds):
                        await anyio.sleep(1.5)  # the buffer drained, the lanes at rest
                        assert await anyio.to_thread.run_sync(fill_then_send, i) > 0
                        got = await anyio.to_thread.run_sync(receiver.recv, 100)
                        assert got == b"at rest %d" % i
                assert "would_block" not in ia.statistics().transport.drops


@pytest.mark.parametrize("native", [False, True], ids=["wireguard", "native"])
async def test_pings_at_rest_take_the_express_path_and_are_counted_as_any(
    pair: tuple[testing.Netns, testing.Netns],
    native: bool,
    anyio_backend: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A packet at rest (a ping, its answer) goes from one port to the other in the reader
    callback (the pipeline engine's express path) on asyncio and uvloop, and on trio never;
    every counter — the device's, the WireGuard port's, the lane's — counts it as the task's
    path would: each lane's packets in = out = what its source read = what its sink wrote."""
    from tunflow.device import AsyncDevice
    from tunflow.wireguard.runtime import WireGuardPort

    sent: Counter[tuple[int, str]] = Counter()

    def spy(cls: type, key: str) -> None:
        real = cls._express_send  # type: ignore[attr-defined]

        def counted(self: object, batch: PacketBatch) -> bool:
            done: bool = real(self, batch)
            sent[id(self), key] += done
            return done

        monkeypatch.setattr(cls, "_express_send", counted)

    spy(AsyncDevice, "in")  # the device written: datagram → packet
    spy(WireGuardPort, "out")  # the port sending: packet → datagram
    a, b = pair
    n = 8
    with anyio.fail_after(60):
        async with two_sides(a, b, native=native) as (ia, ib):
            await ping(a, OB, n)
            await ping(b, OA, n)
            for end in (ia, ib):
                stats = end.tunnel.statistics()
                ports = {p.name: p for p in stats.ports}
                dev, net = ports[end.name + "/0"], ports[end.port.name]
                (out,) = (w for w in stats.workers if w.direction == "out")
                (inn,) = (w for w in stats.workers if w.direction == "in")
                assert out.packets_in == out.packets_out == dev.rx_packets == net.tx_packets
                assert out.batches == dev.rx_batches == net.tx_batches
                assert inn.packets_in == inn.packets_out == net.rx_packets == dev.tx_packets
                assert inn.batches == net.rx_batches == dev.tx_batches
                # 2n pings' packets each way at each end (and maybe a stray IPv6 packet)
                assert out.packets_in >= 2 * n and inn.packets_in >= 2 * n
                outs, ins = sent[id(end.port), "out"], sent[id(end.device), "in"]
                if anyio_backend[0] == "trio":
                    assert outs == ins == 0, sent
                else:
                    # all but the first few of each ping run, which find the lanes not at rest
                    assert outs >= n and ins >= n, sent
