# -*- test-case-name: tests.test_dtls_resume -*-
"""An established session: application data both ways, alerts, moves, persistence.

One class serves both sides.  On the server the peer's records carry our
connection ID and ours carry none (the device asks for no CID of its own);
on a device it is the other way round, and after resuming a saved session
the device marks its records as type 253 until the server answers.

The server side keeps the sequence-number lease of :mod:`~twisted_spark.dtls.session`: it never
sends past ``write_reserved`` without first emitting a :class:`SessionCheckpoint`
that moves the bound :data:`LEASE` further, half a lease ahead of need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted_spark.dtls.errors import AlertDescription, RecordError, StateError, alert_name
from twisted_spark.dtls.events import (
    AddressChanged,
    ApplicationData,
    Closed,
    Dropped,
    Output,
    SessionCheckpoint,
)
from twisted_spark.dtls.flight import pack_datagrams
from twisted_spark.dtls.layer import RecordLayer, ciphers_for
from twisted_spark.dtls.prf import derive_key_block
from twisted_spark.dtls.record import Record, split_records
from twisted_spark.dtls.replay import ReplayWindow
from twisted_spark.dtls.session import CLIENT, SERVER, SessionState
from twisted_spark.dtls.wire import ContentType

__all__ = ["LEASE", "MAX_PLAINTEXT", "Connection"]

LEASE = 1024
FINAL_FLIGHT_RETRANSMISSIONS = 8
MAX_PLAINTEXT = 2**14
_WARNING, _FATAL = 1, 2


class Connection:
    """An established DTLS session with one peer."""

    __slots__ = (
        "_final",
        "_final_left",
        "_layer",
        "closed",
        "datagram_budget",
        "max_plaintext",
        "moving",
        "state",
    )

    def __init__(
        self,
        state: SessionState,
        layer: RecordLayer,
        final_flight: Sequence[tuple[int, int, bytes]] | None = None,
        max_plaintext: int = MAX_PLAINTEXT,
        datagram_budget: int = 1152,
    ) -> None:
        self.state = state
        self._layer = layer
        self._final = final_flight
        self._final_left = FINAL_FLIGHT_RETRANSMISSIONS
        self.max_plaintext = max_plaintext
        self.datagram_budget = datagram_budget
        self.closed = False
        self.moving = False

    @classmethod
    def restore(cls, state: SessionState, *, moving: bool = False, **options: Any) -> Connection:
        """A connection carrying on a saved session without a handshake.

        The server resumes sending at the persisted ``write_reserved`` bound
        (numbers below it may have been used before a crash) and renews the
        lease: persist ``snapshot()`` right away.  A device resumes at its
        own exact counter and, with ``moving``, sends type-253 records until
        the server answers.
        """
        state = state.copy()
        state.validate()
        is_client = state.role == CLIENT
        keys = derive_key_block(state.master_secret, state.client_random, state.server_random)
        layer = RecordLayer(
            out_cid=state.cid if is_client else None,
            in_cid=None if is_client else state.cid,
        )
        layer.install(*ciphers_for(keys, is_client))
        layer.read_epoch = layer.write_epoch = 1
        layer.windows[1] = ReplayWindow(state.read_latest, state.read_bitmap)
        if is_client:
            layer.write_sequences[1] = state.write_sequence
        else:
            start = max(state.write_sequence, state.write_reserved)
            layer.write_sequences[1] = start
            state.write_reserved = start + LEASE
        connection = cls(state, layer, **options)
        connection.moving = moving
        return connection

    @property
    def cid(self) -> bytes:
        return self.state.cid

    @property
    def last_seen(self) -> float:
        return self.state.last_seen

    @property
    def address(self) -> Any:
        return self.state.peer_address

    def snapshot(self) -> SessionState:
        """The current state, safe to persist and later :meth:`restore`."""
        state = self.state.copy()
        window = self._layer.windows[1]
        state.write_sequence = self._layer.write_sequences[1]
        state.read_latest = window.latest
        state.read_bitmap = window.bitmap
        return state

    def bind_device(self, device_id: str) -> Output:
        """Record the device id from the CoAP Hello; returns a checkpoint to persist."""
        self.state.device_id = device_id
        return Output(events=[(self, SessionCheckpoint(self.snapshot()))])

    # -- receiving ---------------------------------------------------------------------

    def datagram_received(self, data: bytes, address: Any, now: float) -> Output:
        cid_length = None if self.state.role == CLIENT else len(self.state.cid)
        records, problem = split_records(data, cid_length)
        out = self.records_received(records, address, now)
        if problem:
            out.events.append((self, Dropped(f"rest of datagram from {address!r}: {problem}")))
        return out

    def records_received(self, records: list[Record], address: Any, now: float) -> Output:
        out = Output()
        retransmit = False
        for record in records:
            if self.closed:
                break
            if record.epoch == 0:
                if self._final is not None and record.content_type in (
                    ContentType.HANDSHAKE,
                    ContentType.CHANGE_CIPHER_SPEC,
                ):
                    retransmit = True
                else:
                    out.events.append((self, Dropped("plaintext record after the handshake")))
                continue
            newest = self._layer.windows[1].is_newest(record.sequence)
            try:
                content_type, payload = self._layer.open(record)
            except RecordError as error:
                out.events.append((self, Dropped(f"{error.reason} from {address!r}")))
                continue
            self.state.last_seen = now
            self.moving = False
            if (
                self.state.role == SERVER
                and address is not None
                and address != self.state.peer_address
            ):
                self._move(address, record.moved, newest, out)
            retransmit |= self._dispatch(content_type, payload, out)
        if retransmit and not self.closed:
            out.extend(self._retransmit_final())
        return out

    def _move(self, address: Any, moved: bool, newest: bool, out: Output) -> None:
        """Follow the peer to a new address on an authentic type-253 record or on
        its newest record; an older one (reordered, or copied by someone on the
        path) is still delivered but does not move the session (RFC 9146 §6)."""
        if not (moved or newest):
            return
        old = self.state.peer_address
        self.state.peer_address = address
        out.events.append((self, AddressChanged(old, address, moved)))
        out.events.append((self, SessionCheckpoint(self.snapshot())))

    def _dispatch(self, content_type: int, payload: bytes, out: Output) -> bool:
        """Act on one record's content; True if the final flight should be resent."""
        if content_type == ContentType.APPLICATION_DATA:
            self._final = None  # the peer got our Finished
            out.events.append((self, ApplicationData(payload)))
        elif content_type == ContentType.ALERT:
            self._alert_received(payload, out)
        elif content_type == ContentType.HANDSHAKE:
            if self._final is not None:
                return True
            out.events.append(
                (
                    self,
                    Dropped(
                        "handshake message after the handshake (renegotiation is not supported)"
                    ),
                )
            )
        else:
            out.events.append((self, Dropped(f"unexpected content type {content_type} in epoch 1")))
        return False

    def _alert_received(self, payload: bytes, out: Output) -> None:
        if len(payload) != 2:
            out.events.append((self, Dropped(f"alert of {len(payload)} bytes")))
            return
        level, description = payload
        if description == AlertDescription.CLOSE_NOTIFY or level == _FATAL:
            self.closed = True
            out.events.append(
                (self, Closed(f"peer sent {alert_name(description)}", description, by_peer=True))
            )
        else:
            out.events.append((self, Dropped(f"ignored warning alert {alert_name(description)}")))

    # -- sending -----------------------------------------------------------------------

    def _seal(self, content_type: int, payload: bytes, out: Output, epoch: int = 1) -> bytes:
        record = self._layer.seal(content_type, payload, epoch)
        if self.moving and record[0] == ContentType.TLS12_CID:
            record = bytes((ContentType.MOVED_CID,)) + record[1:]
        if self.state.role == SERVER:
            sequence = self._layer.write_sequences[1]
            if sequence + LEASE // 2 >= self.state.write_reserved:
                self.state.write_reserved = sequence + LEASE
                out.events.append((self, SessionCheckpoint(self.snapshot())))
        return record

    def send(self, data: bytes, now: float) -> Output:
        """One record of application data to the peer."""
        if self.closed:
            raise StateError("cannot send: the session is closed")
        if len(data) > self.max_plaintext:
            raise StateError(f"{len(data)} bytes do not fit one record (max {self.max_plaintext})")
        out = Output()
        record = self._seal(ContentType.APPLICATION_DATA, data, out)
        out.datagrams.append((self.state.peer_address, record))
        return out

    def close(self, now: float) -> Output:
        """Send close_notify and stop; the peer forgets the session too."""
        out = Output()
        if self.closed:
            return out
        record = self._seal(
            ContentType.ALERT, bytes((_WARNING, AlertDescription.CLOSE_NOTIFY)), out
        )
        out.datagrams.append((self.state.peer_address, record))
        self.closed = True
        out.events.append((self, Closed("closed locally", AlertDescription.CLOSE_NOTIFY)))
        return out

    def _retransmit_final(self) -> Output:
        """Resend the handshake's last flight, a bounded number of times: its
        trigger (a plaintext handshake record) is easy to replay."""
        out = Output()
        assert self._final is not None
        records = [self._seal(kind, payload, out, epoch) for kind, epoch, payload in self._final]
        self._final_left -= 1
        if self._final_left <= 0:
            self._final = None
        for datagram in pack_datagrams(records, self.datagram_budget):
            out.datagrams.append((self.state.peer_address, datagram))
        return out
