"""The xplatform UAPI codec: parsing, rendering, applying, and the request stream.

The sample ``get=1`` answer below has the shape wireguard-go produces (key order from
wireguard-go's ``device/uapi.go`` ``IpcGetOperation``).
"""

from __future__ import annotations

import errno
import ipaddress
import time
from collections.abc import Callable, Iterator

import attrs
import pytest
from hypothesis import given, settings, strategies as st
from wgpair import A_IP, B_ADDR, B_IP, Pair, ip4

from tunflow.errors import ConfigError
from tunflow.wireguard.protocol import (
    DeviceInfo,
    GetRequest,
    PeerConfig,
    PeerInfo,
    PeerUpdate,
    PresharedKey,
    PrivateKey,
    PublicKey,
    SetRequest,
    UapiConnection,
    UapiError,
    WireGuard,
    apply_set,
    check_set,
    handle_request,
    parse_endpoint,
    parse_get,
    parse_network,
    parse_set,
    render_errno,
    render_get,
    render_set,
)
from tunflow.wireguard.protocol.allowedips import AllowedIPs, Network
from tunflow.wireguard.protocol.uapi import MAX_REQUEST_SIZE

K1 = PrivateKey(bytes(range(32)))
P1 = PrivateKey(bytes(range(1, 33))).public_key()
P2 = PrivateKey(bytes(range(2, 34))).public_key()

WIREGUARD_GO_GET = (
    "private_key=" + K1.to_hex() + "\n"
    "listen_port=51820\n"
    "fwmark=7\n"
    "public_key=" + P1.to_hex() + "\n"
    "preshared_key=" + "00" * 32 + "\n"
    "protocol_version=1\n"
    "endpoint=[2001:db8::1]:51820\n"
    "last_handshake_time_sec=1700000000\n"
    "last_handshake_time_nsec=123456789\n"
    "tx_bytes=1000\n"
    "rx_bytes=2000\n"
    "persistent_keepalive_interval=25\n"
    "allowed_ip=10.0.0.2/32\n"
    "allowed_ip=fd00::/64\n"
    "public_key=" + P2.to_hex() + "\n"
    "preshared_key=" + "ab" * 32 + "\n"
    "protocol_version=1\n"
    "last_handshake_time_sec=0\n"
    "last_handshake_time_nsec=0\n"
    "tx_bytes=0\n"
    "rx_bytes=0\n"
    "persistent_keepalive_interval=0\n"
    "errno=0\n"
    "\n"
)


def test_parse_wireguard_go_get_response_and_render_it_back() -> None:
    info = parse_get(WIREGUARD_GO_GET)
    assert info.private_key == K1 and info.listen_port == 51820 and info.fwmark == 7
    p1, p2 = info.peers
    assert p1.endpoint == ("2001:db8::1", 51820)
    assert (p1.last_handshake_time_sec, p1.last_handshake_time_nsec) == (1700000000, 123456789)
    assert (p1.tx_bytes, p1.rx_bytes, p1.persistent_keepalive_interval) == (1000, 2000, 25)
    assert [str(n) for n in p1.allowed_ips] == ["10.0.0.2/32", "fd00::/64"]
    assert p2.preshared_key == PresharedKey(b"\xab" * 32) and p2.endpoint is None
    assert render_get(info).decode() == WIREGUARD_GO_GET


def test_parse_get_reports_errno_and_skips_unknown_keys() -> None:
    with pytest.raises(UapiError) as exc:
        parse_get("errno=-22\n\n")
    assert exc.value.errno == errno.EINVAL
    assert parse_get("something_new=1\nerrno=0\n\n") == DeviceInfo()
    # the response ends at its empty line: what a stream holds after it is not part of it
    assert parse_get("errno=0\n\nlisten_port=5\nerrno=-22\n\n") == DeviceInfo()


def test_render_get_of_a_live_interface() -> None:
    p = Pair()
    p.handshake()
    text = render_get(p.a).decode()
    assert text.endswith("errno=0\n\n")
    info = parse_get(text)
    [peer] = info.peers
    assert peer.public_key == p.kb.public_key()
    assert peer.endpoint == p.b_addr
    assert peer.last_handshake_time_sec == int(p.now)
    assert peer.tx_bytes == p.peer_of_a.tx_bytes > 0 and peer.rx_bytes == 92
    assert [str(n) for n in peer.allowed_ips] == ["10.0.0.2/32", "fd00::2/128"]


def test_a_removed_private_key_leaves_the_get_as_wireguard_go_does() -> None:
    # wg set … private-key /dev/null sends 64 zero digits; wireguard-go takes them and its
    # get=1 then has no private_key line, the rest unchanged; a peer named meanwhile
    # handshakes once a key is set again
    p = Pair()
    p.handshake()
    before = render_get(p.a)
    removal = parse_set("private_key=" + "0" * 64 + "\n")
    assert handle_request(p.a, removal, p.now) == b"errno=0\n\n"
    after = render_get(p.a)
    assert before.startswith(b"private_key=" + p.ka.to_hex().encode() + b"\n")
    assert after == before.split(b"\n", 1)[1]
    assert parse_get(after.decode()).private_key is None
    assert handle_request(p.a, removal, p.now) == b"errno=0\n\n"  # none to remove: no change
    pk = p.kb.public_key().to_hex()
    again = f"public_key={pk}\nremove=true\npublic_key={pk}\nendpoint=192.0.2.2:51820\n"
    again += "allowed_ip=10.0.0.2/32\n"
    assert handle_request(p.a, parse_set(again), p.now) == b"errno=0\n\n"
    p.advance(1.0)  # (an initiation with the first one's timestamp would be a replay)
    key = parse_set("private_key=" + p.ka.to_hex() + "\n")
    assert handle_request(p.a, key, p.now) == b"errno=0\n\n"
    assert p.transfer("a", [ip4(A_IP, B_IP)]) == [ip4(A_IP, B_IP)]
    assert render_get(p.a).startswith(b"private_key=" + p.ka.to_hex().encode() + b"\n")


def test_sync_request_of_a_config_without_a_key_removes_it_as_wg_syncconf() -> None:
    # wg syncconf of a file without PrivateKey sends private_key=<64 zeros> (wg's
    # config_read_init marks the key as given; sync_conf leaves it): the key goes; a file
    # with it again brings it back, and the peer handshakes
    from tunflow.wireguard.protocol import InterfaceConfig, sync_request

    p = Pair()
    p.handshake()
    peers = [PeerConfig(p.kb.public_key(), endpoint=B_ADDR, allowed_ips=(f"{B_IP}/32",))]
    request = sync_request(p.a, InterfaceConfig(None, peers=peers), listen_port=False)
    assert render_set(request).startswith(b"set=1\nprivate_key=" + b"0" * 64 + b"\n")
    assert handle_request(p.a, request, p.now) == b"errno=0\n\n"
    assert p.a.private_key is None and set(p.a.peers) == {p.kb.public_key()}
    p.a.send_packet(ip4(A_IP, B_IP, b"waits"), p.now)
    assert p.a.datagrams_to_send() == []
    again = sync_request(p.a, InterfaceConfig(None, peers=peers), listen_port=False)
    assert handle_request(p.a, again, p.now) == b"errno=0\n\n" and p.a.private_key is None
    p.advance(1.0)
    back = sync_request(p.a, InterfaceConfig(p.ka, peers=peers), listen_port=False)
    assert not back.remove_private_key
    assert handle_request(p.a, back, p.now) == b"errno=0\n\n"
    assert p.a.private_key == p.ka
    p.flush()
    assert ip4(A_IP, B_IP, b"waits") in p.got["b"]


