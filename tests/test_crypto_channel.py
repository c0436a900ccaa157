"""AES-128-CBC frames with the Spark IV rule, and framing (twisted_spark.crypto.channel)."""

import pytest
import vectors
from Crypto.Cipher import AES

from twisted_spark.crypto.channel import AesCbcChannel, FrameError, FrameReader, frame

# -- known vectors --------------------------------------------------------------------


def test_plain_aes_check():
    """§13.2 TestAES: a 21-byte message pads with 11 x 0x0b to 32 bytes."""
    channel = AesCbcChannel(vectors.FIXTURE_KEY, vectors.FIXTURE_IV)
    assert channel.encrypt(vectors.AES_CHECK_PLAINTEXT) == vectors.AES_CHECK_CIPHERTEXT
    receiver = AesCbcChannel(vectors.FIXTURE_KEY, vectors.FIXTURE_IV)
    assert receiver.decrypt(vectors.AES_CHECK_CIPHERTEXT) == vectors.AES_CHECK_PLAINTEXT


@pytest.mark.parametrize("row", list(vectors.FIXTURE.values()), ids=lambda row: row.name)
def test_fixture_frames(row):
    """Every §13.2 frame decrypts to its CoAP bytes and re-encrypts to itself."""
    assert AesCbcChannel(vectors.FIXTURE_KEY, row.iv).decrypt(row.ciphertext) == row.plaintext
    assert AesCbcChannel(vectors.FIXTURE_KEY, row.iv).encrypt(row.plaintext) == row.ciphertext


@pytest.mark.parametrize("row", list(vectors.TRANSCRIPT.values()), ids=lambda row: row.name)
def test_transcript_frames(row):
    """Every §13.3 (IV, ciphertext) -> plaintext triple holds both ways."""
    assert AesCbcChannel(vectors.CF_KEY, row.iv).decrypt(row.ciphertext) == row.plaintext
    assert AesCbcChannel(vectors.CF_KEY, row.iv).encrypt(row.plaintext) == row.ciphertext


def test_channel_from_session_and_hello_frame():
    """The first device frame on the wire, length prefix included (§13.3)."""
    device = AesCbcChannel.from_session(vectors.CF_SESSION)
    assert device.send_iv == device.receive_iv == vectors.CF_IV0
    hello = vectors.TRANSCRIPT["device_hello"].plaintext
    assert device.encrypt_frame(hello) == vectors.CF_HELLO_FRAME


# -- IV chaining (§4.3, §13.4) ----------------------------------------------------------

DEVICE_SEND_CHAIN = ["device_hello", "update_begin_ack", "update_ready", "chunk_missed"]


def test_device_send_chain_encrypts_like_the_firmware():
    """Hello -> ACK -> UpdateReady -> ChunkMissed, each IV = previous frame's first block."""
    device = AesCbcChannel.from_session(vectors.CF_SESSION)
    for name in DEVICE_SEND_CHAIN:
        row = vectors.TRANSCRIPT[name]
        assert device.send_iv == row.iv
        assert device.encrypt(row.plaintext) == row.ciphertext
        assert device.send_iv == row.ciphertext[:16]
    assert device.receive_iv == vectors.CF_IV0, "sending must not move the receive IV"


def test_server_receives_device_chain():
    server = AesCbcChannel.from_session(vectors.CF_SESSION)
    for name in DEVICE_SEND_CHAIN:
        row = vectors.TRANSCRIPT[name]
        assert server.decrypt(row.ciphertext) == row.plaintext
        assert server.receive_iv == row.ciphertext[:16]
    assert server.send_iv == vectors.CF_IV0, "receiving must not move the send IV"


def test_next_iv_is_first_block_not_last():
    """§13.4: after the 48-byte Describe reply the Ping uses the reply's FIRST block."""
    device = AesCbcChannel.from_session(vectors.CF_SESSION)
    device.encrypt(vectors.TRANSCRIPT["device_hello"].plaintext)
    reply = vectors.TRANSCRIPT["describe_reply"]
    assert device.encrypt(reply.plaintext) == reply.ciphertext
    ping = device.encrypt(vectors.CHAIN_PING.plaintext)
    assert ping == vectors.CHAIN_PING.ciphertext
    assert ping != vectors.CHAIN_PING_WRONG_LAST_BLOCK_CT
    # and the wrong rule really would have produced the other ciphertext
    last_block_iv = reply.ciphertext[-16:]
    standard = AES.new(vectors.CF_KEY, AES.MODE_CBC, iv=last_block_iv).encrypt(
        vectors.CHAIN_PING.plaintext + b"\x0c" * 12
    )
    assert standard == vectors.CHAIN_PING_WRONG_LAST_BLOCK_CT


