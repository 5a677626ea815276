"""``AllowedIPs = 0.0.0.0/0, ::/0`` and ``Table =`` as wg-quick(8) handles them, on real kernels.

    ns a: veth 192.168.96.1/32, default dev veth — interface 10.96.0.1/24, fd96::1/64
    ns b: veth 192.168.96.2/32 — interface 10.96.0.2/24, fd96::2/64; lo 10.201.0.1, fd20:1::1

A's only way to B's endpoint is its main table's default route, the one the policy rules hide
from unmarked packets: a completed handshake shows the tunnel's datagrams carry the fwmark and
use the main table. B's ``lo`` addresses are reached through the tunnel (A's peer B has
``AllowedIPs = 0.0.0.0/0, ::/0``). The rules are looked at with ``ip -j rule`` (a program we did
not write) while the interface is up, and after it is gone.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from tests.helpers import Up, reload_cli, uapi_get
from tunflow import testing
from tunflow.errors import ConfigError
from tunflow.wireguard import (
    InterfaceConfig,
    PeerConfig,
    PrivateKey,
    WireGuardInterface,
    _routing,
    genkey,
    open_interface,
    pubkey,
)

pytestmark = pytest.mark.needs_root

UA, UB = "192.168.96.1", "192.168.96.2"
OA, OB = "10.96.0.1", "10.96.0.2"
OA6, OB6 = "fd96::1", "fd96::2"
FAR, FAR6 = "10.201.0.1", "fd20:1::1"
HAVE_WG = shutil.which("wg") is not None
HAVE_NFT = shutil.which("nft") is not None
DEFAULT_RULES = {"-4": [0, 32766, 32767], "-6": [0, 32766]}


@pytest.fixture
def pair() -> Iterator[tuple[testing.Netns, testing.Netns]]:
    with testing.netns(enter=False) as a, testing.netns(enter=False) as b:
        va, vb = testing.veth_pair(a, b, f"{UA}/32", f"{UB}/32")
        # a's ordinary default route (what a laptop has); b knows a's endpoint only
        a.run("ip", "route", "add", "default", "dev", va)
        b.run("ip", "route", "add", f"{UA}/32", "dev", vb)
        b.run("ip", "addr", "add", f"{FAR}/32", "dev", "lo")
        b.run("ip", "addr", "add", f"{FAR6}/128", "dev", "lo")
        yield a, b


def rules(ns: testing.Netns, family: str) -> list[dict[str, Any]]:
    """``ip -j rule``, without the kernel's own rules."""
    found = ns.ip_json(family, "rule", "show")
    return [r for r in found if r["priority"] not in DEFAULT_RULES[family]]


def policy_rules(table: int) -> list[dict[str, Any]]:
    """What wg-quick's two rules look like in ``ip -j rule``."""
    return [
        {"priority": 32764, "src": "all", "table": "main", "suppress_prefixlen": 0},
        {"priority": 32765, "not": None, "src": "all", "fwmark": hex(table), "table": str(table)},
    ]


def nft_tables(ns: testing.Netns) -> list[str]:
    """``nft list tables`` in ``ns``: ``["ip wg-quick-wa1", ...]``."""
    out = ns.run("nft", "list", "tables").stdout
    return sorted(line.removeprefix("table ").strip() for line in out.splitlines() if line)


def nft_rules(ns: testing.Netns, table: str) -> list[str]:
    """The rules of one nftables table, one line each, as ``nft`` prints them."""
    out = ns.run("nft", "list", "table", *table.split()).stdout
    return [
        line.strip()
        for line in out.splitlines()
        if line.strip() and not line.strip().startswith(("table", "chain", "type", "}"))
    ]


def route_dev(ns: testing.Netns, *args: str) -> str:
    (route,) = ns.ip_json("route", "get", *args)
    return str(route["dev"])


def sysctl(ns: testing.Netns | None, key: str) -> str:
    argv = ("sysctl", "-n", key)
    return (ns.run(*argv) if ns is not None else testing.run(*argv)).stdout.strip()


