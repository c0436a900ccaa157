# -*- test-case-name: tests.test_udp_session -*-
"""CoAP over a DTLS channel as a device session's transport: retransmission and duplicates.

:class:`ReliableTransport` is the :class:`~twisted_spark.interfaces.ISessionTransport`
a :class:`~twisted_spark.udp.session.Gen3Session` runs on.  Over TCP the stream
delivers every message once and in order; over UDP this layer has to, using
the sans-IO :class:`~twisted_spark.coap.reliability.MessageLayer`:

* each confirmable message the session sends (numbered by the session's own
  request table) is resent with exponential back-off until the device
  acknowledges it, and reported when it never is;
* the device's retransmitted requests are recognised by message id and
  answered again with the answer recorded the first time (or dropped while
  none exists yet), so a lost ACK never runs a function twice;
* acknowledgements and resets are handed to the session only for messages
  still awaited.

One timer on the injected clock serves all retransmissions of a device.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from twisted_spark.coap.codec import CoapMessage, Code, MessageType
from twisted_spark.coap.reliability import MessageLayer
from twisted_spark.dtls import StateError
from twisted_spark.interfaces import ISessionTransport
from twisted_spark.udp.interfaces import IDatagramSession

__all__ = ["ReliableTransport"]

log = Logger()

_CON, _ACK, _RST = MessageType.CON, MessageType.ACK, MessageType.RST


@implementer(ISessionTransport, IDatagramSession)
class ReliableTransport:
    """One device's CoAP message layer on its DTLS channel (an ``IDatagramChannel``).

    :param channel: the device's DTLS channel.
    :param clock: ``IReactorTime`` for retransmissions.
    :param layer: the :class:`MessageLayer` (its transmission parameters).
    """

    def __init__(self, channel, clock, layer: MessageLayer | None = None, on_lost=None) -> None:
        self.channel = channel
        self.clock = clock
        self.layer = layer or MessageLayer(max_outstanding=64)
        self.session: Any = None  # set by the session, which receives what arrives
        self.on_lost = on_lost  # called with this transport once its session ended
        self.closed = False
        self.unacknowledged = 0  # our CONs the device never acknowledged
        self._timer: Any = None

    @property
    def remote_ip(self) -> str:
        address = self.channel.address
        return address[0] if isinstance(address, tuple) else str(address)

    # -- ISessionTransport -----------------------------------------------------------

    def send_coap(self, message: bytes) -> None:
        """Send one CoAP message; a CON is resent until acknowledged, an ACK remembered."""
        if self.closed or len(message) < 4:
            return
        kind = (message[0] >> 4) & 3
        mid = int.from_bytes(message[2:4], "big")
        if kind == _CON:
            try:
                self.layer.track(mid, message, self.clock.seconds())
            except OverflowError as error:
                log.warn("Gen3 device {device_id}: not resending message {mid}: {why}",
                         device_id=self.channel.device_id, mid=mid, why=str(error))
            self._arm()
        elif kind in (_ACK, _RST):
            self.layer.answered(mid, message)
        self._write(message)


    def send_answer(self, message: bytes) -> None:
        """A datagram leaves at once anyway: the same as :meth:`send_coap`."""
        self.send_coap(message)

    def close(self, reason: str, error: bool = False) -> None:
        """End the DTLS session (the device will handshake again) and the CoAP session."""
        if self.closed:
            return
        log.emit(
            _level(error), "Gen3 device {device_id} at {ip} disconnected: {reason}",
            device_id=self.channel.device_id, ip=self.remote_ip, reason=reason,
        )
        self._stop()
        self.channel.close(reason)
        self._lost(reason)

    # -- beyond ISessionTransport ------------------------------------------------------

    def detach(self, reason: str) -> None:
        """End the CoAP session only: the DTLS session stays, for the device to resume."""
        if self.closed:
            return
        log.info("Gen3 device {device_id} at {ip} offline: {reason}",
                 device_id=self.channel.device_id, ip=self.remote_ip, reason=reason)
        self._stop()
        self.channel.detach(reason)
        self._lost(reason)

    def address_changed(self, address) -> None:
        """The device moved (NAT rebinding, or it woke up elsewhere): logged; replies follow it."""
        log.info("Gen3 device {device_id} now talks from {host}:{port}",
                 device_id=self.channel.device_id, host=address[0], port=address[1])

    def connection_lost(self, reason: str) -> None:
        """The DTLS session ended under us (the port says so)."""
        if self.closed:
            return
        self._stop()
        self._lost(reason)

    def shutdown(self, reason: str) -> None:
        """End the CoAP session, leaving the DTLS session to the port (server stopping)."""
        if self.closed:
            return
        self._stop()
        self._lost(reason)

    def message_received(self, data: bytes) -> None:
        """A CoAP message from the device: sort out duplicates and answers, pass on the rest."""
        if self.closed:
            return
        step = self.layer.received(data, self.clock.seconds())
        for answer in step.send:
            self._write(answer)
        session = self.session
        for _mid, ack in step.acked:
            session.message_received(ack)
        for mid in step.reset:
            session.message_received(CoapMessage(_RST, Code.EMPTY, mid))
        for message in step.deliver:
            if self.closed:
                return
            session.message_received(message)
        self._arm()

    # -- internals ----------------------------------------------------------------------

    def _write(self, message: bytes) -> None:
        try:
            self.channel.send(message)
        except (ValueError, StateError) as error:
            log.warn("Gen3 device {device_id}: a message was not sent: {why}",
                     device_id=self.channel.device_id, why=str(error))

    def _arm(self) -> None:
        deadline = self.layer.next_timer()
        if self._timer is not None and self._timer.active():
            if deadline is not None and abs(self._timer.getTime() - deadline) < 1e-3:
                return
            self._timer.cancel()
        self._timer = None
        if deadline is not None and not self.closed:
            delay = max(0.0, deadline - self.clock.seconds())
            self._timer = self.clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        step = self.layer.timer_expired(self.clock.seconds())
        for data in step.send:
            self._write(data)
        if step.failed:
            self.unacknowledged += len(step.failed)
            log.info("Gen3 device {device_id} did not acknowledge message(s) {mids}",
                     device_id=self.channel.device_id, mids=step.failed)
        self._arm()

    def _stop(self) -> None:
        self.closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _lost(self, reason: str) -> None:
        if self.session is not None:
            self.session.connection_lost(reason)
        if self.on_lost is not None:
            self.on_lost(self)


def _level(error: bool) -> LogLevel:
    return LogLevel.warn if error else LogLevel.info
