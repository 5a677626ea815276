"""What a new user meets in the first hour on a real kernel, and whether the error says what
went wrong."""

from __future__ import annotations

import re

import anyio
import pytest

from tunflow import testing
from tunflow.wireguard import InterfaceConfig, PeerConfig, PrivateKey, open_interface

pytestmark = pytest.mark.needs_root


@pytest.mark.anyio
async def test_a_handshake_that_never_comes_says_with_whom(netns: testing.Netns) -> None:
    # docs/vpn.md's "From Python": wait_handshake's TimeoutError came with no message at all
    peer = PrivateKey.generate().public_key()
    config = InterfaceConfig(PrivateKey.generate(), listen_port=0, peers=[PeerConfig(peer)])
    with anyio.fail_after(20):
        async with open_interface(config, name=testing.unique_name("fh"), uapi=False) as wg:
            expected = re.escape(f"no handshake with peer {peer} within 0.2 s")
            with pytest.raises(TimeoutError, match=expected):
                await wg.wait_handshake(peer, timeout=0.2)
