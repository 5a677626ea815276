"""Framing rules that the codec tests let a mutated messages.py or xchacha.py break.

Asserted against the docstrings: each ``parse_*`` refuses a nonzero reserved byte with
:class:`~tunflow.errors.MalformedPacketError` (not only :func:`parse_message`, whose type lookup
already refuses it), :func:`message_type` answers 0 for fewer than four bytes, and
:func:`hchacha20` raises ``ValueError`` for a nonce that is not 16 bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tunflow.errors import MalformedPacketError
from tunflow.wireguard.protocol import (
    CookieReply,
    Initiation,
    Response,
    TransportHeader,
    hchacha20,
    message_type,
)
from tunflow.wireguard.protocol.messages import (
    parse_cookie_reply,
    parse_initiation,
    parse_response,
    parse_transport_header,
)

_ENCODED = [
    (parse_initiation, Initiation(1, bytes(32), bytes(48), bytes(28)).encode()),
    (parse_response, Response(1, 2, bytes(32), bytes(16)).encode()),
    (parse_cookie_reply, CookieReply(1, bytes(24), bytes(32)).encode()),
    (parse_transport_header, TransportHeader(1, 0, 0).encode() + bytes(16)),
]


@pytest.mark.parametrize(("parse", "raw"), _ENCODED)
@pytest.mark.parametrize("reserved", [1, 2, 3])
def test_each_parser_refuses_a_nonzero_reserved_byte(
    parse: Callable[[bytes], object], raw: bytes, reserved: int
) -> None:
    parse(raw)
    bad = bytearray(raw)
    bad[reserved] = 0x80
    with pytest.raises(MalformedPacketError):
        parse(bytes(bad))


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01\0", b"\x04\0\0"])
def test_message_type_of_fewer_than_four_bytes_is_zero(data: bytes) -> None:
    assert message_type(data) == 0


def test_hchacha20_refuses_a_nonce_that_is_not_16_bytes() -> None:
    for n in (15, 17, 24):
        with pytest.raises(ValueError, match="16-byte nonce"):
            hchacha20(bytes(32), bytes(n))
