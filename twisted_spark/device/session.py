"""One handshaken device connection: requests, responses, events, keep-alive.

:class:`DeviceSession` is created by :class:`~twisted_spark.device.protocol.DeviceProtocol`
once the device Hello has arrived.  It owns the per-connection CoAP state of
PROTOCOL.md §5: the server message-id counter, the device counter check, the
1-byte token table mapping responses to pending requests (each a Deferred
with its own clock timeout), the cached Describe, subscriptions, and the
handling of everything a device originates (events, pings, subscribe, time).
Writing bytes and the idle timer stay in the protocol; the session calls
``protocol.send_coap(bytes)`` and ``protocol.close(reason)``.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.coap import payloads, to_device
from twisted_spark.coap.codec import CoapError, Code
from twisted_spark.errors import (
    ArgumentTooLong,
    DeviceBusy,
    DeviceNotConnected,
    DeviceRequestFailed,
    DeviceTimeout,
    UnknownFunction,
    UnknownVariable,
)
from twisted_spark.interfaces import IDeviceSession
from twisted_spark.models import Event
from twisted_spark.platforms import CORE, is_core_class, limits_for

#: CoAP message types.
CON, NON, ACK, RST = 0, 1, 2, 3
#: Seconds to wait for an application Describe part after a system part (§8.1).
#: What a part already says is served at once; only a name not seen yet waits.
DESCRIBE_GRACE = 1.0

DESCRIBE, FUNCTION, VARIABLE, SIGNAL, PING, GENERIC = range(6)
KIND_NAMES = ("describe", "function call", "variable read", "signal", "ping", "request")


class _Pending:
    """One request waiting for the device's answer."""

    __slots__ = ("kind", "deferred", "timer", "mid", "token", "name", "parts", "waiters")

    def __init__(self, kind, deferred, mid, token, name=None):
        self.kind = kind
        self.deferred = deferred
        self.mid = mid
        self.token = token
        self.name = name
        self.timer = None
        self.parts = None
        self.waiters = None


