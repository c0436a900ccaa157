# -*- test-case-name: tests.test_dtls_handshake,tests.test_dtls_malformed -*-
"""All Gen3 DTLS traffic of one UDP port, sans-IO: cookies, handshakes, sessions.

Records are routed by address while a handshake runs and by connection ID
afterwards, so a device keeps its session across NAT rebinding and sleep.
A ClientHello first gets a stateless HelloVerifyRequest; only one that
echoes a valid cookie costs a handshake slot and the key-exchange work.
Every table is bounded: handshakes by ``max_handshakes``, sessions by the
:class:`SessionTable`.  Nothing the peer sends makes a method raise; what is
discarded is reported as a :class:`Dropped` or :class:`Closed` event for the log.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from twisted_spark.dtls.connection import Connection
from twisted_spark.dtls.cookie import CookieJar
from twisted_spark.dtls.ecc import CryptoWork
from twisted_spark.dtls.errors import DtlsError
from twisted_spark.dtls.events import Closed, Dropped, HandshakeComplete, Output, SessionCheckpoint
from twisted_spark.dtls.fragments import Message, encode_message, parse_fragments
from twisted_spark.dtls.messages import ClientHello, HelloVerifyRequest
from twisted_spark.dtls.negotiation import CID_LENGTH, negotiate
from twisted_spark.dtls.record import MAX_SEQUENCE, Record, encode_record, split_records
from twisted_spark.dtls.server import ServerConfig, ServerHandshake
from twisted_spark.dtls.session import SERVER, SessionState, SessionTable
from twisted_spark.dtls.wire import ContentType, HandshakeType

__all__ = ["DtlsServer"]

_FATAL = 2
_CID_TYPES = (ContentType.TLS12_CID, ContentType.MOVED_CID)
_CID_OFFSET = 11  # type(1) version(2) epoch(2) sequence(6), then the CID
_CID_HEADER_LENGTH = _CID_OFFSET + CID_LENGTH + 2


def _client_hello_random(record: Record) -> bytes | None:
    """The random of a plaintext ClientHello record, cheaply, or None if it is not one."""
    fragment = record.fragment
    if record.epoch != 0 or record.content_type != ContentType.HANDSHAKE:
        return None
    if len(fragment) < 12 + 34 or fragment[0] != HandshakeType.CLIENT_HELLO:
        return None
    return fragment[14:46]


#: The highest ClientHello message_seq a handshake can follow: the server's
#: flight and the device's next one number up to four past it (RFC 6347
#: §4.2.2), and message_seq is 16 bits.
_LAST_HELLO_SEQ = 0xFFFF - 4
#: The highest ClientHello record sequence a handshake can follow: the server
#: numbers its records on from it (RFC 6347 §4.2.1), its flights and their
#: retransmissions need far fewer than these 65 536, and a real device
#: starts at 0.
_LAST_HELLO_RECORD = MAX_SEQUENCE - 0x10000

class DtlsServer:
    """The DTLS side of the UDP device port."""

    def __init__(
        self,
        config: ServerConfig,
        sessions: SessionTable | None = None,
        *,
        cookie_secret: bytes | None = None,
        cookie_lifetime: float = 60.0,
        max_handshakes: int = 1024,
    ) -> None:
        self.config = config
        self.sessions = sessions if sessions is not None else SessionTable()
        self.max_handshakes = max_handshakes
        self._cookies = CookieJar(cookie_secret or config.rng(32), cookie_lifetime)
        self._by_address: dict[Any, ServerHandshake] = {}
        self._by_cid: dict[bytes, ServerHandshake] = {}
        self._work: dict[CryptoWork, ServerHandshake] = {}
        # Addresses whose handshake just completed: their plaintext records are
        # the device's last flight again (our Finished was lost), not noise.
        self._completed: OrderedDict[Any, None] = OrderedDict()

    @property
    def handshakes(self) -> int:
        return len(self._by_cid)

    def unknown_cid(self, data: bytes) -> bytes | None:
        """The CID of a datagram whose first record is for a session this server does
        not hold (one to look for in a store, say after a restart), else None.  Cheap:
        only the first record header is read."""
        if len(data) < _CID_HEADER_LENGTH or data[0] not in _CID_TYPES:
            return None
        cid = bytes(data[_CID_OFFSET : _CID_OFFSET + CID_LENGTH])
        return None if cid in self._by_cid or cid in self.sessions else cid

    # -- input ---------------------------------------------------------------------------

    def datagram_received(self, data: bytes, address: Any, now: float) -> Output:
        records, problem = split_records(data, CID_LENGTH)
        out = Output()
        batch: list[Record] = []
        target: Any = None
        for record in records:
            destination = self._route(record, address, now, out)
            if destination is not target and batch:
                self._deliver(target, batch, address, now, out)
                batch = []
            target = destination
            if destination is not None:
                batch.append(record)
        if batch:
            self._deliver(target, batch, address, now, out)
        if problem:
            out.events.append((None, Dropped(f"datagram from {address!r}: {problem}")))
        return out

    def _route(self, record: Record, address: Any, now: float, out: Output) -> Any:
        """The handshake or connection a record is for (None: handled or dropped here)."""
        if record.has_cid:
            target = self._by_cid.get(record.cid) or self.sessions.get(record.cid)
            if target is None:
                out.events.append(
                    (None, Dropped(f"unknown connection ID {record.cid.hex()} from {address!r}"))
                )
            return target
        handshake = self._by_address.get(address)
        random = _client_hello_random(record)
        if random is not None and (handshake is None or random != handshake.client_random):
            self._client_hello(record, address, now, out)
            return None
        if handshake is None and address in self._completed:
            return None  # its Finished, in the same datagram, makes the session answer
        if handshake is None:
            out.events.append(
                (
                    None,
                    Dropped(
                        f"record of type {record.content_type} from {address!r}, "
                        "which has no handshake"
                    ),
                )
            )
        return handshake

    def _deliver(
        self, target: Any, records: list[Record], address: Any, now: float, out: Output
    ) -> None:
        if isinstance(target, Connection):
            out.extend(self._absorb(None, target.records_received(records, address, now)))
            if target.cid in self.sessions:
                self.sessions.touch(target)
        else:
            out.extend(self._absorb(target, target.records_received(records, address, now)))

    def _client_hello(self, record: Record, address: Any, now: float, out: Output) -> None:
        try:
            fragments = parse_fragments(record.fragment)
            if len(fragments) != 1 or not fragments[0].complete:
                raise DtlsError("ClientHello is fragmented or shares its record")
            fragment = fragments[0]
            if record.sequence > _LAST_HELLO_RECORD:
                raise DtlsError(f"record sequence {record.sequence} leaves too few record "
                                "numbers for a handshake's flights (48 bits)")
            if fragment.message_seq > _LAST_HELLO_SEQ:
                raise DtlsError(f"message_seq {fragment.message_seq} leaves no room for the "
                                "handshake's next four messages (16-bit numbers)")
            hello = ClientHello.parse(fragment.data)
        except DtlsError as error:
            out.events.append((None, Dropped(f"ClientHello from {address!r}: {error.reason}")))
            return
        problem = (
            self._cookies.check(hello.cookie, address, hello.random, now) if hello.cookie else ""
        )
        if problem is not None:
            if problem:
                out.events.append((None, Dropped(f"ClientHello from {address!r}: {problem}")))
            verify = HelloVerifyRequest(self._cookies.make(address, hello.random, now))
            message = encode_message(
                HandshakeType.HELLO_VERIFY_REQUEST, fragment.message_seq, verify.encode()
            )
            out.datagrams.append(
                (address, encode_record(ContentType.HANDSHAKE, 0, record.sequence, message))
            )
            return
        try:
            negotiated = negotiate(hello)
        except DtlsError as error:
            if error.alert is not None:
                alert = encode_record(
                    ContentType.ALERT, 0, record.sequence, bytes((_FATAL, error.alert))
                )
                out.datagrams.append((address, alert))
            out.events.append(
                (None, Closed(f"handshake from {address!r} refused: {error.reason}", error.alert))
            )
            return
        old = self._by_address.get(address)
        if old is not None:
            self._forget(old)
        if len(self._by_cid) >= self.max_handshakes:
            out.events.append(
                (
                    None,
                    Dropped(
                        f"ClientHello from {address!r}: "
                        f"{self.max_handshakes} handshakes already running"
                    ),
                )
            )
            return
        handshake = ServerHandshake(
            self.config,
            hello,
            Message(HandshakeType.CLIENT_HELLO, fragment.message_seq, fragment.data),
            negotiated,
            record.sequence,
            self._new_cid(),
            address,
            now,
        )
        self._by_address[address] = handshake
        self._by_cid[handshake.cid] = handshake
        out.extend(self._absorb(handshake, handshake.start()))

    def _new_cid(self) -> bytes:
        while True:
            cid = self.config.rng(CID_LENGTH)
            if cid not in self._by_cid and cid not in self.sessions:
                return cid

    # -- bookkeeping ---------------------------------------------------------------------

    def _forget(self, handshake: ServerHandshake) -> None:
        if self._by_address.get(handshake.address) is handshake:
            del self._by_address[handshake.address]
        if self._by_cid.get(handshake.cid) is handshake:
            del self._by_cid[handshake.cid]
        if handshake.pending is not None:
            self._work.pop(handshake.pending, None)

    def _absorb(self, handshake: ServerHandshake | None, out: Output) -> Output:
        """Keep the tables in step with what a handshake or connection reported."""
        for work in out.work:
            if handshake is not None:
                self._work[work] = handshake
        for source, event in list(out.events):
            if isinstance(event, HandshakeComplete):
                if handshake is not None:
                    self._forget(handshake)
                    self._completed[handshake.address] = None
                    self._completed.move_to_end(handshake.address)
                    if len(self._completed) > self.max_handshakes:
                        self._completed.popitem(last=False)
                for evicted in self.sessions.add(event.connection):
                    out.events.append((evicted, Closed("evicted: the session table is full")))
            elif isinstance(event, Closed):
                if isinstance(source, ServerHandshake):
                    self._forget(source)
                elif isinstance(source, Connection):
                    cid = source.cid
                    if self.sessions.get(cid) is source:
                        self.sessions.remove(cid)
        return out

    # -- the owner's other calls ---------------------------------------------------------

    def work_done(self, work: CryptoWork, result: Any, now: float) -> Output:
        """Hand back a :class:`CryptoWork` result; stale ones (handshake gone) are ignored."""
        handshake = self._work.pop(work, None)
        if handshake is None or self._by_cid.get(handshake.cid) is not handshake:
            return Output()
        return self._absorb(handshake, handshake.work_done(work, result, now))

    def next_timer(self) -> float | None:
        deadlines = [d for h in self._by_cid.values() if (d := h.next_timer()) is not None]
        return min(deadlines, default=None)

    def timer_expired(self, now: float) -> Output:
        out = Output()
        for handshake in list(self._by_cid.values()):
            deadline = handshake.next_timer()
            if deadline is not None and deadline <= now:
                out.extend(self._absorb(handshake, handshake.timer_expired(now)))
        return out

    def restore(self, state: SessionState, now: float) -> Output:
        """Bring a persisted session back (after a restart); persist the checkpoint it emits."""
        if state.role != SERVER or len(state.cid) != CID_LENGTH:
            raise ValueError("restore() takes a server-side session with an 8-byte CID")
        connection = Connection.restore(
            state,
            max_plaintext=self.config.max_plaintext,
            datagram_budget=self.config.datagram_budget,
        )
        out = Output(events=[(connection, SessionCheckpoint(connection.snapshot()))])
        for evicted in self.sessions.add(connection):
            out.events.append((evicted, Closed("evicted: the session table is full")))
        return out

    def close(self, connection: Connection, now: float) -> Output:
        """Send close_notify to the device and forget its session."""
        out = connection.close(now)
        if self.sessions.get(connection.cid) is connection:
            self.sessions.remove(connection.cid)
        return out

    def expire(self, now: float) -> Output:
        """Forget sessions idle for longer than the table's idle timeout."""
        return Output(
            events=[
                (connection, Closed("session expired")) for connection in self.sessions.expire(now)
            ]
        )
