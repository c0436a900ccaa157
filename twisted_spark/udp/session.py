# -*- test-case-name: tests.test_udp_session -*-
"""A Gen3 device's CoAP session over DTLS: the TCP session's seams, Gen3's dialect.

:class:`Gen3Session` is a :class:`~twisted_spark.device.session.DeviceSession`
(the same request table, calls, events, subscriptions, registry and bus, so
the API, SSE, webhooks and the flasher see a Gen3 device like any other),
running on a :class:`~twisted_spark.udp.transport.ReliableTransport` (CON
retransmission, duplicates) and differing where Device OS does over DTLS
(``gen3-dtls.md``):

* there is no message counter to check, and the server sends no Hello of its
  own: the device's Hello is only acknowledged;
* describe is device-initiated (``POST d``, block-wise, system part in
  protobuf and application part in JSON, :class:`Gen3Describe`); a caller
  finding none cached asks for it (``GET d``, Block2);
* separate responses arrive confirmable and are acknowledged;
* ``POST x`` is Goodbye: the device sleeps or resets, and goes offline
  with its DTLS session kept for it to resume;
* silence: after ``udp_device_idle_timeout`` seconds without a message the
  server pings; an unanswered ping shows the device offline (its DTLS session
  stays resumable, as for a goodbye);
* a subscription carries no scope (Device OS 6): it is the owner's devices';
* OTA v3 acknowledgements (``POST A``) go to the flasher's update handler.

Nothing is handled before the device's record is loaded (its owner decides
who sees its events): until then messages wait, a few at most.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from twisted.logger import Logger

from twisted_spark.coap import to_device
from twisted_spark.coap.codec import CoapError, Code, MessageType
from twisted_spark.coap.gen3 import Gen3Hello, parse_gen3_hello
from twisted_spark.coap.kinds import MessageKind
from twisted_spark.errors import DeviceTimeout
from twisted_spark.udp.describe import Gen3Describe
from twisted_spark.udp.kept import KeptState

__all__ = ["HELLO_OTA_V3", "Gen3Session", "HelloFacts"]

log = Logger()

CON = MessageType.CON
HELLO_OTA_V3 = 0x80
_MAX_WAITING = 16
_DEFAULT_OTA_CHUNK = 512
#: Device OS 6's longest function argument (``MAX_FUNCTION_ARG_LENGTH``, protocol_defs.h).
GEN3_ARGUMENT_LIMIT = 1024
#: Subscriptions one device may hold (Device OS keeps at most a few dozen handlers).
_MAX_SUBSCRIPTIONS = 64


class HelloFacts(NamedTuple):
    """What :class:`DeviceSession` reads of a Hello (from a Gen3 Hello or the stored record)."""

    platform_id: int | None
    product_id: int | None
    firmware_version: int | None


def hello_facts(hello: Gen3Hello | None, record) -> HelloFacts:
    """Platform, product and firmware version: from the Hello, else from the stored record.

    :param hello: the session's Gen3 Hello, or None (resumed without one).
    :param record: the device's :class:`~twisted_spark.models.DeviceRecord`, or None.
    """
    if hello is not None:
        return HelloFacts(hello.platform_id, hello.product_id, hello.product_version)
    if record is None:
        return HelloFacts(None, None, None)
    return HelloFacts(record.platform_id, record.product_id, record.firmware_version)


class Gen3Session(Gen3Describe):
    """One Gen3 device online (see the module docstring).

    :param transport: its :class:`~twisted_spark.udp.transport.ReliableTransport`.
    :param hello: the device's :class:`~twisted_spark.coap.gen3.Gen3Hello`, or None
        for a resumed session that started without one.
    :param kept: what an earlier session of this DTLS session kept
        (:class:`~twisted_spark.udp.kept.KeptState`), or None.
    The other parameters are :class:`DeviceSession`'s.
    """

    log = Logger()

    __slots__ = (
        "hello",
        "_ready",
        "_waiting",
        "_idle_timer",
        "_kept",
    )

    def __init__(self, transport, device_id, hello, *, clock, sink, bus, settings, server_mid,
                 kept=None):
        super().__init__(
            transport, device_id, None, HelloFacts(None, None, None), clock=clock, sink=sink,
            bus=bus, settings=settings, recv_mid=None, server_mid=server_mid,
        )
        self.hello = hello
        self._init_describe()
        self._ready = False
        self._waiting: list[Any] | None = []
        self._idle_timer: Any = None
        self._kept = kept

    # -- attributes ----------------------------------------------------------------

    @property
    def buffer_size(self):
        """Largest CoAP message the device accepts (what its Hello said)."""
        return self.transport.channel.max_message_size

    @property
    def cached_describe(self) -> dict[str, Any] | None:
        """The describe known now (None until the device sent its application part)."""
        return self._describe

    @property
    def ota_v3(self) -> bool:  # type: ignore[override]
        """The device takes OTA v3 (Hello flag 0x80)."""
        return self.hello is not None and bool(self.hello.flags & HELLO_OTA_V3)

    @property
    def ota_chunk_size(self) -> int:  # type: ignore[override]
        size = self.hello.ota_chunk_size if self.hello is not None else None
        return size or _DEFAULT_OTA_CHUNK

    def argument_limit(self, name):
        """Device OS 6 takes 1024-byte arguments (``--max-function-argument`` may say
        otherwise), in one message no longer than the largest its Hello announced."""
        limit = self._settings.max_function_argument or GEN3_ARGUMENT_LIMIT
        # the Uri-Query option's header grows by 2 bytes for a long argument
        room = self.buffer_size - len(to_device.function_call(0, 0, name)) - 2
        return max(0, min(limit, room))

    @property
    def max_binary_size(self) -> int | None:  # type: ignore[override]
        return self.hello.max_binary_size if self.hello is not None else None

    def send_message(self, build) -> None:
        """Send ``build(mid)``, which nothing waits for, non-confirmable.

        Device OS acknowledges no fast-OTA chunk (``chunked_transfer.cpp``:
        only a regular chunk gets an ACK): sent confirmable, every chunk was
        resent until 64 filled the retransmission table, and the flow-control
        ping after them went untracked, so its answer was dropped and a
        transfer of more than 64 chunks failed ("did not answer the ping"),
        as it did with Device OS's Linux virtual device.  OTA v3 chunks are
        non-confirmable already.
        """
        message = bytearray(build(self.next_mid()))
        if message and (message[0] >> 4) & 3 == MessageType.CON:
            message[0] = (message[0] & 0xCF) | (MessageType.NON << 4)
        self.transport.send_coap(bytes(message))

    # -- starting ------------------------------------------------------------------

    def start(self, record) -> None:
        """The device's stored record is loaded: take its owner (and facts), go online."""
        if self._closed:
            return
        facts = hello_facts(self.hello, record)
        if facts.platform_id is not None:
            self.platform_id = facts.platform_id
        self.product_id = facts.product_id
        self.firmware_version = facts.firmware_version
        self.owner = record.owner if record is not None else None
        kept = self._kept
        self._kept = None
        if kept is not None:
            self.subscriptions = list(kept.subscriptions)
            if kept.describe is not None:
                self._describe = kept.describe
        elif record is not None and (record.functions or record.variables) and self.hello is None:
            # resumed after a restart, nothing changed on the device: the stored describe holds
            self._describe = {"functions": tuple(record.functions),
                              "variables": dict(record.variables)}
        self._ready = True
        self.remember_state()  # the Hello at least: a resumed session will not repeat it
        self._sink.register(self)
        for entry in self.subscriptions:
            self._sink.subscription_added(self, entry)
        waiting, self._waiting = self._waiting or [], None
        for message in waiting:
            if self._closed:
                return
            self.message_received(message)
        self._arm_idle()

    def remember_state(self) -> None:
        """Keep describe and subscriptions with the DTLS session (a device will not repeat them)."""
        if self._closed or not self._ready:
            return
        state = KeptState(tuple(self.subscriptions), self._describe, self.hello).to_json()
        if state != self.transport.channel.application:
            self.transport.channel.remember(state)

    def _application_described(self, functions, variables) -> None:
        super()._application_described(functions, variables)
        self.remember_state()

    # -- incoming ------------------------------------------------------------------

    def message_received(self, msg):
        """Route one CoAP message (after the transport removed duplicates)."""
        if not self._ready:
            if self._waiting is not None and len(self._waiting) < _MAX_WAITING:
                self._waiting.append(msg)
            return
        if msg.type == CON or msg.type == MessageType.NON:
            code, path = msg.code, msg.path_char
            if code == Code.POST and path in _GEN3_REQUESTS:
                self.last_heard = self._clock.seconds()
                self._sink.heard(self)
                getattr(self, _GEN3_REQUESTS[path])(msg)
                return
        super().message_received(msg)

    def _hello_again(self, msg):
        """A Hello in a running session (a resumed device whose state changed): take it."""
        try:
            hello = parse_gen3_hello(msg.payload)
        except CoapError as error:
            log.info("Gen3 device {device_id}: ignoring a bad Hello: {why}",
                     device_id=self.device_id, why=str(error))
            hello = None
        if hello is not None and hello.device_id == self.device_id:
            self.hello = hello
            self.platform_id = hello.platform_id
            self.product_id = hello.product_id
            self.firmware_version = hello.product_version
            self.transport.channel.hello_known(hello)
            self.remember_state()
        if msg.type == CON:
            self.transport.send_coap(to_device.empty_ack(msg.message_id))

    def _separate_response(self, kind, msg):
        """Over UDP a separate response may be confirmable: acknowledge it, then match it."""
        if msg.type == CON:
            self.transport.send_coap(to_device.empty_ack(msg.message_id))
        self._response(msg)

    def _subscribe(self, kind, msg):
        """``GET e/<filter>`` [``?b`` or ``?c``: the data formats the handler takes].

        Device OS 6 has no scope any more (``MY_DEVICES`` and ``FIREHOSE`` are
        deprecated, ``events.h``): a Gen3 subscription receives the events of
        its owner's devices, so it is recorded as a MY_DEVICES one.
        """
        prefix = "/".join(msg.uri_path[1:])
        entry = (prefix, True, None)
        if entry not in self.subscriptions:
            if len(self.subscriptions) >= _MAX_SUBSCRIPTIONS:
                self.transport.send_coap(to_device.subscribe_fail(msg.message_id))
                return
            self.subscriptions.append(entry)
            self._sink.subscription_added(self, entry)
            self.remember_state()
        if msg.type == CON:
            self.transport.send_coap(to_device.empty_ack(msg.message_id))

    def _goodbye(self, msg):
        """``POST x``: the device is going to sleep, resetting or disconnecting."""
        if msg.type == CON:
            self.transport.send_coap(to_device.empty_ack(msg.message_id))
        self.transport.detach(f"it said goodbye ({_goodbye_reason(msg.payload)})")

    def _update_ack(self, msg):
        """``POST A`` (OTA v3 chunk acknowledgement): to the flasher, if one listens."""
        if msg.type == CON:
            self.transport.send_coap(to_device.empty_ack(msg.message_id))
        if self._update_handler is not None:
            self._update_handler(MessageKind.UPDATE_ACK, msg)

    # -- silence ---------------------------------------------------------------------

    def _arm_idle(self):
        timeout = self._settings.udp_device_idle_timeout
        if timeout and not self._closed:
            self._idle_timer = self._clock.callLater(timeout, self._idle_check)

    def _idle_check(self):
        self._idle_timer = None
        if self._closed:
            return
        timeout = self._settings.udp_device_idle_timeout
        silence = self._clock.seconds() - self.last_heard
        if silence < timeout:
            self._idle_timer = self._clock.callLater(timeout - silence, self._idle_check)
            return
        self.ping().addCallbacks(self._still_there, self._silent, errbackArgs=(silence,))

    def _still_there(self, _):
        if not self._closed:
            self.last_heard = self._clock.seconds()
            self._arm_idle()

    def _silent(self, failure, silence):
        if not self._closed:
            why = "no answer" if failure.check(DeviceTimeout) else failure.getErrorMessage()
            self.transport.detach(f"silent for {silence:.0f} s, then a ping failed ({why})")

    # -- end -------------------------------------------------------------------------

    def connection_lost(self, reason):
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        self._idle_timer = None
        self._waiting = None
        self._fail_describe_waiters(reason)
        if not self._ready:
            self._closed = True
            return
        super().connection_lost(reason)


def _goodbye_reason(payload: bytes) -> str:
    """A few words from the goodbye payload (varint flags, then the values they announce)."""
    values: list[int] = []
    position = 0
    data = bytes(payload)
    while position < len(data) and len(values) < 5:
        value = shift = 0
        while position < len(data):
            byte = data[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    if not values:
        return "no reason given"
    flags, rest = values[0], iter(values[1:])
    words = []
    for bit, name in ((1, "cloud reason"), (2, "reset reason"), (4, "sleeping"),
                      (8, "network reason")):
        if flags & bit:
            given = next(rest, None)
            words.append(f"{name} {given} s" if bit == 4 else f"{name} {given}")
    return ", ".join(words) or "no reason given"


#: Gen3 requests the TCP dispatch table does not know: ``POST <letter>`` -> method name.
_GEN3_REQUESTS = {
    "h": "_hello_again",
    "d": "_device_describe",
    "x": "_goodbye",
    "A": "_update_ack",
}
