# -*- test-case-name: tests.test_device_protocol,tests.test_device_limits -*-
"""The device TCP protocol: raw RSA handshake, then AES-framed CoAP.

PROTOCOL.md §3-§5, §10.  One :class:`DeviceProtocol` per connection:

1. ``connectionMade``: send the 40-byte nonce, arm the handshake timer.
2. Buffer exactly 256 bytes (TCP splits them), decrypt them in the RSA
   pool, look the device key up in the store, build the 384-byte session
   blob in the pool, send it and switch to framed mode.  A device sends
   nothing more until it has that blob (its Hello is encrypted with the key
   inside), so any further byte before it closes the connection: nothing is
   buffered while the RSA work waits.  New handshakes are refused while the
   RSA pool holds ``max_pending_handshakes`` jobs.
3. The first frame must be the device Hello: the server Hello goes out at
   once, a :class:`~twisted_spark.device.session.DeviceSession` is created
   and registered.
4. Afterwards every frame is decrypted and handed to the session, and
   postpones the keep-alive check (an entry on the factory's timer wheel, not
   a reactor timer): after ``device_ping_interval`` seconds of silence the
   server pings, after ``device_idle_timeout`` it closes.

Any bad input (oversized frame, bad padding, unparsable CoAP, bad counter)
closes this connection with one log line; other connections are unaffected.
"""

from __future__ import annotations

from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IProtocol
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from twisted_spark.coap import codec, kinds, payloads, to_device
from twisted_spark.crypto.channel import AesCbcChannel, FrameError, FrameReader
from twisted_spark.crypto.device_keys import ECC
from twisted_spark.crypto.handshake import (
    IDENTITY_LENGTH,
    HandshakeError,
    build_session_blob,
    decrypt_identity,
    make_nonce,
)
from twisted_spark.device.eager_write import write_now
from twisted_spark.interfaces import ISessionTransport
from twisted_spark.store import adopt_device_key

NONCE, WORKING, HELLO, READY, CLOSED = range(5)
STATE_NAMES = (
    "waiting for the identity blob",
    "handshaking",
    "waiting for the Hello",
    "ready",
    "closed",
)


class Refused(Exception):
    """The handshake is refused for a reason worth one log line."""


