# -*- test-case-name: tests.test_dtls_record -*-
"""The record layer of one association: epochs, sequence numbers, replay windows.

Epoch 0 is plaintext; epoch 1 is AES-128-CCM-8 with the keys of the
handshake.  Sequence numbers restart at 0 in each epoch, and each epoch has
its own replay window.  Which key reads and which writes depends on the side.
"""

from __future__ import annotations

from twisted_spark.dtls.errors import RecordError, ReplayedRecord
from twisted_spark.dtls.prf import KeyBlock
from twisted_spark.dtls.protection import CID_PADDING_GRANULARITY, RecordCipher
from twisted_spark.dtls.record import MAX_SEQUENCE, Record, encode_record
from twisted_spark.dtls.replay import ReplayWindow

__all__ = ["RecordLayer", "ciphers_for"]


def ciphers_for(keys: KeyBlock, is_client: bool) -> tuple[RecordCipher, RecordCipher]:
    """(read cipher, write cipher) for one side of a key block."""
    client = RecordCipher(keys.client_write_key, keys.client_salt)
    server = RecordCipher(keys.server_write_key, keys.server_salt)
    return (server, client) if is_client else (client, server)


class RecordLayer:
    """Seals outgoing records and opens incoming ones for both epochs.

    ``out_cid`` is the connection ID put into our epoch-1 records (the
    device puts the server's; the server, given an empty client CID, none);
    ``in_cid`` the one our peer must put into its epoch-1 records.
    """

    __slots__ = (
        "_read_cipher",
        "_write_cipher",
        "in_cid",
        "out_cid",
        "padding",
        "read_epoch",
        "windows",
        "write_epoch",
        "write_sequences",
    )

    def __init__(
        self,
        out_cid: bytes | None,
        in_cid: bytes | None,
        first_sequence: int = 0,
        padding: int = CID_PADDING_GRANULARITY,
    ) -> None:
        self.out_cid = out_cid
        self.in_cid = in_cid
        self.padding = padding
        self.read_epoch = 0
        self.write_epoch = 0
        self.write_sequences = [first_sequence, 0]
        self.windows = [ReplayWindow(), ReplayWindow()]
        self._read_cipher: RecordCipher | None = None
        self._write_cipher: RecordCipher | None = None

    def install(self, read: RecordCipher, write: RecordCipher) -> None:
        """Keys for epoch 1; each direction switches on its ChangeCipherSpec."""
        self._read_cipher = read
        self._write_cipher = write

    @property
    def keys_ready(self) -> bool:
        return self._read_cipher is not None

    def next_sequence(self, epoch: int) -> int:
        sequence = self.write_sequences[epoch]
        if sequence > MAX_SEQUENCE:
            raise RecordError(f"epoch {epoch} sequence numbers exhausted")
        self.write_sequences[epoch] = sequence + 1
        return sequence

    def seal(self, content_type: int, payload: bytes, epoch: int | None = None) -> bytes:
        """One record of ``payload`` in ``epoch`` (default: the current write epoch)."""
        epoch = self.write_epoch if epoch is None else epoch
        sequence = self.next_sequence(epoch)
        if epoch == 0:
            return encode_record(content_type, 0, sequence, payload)
        if self._write_cipher is None:
            raise RecordError("no keys for epoch 1 yet")
        wire_type, fragment = self._write_cipher.seal(
            content_type, epoch, sequence, payload, self.out_cid or None, self.padding
        )
        cid = self.out_cid if wire_type != content_type else b""
        return encode_record(wire_type, epoch, sequence, fragment, cid or b"")

    def open(self, record: Record) -> tuple[int, bytes]:
        """(content type, plaintext) of a record of epoch 0 or of the read epoch.

        Raises :class:`RecordError` (drop it) for a wrong epoch or connection ID,
        :class:`ReplayedRecord` for a replay, :class:`BadRecordMac` for a forgery.  The
        caller holds back records of a future epoch itself.
        """
        epoch = record.epoch
        if epoch > self.read_epoch or epoch > 1:
            raise RecordError(f"record of epoch {epoch} while reading epoch {self.read_epoch}")
        window = self.windows[epoch]
        if not window.check(record.sequence):
            raise ReplayedRecord(f"replayed record (epoch {epoch}, sequence {record.sequence})")
        if epoch == 0:
            if record.has_cid:
                raise RecordError("connection-ID record in epoch 0")
            content_type, payload = record.content_type, record.fragment
        else:
            content_type, payload = self._open_protected(record)
        window.accept(record.sequence)
        return content_type, payload

    def _open_protected(self, record: Record) -> tuple[int, bytes]:
        assert self._read_cipher is not None
        if self.in_cid:
            if not record.has_cid:
                raise RecordError("epoch-1 record without the connection ID it must carry")
            if record.cid != self.in_cid:
                raise RecordError("record carries another connection ID")
            return self._read_cipher.open(
                record.content_type,
                record.epoch,
                record.sequence,
                record.fragment,
                record.cid,
                record.version,
            )
        if record.has_cid:
            raise RecordError("connection-ID record where none was negotiated")
        return self._read_cipher.open(
            record.content_type,
            record.epoch,
            record.sequence,
            record.fragment,
            None,
            record.version,
        )
