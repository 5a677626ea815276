"""WireGuard protocol constants (whitepaper §5-6, wireguard-go ``device/constants.go``).

Pure data: no behaviour, no imports beyond ``typing``. Times are in seconds.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CONSTRUCTION",
    "IDENTIFIER",
    "LABEL_MAC1",
    "LABEL_COOKIE",
    "MESSAGE_INITIATION",
    "MESSAGE_RESPONSE",
    "MESSAGE_COOKIE_REPLY",
    "MESSAGE_TRANSPORT",
    "MESSAGE_NATIVE",
    "INITIATION_SIZE",
    "RESPONSE_SIZE",
    "COOKIE_REPLY_SIZE",
    "TRANSPORT_HEADER_SIZE",
    "TAG_SIZE",
    "KEEPALIVE_SIZE",
    "MIN_TRANSPORT_SIZE",
    "PADDING_MULTIPLE",
    "REKEY_AFTER_MESSAGES",
    "REJECT_AFTER_MESSAGES",
    "REKEY_AFTER_TIME",
    "REJECT_AFTER_TIME",
    "REKEY_ATTEMPT_TIME",
    "REKEY_TIMEOUT",
    "REKEY_TIMEOUT_JITTER_MAX",
    "MAX_TIMER_HANDSHAKES",
    "KEEPALIVE_TIMEOUT",
    "COOKIE_REFRESH_TIME",
    "HANDSHAKE_INITIATION_RATE",
    "UNDER_LOAD_AFTER_TIME",
    "MAX_STAGED_PACKETS",
    "DEFAULT_MTU",
    "MAX_MTU",
    "MAX_PEERS",
]

#: Noise protocol name, hashed into the initial chaining key.
CONSTRUCTION: Final = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
#: WireGuard's Noise prologue.
IDENTIFIER: Final = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1: Final = b"mac1----"
LABEL_COOKIE: Final = b"cookie--"

# Message types: one byte followed by three zero bytes on the wire.
MESSAGE_INITIATION: Final = 1
MESSAGE_RESPONSE: Final = 2
MESSAGE_COOKIE_REPLY: Final = 3
MESSAGE_TRANSPORT: Final = 4
#: tunflow's native fast-mode data fragment (not WireGuard; see ``native.py``).
MESSAGE_NATIVE: Final = 0x7F

INITIATION_SIZE: Final = 148
RESPONSE_SIZE: Final = 92
COOKIE_REPLY_SIZE: Final = 64
TRANSPORT_HEADER_SIZE: Final = 16
TAG_SIZE: Final = 16
#: A transport message with an empty payload.
KEEPALIVE_SIZE: Final = TRANSPORT_HEADER_SIZE + TAG_SIZE
MIN_TRANSPORT_SIZE: Final = KEEPALIVE_SIZE
PADDING_MULTIPLE: Final = 16

REKEY_AFTER_MESSAGES: Final = 1 << 60
REJECT_AFTER_MESSAGES: Final = (1 << 64) - (1 << 13) - 1
REKEY_AFTER_TIME: Final = 120.0
REJECT_AFTER_TIME: Final = 180.0
REKEY_ATTEMPT_TIME: Final = 90.0
REKEY_TIMEOUT: Final = 5.0
#: wireguard-go adds up to 334 ms of jitter to handshake (re)transmissions.
REKEY_TIMEOUT_JITTER_MAX: Final = 0.334
#: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT retransmissions before giving up.
MAX_TIMER_HANDSHAKES: Final = 18
KEEPALIVE_TIMEOUT: Final = 10.0
COOKIE_REFRESH_TIME: Final = 120.0
#: At most one initiation per peer is consumed every 1/50 s (wireguard-go's flood check).
HANDSHAKE_INITIATION_RATE: Final = 1.0 / 50
#: How long the interface stays "under load" once load was detected.
UNDER_LOAD_AFTER_TIME: Final = 1.0
#: Packets queued per peer while no session exists (wireguard-go's QueueStagedSize).
MAX_STAGED_PACKETS: Final = 128
DEFAULT_MTU: Final = 1420
#: The largest tunnel MTU: a packet of that size, with the transport header and tag (32 bytes),
#: is the largest UDP datagram IPv4 carries (65507 bytes).
MAX_MTU: Final = 65507 - TRANSPORT_HEADER_SIZE - TAG_SIZE
#: The most peers an interface has (wireguard-go's MaxPeers: one more is EINVAL, "too many
#: peers").
MAX_PEERS: Final = 1 << 16
