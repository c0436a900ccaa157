"""A virtual Spark Core / Photon: the client half of the device protocol.

:class:`VirtualDevice` is an ordinary Twisted protocol that does what the
firmware does (PROTOCOL.md §3-§11): answers the nonce with its identity,
checks the server's session blob, sends its Hello, then serves Describe,
function calls, variable reads (every type), signal, pings, events pushed to
it, and OTA updates (classic and fast mode), and can publish, subscribe,
ask the time and ping.  Tests, benchmarks and users without hardware use it.

Functions are ``name -> callable(argument: bytes) -> int``; variables are
``name -> (type, value)`` with type one of ``bool``, ``int32``, ``string``,
``double`` and value a constant or a zero-argument callable.
"""

from __future__ import annotations

import zlib

from twisted.internet import defer
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger

from twisted_spark import platforms
from twisted_spark.coap import codec, from_device, kinds, payloads, to_device
from twisted_spark.coap.kinds import DeviceBoundKind
from twisted_spark.crypto.channel import AesCbcChannel, FrameError, FrameReader
from twisted_spark.crypto.handshake import (
    NONCE_LENGTH,
    SESSION_BLOB_LENGTH,
    encrypt_identity,
    open_session_blob,
    session_seeds,
)
from twisted_spark.crypto.keys import public_key_der
from twisted_spark.platforms import CORE, CORE_LIMITS

TYPE_CODES = {"bool": 1, "int32": 2, "string": 4, "double": 9}
DescribeStyles = ("core", "photon-0.4.9", "photon-0.6", "photon-separate")


def default_functions():
    """``brew`` returns the argument length; ``negate`` returns -int(argument)."""
    return {
        "brew": lambda arg: len(arg),
        "negate": lambda arg: -int(arg or b"0"),
    }


def default_variables():
    """One variable of every type."""
    return {
        "ready": ("bool", True),
        "temperature": ("int32", -98765),
        "message": ("string", "woot"),
        "ratio": ("double", -104.858),
    }


