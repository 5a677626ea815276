"""``WireGuard.set_endpoint``: only ``None`` means no endpoint; an empty string or tuple is no
IP literal with a port and is refused (ConfigError), the endpoint left as it was — as
``PeerConfig`` refuses them — not taken for "none"."""

from __future__ import annotations

import pytest
from wgpair import Pair

from tunflow.errors import ConfigError
from tunflow.wireguard.protocol import PeerConfig


@pytest.mark.parametrize("endpoint", ["", ()])
def test_an_empty_endpoint_is_refused_not_taken_for_none(endpoint: object) -> None:
    p = Pair()
    pk = p.kb.public_key()
    with pytest.raises(ConfigError):
        PeerConfig(pk, endpoint=endpoint)
    with pytest.raises(ConfigError):
        p.a.set_endpoint(pk, endpoint)
    assert p.peer_of_a.endpoint == p.b_addr
