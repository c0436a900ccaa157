"""Fakes and a harness for the API tests: no sockets, no threads, a Clock.

* :class:`FakeDeviceSession` implements ``IDeviceSession``; each device call
  either answers at once, hangs (a Deferred the test fires or lets time out),
  or fails with a chosen exception.
* :class:`FakeRegistry` implements ``IDeviceRegistry``.
* :class:`Harness` builds a :class:`SparkAPI` on a MemoryStore, the fake
  registry and a ``task.Clock``, and talks to it through ``StubTreq``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass

from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer

from twisted_spark import passwords
from twisted_spark.api import SparkAPI
from twisted_spark.config import Settings
from twisted_spark.errors import DeviceNotConnected
from twisted_spark.interfaces import IDeviceRegistry, IDeviceSession
from twisted_spark.models import AccessToken, DeviceRecord, User
from twisted_spark.store import MemoryStore

PASSWORD = "correct horse battery"


def fast_hash(password: str, iterations: int = 1000) -> str:
    """A valid ``passwords`` hash with few iterations, so tests stay fast."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, 32)
    b64 = base64.b64encode
    return f"pbkdf2_sha256${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def device_id(n: int) -> str:
    return f"{n:024x}"


@implementer(IDeviceSession)
class FakeDeviceSession:
    """A controllable device session.

    :ivar values: variable name -> value returned by ``read_variable``.
    :ivar handlers: function name -> ``f(argument_bytes) -> int``.
    :ivar mode: ``"answer"``, ``"hang"`` (never answers unless the test fires
        ``pending``), or an exception instance to fail with.
    """

    def __init__(self, device_id, variables=None, functions=None, platform_id=6, values=None):
        self.device_id = device_id
        self.platform_id = platform_id
        self.product_id = platform_id
        self.firmware_version = 3
        self.remote_ip = "10.0.0.7"
        self.last_heard = 1_700_000_000.5
        self.variables = dict(variables or {})
        self.functions = tuple(functions or ())
        self.values = dict(values or {})
        self.handlers = {}
        self.mode = "answer"
        self.pending: list[defer.Deferred] = []
        self.cancelled = 0
        self.calls: list[tuple] = []
        self.signaling = None
        self.connected = True
        self.owner = None
        self.busy = False
        self.subscriptions = []
        self.final = None

    def _answer(self, compute):
        if not self.connected:
            return defer.fail(DeviceNotConnected(self.device_id))
        if isinstance(self.mode, BaseException):
            return defer.fail(self.mode)
        if self.mode == "hang":

            def cancel(d):
                self.cancelled += 1

            d = defer.Deferred(cancel)
            self.pending.append(d)
            return d
        return defer.maybeDeferred(compute)

    def describe(self):
        self.calls.append(("describe",))
        return self._answer(
            lambda: {"functions": list(self.functions), "variables": dict(self.variables)}
        )

    def final_describe(self):
        """What is known, at once: nothing more is on the way (a test may set
        ``final`` to a Deferred, as a Describe whose last part is still coming)."""
        if self.final is not None:
            return self.final
        return defer.succeed({"functions": list(self.functions), "variables": dict(self.variables)})

    def call_function(self, name, argument):
        self.calls.append(("call", name, argument))
        return self._answer(lambda: self.handlers.get(name, lambda a: len(a))(argument))

    def read_variable(self, name):
        self.calls.append(("read", name))
        return self._answer(lambda: self.values[name])

    def signal(self, on):
        self.calls.append(("signal", on))

        def do():
            self.signaling = on
            return True

        return self._answer(do)

    def ping(self):
        self.calls.append(("ping",))
        return self._answer(lambda: True)

    def send_request(self, build, timeout=None):
        self.calls.append(("request",))
        return self._answer(lambda: None)

    def invalidate_describe(self):
        self.calls.append(("invalidate",))

    def send_event(self, event):
        self.calls.append(("event", event))

    def disconnect(self, reason):
        """The connection drops: every pending request fails with DeviceNotConnected."""
        self.connected = False
        pending, self.pending = self.pending, []
        for d in pending:
            if not d.called:
                d.errback(DeviceNotConnected(self.device_id))


