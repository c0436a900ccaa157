# -*- test-case-name: tests.test_fuzz_corpus -*-
"""One server built by the composition root, for the targets that need a whole cloud.

:func:`build_cloud` with a :class:`~twisted.internet.task.Clock`, a
:class:`~twisted_spark.store.memory.MemoryStore` holding one user with one
token and one registered Photon, inline executors, and constant randomness:
every connection gets the same nonce and session key, so a device side made
once (:attr:`FuzzCloud.identity_blob`, :attr:`FuzzCloud.session`) completes
a correct handshake on every new connection, and the RSA work of that
handshake is remembered (:class:`~fuzz.harness.MemoExecutor`).  Passwords are
hashed with 1 000 PBKDF2 rounds, so login inputs cost what the rest does.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from functools import cache

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.test import iosim

from fuzz.harness import MemoExecutor, constant_random, test_keys
from twisted_spark.cloud import Cloud, build_cloud
from twisted_spark.config import Settings
from twisted_spark.crypto.handshake import NONCE_LENGTH, SESSION_LENGTH, encrypt_identity
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.executors import Executors
from twisted_spark.models import AccessToken, DeviceRecord, User
from twisted_spark.store.memory import MemoryStore

DEVICE_ID = "1a118ad1c886d54240ce4b17"
OTHER_DEVICE_ID = "53ff73065067544816300187"
USER = "fuzz@example.com"
PASSWORD = "fuzz-password"
TOKEN = "f0" * 20
START = 1_700_000_000.0
QUICK_ROUNDS = 1_000


_TABLES = ("_users", "_tokens", "_devices", "_dtls_sessions")


@dataclasses.dataclass
class FuzzCloud:
    """The cloud and what a fuzz target needs to talk to it."""

    cloud: Cloud
    clock: Clock
    store: MemoryStore
    identity_blob: bytes
    session: bytes
    address: object
    saved: dict = dataclasses.field(default_factory=dict)

    def save(self) -> None:
        """Remember the store's contents (:meth:`restore` puts them back)."""
        self.saved = {name: dict(getattr(self.store, name)) for name in _TABLES}

    def restore(self) -> None:
        """Undo what the last input wrote to the store, so every input starts alike."""
        for name, rows in self.saved.items():
            table = getattr(self.store, name)
            if table != rows:
                table.clear()
                table.update(rows)


def quick_hash(password: str) -> str:
    """A stored-hash string of :mod:`twisted_spark.passwords`' format with 1 000 rounds."""
    salt = b"fuzz cloud salt!"
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, QUICK_ROUNDS, 32)
    encode = base64.b64encode
    return f"pbkdf2_sha256${QUICK_ROUNDS}${encode(salt).decode()}${encode(digest).decode()}"


@cache
def device_cloud() -> FuzzCloud:
    """The process's one fuzz cloud (built on first use)."""
    server_key, device_keys = test_keys()
    clock = Clock()
    clock.advance(START)
    store = MemoryStore()
    store._users[USER] = User(USER, quick_hash(PASSWORD), created_at=START)
    store._tokens[TOKEN] = AccessToken(TOKEN, USER, "fuzz", START, None)
    for device_id, key in ((DEVICE_ID, device_keys[0]), (OTHER_DEVICE_ID, device_keys[1])):
        store._devices[device_id] = DeviceRecord(
            device_id=device_id, owner=USER, name=f"fuzz-{device_id[:4]}",
            public_key=public_key_der(key))
    executors = dataclasses.replace(Executors.synchronous(), rsa=MemoExecutor("rsa"))
    cloud = build_cloud(
        Settings(device_publish_rate=0.0), reactor=clock, clock=clock, store=store,
        server_key=server_key, executors=executors, random_bytes=constant_random,
    )
    # Fuzzing exercises the parsers, not the work factor: a login input would
    # otherwise spend 0.25 s in PBKDF2.  (Not passwords.ITERATIONS: the corpus
    # replay runs in the test process, which checks the production default.)
    cloud.api.auth.hash_password = lambda password: defer.succeed(quick_hash(password))
    nonce = constant_random(NONCE_LENGTH)
    blob = encrypt_identity(server_key.public_key(), nonce, DEVICE_ID,
                            public_key_der(device_keys[0]))
    harness = FuzzCloud(cloud, clock, store, blob, constant_random(SESSION_LENGTH),
                        iosim.FakeAddress())
    harness.save()
    return harness