def test_server_send_chain():
    """§13.4 server direction: Describe (iv0), then VariableRequest with IV = Describe ct."""
    server = AesCbcChannel.from_session(vectors.CF_SESSION)
    describe = vectors.TRANSCRIPT["describe"]
    assert server.encrypt(describe.plaintext) == describe.ciphertext
    assert server.encrypt(vectors.CHAIN_VARIABLE_REQUEST.plaintext) == (
        vectors.CHAIN_VARIABLE_REQUEST.ciphertext
    )
    device = AesCbcChannel.from_session(vectors.CF_SESSION)
    assert device.decrypt(describe.ciphertext) == describe.plaintext
    assert device.decrypt(vectors.CHAIN_VARIABLE_REQUEST.ciphertext) == (
        vectors.CHAIN_VARIABLE_REQUEST.plaintext
    )


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 100, 608, 1000])
def test_round_trip_many_frames_each_size(size):
    """Encrypt and decrypt runs of frames of every padding shape (ECB and CBC paths)."""
    sender = AesCbcChannel(bytes(range(16)), bytes(range(16, 32)))
    receiver = AesCbcChannel(bytes(range(16)), bytes(range(16, 32)))
    for index in range(5):
        plaintext = bytes((index + i) & 0xFF for i in range(size))
        ciphertext = sender.encrypt(plaintext)
        assert len(ciphertext) == (size & ~15) + 16
        assert receiver.decrypt(ciphertext) == plaintext


def test_aligned_plaintext_gets_a_full_padding_block():
    channel = AesCbcChannel(bytes(16), bytes(16))
    ciphertext = channel.encrypt(bytes(16))
    assert len(ciphertext) == 32
    raw = AES.new(bytes(16), AES.MODE_CBC, iv=bytes(16)).decrypt(ciphertext)
    assert raw[16:] == b"\x10" * 16


# -- decrypt errors --------------------------------------------------------------------


def _raw_cbc(plaintext_blocks: bytes, iv: bytes = bytes(16)) -> bytes:
    return AES.new(bytes(16), AES.MODE_CBC, iv=iv).encrypt(plaintext_blocks)


@pytest.mark.parametrize(
    "padded",
    [
        pytest.param(bytes(16), id="pad-byte-0"),
        pytest.param(bytes(15) + b"\x11", id="pad-byte-17"),
        pytest.param(bytes(14) + b"\x03\x02", id="inconsistent"),
        pytest.param(bytes(13) + b"\x04\x04\x04", id="pad-longer-than-run"),
        pytest.param(bytes(16) + b"\xff" * 16, id="pad-byte-ff"),
    ],
)
def test_bad_padding(padded):
    ciphertext = _raw_cbc(padded)
    channel = AesCbcChannel(bytes(16), bytes(16))
    with pytest.raises(FrameError, match="padding"):
        channel.decrypt(ciphertext)
    assert channel.receive_iv == ciphertext[:16], "IV advances even for a rejected frame"


def test_valid_padding_edge_cases():
    """Pad values 1 and 16 are both valid."""
    channel = AesCbcChannel(bytes(16), bytes(16))
    assert channel.decrypt(_raw_cbc(b"A" * 15 + b"\x01")) == b"A" * 15
    ciphertext = _raw_cbc(b"\x10" * 16, iv=channel.receive_iv)
    assert channel.decrypt(ciphertext) == b""


def test_length_not_multiple_of_16_still_moves_iv():
    channel = AesCbcChannel(bytes(16), bytes(16))
    data = bytes(range(20))
    with pytest.raises(FrameError, match="20 is not a multiple of 16"):
        channel.decrypt(data)
    assert channel.receive_iv == data[:16]


def test_empty_frame():
    channel = AesCbcChannel(bytes(16), bytes(16))
    with pytest.raises(FrameError, match="empty"):
        channel.decrypt(b"")
    assert channel.receive_iv == bytes(16)


def test_short_frame_leaves_iv():
    channel = AesCbcChannel(bytes(16), b"\x01" * 16)
    with pytest.raises(FrameError):
        channel.decrypt(b"abc")
    assert channel.receive_iv == b"\x01" * 16


def test_wrong_key_gives_frame_error_not_garbage():
    """With a wrong key the padding check fails (for this frame)."""
    row = vectors.TRANSCRIPT["describe"]
    channel = AesCbcChannel(bytes(16), row.iv)
    with pytest.raises(FrameError):
        channel.decrypt(row.ciphertext)


def test_decrypt_accepts_memoryview_and_bytearray():
    row = vectors.TRANSCRIPT["describe_reply"]
    assert (
        AesCbcChannel(vectors.CF_KEY, row.iv).decrypt(memoryview(row.ciphertext)) == row.plaintext
    )
    assert AesCbcChannel(vectors.CF_KEY, row.iv).decrypt(bytearray(row.ciphertext)) == row.plaintext


