"""WireGuard's four message formats (whitepaper §5.4), as precompiled :class:`struct.Struct`.

Every message starts with a little-endian 32-bit word: the type byte and three zero bytes.

======================  =====  ==============================================================
message                 bytes  layout
======================  =====  ==============================================================
handshake initiation    148    type, sender, ephemeral[32], static[32+16], timestamp[12+16],
                               mac1[16], mac2[16]
handshake response      92     type, sender, receiver, ephemeral[32], empty[0+16], mac1, mac2
cookie reply            64     type, receiver, nonce[24], cookie[16+16]
transport data          16+    type, receiver, counter (LE64), ciphertext of the padded packet
======================  =====  ==============================================================

The ``parse_*`` functions raise :class:`~tunflow.errors.TruncatedPacketError` for short input
and :class:`~tunflow.errors.MalformedPacketError` for anything else wrong with the framing —
nothing else, whatever the bytes (a hypothesis test checks this). The data path does not use
these objects; it unpacks :data:`TRANSPORT_HEADER` in place.
"""

from __future__ import annotations

import struct
from typing import ClassVar, Final

import attrs

from ...errors import MalformedPacketError, TruncatedPacketError
from .constants import (
    COOKIE_REPLY_SIZE,
    INITIATION_SIZE,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    MESSAGE_TRANSPORT,
    MIN_TRANSPORT_SIZE,
    RESPONSE_SIZE,
)

__all__ = [
    "INITIATION",
    "RESPONSE",
    "COOKIE_REPLY",
    "TRANSPORT_HEADER",
    "Initiation",
    "Response",
    "CookieReply",
    "TransportHeader",
    "Message",
    "message_type",
    "parse_message",
    "parse_initiation",
    "parse_response",
    "parse_cookie_reply",
    "parse_transport_header",
]

INITIATION: Final = struct.Struct("<II32s48s28s16s16s")
RESPONSE: Final = struct.Struct("<III32s16s16s16s")
COOKIE_REPLY: Final = struct.Struct("<II24s32s")
TRANSPORT_HEADER: Final = struct.Struct("<IIQ")
assert INITIATION.size == INITIATION_SIZE
assert RESPONSE.size == RESPONSE_SIZE
assert COOKIE_REPLY.size == COOKIE_REPLY_SIZE
_TYPE: Final = struct.Struct("<I")

Buffer = bytes | bytearray | memoryview


@attrs.frozen
class Initiation:
    """Handshake initiation (type 1). ``static`` and ``timestamp`` are still encrypted."""

    sender: int
    ephemeral: bytes
    static: bytes
    timestamp: bytes
    mac1: bytes = bytes(16)
    mac2: bytes = bytes(16)

    #: Offset of mac1 / mac2 in the encoded message.
    MAC1_OFFSET: ClassVar[int] = INITIATION_SIZE - 32
    MAC2_OFFSET: ClassVar[int] = INITIATION_SIZE - 16

    def encode(self) -> bytes:
        """The 148 wire bytes."""
        return INITIATION.pack(
            MESSAGE_INITIATION,
            self.sender,
            self.ephemeral,
            self.static,
            self.timestamp,
            self.mac1,
            self.mac2,
        )


@attrs.frozen
class Response:
    """Handshake response (type 2). ``empty`` is the 16-byte tag over the empty payload."""

    sender: int
    receiver: int
    ephemeral: bytes
    empty: bytes
    mac1: bytes = bytes(16)
    mac2: bytes = bytes(16)

    MAC1_OFFSET: ClassVar[int] = RESPONSE_SIZE - 32
    MAC2_OFFSET: ClassVar[int] = RESPONSE_SIZE - 16

    def encode(self) -> bytes:
        """The 92 wire bytes."""
        return RESPONSE.pack(
            MESSAGE_RESPONSE,
            self.sender,
            self.receiver,
            self.ephemeral,
            self.empty,
            self.mac1,
            self.mac2,
        )


@attrs.frozen
class CookieReply:
    """Cookie reply (type 3): an XChaCha20-Poly1305-sealed cookie for ``receiver``."""

    receiver: int
    nonce: bytes
    cookie: bytes

    def encode(self) -> bytes:
        """The 64 wire bytes."""
        return COOKIE_REPLY.pack(MESSAGE_COOKIE_REPLY, self.receiver, self.nonce, self.cookie)


@attrs.frozen
class TransportHeader:
    """The 16-byte header of a transport data message (type 4); the payload follows it."""

    receiver: int
    counter: int
    payload_length: int

    def encode(self) -> bytes:
        """The 16 header bytes."""
        return TRANSPORT_HEADER.pack(MESSAGE_TRANSPORT, self.receiver, self.counter)