def test_a_keyless_interface_ignores_the_all_zero_keys_peer_as_wireguard_go() -> None:
    # wireguard-go keeps the all-zero key as its identity: a peer with that key's public key
    # is removed when the key is removed, and ignored while there is none
    zero = PrivateKey(bytes(32)).public_key()
    wg = WireGuard(K1)
    wg.add_peer(PeerConfig(zero))
    wg.add_peer(PeerConfig(P1))
    apply_set(wg, SetRequest(remove_private_key=True, peers=(PeerUpdate(zero),)))
    assert set(wg.peers) == {P1}
    apply_set(wg, SetRequest(peers=(PeerUpdate(zero), PeerUpdate(P2))))
    assert set(wg.peers) == {P1, P2}


def test_parse_set_like_wg_sends_it() -> None:
    body = (
        "private_key=" + K1.to_hex() + "\n"
        "listen_port=12912\n"
        "fwmark=0\n"
        "replace_peers=true\n"
        "public_key=" + P1.to_hex() + "\n"
        "preshared_key=" + "cc" * 32 + "\n"
        "endpoint=192.0.2.9:51820\n"
        "persistent_keepalive_interval=15\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=192.168.4.4/32\n"
        "allowed_ip=fd00::4/128\n"
        "public_key=" + P2.to_hex() + "\n"
        "remove=true\n"
        "\n"
        "ignored after the empty line\n"
    )
    req = parse_set(body)
    assert req.private_key == K1 and req.listen_port == 12912 and req.fwmark == 0
    assert req.replace_peers
    u1, u2 = req.peers
    assert u1 == PeerUpdate(
        P1,
        preshared_key=PresharedKey(b"\xcc" * 32),
        endpoint=("192.0.2.9", 51820),
        persistent_keepalive_interval=15,
        replace_allowed_ips=True,
        allowed_ips=(parse_network("192.168.4.4/32"), parse_network("fd00::4/128")),
    )
    assert u2 == PeerUpdate(P2, remove=True)
    assert parse_set(render_set(req)[len("set=1\n") :]) == req


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("listen_port=65536\n", errno.EINVAL),
        ("listen_port=-1\n", errno.EINVAL),
        ("private_key=abc\n", errno.EINVAL),
        ("public_key=" + "00" * 32 + "\nwhat=1\n", errno.EINVAL),
        ("public_key=" + "00" * 32 + "\nlisten_port=1\n", errno.EINVAL),  # device key in peer
        ("public_key=" + "00" * 32 + "\nprotocol_version=2\n", errno.EINVAL),
        ("public_key=" + "00" * 32 + "\nallowed_ip=10.0.0.0/99\n", errno.EINVAL),
        # a prefix with a scope: Python keeps it, wireguard-go refuses it, wg cannot read it back
        ("public_key=" + "00" * 32 + "\nallowed_ip=fd16::%eth0/64\n", errno.EINVAL),
        ("public_key=" + "00" * 32 + "\nendpoint=example.com:1\n", errno.EINVAL),
        ("public_key=" + "00" * 32 + "\nendpoint=192.0.2.1:\u0665\n", errno.EINVAL),  # '٥'
        ("public_key=" + "00" * 32 + "\nendpoint=192.0.2.1:5_1\n", errno.EINVAL),
        ("public_key=" + "00" * 32 + "\nremove=yes\n", errno.EINVAL),
        # wireguard-go takes these flags as "true" only: "false" is an invalid value, not a no
        ("replace_peers=false\n", errno.EINVAL),
        ("public_key=" + "00" * 32 + "\nremove=false\n", errno.EINVAL),
        ("public_key=" + "00" * 32 + "\nupdate_only=false\n", errno.EINVAL),
        ("public_key=" + "00" * 32 + "\nreplace_allowed_ips=false\n", errno.EINVAL),
        # a 16-bit field: one past it is EINVAL, not a ConfigError out of PeerUpdate
        ("public_key=" + "00" * 32 + "\npersistent_keepalive_interval=65536\n", errno.EINVAL),
        # numbers of more digits than int() converts (4300): a ValueError escaped parse_set
        ("listen_port=" + "9" * 5000 + "\n", errno.EINVAL),
        ("fwmark=" + "1" * 4301 + "\n", errno.EINVAL),
        ("public_key=" + "00" * 32 + "\npersistent_keepalive_interval=" + "7" * 5000, errno.EINVAL),
        ("public_key=" + "00" * 32 + "\nendpoint=192.0.2.1:" + "5" * 5000 + "\n", errno.EINVAL),
        ("no equals sign\n", errno.EPROTO),
    ],
)
def test_parse_set_errors(body: str, code: int) -> None:
    with pytest.raises(UapiError) as exc:
        parse_set(body)
    assert exc.value.errno == code and not exc.value.fatal


def test_numbers_past_int_s_digit_limit_are_refused_or_read_as_wireguard_go_reads_them() -> None:
    # int() refuses more than 4300 digits with a ValueError, which came out of parse_set — of
    # UapiConnection.next_request, so out of the control socket's client task into the
    # interface's task group — and of PeerConfig; now such a number is out of range (EINVAL,
    # ConfigError), and leading zeros count for nothing, as wireguard-go's ParseUint reads them
    conn = UapiConnection()
    conn.receive_data(b"set=1\nlisten_port=" + b"9" * 5000 + b"\n\nget=1\n\n")
    refused = conn.next_request()
    assert isinstance(refused, UapiError) and refused.errno == errno.EINVAL
    assert conn.next_request() == GetRequest()
    with pytest.raises(ConfigError, match="port must be 1…65535"):
        PeerConfig(P1, endpoint="192.0.2.1:" + "6" * 4301)
    zeros = "0" * 5000
    assert parse_set("listen_port=" + zeros + "51820\n").listen_port == 51820
    assert parse_endpoint("[2001:db8::1]:" + zeros + "5") == ("2001:db8::1", 5)


def test_a_link_local_endpoint_keeps_its_scope() -> None:
    # as wg(8) sends it and wireguard-go reports it back
    body = "public_key=" + P1.to_hex() + "\nendpoint=[fe80::1%lo]:51820\n"
    [u] = parse_set(body).peers
    assert u.endpoint == ("fe80::1%lo", 51820)
    wg = WireGuard(K1)
    apply_set(wg, parse_set(body))
    assert "\nendpoint=[fe80::1%lo]:51820\n" in render_get(wg).decode()


@pytest.mark.parametrize("scope", ["\xc3\xa9".encode("latin-1"), b"\xff"])
def test_a_scope_that_is_not_ascii_does_not_break_get(scope: bytes) -> None:
    # a link name may be any bytes; wireguard-go takes such a scope and echoes it. tunflow took
    # it too, then every get=1 raised UnicodeEncodeError — which ended `tunflow up` (the VPN
    # went down with a traceback at the next `wg show`)
    body = b"public_key=" + P1.to_hex().encode() + b"\nendpoint=[fe80::1%" + scope + b"]:5\n"
    wg = WireGuard(K1)
    assert handle_request(wg, parse_set(body)) == b"errno=0\n\n"
    answer = handle_request(wg, GetRequest())
    assert answer.endswith(b"errno=0\n\n")
    [peer] = parse_get(answer).peers
    assert peer.endpoint == wg.peer(P1).endpoint
    assert render_set(SetRequest(peers=(PeerUpdate(P1, endpoint=peer.endpoint),)))


