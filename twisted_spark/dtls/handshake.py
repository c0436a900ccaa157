# -*- test-case-name: tests.test_dtls_handshake -*-
"""What the server and device handshakes share: records in, flights out, timers.

A subclass supplies the dialogue (``_message``, ``_work_result``,
``_peer_retransmitted``); this class does the DTLS plumbing around it:
opening records, reassembling messages, holding epoch-1 records that come
before their ChangeCipherSpec, the running transcript hash, sending and
resending flights with fresh sequence numbers, the overall deadline, and
turning any :class:`DtlsError` into a fatal alert and a :class:`Closed` event.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted_spark.dtls.connection import Connection
from twisted_spark.dtls.ecc import CryptoWork
from twisted_spark.dtls.errors import (
    AlertDescription,
    DecodeError,
    DtlsError,
    HandshakeFailure,
    RecordError,
    alert_name,
)
from twisted_spark.dtls.events import Closed, Dropped, HandshakeComplete, Output
from twisted_spark.dtls.flight import RetransmitPolicy, RetransmitTimer, pack_datagrams
from twisted_spark.dtls.fragments import (
    Added,
    Message,
    Reassembler,
    fragment_message,
    parse_fragments,
)
from twisted_spark.dtls.layer import RecordLayer
from twisted_spark.dtls.record import HEADER_LENGTH, Record, split_records
from twisted_spark.dtls.wire import ContentType, HandshakeType

__all__ = ["MAX_HELD_RECORDS", "FlightItem", "HandshakeBase"]

MAX_HELD_RECORDS = 8
_CCS = b"\x01"
_FATAL = 2
# a handshake fragment's record: header, CID, explicit nonce and tag, handshake header
_FRAGMENT_OVERHEAD = HEADER_LENGTH + 8 + 16 + 12

FlightItem = tuple[int, int, Message | bytes]  # (content type, epoch, message or raw payload)


class HandshakeBase:
    """One handshake with one peer, as a sans-IO state machine."""

    def __init__(
        self,
        layer: RecordLayer,
        reassembler: Reassembler,
        policy: RetransmitPolicy,
        timeout: float,
        address: Any,
        now: float,
        datagram_budget: int,
    ) -> None:
        self.layer = layer
        self.reassembler = reassembler
        self.address = address
        self.datagram_budget = datagram_budget
        self.transcript = hashlib.sha256()
        self.timer = RetransmitTimer(policy)
        self.deadline = now + timeout
        self.flight: list[FlightItem] = []
        self.held: list[Record] = []
        self.ccs_received = False
        self.pending: CryptoWork | None = None
        self.connection: Connection | None = None
        self.failed = False

    # -- what the owner calls ------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.connection is None and not self.failed

    def next_timer(self) -> float | None:
        """When to call :meth:`timer_expired` next (None: never)."""
        if not self.active:
            return None
        if self.timer.deadline is None:
            return self.deadline
        return min(self.timer.deadline, self.deadline)

    def timer_expired(self, now: float) -> Output:
        out = Output()
        if not self.active:
            return out
        if now >= self.deadline:
            self._fail(HandshakeFailure("handshake took too long"), out, send_alert=False)
        elif self.timer.due(now):
            if self.timer.back_off(now):
                self._transmit(out)
            else:
                self._fail(
                    HandshakeFailure(
                        f"no answer after {self.timer.retransmissions} retransmissions"
                    ),
                    out,
                    send_alert=False,
                )
        return out

    def work_done(self, work: CryptoWork, result: Any, now: float) -> Output:
        """Hand back the result of a :class:`CryptoWork` this handshake returned."""
        out = Output()
        if work is not self.pending or not self.active:
            return out
        self.pending = None
        try:
            if isinstance(result, DtlsError):
                raise result
            self._work_result(result, now, out)
        except DtlsError as error:
            self._fail(error, out)
        return out

    def datagram_received(self, data: bytes, address: Any, now: float) -> Output:
        records, problem = split_records(data, self._cid_length())
        out = self.records_received(records, address, now)
        if problem:
            out.events.append((self, Dropped(f"rest of datagram from {address!r}: {problem}")))
        return out

    def records_received(self, records: list[Record], address: Any, now: float) -> Output:
        out = Output()
        for index, record in enumerate(records):
            if not self.active:
                if self.connection is not None:  # records after our Finished: the session's
                    out.extend(self.connection.records_received(records[index:], address, now))
                break
            if record.epoch == 1 and self.layer.read_epoch == 0:
                self._hold(record, out)
                continue
            try:
                content_type, payload = self.layer.open(record)
            except RecordError as error:
                out.events.append((self, Dropped(f"{error.reason} from {address!r}")))
                continue
            try:
                self._content(content_type, payload, record.epoch, now, out)
            except DtlsError as error:
                self._fail(error, out)
        return out

    # -- plumbing ------------------------------------------------------------------------

    def _cid_length(self) -> int | None:
        return None

    def _hold(self, record: Record, out: Output) -> None:
        if len(self.held) < MAX_HELD_RECORDS:
            self.held.append(record)
        else:
            out.events.append((self, Dropped("too many epoch-1 records before ChangeCipherSpec")))

    def _content(
        self, content_type: int, payload: bytes, epoch: int, now: float, out: Output
    ) -> None:
        if content_type == ContentType.HANDSHAKE:
            retransmitted = False
            for fragment in parse_fragments(payload):
                if (epoch == 1) != (fragment.msg_type == HandshakeType.FINISHED):
                    raise HandshakeFailure(
                        f"handshake message type {fragment.msg_type} in epoch {epoch}",
                        AlertDescription.UNEXPECTED_MESSAGE,
                    )
                added = self.reassembler.add(fragment)
                if added is Added.OLD:
                    retransmitted = True
                elif added is Added.IGNORED:
                    out.events.append(
                        (
                            self,
                            Dropped(f"handshake message {fragment.message_seq} is too far ahead"),
                        )
                    )
                for message in self.reassembler.pop_ready():
                    if not self.active:
                        return
                    self._message(message, now, out)
            if retransmitted and self.active:
                self._peer_retransmitted(out)
        elif content_type == ContentType.CHANGE_CIPHER_SPEC:
            if payload != _CCS:
                raise DecodeError(f"ChangeCipherSpec payload {payload.hex()}")
            if epoch != 0 or not self._expects_ccs():
                out.events.append((self, Dropped("ChangeCipherSpec out of turn")))
                return
            self.ccs_received = True
            self._switch_read_epoch(now, out)
        elif content_type == ContentType.ALERT:
            self._alert(payload, out)
        else:
            out.events.append((self, Dropped(f"content type {content_type} during the handshake")))

    def _alert(self, payload: bytes, out: Output) -> None:
        if len(payload) != 2:
            raise DecodeError(f"alert of {len(payload)} bytes")
        level, description = payload
        if level == _FATAL or description == AlertDescription.CLOSE_NOTIFY:
            self.failed = True
            self.timer.stop()
            out.events.append(
                (self, Closed(f"peer sent {alert_name(description)}", description, by_peer=True))
            )
        else:
            out.events.append((self, Dropped(f"ignored warning alert {alert_name(description)}")))

    def _switch_read_epoch(self, now: float, out: Output) -> None:
        """After the peer's CCS, once our keys exist: read epoch 1, then the held records."""
        if not (self.ccs_received and self.layer.keys_ready and self.layer.read_epoch == 0):
            return
        self.layer.read_epoch = 1
        held, self.held = self.held, []
        out.extend(self.records_received(held, self.address, now))

    def _add_to_transcript(self, message: Message) -> None:
        self.transcript.update(message.encode())

    def _send_flight(
        self, items: list[FlightItem], now: float, out: Output, timer: bool = True
    ) -> None:
        self.flight = items
        self._transmit(out)
        if timer:
            self.timer.start(now)
        else:
            self.timer.stop()

    def _flight_records(self) -> list[bytes]:
        records = []
        max_fragment = max(self.datagram_budget - _FRAGMENT_OVERHEAD, 64)
        for content_type, epoch, item in self.flight:
            if isinstance(item, Message):
                for fragment in fragment_message(
                    item.msg_type, item.message_seq, item.body, max_fragment
                ):
                    records.append(self.layer.seal(content_type, fragment, epoch))
            else:
                records.append(self.layer.seal(content_type, item, epoch))
        return records

    def _transmit(self, out: Output) -> None:
        for datagram in pack_datagrams(self._flight_records(), self.datagram_budget):
            out.datagrams.append((self.address, datagram))

    def _complete(self, connection: Connection, out: Output) -> None:
        self.connection = connection
        self.timer.stop()
        self.flight = []
        out.events.append((connection, HandshakeComplete(connection, connection.snapshot())))

    def _fail(self, error: DtlsError, out: Output, send_alert: bool = True) -> None:
        if not self.active:
            return
        self.failed = True
        self.timer.stop()
        self.pending = None
        if send_alert and error.alert is not None:
            try:
                record = self.layer.seal(ContentType.ALERT, bytes((_FATAL, error.alert)))
            except RecordError:
                record = None
            if record is not None:
                out.datagrams.append((self.address, record))
        out.events.append((self, Closed(error.reason, error.alert)))

    # -- what a subclass supplies ----------------------------------------------------------

    def _message(self, message: Message, now: float, out: Output) -> None:
        raise NotImplementedError

    def _work_result(self, result: Any, now: float, out: Output) -> None:
        raise NotImplementedError

    def _expects_ccs(self) -> bool:
        raise NotImplementedError

    def _peer_retransmitted(self, out: Output) -> None:
        """The peer resent messages we already have: it may have missed our flight."""
        if self.timer.deadline is not None or self._resend_on_retransmit():
            self._transmit(out)

    def _resend_on_retransmit(self) -> bool:
        return False
