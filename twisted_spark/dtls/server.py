# -*- test-case-name: tests.test_dtls_handshake -*-
"""The server side of one Gen3 handshake, from a cookie-checked ClientHello on.

Flights (message_seq in brackets, n being the ClientHello's)::

    device                                  server
    ClientHello + cookie [n]      -->
                                  <--       ServerHello [n] (CID 254, cert types 19/20)
                                            ServerKeyExchange [n+1]   (no Certificate!)
                                            CertificateRequest [n+2]
                                            ServerHelloDone [n+3]
    Certificate (raw key) [n+1]
    ClientKeyExchange [n+2]
    CertificateVerify [n+3]
    ChangeCipherSpec
    Finished [n+4] (type 25, CID) -->
                                  <--       ChangeCipherSpec, Finished [n+4]

The two expensive steps leave as :class:`CryptoWork`: signing the key exchange
(after the ClientHello) and ECDH plus the CertificateVerify check (after
the device's flight).  The device's identity is only its public key here;
its id arrives in the CoAP Hello, and the caller must then check that this
key is the one registered for that id.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from twisted_spark.dtls.connection import LEASE, MAX_PLAINTEXT, Connection
from twisted_spark.dtls.ecc import (
    CryptoWork,
    ServerKeyExchangeResult,
    ServerVerifyResult,
    server_key_exchange_work,
    server_verify_work,
)
from twisted_spark.dtls.errors import AlertDescription, HandshakeFailure
from twisted_spark.dtls.events import Output
from twisted_spark.dtls.flight import RetransmitPolicy
from twisted_spark.dtls.fragments import Message, Reassembler
from twisted_spark.dtls.handshake import HandshakeBase
from twisted_spark.dtls.layer import RecordLayer, ciphers_for
from twisted_spark.dtls.messages import (
    RANDOM_LENGTH,
    Certificate,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    ClientKeyExchange,
    Finished,
    ServerHello,
    ServerKeyExchange,
)
from twisted_spark.dtls.negotiation import Negotiated, server_hello_extensions
from twisted_spark.dtls.prf import derive_key_block, derive_master_secret, finished_verify_data
from twisted_spark.dtls.session import SERVER, SessionState
from twisted_spark.dtls.wire import (
    CIPHER_SUITE,
    CLIENT_CERT_ECDSA_SIGN,
    ECDSA_SHA256,
    ContentType,
    HandshakeType,
)

__all__ = ["ServerConfig", "ServerHandshake", "Step"]


@dataclass(frozen=True)
class ServerConfig:
    """The server's key and knobs; ``rng`` is injectable to replay transcripts."""

    server_key: ec.EllipticCurvePrivateKey
    rng: Callable[[int], bytes] = os.urandom
    retransmit: RetransmitPolicy = field(default_factory=RetransmitPolicy)
    handshake_timeout: float = 60.0
    datagram_budget: int = 900  # handshake datagrams; a device reads at most ~1000
    max_handshake_message: int = 2048
    max_plaintext: int = MAX_PLAINTEXT


class Step(Enum):
    KEY_EXCHANGE = "signing the key exchange"
    CLIENT_FLIGHT = "waiting for the device's certificate and key exchange"
    VERIFYING = "checking the device's key exchange"
    FINISHED = "waiting for the device's Finished"


_CLIENT_FLIGHT = (
    HandshakeType.CERTIFICATE,
    HandshakeType.CLIENT_KEY_EXCHANGE,
    HandshakeType.CERTIFICATE_VERIFY,
)


