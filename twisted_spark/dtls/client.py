# -*- test-case-name: tests.test_dtls_handshake -*-
"""The device side of the Gen3 handshake, for tests and the Gen3 virtual device.

It behaves as Device OS configures mbedTLS: one suite, raw public keys,
an empty CID of its own and an 8-byte one required from the server, no
server Certificate accepted (the ServerKeyExchange signature, checked
against the server key the device already holds, is the server's only
authentication), handshake retransmission from 3 s doubling to 24 s.  A
completed or saved session continues as a :class:`Connection`; :func:`resume` brings
a saved one back the way a waking device does, with type-253 records.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from twisted_spark.dtls.connection import Connection
from twisted_spark.dtls.ecc import (
    ClientKeyExchangeResult,
    CryptoWork,
    client_key_exchange_work,
    public_key_der,
    sign_digest_work,
)
from twisted_spark.dtls.errors import AlertDescription, HandshakeFailure
from twisted_spark.dtls.events import Output
from twisted_spark.dtls.flight import RetransmitPolicy
from twisted_spark.dtls.fragments import Message, Reassembler
from twisted_spark.dtls.handshake import FlightItem, HandshakeBase
from twisted_spark.dtls.layer import RecordLayer, ciphers_for
from twisted_spark.dtls.messages import (
    RANDOM_LENGTH,
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    ClientKeyExchange,
    Finished,
    HelloVerifyRequest,
    ServerHello,
    ServerKeyExchange,
)
from twisted_spark.dtls.negotiation import check_server_hello, device_client_hello_extensions
from twisted_spark.dtls.prf import derive_key_block, derive_master_secret, finished_verify_data
from twisted_spark.dtls.session import CLIENT, SessionState
from twisted_spark.dtls.wire import (
    CIPHER_SUITE,
    ECDSA_SHA256,
    EMPTY_RENEGOTIATION_INFO_SCSV,
    SECP256R1,
    ContentType,
    HandshakeType,
)

__all__ = ["ClientConfig", "ClientHandshake", "resume"]


@dataclass(frozen=True)
class ClientConfig:
    device_key: ec.EllipticCurvePrivateKey
    server_public_key: ec.EllipticCurvePublicKey
    rng: Callable[[int], bytes] = os.urandom
    retransmit: RetransmitPolicy = field(
        default_factory=lambda: RetransmitPolicy(initial=3.0, maximum=24.0, attempts=3)
    )
    handshake_timeout: float = 90.0
    datagram_budget: int = 1152
    max_plaintext: int = 960  # MBEDTLS_SSL_MAX_CONTENT_LEN on devices


class Step(Enum):
    HELLO = "waiting for the server's hello"
    SERVER_FLIGHT = "reading the server's flight"
    KEY_EXCHANGE = "checking the server's key exchange"
    SIGNING = "signing CertificateVerify"
    FINISHED = "waiting for the server's Finished"


class ClientHandshake(HandshakeBase):
    """A device's full handshake with the server at ``address``."""

    def __init__(self, config: ClientConfig, address: Any = None, now: float = 0.0) -> None:
        super().__init__(
            RecordLayer(out_cid=None, in_cid=None),
            Reassembler(0),
            config.retransmit,
            config.handshake_timeout,
            address,
            now,
            config.datagram_budget,
        )
        self.config = config
        self.step = Step.HELLO
        self.client_random = config.rng(RANDOM_LENGTH)
        self.server_random = b""
        self.cid = b""
        self._send_seq = 0
        self._certificate_requested = False
        self._key_exchange: ServerKeyExchange | None = None
        self._premaster = b""
        self._master = b""
        self._expected_server_finished = b""
        self._flight_messages: list[Message] = []

    def start(self, now: float) -> Output:
        """Send the first ClientHello."""
        out = Output()
        self._send_hello(b"", now, out)
        return out

    def _next_seq(self) -> int:
        seq = self._send_seq
        self._send_seq += 1
        return seq

    def _send_hello(self, cookie: bytes, now: float, out: Output) -> None:
        hello = ClientHello(
            self.client_random,
            (CIPHER_SUITE, EMPTY_RENEGOTIATION_INFO_SCSV),
            device_client_hello_extensions(),
            cookie=cookie,
        )
        message = Message(HandshakeType.CLIENT_HELLO, self._next_seq(), hello.encode())
        self.transcript = hashlib.sha256()  # a HelloVerifyRequest restarts it
        self._add_to_transcript(message)
        self._send_flight([(ContentType.HANDSHAKE, 0, message)], now, out)

    def _expects_ccs(self) -> bool:
        return self.step is Step.FINISHED

    def _message(self, message: Message, now: float, out: Output) -> None:
        kind = message.msg_type
        if self.step is Step.HELLO and kind == HandshakeType.HELLO_VERIFY_REQUEST:
            cookie = HelloVerifyRequest.parse(message.body).cookie
            self._send_hello(cookie, now, out)
        elif self.step is Step.HELLO and kind == HandshakeType.SERVER_HELLO:
            hello = ServerHello.parse(message.body)
            self.cid = check_server_hello(hello)
            self.server_random = hello.random
            self.layer.out_cid = self.cid
            self.step = Step.SERVER_FLIGHT
            self._add_to_transcript(message)
        elif self.step is Step.SERVER_FLIGHT:
            self._server_flight_message(message, now, out)
        elif self.step is Step.FINISHED and kind == HandshakeType.FINISHED:
            if not hmac.compare_digest(
                Finished.parse(message.body).verify_data, self._expected_server_finished
            ):
                raise HandshakeFailure(
                    "the server's Finished does not verify", AlertDescription.DECRYPT_ERROR
                )
            self._done(now, out)
        else:
            raise HandshakeFailure(
                f"handshake message type {kind} while {self.step.value}",
                AlertDescription.UNEXPECTED_MESSAGE,
            )

    def _server_flight_message(self, message: Message, now: float, out: Output) -> None:
        kind = message.msg_type
        if self._key_exchange is None and kind != HandshakeType.SERVER_KEY_EXCHANGE:
            # Device OS: "server key exchange message must not be skipped"
            raise HandshakeFailure(
                f"expected ServerKeyExchange, got handshake message type {kind}",
                AlertDescription.UNEXPECTED_MESSAGE,
            )
        if kind == HandshakeType.SERVER_KEY_EXCHANGE and self._key_exchange is None:
            exchange = ServerKeyExchange.parse(message.body)
            if exchange.curve != SECP256R1 or exchange.algorithm != ECDSA_SHA256:
                raise HandshakeFailure(
                    "ServerKeyExchange is not P-256 with ECDSA-SHA256",
                    AlertDescription.ILLEGAL_PARAMETER,
                )
            self._key_exchange = exchange
        elif kind == HandshakeType.CERTIFICATE_REQUEST and not self._certificate_requested:
            CertificateRequest.parse(message.body)
            self._certificate_requested = True
        elif kind == HandshakeType.SERVER_HELLO_DONE:
            if message.body:
                raise HandshakeFailure(
                    "ServerHelloDone is not empty", AlertDescription.DECODE_ERROR
                )
            self.timer.stop()
            self.step = Step.KEY_EXCHANGE
            key_exchange = self._key_exchange
            assert key_exchange is not None  # ServerHelloDone comes after it (checked above)
            self.pending = CryptoWork(
                "client key exchange",
                client_key_exchange_work,
                self.config.server_public_key,
                self.client_random + self.server_random + key_exchange.params,
                key_exchange.signature,
                key_exchange.point,
                self.config.rng(32),
            )
            out.work.append(self.pending)
        else:
            raise HandshakeFailure(
                f"unexpected handshake message type {kind} from the server",
                AlertDescription.UNEXPECTED_MESSAGE,
            )
        self._add_to_transcript(message)

    def _work_result(self, result: Any, now: float, out: Output) -> None:
        if self.step is Step.KEY_EXCHANGE:
            self._key_exchanged(result, now, out)
        elif self.step is Step.SIGNING:
            self._send_final_flight(result, now, out)

    def _key_exchanged(self, result: ClientKeyExchangeResult, now: float, out: Output) -> None:
        self._premaster = result.premaster
        self._flight_messages = []
        if self._certificate_requested:
            der = public_key_der(self.config.device_key.public_key())
            self._queue(
                Message(HandshakeType.CERTIFICATE, self._next_seq(), Certificate(der).encode())
            )
        self._queue(
            Message(
                HandshakeType.CLIENT_KEY_EXCHANGE,
                self._next_seq(),
                ClientKeyExchange(result.point).encode(),
            )
        )
        if self._certificate_requested:
            self.step = Step.SIGNING
            self.pending = CryptoWork(
                "sign CertificateVerify",
                sign_digest_work,
                self.config.device_key,
                self.transcript.digest(),
            )
            out.work.append(self.pending)
        else:
            self._send_final_flight(None, now, out)

    def _queue(self, message: Message) -> None:
        self._flight_messages.append(message)
        self._add_to_transcript(message)

    def _send_final_flight(self, signature: bytes | None, now: float, out: Output) -> None:
        if signature is not None:
            self._queue(
                Message(
                    HandshakeType.CERTIFICATE_VERIFY,
                    self._next_seq(),
                    CertificateVerify(signature).encode(),
                )
            )
        self._master = derive_master_secret(self._premaster, self.client_random, self.server_random)
        self._premaster = b""
        keys = derive_key_block(self._master, self.client_random, self.server_random)
        self.layer.install(*ciphers_for(keys, is_client=True))
        finished = Message(
            HandshakeType.FINISHED,
            self._next_seq(),
            Finished(finished_verify_data(self._master, True, self.transcript.digest())).encode(),
        )
        self._add_to_transcript(finished)
        self._expected_server_finished = finished_verify_data(
            self._master, False, self.transcript.digest()
        )
        items: list[FlightItem] = [(ContentType.HANDSHAKE, 0, m) for m in self._flight_messages]
        items.append((ContentType.CHANGE_CIPHER_SPEC, 0, b"\x01"))
        items.append((ContentType.HANDSHAKE, 1, finished))
        self.layer.write_epoch = 1
        self.step = Step.FINISHED
        self._send_flight(items, now, out)

    def _done(self, now: float, out: Output) -> None:
        window = self.layer.windows[1]
        state = SessionState(
            role=CLIENT,
            cid=self.cid,
            master_secret=self._master,
            client_random=self.client_random,
            server_random=self.server_random,
            peer_public_key=public_key_der(self.config.server_public_key),
            write_sequence=self.layer.write_sequences[1],
            read_latest=window.latest,
            read_bitmap=window.bitmap,
            peer_address=self.address,
            created=now,
            last_seen=now,
        )
        connection = Connection(
            state,
            self.layer,
            max_plaintext=self.config.max_plaintext,
            datagram_budget=self.config.datagram_budget,
        )
        self._complete(connection, out)


def resume(state: SessionState, max_plaintext: int = 960) -> Connection:
    """A device waking with a saved session: no handshake, type-253 records until answered."""
    if state.role != CLIENT:
        raise ValueError("resume() takes a device-side session")
    return Connection.restore(state, moving=True, max_plaintext=max_plaintext)
