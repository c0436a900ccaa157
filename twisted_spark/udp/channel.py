# -*- test-case-name: tests.test_udp_port -*-
"""The :class:`~twisted_spark.udp.interfaces.IDatagramChannel` a Gen3 CoAP session is given."""

from __future__ import annotations

from zope.interface import implementer

from twisted_spark.dtls import Connection
from twisted_spark.udp.interfaces import IDatagramChannel

__all__ = ["DatagramChannel"]


@implementer(IDatagramChannel)
class DatagramChannel:
    """What a CoAP session sees of its DTLS connection.

    :param port: the :class:`~twisted_spark.udp.protocol.Gen3DeviceProtocol` (it sends
        what the connection produces and closes it).
    :param hello: the device's :class:`~twisted_spark.coap.gen3.Gen3Hello`, or None;
        its maximum message size bounds what may be sent.
    """

    def __init__(self, port, connection: Connection, hello, resumed: bool) -> None:
        self._port = port
        self._connection = connection
        self.device_id = connection.state.device_id
        self.resumed = resumed
        self.max_message_size = port.default_max_message
        self.hello_known(hello)

    def hello_known(self, hello) -> None:
        size = getattr(hello, "max_message_size", None)
        self.max_message_size = min(
            size or self._port.default_max_message, self._connection.max_plaintext
        )

    @property
    def address(self):
        return self._connection.address

    @property
    def application(self):
        return self._connection.state.application

    def remember(self, data) -> None:
        self._port.remember(self._connection, data)

    def send(self, message: bytes) -> None:
        if len(message) > self.max_message_size:
            raise ValueError(
                f"a {len(message)}-byte message is over the device's {self.max_message_size}"
            )
        now = self._port.clock.seconds()
        self._port.handle(self._connection.send(message, now))

    def close(self, reason: str) -> None:
        self._port.close_connection(self._connection, reason, notify=False)

    def detach(self, reason: str) -> None:
        self._port.detach_session(self._connection, reason)