@implementer(IDeviceRegistry)
class FakeRegistry:
    def __init__(self):
        self.sessions_by_id: dict[str, FakeDeviceSession] = {}
        self.observers = []

    def get(self, device_id):
        return self.sessions_by_id.get(device_id)

    def online_ids(self):
        return set(self.sessions_by_id)

    def add_observer(self, observer):
        self.observers.append(observer)

    def remove_observer(self, observer):
        if observer in self.observers:
            self.observers.remove(observer)

    def sessions(self):
        return list(self.sessions_by_id.values())

    def local(self, device_id):
        return self.sessions_by_id.get(device_id)

    def owner_changed(self, device_id, owner):
        session = self.sessions_by_id.get(device_id)
        if session is not None:
            session.owner = owner

    def connect(self, session):
        self.sessions_by_id[session.device_id] = session
        return session

    def drop(self, device_id):
        session = self.sessions_by_id.pop(device_id)
        session.disconnect("test")


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    """Encode ``fields`` and ``files`` ({name: (filename, bytes)}) as multipart/form-data."""
    boundary = "----spark-test-boundary-7d1f"
    out = []
    for name, value in fields.items():
        out.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    for name, (filename, content) in files.items():
        out.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + content
            + b"\r\n"
        )
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


@dataclass
class Result:
    status: int
    headers: object
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)

    def header(self, name):
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


def assert_error(result, status, error=None, description=None):
    assert result.status == status, result.body
    body = result.json
    assert body["ok"] is False
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["error_description"], str) and body["error_description"]
    if error is not None:
        assert body["error"] == error
    if description is not None:
        assert body["error_description"] == description
    return body


class Harness:
    """A SparkAPI on fakes, driven through StubTreq with a Clock."""

    NOW = 1_700_000_000.0

    def __init__(self, settings=None, bus=None, **settings_changes):
        self.settings = settings or Settings(**settings_changes)
        self.clock = Clock()
        self.clock.advance(self.NOW)
        self.store = MemoryStore()
        self.registry = FakeRegistry()
        self.api = SparkAPI(self.store, self.registry, self.settings, clock=self.clock, bus=bus)
        self.api.auth.hash_password = lambda pw: defer.succeed(fast_hash(pw))
        self.api.auth.verify_password = lambda pw, h: defer.succeed(
            passwords.verify_password(pw, h)
        )
        self.stub = StubTreq(self.api.resource())

    # -- requests -----------------------------------------------------------------

    def start(
        self,
        method,
        path,
        token=None,
        basic=None,
        form=None,
        json_body=None,
        data=None,
        headers=None,
        files=None,
    ):
        """Send a request; returns the Deferred[IResponse] (fires once answered)."""
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        if basic is not None:
            raw = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            all_headers["Authorization"] = f"Basic {raw}"
        kwargs = {}
        if json_body is not None:
            kwargs["data"] = json.dumps(json_body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        elif files is not None:
            kwargs["data"], all_headers["Content-Type"] = multipart(form or {}, files)
        elif form is not None:
            kwargs["data"] = form
        elif data is not None:
            kwargs["data"] = data
        headers_bytes = {k.encode(): [v.encode()] for k, v in all_headers.items()}
        d = self.stub.request(method, "http://api.test" + path, headers=headers_bytes, **kwargs)
        self.stub.flush()
        return d

    def answered(self, d) -> bool:
        """True once the response to ``d`` has arrived (after pumping the stub)."""
        self.stub.flush()
        box = []

        def seen(result):
            box.append(True)
            return result

        d.addBoth(seen)
        return bool(box)

    async def finish(self, d) -> Result:
        assert self.answered(d), "the API has not answered yet"
        response = await d
        body = await self.stub.content(response)
        return Result(response.code, response.headers, body)

    async def call(self, method, path, **kwargs) -> Result:
        return await self.finish(self.start(method, path, **kwargs))

    # -- fixtures -----------------------------------------------------------------

    async def user(self, name, admin=False, lifetime=3600.0) -> str:
        """Create ``name`` (password PASSWORD) and return a fresh token for it."""
        if await self.store.get_user(name) is None:
            await self.store.add_user(User(name, fast_hash(PASSWORD), is_admin=admin))
        token = os.urandom(20).hex()
        expires = None if lifetime is None else self.clock.seconds() + lifetime
        await self.store.add_token(AccessToken(token, name, "spark", self.clock.seconds(), expires))
        return token

    async def device(self, n, owner=None, name=None, online=True, **session_kwargs):
        """Store device ``n`` (owned by ``owner``) and optionally connect a fake session."""
        did = device_id(n)
        if owner is not None and await self.store.get_user(owner) is None:
            await self.store.add_user(User(owner, fast_hash(PASSWORD)))
        await self.store.put_device(
            DeviceRecord(
                did,
                owner=owner,
                name=name,
                last_heard=1_600_000_000.0,
                platform_id=6,
                variables={"old": "int32"},
                functions=("oldfn",),
            )
        )
        if online:
            return self.registry.connect(FakeDeviceSession(did, **session_kwargs))
        return None
