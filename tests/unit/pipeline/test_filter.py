"""The filter stage and the header parser it shares with the rate limiter."""

from __future__ import annotations

import ipaddress
import re
import struct

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.layers.inet import IP, TCP, UDP, IPOption_EOL, IPOption_NOP, fragment
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

from tests.helpers import ipv4_udp, ipv6_udp
from tunflow import ConfigError
from tunflow.device import Layer
from tunflow.packet import PacketBatch
from tunflow.pipeline import Direction, Lane, StageSpec
from tunflow_plugins._headers import NOT_IP, Fields, parse
from tunflow_plugins.filter import FilterStage


def icmp4(src: str, dst: str, type_: int) -> bytes:
    ip = dpkt.ip.IP(
        src=bytes(map(int, src.split("."))),
        dst=bytes(map(int, dst.split("."))),
        p=1,
        data=dpkt.icmp.ICMP(type=type_, data=dpkt.icmp.ICMP.Echo(id=1, seq=1, data=b"x")),
    )
    return bytes(ip)


def tcp4(src: str, dst: str, sport: int, dport: int) -> bytes:
    ip = dpkt.ip.IP(
        src=bytes(map(int, src.split("."))),
        dst=bytes(map(int, dst.split("."))),
        p=6,
        data=dpkt.tcp.TCP(sport=sport, dport=dport, flags=dpkt.tcp.TH_SYN),
    )
    return bytes(ip)


def batch_of(packets: list[bytes]) -> PacketBatch:
    b = PacketBatch()
    b.extend(packets)
    return b


def test_parse_fields_match_dpkt() -> None:
    p = bytearray(ipv4_udp("192.0.2.1", "198.51.100.7", 1234, 53, b"hello"))
    v, proto, s, _d, sp, dp, it = parse(p, 0, len(p))  # type: ignore[misc]
    assert (v, proto, sp, dp, it) == (4, 17, 1234, 53, -1)
    assert s == int.from_bytes(bytes([192, 0, 2, 1]), "big")
    q = bytearray(ipv6_udp("fd00::1", "fd00::2", 7, 8, b""))
    assert parse(q, 0, len(q))[:2] == (6, 17)
    i = bytearray(icmp4("10.0.0.1", "10.0.0.2", 8))
    assert parse(i, 0, len(i))[6] == 8


def test_parse_l2_and_vlan() -> None:
    ip = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    frame = bytearray(bytes(12) + b"\x81\x00\x00\x05\x08\x00" + ip)
    assert parse(frame, 0, len(frame), True)[4:6] == (1, 2)
    arp = bytearray(bytes(12) + b"\x08\x06" + bytes(28))
    assert parse(arp, 0, len(arp), True) == NOT_IP


def test_parse_ipv6_extension_headers_and_fragments() -> None:
    udp = ipv6_udp("fd00::1", "fd00::2", 5, 6, b"data")
    hop = bytes([17, 0]) + bytes(6)  # hop-by-hop, then UDP
    body = hop + udp[40:]
    pkt = bytearray(struct.pack("!IHBB", 0x60000000, len(body), 0, 64) + udp[8:40] + body)
    assert parse(pkt, 0, len(pkt))[4:6] == (5, 6)
    frag = bytes([17, 0]) + struct.pack("!H", 8 << 3) + bytes(4)  # a later fragment
    body = frag + b"rest"
    pkt = bytearray(struct.pack("!IHBB", 0x60000000, len(body), 44, 64) + udp[8:40] + body)
    assert parse(pkt, 0, len(pkt))[1:2] == (17,) and parse(pkt, 0, len(pkt))[4] == -1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x45" + bytes(10), "truncated"),
        (b"\x44" + bytes(19), "bad_header_length"),
        (b"\x45\x00\x00\x0a" + bytes(16), "bad_length"),
        (b"\x45\x00\x00\xff" + bytes(16), "truncated"),
        (b"\x75" + bytes(30), "bad_version"),
        (b"\x60" + bytes(20), "truncated"),
    ],
)
def test_parse_malformed(data: bytes, reason: str) -> None:
    assert parse(bytearray(data), 0, len(data)) == reason


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120), st.booleans())
def test_parse_never_raises(data: bytes, l2: bool) -> None:
    result = parse(bytearray(b"pad" + data), 3, len(data), l2)
    assert isinstance(result, str | tuple)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=0, max_size=80), max_size=12), st.sampled_from([4, 6]))