class ServerHandshake(HandshakeBase):
    """A handshake with one device whose ClientHello carried a valid cookie."""

    def __init__(
        self,
        config: ServerConfig,
        hello: ClientHello,
        hello_message: Message,
        negotiated: Negotiated,
        record_sequence: int,
        cid: bytes,
        address: Any,
        now: float,
    ) -> None:
        super().__init__(
            RecordLayer(out_cid=None, in_cid=cid, first_sequence=record_sequence),
            Reassembler(hello_message.message_seq + 1, config.max_handshake_message),
            config.retransmit,
            config.handshake_timeout,
            address,
            now,
            config.datagram_budget,
        )
        self.config = config
        self.cid = cid
        self.client_random = hello.random
        self.server_random = config.rng(RANDOM_LENGTH)
        self.negotiated = negotiated
        self.hello_seq = hello_message.message_seq
        self.step = Step.KEY_EXCHANGE
        self.created = now
        self._ephemeral_secret = config.rng(32)
        self._ephemeral_key: ec.EllipticCurvePrivateKey | None = None
        self._client_public_key = b""
        self._client_point = b""
        self._verify_digest = b""
        self._master = b""
        self._add_to_transcript(hello_message)

    def start(self) -> Output:
        """The first work item: the signed ServerKeyExchange."""
        self.pending = CryptoWork(
            "server key exchange",
            server_key_exchange_work,
            self.config.server_key,
            self._ephemeral_secret,
            self.client_random + self.server_random,
            ServerKeyExchange.encode_params,
        )
        return Output(work=[self.pending])

    def _cid_length(self) -> int | None:
        return len(self.cid)

    def _expects_ccs(self) -> bool:
        # Reordered datagrams may bring the CCS before the messages it follows;
        # it only takes effect once the keys exist.
        return self.step is not Step.KEY_EXCHANGE

    def _work_result(self, result: Any, now: float, out: Output) -> None:
        if self.step is Step.KEY_EXCHANGE:
            self._send_server_flight(result, now, out)
        elif self.step is Step.VERIFYING:
            self._install_keys(result, now, out)

    def _send_server_flight(self, result: ServerKeyExchangeResult, now: float, out: Output) -> None:
        self._ephemeral_key = result.ephemeral_key
        seq = self.hello_seq
        hello = ServerHello(
            self.server_random,
            CIPHER_SUITE,
            server_hello_extensions(self.negotiated, self.cid),
        )
        messages = [
            Message(HandshakeType.SERVER_HELLO, seq, hello.encode()),
            Message(
                HandshakeType.SERVER_KEY_EXCHANGE,
                seq + 1,
                ServerKeyExchange(result.point, result.signature).encode(),
            ),
            Message(
                HandshakeType.CERTIFICATE_REQUEST,
                seq + 2,
                CertificateRequest(bytes((CLIENT_CERT_ECDSA_SIGN,)), (ECDSA_SHA256,)).encode(),
            ),
            Message(HandshakeType.SERVER_HELLO_DONE, seq + 3, b""),
        ]
        for message in messages:
            self._add_to_transcript(message)
        self.step = Step.CLIENT_FLIGHT
        self._send_flight([(ContentType.HANDSHAKE, 0, m) for m in messages], now, out)

    def _message(self, message: Message, now: float, out: Output) -> None:
        if self.step is Step.CLIENT_FLIGHT:
            expected = _CLIENT_FLIGHT[message.message_seq - self.hello_seq - 1]
            if message.msg_type != expected:
                raise HandshakeFailure(
                    f"expected {expected.name}, got handshake message type {message.msg_type}",
                    AlertDescription.UNEXPECTED_MESSAGE,
                )
            self.timer.stop()  # the device has our flight
            self._client_flight_message(message, out)
        elif self.step is Step.FINISHED and message.msg_type == HandshakeType.FINISHED:
            self._finished(message, now, out)
        else:
            raise HandshakeFailure(
                f"handshake message type {message.msg_type} while {self.step.value}",
                AlertDescription.UNEXPECTED_MESSAGE,
            )

    def _client_flight_message(self, message: Message, out: Output) -> None:
        if message.msg_type == HandshakeType.CERTIFICATE:
            self._client_public_key = Certificate.parse(message.body).public_key_der
        elif message.msg_type == HandshakeType.CLIENT_KEY_EXCHANGE:
            self._client_point = ClientKeyExchange.parse(message.body).point
        else:
            verify = CertificateVerify.parse(message.body)
            if verify.algorithm != ECDSA_SHA256:
                raise HandshakeFailure(
                    f"CertificateVerify uses algorithm {verify.algorithm:#06x}, not ECDSA-SHA256",
                    AlertDescription.ILLEGAL_PARAMETER,
                )
            self._verify_digest = self.transcript.digest()
            self.step = Step.VERIFYING
            self.pending = CryptoWork(
                "verify device key exchange",
                server_verify_work,
                self._ephemeral_key,
                self._client_point,
                self._client_public_key,
                verify.signature,
                self._verify_digest,
            )
            out.work.append(self.pending)
        self._add_to_transcript(message)

    def _install_keys(self, result: ServerVerifyResult, now: float, out: Output) -> None:
        self._master = derive_master_secret(
            result.premaster, self.client_random, self.server_random
        )
        self._ephemeral_key = None
        keys = derive_key_block(self._master, self.client_random, self.server_random)
        self.layer.install(*ciphers_for(keys, is_client=False))
        self.step = Step.FINISHED
        self._switch_read_epoch(now, out)

    def _finished(self, message: Message, now: float, out: Output) -> None:
        expected = finished_verify_data(self._master, True, self.transcript.digest())
        if not hmac.compare_digest(Finished.parse(message.body).verify_data, expected):
            raise HandshakeFailure(
                "the device's Finished does not verify", AlertDescription.DECRYPT_ERROR
            )
        self._add_to_transcript(message)
        ours = Message(
            HandshakeType.FINISHED,
            self.hello_seq + 4,
            Finished(finished_verify_data(self._master, False, self.transcript.digest())).encode(),
        )
        final = [
            (ContentType.CHANGE_CIPHER_SPEC, 0, b"\x01"),
            (ContentType.HANDSHAKE, 1, ours.encode()),
        ]
        records = [self.layer.seal(ContentType.CHANGE_CIPHER_SPEC, b"\x01", 0)]
        self.layer.write_epoch = 1
        records.append(self.layer.seal(ContentType.HANDSHAKE, ours.encode(), 1))
        out.datagrams.append((self.address, b"".join(records)))
        sequence = self.layer.write_sequences[1]
        window = self.layer.windows[1]
        state = SessionState(
            role=SERVER,
            cid=self.cid,
            master_secret=self._master,
            client_random=self.client_random,
            server_random=self.server_random,
            peer_public_key=self._client_public_key,
            write_sequence=sequence,
            write_reserved=sequence + LEASE,
            read_latest=window.latest,
            read_bitmap=window.bitmap,
            peer_address=self.address,
            created=now,
            last_seen=now,
        )
        connection = Connection(
            state,
            self.layer,
            final_flight=final,
            max_plaintext=self.config.max_plaintext,
            datagram_budget=self.config.datagram_budget,
        )
        self._complete(connection, out)