def test_constructor_checks_sizes():
    with pytest.raises(ValueError):
        AesCbcChannel(bytes(15), bytes(16))
    with pytest.raises(ValueError):
        AesCbcChannel(bytes(16), bytes(8))
    with pytest.raises(ValueError):
        AesCbcChannel.from_session(bytes(32))


# -- framing -------------------------------------------------------------------------


def test_frame_prefix():
    assert frame(bytes(16)) == b"\x00\x10" + bytes(16)
    assert frame(bytes(0x1230))[:2] == b"\x12\x30"
    with pytest.raises(FrameError):
        frame(bytes(0x10000))


def _frames(*sizes: int) -> list[bytes]:
    return [bytes((size + i) & 0xFF for i in range(size)) for size in sizes]


def test_reader_several_frames_in_one_feed():
    bodies = _frames(16, 48, 32, 16)
    reader = FrameReader()
    assert reader.feed(b"".join(frame(b) for b in bodies)) == bodies
    assert reader.buffered == 0


def test_reader_byte_at_a_time():
    bodies = _frames(16, 608, 32)
    stream = b"".join(frame(b) for b in bodies)
    ends = set()
    position = 0
    for body in bodies:
        position += 2 + len(body)
        ends.add(position)
    reader = FrameReader()
    got = []
    for index in range(len(stream)):
        out = reader.feed(stream[index : index + 1])
        if index + 1 in ends:
            assert len(out) == 1, f"frame should complete at byte {index + 1}"
        else:
            assert out == []
        got.extend(out)
    assert got == bodies
    assert reader.buffered == 0


def test_reader_split_across_feeds_with_leftover():
    bodies = _frames(16, 32, 64)
    stream = b"".join(frame(b) for b in bodies)
    reader = FrameReader()
    assert reader.feed(stream[:1]) == []
    assert reader.feed(stream[1:20]) == [bodies[0]]
    assert reader.buffered == 2
    assert reader.feed(stream[20:60]) == [bodies[1]]
    assert reader.feed(stream[60:]) == [bodies[2]]
    assert reader.buffered == 0


def test_reader_accepts_memoryview_and_bytearray():
    body = bytes(range(32))
    reader = FrameReader()
    assert reader.feed(memoryview(frame(body))[:10]) == []
    assert reader.feed(bytearray(frame(body)[10:])) == [body]


def test_reader_many_frames_and_big_frame():
    bodies = _frames(*([16] * 2000 + [4096]))
    stream = b"".join(frame(b) for b in bodies)
    reader = FrameReader(max_length=4096)
    got = []
    for start in range(0, len(stream), 1000):
        got.extend(reader.feed(stream[start : start + 1000]))
    assert got == bodies


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"\x00\x00", "length is 0"),
        (b"\x00\x11", "17 is not a multiple of 16"),
        (b"\x10\x10", "4112 is over the limit of 4096"),
    ],
)
def test_reader_rejects_bad_lengths_on_the_header(header, reason):
    """The error comes as soon as the 2 length bytes arrive, before any body."""
    reader = FrameReader(max_length=4096)
    with pytest.raises(FrameError, match=reason):
        reader.feed(header)


def test_reader_rejects_bad_frame_after_good_one_and_stays_failed():
    good = bytes(16)
    reader = FrameReader(max_length=64)
    with pytest.raises(FrameError, match="over the limit of 64"):
        reader.feed(frame(good) + b"\x00\x50")
    with pytest.raises(FrameError):
        reader.feed(frame(good))


def test_reader_byte_at_a_time_oversize():
    reader = FrameReader(max_length=32)
    assert reader.feed(b"\x00") == []
    with pytest.raises(FrameError, match="over the limit"):
        reader.feed(b"\x30")


def test_reader_max_length_bounds():
    with pytest.raises(ValueError):
        FrameReader(max_length=0)
    with pytest.raises(ValueError):
        FrameReader(max_length=70000)


def test_reader_then_channel_end_to_end():
    """Frames written by one channel come out of a FrameReader and decrypt in order."""
    sender = AesCbcChannel.from_session(vectors.CF_SESSION)
    receiver = AesCbcChannel.from_session(vectors.CF_SESSION)
    messages = [b"hello", b"x" * 40, b"", b"y" * 500]
    stream = b"".join(sender.encrypt_frame(m) for m in messages)
    reader = FrameReader()
    got = [
        receiver.decrypt(body)
        for chunk in (stream[:7], stream[7:300], stream[300:])
        for body in reader.feed(chunk)
    ]
    assert got == messages