@implementer(IDeviceSession)
class DeviceSession:
    """The live state of one device connection (see the module docstring).

    :param protocol: the owning protocol (``send_coap``, ``close``).
    :param device_id: 24 lowercase hex characters.
    :param hello: the parsed device Hello (:class:`twisted_spark.coap.messages.Hello`).
    :param recv_mid: the device Hello's message id (start of the counter check).
    :param server_mid: the server's counter (its Hello used ``server_mid``).
    """

    log = Logger()

    __slots__ = (
        "protocol",
        "factory",
        "device_id",
        "owner",
        "remote_ip",
        "platform_id",
        "product_id",
        "firmware_version",
        "flags",
        "last_heard",
        "last_saved",
        "subscriptions",
        "busy",
        "message_handler",
        "_recv_mid",
        "_mid",
        "_token",
        "_pending",
        "_by_mid",
        "_describe",
        "_closed",
        "_bucket",
        "_bucket_at",
    )

    def __init__(self, protocol, factory, device_id, owner, remote_ip, hello, recv_mid, server_mid):
        self.protocol = protocol
        self.factory = factory
        self.device_id = device_id
        self.owner = owner
        self.remote_ip = remote_ip
        # A Core's 6-byte Hello carries no platform id; every Photon/P1 sends one.
        self.platform_id = CORE if hello.platform_id is None else hello.platform_id
        self.product_id = hello.product_id
        self.firmware_version = hello.firmware_version
        self.flags = hello.flags
        self.last_heard = factory.clock.seconds()
        self.last_saved = self.last_heard
        self.subscriptions = []
        #: Set by an OTA transfer: other API calls fail with DeviceBusy.
        self.busy = False
        #: Optional callable(session, msg) for device messages the session does
        #: not handle itself (ChunkMissed, device UpdateDone: the OTA code).
        self.message_handler = None
        self._recv_mid = recv_mid
        self._mid = server_mid
        self._token = 0
        self._pending = {}
        self._by_mid = {}
        self._describe = None
        self._closed = False
        self._bucket = 4.0
        self._bucket_at = self.last_heard

    # -- attributes ------------------------------------------------------------

    @property
    def connected(self):
        return not self._closed

    @property
    def functions(self):
        return tuple(self._describe["functions"]) if self._describe else ()

    @property
    def variables(self):
        return dict(self._describe["variables"]) if self._describe else {}

    @property
    def is_core(self):
        return is_core_class(self.platform_id)

    @property
    def buffer_size(self):
        """Largest frame (ciphertext bytes) the device accepts (§4.5)."""
        return limits_for(self.platform_id).buffer_size

    def next_mid(self):
        """Advance and return the server message id (§5.5)."""
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def _next_token(self):
        for _ in range(256):
            self._token = (self._token + 1) & 0xFF
            if self._token not in self._pending:
                return self._token
        raise DeviceBusy("too many requests in flight")

    # -- IDeviceSession ----------------------------------------------------------

    def describe(self):
        """Functions and variables of the device, asked once and cached."""
        if self._describe is not None:
            return defer.succeed(self._describe)
        for pending in self._pending.values():
            if pending.kind == DESCRIBE:
                d = defer.Deferred()
                pending.waiters.append(d)
                return d
        d = self._request(DESCRIBE, lambda mid, tok: to_device.describe(mid, tok))
        return d

    def invalidate_describe(self):
        """Forget the cached Describe (after a firmware update)."""
        self._describe = None

    def final_describe(self):
        """The Describe once no further part can come -> Deferred[dict].

        :meth:`describe` answers from the first part that names functions or
        variables; a Photon may still send an application part within
        ``DESCRIBE_GRACE``.  This waits for it (at once if nothing is on the way).
        """
        for pending in self._pending.values():
            if pending.kind == DESCRIBE:
                d = defer.Deferred()
                pending.waiters.append(d)
                return d
        return self.describe()

    async def _described(self, kind, name):
        """The Describe, waiting for the rest of a partial one if ``name`` is not in it."""
        described = self._describe
        if described is None:
            described = await self.describe()
        if name not in described[kind]:
            described = await self.final_describe()
        return described

    def call_function(self, name, argument):
        """Call function ``name`` with ``argument`` (bytes or str) -> Deferred[int]."""
        return defer.ensureDeferred(self._call_function(name, argument))

    async def _call_function(self, name, argument):
        self._check_usable()
        if isinstance(argument, str):
            argument = argument.encode("utf-8")
        described = await self._described("functions", name)
        if name not in described["functions"]:
            raise UnknownFunction(name)
        limit = self.factory.settings.max_function_argument
        if limit is None:
            limit = limits_for(self.platform_id).argument_limit
        if len(argument) > limit:
            raise ArgumentTooLong(f"argument is {len(argument)} bytes, the device accepts {limit}")
        self._check_usable()
        return await self._request(
            FUNCTION, lambda mid, tok: to_device.function_call(mid, tok, name, argument), name=name
        )

    def read_variable(self, name):
        """Read variable ``name`` -> Deferred[bool | int | float | str]."""
        return defer.ensureDeferred(self._read_variable(name))

    async def _read_variable(self, name):
        self._check_usable()
        described = await self._described("variables", name)
        type_name = described["variables"].get(name)
        if type_name is None:
            raise UnknownVariable(name)
        self._check_usable()
        return await self._request(
            VARIABLE, lambda mid, tok: to_device.variable_request(mid, tok, name), name=type_name
        )

    def signal(self, on):
        """Start (``on``) or stop the rainbow LED -> Deferred[bool]."""
        try:
            self._check_usable()
        except Exception:
            return defer.fail()
        return self._request(SIGNAL, lambda mid, tok: to_device.signal(mid, tok, bool(on)))

    def ping(self):
        """Send a CoAP ping -> Deferred[bool] (True when the device answered)."""
        if self._closed:
            return defer.fail(DeviceNotConnected(self.device_id))
        mid = self.next_mid()
        d = defer.Deferred()
        pending = _Pending(PING, d, mid, None)
        self._by_mid[mid] = pending
        self._arm(pending, self.factory.settings.request_timeout)
        self.protocol.send_coap(to_device.ping(mid))
        return d

    def send_request(self, build, timeout=None):
        """Send a tokened request built by ``build(mid, token) -> bytes``.

        Fires with the first non-empty response message (piggy-backed ACK or
        separate response).  This is the hook the OTA code uses.
        """
        try:
            self._check_open()
        except Exception:
            return defer.fail()
        return self._request(GENERIC, build, timeout=timeout)

    def send_event(self, event):
        """Deliver ``event`` to the device (NON, no token, §9.2); False if refused."""
        if self._closed:
            return False
        try:
            name = event.name.encode("utf-8")
            data = event.data.encode("utf-8") if event.data is not None else None
        except UnicodeEncodeError:  # an unpaired surrogate: the API refuses them, but be sure
            self.log.warn(
                "Not sending event {name!r} to device {device_id} at {ip}: its name or data "
                "has no UTF-8 form",
                name=event.name,
                device_id=self.device_id,
                ip=self.remote_ip,
            )
            return False
        mid = (self._mid + 1) & 0xFFFF
        coap = to_device.event(mid, name, data, event.ttl, private=not event.public)
        frame = (len(coap) & ~15) + 16
        if frame > self.buffer_size:
            self.log.warn(
                "Not sending event {name!r} to device {device_id} at {ip}: its frame would be "
                "{frame} bytes, the device buffer holds {limit}",
                name=event.name,
                device_id=self.device_id,
                ip=self.remote_ip,
                frame=frame,
                limit=self.buffer_size,
            )
            return False
        self._mid = mid
        self.protocol.send_coap(coap)
        return True

    def disconnect(self, reason):
        """Close the connection; pending requests fail with DeviceNotConnected."""
        self.protocol.close(reason)

    # -- requests ----------------------------------------------------------------

    def _check_open(self):
        if self._closed:
            raise DeviceNotConnected(self.device_id)

    def _check_usable(self):
        self._check_open()
        if self.busy:
            raise DeviceBusy(self.device_id)

    def _request(self, kind, build, name=None, timeout=None):
        if self._closed:
            return defer.fail(DeviceNotConnected(self.device_id))
        try:
            token = self._next_token()
        except DeviceBusy:
            return defer.fail()
        mid = self.next_mid()
        # A cancelled call (client gone, API timeout) frees its token and timer at
        # once. A Describe is shared by every waiter, so it runs to its end.
        d = defer.Deferred(None if kind == DESCRIBE else lambda _: self._forget(pending))
        pending = _Pending(kind, d, mid, token, name)
        if kind == DESCRIBE:
            pending.parts = {}
            pending.waiters = []
        self._pending[token] = pending
        self._by_mid[mid] = pending
        self._arm(pending, timeout or self.factory.settings.request_timeout)
        self.protocol.send_coap(build(mid, token))
        return d

    def _arm(self, pending, seconds):
        pending.timer = self.factory.clock.callLater(seconds, self._timed_out, pending)

    def _forget(self, pending):
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        if pending.token is not None and self._pending.get(pending.token) is pending:
            del self._pending[pending.token]
        if self._by_mid.get(pending.mid) is pending:
            del self._by_mid[pending.mid]

    def _finish(self, pending, result=None, error=None):
        self._forget(pending)
        targets = [pending.deferred] + (pending.waiters or [])
        for d in targets:
            if d is None:  # a Describe's first waiters, answered from a partial one
                continue
            if error is not None:
                d.errback(error)
            else:
                d.callback(result)

    def _timed_out(self, pending):
        pending.timer = None
        if pending.kind == DESCRIBE and pending.parts:
            # A system part arrived and no application part followed: done.
            self._complete_describe(pending)
            return
        self._finish(
            pending,
            error=DeviceTimeout(f"{self.device_id} did not answer the {KIND_NAMES[pending.kind]}"),
        )

    def _fail_all(self, error):
        pendings = list(self._pending.values()) + [
            p for p in self._by_mid.values() if p.token is None
        ]
        self._pending.clear()
        self._by_mid.clear()
        for pending in pendings:
            self._finish(pending, error=error)

    # -- incoming ------------------------------------------------------------------

    def message_received(self, msg):
        """Route one decoded CoAP message from the device."""
        self.last_heard = self.factory.clock.seconds()
        self.factory.registry.heard(self)
        mtype = msg.type
        if mtype == ACK or mtype == RST:
            self._response(msg)
            return
        expected = (self._recv_mid + 1) & 0xFFFF
        if msg.message_id != expected:
            self.protocol.close(
                f"bad message counter: expected {expected:#06x}, got {msg.message_id:#06x}",
                error=True,
            )
            return
        self._recv_mid = msg.message_id
        code = msg.code
        if code == 0:
            if mtype == CON:
                self.protocol.send_coap(to_device.empty_ack(msg.message_id))
            return
        if code >= 0x40:
            self._response(msg)
            return
        letter = msg.path_char
        if letter in ("e", "E") and code == Code.POST:
            self._device_event(msg)
        elif letter == "e" and code == Code.GET:
            self._subscribe(msg)
        elif letter == "t" and code == Code.GET:
            now = int(self.factory.clock.seconds()) & 0xFFFFFFFF
            self.protocol.send_coap(to_device.time_reply(msg.message_id, msg.token, now))
        elif self.message_handler is not None:
            self.message_handler(self, msg)
        elif mtype == CON:
            # Unknown request: acknowledge so the device does not wait.
            self.protocol.send_coap(to_device.empty_ack(msg.message_id))

    def _response(self, msg):
        token = msg.token
        pending = None
        if token:
            pending = self._pending.get(token[0])
        if pending is None:
            pending = self._by_mid.get(msg.message_id) if msg.type in (ACK, RST) else None
            if pending is None:
                return
        if msg.type == RST:
            self._finish(pending, error=DeviceRequestFailed(f"{self.device_id} reset the request"))
            return
        code = msg.code
        if code == 0:
            # Empty ACK: a ping answer, or "separate response follows".
            if pending.kind == PING:
                self._finish(pending, result=True)
            elif self._by_mid.get(msg.message_id) is pending:
                del self._by_mid[msg.message_id]
            return
        if code >= 0x80:
            self._failed_response(pending, code)
            return
        kind = pending.kind
        if kind == DESCRIBE:
            self._describe_part(pending, msg.payload)
        elif kind == FUNCTION:
            payload = msg.payload
            try:
                value = payloads.parse_function_return(payload[:4])
            except CoapError as e:
                self._finish(pending, error=DeviceRequestFailed(f"bad function return: {e}"))
            else:
                self._finish(pending, result=value)
        elif kind == VARIABLE:
            try:
                value = payloads.decode_variable(pending.name, msg.payload)
            except CoapError as e:
                self._finish(pending, error=DeviceRequestFailed(f"bad variable value: {e}"))
            else:
                self._finish(pending, result=value)
        elif kind == SIGNAL:
            self._finish(pending, result=True)
        elif kind == PING:
            self._finish(pending, result=True)
        else:
            self._finish(pending, result=msg)

    def _failed_response(self, pending, code):
        text = f"{code >> 5}.{code & 0x1F:02d}"
        if pending.kind == VARIABLE and code == 0x84:
            error = UnknownVariable(f"the device does not know that variable ({text})")
        elif pending.kind == FUNCTION and code == 0x80:
            error = ArgumentTooLong(f"the device refused the argument ({text})")
        elif pending.kind == GENERIC:
            error = DeviceRequestFailed(text)
            error.code = code
        else:
            error = DeviceRequestFailed(
                f"{self.device_id} answered the {KIND_NAMES[pending.kind]} with {text}"
            )
        self._finish(pending, error=error)

    def _describe_part(self, pending, payload):
        try:
            part = payloads.parse_describe(payload)
        except CoapError as e:
            self.log.info(
                "Ignoring a Describe part from {device_id}: {why}", device_id=self.device_id, why=e
            )
            return
        pending.parts = payloads.merge_describe(pending.parts, part)
        if "m" not in part:
            self._complete_describe(pending)
            return
        # A system part (possibly merged): an application part may follow.
        if pending.timer is not None and pending.timer.active():
            pending.timer.reset(DESCRIBE_GRACE)
        else:
            self._arm(pending, DESCRIBE_GRACE)
        if pending.parts.get("f") or pending.parts.get("v"):
            # It already names functions/variables (Photon 0.6 sends everything
            # in this one part): answer from it now; lookups of other names wait.
            described = self._apply_describe(pending.parts)
            waiting = [pending.deferred] + pending.waiters
            pending.deferred, pending.waiters = None, []
            for d in waiting:
                if d is not None:
                    d.callback(described)

    def _complete_describe(self, pending):
        self._finish(pending, result=self._apply_describe(pending.parts))

    def _apply_describe(self, parts):
        """Cache (and store, if changed) the functions and variables in ``parts``."""
        raw_functions = parts.get("f")
        if not isinstance(raw_functions, list):
            raw_functions = ()
        functions = tuple(str(f) for f in raw_functions)
        variables = {}
        raw_variables = parts.get("v")
        for name, code in (raw_variables if isinstance(raw_variables, dict) else {}).items():
            try:
                variables[str(name)] = payloads.variable_type_name(code)
            except (TypeError, ValueError):
                variables[str(name)] = "string"
        if "p" in parts and self.platform_id == CORE:
            try:
                self.platform_id = int(parts["p"])
            except (TypeError, ValueError):
                pass
        described = {"functions": functions, "variables": variables}
        if described != self._describe:
            self._describe = described
            self.factory.registry.save(self.device_id, functions=functions, variables=variables)
        return self._describe

    def _device_event(self, msg):
        slowed = not self._take_token()
        if msg.type == CON or slowed:
            answer = to_device.slowdown if slowed else to_device.empty_ack
            self.protocol.send_coap(answer(msg.message_id))
        if slowed:
            return
        try:
            parsed = payloads.parse_event(msg)
        except CoapError as e:
            self.log.info(
                "Dropping a bad event from {device_id}: {why}", device_id=self.device_id, why=e
            )
            return
        name = parsed.name
        event = Event(
            name=name,
            data=parsed.data,
            ttl=parsed.ttl,
            published_at=self.factory.clock.seconds(),
            coreid=self.device_id,
            public=not parsed.private and not name.lower().startswith("spark"),
            owner=self.owner,
        )
        try:
            self.factory.bus.publish(event)
        except Exception:
            self.log.failure(
                "Publishing event {name!r} of {device_id} failed",
                name=name,
                device_id=self.device_id,
            )

    def _take_token(self):
        rate = self.factory.settings.device_publish_rate
        if not rate:
            return True
        now = self.factory.clock.seconds()
        self._bucket = min(4.0, self._bucket + (now - self._bucket_at) * rate)
        self._bucket_at = now
        if self._bucket < 1.0:
            return False
        self._bucket -= 1.0
        return True

    def _subscribe(self, msg):
        try:
            sub = payloads.parse_subscribe(msg)
        except CoapError:
            sub = None
        if sub is None or (not sub.prefix and not sub.my_devices and sub.device_id is None):
            self.protocol.send_coap(to_device.subscribe_fail(msg.message_id))
            return
        entry = (sub.prefix, sub.my_devices, sub.device_id)
        if entry not in self.subscriptions:
            self.subscriptions.append(entry)
            self.factory.registry.subscribed(self, entry)
        self.protocol.send_coap(to_device.empty_ack(msg.message_id))

    # -- end -------------------------------------------------------------------------

    def connection_lost(self, reason):
        """The transport is gone: fail everything pending, leave the registry."""
        if self._closed:
            return
        self._closed = True
        self._fail_all(DeviceNotConnected(f"{self.device_id} disconnected ({reason})"))
        self.subscriptions = []
        self.factory.registry.unregister(self)