def test_filter_never_raises_on_garbage(packets: list[bytes], version: int) -> None:
    # Start most packets with a plausible version nibble so the deeper checks are reached.
    pk = [bytes([version << 4 | 5]) + p if i % 2 else p for i, p in enumerate(packets)]
    f = FilterStage(
        rules=[
            {"action": "deny", "protocol": "udp", "dst_ports": ["0-1024"]},
            {"action": "allow", "src": ["10.0.0.0/8", "fd00::/8"], "icmp_types": [8]},
        ],
        default="deny",
    )
    out = f.bind(Lane())(batch_of(pk))
    s = f.statistics()
    assert len(out) + s.dropped == len(pk)


def test_rules_first_match_counts_and_default() -> None:
    f = FilterStage(
        rules=[
            {"action": "deny", "protocol": "udp", "dst_ports": [7000], "name": "no7000"},
            {"action": "allow", "protocol": "udp"},
            {"action": "deny", "protocol": "icmp", "icmp_types": [8]},
            {"action": "allow", "dst": ["10.1.0.0/16"], "ip_version": 4},
        ],
        default="deny",
    )
    pk = [
        ipv4_udp("10.0.0.1", "10.0.0.2", 1, 7000, b"a"),  # rule 0 deny
        ipv4_udp("10.0.0.1", "10.0.0.2", 1, 7001, b"b"),  # rule 1 allow
        icmp4("10.0.0.1", "10.0.0.2", 8),  # rule 2 deny
        icmp4("10.0.0.1", "10.1.2.3", 0),  # rule 3 allow
        tcp4("10.0.0.1", "10.9.9.9", 5, 80),  # default deny
        b"\x45\x00",  # malformed
    ]
    out = f.bind(Lane())(batch_of(pk))
    assert out.to_list() == [pk[1], pk[3]]
    s = f.statistics()
    assert s.counters == {"no7000": 1, "rule1": 1, "rule2": 1, "rule3": 1, "default": 1}
    assert s.drops == {"denied": 2, "default": 1, "malformed:truncated": 1}


@pytest.mark.parametrize(
    ("names", "bad", "owner"),
    [
        (["a", "a"], "rules[1]", "'a', which is rules[0]'s"),
        (["default"], "rules[0]", "'default', which is the default policy's"),
        (["rule1", None], "rules[1]", "'rule1', which is rules[0]'s"),
    ],
)
def test_two_rules_of_one_counter_are_refused(
    names: list[str | None], bad: str, owner: str
) -> None:
    # the counters were a dict by label: the last rule of a label (or the default) overwrote
    # the hits of the one before, a denied packet counted nowhere
    rules = [{"action": "deny", "name": n} for n in names]
    with pytest.raises(ConfigError, match=re.escape(owner)) as info:
        StageSpec("filter", {"rules": rules}).build()
    assert info.value.path == bad


def test_direction_and_ports_ranges() -> None:
    f = FilterStage(rules=[{"action": "deny", "direction": "in", "src_ports": ["1000-2000"]}])
    pk = [
        ipv4_udp("10.0.0.1", "10.0.0.2", 1500, 9, b""),
        ipv4_udp("10.0.0.1", "10.0.0.2", 999, 9, b""),
    ]
    assert len(f.bind(Lane(direction=Direction.OUTBOUND))(batch_of(pk))) == 2
    assert len(f.bind(Lane(direction=Direction.INBOUND))(batch_of(pk))) == 1


