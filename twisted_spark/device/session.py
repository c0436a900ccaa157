# -*- test-case-name: tests.test_device_session -*-
"""One handshaken device connection: the CoAP session of PROTOCOL.md §5-§11.

:class:`DeviceSession` is created once the device Hello has arrived and owns
the per-connection CoAP state: the server's message-id counter, the check of
the device's (§5.5), the request table, the cached Describe, subscriptions,
and the dispatch of everything the device originates.  It is one object per
device (``__slots__``) assembled from mixins with one job each:

* :class:`~twisted_spark.device.requests.RequestTable`: ids, tokens, pending
  requests and their answers;
* :class:`~twisted_spark.device.describe.DescribeAssembly`: the Describe, on
  the request table;
* :class:`~twisted_spark.device.calls.RemoteCalls`: the API's calls, checked,
  on the Describe;
* :class:`~twisted_spark.device.ingress.EventIngress` (a mixin): events,
  subscriptions, time.

Its collaborators are passed in: the transport (an
:class:`~twisted_spark.interfaces.ISessionTransport`: send one CoAP message,
close), the clock, the registry as an
:class:`~twisted_spark.interfaces.ISessionSink`, the bus and the settings.
The same session can run on another transport (CoAP over DTLS); pass
``recv_mid=None`` where the transport checks message ids itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from twisted_spark.coap import to_device
from twisted_spark.coap.encoding import CON
from twisted_spark.coap.kinds import MessageKind, classify
from twisted_spark.device.calls import RemoteCalls
from twisted_spark.device.ingress import EventIngress
from twisted_spark.errors import DeviceNotConnected
from twisted_spark.events.rate_limit import TokenBucket
from twisted_spark.interfaces import IDeviceChannel, ILocalSession
from twisted_spark.models import Event
from twisted_spark.platforms import CORE, is_core_class, limits_for

#: Messages matched to a request by token or message id, before any counter check.
_ANSWERS = frozenset((MessageKind.EMPTY_ACK, MessageKind.ACK_RESPONSE, MessageKind.RST))


@implementer(ILocalSession, IDeviceChannel)
class DeviceSession(EventIngress, RemoteCalls):
    """The live state of one device connection (see the module docstring).

    :param transport: the :class:`~twisted_spark.interfaces.ISessionTransport`.
    :param device_id: 24 lowercase hex characters.
    :param owner: the device's owner when it connected.
    :param hello: the parsed device Hello (:class:`twisted_spark.coap.payloads.Hello`).
    :param clock: ``IReactorTime`` for timeouts and timestamps.
    :param sink: the registry, as an :class:`~twisted_spark.interfaces.ISessionSink`.
    :param bus: the :class:`~twisted_spark.interfaces.IEventBus` device events go to.
    :param settings: :class:`~twisted_spark.config.Settings` (timeouts, limits).
    :param recv_mid: the device Hello's message id, where the device counter
        check starts; ``None`` = no check (a transport that does its own).
    :param server_mid: the server's counter (its Hello used ``server_mid``).
    """

    log = Logger()

    #: OTA v3 is Gen3's (:class:`~twisted_spark.udp.session.Gen3Session`); over TCP the
    #: chunk size and image limit are announced by events (the updater listens).
    ota_v3 = False
    ota_chunk_size = None
    max_binary_size = None

    __slots__ = (
        "owner",
        "product_id",
        "firmware_version",
        "last_heard",
        "last_saved",
        "subscriptions",
        "_bus",
        "_update_handler",
        "_recv_mid",
        "_bucket",
    )

    def __init__(
        self, transport, device_id, owner, hello, *, clock, sink, bus, settings, recv_mid,
        server_mid,
    ):
        self.transport = transport
        self.device_id = device_id
        self.owner = owner
        # A Core's 6-byte Hello carries no platform id; every Photon/P1 sends one.
        self.platform_id = CORE if hello.platform_id is None else hello.platform_id
        self.product_id = hello.product_id
        self.firmware_version = hello.firmware_version
        self._clock = clock
        self._sink = sink
        self._bus = bus
        self._settings = settings
        self.last_heard = clock.seconds()
        self.last_saved = self.last_heard
        self.subscriptions = []
        #: Set by an OTA transfer: other API calls fail with DeviceBusy.
        self.busy = False
        self._update_handler = None
        self._recv_mid = recv_mid
        self._mid = server_mid
        self._token = 0
        self._reserved = None
        self._pending = {}
        self._by_mid = {}
        self._describe = None
        self._closed = False
        rate = settings.device_publish_rate
        self._bucket = TokenBucket(rate, clock) if rate else None

    # -- attributes ------------------------------------------------------------

    @property
    def connected(self):
        return not self._closed

    @property
    def remote_ip(self):
        """The device's address, as its transport knows it."""
        return self.transport.remote_ip

    @property
    def is_core(self):
        return is_core_class(self.platform_id)

    @property
    def buffer_size(self):
        """Largest frame (ciphertext bytes) the device accepts (§4.5)."""
        return limits_for(self.platform_id).buffer_size

    # -- ILocalSession -----------------------------------------------------------

    def send_event(self, event: Event) -> bool:
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
        self.transport.send_coap(coap)
        return True

    def disconnect(self, reason: str) -> None:
        """Close the connection; pending requests fail with DeviceNotConnected."""
        self.transport.close(reason)

    # -- IDeviceChannel (the flasher; send_request is a RemoteCalls method) ------------

    def send_message(self, build: Callable[[int], bytes]) -> None:
        """Send ``build(mid)`` with the next message id; no answer is awaited."""
        self.transport.send_coap(build(self.next_mid()))

    def set_update_handler(self, handler: Callable[[Any, Any], None] | None) -> None:
        """Hand ChunkMissed and device UpdateDone to ``handler(kind, msg)`` (or stop)."""
        self._update_handler = handler

    # -- incoming ------------------------------------------------------------------

    def message_received(self, msg):
        """Route one decoded CoAP message from the device (the table below)."""
        self.last_heard = self._clock.seconds()
        self._sink.heard(self)
        kind = classify(msg)
        if kind in _ANSWERS:
            self._response(msg)
            return
        if self._recv_mid is not None:
            expected = (self._recv_mid + 1) & 0xFFFF
            if msg.message_id != expected:
                self.transport.close(
                    f"bad message counter: expected {expected:#06x}, got {msg.message_id:#06x}",
                    error=True,
                )
                return
            self._recv_mid = msg.message_id
        getattr(self, _HANDLERS[kind])(kind, msg)

    def _answer_ping(self, kind, msg):
        self.transport.send_answer(to_device.empty_ack(msg.message_id))

    def _separate_response(self, kind, msg):
        self._response(msg)

    def _update_message(self, kind, msg):
        """ChunkMissed or the device's UpdateDone: acknowledged, then to the flasher."""
        if msg.type == CON:
            self.transport.send_coap(to_device.empty_ack(msg.message_id))
        if self._update_handler is not None:
            self._update_handler(kind, msg)

    def _unexpected(self, kind, msg):
        """Anything else (a second Hello, an unknown request): acknowledged if
        confirmable, so the device does not wait, and otherwise ignored."""
        if msg.type == CON:
            self.transport.send_coap(to_device.empty_ack(msg.message_id))

    # -- end -------------------------------------------------------------------------

    def connection_lost(self, reason):
        """The transport is gone: fail everything pending, leave the registry."""
        if self._closed:
            return
        self._closed = True
        self._fail_all(DeviceNotConnected(f"{self.device_id} disconnected ({reason})"))
        self.subscriptions = []
        self._sink.unregister(self)


#: The method handling each kind of message a device originates (the kinds are
#: named by :func:`twisted_spark.coap.kinds.classify`); by name, so a subclass
#: can override one.
_HANDLERS = {
    MessageKind.PING: "_answer_ping",
    MessageKind.SEPARATE_RESPONSE: "_separate_response",
    MessageKind.PUBLIC_EVENT: "_device_event",
    MessageKind.PRIVATE_EVENT: "_device_event",
    MessageKind.SUBSCRIBE: "_subscribe",
    MessageKind.GET_TIME: "_time",
    MessageKind.CHUNK_MISSED: "_update_message",
    MessageKind.UPDATE_DONE: "_update_message",
    MessageKind.HELLO: "_unexpected",
    MessageKind.UNKNOWN: "_unexpected",
}
