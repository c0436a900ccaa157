# -*- test-case-name: tests.test_sim -*-
"""A virtual Spark Core / Photon: the client half of the device protocol.

:class:`VirtualDevice` is an ordinary Twisted protocol that does what the
firmware does (PROTOCOL.md §3-§11): answers the nonce with its identity,
checks the server's session blob, sends its Hello, then serves Describe,
function calls, variable reads (every type), signal, pings, events pushed to
it, and OTA updates (classic and fast mode), and can publish, subscribe,
ask the time and ping.  Tests, benchmarks and users without hardware use it.

This module is the connection: handshake, framing, the requests the device
makes, and the dispatch of what the server sends (one table of
:class:`~twisted_spark.coap.kinds.DeviceBoundKind`).  The application's
functions, variables and Describe are in :mod:`twisted_spark.sim.application`,
the OTA receiver in :mod:`twisted_spark.sim.ota`, connecting over TCP in
:mod:`twisted_spark.sim.connect`.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from twisted_spark import platforms
from twisted_spark.coap import codec, from_device, kinds, payloads, to_device
from twisted_spark.coap.kinds import DeviceBoundKind
from twisted_spark.crypto.channel import AesCbcChannel, FrameError, FrameReader
from twisted_spark.crypto.handshake import (
    NONCE_LENGTH,
    SESSION_BLOB_LENGTH,
    encrypt_identity,
    session_seeds,
)
from twisted_spark.crypto.keys import openssl_public_key
from twisted_spark.platforms import CORE
from twisted_spark.sim.application import (
    TYPE_CODES,
    ApplicationServer,
    DescribeStyles,
    default_functions,
    default_variables,
)
from twisted_spark.sim.connect import VirtualDeviceFactory, connect_device
from twisted_spark.sim.keys import DeviceKey
from twisted_spark.sim.ota import OtaFaults, OtaReceiver

__all__ = [
    "TYPE_CODES",
    "DescribeStyles",
    "OtaFaults",
    "VirtualDevice",
    "VirtualDeviceFactory",
    "connect_device",
    "default_functions",
    "default_variables",
]

class VirtualDevice(ApplicationServer, OtaReceiver, Protocol):
    """One simulated device connection (see the module docstring).

    :param device_id: 24 hex characters.
    :param private_key: the device's RSA-1024 ``RsaKey`` (private), or a
        :class:`~twisted_spark.sim.keys.DeviceKey` shared with other devices.
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
    :param keepalive_jitter: ``None``, or a function giving extra seconds to
        add to each keep-alive wait (``random.Random(seed).random``, say).  A
        fleet in one process answers its devices' pings together, so without
        it their next pings fall due together again, in clumps that grow;
        independent devices, whose loops and networks differ, drift apart.
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
        keepalive_jitter=None,
        fast_ota=True,
        fast_style="0.4.9",
        ota_faults=None,
    ):
        self.device_id = device_id.lower()
        self._key = private_key if isinstance(private_key, DeviceKey) else None
        self.private_key = private_key.key if self._key is not None else private_key
        self.server_public_key = server_public_key
        self._server_key = None  # its OpenSSL form, made at the handshake
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
        self.keepalive_jitter = keepalive_jitter
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
            if self._key is None:
                self._key = DeviceKey(self.private_key)
            key_der = self._key.der if self.platform_id != CORE else None
            if self._server_key is None:
                # The handshake's public-key work through OpenSSL: 30 µs, not 230.
                self._server_key = openssl_public_key(self.server_public_key)
            self.transport.write(
                encrypt_identity(self._server_key, nonce, self.device_id, key_der)
            )
            self._state = "session"
        if self._state == "session" and len(self._buffer) >= SESSION_BLOB_LENGTH:
            blob = self._buffer[:SESSION_BLOB_LENGTH]
            rest, self._buffer = self._buffer[SESSION_BLOB_LENGTH:], b""
            try:
                session = self._key.open_session_blob(self._server_key, blob)
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
        self._timer = self.clock.callLater(self._keepalive_wait(0.0), self._keepalive_check)

    def _keepalive_wait(self, silence):
        """Seconds until the next keep-alive check, ``silence`` seconds having passed."""
        wait = self.keepalive - silence
        return wait if self.keepalive_jitter is None else wait + self.keepalive_jitter()

    def _keepalive_check(self):
        self._timer = None
        if self._state != "framed":
            return
        silence = self.clock.seconds() - self._last_received
        if silence >= self.keepalive:
            self.ping().addErrback(lambda f: None)
            silence = 0.0
        self._timer = self.clock.callLater(self._keepalive_wait(silence), self._keepalive_check)

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
        handler = _HANDLERS.get(kind)
        if handler is not None:
            getattr(self, handler)(msg)

    def _hello(self, msg):
        if not self.online.called:
            self.online.callback(self)

    def _ping(self, msg):
        self.send(to_device.empty_ack(msg.message_id))

    def _acknowledged(self, msg):
        d = self._waiting.pop(msg.message_id, None)
        if d is not None:
            d.callback(msg.code == 0)

    def _time_reply(self, msg):
        d = self._time.pop(msg.token[0], None) if msg.token else None
        if d is not None:
            d.callback(payloads.parse_time_reply(msg.payload))

    def _signal(self, msg):
        self.signalling = payloads.parse_signal(msg)
        self.send(from_device.signal_ack(msg.message_id, msg.token))

    def _event(self, msg):
        self.events.append(tuple(payloads.parse_event(msg)))

#: The method handling each kind of message the server sends (the kinds are
#: named by :func:`twisted_spark.coap.kinds.classify_device_bound`); by name, so
#: a subclass can override one.
_HANDLERS = {
    DeviceBoundKind.HELLO: "_hello",
    DeviceBoundKind.PING: "_ping",
    DeviceBoundKind.EMPTY_ACK: "_acknowledged",
    DeviceBoundKind.ACK_RESPONSE: "_acknowledged",
    DeviceBoundKind.TIME_REPLY: "_time_reply",
    DeviceBoundKind.DESCRIBE: "_describe",
    DeviceBoundKind.FUNCTION_CALL: "_function",
    DeviceBoundKind.VARIABLE_REQUEST: "_variable",
    DeviceBoundKind.SIGNAL: "_signal",
    DeviceBoundKind.PUBLIC_EVENT: "_event",
    DeviceBoundKind.PRIVATE_EVENT: "_event",
    DeviceBoundKind.UPDATE_BEGIN: "_update_begin",
    DeviceBoundKind.SAVE_BEGIN: "_update_begin",
    DeviceBoundKind.CHUNK: "_chunk",
    DeviceBoundKind.UPDATE_DONE: "_update_done",
}