def test_ipv6_cidr() -> None:
    f = FilterStage(rules=[{"action": "deny", "src": ["fd00:1::/32"]}])
    pk = [ipv6_udp("fd00:1::5", "fd00::2", 1, 2, b""), ipv6_udp("fd00:2::5", "fd00::2", 1, 2, b"")]
    assert f.bind(Lane())(batch_of(pk)).to_list() == [pk[1]]


def test_tap_frames() -> None:
    f = FilterStage(rules=[{"action": "deny", "protocol": "udp"}], non_ip="deny")
    ip = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    tcp = tcp4("10.0.0.1", "10.0.0.2", 1, 2)
    frames = [
        bytes(12) + b"\x08\x00" + ip,
        bytes(12) + b"\x08\x06" + bytes(28),
        bytes(12) + b"\x08\x00" + tcp,
    ]
    out = f.bind(Lane(layer=Layer.L2))(batch_of(frames))
    assert out.to_list() == [frames[2]]
    assert f.statistics().drops == {"denied": 1, "non_ip": 1}


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"rules": [{"action": "maybe"}]}, "rules"),
        ({"rules": [{"action": "deny", "protocol": "icmpp"}]}, "unknown protocol"),
        ({"rules": [{"action": "deny", "src": ["10.0.0.300/8"]}]}, "CIDR"),
        ({"rules": [{"action": "deny", "dst_ports": ["9-1"]}]}, "port range"),
        # (isdigit() took other scripts' digits, "٣" as port 3 and "²" to int()'s ValueError;
        # more than 4300 digits said int()'s "Exceeds the limit (4300 digits) …")
        ({"rules": [{"action": "deny", "dst_ports": ["٣"]}]}, "'٣' is not a port"),
        ({"rules": [{"action": "deny", "dst_ports": ["1-²"]}]}, "'1-²' is not a port"),
        ({"rules": [{"action": "deny", "src_ports": ["1" + "0" * 5000]}]}, "outside 0..65535"),
        ({"rules": [{"action": "deny", "dst_ports": ["0-" + "9" * 5000]}]}, "outside 0..65535"),
        ({"rules": [{"action": "deny", "icmp_types": [300]}]}, "ICMP type"),
        # (ipaddress kept the scope, and the match ignored it)
        ({"rules": [{"action": "deny", "src": ["fe80::%eth0/64"]}]}, "takes no scope"),
        ({"rules": [{"action": "deny", "porto": 1}]}, "unknown option 'porto'"),
    ],
)
def test_bad_options_name_the_path(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        StageSpec("filter", options).build()
    assert info.value.path is not None and info.value.path.startswith("rules")


def test_eight_ipv6_extension_headers_are_allowed_nine_are_not() -> None:
    # the limit is eight; a packet with exactly eight was dropped (the last turn of the loop
    # stepped past the eighth and never looked at the transport header)
    def with_headers(k: int) -> bytes:
        chain = b"".join(bytes([60 if i < k - 1 else 6, 0]) + bytes(6) for i in range(k))
        body = chain + struct.pack("!HH", 1, 80) + bytes(16)
        ip = bytearray(40)
        ip[0] = 0x60
        struct.pack_into("!H", ip, 4, len(body))
        ip[6], ip[7] = 60, 64
        return bytes(ip) + body

    for k, passes in ((7, True), (8, True), (9, False)):
        stage = FilterStage(default="allow")
        batch = PacketBatch()
        batch.append(with_headers(k))
        assert (len(stage.process(batch)) == 1) is passes, k


def scapy_fields(pkt: object, l2: bool = False) -> Fields | str:
    """:func:`parse` of a packet built by scapy, in a buffer that ends where the packet does
    (a read past its end raises rather than reads the next packet)."""
    data = bytearray(bytes(pkt))  # type: ignore[call-overload]
    return parse(data, 0, len(data), l2)


def test_parse_reads_ports_past_routing_and_ah_headers_and_of_sctp() -> None:
    six = IPv6(src="fd00::1", dst="fd00:9::2")
    # RFC 4302: the AH length is in 4-byte words, less 2 (12 bytes of ICV: 24 bytes, 4)
    ah = AH(nh=6, payloadlen=4, spi=1, seq=1, icv=bytes(12))
    for pkt, proto in (
        (six / IPv6ExtHdrRouting() / UDP(sport=5, dport=6), 17),
        (six / ah / TCP(sport=5, dport=6), 6),
        (six / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / SCTP(sport=5, dport=6), 132),
        (IP(src="10.0.0.1", dst="10.0.0.2") / SCTP(sport=5, dport=6), 132),
    ):
        fields = scapy_fields(pkt)
        assert fields[1] == proto and fields[4:6] == (5, 6), pkt.summary()  # type: ignore[index]
    dst = scapy_fields(six / UDP(sport=5, dport=6))[3]  # type: ignore[index]
    assert dst == int(ipaddress.ip_address("fd00:9::2"))


def test_parse_gives_a_first_fragment_its_ports_and_later_ones_none() -> None:
    # the first fragment (offset 0, more-fragments set) carries the transport header
    big = b"x" * 3000
    frags4 = fragment(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1234, dport=53) / big, 1000)
    frags6 = fragment6(
        IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrFragment() / UDP(sport=1234, dport=53) / big,
        1280,
    )
    for frags in (frags4, frags6):
        assert len(frags) > 2
        got = [scapy_fields(f)[4:6] for f in frags]  # type: ignore[index]
        assert got == [(1234, 53)] + [(-1, -1)] * (len(frags) - 1)