async def ping(ns: testing.Netns, address: str, count: int = 3) -> None:
    done = await anyio.run_process(
        ns.cmd("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "3", address), check=False
    )
    out = done.stdout.decode()
    assert done.returncode == 0 and f"{count} received" in out, out + done.stderr.decode()


@asynccontextmanager
async def two_sides(
    a: testing.Netns, b: testing.Netns
) -> AsyncIterator[tuple[WireGuardInterface, WireGuardInterface]]:
    ka, kb = PrivateKey.generate(), PrivateKey.generate()
    ca = InterfaceConfig(
        ka,
        listen_port=51820,
        peers=[
            PeerConfig(kb.public_key(), endpoint=(UB, 51820), allowed_ips="0.0.0.0/0, ::/0"),
        ],
    )
    cb = InterfaceConfig(
        kb,
        listen_port=51820,
        peers=[PeerConfig(ka.public_key(), allowed_ips=f"{OA}/32, {OA6}/128")],
    )
    async with AsyncExitStack() as stack:
        # B first: A routes everything to B, the IPv6 router solicitation its link sends when
        # it comes up included, and an initiation sent before B listens is retried only
        # REKEY_TIMEOUT (5 s) later — longer than the tests' pings wait
        ib = await stack.enter_async_context(
            open_interface(
                cb,
                name=testing.unique_name("wb"),
                addresses=[f"{OB}/24", f"{OB6}/64"],
                netns=b.name,
            )
        )
        ia = await stack.enter_async_context(
            open_interface(
                ca,
                name=testing.unique_name("wa"),
                addresses=[f"{OA}/24", f"{OA6}/64"],
                netns=a.name,
            )
        )
        yield ia, ib


@pytest.mark.anyio
async def test_default_routes_through_the_tunnel(
    pair: tuple[testing.Netns, testing.Netns],
) -> None:
    a, b = pair
    outside = sysctl(None, "net.ipv4.conf.all.src_valid_mark")
    with anyio.fail_after(60):
        async with two_sides(a, b) as (ia, ib):
            table = ia.wg.fwmark
            assert table == 51820  # no FwMark: wg-quick's first table, which became the mark
            assert rules(a, "-4") == rules(a, "-6") == policy_rules(table)
            for family in ("-4", "-6"):
                (route,) = a.ip_json(family, "route", "show", "table", str(table))
                assert (route["dst"], route["dev"]) == ("default", ia.name)
            assert sysctl(a, "net.ipv4.conf.all.src_valid_mark") == "1"
            if HAVE_WG:
                shown = await anyio.run_process(["wg", "show", ia.name, "fwmark"])
                assert shown.stdout.decode().strip() == hex(table)
            # unmarked packets go into the tunnel, marked ones (the tunnel's own datagrams)
            # take the main table's default route; and B's own routes stay in its main table
            assert route_dev(a, FAR) == route_dev(a, FAR6) == route_dev(a, UB) == ia.name
            assert route_dev(a, UB, "mark", str(table)) != ia.name
            assert rules(b, "-4") == rules(b, "-6") == [] and ib.wg.fwmark == 0
            if HAVE_NFT:
                # wg-quick's nftables rules, per IP version, as `nft` prints them back
                t4, t6 = f"ip wg-quick-{ia.name}", f"ip6 wg-quick-{ia.name}"
                assert nft_tables(a) == [t4, t6] and nft_tables(b) == []
                mark = f"0x{table:08x}"
                assert nft_rules(a, t4) == [
                    f'iifname != "{ia.name}" ip daddr {OA} fib saddr type != local drop',
                    "meta l4proto udp meta mark set ct mark",
                    f"meta l4proto udp meta mark {mark} ct mark set meta mark",
                ]
                assert nft_rules(a, t6) == [
                    f'iifname != "{ia.name}" ip6 daddr {OA6} fib saddr type != local drop',
                    "meta l4proto udp meta mark set ct mark",
                    f"meta l4proto udp meta mark {mark} ct mark set meta mark",
                ]

            await ping(a, FAR)
            await ping(a, FAR6)
            sa, sb = ia.statistics(), ib.statistics()
            assert sa.wireguard.handshakes_completed == 1
            (peer_b,) = sa.peers
            assert peer_b.endpoint == (UB, 51820)
            # six echo requests in and six replies out of B's side of the tunnel
            assert sb.wireguard.rx_packets >= 6 and sb.wireguard.tx_packets >= 6
    # the rules went with the interface; the sysctl stays (as wg-quick leaves it)
    assert rules(a, "-4") == rules(a, "-6") == []
    if HAVE_NFT:
        assert nft_tables(a) == []
    assert sysctl(a, "net.ipv4.conf.all.src_valid_mark") == "1"
    assert sysctl(None, "net.ipv4.conf.all.src_valid_mark") == outside


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.skipif(not HAVE_NFT, reason="needs nft (package nftables)")
@pytest.mark.parametrize("keep_rules", [True, False], ids=["with-nft-rules", "rules-removed"])
async def test_a_strict_rp_filter_passes_the_tunnel_with_the_nft_rules(
    pair: tuple[testing.Netns, testing.Netns], keep_rules: bool
) -> None:
    # rp_filter = 1 (RHEL's default): the endpoint's datagrams arrive on the veth, but an
    # unmarked reverse lookup of their source goes into the tunnel. The CONNMARK rules give
    # them the mark the flow left with, so the check uses the main table and lets them in.
    a, b = pair
    (veth,) = [link["ifname"] for link in a.ip_json("link", "show", "type", "veth")]
    for key in ("all", "default", veth):
        a.run("sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=1")
    with anyio.fail_after(60):
        async with two_sides(a, b) as (ia, _):
            if not keep_rules:
                # before the first datagram: no connection carries the mark yet
                for table in nft_tables(a):
                    a.run("nft", "delete", "table", *table.split())
            if keep_rules:
                await ping(a, FAR)
                assert ia.statistics().wireguard.handshakes_completed == 1
            else:
                done = await anyio.run_process(
                    a.cmd("ping", "-n", "-c", "2", "-i", "0.5", "-W", "2", FAR), check=False
                )
                assert done.returncode != 0
                assert ia.statistics().wireguard.handshakes_completed == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_without_nft_the_missing_rules_are_named(
    netns_pair: tuple[testing.Netns, testing.Netns],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import tunflow.wireguard._routing as routing

    a, _ = netns_pair
    real_which = shutil.which

    def which(cmd: str, *args: Any, **kwargs: Any) -> str | None:
        return None if cmd == "nft" else real_which(cmd, *args, **kwargs)

    monkeypatch.setattr(routing.shutil, "which", which)
    name = testing.unique_name("wa")
    with anyio.fail_after(30):
        async with open_interface(default_peer(), name=name, netns=a.name, uapi=False):
            assert len(rules(a, "-4")) == 2  # the routing is complete without them
            if HAVE_NFT:
                assert nft_tables(a) == []
    assert "nft not found" in caplog.text and "rp_filter" in caplog.text
    assert caplog.text.count("nft not found") == 1  # once, not per IP version


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.skipif(not HAVE_NFT, reason="needs nft (package nftables)")
async def test_rules_nft_refuses_leave_the_interface_up_with_a_warning(
    netns_pair: tuple[testing.Netns, testing.Netns], caplog: pytest.LogCaptureFixture
) -> None:
    # a name the kernel (and wg-quick) takes but nft cannot parse as part of a table name
    a, _ = netns_pair
    name = testing.unique_name("w") + "+1"
    with anyio.fail_after(30):
        async with open_interface(default_peer(), name=name, netns=a.name, uapi=False):
            assert len(rules(a, "-4")) == 2 and nft_tables(a) == []
    assert "rules for default routes are not made" in caplog.text
    assert rules(a, "-4") == rules(a, "-6") == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_table_with_only_a_blackhole_route_is_not_free(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # as wg-quick sees it (`ip route show table 51820` prints the blackhole route): in use
    a, _ = netns_pair
    a.run("ip", "route", "add", "blackhole", "default", "table", "51820")
    a.run("ip", "-6", "route", "add", "blackhole", "default", "table", "51821")
    name = testing.unique_name("wa")
    with anyio.fail_after(30):
        async with open_interface(default_peer(), name=name, netns=a.name, uapi=False) as ia:
            assert ia.wg.fwmark == 51822
            assert rules(a, "-4") == rules(a, "-6") == policy_rules(51822)


def default_peer(fwmark: int = 0, allowed_ips: str = "0.0.0.0/0, ::/0") -> InterfaceConfig:
    return InterfaceConfig(
        PrivateKey.generate(),
        fwmark=fwmark,
        peers=[PeerConfig(PrivateKey.generate().public_key(), allowed_ips=allowed_ips)],
    )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_rules_removed_when_the_interface_fails(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    a, _ = netns_pair
    name = testing.unique_name("wa")
    failed = False
    try:
        with anyio.fail_after(30):
            async with open_interface(default_peer(), name=name, netns=a.name, uapi=False):
                assert len(rules(a, "-4")) == 2
                raise RuntimeError("boom")
    except* RuntimeError:  # out of the interface's task group, perhaps in a group
        failed = True
    assert failed
    assert rules(a, "-4") == rules(a, "-6") == []
    # failing half-way: the IPv4 rules are in when the IPv4 route is refused (the FwMark's
    # table already has a default route); they are taken away before the error leaves
    a.run("ip", "route", "add", "blackhole", "default", "table", "4242")
    with anyio.fail_after(30), pytest.raises(FileExistsError, match="table 4242"):
        async with open_interface(default_peer(4242), name=name, netns=a.name, uapi=False):
            pytest.fail("the interface came up")
    assert rules(a, "-4") == rules(a, "-6") == []
    assert a.run("ip", "link", "show", name, check=False).returncode != 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_second_interface_takes_the_next_table(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    a, _ = netns_pair
    with anyio.fail_after(30):
        async with (
            open_interface(
                default_peer(), name=testing.unique_name("wa"), netns=a.name, uapi=False
            ) as first,
            open_interface(
                default_peer(), name=testing.unique_name("wa"), netns=a.name, uapi=False
            ) as second,
            open_interface(
                default_peer(0x1234), name=testing.unique_name("wa"), netns=a.name, uapi=False
            ) as third,
        ):
            assert (first.wg.fwmark, second.wg.fwmark, third.wg.fwmark) == (51820, 51821, 0x1234)
            assert {r.get("fwmark") for r in rules(a, "-4")} == {None, "0xca6c", "0xca6d", "0x1234"}
            assert len(rules(a, "-4")) == len(rules(a, "-6")) == 6
    assert rules(a, "-4") == rules(a, "-6") == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("table", [1234, "main", "off"])
async def test_table_number_main_or_off(
    netns_pair: tuple[testing.Netns, testing.Netns], table: int | str
) -> None:
    a, _ = netns_pair
    config = default_peer(allowed_ips="0.0.0.0/0, ::/0, 10.97.0.0/24, fd97::/64")
    name = testing.unique_name("wa")
    number = 254 if table == "main" else table
    with anyio.fail_after(30):
        async with open_interface(
            config, name=name, addresses=["10.96.0.1/24"], netns=a.name, uapi=False, table=number
        ) as wa:
            assert rules(a, "-4") == rules(a, "-6") == []
            assert wa.wg.fwmark == 0
            found = {
                (r["dst"], r.get("table", "main"))
                for family in ("-4", "-6")
                for r in a.ip_json(family, "route", "show", "table", "all", "dev", name)
                if r.get("protocol") != "kernel"
            }
            where = {1234: "1234", 254: "main", "off": None}[number]
            if where is None:
                assert found == set()
            else:
                want = {"default", "10.97.0.0/24", "fd97::/64"}
                assert found == {(dst, where) for dst in want}
    assert rules(a, "-4") == []


@pytest.mark.parametrize(("table", "message"), [(0, "routing table 0"), (255, "local table")])
def test_bad_table_is_refused_before_anything_is_made(table: int, message: str) -> None:
    name = testing.unique_name("wa")

    async def main() -> None:
        async with open_interface(default_peer(), name=name, uapi=False, table=table):
            pytest.fail("the interface came up")

    with pytest.raises(ConfigError, match=message):
        anyio.run(main)


# --- tunflow up FILE -----------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["", "Table = 1234\n"], ids=["auto", "1234"])
def test_tunflow_up_file(
    netns_pair: tuple[testing.Netns, testing.Netns], tmp_path: Path, table: str
) -> None:
    a, _ = netns_pair
    name = testing.unique_name("cla")
    conf = tmp_path / f"{name}.conf"
    conf.write_text(
        f"[Interface]\nPrivateKey = {genkey()}\nAddress = 10.96.0.1/24\n{table}\n"
        f"[Peer]\nPublicKey = {pubkey(genkey())}\nAllowedIPs = 0.0.0.0/0\n"
    )
    with Up(a, conf) as up:
        if table:
            assert rules(a, "-4") == []
            (route,) = a.ip_json("route", "show", "table", "1234")
        else:
            assert rules(a, "-4") == policy_rules(51820) and rules(a, "-6") == []
            (route,) = a.ip_json("route", "show", "table", "51820")
        assert (route["dst"], route["dev"]) == ("default", name)
        if HAVE_WG:
            shown = a.run("wg", "show", name, "fwmark").stdout.strip()
            assert shown == ("off" if table else "0xca6c")
    assert up.returncode == 0, up.out
    assert rules(a, "-4") == []
    assert "Traceback" not in up.out, up.out


# --- default routes following a reload (tunflow reload) --------------------------------------


def in_table(ns: testing.Netns, family: str, table: int) -> list[tuple[str, str]]:
    """The routes in ``table`` as ``(dst, dev)`` (``ip route show table N`` fails for an IPv6
    table that never held one)."""
    found = ns.ip_json(family, "route", "show", "table", "all")
    return [(r["dst"], r["dev"]) for r in found if r.get("table") == str(table)]


def ping_now(ns: testing.Netns, address: str, count: int = 3) -> None:
    done = ns.run("ping", "-n", "-c", str(count), "-i", "0.2", "-W", "3", address, check=False)
    assert done.returncode == 0 and f"{count} received" in done.stdout, done.stdout + done.stderr


def test_a_reload_brings_and_takes_default_routes(
    pair: tuple[testing.Netns, testing.Netns], tmp_path: Path
) -> None:
    # `up` with a prefix only; reloads then add 0.0.0.0/0, add ::/0 (the same table), drop
    # 0.0.0.0/0, drop ::/0 — each set up as `up` sets it up (rules, nftables, the table as the
    # fwmark), each taken away as `down` takes it: the tunnel carries what goes out, and its own
    # datagrams (marked before the rules exist) never loop into it
    a, b = pair
    an, bn = testing.unique_name("dra"), testing.unique_name("drb")
    ka, kb = genkey(), genkey()
    ca, cb = tmp_path / f"{an}.conf", tmp_path / f"{bn}.conf"
    head = (
        f"[Interface]\nPrivateKey = {ka}\nAddress = {OA}/24, {OA6}/64\n\n"
        f"[Peer]\nPublicKey = {pubkey(kb)}\nEndpoint = {UB}:51820\nAllowedIPs = {OB}/32"
    )
    ca.write_text(head + "\n")
    cb.write_text(
        f"[Interface]\nPrivateKey = {kb}\nListenPort = 51820\nAddress = {OB}/24, {OB6}/64\n\n"
        f"[Peer]\nPublicKey = {pubkey(ka)}\nAllowedIPs = {OA}/32, {OA6}/128\n"
    )
    journal = Path(f"/run/tunflow/{an}.undo")
    t4, t6 = f"ip wg-quick-{an}", f"ip6 wg-quick-{an}"
    with Up(b, cb), Up(a, ca) as up:
        ping_now(a, OB)
        veth = route_dev(a, FAR)
        assert veth != an and rules(a, "-4") == rules(a, "-6") == []
        assert uapi_get(an).fwmark == 0

        ca.write_text(head + ", 0.0.0.0/0\n")
        assert reload_cli(a, an) == f"{an} reloaded: 1 peer(s); routes added 0.0.0.0/0\n"
        assert rules(a, "-4") == policy_rules(51820) and rules(a, "-6") == []
        assert in_table(a, "-4", 51820) == [("default", an)]
        assert in_table(a, "-6", 51820) == []
        assert uapi_get(an).fwmark == 51820
        if HAVE_WG:
            assert a.run("wg", "show", an, "fwmark").stdout.strip() == "0xca6c"
        if HAVE_NFT:
            assert nft_tables(a) == [t4]
        assert sysctl(a, "net.ipv4.conf.all.src_valid_mark") == "1"
        recorded = json.loads(journal.read_text())["routes"]
        assert len(recorded["rules"]) == 2
        assert recorded["nft_tables"] == ([t4] if HAVE_NFT else [])
        # out through the tunnel; the tunnel's own datagrams (marked) by the main table
        assert route_dev(a, FAR) == an
        assert route_dev(a, UB, "mark", "51820") == veth
        before = uapi_get(an).peers[0].rx_bytes
        ping_now(a, FAR)
        assert uapi_get(an).peers[0].rx_bytes - before >= 3 * 84  # the replies came through it
        ping_now(a, OB)

        ca.write_text(head + ", 0.0.0.0/0, ::/0\n")
        assert reload_cli(a, an) == f"{an} reloaded: 1 peer(s); routes added ::/0\n"
        assert rules(a, "-4") == rules(a, "-6") == policy_rules(51820)  # the same table
        assert in_table(a, "-6", 51820) == [("default", an)]
        if HAVE_NFT:
            assert nft_tables(a) == [t4, t6]
        ping_now(a, FAR6)  # A's only way there

        ca.write_text(head + ", ::/0\n")
        assert reload_cli(a, an) == f"{an} reloaded: 1 peer(s); routes removed 0.0.0.0/0\n"
        assert rules(a, "-4") == [] and rules(a, "-6") == policy_rules(51820)
        assert in_table(a, "-4", 51820) == []
        if HAVE_NFT:
            assert nft_tables(a) == [t6]
        assert route_dev(a, FAR) == veth
        ping_now(a, FAR6)

        ca.write_text(head + "\n")
        assert reload_cli(a, an) == f"{an} reloaded: 1 peer(s); routes removed ::/0\n"
        assert rules(a, "-4") == rules(a, "-6") == []
        assert in_table(a, "-6", 51820) == []
        if HAVE_NFT:
            assert nft_tables(a) == []
        assert not journal.exists()
        assert uapi_get(an).fwmark == 51820  # left, as wg-quick leaves it
        ping_now(a, OB)
        # no policy rules any more: another FwMark is taken again
        ca.write_text(head.replace("\n\n", "\nFwMark = 0x1234\n\n", 1) + "\n")
        assert reload_cli(a, an) == f"{an} reloaded: 1 peer(s)\n"
        assert uapi_get(an).fwmark == 0x1234
        assert up.stop() == 0
    assert "Traceback" not in up.out, up.out


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_sync_marks_the_socket_before_the_rules_exist(
    netns_pair: tuple[testing.Netns, testing.Netns], monkeypatch: pytest.MonkeyPatch
) -> None:
    # WireGuardInterface.sync(routes=True): the mark is on the UDP socket (and in wg.fwmark)
    # before the first rule is made, policy_mark follows the rules both ways, the fwmark stays
    a, _ = netns_pair
    config = default_peer(allowed_ips="10.97.0.0/24")
    seen: list[tuple[str, int]] = []
    rule = _routing.Routes._rule

    def spy(self: _routing.Routes, made: Any) -> None:
        sock = iface.transport._socket()
        seen.append((str(made), sock.getsockopt(socket.SOL_SOCKET, socket.SO_MARK)))
        rule(self, made)

    monkeypatch.setattr(_routing.Routes, "_rule", spy)
    with anyio.fail_after(30):
        async with open_interface(
            config, name=testing.unique_name("dr"), netns=a.name, uapi=False
        ) as iface:
            assert (iface.policy_mark, iface.wg.fwmark) == (None, 0)
            wider = attrs.evolve(
                config,
                peers=[attrs.evolve(config.peers[0], allowed_ips="10.97.0.0/24, 0.0.0.0/0")],
            )
            changes = await iface.sync(wider, fwmark=False, routes=True)
            assert changes.added == (ip_network("0.0.0.0/0"),) and not changes.refused
            assert [mark for _, mark in seen] == [51820, 51820]
            assert iface.policy_mark == iface.wg.fwmark == 51820
            assert rules(a, "-4") == policy_rules(51820)
            changes = await iface.sync(config, fwmark=False, routes=True)
            assert changes.removed == (ip_network("0.0.0.0/0"),) and not changes.refused
            assert rules(a, "-4") == rules(a, "-6") == []
            assert (iface.policy_mark, iface.wg.fwmark) == (None, 51820)
    assert rules(a, "-4") == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_prefix_another_link_routes_already_is_named(
    netns_pair: tuple[testing.Netns, testing.Netns], caplog: pytest.LogCaptureFixture
) -> None:
    # The kernel keeps another link's route to a prefix (same metric) and refuses ours: that
    # prefix's traffic does not go through the tunnel. wg-quick's `up` fails there; this one
    # comes up and says so — but not for its own address's prefix route, which is normal.
    a, _ = netns_pair
    other = testing.unique_name("ov")
    a.run("ip", "link", "add", other, "type", "veth", "peer", "name", f"{other}p")
    a.run("ip", "link", "set", other, "up")
    a.run("ip", "route", "add", "10.66.0.0/24", "dev", other)
    config = default_peer(allowed_ips="10.65.0.0/24, 10.66.0.0/24, 10.67.0.0/24")
    name = testing.unique_name("wa")
    with anyio.fail_after(30):
        async with open_interface(
            config, name=name, addresses=["10.65.0.1/24"], netns=a.name, uapi=False
        ):
            routes = {r["dst"]: r["dev"] for r in a.ip_json("-4", "route", "show")}
    assert routes["10.66.0.0/24"] == other and routes["10.67.0.0/24"] == name, routes
    assert routes["10.65.0.0/24"] == name, routes
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [
        f"{name}: 10.66.0.0/24 is routed through another interface in the main table already: "
        f"not into {name} (its traffic does not go through the tunnel)"
    ], warned


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_wg_set_fwmark_is_refused_as_a_reload_is_while_policy_rules_use_the_mark(
    netns_pair: tuple[testing.Netns, testing.Netns],
) -> None:
    # sync() (tunflow reload) refused another fwmark than the policy rules' mark — the tunnel's
    # own datagrams would loop into it — but a UAPI set (wg set wg0 fwmark …) took it
    a, _ = netns_pair
    with anyio.fail_after(30):
        async with open_interface(
            default_peer(), name=testing.unique_name("dr"), netns=a.name, uapi=False
        ) as iface:
            mark = iface.policy_mark
            assert mark is not None and iface.wg.fwmark == mark
            assert await iface.apply_uapi(b"set=1\nfwmark=4660\n\n") == b"errno=-22\n\n"
            # fwmark off (0) is another mark too: the datagrams would loop all the same
            assert await iface.apply_uapi(b"set=1\nfwmark=0\n\n") == b"errno=-22\n\n"
            assert iface.wg.fwmark == mark
            assert await iface.apply_uapi(f"set=1\nfwmark={mark}\n\n".encode()) == b"errno=0\n\n"