def test_replace_allowed_ips_after_allowed_ip_discards_them() -> None:
    body = "public_key=" + P1.to_hex() + "\nallowed_ip=10.0.0.1/32\nreplace_allowed_ips=true\n"
    [u] = parse_set(body).peers
    assert u.replace_allowed_ips and u.allowed_ips == ()


def test_allowed_ip_with_a_minus_removes_the_prefix() -> None:
    # recent wireguard-tools send `wg set wg0 peer K allowed-ips -10.0.0.5/32` (and `-` in a
    # file's AllowedIPs) as allowed_ip=-10.0.0.5/32; wireguard-go removes that prefix from the
    # peer if the peer holds it (device/uapi.go, AllowedIPs.Remove), else ignores it. tunflow
    # answered EINVAL
    wg = WireGuard(K1)
    wg.add_peer(PeerConfig(P1, allowed_ips="10.0.0.5/32, 10.1.0.0/16, fd00::/64, 10.0.0.0/24"))
    wg.add_peer(PeerConfig(P2, allowed_ips="10.2.0.0/16"))
    p1, p2 = wg.peer(P1), wg.peer(P2)
    lines = [
        "-10.0.0.5/32",  # held: removed
        "-10.2.0.0/16",  # another peer's: left alone
        "-10.1.2.3/16",  # host bits cleared, as wireguard-go's trie ignores them: 10.1.0.0/16
        "-10.9.0.0/16",  # held by nobody
        "-10.0.0.0/25",  # a longer prefix inside one it holds: nothing
        "-fd00::/64",
    ]
    body = "public_key=" + P1.to_hex() + "\n" + "".join(f"allowed_ip={n}\n" for n in lines)
    [u] = parse_set(body).peers
    assert u.allowed_ips == ()
    assert [str(n) for n in u.removed_allowed_ips] == [
        "10.0.0.5/32",
        "10.2.0.0/16",
        "10.1.0.0/16",
        "10.9.0.0/16",
        "10.0.0.0/25",
        "fd00::/64",
    ]
    assert handle_request(wg, parse_set(body)) == b"errno=0\n\n"
    assert [str(n) for n in wg.allowed_ips.networks(p1)] == ["10.0.0.0/24"]
    assert wg.allowed_ips.lookup("10.0.0.5") is p1  # by its /24 now
    assert wg.allowed_ips.lookup("10.1.0.1") is None
    assert wg.allowed_ips.lookup("fd00::1") is None
    assert wg.allowed_ips.networks(p2) == [parse_network("10.2.0.0/16")]
    # get=1 lists what is left, as before
    got = handle_request(wg, GetRequest()).decode()
    assert "allowed_ip=-" not in got and got.count("allowed_ip=") == 2
    # removing the last one leaves the peer, without prefixes
    body = "public_key=" + P1.to_hex() + "\nallowed_ip=-10.0.0.0/24\n"
    assert handle_request(wg, parse_set(body)) == b"errno=0\n\n"
    assert wg.peer(P1) is p1 and wg.allowed_ips.networks(p1) == []


def test_allowed_ip_removals_apply_as_the_lines_come() -> None:
    # wireguard-go applies line by line: a prefix the peer just took from another and then
    # removes is nobody's; one removed then added is the peer's; replace_allowed_ips discards
    # both before it
    wg = WireGuard(K1)
    wg.add_peer(PeerConfig(P1, allowed_ips="10.1.0.0/16"))
    wg.add_peer(PeerConfig(P2, allowed_ips="10.2.0.0/16, 10.3.0.0/16"))
    p1, p2 = wg.peer(P1), wg.peer(P2)
    body = (
        "public_key=" + P1.to_hex() + "\n"
        "allowed_ip=10.2.0.0/16\nallowed_ip=-10.2.0.0/16\n"  # taken from P2, then removed
        "allowed_ip=-10.1.0.0/16\nallowed_ip=10.1.0.0/16\n"  # removed, then added back
        "allowed_ip=-10.4.0.0/16\nallowed_ip=10.4.0.0/16\nallowed_ip=-10.4.0.0/16\n"
    )
    req = parse_set(body)
    [u] = req.peers
    assert [str(n) for n in u.allowed_ips] == ["10.2.0.0/16", "10.1.0.0/16", "10.4.0.0/16"]
    assert [str(n) for n in u.removed_allowed_ips] == ["10.2.0.0/16", "10.4.0.0/16"]
    assert parse_set(render_set(req)[len("set=1\n") :]) == req
    assert handle_request(wg, req) == b"errno=0\n\n"
    assert wg.allowed_ips.lookup("10.2.0.1") is None
    assert wg.allowed_ips.lookup("10.1.0.1") is p1
    assert wg.allowed_ips.lookup("10.4.0.1") is None
    assert wg.allowed_ips.networks(p2) == [parse_network("10.3.0.0/16")]
    body = "public_key=" + P2.to_hex() + "\nallowed_ip=-10.3.0.0/16\nreplace_allowed_ips=true\n"
    [u] = parse_set(body).peers
    assert u.replace_allowed_ips and u.removed_allowed_ips == ()
    # for a peer it does not have, a removal makes it (as any peer line); update_only does not
    new = PrivateKey(bytes(range(9, 41))).public_key()
    ghost = PrivateKey(bytes(range(10, 42))).public_key()
    body = (
        f"public_key={new.to_hex()}\nallowed_ip=-10.1.0.0/16\n"
        f"public_key={ghost.to_hex()}\nupdate_only=true\nallowed_ip=-10.1.0.0/16\n"
        f"public_key={K1.public_key().to_hex()}\nallowed_ip=-10.1.0.0/16\n"  # ourselves
    )
    assert handle_request(wg, parse_set(body)) == b"errno=0\n\n"
    assert set(wg.peers) == {P1, P2, new}
    assert wg.allowed_ips.lookup("10.1.0.1") is p1


@pytest.mark.parametrize("value", ["-", "--10.0.0.0/8", "- 10.0.0.0/8", "-10.0.0.0", "+10.0.0.0/8"])
def test_a_malformed_allowed_ip_removal_is_refused(value: str) -> None:
    # wireguard-go strips one '-' and parses the rest as a prefix; '+' is wg(8)'s, not the
    # protocol's
    with pytest.raises(UapiError) as exc:
        parse_set("public_key=" + P1.to_hex() + "\nallowed_ip=" + value + "\n")
    assert exc.value.errno == errno.EINVAL


