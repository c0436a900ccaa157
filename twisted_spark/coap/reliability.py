# -*- test-case-name: tests.test_coap_reliability -*-
"""CoAP over UDP: retransmission, duplicates and message ids for one peer, sans-IO.

Over TCP the stream does this; over DTLS the CoAP layer must (RFC 7252
§4).  :class:`MessageLayer` is one device's side of it, driven with
explicit times like the DTLS state machines:

* our confirmable messages are resent after ``ack_timeout`` (times a random
  factor up to ``ack_random_factor``), doubling, ``max_retransmit`` times,
  then reported as failed;
* the device's CON and NON messages are remembered by message id for
  ``exchange_lifetime``: a retransmitted CON gets the answer we gave the
  first time (or nothing while we are still working on it), a repeated
  NON is dropped;
* message ids are allocated in sequence from a random start, skipping ids
  still in flight.

The defaults are Device OS's own (``communication/src/coap_channel.h``:
ACK_TIMEOUT 4 s, random factor 1.5, MAX_RETRANSMIT 3), so both ends time
out alike; RFC 7252 §4.8 gives 2 s, 1.5 and 4.  A device keeps its own
duplicates for 45 s (MAX_TRANSMIT_SPAN); we keep ours for the RFC's
EXCHANGE_LIFETIME computed from those values (246 s), within a bound on
how many are remembered.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted_spark.coap.codec import CoapError, CoapMessage, Code, MessageType, decode

__all__ = ["MessageLayer", "Step", "TransmissionParameters"]


@dataclass(frozen=True)
class TransmissionParameters:
    """RFC 7252 §4.8 transmission parameters (Device OS's values by default)."""

    ack_timeout: float = 4.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 3
    max_latency: float = 100.0
    processing_delay: float = 4.0

    @property
    def max_transmit_span(self) -> float:
        return self.ack_timeout * (2**self.max_retransmit - 1) * self.ack_random_factor

    @property
    def exchange_lifetime(self) -> float:
        return self.max_transmit_span + 2 * self.max_latency + self.processing_delay


@dataclass
class Step:
    """What one call produced.

    ``send``: CoAP messages to send now, in order.  ``deliver``: new
    requests or NON messages from the device, for the session.  ``acked``:
    our CONs the device acknowledged, with the ACK (which may carry the
    response).  ``reset``: our message ids the device answered with RST.
    ``failed``: our CONs that were never acknowledged.  ``dropped``: why
    input was ignored, for the log.
    """

    send: list[bytes] = field(default_factory=list)
    deliver: list[CoapMessage] = field(default_factory=list)
    acked: list[tuple[int, CoapMessage]] = field(default_factory=list)
    reset: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


class _Outgoing:
    __slots__ = ("data", "deadline", "interval", "retransmissions")

    def __init__(self, data: bytes, deadline: float, interval: float) -> None:
        self.data = data
        self.deadline = deadline
        self.interval = interval
        self.retransmissions = 0


class MessageLayer:
    """The CoAP message layer towards one device."""

    def __init__(
        self,
        parameters: TransmissionParameters | None = None,
        *,
        rng: Callable[[], float] | None = None,
        first_message_id: int | None = None,
        max_outstanding: int = 16,
        max_remembered: int = 64,
    ) -> None:
        self.parameters = parameters or TransmissionParameters()
        self._random = rng or random.SystemRandom().random
        start = int(self._random() * 0x10000) if first_message_id is None else first_message_id
        self._next_id = start & 0xFFFF
        self.max_outstanding = max_outstanding
        self.max_remembered = max_remembered
        self._outstanding: dict[int, _Outgoing] = {}
        # the device's message ids: (type, id) -> (when, our answer or None while pending)
        self._seen: OrderedDict[tuple[int, int], tuple[float, bytes | None]] = OrderedDict()

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    # -- from the device ---------------------------------------------------------------

    def received(self, data: bytes, now: float) -> Step:
        """One CoAP message from the device."""
        step = Step()
        self._forget_old(now)
        try:
            message = decode(data)
        except CoapError as error:
            step.dropped.append(f"malformed CoAP message: {error}")
            return step
        kind, mid = MessageType(message.type), message.message_id
        if kind in (MessageType.ACK, MessageType.RST):
            if self._outstanding.pop(mid, None) is None:
                step.dropped.append(f"{kind.name} for message id {mid}, which is not awaited")
            elif kind == MessageType.ACK:
                step.acked.append((mid, message))
            else:
                step.reset.append(mid)
            return step
        seen = self._seen.get((kind, mid))
        if seen is not None:
            answer = seen[1]
            if answer is not None:
                step.send.append(answer)
            state = "answered again" if answer is not None else "still being handled"
            step.dropped.append(f"duplicate {kind.name} message id {mid} ({state})")
            return step
        self._remember(kind, mid, None, now)
        step.deliver.append(message)
        return step

    def respond(self, request: CoapMessage, response: bytes) -> bytes:
        """Record the piggybacked ACK (or RST) ``response`` to the device's CON ``request``.

        A retransmission of the request is then answered with it again.
        Returns ``response``, to send.
        """
        if request.type != MessageType.CON:
            raise ValueError("only a CON request is answered with an ACK; use send_non")
        answer = decode(response)
        if answer.type not in (MessageType.ACK, MessageType.RST):
            kind = MessageType(answer.type).name
            raise ValueError(f"a response to a CON must be an ACK or RST, not {kind}")
        if answer.message_id != request.message_id:
            raise ValueError(f"response id {answer.message_id} != request id {request.message_id}")
        key = (MessageType.CON, request.message_id)
        if key in self._seen:
            self._seen[key] = (self._seen[key][0], response)
        return response

    def acknowledge(self, request: CoapMessage, code: int = Code.EMPTY) -> bytes:
        """An empty (or coded, token-echoing) ACK for a CON request, recorded as its answer."""
        token = request.token if code != Code.EMPTY else b""
        ack = CoapMessage(MessageType.ACK, code, request.message_id, token)
        return self.respond(request, ack.encode())

    # -- to the device -----------------------------------------------------------------

    def send(self, message: CoapMessage, now: float) -> tuple[int, bytes]:
        """Give ``message`` (CON or NON) the next message id; a CON is resent until acknowledged.

        Raises OverflowError when ``max_outstanding`` CONs await their ACK.
        """
        if message.type not in (MessageType.CON, MessageType.NON):
            raise ValueError("only CON and NON messages get a new message id")
        confirmable = message.type == MessageType.CON
        if confirmable and len(self._outstanding) >= self.max_outstanding:
            raise OverflowError(f"{len(self._outstanding)} messages await an acknowledgement")
        mid = self._allocate()
        data = message._replace(message_id=mid).encode()
        if confirmable:
            p = self.parameters
            interval = p.ack_timeout * (1 + (p.ack_random_factor - 1) * self._random())
            self._outstanding[mid] = _Outgoing(data, now + interval, interval)
        return mid, data

    def track(self, message_id: int, data: bytes, now: float) -> None:
        """Resend the CON ``data``, numbered ``message_id`` by the caller, until acknowledged.

        For a session that allocates its own message ids (the device
        session's request table); :meth:`send` numbers them itself.  Raises
        OverflowError when ``max_outstanding`` CONs await their ACK.
        """
        if len(self._outstanding) >= self.max_outstanding:
            raise OverflowError(f"{len(self._outstanding)} messages await an acknowledgement")
        p = self.parameters
        interval = p.ack_timeout * (1 + (p.ack_random_factor - 1) * self._random())
        self._outstanding[message_id & 0xFFFF] = _Outgoing(data, now + interval, interval)

    def answered(self, message_id: int, response: bytes) -> None:
        """Record ``response`` (an ACK or RST) as the answer to the device's CON ``message_id``.

        Like :meth:`respond`, for a caller holding only the encoded answer.
        """
        key = (MessageType.CON, message_id)
        if key in self._seen:
            self._seen[key] = (self._seen[key][0], response)

    def cancel(self, message_id: int) -> bool:
        """Stop resending a CON (its answer no longer matters)."""
        return self._outstanding.pop(message_id, None) is not None

    def _allocate(self) -> int:
        for _ in range(0x10000):
            mid = self._next_id
            self._next_id = (mid + 1) & 0xFFFF
            if mid not in self._outstanding:
                return mid
        raise OverflowError("no free message id")  # unreachable with max_outstanding < 65536

    # -- time ----------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When :meth:`timer_expired` has work (None: nothing in flight)."""
        return min((o.deadline for o in self._outstanding.values()), default=None)

    def timer_expired(self, now: float) -> Step:
        """Resend what is due; give up on what was resent ``max_retransmit`` times."""
        step = Step()
        for mid, outgoing in list(self._outstanding.items()):
            if outgoing.deadline > now:
                continue
            if outgoing.retransmissions >= self.parameters.max_retransmit:
                del self._outstanding[mid]
                step.failed.append(mid)
                continue
            outgoing.retransmissions += 1
            outgoing.interval *= 2
            outgoing.deadline = now + outgoing.interval
            step.send.append(outgoing.data)
        self._forget_old(now)
        return step

    def _remember(self, kind: int, mid: int, answer: bytes | None, now: float) -> None:
        self._seen[(kind, mid)] = (now, answer)
        while len(self._seen) > self.max_remembered:
            self._seen.popitem(last=False)

    def _forget_old(self, now: float) -> None:
        lifetime = self.parameters.exchange_lifetime
        while self._seen:
            when, _ = next(iter(self._seen.values()))
            if now - when <= lifetime:
                return
            self._seen.popitem(last=False)