class VirtualDevice(Protocol):
    """One simulated device connection (see the module docstring).

    :param device_id: 24 hex characters.
    :param private_key: the device's RSA-1024 ``RsaKey`` (private).
    :param server_public_key: the server's RSA-2048 public ``RsaKey``.
    :param platform: ``"core"`` (6-byte Hello, no key in the handshake,
        640-byte buffer) or ``"photon"`` (8-byte Hello, sends its key).
    :param describe_style: how Describe is answered: ``core`` (one ACK),
        ``photon-0.4.9`` (two ACKs: system, then application),
        ``photon-0.6`` (one merged ACK), ``photon-separate`` (empty ACK,
        then NON parts).  Default by platform.
    :param separate_variables: answer variable reads with empty ACK + NON
        2.05 (device OS >= 1.5) instead of a piggy-backed ACK.
    :param clock: ``IReactorTime`` for the optional keep-alive ping.
    :param keepalive: ping the server after ``keepalive`` seconds of silence
        (the firmware uses 15); ``None`` = never.
    :param fast_ota: accept fast OTA when the server offers it (never on a Core).
    :param fast_style: fast OTA as ``"0.4.9"`` (good chunks answered, the
        device sends its own UpdateDone once missed chunks arrived) or
        ``"1.5.2"`` (chunks unanswered, waits for the server's UpdateDone).
    :param ota_faults: an :class:`OtaFaults` (misbehaviour for tests).

    After an update :attr:`firmware` holds the image (a Core keeps the zero
    padding of the last chunk, as its flash does; a Photon cuts it at the
    size from UpdateBegin) and :attr:`ota_done` fires with it.
    """

    log = Logger()

    def __init__(
        self,
        device_id,
        private_key,
        server_public_key,
        platform="core",
        functions=None,
        variables=None,
        describe_style=None,
        separate_variables=False,
        product_id=0xFFFF,
        firmware_version=0xFFFF,
        flags=0,
        clock=None,
        keepalive=None,
        fast_ota=True,
        fast_style="0.4.9",
        ota_faults=None,
    ):
        self.device_id = device_id.lower()
        self.private_key = private_key
        self.server_public_key = server_public_key
        self.platform = platform
        self.platform_id = platforms.IDS[platform]
        self.functions = default_functions() if functions is None else dict(functions)
        self.variables = default_variables() if variables is None else dict(variables)
        if describe_style is None:
            describe_style = "core" if self.platform_id == CORE else "photon-0.6"
        self.describe_style = describe_style
        self.separate_variables = separate_variables
        self.product_id = product_id
        self.firmware_version = firmware_version
        self.flags = flags
        self.clock = clock
        self.keepalive = keepalive
        self.fast_ota = fast_ota and self.platform_id != CORE
        if fast_style not in ("0.4.9", "1.5.2"):
            raise ValueError(f"unknown fast OTA style {fast_style!r}")
        self.fast_style = fast_style
        self.ota_faults = ota_faults or OtaFaults()
        self.ota_stats = {}
        #: Fires with self once the server Hello has arrived.
        self.online = defer.Deferred()
        #: Fires with the failure reason (str) when the connection ends.
        self.closed = defer.Deferred()
        self.events = []  # (name, data, ttl, private) received from the server
        self.calls = []  # (function, argument) the server called
        self.signalling = False
        self.firmware = None  # bytes of the last completed OTA update
        self.ota_done = defer.Deferred()
        self.handshake_error = None
        self._buffer = b""
        self._state = "nonce"
        self._channel = None
        self._reader = None
        self._mid = 0
        self._token = 0
        self._waiting = {}  # our message id -> Deferred (CON requests)
        self._time = {}  # token -> Deferred
        self._ota = None
        self._timer = None
        self._last_received = 0.0

    # -- connection -----------------------------------------------------------------

    def connectionMade(self):
        self._state = "nonce"

    def dataReceived(self, data):
        if self._state == "framed":
            self._frames(data)
            return
        if self._state == "dead":
            return
        self._buffer += data
        if self._state == "nonce" and len(self._buffer) >= NONCE_LENGTH:
            nonce, self._buffer = self._buffer[:NONCE_LENGTH], self._buffer[NONCE_LENGTH:]
            key_der = public_key_der(self.private_key) if self.platform_id != CORE else None
            self.transport.write(
                encrypt_identity(self.server_public_key, nonce, self.device_id, key_der)
            )
            self._state = "session"
        if self._state == "session" and len(self._buffer) >= SESSION_BLOB_LENGTH:
            blob = self._buffer[:SESSION_BLOB_LENGTH]
            rest, self._buffer = self._buffer[SESSION_BLOB_LENGTH:], b""
            try:
                session = open_session_blob(self.private_key, self.server_public_key, blob)
            except Exception as e:
                self.handshake_error = str(e)
                self._state = "dead"
                self.transport.loseConnection()
                return
            self._channel = AesCbcChannel.from_session(session)
            self._reader = FrameReader(0xFFF0)
            self._mid, self._token = session_seeds(session)
            self._state = "framed"
            self.send(
                from_device.device_hello(
                    self._next_mid(),
                    self.product_id,
                    self.firmware_version,
                    self.flags,
                    None if self.platform_id == CORE else self.platform_id,
                )
            )
            self._arm_keepalive()
            if rest:
                self._frames(rest)

    def connectionLost(self, reason=None):
        self._state = "dead"
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        why = reason.getErrorMessage() if reason is not None else "closed"
        waiting = list(self._waiting.values()) + list(self._time.values())
        self._waiting.clear()
        self._time.clear()
        for d in waiting:
            d.errback(ConnectionError(why))
        if not self.online.called:
            self.online.errback(ConnectionError(self.handshake_error or why))
        if not self.closed.called:
            self.closed.callback(why)

    def disconnect(self):
        """Close the TCP connection."""
        if self.transport is not None:
            self.transport.loseConnection()

    # -- sending ----------------------------------------------------------------------

    def _next_mid(self):
        self._mid = (self._mid + 1) & 0xFFFF
        return self._mid

    def send(self, coap):
        """Encrypt and write one CoAP message (raw; tests use it for bad input)."""
        if self._state != "framed":
            return
        self.transport.write(self._channel.encrypt_frame(coap))

    def publish(self, name, data=None, ttl=60, private=False, confirmable=False):
        """Publish an event; with ``confirmable``, Deferred[bool] of the ACK."""
        mid = self._next_mid()
        d = self._expect(mid) if confirmable else defer.succeed(None)
        self.send(from_device.device_event(mid, name, data, ttl, private, confirmable))
        return d

    def subscribe(self, prefix=None, my_devices=False, device_id=None):
        """Subscribe -> Deferred[bool] (True = SubscribeAck, False = SubscribeFail)."""
        mid = self._next_mid()
        d = self._expect(mid)
        self.send(from_device.subscribe(mid, prefix, my_devices, device_id))
        return d

    def ping(self):
        """CoAP ping -> Deferred[bool]."""
        mid = self._next_mid()
        d = self._expect(mid)
        self.send(to_device.ping(mid))
        return d

    def request_time(self):
        """GetTime -> Deferred[int] (Unix seconds from the server)."""
        self._token = (self._token + 1) & 0xFF
        d = defer.Deferred()
        self._time[self._token] = d
        self.send(from_device.get_time(self._next_mid(), self._token))
        return d

    def _expect(self, mid):
        d = defer.Deferred()
        self._waiting[mid] = d
        return d

    def _arm_keepalive(self):
        if self.keepalive is None or self.clock is None:
            return
        self._last_received = self.clock.seconds()
        self._timer = self.clock.callLater(self.keepalive, self._keepalive_check)

    def _keepalive_check(self):
        self._timer = None
        if self._state != "framed":
            return
        silence = self.clock.seconds() - self._last_received
        if silence >= self.keepalive:
            self.ping().addErrback(lambda f: None)
            delay = self.keepalive
        else:
            delay = self.keepalive - silence
        self._timer = self.clock.callLater(delay, self._keepalive_check)

    # -- receiving --------------------------------------------------------------------

    def _frames(self, data):
        try:
            bodies = self._reader.feed(data)
        except FrameError:
            self.transport.loseConnection()
            return
        for body in bodies:
            try:
                msg = codec.decode(self._channel.decrypt(body))
            except (FrameError, codec.CoapError):
                continue  # devices silently drop garbage (the IV has advanced)
            if self.clock is not None:
                self._last_received = self.clock.seconds()
            try:
                self._handle(msg)
            except Exception:
                self.log.failure(
                    "Virtual device {id} failed on {msg!r}", id=self.device_id, msg=msg
                )

    def _handle(self, msg):
        kind = kinds.classify_device_bound(msg)
        mid = msg.message_id
        if kind is DeviceBoundKind.HELLO:
            if not self.online.called:
                self.online.callback(self)
        elif kind is DeviceBoundKind.PING:
            self.send(to_device.empty_ack(mid))
        elif kind is DeviceBoundKind.EMPTY_ACK or kind is DeviceBoundKind.ACK_RESPONSE:
            d = self._waiting.pop(mid, None)
            if d is not None:
                d.callback(msg.code == 0)
        elif kind is DeviceBoundKind.TIME_REPLY:
            d = self._time.pop(msg.token[0], None) if msg.token else None
            if d is not None:
                d.callback(payloads.parse_time_reply(msg.payload))
        elif kind is DeviceBoundKind.DESCRIBE:
            self._describe(msg)
        elif kind is DeviceBoundKind.FUNCTION_CALL:
            self._function(msg)
        elif kind is DeviceBoundKind.VARIABLE_REQUEST:
            self._variable(msg)
        elif kind is DeviceBoundKind.SIGNAL:
            self.signalling = payloads.parse_signal(msg)
            self.send(from_device.signal_ack(mid, msg.token))
        elif kind is DeviceBoundKind.PUBLIC_EVENT or kind is DeviceBoundKind.PRIVATE_EVENT:
            self.events.append(tuple(payloads.parse_event(msg)))
        elif kind is DeviceBoundKind.UPDATE_BEGIN or kind is DeviceBoundKind.SAVE_BEGIN:
            self._update_begin(msg)
        elif kind is DeviceBoundKind.CHUNK:
            self._chunk(msg)
        elif kind is DeviceBoundKind.UPDATE_DONE:
            self._update_done(msg)

    def _describe(self, msg):
        mid, token = msg.message_id, msg.token
        app = {
            "f": list(self.functions),
            "v": {name: TYPE_CODES[t] for name, (t, _) in self.variables.items()},
        }
        system = {
            "p": self.platform_id,
            "m": [{"s": 262144, "l": "m", "vc": 30, "vv": 30, "f": "s", "n": "1", "v": 11}],
        }
        style = self.describe_style
        if style == "core":
            self.send(from_device.describe_response(mid, token, app))
        elif style == "photon-0.4.9":
            self.send(from_device.describe_response(mid, token, {**system, "f": [], "v": {}}))
            self.send(from_device.describe_response(mid, token, app))
        elif style == "photon-0.6":
            self.send(from_device.describe_response(mid, token, {**app, **system}))
        else:
            self.send(to_device.empty_ack(mid))
            for part in (system, app):
                body = from_device.describe_response(self._next_mid(), token, part)
                self.send(bytes([(body[0] & 0xCF) | 0x10]) + body[1:])  # ACK -> NON

    def _function(self, msg):
        name, argument = payloads.parse_function_call(msg)
        self.calls.append((name, argument))
        func = self.functions.get(name)
        if self.platform_id == CORE and len(argument) > CORE_LIMITS.argument_limit:
            self.transport.loseConnection()  # what a real Core does
            return
        self.send(to_device.empty_ack(msg.message_id))
        value = func(argument) if func is not None else -1
        self.send(from_device.function_return(self._next_mid(), msg.token, int(value)))

    def _variable(self, msg):
        name = payloads.parse_variable_request(msg)
        entry = self.variables.get(name)
        if entry is None:
            self.send(from_device.coded_ack(msg.message_id, msg.token, codec.Code.NOT_FOUND))
            return
        type_name, value = entry
        if callable(value):
            value = value()
        encoded = payloads.encode_variable(type_name, value)
        if self.separate_variables:
            self.send(to_device.empty_ack(msg.message_id))
            mid = self._next_mid()
            self.send(from_device.variable_value(mid, msg.token, encoded, separate=True))
        else:
            self.send(from_device.variable_value(msg.message_id, msg.token, encoded))

    # -- OTA ------------------------------------------------------------------------------

    def _update_begin(self, msg):
        faults = self.ota_faults
        if faults.refuse is not None:
            self.send(from_device.coded_ack(msg.message_id, msg.token, faults.refuse))
            return
        if faults.ignore_begin:
            faults.ignore_begin -= 1
            return
        # The Core ignores the payload (§11.1); Photons read it.
        params = payloads.parse_update_begin(msg.payload) if self.platform_id != CORE else None
        fast = bool(params and params.fast_ota and self.fast_ota)
        self._ota = {
            "params": params,
            "fast": fast,
            "chunks": {},
            "next": 0,
            "chunk_size": params.chunk_size if params else None,
            "asked": False,  # fast mode: ChunkMissed sent after an UpdateDone
        }
        self.ota_stats = {"chunks": 0, "bad_crc": 0, "duplicates": 0, "missed_sent": 0}
        if self.ota_done.called:
            self.ota_done = defer.Deferred()
        self.send(to_device.empty_ack(msg.message_id))
        ready = fast if self.platform_id != CORE else None
        self.send(from_device.update_ready(self._next_mid(), msg.token, ready))

    def _chunk(self, msg):
        ota = self._ota
        faults = self.ota_faults
        if ota is None:
            self.send(to_device.empty_ack(msg.message_id))
            return
        info = payloads.parse_chunk(msg)
        stats = self.ota_stats
        stats["chunks"] += 1
        if faults.disconnect_after is not None and stats["chunks"] > faults.disconnect_after:
            self.disconnect()
            return
        if faults.silent_after is not None and stats["chunks"] > faults.silent_after:
            return
        data = info.data
        # A Core reads the payload at a fixed offset: an index option shifts it
        # and the CRC fails (§11.3).
        ok = (zlib.crc32(data) & 0xFFFFFFFF) == info.crc and not (
            self.platform_id == CORE and info.index is not None
        )
        index = info.index if ota["fast"] else ota["next"]
        if ok and faults.corrupt.get(index, 0) > 0:
            faults.corrupt[index] -= 1  # as if a bit flipped on the way: CRC mismatch
            ok = False
        if not ok:
            stats["bad_crc"] += 1
        if ota["chunk_size"] is None:
            ota["chunk_size"] = len(data)
        if ota["fast"]:
            if not ok or index is None:
                return  # both firmware versions answer nothing for a bad chunk
            if index in ota["chunks"]:
                stats["duplicates"] += 1
            ota["chunks"][index] = data
            if self.fast_style == "0.4.9":
                self.send(to_device.empty_ack(msg.message_id))
                self.send(from_device.chunk_received(self._next_mid(), msg.token, True))
                if ota["asked"] and not self._missing():
                    # [DOS 0.4.9]: the device ends the update itself.
                    self.send(from_device.device_update_done(self._next_mid()))
                    self._finish_ota()
            return
        self.send(to_device.empty_ack(msg.message_id))
        if ok and index in faults.flash_fail:
            # Core flash verification failed: rewind and ask to continue there.
            restart = faults.flash_fail.pop(index)
            for i in range(restart, index + 1):
                ota["chunks"].pop(i, None)
            ota["next"] = restart
            stats["missed_sent"] += 1
            self.send(from_device.chunk_missed(self._next_mid(), [restart]))
            return
        if ok:
            ota["chunks"][index] = data
            ota["next"] += 1
        self.send(from_device.chunk_received(self._next_mid(), msg.token, ok))

    def _missing(self):
        ota = self._ota
        params = ota["params"]
        if params is None or not ota["chunk_size"]:
            return []
        total = -(-params.file_size // ota["chunk_size"])
        return [i for i in range(total) if i not in ota["chunks"]]

    def _image(self):
        ota = self._ota
        image = b"".join(ota["chunks"][i] for i in sorted(ota["chunks"]))
        if ota["params"] is not None:
            image = image[: ota["params"].file_size]
        return image

    def _finish_ota(self):
        image = self._image()
        self.firmware = image
        self._ota = None
        if not self.ota_done.called:
            self.ota_done.callback(image)

    def _update_done(self, msg):
        ota = self._ota
        if ota is None:
            self.send(from_device.update_done_ack(msg.message_id, msg.token, ok=False))
            return
        if self.ota_faults.reject_done:
            self.send(from_device.update_done_ack(msg.message_id, msg.token, ok=False))
            return
        missing = self._missing() if ota["fast"] else []
        if missing:
            ota["asked"] = True
            self.ota_stats["missed_sent"] += 1
            limit = 50 if self.fast_style == "0.4.9" else 40
            self.send(from_device.update_done_ack(msg.message_id, msg.token, ok=False))
            self.send(from_device.chunk_missed(self._next_mid(), missing[:limit]))
            return
        self._finish_ota()
        self.send(from_device.update_done_ack(msg.message_id, msg.token, ok=True))


class OtaFaults:
    """Misbehaviour of a :class:`VirtualDevice` during OTA (tests only).

    :ivar corrupt: chunk index -> how many times its arrival fails the CRC check.
    :ivar flash_fail: chunk index -> index to restart from (Core-style flash
        verification failure answered with ChunkMissed), once.
    :ivar disconnect_after: drop the connection when this many chunks arrived.
    :ivar silent_after: answer nothing after this many chunks.
    :ivar refuse: answer UpdateBegin with this error code (0x80, 0xA3).
    :ivar ignore_begin: number of UpdateBegin requests to ignore.
    :ivar reject_done: answer UpdateDone with 4.00 in any mode.
    """

    def __init__(
        self,
        corrupt=None,
        flash_fail=None,
        disconnect_after=None,
        silent_after=None,
        refuse=None,
        ignore_begin=0,
        reject_done=False,
    ):
        self.corrupt = dict(corrupt or {})
        self.flash_fail = dict(flash_fail or {})
        self.disconnect_after = disconnect_after
        self.silent_after = silent_after
        self.refuse = refuse
        self.ignore_begin = ignore_begin
        self.reject_done = reject_done


class VirtualDeviceFactory(ClientFactory):
    """Connects one :class:`VirtualDevice` (built by ``make_device()``)."""

    def __init__(self, make_device):
        self.make_device = make_device
        self.device = None

    def buildProtocol(self, addr):
        self.device = self.make_device()
        self.device.factory = self
        return self.device


async def connect_device(reactor, host, port, device, timeout=30.0):
    """Connect ``device`` to ``host:port`` and wait until it is online."""
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    await connectProtocol(endpoint, device)
    timer = reactor.callLater(timeout, _give_up, device)
    try:
        await device.online
    finally:
        if timer.active():
            timer.cancel()
    return device


def _give_up(device):
    if not device.online.called:
        device.handshake_error = device.handshake_error or "timed out waiting for the server Hello"
        device.disconnect()