def test_apply_set_semantics() -> None:
    wg = WireGuard(K1)
    wg.add_peer(PeerConfig(P2, allowed_ips="10.2.0.0/16"))
    req = SetRequest(
        listen_port=51000,
        fwmark=3,
        peers=(
            PeerUpdate(K1.public_key(), allowed_ips=(parse_network("1.2.3.4/32"),)),  # ourselves
            PeerUpdate(P1, endpoint=("192.0.2.1", 1), allowed_ips=(parse_network("10.2.3.0/24"),)),
            PeerUpdate(P2, allowed_ips=(parse_network("10.3.0.0/16"),)),
            PeerUpdate(PrivateKey(bytes(range(5, 37))).public_key(), update_only=True),
        ),
    )
    apply_set(wg, req, now=0.0)
    assert (wg.listen_port, wg.fwmark) == (51000, 3)
    assert set(wg.peers) == {P1, P2}
    assert wg.allowed_ips.lookup("10.2.3.9") is wg.peer(P1)  # longer prefix
    assert wg.allowed_ips.lookup("10.2.9.9") is wg.peer(P2)  # added to, not replaced
    assert wg.allowed_ips.lookup("10.3.0.1") is wg.peer(P2)
    assert wg.allowed_ips.lookup("1.2.3.4") is None
    apply_set(wg, SetRequest(peers=(PeerUpdate(P2, replace_allowed_ips=True),)))
    assert wg.allowed_ips.networks(wg.peer(P2)) == []
    apply_set(wg, SetRequest(peers=(PeerUpdate(P1, remove=True),)))
    assert set(wg.peers) == {P2}
    apply_set(wg, SetRequest(replace_peers=True))
    assert wg.peers == {}
    apply_set(wg, SetRequest(remove_private_key=True))
    assert wg.private_key is None


def test_replace_peers_keeps_native_mode_of_a_peer_named_again() -> None:
    # wg setconf removes every peer and adds those of the file: a native-mode peer came back
    # speaking WireGuard, while its tunflow peer kept sending native messages (dropped)
    wg = WireGuard(K1)
    wg.add_peer(PeerConfig(P1, native_mode=True))
    wg.add_peer(PeerConfig(P2))
    p3 = PrivateKey(bytes(range(5, 37))).public_key()
    apply_set(wg, parse_set(f"replace_peers=true\npublic_key={P1.to_hex()}\n"
                            f"public_key={P2.to_hex()}\npublic_key={p3.to_hex()}\n\n"))  # fmt: skip
    assert [wg.peer(pk).native_mode for pk in (P1, P2, p3)] == [True, False, False]
    apply_set(wg, SetRequest(peers=(PeerUpdate(P1, remove=True),)))
    apply_set(wg, SetRequest(peers=(PeerUpdate(P1),)))
    assert not wg.peer(P1).native_mode  # removed, then added anew: a new peer


def test_a_refused_set_changes_nothing() -> None:
    # a peer key tunflow refuses (a low-order point) must fail the request before any of it
    # is applied: wg reports "Unable to modify interface" and the interface must be as it was,
    # not stripped of its peers by replace_peers or moved to another port/key halfway
    wg = WireGuard(K1)
    wg.add_peer(PeerConfig(P2, allowed_ips="10.2.0.0/16"))
    low_order = PublicKey(bytes(32))
    new_key = PrivateKey(bytes(range(7, 39)))
    req = SetRequest(
        private_key=new_key,
        listen_port=4000,
        fwmark=9,
        replace_peers=True,
        peers=(
            PeerUpdate(P1, allowed_ips=(parse_network("10.1.0.0/16"),)),
            PeerUpdate(low_order, allowed_ips=(parse_network("10.9.0.0/16"),)),
        ),
    )
    assert handle_request(wg, req) == b"errno=-22\n\n"
    assert wg.private_key == K1 and (wg.listen_port, wg.fwmark) == (0, 0)
    assert set(wg.peers) == {P2}
    assert wg.allowed_ips.lookup("10.2.0.1") is wg.peer(P2)
    # the same key with update_only or remove creates nothing: accepted, as wireguard-go does
    ok = SetRequest(
        peers=(PeerUpdate(low_order, update_only=True), PeerUpdate(low_order, remove=True))
    )
    assert handle_request(wg, ok) == b"errno=0\n\n"


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: SetRequest(listen_port=65536), "listen_port"),
        (lambda: SetRequest(listen_port=-1), "listen_port"),
        (lambda: SetRequest(listen_port=True), "listen_port"),
        (lambda: SetRequest(fwmark=1 << 32), "fwmark"),
        (lambda: SetRequest(fwmark="1"), "fwmark"),
        (lambda: PeerUpdate(P1, persistent_keepalive_interval=70000), "persistent_keepalive"),
        (lambda: PeerUpdate(P1, persistent_keepalive_interval=2.5), "persistent_keepalive"),
    ],
)
def test_a_request_built_by_hand_is_checked_when_made(
    make: Callable[[], object], field: str
) -> None:
    # parse_set checks the numbers of a request from the socket; one built in code must not get
    # as far as apply_set, which would stop halfway (the key and peers before it changed)
    with pytest.raises(ConfigError, match=field):
        make()
    assert SetRequest(listen_port=65535, fwmark=(1 << 32) - 1).fwmark == (1 << 32) - 1
    assert PeerUpdate(P1, persistent_keepalive_interval=0).persistent_keepalive_interval == 0


def test_get_lists_allowed_ips_in_the_order_they_were_added() -> None:
    # wireguard-go and the kernel keep each peer's prefixes in a list, in insertion order:
    # `wg show`, `wg showconf` and SaveConfig show AllowedIPs as they were written (checked
    # against wireguard-go 0.0.20220316). Adding a prefix the peer has keeps its place; one
    # taken from another peer goes last.
    wg = WireGuard(K1)
    wg.add_peer(PeerConfig(P2, allowed_ips="10.9.0.0/16"))
    order = ["10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/24", "fd00::/64", "10.0.0.1/32", "::/0"]
    body = "public_key=" + P1.to_hex() + "\n" + "".join(f"allowed_ip={n}\n" for n in order)
    body += "allowed_ip=10.0.0.0/8\nallowed_ip=10.9.0.0/16\n"
    assert handle_request(wg, parse_set(body)) == b"errno=0\n\n"
    [p1] = [p for p in parse_get(handle_request(wg, GetRequest())).peers if p.public_key == P1]
    assert [str(n) for n in p1.allowed_ips] == [*order, "10.9.0.0/16"]
    assert wg.allowed_ips.networks(wg.peer(P2)) == []


def test_get_does_not_walk_every_prefix_for_every_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    # a get=1 on a hub with thousands of peers ran peers x prefixes steps (5000 peers with two
    # prefixes each: 4 s with the event loop blocked)
    wg = WireGuard(K1)
    for i in range(200):
        pk = PrivateKey(i.to_bytes(2, "big") + bytes(30)).public_key()
        wg.add_peer(PeerConfig(pk, allowed_ips=[f"10.0.{i}.0/24", f"fd00::{i:x}/128"]))
    walked = 0
    items = AllowedIPs.items

    def counting(self: AllowedIPs[object]) -> Iterator[tuple[Network, object]]:
        nonlocal walked
        for pair in items(self):
            walked += 1
            yield pair

    monkeypatch.setattr(AllowedIPs, "items", counting)
    info = parse_get(handle_request(wg, GetRequest()))
    assert sum(len(p.allowed_ips) for p in info.peers) == 400
    assert walked <= 400


