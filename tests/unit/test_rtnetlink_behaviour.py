"""The rtnetlink codec at the edges of its documented rules: bounds that malformed bytes or
out-of-range arguments cross, each of which must end in the documented typed error, never a
``struct.error``, a ``ValueError`` from :mod:`ipaddress`, or a silently shortened value.
"""

from __future__ import annotations

import errno
import struct
from ipaddress import IPv4Network, IPv6Network

import pytest

from tests.unit.test_rtnetlink import hdr, ip, msg, nla, u32
from tunflow.errors import ConfigError
from tunflow.netconfig import rtnetlink as rt
from tunflow.netconfig.rtnetlink import Expect, NetlinkDecodeError, Transaction

# --- framing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("short_by", [1, 2, 4])
def test_an_attribute_claiming_bytes_past_the_end_is_refused_not_cut_short(short_by: int) -> None:
    # nla_ok (include/net/netlink.h): nla_len <= remaining; a longer claim is malformed.
    whole = nla(3, b"tfcap0\0\0")
    data = whole[: len(whole) - short_by]
    with pytest.raises(NetlinkDecodeError, match="length 12") as info:
        list(rt.iter_attributes(data))
    assert info.value.errno == errno.EBADMSG


@pytest.mark.parametrize("short_by", [1, 4, 8])
def test_a_next_hop_claiming_bytes_past_the_end_is_refused(short_by: int) -> None:
    hop = struct.pack("=HBBi", 16, 0, 0, 3) + nla(5, ip("192.0.2.1"))
    body = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 254, 4, 0, 1, 0) + nla(9, hop[:-short_by])
    with pytest.raises(NetlinkDecodeError, match="rtnexthop"):
        rt.parse_route(msg(24, body))


# --- sequence numbers ------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [-1, 2**32, 2**40])
def test_with_seq_refuses_a_number_outside_32_bits_with_a_config_error(seq: int) -> None:
    request = rt.encode_get_link(1, index=1)
    with pytest.raises(ConfigError, match="32-bit"):
        rt.with_seq(request, seq)


def test_with_seq_accepts_both_ends_of_the_32_bit_range() -> None:
    request = rt.encode_get_link(1, index=1)
    for seq in (0, 2**32 - 1):
        renumbered = rt.with_seq(request, seq)
        assert struct.unpack_from("=I", renumbered, 8) == (seq,)
        assert renumbered[:8] == request[:8] and renumbered[12:] == request[12:]


# --- errors and acks -------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1, 2**31 - 1])
def test_any_positive_error_code_is_malformed(code: int) -> None:
    # The kernel sends 0 (an ack) or a negative errno; a positive one is no errno to raise.
    data = hdr(20, 2, 0, 1) + struct.pack("=i", code)
    with pytest.raises(NetlinkDecodeError, match="positive"):
        Transaction(1, Expect.ACK).receive_data(data)


@pytest.mark.parametrize("echoed", [0, 4, 15])
def test_an_uncapped_ack_echoing_less_than_a_header_is_malformed(echoed: int) -> None:
    # Without NLM_F_CAPPED the payload echoes the whole request, at least its 16-byte header;
    # the extended-ack TLVs follow it.
    echo = struct.pack("=IHHII", echoed, 20, 5, 1, 0)
    payload = struct.pack("=i", -errno.EINVAL) + echo + nla(1, b"bad\0")
    data = hdr(16 + len(payload), 2, 0x200, 1) + payload
    with pytest.raises(NetlinkDecodeError, match="echoed request length"):
        Transaction(1, Expect.ACK).receive_data(data)


# --- addresses -------------------------------------------------------------------------------


def test_an_ipv6_address_reports_no_broadcast_even_if_one_is_attached() -> None:
    # AddressInfo.broadcast is "the IPv4 broadcast address"; IPv6 has none to report.
    body = (
        struct.pack("=BBBBI", 10, 64, 0, 0, 2)
        + nla(1, ip("2001:db8::1"))
        + nla(4, ip("2001:db8::ffff"))
    )
    info = rt.parse_address(msg(20, body))
    assert info is not None
    assert info.broadcast is None


# --- routes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "dst_len"), [(2, 33), (10, 129)])
def test_a_destination_longer_than_the_family_is_malformed(family: int, dst_len: int) -> None:
    body = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, 254, 4, 0, 1, 0)
    with pytest.raises(NetlinkDecodeError, match=f"destination length {dst_len}"):
        rt.parse_route(msg(24, body))


@pytest.mark.parametrize("value", [b"", b"\x0a"])
def test_an_rta_via_shorter_than_its_family_field_is_malformed(value: bytes) -> None:
    body = struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 254, 4, 0, 1, 0) + nla(18, value)
    with pytest.raises(NetlinkDecodeError, match="RTA_VIA"):
        rt.parse_route(msg(24, body))


@pytest.mark.parametrize(
    ("network", "table", "header_byte"),
    [
        (IPv4Network("198.51.100.0/24"), 255, 255),
        (IPv4Network("198.51.100.0/24"), 256, 252),
        (IPv6Network("2001:db8::/32"), 256, 252),
    ],
)
def test_a_table_id_that_does_not_fit_the_header_byte_says_compat_there(
    network: IPv4Network | IPv6Network, table: int, header_byte: int
) -> None:
    # rtm_table is a __u8: 256 and up are RT_TABLE_COMPAT (252) there, the id in RTA_TABLE (15).
    for request in (
        rt.encode_new_route(1, 2, network, table=table),
        rt.encode_del_route(1, 2, network, table=table),
    ):
        assert request[16 + 4] == header_byte
        assert nla(15, u32(table)) in request[16 + 12 :]
    dump = rt.encode_get_routes(1, family=2 if network.version == 4 else 10, table=table)
    assert dump[16 + 4] == header_byte


# --- interface names -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["\ud800", "tf\udbff0"])
def test_a_name_that_is_no_bytes_is_a_config_error(name: str) -> None:
    # A lone surrogate outside U+DC80..U+DCFF stands for no byte (surrogateescape takes only
    # those): the name cannot be sent, which check_ifname says with ConfigError.
    with pytest.raises(ConfigError, match="interface name"):
        rt.check_ifname(name)
    with pytest.raises(ConfigError, match="interface name"):
        rt.encode_get_link(1, name=name)


def test_a_name_in_escaped_bytes_is_those_bytes() -> None:
    # the names parse_link reports for bytes that are not UTF-8 go back as the same bytes
    assert rt.check_ifname("tf\udcff") == b"tf\xff\0"
