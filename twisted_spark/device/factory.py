# -*- test-case-name: tests.test_device_protocol,tests.test_device_limits -*-
"""DeviceServerFactory: the collaborators every device connection shares."""

from __future__ import annotations

import os
from collections import Counter

from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from twisted_spark.crypto.device_keys import load_stored_key
from twisted_spark.crypto.keys import openssl_private_key
from twisted_spark.device.log_limit import LogLimiter
from twisted_spark.device.protocol import DeviceProtocol
from twisted_spark.device.session import DeviceSession
from twisted_spark.device.wheel import TimerWheel

#: Metric counting connections refused for load, labelled by reason.
REFUSED_METRIC = "spark_device_connections_refused_total"
#: Reason label: the RSA pool's queue was at ``--max-pending-handshakes``.
QUEUE_FULL = "handshake_queue_full"


#: Beginnings of the close reasons of a failed handshake -> its metric label.
_FAILURE_KINDS = (
    ("handshake not completed", "timeout"),
    ("handshake refused: internal error", "internal_error"),
    ("handshake refused", "refused"),
    ("server busy", "server_busy"),
    ("bad frame", "bad_frame"),
    ("sent ", "protocol_error"),
    ("first frame", "bad_hello"),
    ("bad Hello", "bad_hello"),
    ("unparsable", "bad_hello"),
)


def failure_kind(reason: str) -> str:
    """The bounded label (``timeout``, ``refused``, ...) of a handshake close reason."""
    for start, kind in _FAILURE_KINDS:
        if reason.startswith(start):
            return kind
    return "other"


@implementer(IProtocolFactory)
class DeviceServerFactory:
    """Builds a :class:`DeviceProtocol` per accepted device connection.

    :param server_key: the server's RSA-2048 private ``RsaKey`` (already checked
        when it was loaded); kept as an OpenSSL key object, whose private-key
        operations cost a quarter of pycryptodome's.
    :param store: an ``IDeviceStore`` (device keys and attributes).
    :param registry: the registry, as the :class:`~twisted_spark.interfaces.ISessionSink`
        every session reports to.
    :param bus: an ``IEventBus`` receiving device events.
    :param settings: :class:`~twisted_spark.config.Settings`.
    :param clock: ``IReactorTime`` for every timer.
    :param rsa_pool: the :class:`~twisted_spark.interfaces.IExecutor` running
        private-key work (``Executors.rsa``; a synchronous one in tests).
    :param random_bytes: CSPRNG ``n -> bytes`` (injectable for tests).
    :param describe_on_connect: ask each device's Describe right after its Hello.
    :param metrics: the server's :class:`~twisted_spark.metrics.Metrics`, where
        handshakes and refused connections are counted; optional.
    """

    log = Logger()
    protocol = DeviceProtocol

    def __init__(
        self,
        server_key,
        store,
        registry,
        bus,
        settings,
        *,
        clock,
        rsa_pool,
        random_bytes=os.urandom,
        describe_on_connect=True,
        metrics=None,
    ):
        self.server_key = openssl_private_key(server_key, validate=False)
        #: Counters for /metrics: handshakes that reached the Hello, and refusals.
        self.handshakes_completed = 0
        self.handshakes_failed = 0
        #: Connections refused for load, by reason (also counted in ``metrics``).
        self.refused = Counter()
        self.metrics = metrics
        if metrics is not None:
            metrics.describe(REFUSED_METRIC, "Device connections refused for load, by reason")
            metrics.counter_reading(
                "spark_handshakes_completed", "Device handshakes (TCP) completed",
                lambda: self.handshakes_completed)
            metrics.counter_reading(
                "spark_handshakes_failed", "Device handshakes (TCP) that failed",
                lambda: self.handshakes_failed)
        self.store = store
        self.registry = registry
        self.bus = bus
        self.settings = settings
        self.clock = clock
        self.rsa_pool = rsa_pool
        self.random_bytes = random_bytes
        self.describe_on_connect = describe_on_connect
        self.connections = set()
        #: Keep-alive deadlines of the sessions (one reactor timer for all).
        self.keepalive = TimerWheel(clock)
        #: Log budget per address for connections without a session (bogus ones).
        self.log_limiter = LogLimiter(clock)

    # -- IProtocolFactory ----------------------------------------------------------

    def doStart(self):
        pass

    def doStop(self):
        self.log_limiter.flush()

    def buildProtocol(self, addr):
        busy = self.refusal_if_busy()
        if busy is not None:
            # Returning None makes the port close the socket at once: no nonce,
            # no timer, no buffer for a connection we could not serve anyway.
            ip = getattr(addr, "host", "?")
            self.log_limiter.emit(
                ip, self.log, LogLevel.warn, "Refusing device connection from {ip}: {why}",
                ip=ip, why=busy,
            )
            return None
        proto = self.protocol(self, addr)
        self.connections.add(proto)
        return proto

    def logPrefix(self):
        return "DeviceServerFactory"

    # -- used by the protocol --------------------------------------------------------

    def refusal_if_busy(self):
        """Why a new handshake must be refused now, or None if it may proceed.

        The bound is on RSA jobs queued or running (``--max-pending-handshakes``):
        beyond it a device would wait longer than it is worth, and the queue
        would grow with every bogus connection.  A refusal is counted.
        """
        pending = self.rsa_pool.pending
        limit = self.settings.max_pending_handshakes
        if pending < limit:
            return None
        self.count_refusal(QUEUE_FULL)
        return f"the RSA queue holds {pending} handshake jobs (--max-pending-handshakes {limit})"

    def count_refusal(self, reason):
        """Count a connection refused for load, here and in the metrics."""
        self.refused[reason] += 1
        if self.metrics is not None:
            self.metrics.inc(REFUSED_METRIC, reason=reason)

    def handshake_completed(self, deadline) -> None:
        """Count a handshake that reached the Hello; ``deadline`` is its timeout's call."""
        self.handshakes_completed += 1
        if self.metrics is not None and deadline is not None:
            started = deadline.getTime() - self.settings.handshake_timeout
            self.metrics.handshakes.labels("tcp").observe(self.clock.seconds() - started)

    def handshake_failed(self, reason: str) -> None:
        """Count a connection closed before its Hello, by the kind of ``reason``."""
        self.handshakes_failed += 1
        if self.metrics is not None:
            self.metrics.handshake_failures.labels("tcp", failure_kind(reason)).inc()

    def new_session(self, transport, device_id, owner, hello, recv_mid, server_mid):
        """The :class:`~twisted_spark.device.session.DeviceSession` of a device whose
        Hello has just arrived on ``transport``, given the shared collaborators."""
        return DeviceSession(
            transport, device_id, owner, hello,
            clock=self.clock, sink=self.registry, bus=self.bus, settings=self.settings,
            recv_mid=recv_mid, server_mid=server_mid,
        )

    def session_online(self, session, stored=None):
        """``session`` is ready: register it (it replaces an older connection).

        :param stored: the device's record as the handshake read it.
        """
        self.registry.register(session, stored)

    def connection_closed(self, proto):
        self.connections.discard(proto)

    def device_key(self, der):
        """``(algorithm, key)`` for a stored SPKI DER public key, the key an
        OpenSSL one (:func:`~twisted_spark.crypto.device_keys.load_stored_key`;
        ``(None, None)`` for no key it can read)."""
        return load_stored_key(der)

    def close_all(self, reason="server shutting down"):
        """Close every device connection (service shutdown)."""
        for proto in list(self.connections):
            proto.close(reason)