def test_a_set_does_not_copy_the_peer_table_for_every_peer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # checking each new peer's key asked ``pk in wg.peers``, and ``peers`` is a copy: a
    # setconf over a hub's 12 000 peers copied the table 12 000 times (2 s)
    wg = WireGuard(K1)
    keys = [PrivateKey(i.to_bytes(2, "big") + bytes(30)).public_key() for i in range(200)]
    for pk in keys:
        wg.add_peer(PeerConfig(pk))
    copies = 0
    peers = WireGuard.peers

    def counting(self: WireGuard) -> dict[PublicKey, object]:
        nonlocal copies
        copies += 1
        return peers.fget(self)

    monkeypatch.setattr(WireGuard, "peers", property(counting))
    apply_set(wg, SetRequest(replace_peers=True, peers=tuple(PeerUpdate(pk) for pk in keys)))
    assert len(peers.fget(wg)) == 200
    assert copies <= 1  # replace_peers lists the peers it removes


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> list[PublicKey]:
    """The public keys of every X25519 with a static private key, as they happen."""
    seen: list[PublicKey] = []
    exchange = PrivateKey.exchange

    def counting(self: PrivateKey, peer: PublicKey) -> bytes:
        seen.append(peer)
        return exchange(self, peer)

    monkeypatch.setattr(PrivateKey, "exchange", counting)
    return seen


def test_a_new_peer_costs_one_x25519(exchanges: list[PublicKey]) -> None:
    # checking a new peer's key is its static-static X25519; the peer then computed it again
    # (some 50 µs a peer: 0.6 s more for a 12 000-peer setconf)
    wg = WireGuard(K1)
    wg.add_peer(PeerConfig(P2))
    keys = [PrivateKey(i.to_bytes(2, "big") + bytes(30)).public_key() for i in range(1, 51)]
    body = "".join(
        f"public_key={pk.to_hex()}\nallowed_ip=10.0.{i}.0/24\n" for i, pk in enumerate(keys)
    )
    body += f"public_key={keys[0].to_hex()}\n"  # a peer named twice is made once
    body += f"public_key={P2.to_hex()}\nendpoint=192.0.2.2:1\n"  # an update: no X25519
    exchanges.clear()
    assert handle_request(wg, parse_set(body)) == b"errno=0\n\n"
    assert sorted(exchanges, key=bytes) == sorted(keys, key=bytes)
    assert all(wg.peer(pk).handshake.precomputed_static_static == K1.exchange(pk) for pk in keys)
    # replace_peers makes every peer anew: one X25519 each, the same peers or not
    exchanges.clear()
    apply_set(wg, SetRequest(replace_peers=True, peers=tuple(PeerUpdate(pk) for pk in keys)))
    assert len(exchanges) == len(keys) and set(wg.peers) == set(keys)


def test_new_peers_with_a_new_private_key_use_the_new_key(exchanges: list[PublicKey]) -> None:
    # the check runs before the key changes: it must compute with the request's key, and a
    # checked request applied after the key changed otherwise must not use its secrets
    new = PrivateKey(bytes(range(9, 41)))
    wg = WireGuard(K1)
    exchanges.clear()
    apply_set(wg, SetRequest(private_key=new, peers=(PeerUpdate(P1),)))
    assert exchanges == [P1]
    assert wg.peer(P1).handshake.precomputed_static_static == new.exchange(P1)
    stale = check_set(wg, SetRequest(peers=(PeerUpdate(P2),)))
    wg.set_private_key(K1)
    exchanges.clear()
    apply_set(wg, stale)
    assert exchanges == [P2]  # computed by the peer, with K1
    assert wg.peer(P2).handshake.precomputed_static_static == K1.exchange(P2)
    # and a handshake with a peer made by such a request completes
    p = Pair()
    a_new = PrivateKey(bytes(range(11, 43)))
    peer = PeerUpdate(p.kb.public_key(), endpoint=B_ADDR, allowed_ips=(parse_network(B_IP),))
    request = SetRequest(private_key=a_new, replace_peers=True, peers=(peer,))
    assert handle_request(p.a, request) == b"errno=0\n\n"
    p.b.add_peer(PeerConfig(a_new.public_key(), allowed_ips=A_IP))
    p.a.send_packet(ip4(A_IP, B_IP), p.now)
    p.flush()
    assert p.b.peer(a_new.public_key()).current is not None
    assert p.a.peer(p.kb.public_key()).current is not None


def test_a_key_rotation_with_replace_peers_computes_only_the_new_peers(
    exchanges: list[PublicKey],
) -> None:
    # set_private_key redoes every peer's static-static X25519; replace_peers then dropped them
    wg = WireGuard(K1)
    old = [PrivateKey(i.to_bytes(2, "big") + bytes(30)).public_key() for i in range(1, 21)]
    for pk in old:
        wg.add_peer(PeerConfig(pk))
    new_key = PrivateKey(bytes(range(9, 41)))
    exchanges.clear()
    apply_set(wg, SetRequest(private_key=new_key, replace_peers=True, peers=(PeerUpdate(P1),)))
    assert exchanges == [P1]
    assert set(wg.peers) == {P1} and wg.public_key == new_key.public_key()
    assert wg.peer(P1).handshake.precomputed_static_static == new_key.exchange(P1)


def test_persistent_keepalive_on_sends_at_once() -> None:
    p = Pair()
    p.handshake()
    update = PeerUpdate(p.kb.public_key(), persistent_keepalive_interval=25)
    assert handle_request(p.a, SetRequest(peers=(update,)), now=p.now) == b"errno=0\n\n"
    assert [len(d) for d, _ in p.a.datagrams_to_send()] == [32]


def test_private_key_change_through_uapi() -> None:
    p = Pair()
    p.handshake()
    new = PrivateKey(bytes(range(9, 41)))
    assert handle_request(p.a, parse_set("private_key=" + new.to_hex() + "\n")) == b"errno=0\n\n"
    assert p.a.public_key == new.public_key()
    p.a.send_packet(ip4("10.0.0.1", B_IP), p.now + 10)
    assert [len(d) for d, _ in p.a.datagrams_to_send()] == [148]


def test_stream_cutting() -> None:
    conn = UapiConnection()
    stream = b"get=1\n\nset=1\nlisten_port=5\n\nset=1\nbogus=1\n\nset=1\n\nget=1\n\n"
    for i in range(len(stream)):  # byte by byte
        conn.receive_data(stream[i : i + 1])
    got = []
    while (r := conn.next_request()) is not None:
        got.append(r)
    assert got[0] == GetRequest() and got[1] == SetRequest(listen_port=5)
    assert isinstance(got[2], UapiError) and not got[2].fatal
    assert got[3] == SetRequest() and got[4] == GetRequest()
    wg = WireGuard(K1)
    answers = [handle_request(wg, r) for r in got]
    assert answers[1:4] == [b"errno=0\n\n", b"errno=-22\n\n", b"errno=0\n\n"]
    assert answers[0] == b"private_key=" + K1.to_hex().encode() + b"\nerrno=0\n\n"
    assert answers[4].endswith(b"\nlisten_port=5\nerrno=0\n\n")  # after the set


