# -*- test-case-name: tests.test_crypto_channel -*-
"""AES-128-CBC frame encryption with the protocol's IV rule, and framing.

PROTOCOL.md §4: each frame is a fresh CBC run, PKCS#7 padded; after every
frame the next IV *of that direction* is the FIRST ciphertext block of the
frame just sent or received (not the last, as chained CBC would have it).
Frames on the wire are a 2-byte big-endian length, then the ciphertext.

Speed (µs per frame, 16 / 48 / 128 / 608-byte frames, on the 2-core machine of
the issue-17 second pass): OpenSSL's AES through ``cryptography`` with one
reusable ECB context per direction, the CBC chaining done on Python ints.
Decrypting: one ECB call for the whole frame and one big-int XOR, 1.0 / 1.2 /
1.4 / 5.2 (pycryptodome's reusable ECB object, whose every call crosses
cffi, took 8.2 / 8.8 / 6.3 / 7.9).  Encrypting: the per-block ECB loop takes
1.9 / 6.8 / 14.6 / 51, a fresh CBC context 12.5 / 10.0 / 8.4 / 11.3, so the
loop up to four blocks and a CBC context above (pycryptodome: 7.0 / 26 /
26 / 31).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_MAX_FRAME_LENGTH",
    "AesCbcChannel",
    "FrameError",
    "FrameReader",
    "frame",
]

BLOCK_SIZE = 16
DEFAULT_MAX_FRAME_LENGTH = 4096
_MAX_WIRE_LENGTH = 0xFFFF
_ECB_ENCRYPT_MAX = 4 * BLOCK_SIZE

Buffer = bytes | bytearray | memoryview


class FrameError(Exception):
    """A frame cannot be decrypted or framed; ``reason`` says why.

    There is no MAC on this link, so after a FrameError the stream can no
    longer be trusted: drop the connection.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _pad(plaintext: Buffer) -> bytes:
    count = BLOCK_SIZE - (len(plaintext) % BLOCK_SIZE)
    return bytes(plaintext) + bytes((count,)) * count


class AesCbcChannel:
    """Both directions of one session's encryption, with separate IV registers.

    ``encrypt`` is for frames we send, ``decrypt`` for frames we receive; the
    server and the (simulated) device each hold one.  Not thread-safe: the
    IV chain needs frames to be processed in wire order anyway.
    """

    __slots__ = ("_ecb_decrypt", "_ecb_encrypt", "_key", "_receive_iv", "_send_iv")

    def __init__(self, key: bytes, iv: bytes) -> None:
        if len(key) != 16:
            raise ValueError(f"AES-128 key must be 16 bytes, got {len(key)}")
        if len(iv) != BLOCK_SIZE:
            raise ValueError(f"IV must be 16 bytes, got {len(iv)}")
        self._key = bytes(key)
        ecb = Cipher(algorithms.AES(self._key), modes.ECB())
        # ECB keeps nothing between calls: whole blocks in, whole blocks out.
        self._ecb_encrypt = ecb.encryptor().update
        self._ecb_decrypt = ecb.decryptor().update
        self._send_iv = bytes(iv)
        self._receive_iv = bytes(iv)

    @classmethod
    def from_session(cls, session: bytes) -> AesCbcChannel:
        """Channel keyed by session[0:16] with both IVs = session[16:32]."""
        if len(session) != 40:
            raise ValueError(f"session must be 40 bytes, got {len(session)}")
        return cls(session[:16], session[16:32])

    @property
    def send_iv(self) -> bytes:
        """The IV the next outgoing frame will use."""
        return self._send_iv

    @property
    def receive_iv(self) -> bytes:
        """The IV the next incoming frame will be decrypted with."""
        return self._receive_iv

    def encrypt(self, plaintext: Buffer) -> bytes:
        """Pad and encrypt one message; the send IV becomes its first block."""
        padded = _pad(plaintext)
        if len(padded) <= _ECB_ENCRYPT_MAX:
            ecb_encrypt = self._ecb_encrypt
            previous = int.from_bytes(self._send_iv, "big")
            blocks = []
            for start in range(0, len(padded), BLOCK_SIZE):
                block = int.from_bytes(padded[start : start + BLOCK_SIZE], "big")
                encrypted = ecb_encrypt((block ^ previous).to_bytes(BLOCK_SIZE, "big"))
                blocks.append(encrypted)
                previous = int.from_bytes(encrypted, "big")
            ciphertext = b"".join(blocks)
        else:
            cbc = Cipher(algorithms.AES(self._key), modes.CBC(self._send_iv)).encryptor()
            ciphertext = cbc.update(padded) + cbc.finalize()
        self._send_iv = ciphertext[:BLOCK_SIZE]
        return ciphertext

    def decrypt(self, ciphertext: Buffer) -> bytes:
        """Decrypt and unpad one frame body.

        The receive IV moves to ciphertext[0:16] before any check (the
        device does the same), so it advances even for a rejected frame
        of 16 bytes or more.  Raises :class:`FrameError` for an empty body, a
        length that is not a multiple of 16, or bad PKCS#7 padding.
        """
        length = len(ciphertext)
        iv = self._receive_iv
        if length >= BLOCK_SIZE:
            self._receive_iv = bytes(ciphertext[:BLOCK_SIZE])
        if length == 0:
            raise FrameError("empty frame")
        if length % BLOCK_SIZE:
            raise FrameError(f"frame length {length} is not a multiple of 16")
        data = bytes(ciphertext)
        decrypted = self._ecb_decrypt(data)
        chain = iv + data[:-BLOCK_SIZE]
        plaintext = (
            int.from_bytes(decrypted, "big") ^ int.from_bytes(chain, "big")
        ).to_bytes(length, "big")
        count = plaintext[-1]
        if not 1 <= count <= BLOCK_SIZE or plaintext[-count:] != bytes((count,)) * count:
            raise FrameError("bad PKCS#7 padding")
        return plaintext[:-count]

    def encrypt_frame(self, plaintext: Buffer) -> bytes:
        """Encrypt and add the length prefix: bytes ready for the transport."""
        return frame(self.encrypt(plaintext))


