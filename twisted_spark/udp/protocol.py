# -*- test-case-name: tests.test_udp_port -*-
"""The UDP device port: a ``DatagramProtocol`` around the sans-IO DTLS server.

Everything :class:`~twisted_spark.dtls.DtlsServer` hands back is acted on
here: datagrams are sent, ECDH/ECDSA work runs in an injected executor
(never on the reactor), timers run on the injected clock at
``next_timer()``, session snapshots go to
:class:`~twisted_spark.udp.persistence.SessionPersistence`, and an
established connection's first CoAP message goes through the
:class:`~twisted_spark.udp.hello.HelloGate` before a CoAP session (from an
:class:`~twisted_spark.udp.interfaces.IDatagramSessionFactory`) gets
anything.  Drops and refusals are logged through a per-address
:class:`~twisted_spark.device.log_limit.LogLimiter`.

Bounded: handshakes and sessions by the DTLS server's tables (so pending
crypto work too: at most one job per handshake), messages held while a
Hello is checked or a saved session is loaded by ``max_held`` per
connection, store lookups by the persistence layer.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger, LogLevel

from twisted_spark.dtls import (
    AddressChanged,
    ApplicationData,
    Closed,
    Connection,
    Dropped,
    DtlsServer,
    HandshakeComplete,
    Output,
    SessionCheckpoint,
)
from twisted_spark.udp.channel import DatagramChannel
from twisted_spark.udp.hello import read_hello
from twisted_spark.udp.persistence import LookupRefused

__all__ = ["Gen3DeviceProtocol"]

log = Logger()


class Gen3DeviceProtocol(DatagramProtocol):
    """All Gen3 devices on one UDP port.

    :param server: the :class:`~twisted_spark.dtls.DtlsServer` (its config holds the key).
    :param clock: ``IReactorTime``; every time comes from it.
    :param executor: an :class:`~twisted_spark.interfaces.IExecutor` for crypto work.
    :param gate: the :class:`~twisted_spark.udp.hello.HelloGate`.
    :param sessions: the :class:`~twisted_spark.udp.interfaces.IDatagramSessionFactory`.
    :param persistence: a :class:`~twisted_spark.udp.persistence.SessionPersistence`, or None
        to keep sessions in memory only.
    :param limiter: a :class:`~twisted_spark.device.log_limit.LogLimiter` for drops.
    """

    #: Largest CoAP message for a device whose Hello gave none (a Gen3 device's record limit).
    default_max_message = 960

    def __init__(
        self,
        server: DtlsServer,
        *,
        clock,
        executor,
        gate,
        sessions,
        limiter,
        persistence=None,
        max_held: int = 8,
        housekeeping_interval: float = 60.0,
        refresh_margin: float = 3600.0,
        metrics=None,
    ) -> None:
        self.server = server
        self.clock = clock
        self.executor = executor
        self.gate = gate
        self.sessions = sessions
        self.limiter = limiter
        self.persistence = persistence
        self.max_held = max_held
        self.housekeeping_interval = housekeeping_interval
        self.refresh_margin = refresh_margin
        self.metrics = metrics  # handshakes completed and failed (reasons bounded)
        self._timer: Any = None
        self._timer_at: float | None = None
        self._housekeeping: Any = None
        self._held: dict[Any, list] = {}  # connection (Hello being checked) or CID (loading)
        self._coap: dict[Connection, Any] = {}  # connection -> its CoAP session
        self._by_device: dict[str, Connection] = {}
        self._stopped = False
        self._peer: Any = None

    # -- Twisted ---------------------------------------------------------------------------

    def startProtocol(self) -> None:
        self._housekeeping = self.clock.callLater(self.housekeeping_interval, self._housekeep)

    def stopProtocol(self) -> None:
        """The port closed.  Sessions are not closed: devices resume them after a restart."""
        self._stopped = True
        for call in (self._timer, self._housekeeping):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._housekeeping = None

    def datagramReceived(self, data: bytes, addr) -> None:
        now = self.clock.seconds()
        cid = self.server.unknown_cid(data) if self.persistence is not None else None
        if cid is not None:
            self._unknown_cid(cid, data, addr, now)
            return
        self._peer = addr  # whom events without a source (cookie, refusal) are about
        try:
            self.handle(self.server.datagram_received(data, addr, now))
        finally:
            self._peer = None

    # -- acting on the DTLS layer's output -------------------------------------------------

    def handle(self, out: Output) -> None:
        """Send, run and record everything in ``out``, then re-arm the timer."""
        if self._stopped:
            return  # crypto work or a store lookup finishing after the port closed
        for address, datagram in out.datagrams:
            if self.transport is not None:
                self.transport.write(datagram, address)
        for work in out.work:
            d = self.executor.run(work.run)
            d.addCallback(self._work_done, work)
            d.addErrback(lambda f: log.failure("DTLS crypto work failed", f))
        for source, event in out.events:
            self._event(source, event)
        self._arm()

    def _work_done(self, result, work) -> None:
        self.handle(self.server.work_done(work, result, self.clock.seconds()))

    def _event(self, source, event) -> None:
        if isinstance(event, ApplicationData):
            self._application_data(source, event.data)
        elif isinstance(event, HandshakeComplete):
            self._count_handshake(None)
            self._save(event.connection, event.session)
            self._note(event.connection.address, LogLevel.info,
                       "DTLS handshake with {address} complete",
                       address=_show(event.connection.address))
        elif isinstance(event, SessionCheckpoint):
            self._save(source, event.session)
        elif isinstance(event, AddressChanged):
            session = self._coap.get(source)
            if session is not None:
                session.address_changed(event.new)
        elif isinstance(event, Closed):
            self._closed(source, event)
        elif isinstance(event, Dropped):
            address = getattr(source, "address", None)
            self._note(address, LogLevel.debug, "UDP device port: {reason}", reason=event.reason)

    def _closed(self, source, event: Closed) -> None:
        if isinstance(source, Connection):
            self._forget(source, event.reason)
            if self.persistence is not None and self._evicted(source):
                # The table is full: the session pages out to the store, whole, and
                # comes back from there on the device's next record.
                d = self.persistence.save(source.snapshot(), self.clock.seconds())
                d.addErrback(self._store_failed, source.cid)
            elif self.persistence is not None:
                self.persistence.delete(source.cid).addErrback(self._store_failed, source.cid)
            level = LogLevel.info if event.by_peer else LogLevel.debug
            self._note(source.address, level, "DTLS session {cid} of {device} at {address} "
                       "ended: {reason}", cid=source.cid.hex(), address=_show(source.address),
                       device=source.state.device_id or "an unidentified device",
                       reason=event.reason)
        else:
            self._count_handshake("peer_alert" if event.by_peer else "dtls_error")
            address = getattr(source, "address", None)
            self._note(address, LogLevel.info, "UDP device port: {reason}", reason=event.reason)

    def _count_handshake(self, failure: str | None) -> None:
        """Count a DTLS handshake completed (``failure`` None) or failed for ``failure``."""
        if self.metrics is None:
            return
        if failure is None:
            self.metrics.inc("spark_dtls_handshakes_completed_total")
        else:
            self.metrics.handshake_failures.labels("udp", failure).inc()

    def _evicted(self, connection: Connection) -> bool:
        """Dropped from memory for room, not closed by either side nor idle too long."""
        idle = self.clock.seconds() - connection.last_seen
        return not connection.closed and idle <= self.server.sessions.idle_timeout

    def _forget(self, connection: Connection, reason: str, notify: bool = True) -> None:
        self._held.pop(connection, None)
        session = self._coap.pop(connection, None)
        device_id = connection.state.device_id
        if device_id is not None and self._by_device.get(device_id) is connection:
            del self._by_device[device_id]
        if session is not None and notify:
            session.connection_lost(reason)

    # -- the first CoAP message: who is it? ------------------------------------------------

    def _application_data(self, connection: Connection, data: bytes) -> None:
        session = self._coap.get(connection)
        if session is not None:
            session.message_received(data)
            return
        held = self._held.get(connection)
        if held is not None:
            if len(held) < self.max_held:
                held.append(data)
            else:
                self._note(connection.address, LogLevel.debug, "Dropped a message from "
                           "{address}: {count} already wait for its Hello to be checked",
                           address=_show(connection.address), count=len(held))
            return
        if connection.state.device_id is not None:  # resumed: its key was checked on loading
            self._resumed(connection, data)
            return
        self._held[connection] = []
        d = self.gate.admit(connection.state.peer_public_key, data)
        d.addCallback(self._admitted, connection, data)
        d.addErrback(self._gate_failed, connection)

    def _resumed(self, connection: Connection, data: bytes) -> None:
        hello = None
        try:
            hello = read_hello(data)
        except ValueError:
            pass  # usually a ping: nothing changed on the device since the session was saved
        if hello is not None and hello.device_id != connection.state.device_id:
            self.close_connection(connection, f"its Hello names {hello.device_id}, but the "
                                  f"session belongs to {connection.state.device_id}")
            return
        self._start_session(connection, hello, data, resumed=True)

    def _admitted(self, admission, connection: Connection, first: bytes) -> None:
        if connection.closed or self.server.sessions.get(connection.cid) is not connection:
            self._held.pop(connection, None)
            return
        if admission.refused is not None:
            self._note(connection.address, LogLevel.warn, "Refused Gen3 device {device} at "
                       "{address}: {reason}", device=admission.device_id or "(no id)",
                       address=_show(connection.address), reason=admission.refused)
            self._count_handshake("refused")
            self.close_connection(connection, admission.refused)
            return
        self.handle(connection.bind_device(admission.hello.device_id))
        self._start_session(connection, admission.hello, first, resumed=False)

    def _gate_failed(self, failure, connection: Connection) -> None:
        log.failure("Checking the Hello from {address} failed", failure,
                    address=_show(connection.address))
        self.close_connection(connection, "internal error while checking its Hello")

    def _start_session(self, connection: Connection, hello, first: bytes, resumed: bool) -> None:
        device_id = connection.state.device_id
        assert device_id is not None  # set by the Hello, or by the saved session
        older = self._by_device.get(device_id)
        if older is not None and older is not connection:
            self.close_connection(older, "replaced by a newer session of the same device")
        self._by_device[device_id] = connection
        held = self._held.pop(connection, [])
        log.info("Gen3 device {device_id} online at {address} ({how})", device_id=device_id,
                 address=_show(connection.address),
                 how="resumed session" if resumed else "new session")
        channel = DatagramChannel(self, connection, hello, resumed)
        session = self.sessions.session_started(channel, hello, first)
        if connection.closed:  # the session closed it at once
            return
        self._coap[connection] = session
        for data in held:
            session.message_received(data)

    def remember(self, connection: Connection, data) -> None:
        """Keep the CoAP session's ``data`` with the DTLS session, and save it."""
        connection.state.application = data
        self._save(connection, connection.snapshot())

    def detach_session(self, connection: Connection, reason: str) -> None:
        """Forget the CoAP session of ``connection`` but keep the DTLS session (resumable)."""
        self._coap.pop(connection, None)
        self._held.pop(connection, None)
        log.debug("Gen3 device {device_id}: CoAP session ended ({reason}); its DTLS session "
                  "stays resumable", device_id=connection.state.device_id, reason=reason)

    def close_connection(self, connection: Connection, reason: str, notify: bool = True) -> None:
        """Send close_notify and forget the session (here, in the DTLS layer and the store)."""
        self._forget(connection, reason, notify)
        self.handle(self.server.close(connection, self.clock.seconds()))

    # -- saved sessions ----------------------------------------------------------------------

    def _save(self, connection: Connection, state) -> None:
        if self.persistence is None:
            return
        d = self.persistence.save(state, self.clock.seconds())
        d.addErrback(self._checkpoint_failed, connection)

    def _checkpoint_failed(self, failure, connection: Connection) -> None:
        log.failure("Could not save DTLS session {cid}; closing it (its sequence numbers "
                    "must be on disk before use)", failure, cid=connection.cid.hex())
        if not connection.closed:
            self.close_connection(connection, "its session could not be saved")

    def _store_failed(self, failure, cid: bytes) -> None:
        log.failure("Could not save or delete DTLS session {cid}", failure, cid=cid.hex())

    def _unknown_cid(self, cid: bytes, data: bytes, addr, now: float) -> None:
        held = self._held.get(cid)
        if held is not None:
            if len(held) < self.max_held:
                held.append((data, addr))
            return
        try:
            d = self.persistence.lookup(cid, now)
        except LookupRefused as refused:
            self._note(addr, LogLevel.debug, "Dropped a record from {address}: {reason}",
                       address=_show(addr), reason=str(refused))
            return
        self._held[cid] = [(data, addr)]
        # A failure while handling the held records is not a failed load: say which.
        d.addCallbacks(self._loaded, self._load_failed, callbackArgs=(cid,), errbackArgs=(cid,))
        d.addErrback(lambda failure: log.failure(
            "Handling the records held for DTLS session {cid} failed", failure, cid=cid.hex()))

    def _loaded(self, result, cid: bytes) -> None:
        state, why = result
        waiting = self._held.pop(cid, [])
        now = self.clock.seconds()
        if state is None:
            address = waiting[0][1] if waiting else None
            self._note(address, LogLevel.info, "Dropped a record from {address} for DTLS "
                       "session {cid}: {reason}", address=_show(address), cid=cid.hex(),
                       reason=why)
            return
        if self.server.sessions.get(cid) is None:  # else it came back meanwhile
            self.handle(self.server.restore(state, now))
        for data, addr in waiting:
            self.handle(self.server.datagram_received(data, addr, now))

    def _load_failed(self, failure, cid: bytes) -> None:
        self._held.pop(cid, None)
        log.failure("Could not load DTLS session {cid}", failure, cid=cid.hex())

    # -- time --------------------------------------------------------------------------------

    def _arm(self) -> None:
        deadline = self.server.next_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer, self._timer_at = None, deadline
        if deadline is not None:
            delay = max(0.0, deadline - self.clock.seconds())
            self._timer = self.clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_at = None
        self.handle(self.server.timer_expired(self.clock.seconds()))

    def _housekeep(self) -> None:
        """Expire idle sessions; keep the stored expiry of live ones ahead; sweep the store."""
        now = self.clock.seconds()
        self._housekeeping = self.clock.callLater(self.housekeeping_interval, self._housekeep)
        self.handle(self.server.expire(now))
        if self.persistence is not None:
            for d in self.persistence.refresh(self.server.sessions, now, self.refresh_margin):
                d.addErrback(lambda f: log.failure("Could not refresh a DTLS session", f))
            self.persistence.sweep(now).addErrback(
                lambda f: log.failure("Could not sweep expired DTLS sessions", f))

    # -- logging -----------------------------------------------------------------------------

    def _note(self, peer, level, format: str, **kwargs) -> None:
        """Log through the limiter, with ``peer``'s host as the source of the budget."""
        peer = peer if peer is not None else self._peer
        source = peer[0] if isinstance(peer, tuple) else "unknown"
        self.limiter.emit(source, log, level, format, **kwargs)


def _show(address) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return "an unknown address"
