"""Our Noise_IKpsk2 against an independent implementation: noiseprotocol (``noise``).

noiseprotocol runs the bare Noise pattern with WireGuard's prologue; WireGuard's messages are
the Noise messages plus an outer frame (type, indices) and MACs, so we strip or add those. Both
sides must agree on the transcript hash (``get_handshake_hash``) and the split keys, and the
transport ciphers must interoperate (Noise's ChaChaPoly nonce is 32 zero bits and a 64-bit LE
counter, exactly WireGuard's).
"""

from __future__ import annotations

import os

import pytest

noise_connection = pytest.importorskip("noise.connection")

from tunflow.wireguard.protocol import (  # noqa: E402
    Handshake,
    PresharedKey,
    PrivateKey,
    Session,
    StaticIdentity,
    tai64n,
)
from tunflow.wireguard.protocol.messages import Initiation, Response  # noqa: E402
from tunflow.wireguard.protocol.noise import consume_initiation_static  # noqa: E402

NAME = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
PROLOGUE = b"WireGuard v1 zx2c4 Jason@zx2c4.com"


def _noise(initiator: bool, static: PrivateKey, remote: PrivateKey | None, psk: PresharedKey):
    conn = noise_connection.NoiseConnection.from_name(NAME)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.set_keypair_from_private_bytes(noise_connection.Keypair.STATIC, static.raw)
    if remote is not None:
        conn.set_keypair_from_public_bytes(
            noise_connection.Keypair.REMOTE_STATIC, remote.public_key().raw
        )
    conn.set_psks(psk.raw)
    conn.set_prologue(PROLOGUE)
    conn.start_handshake()
    return conn


@pytest.mark.parametrize("with_psk", [False, True])
def test_we_initiate_noiseprotocol_responds(with_psk: bool) -> None:
    i_key, r_key = PrivateKey.generate(), PrivateKey.generate()
    psk = PresharedKey.generate() if with_psk else PresharedKey()
    ours = Handshake(StaticIdentity(i_key), r_key.public_key(), psk)
    stamp = tai64n(1_700_000_123.25)
    init = ours.create_initiation(1234, stamp, os.urandom)
    theirs = _noise(False, r_key, None, psk)
    # the Noise message is the initiation without its type/sender word and MACs
    assert theirs.read_message(init.encode()[8:116]) == stamp
    m2 = bytes(theirs.write_message(b""))
    assert len(m2) == 48
    ours.consume_response(Response(777, 1234, m2[:32], m2[32:]))
    assert ours.hash == theirs.get_handshake_hash()
    keys = ours.derive_keys()
    assert keys.is_initiator
    assert keys.send_key == theirs.noise_protocol.cipher_state_decrypt.k
    assert keys.receive_key == theirs.noise_protocol.cipher_state_encrypt.k
    # transport, both ways: noise's nonce n counts like our counter
    session = Session(keys, 0.0)
    payload = os.urandom(64)  # a multiple of 16: WireGuard adds no padding
    msg = session.encrypt(payload, 1420)
    assert msg is not None
    assert theirs.decrypt(msg[16:]) == payload
    back = bytes(theirs.encrypt(b"A" * 32))
    frame = (4).to_bytes(4, "little") + (1234).to_bytes(4, "little") + (0).to_bytes(8, "little")
    assert session.decrypt(frame + back) == b"A" * 32


@pytest.mark.parametrize("with_psk", [False, True])
def test_noiseprotocol_initiates_we_respond(with_psk: bool) -> None:
    i_key, r_key = PrivateKey.generate(), PrivateKey.generate()
    psk = PresharedKey.generate() if with_psk else PresharedKey()
    theirs = _noise(True, i_key, r_key, psk)
    stamp = tai64n(1_700_000_456.0)
    m1 = bytes(theirs.write_message(stamp))
    assert len(m1) == 108
    ident = StaticIdentity(r_key)
    msg = Initiation(99, m1[:32], m1[32:80], m1[80:108])
    pending = consume_initiation_static(ident, msg)
    assert pending.peer_public_key == i_key.public_key()
    ours = Handshake(ident, i_key.public_key(), psk)
    assert ours.consume_initiation(pending, msg, 0.0) == stamp
    resp = ours.create_response(5, os.urandom)
    assert theirs.read_message(resp.ephemeral + resp.empty) == b""
    assert theirs.handshake_finished
    assert ours.hash == theirs.get_handshake_hash()
    keys = ours.derive_keys()
    assert not keys.is_initiator
    assert keys.receive_key == theirs.noise_protocol.cipher_state_encrypt.k
    assert keys.send_key == theirs.noise_protocol.cipher_state_decrypt.k


def test_wrong_psk_fails_on_both_sides() -> None:
    i_key, r_key = PrivateKey.generate(), PrivateKey.generate()
    ours = Handshake(StaticIdentity(i_key), r_key.public_key(), PresharedKey.generate())
    init = ours.create_initiation(1, tai64n(1.0), os.urandom)
    theirs = _noise(False, r_key, None, PresharedKey.generate())
    theirs.read_message(init.encode()[8:116])  # psk2 is mixed in only at message 2
    m2 = bytes(theirs.write_message(b""))
    from tunflow import HandshakeError

    with pytest.raises(HandshakeError, match="does not authenticate"):
        ours.consume_response(Response(2, 1, m2[:32], m2[32:]))
