"""Message parsers, the replay window, AllowedIPs, DatagramBatch: unit and property tests."""

from __future__ import annotations

import ast
import ipaddress
import pathlib
import random

import pytest
from hypothesis import given, settings, strategies as st

from tunflow.errors import ConfigError, MalformedPacketError, TruncatedPacketError
from tunflow.wireguard.protocol import (
    AllowedIPs,
    CookieReply,
    DatagramBatch,
    Initiation,
    InterfaceConfig,
    PeerConfig,
    PrivateKey,
    PublicKey,
    ReplayWindow,
    Response,
    TransportHeader,
    WireGuard,
    message_type,
    parse_message,
)
from tunflow.wireguard.protocol.constants import REJECT_AFTER_MESSAGES
from tunflow.wireguard.protocol.messages import (
    parse_cookie_reply,
    parse_initiation,
    parse_response,
    parse_transport_header,
)
from tunflow.wireguard.protocol.replay import WINDOW_SIZE
from tunflow.wireguard.protocol.session import padded_length

# -- messages ---------------------------------------------------------------------------------

INIT = Initiation(0x01020304, bytes(range(32)), bytes(48), bytes(28), b"\x11" * 16, b"\x22" * 16)
RESP = Response(5, 6, bytes(32), bytes(16), b"\x33" * 16, bytes(16))
COOKIE = CookieReply(7, bytes(range(24)), bytes(32))


def test_sizes_and_round_trips() -> None:
    assert len(INIT.encode()) == 148 and parse_message(INIT.encode()) == INIT
    assert len(RESP.encode()) == 92 and parse_message(RESP.encode()) == RESP
    assert len(COOKIE.encode()) == 64 and parse_message(COOKIE.encode()) == COOKIE
    hdr = TransportHeader(9, 2**64 - 1, 0).encode()
    assert len(hdr) == 16
    assert parse_message(hdr + bytes(16)) == TransportHeader(9, 2**64 - 1, 0)
    assert INIT.encode()[:4] == b"\x01\x00\x00\x00"
    assert message_type(RESP.encode()) == 2 and message_type(b"\x05\0\0\0") == 0


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", TruncatedPacketError),
        (b"\x01\0\0", TruncatedPacketError),
        (INIT.encode()[:-1], TruncatedPacketError),
        (INIT.encode() + b"\0", MalformedPacketError),
        (b"\x01\0\x01\0" + INIT.encode()[4:], MalformedPacketError),  # nonzero reserved
        (b"\x09\0\0\0" + bytes(60), MalformedPacketError),
        (b"\x04\0\0\0" + bytes(27), TruncatedPacketError),
    ],
)
def test_parse_errors(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_message(raw)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_parsers_raise_only_documented_errors(data: bytes) -> None:
    for parse in (
        parse_message,
        parse_initiation,
        parse_response,
        parse_cookie_reply,
        parse_transport_header,
    ):
        try:
            parse(data)
        except (MalformedPacketError, TruncatedPacketError):
            pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([INIT.encode(), RESP.encode(), COOKIE.encode()]), st.data())
