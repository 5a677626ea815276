"""What docs/wireguard.md says of the protocol core's run-time changes, held to the code."""

from __future__ import annotations

import pytest
from wgpair import A_IP, B_IP, Pair, ip4

from tunflow.errors import ConfigError
from tunflow.wireguard.protocol import render_get


@pytest.mark.parametrize(
    "endpoint",
    [
        "192.0.2.9",  # no port
        "host.example:51820",  # a name: resolving it is I/O, done before
        ("999.1.1.1", 51820),
        ("192.0.2.9", 0),
        ("192.0.2.9", "51820"),
    ],
)
def test_set_endpoint_refuses_what_peer_config_refuses(endpoint: object) -> None:
    # "Endpoints are IP literals" and the records refuse bad ones with ConfigError; the
    # run-time setter stored anything, and the next send handed it to the socket as its address
    p = Pair()
    pk = p.kb.public_key()
    with pytest.raises(ConfigError):
        p.a.set_endpoint(pk, endpoint)
    assert p.peer_of_a.endpoint == p.b_addr


def test_set_endpoint_takes_the_forms_peer_config_takes() -> None:
    # PeerConfig(endpoint="192.0.2.7:51820"), the doc's own example: the same string given to
    # set_endpoint was stored as it is, and came back from `get` as "1:9"
    p = Pair()
    pk = p.kb.public_key()
    p.a.set_endpoint(pk, "192.0.2.7:51820")
    assert p.peer_of_a.endpoint == ("192.0.2.7", 51820)
    assert b"endpoint=192.0.2.7:51820\n" in render_get(p.a)
    p.a.set_endpoint(pk, "[2001:DB8::1]:51820")
    assert p.peer_of_a.endpoint == ("2001:db8::1", 51820)
    p.a.send_packet(ip4(A_IP, B_IP), p.now)
    assert [addr for _, addr in p.a.datagrams_to_send()] == [("2001:db8::1", 51820)]
    p.a.set_endpoint(pk, None)
    assert p.peer_of_a.endpoint is None