def test_stream_fatal_errors() -> None:
    conn = UapiConnection()
    conn.receive_data(b"hello=1\n\n")
    err = conn.next_request()
    assert isinstance(err, UapiError) and err.fatal and conn.closed
    assert handle_request(WireGuard(K1), err) == b""
    # and nothing more: a server reading requests until None is not answered it forever
    conn.receive_data(b"get=1\n\n")
    assert conn.next_request() is None
    # a byte other than the empty line after get=1: errno=-22 and the stream goes on, as
    # wireguard-go answers b"get=1\nxget=1\n\n" (checked against it)
    conn = UapiConnection()
    conn.receive_data(b"get=1\nxget=1\n\n")
    err = conn.next_request()
    assert isinstance(err, UapiError) and not err.fatal and not conn.closed
    assert handle_request(WireGuard(K1), err) == b"errno=-22\n\n"
    assert conn.next_request() == GetRequest()
    conn = UapiConnection()
    conn.receive_data(b"set=1\n" + b"x" * (MAX_REQUEST_SIZE - 100) + b"\n")
    assert conn.next_request() is None  # the line ended, the request did not
    conn.receive_data(b"y" * 200)
    assert conn.next_request() is None  # too large: answered at its end
    conn.receive_data(b"\n\n")
    err = conn.next_request()
    assert isinstance(err, UapiError) and err.errno == errno.E2BIG and not err.fatal


def test_a_first_line_that_is_no_operation_is_refused_within_its_first_bytes() -> None:
    # the operation line was buffered until its newline (up to the 64 MiB request limit, or
    # the idle timeout): a client sending bytes without one held the server's memory. The
    # line can only be get=1 or set=1: a byte that cannot begin either ends the connection.
    for junk in (b"x", b"GET", b"get=2", b"set=1 ", b"get=12", b"hello" * 1000):
        conn = UapiConnection()
        for i in range(len(junk)):  # byte by byte: refused at the first byte that tells
            conn.receive_data(junk[i : i + 1])
            got = conn.next_request()
            if got is not None:
                break
        assert isinstance(got, UapiError) and got.fatal and conn.closed, junk
        assert i <= 5, junk  # at most len("set=1\n") bytes read
    # a prefix of either still waits for more, after a request too
    for wait in (b"g", b"get=1", b"se", b"set=1", b"get=1\n\nset="):
        conn = UapiConnection()
        conn.receive_data(wait)
        got = conn.next_request()
        if wait.startswith(b"get=1\n"):
            assert got == GetRequest()
            got = conn.next_request()
        assert got is None and not conn.closed, wait


def test_an_oversized_set_is_read_to_its_end_and_answered_e2big() -> None:
    # a set=1 past MAX_REQUEST_SIZE closed the connection unanswered while the client was
    # still writing it (wg: killed by SIGPIPE, nothing said); now the rest of it is read and
    # dropped as it comes (not kept), and the answer is errno=-7 (E2BIG); the stream goes on
    chunk = b"allowed_ip=10.0.0.0/8\n" * (65536 // 22)
    conn = UapiConnection()
    conn.receive_data(b"set=1\n")
    sent = 6
    got = None
    while sent < MAX_REQUEST_SIZE + (4 << 20):
        conn.receive_data(chunk)
        sent += len(chunk)
        got = conn.next_request()
        assert got is None, sent
        assert len(conn._buffer) <= MAX_REQUEST_SIZE + 2 * len(chunk)
    conn.receive_data(chunk[:-1])
    assert conn.next_request() is None
    conn.receive_data(b"\n\nget=1\n\n")  # the end of the set, split from its last line
    got = conn.next_request()
    assert isinstance(got, UapiError) and got.errno == errno.E2BIG and not got.fatal
    assert handle_request(WireGuard(K1), got) == b"errno=-7\n\n"
    assert not conn.closed and conn.next_request() == GetRequest()
    # cut off by the end of the stream instead: answered too
    conn = UapiConnection()
    conn.receive_data(b"set=1\n" + b"x" * (MAX_REQUEST_SIZE + 10))
    assert conn.next_request() is None
    conn.receive_data(b"")
    got = conn.next_request()
    assert isinstance(got, UapiError) and got.errno == errno.E2BIG and not got.fatal


def test_a_set_ended_by_the_end_of_the_stream_is_applied() -> None:
    # wireguard-go reads a set=1 until an empty line *or the end of the stream*: a client that
    # writes `set=1\nlisten_port=51833` and shuts its side down gets errno=0 and the port
    # (checked against wireguard-go 0.0.20220316); tunflow dropped the request unanswered
    for tail in (b"listen_port=51833\n", b"listen_port=51833"):
        conn = UapiConnection()
        conn.receive_data(b"get=1\n\nset=1\n" + tail)
        assert conn.next_request() == GetRequest()
        assert conn.next_request() is None  # more may come
        conn.receive_data(b"")  # the end of the stream
        assert conn.next_request() == SetRequest(listen_port=51833)
        assert conn.next_request() is None
    # a get=1 cut short, or an operation line without its newline, is still nothing
    for cut in (b"get=1\n", b"set=1", b"get"):
        conn = UapiConnection()
        conn.receive_data(cut)
        conn.receive_data(b"")
        assert conn.next_request() is None


def test_a_large_setconf_is_taken_whole() -> None:
    # `wg setconf` of 12000 peers is a 1.5 MB set=1 (wireguard-go and the kernel take it): it
    # was cut off at 1 MiB — the connection closed, wg killed by SIGPIPE, nothing said
    lines = ["replace_peers=true"]
    for i in range(12000):
        lines += [
            "public_key=" + (bytes([9]) + i.to_bytes(4, "big") + bytes(27)).hex(),
            "replace_allowed_ips=true",
            f"allowed_ip=10.{i >> 8}.{i & 255}.0/24",
        ]
    data = ("set=1\n" + "\n".join(lines) + "\n\n").encode()
    assert len(data) > 1 << 20
    conn = UapiConnection()
    for i in range(0, len(data), 65536):  # as the socket gives it
        conn.receive_data(data[i : i + 65536])
        request = conn.next_request()
        assert request is None or i + 65536 >= len(data)
    assert isinstance(request, SetRequest) and len(request.peers) == 12000
    assert not conn.closed


def test_cutting_a_long_request_is_linear_in_its_size() -> None:
    # each read re-searched the whole buffered request for its end: quadratic in the size
    # (16 MiB in 4 KiB reads: some 30 s that way, milliseconds now)
    data = b"set=1\n" + b"listen_port=1\n" * ((16 << 20) // 14) + b"\n"
    assert len(data) < MAX_REQUEST_SIZE
    conn = UapiConnection()
    start = time.perf_counter()
    for i in range(0, len(data) - 1, 4096):
        conn.receive_data(data[i : min(i + 4096, len(data) - 1)])
        assert conn.next_request() is None
    assert time.perf_counter() - start < 2.0
    conn.receive_data(b"\n")
    assert conn.next_request() == SetRequest(listen_port=1)


def test_render_errno() -> None:
    assert render_errno(0) == b"errno=0\n\n"
    assert render_errno(errno.EADDRINUSE) == b"errno=-98\n\n"


keys32 = st.binary(min_size=32, max_size=32)
nets = st.one_of(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(
        lambda t: ipaddress.IPv4Network(t, strict=False)
    ),
    st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)).map(
        lambda t: ipaddress.IPv6Network(t, strict=False)
    ),
)
endpoints = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["192.0.2.1", "2001:db8::7", "10.0.0.1"]), st.integers(1, 65535)),
)
peer_updates = st.builds(
    PeerUpdate,
    public_key=keys32.map(lambda b: PrivateKey(b).public_key()),
    remove=st.booleans(),
    update_only=st.booleans(),
    preshared_key=st.one_of(st.none(), keys32.map(PresharedKey)),
    endpoint=endpoints,
    persistent_keepalive_interval=st.one_of(st.none(), st.integers(0, 65535)),
    replace_allowed_ips=st.booleans(),
    allowed_ips=st.lists(nets, max_size=4).map(tuple),
    removed_allowed_ips=st.lists(nets, max_size=2, unique=True).map(tuple),
)


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(st.none(), keys32.filter(any).map(PrivateKey)),
    st.one_of(st.none(), st.integers(0, 65535)),
    st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    st.booleans(),
    st.lists(peer_updates, max_size=3),
)
def test_set_round_trip(
    key: PrivateKey | None,
    port: int | None,
    fwmark: int | None,
    replace: bool,
    peers: list[PeerUpdate],
) -> None:
    req = SetRequest(key, False, port, fwmark, replace, tuple(peers))
    conn = UapiConnection()
    conn.receive_data(render_set(req))
    assert conn.next_request() == req


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.builds(
            PeerInfo,
            public_key=keys32.map(lambda b: PrivateKey(b).public_key()),
            preshared_key=keys32.map(PresharedKey),
            endpoint=endpoints,
            last_handshake_time_sec=st.integers(0, 2**40),
            last_handshake_time_nsec=st.integers(0, 999_999_999),
            rx_bytes=st.integers(0, 2**64 - 1),
            tx_bytes=st.integers(0, 2**64 - 1),
            persistent_keepalive_interval=st.integers(0, 65535),
            allowed_ips=st.lists(nets, max_size=3).map(tuple),
        ),
        max_size=3,
    )
)
def test_get_round_trip(peers: list[PeerInfo]) -> None:
    info = DeviceInfo(K1, 51820, 0, tuple(peers))
    assert parse_get(render_get(info)) == info


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_stream_never_raises(data: bytes) -> None:
    conn = UapiConnection()
    conn.receive_data(data)
    for _ in range(10):
        r = conn.next_request()
        if r is None:
            break
        assert isinstance(r, GetRequest | SetRequest | UapiError)