@implementer(IProtocol, ISessionTransport)
class DeviceProtocol:
    """Bytes → handshake → frames for one device connection; the transport of its session.

    Not derived from ``Protocol`` so that ``__slots__`` really removes the
    per-instance ``__dict__`` (thousands of idle devices per process).
    """

    log = Logger()

    __slots__ = (
        "factory",
        "transport",
        "connected",
        "state",
        "device_id",
        "remote_ip",
        "session",
        "_nonce",
        "_buffer",
        "_channel",
        "_reader",
        "_timer",
        "_pinged_at",
        "_record",
    )

    def __init__(self, factory, address=None):
        self.factory = factory
        self.transport = None
        self.connected = 0
        self.state = NONCE
        self.device_id = None
        self.remote_ip = getattr(address, "host", None) or "?"
        self.session = None
        self._nonce = None
        self._buffer = bytearray()
        self._channel = None
        self._reader = None
        self._timer = None
        self._pinged_at = 0.0
        self._record = None

    # -- Twisted hooks -------------------------------------------------------------

    def makeConnection(self, transport):
        self.connected = 1
        self.transport = transport
        self.connectionMade()

    def logPrefix(self):
        return "DeviceProtocol"

    def connectionMade(self):
        if self.remote_ip == "?":
            peer = self.transport.getPeer()
            self.remote_ip = getattr(peer, "host", "?")
        self._nonce = make_nonce(self.factory.random_bytes)
        self.transport.write(self._nonce)
        self._timer = self.factory.clock.callLater(
            self.factory.settings.handshake_timeout, self._handshake_timed_out
        )

    def dataReceived(self, data):
        state = self.state
        if state >= HELLO:
            if state == CLOSED:
                return
            self._frames_received(data)
            return
        # Before our 384-byte answer a device sends its identity blob and waits:
        # its first frame is encrypted with the session key inside that answer.
        # So nothing beyond the blob is buffered, whatever the RSA queue's delay.
        received = IDENTITY_LENGTH if state == WORKING else len(self._buffer)
        received += len(data)
        if received > IDENTITY_LENGTH:
            self.close(
                f"sent {received} bytes before the server answered (a device sends its "
                f"{IDENTITY_LENGTH}-byte identity, then waits)",
                error=True,
            )
            return
        self._buffer += data
        if received == IDENTITY_LENGTH:
            factory = self.factory
            busy = factory.refusal_if_busy()
            if busy is not None:
                self.close(f"server busy: {busy}", error=True)
                return
            blob, self._buffer = bytes(self._buffer), None
            self.state = WORKING
            d = factory.rsa_pool.run(decrypt_identity, factory.server_key, blob, self._nonce)
            d.addCallback(lambda identity: ensureDeferred(self._identified(identity)))
            d.addErrback(self._handshake_failed)

    def connectionLost(self, reason=None):
        self.connected = 0
        previous, self.state = self.state, CLOSED
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._buffer = None
        if self.session is not None:
            why = reason.getErrorMessage() if reason else "closed"
            if previous != CLOSED:  # close() already logged the server's own reason
                self.log.info("Device {device_id} at {ip} disconnected: {why}",
                              device_id=self.device_id, ip=self.remote_ip, why=why)
            self.session.connection_lost(why)
        elif previous != CLOSED:
            self._log_unidentified(
                LogLevel.debug,
                "Connection from {ip} closed during the handshake",
                ip=self.remote_ip,
            )
        self.factory.connection_closed(self)

    # -- handshake ------------------------------------------------------------------

    async def _lookup(self, identity):
        """Find the device key; refuse unknown devices and mismatched keys."""
        factory = self.factory
        device_id = identity.device_id
        record = await factory.store.get_device(device_id)
        stored = record.public_key if record is not None else None
        presented = identity.public_key_der
        keys_add = f"python -m twisted_spark keys add {device_id} <file>"
        if stored is None:
            if presented is not None and factory.settings.accept_unknown_devices:
                self.log.info(
                    "Accepting unknown device {device_id} from {ip} and storing the key it "
                    "presented (--accept-unknown-devices)", device_id=device_id, ip=self.remote_ip,
                )
                record = await adopt_device_key(factory.store, device_id, presented)
                if (stored := record.public_key) != presented:
                    raise Refused("another connection registered a different key for it first")
            else:
                hint = "" if presented is not None else " (it sent no key: a Core)"
                raise Refused(f"unknown device{hint}; register its key with: {keys_add}")
        elif presented is not None and presented != stored:
            raise Refused("the key it presented differs from the registered one; if the device "
                          f"was re-keyed, update it with: {keys_add}")
        algorithm, key = factory.device_key(stored)
        if algorithm == ECC:
            raise Refused("its registered key is an EC P-256 key (a Gen3 device, which "
                          "connects over UDP/DTLS), not the RSA key this TCP port needs")
        if algorithm is None:
            raise Refused(f"its registered key cannot be read; register it again with: {keys_add}")
        return record, key

    async def _identified(self, identity):
        if self.state == CLOSED:
            return
        self.device_id = identity.device_id
        record, device_key = await self._lookup(identity)
        if self.state == CLOSED:
            return
        self._record = record
        session = self.factory.random_bytes(40)
        _, blob = await self.factory.rsa_pool.run(
            build_session_blob, self.factory.server_key, device_key, session
        )
        if self.state == CLOSED:
            return
        self._channel = AesCbcChannel.from_session(session)
        self._reader = FrameReader(self.factory.settings.max_frame_size)
        self.transport.write(blob)
        self.state = HELLO

    def _handshake_failed(self, failure):
        if self.state == CLOSED:
            return
        if failure.check(Refused, HandshakeError):
            reason = str(failure.value)
        else:
            reason = f"internal error: {failure.getErrorMessage()}"
            self._log_unidentified(
                LogLevel.critical,
                "Handshake with {ip} failed",
                log_failure=failure,
                ip=self.remote_ip,
            )
        self.close(f"handshake refused: {reason}", error=True)

    def _handshake_timed_out(self):
        self._timer = None
        self.close(
            f"handshake not completed within {self.factory.settings.handshake_timeout:g} s "
            f"({STATE_NAMES[self.state]})",
            error=True,
        )

    # -- frames ---------------------------------------------------------------------

    def _frames_received(self, data):
        try:
            bodies = self._reader.feed(data)
        except FrameError as e:
            self.close(f"bad frame: {e.reason}", error=True)
            return
        for body in bodies:
            if self.state == CLOSED:
                return
            try:
                plaintext = self._channel.decrypt(body)
            except FrameError as e:
                self.close(f"bad frame: {e.reason}", error=True)
                return
            try:
                msg = codec.decode(plaintext)
            except codec.CoapError as e:
                self.close(f"unparsable CoAP message ({e}): {plaintext[:32].hex()}", error=True)
                return
            if self.state == READY:
                try:
                    self.session.message_received(msg)
                except Exception:
                    self.log.failure(
                        "Handling a message from device {device_id} failed",
                        device_id=self.device_id,
                    )
                    self.close("internal error while handling a message", error=True)
            else:
                self._hello_received(msg)
        if self.state == READY:
            self._postpone_idle_check()

    def _hello_received(self, msg):
        if kinds.classify(msg) is not kinds.MessageKind.HELLO:
            self.close(f"first frame is not a Hello: {msg!r}", error=True)
            return
        try:
            hello = payloads.parse_hello(msg.payload)
        except codec.CoapError as e:
            self.close(f"bad Hello: {e}", error=True)
            return
        factory = self.factory
        start = int.from_bytes(factory.random_bytes(2), "big")
        record = self._record
        session = factory.new_session(
            self, self.device_id, record.owner if record is not None else None, hello,
            recv_mid=msg.message_id, server_mid=start,
        )
        self.session = session
        self.state = READY
        self.factory.handshake_completed(self._timer)  # the handshake deadline's timer
        self._record = None
        self.send_coap(to_device.hello(session.next_mid()))
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = factory.keepalive.call_later(factory.settings.device_ping_interval,
                                                   self._idle_check)
        factory.session_online(session, record)
        self.log.info(
            "Device {device_id} online from {ip} (platform {platform}, product {product}, "
            "firmware {firmware})",
            device_id=self.device_id, ip=self.remote_ip, platform=session.platform_id,
            product=session.product_id, firmware=session.firmware_version,
        )
        if factory.describe_on_connect and self.state == READY:
            d = session.describe()
            d.addErrback(lambda f: self.log.info(
                "Describe of {device_id} failed: {why}",
                device_id=self.device_id, why=f.getErrorMessage()))

    def send_coap(self, coap):
        """Encrypt and write one CoAP message (in call order: the IV chain needs it)."""
        if self.state != CLOSED and self._channel is not None:
            self.transport.write(self._channel.encrypt_frame(coap))

    def send_answer(self, coap):
        """:meth:`send_coap`, but sent at once if nothing is queued (:func:`write_now`)."""
        if self.state != CLOSED and self._channel is not None:
            write_now(self.transport, self._channel.encrypt_frame(coap))

    def _log_unidentified(self, level, format, **kwargs):
        """Log about a connection without a session within its address's budget (anyone can
        open thousands: the factory's :class:`LogLimiter` summarises the excess)."""
        self.factory.log_limiter.emit(self.remote_ip, self.log, level, format, **kwargs)

    # -- keep-alive -------------------------------------------------------------------

    def _postpone_idle_check(self):
        """The device spoke: its keep-alive check moves a ping interval from now
        (a :class:`~twisted_spark.device.wheel.TimerWheel` entry, re-armed in place)."""
        timer = self._timer
        if timer is None or not timer.active():
            return
        interval = self.factory.settings.device_ping_interval
        if self.factory.clock.seconds() + interval > timer.getTime():
            timer.reset(interval)

    def _idle_check(self):
        timer = self._timer  # the wheel entry that just fired: re-armed below
        if self.state != READY:
            return
        settings = self.factory.settings
        clock = self.factory.clock
        now = clock.seconds()
        last = self.session.last_heard
        silence = now - last
        if silence >= settings.device_idle_timeout:
            self.close(f"no data for {silence:.0f} s", error=True)
            return
        ping_interval = settings.device_ping_interval
        if silence >= ping_interval:
            if self._pinged_at <= last:
                self._pinged_at = now
                self.send_coap(to_device.ping(self.session.next_mid()))
            next_at = last + settings.device_idle_timeout
        else:
            next_at = last + ping_interval
        timer.reset(max(0.0, next_at - now))

    # -- closing ------------------------------------------------------------------------

    def close(self, reason, error=False):
        """Close the connection with one log line naming device, address and reason."""
        if self.state == CLOSED:
            return
        message = dict(
            device_id=self.device_id or "(unidentified)",
            ip=self.remote_ip,
            reason=reason,
        )
        level = LogLevel.warn if error else LogLevel.info
        line = "Closing connection of device {device_id} from {ip}: {reason}"
        if self.session is None:
            self._log_unidentified(level, line, **message)
        else:
            self.log.emit(level, line, **message)
        if self.session is not None:
            self.session.connection_lost(reason)
        elif error:
            self.factory.handshake_failed(reason)
        self.state = CLOSED
        if self.transport is not None:
            if error:
                self.transport.abortConnection()
            else:
                self.transport.loseConnection()