def test_parse_malformed_packets_built_by_scapy() -> None:
    udp4 = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"data")
    udp6 = bytes(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1, dport=2) / b"data")
    # a total length under the header with its options (24 bytes)
    opts = [IPOption_NOP()] * 3 + [IPOption_EOL()]
    short_total = IP(src="10.0.0.1", dst="10.0.0.2", len=22, options=opts) / UDP()
    # a hop-by-hop header of 16 bytes (length 1) in a payload of 8, then no next header
    long_hbh = IPv6(src="fd00::1", dst="fd00::2", nh=0) / Raw(bytes([59, 1]) + bytes(6))
    # a fragment header cut to 4 bytes (offset 1: a later fragment)
    cut_frag = IPv6(src="fd00::1", dst="fd00::2", nh=44) / Raw(b"\x11\x00\x00\x08")
    for data, reason in (
        (bytes(short_total), "bad_length"),
        (udp4[:-1], "truncated"),
        (udp6[:-1], "truncated"),
        (bytes(long_hbh), "truncated"),
        (bytes(cut_frag), "truncated"),
    ):
        assert scapy_fields(Raw(data)) == reason, data.hex()
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for frame in (
        bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2))[:-1],
        bytes(eth / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1, dport=2))[:-1],
        bytes(eth / Dot1Q(vlan=5) / IP())[:16],  # cut inside the VLAN tag
    ):
        assert scapy_fields(Raw(frame), l2=True) == "truncated", frame.hex()


def test_a_network_of_one_ip_version_never_matches_the_other() -> None:
    f = FilterStage(
        rules=[{"action": "deny", "src": ["0.0.0.0/0"]}, {"action": "allow", "dst": ["::/0"]}],
        default="deny",
    )
    v4 = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    v6 = ipv6_udp("fd00::1", "fd00::2", 1, 2, b"")
    assert f.bind(Lane())(batch_of([v4, v6])).to_list() == [v6]
    assert f.statistics().counters == {"rule0": 1, "rule1": 1, "default": 0}


def test_a_rule_of_one_ip_version_leaves_the_other_alone() -> None:
    f = FilterStage(rules=[{"action": "deny", "ip_version": 6, "protocol": "udp"}])
    v4 = ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"")
    v6 = ipv6_udp("fd00::1", "fd00::2", 1, 2, b"")
    assert f.bind(Lane())(batch_of([v4, v6])).to_list() == [v4]
