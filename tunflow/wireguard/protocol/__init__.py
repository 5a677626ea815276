"""The sans-I/O WireGuard protocol core: handshake, sessions, timers, routing, UAPI codec.

Nothing in this package opens a socket, reads a clock or draws randomness on its own: callers
pass ``now`` and may inject ``random``. It must not import ``os``, ``socket``, ``select``,
``fcntl``, ``time``, any event loop, or the device/transport/pipeline layers (an import-linter
contract in ``pyproject.toml`` checks this).

Start with :class:`WireGuard` (one interface) and :class:`PeerConfig`; the batch data path is
:meth:`WireGuard.encrypt_batch` / :meth:`WireGuard.decrypt_batch` over
:class:`~tunflow.packet.PacketBatch` and :class:`DatagramBatch`.
"""

from __future__ import annotations

from ._crypto import tai64n
from .allowedips import AllowedIPs, Network, parse_network
from .config import (
    InterfaceConfig,
    PeerConfig,
    format_endpoint,
    parse_endpoint,
)
from .constants import (
    COOKIE_REFRESH_TIME,
    DEFAULT_MTU,
    KEEPALIVE_TIMEOUT,
    MESSAGE_NATIVE,
    REJECT_AFTER_MESSAGES,
    REJECT_AFTER_TIME,
    REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME,
    REKEY_ATTEMPT_TIME,
    REKEY_TIMEOUT,
)
from .cookie import CookieChecker, CookieGenerator
from .datagrams import Address, DatagramBatch
from .interface import (
    EndpointChanged,
    Event,
    HandshakeCompleted,
    HandshakeFailed,
    KeysZeroed,
    PeerStatistics,
    WireGuard,
    WireGuardStatistics,
)
from .keys import (
    PresharedKey,
    PrivateKey,
    PublicKey,
    RandomSource,
    genkey,
    genpsk,
    pubkey,
)
from .messages import (
    CookieReply,
    Initiation,
    Response,
    TransportHeader,
    message_type,
    parse_message,
)
from .native import (
    MAX_NATIVE_PLAINTEXT,
    MIN_FRAGMENT_SIZE,
    NATIVE_HEADER_SIZE,
    OpenResult,
    SendSlots,
    is_native,
    open_native,
    open_native_run,
    open_native_scattered,
    seal_native,
    seal_native_gathered,
)
from .noise import Handshake, StaticIdentity
from .peer import Peer
from .replay import ReplayWindow
from .session import Session
from .uapi import (
    CheckedSet,
    DeviceInfo,
    GetRequest,
    PeerInfo,
    PeerUpdate,
    SetRequest,
    UapiConnection,
    UapiError,
    apply_set,
    check_set,
    device_info,
    handle_request,
    parse_get,
    parse_set,
    render_errno,
    render_get,
    render_set,
    sync_request,
)
from .xchacha import (
    hchacha20,
    xchacha20poly1305_decrypt,
    xchacha20poly1305_encrypt,
)

__all__ = [
    # interface
    "WireGuard",
    "InterfaceConfig",
    "PeerConfig",
    "Peer",
    "Event",
    "HandshakeCompleted",
    "HandshakeFailed",
    "KeysZeroed",
    "EndpointChanged",
    "WireGuardStatistics",
    "PeerStatistics",
    "parse_endpoint",
    "format_endpoint",
    "Address",
    # data path
    "DatagramBatch",
    "Session",
    "ReplayWindow",
    "AllowedIPs",
    "Network",
    "parse_network",
    # native fast mode
    "MESSAGE_NATIVE",
    "NATIVE_HEADER_SIZE",
    "MAX_NATIVE_PLAINTEXT",
    "MIN_FRAGMENT_SIZE",
    "OpenResult",
    "is_native",
    "seal_native",
    "seal_native_gathered",
    "SendSlots",
    "open_native",
    "open_native_run",
    "open_native_scattered",
    # keys and handshake
    "PrivateKey",
    "PublicKey",
    "PresharedKey",
    "RandomSource",
    "genkey",
    "pubkey",
    "genpsk",
    "StaticIdentity",
    "Handshake",
    "CookieChecker",
    "CookieGenerator",
    "tai64n",
    "hchacha20",
    "xchacha20poly1305_encrypt",
    "xchacha20poly1305_decrypt",
    # UAPI (wireguard.com/xplatform)
    "UapiConnection",
    "UapiError",
    "GetRequest",
    "SetRequest",
    "PeerUpdate",
    "DeviceInfo",
    "PeerInfo",
    "parse_set",
    "render_set",
    "parse_get",
    "render_get",
    "render_errno",
    "device_info",
    "CheckedSet",
    "check_set",
    "apply_set",
    "sync_request",
    "handle_request",
    # messages
    "Initiation",
    "Response",
    "CookieReply",
    "TransportHeader",
    "message_type",
    "parse_message",
    # constants
    "DEFAULT_MTU",
    "KEEPALIVE_TIMEOUT",
    "COOKIE_REFRESH_TIME",
    "REKEY_AFTER_MESSAGES",
    "REJECT_AFTER_MESSAGES",
    "REKEY_AFTER_TIME",
    "REJECT_AFTER_TIME",
    "REKEY_ATTEMPT_TIME",
    "REKEY_TIMEOUT",
]