def frame(ciphertext: Buffer) -> bytes:
    """Prefix a ciphertext with its 2-byte big-endian length."""
    length = len(ciphertext)
    if length > _MAX_WIRE_LENGTH:
        raise FrameError(f"frame of {length} bytes does not fit a 16-bit length")
    return length.to_bytes(2, "big") + bytes(ciphertext)


class FrameReader:
    """Cut a byte stream into frame bodies (ciphertexts).

    ``feed`` returns the complete bodies found so far and keeps the rest.
    A length of 0, one that is not a multiple of 16 or one over
    ``max_length`` raises :class:`FrameError` as soon as the 2-byte header
    arrives; the reader then stays failed (drop the connection).
    """

    __slots__ = ("_buffer", "_error", "max_length")

    def __init__(self, max_length: int = DEFAULT_MAX_FRAME_LENGTH) -> None:
        if not BLOCK_SIZE <= max_length <= _MAX_WIRE_LENGTH:
            raise ValueError(f"max_length must be between 16 and 65535, got {max_length}")
        self.max_length = max_length
        self._buffer = bytearray()
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer)

    def feed(self, data: Buffer) -> list[bytes]:
        """Add bytes from the stream; return the frame bodies now complete."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if buffer:
            buffer += data
            source: Buffer = buffer
        else:
            source = data
        end = len(source)
        position = 0
        frames = []
        max_length = self.max_length
        try:
            while end - position >= 2:
                length = (source[position] << 8) | source[position + 1]
                if length == 0 or length % BLOCK_SIZE or length > max_length:
                    raise FrameError(self._describe_bad_length(length))
                start = position + 2
                stop = start + length
                if stop > end:
                    break
                frames.append(bytes(source[start:stop]))
                position = stop
        except FrameError as error:
            self._error = error
            self._buffer = bytearray()
            raise
        if source is buffer:
            del buffer[:position]
        elif position < end:
            buffer += source[position:]
        return frames

    def _describe_bad_length(self, length: int) -> str:
        if length == 0:
            return "frame length is 0"
        if length % BLOCK_SIZE:
            return f"frame length {length} is not a multiple of 16"
        return f"frame length {length} is over the limit of {self.max_length} bytes"
