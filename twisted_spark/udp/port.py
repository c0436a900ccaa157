# -*- test-case-name: tests.test_udp_port,tests.test_udp_transcripts -*-
"""Assemble the UDP device port from its collaborators (what the composition root calls)."""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec

from twisted_spark.device.log_limit import LogLimiter
from twisted_spark.dtls import DtlsServer, ServerConfig, SessionTable
from twisted_spark.udp.hello import HelloGate
from twisted_spark.udp.persistence import SessionPersistence
from twisted_spark.udp.probe import ProbeSessionFactory
from twisted_spark.udp.protocol import Gen3DeviceProtocol

__all__ = ["build_gen3_protocol"]


def build_gen3_protocol(
    server_key: ec.EllipticCurvePrivateKey,
    store,
    *,
    clock,
    executor,
    accept_unknown_devices: bool = False,
    sessions=None,
    rng: Callable[[int], bytes] = os.urandom,
    max_sessions: int = 100_000,
    session_lifetime: float = 7 * 24 * 3600.0,
    max_handshakes: int = 1024,
    metrics=None,
) -> Gen3DeviceProtocol:
    """The protocol for ``reactor.listenUDP``.

    :param store: an :class:`~twisted_spark.interfaces.IDeviceStore` that is also an
        :class:`~twisted_spark.interfaces.IDtlsSessionStore` (both stores are).
    :param executor: the :class:`~twisted_spark.interfaces.IExecutor` ECDH/ECDSA runs in.
    :param sessions: the CoAP session factory: the composition root gives the real one
        (:class:`~twisted_spark.udp.sessions.Gen3SessionFactory`); without one, the
        stand-in :class:`~twisted_spark.udp.probe.ProbeSessionFactory` (acknowledge, log).
    :param rng: the DTLS server's randomness (fixed only to record transcripts).
    :param session_lifetime: seconds a session stays resumable after the device was
        last heard from.
    :param metrics: the server's :class:`~twisted_spark.metrics.Metrics` (handshakes).
    """
    server = DtlsServer(
        ServerConfig(server_key, rng=rng),
        SessionTable(max_sessions, session_lifetime),
        max_handshakes=max_handshakes,
    )
    return Gen3DeviceProtocol(
        server,
        clock=clock,
        executor=executor,
        gate=HelloGate(store, accept_unknown=accept_unknown_devices),
        sessions=sessions if sessions is not None else ProbeSessionFactory(clock),
        limiter=LogLimiter(clock),
        persistence=SessionPersistence(store, store, idle_timeout=session_lifetime),
        metrics=metrics,
    )