@pytest.mark.parametrize(
    "line",
    [
        "allowed_ip=10.1.2.3",  # wireguard-go reads a prefix: the length is not optional
        "allowed_ip= 10.0.0.0/8",
        "allowed_ip=10.0.0.0/255.0.0.0",
        "endpoint= 192.0.2.1:5",
        "endpoint=[192.0.2.1]:5",
    ],
)
def test_set_refuses_what_wireguard_go_refuses(line: str) -> None:
    with pytest.raises(UapiError):
        parse_set("public_key=" + "11" * 32 + "\n" + line + "\n")


def test_more_peers_than_wireguard_go_allows_are_refused_whole(
    monkeypatch: pytest.MonkeyPatch, exchanges: list[PublicKey]
) -> None:
    # wireguard-go refuses a 65537th peer (EINVAL, "too many peers"); tunflow had no limit.
    # Now a set=1 that would pass it at any point is refused before anything is applied (or
    # any X25519 done), an InterfaceConfig and WireGuard.add_peer refuse it too (the limit
    # made 3 here: 65536 peers take seconds)
    import tunflow.wireguard.protocol.config as config_module
    import tunflow.wireguard.protocol.interface as interface_module
    import tunflow.wireguard.protocol.uapi as uapi_module
    from tunflow.wireguard.protocol import InterfaceConfig
    from tunflow.wireguard.protocol.constants import MAX_PEERS

    assert MAX_PEERS == 65536  # wireguard-go's MaxPeers
    for module in (config_module, interface_module, uapi_module):
        monkeypatch.setattr(module, "MAX_PEERS", 3)
    keys = [PrivateKey(i.to_bytes(2, "big") + bytes(30)).public_key() for i in range(1, 6)]
    wg = WireGuard(K1)
    for pk in keys[:2]:
        wg.add_peer(PeerConfig(pk))
    exchanges.clear()
    too_many = SetRequest(listen_port=4000, peers=(PeerUpdate(keys[2]), PeerUpdate(keys[3])))
    with pytest.raises(UapiError, match="too many peers: more than 3") as caught:
        check_set(wg, too_many)
    assert caught.value.errno == errno.EINVAL
    assert handle_request(wg, too_many) == b"errno=-22\n\n"
    assert set(wg.peers) == set(keys[:2]) and wg.listen_port == 0 and not exchanges
    # counted as applied, line by line: one past the limit on the way is one too many
    on_the_way = (PeerUpdate(keys[2]), PeerUpdate(keys[3]), PeerUpdate(keys[0], remove=True))
    assert handle_request(wg, SetRequest(peers=on_the_way)) == b"errno=-22\n\n"
    assert set(wg.peers) == set(keys[:2])
    # removed first, updated (not new), named twice, update_only, or replace_peers: fits
    fits = SetRequest(
        peers=(
            PeerUpdate(keys[0], remove=True),
            PeerUpdate(keys[1], endpoint=("192.0.2.1", 1)),
            PeerUpdate(keys[2]),
            PeerUpdate(keys[3]),
            PeerUpdate(keys[3]),
            PeerUpdate(keys[4], update_only=True),
        )
    )
    assert handle_request(wg, fits) == b"errno=0\n\n"
    assert set(wg.peers) == set(keys[1:4])
    replace = SetRequest(replace_peers=True, peers=tuple(PeerUpdate(pk) for pk in keys[2:5]))
    assert handle_request(wg, replace) == b"errno=0\n\n"
    assert set(wg.peers) == set(keys[2:5])
    # a new private key whose public key is a peer's drops that peer first (as set_private_key)
    own = PrivateKey(bytes(range(1, 33)))  # P1's
    wg.remove_peer(keys[4])
    wg.add_peer(PeerConfig(P1))
    assert handle_request(wg, SetRequest(private_key=own, peers=(PeerUpdate(keys[0]),))) == (
        b"errno=0\n\n"
    )
    assert set(wg.peers) == {keys[2], keys[3], keys[0]}
    with pytest.raises(ConfigError, match="too many peers"):
        wg.add_peer(PeerConfig(keys[4]))
    with pytest.raises(ConfigError, match="too many peers: 4, at most 3"):
        InterfaceConfig(K1, peers=[PeerConfig(pk) for pk in keys[:4]])
    assert len(InterfaceConfig(K1, peers=[PeerConfig(pk) for pk in keys[:3]]).peers) == 3


@pytest.mark.parametrize("key", ["private_key", "public_key", "preshared_key"])
def test_a_key_of_more_than_64_hex_digits_is_a_uapi_error(key: str) -> None:
    # wireguard-go's hex decoding of a key wants exactly 64 digits (EINVAL otherwise); a
    # ConfigError out of the key class instead would escape next_request, which answers only
    # UapiError
    peer = "public_key=" + "11" * 32 + "\n" if key == "preshared_key" else ""
    conn = UapiConnection()
    conn.receive_data(f"set=1\n{peer}{key}={'22' * 33}\n\nget=1\n\n".encode())
    refused = conn.next_request()
    assert isinstance(refused, UapiError) and refused.errno == errno.EINVAL
    assert conn.next_request() == GetRequest()


def test_an_all_zero_key_reads_as_no_key_in_set_and_get() -> None:
    # `wg set wg0 private-key /dev/null` sends 64 zeros (wg's parse_keyfile of an empty file);
    # SetRequest says so as remove_private_key, and a get=1 carrying zeros has no key
    request = parse_set("private_key=" + "0" * 64 + "\n")
    assert request.remove_private_key and request.private_key is None
    assert parse_get("private_key=" + "0" * 64 + "\nerrno=0\n\n").private_key is None