def test_truncated_and_mutated_messages(raw: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(TruncatedPacketError):
        parse_message(raw[:cut]) if cut >= 4 else parse_initiation(raw[:cut])
    pos = data.draw(st.integers(0, len(raw) - 1))
    mutated = bytearray(raw)
    mutated[pos] ^= data.draw(st.integers(1, 255))
    try:
        parse_message(bytes(mutated))
    except MalformedPacketError:
        assert pos < 4


def test_padding_rule() -> None:
    # wireguard-go calculatePaddingSize: multiples of 16, capped at the MTU
    assert [padded_length(n, 1420) for n in (0, 1, 16, 17, 1400, 1410, 1420)] == [
        0,
        16,
        16,
        32,
        1408,
        1420,
        1420,
    ]
    assert padded_length(1421, 1420) == 1421 + 15
    assert padded_length(1421, 0) == 1424


# -- replay window ----------------------------------------------------------------------------


def test_replay_window_basics() -> None:
    w = ReplayWindow()
    assert w.check(0) and not w.check(0)
    assert w.check(WINDOW_SIZE + 10)
    assert not w.check(9)  # fell out of the window
    assert w.check(10) and not w.check(10)
    assert not w.check(REJECT_AFTER_MESSAGES)
    assert w.check(REJECT_AFTER_MESSAGES - 1)
    w.reset()
    assert w.check(3)


def test_replay_window_wireguard_go_vectors() -> None:
    # wireguard-go's replay/replay_test.go (ported from the kernel's), with its limit
    limit = (1 << 64) - (1 << 4) - 1
    lim = WINDOW_SIZE + 1
    w = ReplayWindow(limit)
    for number, (counter, expected) in enumerate(
        [
            (0, True),
            (1, True),
            (1, False),
            (9, True),
            (8, True),
            (7, True),
            (7, False),
            (lim, True),
            (lim - 1, True),
            (lim - 1, False),
            (lim - 2, True),
            (2, True),
            (2, False),
            (lim + 16, True),
            (3, False),
            (lim + 16, False),
            (lim * 4, True),
            (lim * 4 - (lim - 1), True),
            (10, False),
            (lim * 4 - lim, False),
            (lim * 4 - (lim + 1), False),
            (lim * 4 - (lim - 2), True),
            (lim * 4 + 1 - lim, False),
            (0, False),
            (limit, False),
            (limit - 1, True),
            (limit, False),
            (limit - 1, False),
            (limit - 2, True),
            (limit + 1, False),
            (limit + 2, False),
            (limit - 2, False),
            (limit - 3, True),
            (0, False),
        ],
        start=1,
    ):
        assert w.check(counter) is expected, number
    for bulk in (range(1, WINDOW_SIZE + 1), range(2, WINDOW_SIZE + 2)):
        w = ReplayWindow(limit)
        assert all(w.check(c) for c in bulk)
        assert w.check(bulk.start - 1) and not w.check(0)
    w = ReplayWindow(limit)
    assert all(w.check(c) for c in range(WINDOW_SIZE + 2, 1, -1)) and not w.check(0)


def test_replay_window_is_wireguard_gos_8128_counters() -> None:
    # wireguard-go's windowSize, (ringBlocks - 1) * blockBits: the tests above follow
    # WINDOW_SIZE, so only literals hold it. A counter 8129 behind the highest is in the ring
    # word the highest cleared when it moved there: only this bound keeps it from being
    # accepted a second time.
    assert WINDOW_SIZE == 8128
    w = ReplayWindow()
    assert w.check(63) and w.check(63 + 8129)
    assert not w.check(63)
    assert w.check(64) and not w.check(64)  # 8128 behind: the oldest still accepted, once


def test_replay_window_in_order_across_wraps_of_its_ring() -> None:
    # each word of the ring is cleared as the window moves onto it (else the bits of the
    # counters 8192 earlier refuse new ones)
    w = ReplayWindow()
    assert all(w.check(c) for c in range(3 * 8192 + 100))
    assert not any(w.check(c) for c in range(3 * 8192 + 100 - WINDOW_SIZE, 3 * 8192 + 100))


def _model_accepts(seen: set[int], highest: int | None, c: int) -> bool:
    if c >= REJECT_AFTER_MESSAGES or c in seen:
        return False
    return highest is None or c > highest or highest - c <= WINDOW_SIZE


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(0, 20_000),
            st.integers(REJECT_AFTER_MESSAGES - 20_000, REJECT_AFTER_MESSAGES + 5),
        ),
        max_size=300,
    )
)
def test_replay_window_matches_model(counters: list[int]) -> None:
    """Never accepts a duplicate; accepts every new counter within the window exactly once."""
    w = ReplayWindow()
    seen: set[int] = set()
    highest: int | None = None
    for c in counters:
        expected = _model_accepts(seen, highest, c)
        assert w.check(c) is expected, c
        if expected:
            seen.add(c)
            highest = c if highest is None else max(highest, c)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**40), st.integers(0, 2**32))
