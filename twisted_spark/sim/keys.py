# -*- test-case-name: tests.test_sim -*-
"""A virtual device's RSA key with what its handshake derives from it, derived once.

A Photon sends its public key (DER) in every handshake and decrypts the
session key with its private key.  pycryptodome takes 0.12 ms to encode the
DER and 0.5 ms to decrypt; OpenSSL decrypts in 0.07 ms.  A fleet shares one
:class:`DeviceKey` per key (:func:`shared_keys`), so a thousand devices
holding one key convert it once, and a load generator measuring the server
spends its CPU on the server's answers rather than on its own RSA.
"""

from __future__ import annotations

from Crypto.PublicKey.RSA import RsaKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from twisted_spark.crypto.handshake import HandshakeError, open_session_blob
from twisted_spark.crypto.keys import openssl_private_key, public_key_der


class DeviceKey:
    """A device's RSA-1024 private key (``key``), its public DER and its OpenSSL form."""

    def __init__(self, key: RsaKey) -> None:
        self.key = key
        self.der = public_key_der(key)
        self.openssl = openssl_private_key(key, validate=False)

    def open_session_blob(self, server_public_key: RsaKey | RSAPublicKey, blob: bytes) -> bytes:
        """The session in the server's blob (see :func:`open_session_blob`)."""
        try:
            return open_session_blob(self.openssl, server_public_key, blob)
        except HandshakeError:
            # OpenSSL may turn bad padding into random bytes; pycryptodome's
            # decoder says what really went wrong.
            return open_session_blob(self.key, server_public_key, blob)


def shared_keys():
    """``share(key) -> DeviceKey``: one :class:`DeviceKey` per key object."""
    made: dict[int, DeviceKey] = {}

    def share(key: RsaKey | DeviceKey) -> DeviceKey:
        if isinstance(key, DeviceKey):
            return key
        device_key = made.get(id(key))
        if device_key is None:  # it holds ``key``: the id is not reused while kept here
            device_key = made[id(key)] = DeviceKey(key)
        return device_key

    return share