def test_a_handshake_time_just_under_a_second_never_reports_a_billion_nanoseconds() -> None:
    wg = WireGuard(K1)
    wg.add_peer(PeerConfig(P1))
    peer = wg.peer(P1)
    assert peer is not None
    peer.last_handshake = 5.9999999999  # rounds to 6.000000000 s
    [info] = parse_get(render_get(wg)).peers
    assert (info.last_handshake_time_sec, info.last_handshake_time_nsec) == (5, 999_999_999)


def test_sync_request_clears_a_preshared_key_the_config_no_longer_has() -> None:
    # wireguard-tools' sync_conf: a runtime peer with a preshared key, named in the file
    # without one, is sent an all-zero preshared_key (so the key goes); likewise a keepalive
    from tunflow.wireguard.protocol import InterfaceConfig, sync_request

    wg = WireGuard(K1)
    wg.add_peer(PeerConfig(P1, preshared_key=PresharedKey(b"\x07" * 32), persistent_keepalive=25))
    apply_set(wg, sync_request(wg, InterfaceConfig(K1, peers=[PeerConfig(P1)])))
    peer = wg.peer(P1)
    assert peer is not None
    assert peer.preshared_key == PresharedKey() and peer.persistent_keepalive == 0


def test_only_a_scoped_endpoint_goes_through_scoped_endpoint() -> None:
    wg = WireGuard(K1)
    wg.add_peer(PeerConfig(P1, endpoint=("fe80::1%lo", 5)))
    wg.add_peer(PeerConfig(P2, endpoint=("192.0.2.1", 6)))
    seen = []

    def scoped(address: tuple[str, int]) -> tuple[str, int]:
        seen.append(address)
        return ("fe80::1%1", address[1])

    answer = handle_request(wg, GetRequest(), scoped_endpoint=scoped)
    assert seen == [("fe80::1%lo", 5)]
    assert {p.endpoint for p in parse_get(answer).peers} == {("fe80::1%1", 5), ("192.0.2.1", 6)}


def test_an_oversized_set_ends_at_an_empty_line_split_across_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the skipped request's last line ends one read, the empty line is the next read: the pair
    # is its end (the newline of the first read must be kept to see it)
    import tunflow.wireguard.protocol.uapi as uapi_module

    monkeypatch.setattr(uapi_module, "MAX_REQUEST_SIZE", 1024)
    conn = UapiConnection()
    conn.receive_data(b"set=1\n" + b"allowed_ip=10.0.0.0/8\n" * 100)
    assert conn.next_request() is None
    conn.receive_data(b"allowed_ip=10.0.0.0/8\n")
    assert conn.next_request() is None
    conn.receive_data(b"\nget=1\n\n")
    got = conn.next_request()
    assert isinstance(got, UapiError) and got.errno == errno.E2BIG
    assert conn.next_request() == GetRequest()


def test_a_set_after_one_that_came_in_pieces_is_cut_at_its_own_end() -> None:
    # where the search for a set's end resumes is reset once a request is cut: a later, shorter
    # request in the same buffer was searched from past its own end, and never answered
    conn = UapiConnection()
    conn.receive_data(b"set=1\n" + b"listen_port=1\n" * 100)
    assert conn.next_request() is None
    conn.receive_data(b"\nset=1\nlisten_port=2\n\n")
    assert conn.next_request() == SetRequest(listen_port=1)
    assert conn.next_request() == SetRequest(listen_port=2)


def test_the_peer_limit_counts_peers_as_the_request_makes_and_unmakes_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # check_set must count what apply_set will do: a peer replace_peers removed, or one the
    # request removed, is made anew when named again (one more), the interface's own key makes
    # none. Counted short, add_peer would refuse the peer past the limit halfway through apply_set
    import tunflow.wireguard.protocol.interface as interface_module
    import tunflow.wireguard.protocol.uapi as uapi_module

    for module in (interface_module, uapi_module):
        monkeypatch.setattr(module, "MAX_PEERS", 3)
    keys = [PrivateKey(i.to_bytes(2, "big") + bytes(30)).public_key() for i in range(1, 6)]

    def interface() -> WireGuard:
        wg = WireGuard(K1, listen_port=1)
        for pk in keys[:3]:
            wg.add_peer(PeerConfig(pk, allowed_ips=(f"10.0.{keys.index(pk)}.0/24",)))
        return wg

    refused = [
        # all four are made after the old ones go
        SetRequest(replace_peers=True, peers=tuple(PeerUpdate(pk) for pk in keys[:4])),
        # removed, then made again: four when keys[3] comes
        SetRequest(
            peers=(PeerUpdate(keys[0], remove=True), PeerUpdate(keys[0]), PeerUpdate(keys[3]))
        ),
    ]
    for request in refused:
        wg = interface()
        before = render_get(wg)
        assert handle_request(wg, attrs.evolve(request, listen_port=2)) == b"errno=-22\n\n"
        assert render_get(wg) == before  # refused whole
    wg = interface()
    ourselves = SetRequest(peers=(PeerUpdate(K1.public_key()), PeerUpdate(keys[0])))
    assert handle_request(wg, ourselves) == b"errno=0\n\n"
    assert set(wg.peers) == set(keys[:3])


def test_a_checked_set_tells_the_key_it_was_checked_with() -> None:
    wg = WireGuard(K1)
    assert check_set(wg, SetRequest(listen_port=1)).private_key == K1
    assert check_set(wg, SetRequest(remove_private_key=True)).private_key is None
    new = PrivateKey(bytes(range(9, 41)))
    assert check_set(wg, SetRequest(private_key=new, peers=(PeerUpdate(P1),))).private_key == new
    peers = (PeerUpdate(P1),)
    assert check_set(wg, SetRequest(remove_private_key=True, peers=peers)).private_key is None


def test_a_zero_port_or_fwmark_is_set_not_left_alone() -> None:
    # `wg set wg0 fwmark off` sends fwmark=0, `listen-port 0` listen_port=0: values, which
    # wireguard-go sets (its get=1 then leaves the lines out); None is "unchanged"
    wg = WireGuard(K1, listen_port=51820)
    apply_set(wg, SetRequest(fwmark=7))
    apply_set(wg, parse_set("listen_port=0\nfwmark=0\n"))
    assert (wg.listen_port, wg.fwmark) == (0, 0)
    assert handle_request(wg, GetRequest()) == b"private_key=" + K1.to_hex().encode() + (
        b"\nerrno=0\n\n"
    )


def test_sync_request_replaces_the_allowed_ips_the_config_no_longer_has() -> None:
    # wg syncconf sends replace_allowed_ips=true for every peer of the file: a prefix the
    # running peer has and the file does not is gone (it had been only added to)
    from tunflow.wireguard.protocol import InterfaceConfig, sync_request

    wg = WireGuard(K1)
    wg.add_peer(PeerConfig(P1, allowed_ips="10.1.0.0/16, 10.8.0.0/16"))
    config = InterfaceConfig(K1, peers=[PeerConfig(P1, allowed_ips="10.1.0.0/16, fd00::/64")])
    apply_set(wg, sync_request(wg, config))
    peer = wg.peer(P1)
    assert [str(n) for n in wg.allowed_ips.networks(peer)] == ["10.1.0.0/16", "fd00::/64"]
    assert wg.allowed_ips.lookup("10.8.0.1") is None