def test_replay_window_accepts_in_window_permutation_once(base: int, seed: int) -> None:
    counters = list(range(base, base + WINDOW_SIZE + 1))
    random.Random(seed).shuffle(counters)
    w = ReplayWindow()
    w.check(base + WINDOW_SIZE)  # make the top of the window the highest first
    counters.remove(base + WINDOW_SIZE)
    assert all(w.check(c) for c in counters)
    assert not any(w.check(c) for c in counters[:50])


# -- AllowedIPs -------------------------------------------------------------------------------


def test_allowed_ips_longest_prefix_and_moves() -> None:
    t: AllowedIPs[str] = AllowedIPs()
    t.insert("0.0.0.0/0", "default")
    t.insert("10.0.0.0/8", "a")
    t.insert("10.1.0.0/16", "b")
    t.insert("10.1.2.3/32", "c")
    t.insert("::/0", "v6")
    t.insert("fd00::/64", "a")
    assert t.lookup("10.1.2.3") == "c"
    assert t.lookup("10.1.2.4") == "b"
    assert t.lookup("10.200.0.1") == "a"
    assert t.lookup("192.0.2.1") == "default"
    assert t.lookup("fd00::5") == "a" and t.lookup("2001:db8::1") == "v6"
    assert t.lookup(ipaddress.ip_address("10.1.2.3").packed) == "c"
    t.insert("10.1.0.5/16", "a")  # host bits cleared; the prefix moves from b to a
    assert t.lookup("10.1.9.9") == "a"
    assert sorted(map(str, t.networks("a"))) == ["10.0.0.0/8", "10.1.0.0/16", "fd00::/64"]
    assert t.remove("10.1.2.3/32") == "c" and t.remove("10.1.2.3/32") is None
    assert t.remove_owner("a") == 3
    assert t.lookup("10.1.9.9") == "default"
    assert len(t) == 2
    with pytest.raises(ConfigError):
        t.insert("10.0.0.0/33", "x")


def test_allowed_ips_remove_for_an_owner_takes_only_its_own() -> None:
    # wireguard-go's Remove(prefix, peer): the exact prefix (host bits cleared), if that peer
    # holds it
    t: AllowedIPs[str] = AllowedIPs()
    t.insert("10.0.0.0/8", "a")
    t.insert("10.1.0.0/16", "b")
    assert t.remove("10.1.0.0/16", "a") is None and t.lookup("10.1.0.1") == "b"
    assert t.remove("10.0.0.0/16", "a") is None and t.remove("10.0.0.0/7", "a") is None
    assert t.remove("10.9.9.9/8", "a") == "a"
    assert t.lookup("10.2.0.1") is None and t.networks("a") == []
    assert t.networks("b") == [ipaddress.ip_network("10.1.0.0/16")] and len(t) == 1


def test_allowed_ips_a_moved_prefix_is_no_longer_the_old_owners() -> None:
    t: AllowedIPs[str] = AllowedIPs()
    t.insert("10.1.0.0/16", "b")
    t.insert("10.1.0.0/16", "a")
    assert t.networks("b") == [] and t.remove_owner("b") == 0
    assert t.lookup("10.1.0.1") == "a" and t.networks("a") == [ipaddress.ip_network("10.1.0.0/16")]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32), st.sampled_from("pqrs")),
        max_size=40,
    ),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40),
)
def test_allowed_ips_against_brute_force(
    entries: list[tuple[int, int, str]], probes: list[int]
) -> None:
    t: AllowedIPs[str] = AllowedIPs()
    ref: dict[ipaddress.IPv4Network, str] = {}
    for addr, plen, owner in entries:
        net = ipaddress.IPv4Network((addr, plen), strict=False)
        t.insert(net, owner)
        ref[net] = owner
    for p in probes + [addr for addr, _, _ in entries]:
        ip = ipaddress.IPv4Address(p)
        matches = [n for n in ref if ip in n]
        expected = ref[max(matches, key=lambda n: n.prefixlen)] if matches else None
        assert t.lookup_v4(p) == expected
    assert sorted(t.items(), key=str) == sorted(ref.items(), key=str)