Message = Initiation | Response | CookieReply | TransportHeader


def message_type(data: Buffer) -> int:
    """The type of a WireGuard message (1-4), or 0 if the first word is not one of them.

    tunflow's native fast-mode fragments (:data:`~.constants.MESSAGE_NATIVE`) also return 0 here;
    :func:`tunflow.wireguard.protocol.native.is_native` recognises them.
    """
    if len(data) < 4:
        return 0
    (word,) = _TYPE.unpack_from(data)
    return word if 1 <= word <= 4 else 0


def _exact(data: Buffer, size: int, what: str) -> None:
    n = len(data)
    if n < size:
        raise TruncatedPacketError(f"{what} of {n} bytes is shorter than {size}")
    if n > size:
        raise MalformedPacketError(f"{what} of {n} bytes is longer than {size}")


def _expect_type(data: Buffer, expected: int, what: str) -> None:
    (word,) = _TYPE.unpack_from(data)
    if word != expected:
        raise MalformedPacketError(f"{what}: first word is {word:#x}, expected {expected}")


def parse_initiation(data: Buffer) -> Initiation:
    """Parse a 148-byte handshake initiation.

    Raises:
        TruncatedPacketError: fewer than 148 bytes.
        MalformedPacketError: more than 148 bytes, or not type 1 with zero reserved bytes.
    """
    _exact(data, INITIATION_SIZE, "handshake initiation")
    _expect_type(data, MESSAGE_INITIATION, "handshake initiation")
    _, sender, eph, static, ts, mac1, mac2 = INITIATION.unpack_from(data)
    return Initiation(sender, eph, static, ts, mac1, mac2)


def parse_response(data: Buffer) -> Response:
    """Parse a 92-byte handshake response.

    Raises:
        TruncatedPacketError: fewer than 92 bytes.
        MalformedPacketError: more than 92 bytes, or not type 2 with zero reserved bytes.
    """
    _exact(data, RESPONSE_SIZE, "handshake response")
    _expect_type(data, MESSAGE_RESPONSE, "handshake response")
    _, sender, receiver, eph, empty, mac1, mac2 = RESPONSE.unpack_from(data)
    return Response(sender, receiver, eph, empty, mac1, mac2)


def parse_cookie_reply(data: Buffer) -> CookieReply:
    """Parse a 64-byte cookie reply.

    Raises:
        TruncatedPacketError: fewer than 64 bytes.
        MalformedPacketError: more than 64 bytes, or not type 3 with zero reserved bytes.
    """
    _exact(data, COOKIE_REPLY_SIZE, "cookie reply")
    _expect_type(data, MESSAGE_COOKIE_REPLY, "cookie reply")
    _, receiver, nonce, cookie = COOKIE_REPLY.unpack_from(data)
    return CookieReply(receiver, nonce, cookie)


def parse_transport_header(data: Buffer) -> TransportHeader:
    """Parse the header of a transport data message (at least 32 bytes: header and tag).

    Raises:
        TruncatedPacketError: fewer than 32 bytes.
        MalformedPacketError: not type 4 with zero reserved bytes.
    """
    n = len(data)
    if n < MIN_TRANSPORT_SIZE:
        raise TruncatedPacketError(f"transport message of {n} bytes is shorter than 32")
    _expect_type(data, MESSAGE_TRANSPORT, "transport message")
    _, receiver, counter = TRANSPORT_HEADER.unpack_from(data)
    return TransportHeader(receiver, counter, n - MIN_TRANSPORT_SIZE)


def parse_message(data: Buffer) -> Message:
    """Parse any WireGuard message by its type word.

    Raises:
        TruncatedPacketError: shorter than its type requires.
        MalformedPacketError: unknown type, nonzero reserved bytes, or wrong length.

    Example:
        >>> parse_message(bytes([4, 0, 0, 0]) + bytes(28))
        TransportHeader(receiver=0, counter=0, payload_length=0)
    """
    if len(data) < 4:
        raise TruncatedPacketError(f"message of {len(data)} bytes has no type word")
    t = message_type(data)
    if t == MESSAGE_INITIATION:
        return parse_initiation(data)
    if t == MESSAGE_RESPONSE:
        return parse_response(data)
    if t == MESSAGE_COOKIE_REPLY:
        return parse_cookie_reply(data)
    if t == MESSAGE_TRANSPORT:
        return parse_transport_header(data)
    raise MalformedPacketError(
        f"unknown WireGuard message type word {_TYPE.unpack_from(data)[0]:#x}"
    )