# -- DatagramBatch ------------------------------------------------------------------------------


def test_gso_groups() -> None:
    b = DatagramBatch(4096)
    x, y = ("192.0.2.1", 1), ("192.0.2.2", 2)
    for n, addr in [(100, x), (100, x), (60, x), (100, x), (100, y), (100, y), (120, y), (50, y)]:
        b.append(bytes(n), address=addr)
    assert b.gso_groups() == [
        (x, 0, 260, 100),
        (x, 260, 100, 100),
        (y, 360, 200, 100),
        (y, 560, 170, 120),  # a shorter last segment ends a group
    ]
    assert [g[2] for g in b.gso_groups(max_segments=1)] == [100, 100, 60, 100, 100, 100, 120, 50]


def test_add_segments_for_gro_reads() -> None:
    b = DatagramBatch(4096)
    b.buffer[:250] = bytes(range(250))
    assert b.add_segments(0, 250, 100, ("192.0.2.1", 5)) == 3
    assert b.lengths == [100, 100, 50] and b.end == 250
    assert bytes(b.datagram(2)) == bytes(range(200, 250))
    with pytest.raises(ValueError, match="segment"):
        b.add_segments(0, 5000, 100, None)


# -- the sans-I/O rule --------------------------------------------------------------------------

FORBIDDEN = {"os", "socket", "select", "fcntl", "time", "anyio", "trio", "asyncio"}
FORBIDDEN_TUNFLOW = ("tunflow.platform", "tunflow.device", "tunflow.pipeline", "tunflow.transport")


def test_protocol_package_is_sans_io() -> None:
    root = pathlib.Path(__file__).parents[3] / "tunflow" / "wireguard" / "protocol"
    paths = sorted(root.glob("*.py"))
    assert len(paths) > 1, root
    package = ["tunflow", "wireguard", "protocol"]
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                # a relative import named from the package (``from ...device import x`` is
                # tunflow.device), and each name imported (``from tunflow import device``)
                base = package[: len(package) + 1 - node.level] if node.level else []
                module = ".".join([*base, *filter(None, [node.module])])
                names = [f"{module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
                assert not name.startswith(FORBIDDEN_TUNFLOW), f"{path.name} imports {name}"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("persistent_keepalive", "25"),
        ("persistent_keepalive", 25.5),
        ("persistent_keepalive", True),
        ("persistent_keepalive", 65536),
        ("listen_port", None),
        ("listen_port", -1),
        ("fwmark", 1.0),
        ("fwmark", 1 << 32),
        ("mtu", None),
        ("mtu", 1420.0),
        ("mtu", 575),
    ],
)
def test_numbers_of_the_configuration_are_integers_in_range(field: str, value: object) -> None:
    # a ConfigError naming the field, never a TypeError from a comparison or a float let in
    key = PrivateKey.generate()
    with pytest.raises(ConfigError, match=field):
        if field == "persistent_keepalive":
            PeerConfig(key.public_key(), persistent_keepalive=value)  # type: ignore[arg-type]
        else:
            InterfaceConfig(key, **{field: value})
    if field == "persistent_keepalive":
        wg = WireGuard(key)
        other = PrivateKey.generate().public_key()
        wg.add_peer(PeerConfig(other))
        with pytest.raises(ConfigError, match="persistent keepalive"):
            wg.set_persistent_keepalive(other, value, None)  # type: ignore[arg-type]
        assert wg.peer(other).persistent_keepalive == 0  # type: ignore[union-attr]


def test_a_key_in_base64_must_be_canonical() -> None:
    # "...Bmn=" decodes to the key of "...Bmk=" (the last character's unused bits set): wg and
    # wireguard-go refuse such a spelling, which would make two strings name one key
    good = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
    assert PrivateKey.from_base64(good).to_base64() == good
    for bad in (
        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmn=",
        "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykz=",
    ):
        with pytest.raises(ConfigError, match="not canonical base64"):
            PrivateKey.from_base64(bad)
        with pytest.raises(ConfigError, match="not canonical base64"):
            PublicKey.from_base64(bad)
