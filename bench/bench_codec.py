"""Compare our CoAP codec with aiocoap's Message codec on typical Spark messages.

Run from the repository root (aiocoap comes with the ``bench`` or ``test``
extra: ``pip install '.[bench]'``)::

    PYTHONPATH=. python bench/bench_codec.py

Prints thousands of operations per second (best of several runs) and our
speed-up over aiocoap, like for like on each side:

decode
    bytes to a message, then read every field as the server uses it:
    header fields, token, Uri-Path as text, Uri-Query, Max-Age as an
    integer, payload.  (aiocoap types options while decoding; ours keeps
    raw bytes until a property is read, so reading them is part of the
    cost.)  Both decoders are first checked to agree on every value.
encode
    wire bytes from a message object built beforehand.
build+encode
    build the message object from fields prepared beforehand (each codec's
    own form: our raw option tuples, aiocoap's typed option values), then
    encode.

Then our builders, the AES frame channel and (with the shipped test keys)
the milliseconds each RSA handshake step costs.  Without aiocoap only our
numbers are printed.
"""

from __future__ import annotations

import os
import timeit
from collections.abc import Callable
from pathlib import Path

from twisted_spark.coap import codec, messages
from twisted_spark.crypto import handshake
from twisted_spark.crypto.channel import AesCbcChannel
from twisted_spark.crypto.keys import (
    RsaKey,
    load_server_private_key,
    openssl_private_key,
    public_key_der,
)

try:
    from aiocoap.message import Message as AioMessage
    from aiocoap.numbers.codes import Code as AioCode
    from aiocoap.numbers.types import Type as AioType
except ImportError:  # aiocoap is in the bench and test extras only
    AioMessage = None

REPEAT = 5


def rate(function: Callable[[], object], number: int = 20000) -> float:
    """Best-of-REPEAT thousands of calls per second."""
    best = min(timeit.repeat(function, number=number, repeat=REPEAT))
    return number / best / 1000


def paired_rates(
    ours: Callable[[], object], theirs: Callable[[], object], number: int = 20000
) -> tuple[float, float]:
    """Best-of-REPEAT thousands of calls per second for each, runs interleaved.

    Alternating the two keeps a change in machine load from landing on one
    side only, so the ratio holds up on a busy machine.
    """
    best_ours = best_theirs = float("inf")
    for _ in range(REPEAT):
        best_ours = min(best_ours, timeit.timeit(ours, number=number))
        best_theirs = min(best_theirs, timeit.timeit(theirs, number=number))
    return number / best_ours / 1000, number / best_theirs / 1000


# name, type, code, mid, token, [(option, value)], payload
CASES = [
    ("Hello (device)", 1, 0x02, 0xF649, b"", [(11, b"h")], bytes.fromhex("ffffffff0000")),
    (
        "FunctionCall",
        0,
        0x02,
        0xABCD,
        b"\xef",
        [(11, b"f"), (11, b"brew"), (15, b"32,240")],
        b"",
    ),
    ("VariableValue (ACK)", 2, 0x45, 0x97B2, b"\x88", [], bytes.fromhex("fffe7e33")),
    (
        "Event (with Max-Age)",
        1,
        0x02,
        0x97B3,
        b"",
        [(11, b"E"), (11, b"lake-depth/1"), (14, bytes.fromhex("005460"))],
        b"28m",
    ),
]


def read_ours(message: codec.CoapMessage) -> tuple:
    """Every field of one of our messages, options typed as the server reads them."""
    return (
        message.type,
        message.code,
        message.message_id,
        message.token,
        message.uri_path,
        message.uri_query,
        message.max_age,
        message.payload,
    )


def read_aio(message) -> tuple:
    """The same fields of an aiocoap message."""
    options = message.opt
    return (
        message.mtype,
        message.code,
        message.mid,
        message.token,
        options.uri_path,
        options.uri_query,
        options.max_age,
        message.payload,
    )


def decode_ours(raw: bytes) -> tuple:
    return read_ours(codec.decode(raw))


def decode_aio(raw: bytes) -> tuple:
    return read_aio(AioMessage.decode(raw))


def aio_fields(options) -> dict:
    """aiocoap's typed option keyword arguments for our (number, bytes) options."""
    fields = {}
    paths = [value.decode() for number, value in options if number == 11]
    queries = [value.decode() for number, value in options if number == 15]
    ages = [value for number, value in options if number == 14]
    if paths:
        fields["uri_path"] = paths
    if queries:
        fields["uri_query"] = queries
    if ages:
        fields["max_age"] = int.from_bytes(ages[0], "big")
    return fields


def build_aio(mtype, code, mid: int, token: bytes, fields: dict, payload: bytes):
    """An outgoing aiocoap Message; header fields set as attributes (the
    constructor's mtype/mid/token arguments are deprecated and warn)."""
    message = AioMessage(code=code, payload=payload, **fields)
    message.mtype = mtype
    message.mid = mid
    message.token = token
    return message


def check_agreement(raw: bytes) -> None:
    """Both decoders must produce the same values, or the timings compare nothing."""
    ours = decode_ours(raw)
    theirs = decode_aio(raw)
    normal = (
        int(theirs[0]),
        int(theirs[1]),
        theirs[2],
        theirs[3],
        list(theirs[4]),
        [query.encode() for query in theirs[5]],
        theirs[6],
        theirs[7],
    )
    if tuple(normal) != tuple(ours[:4]) + (ours[4], ours[5], ours[6], ours[7]):
        raise SystemExit(f"decoders disagree on {raw.hex()}: {ours} != {normal}")


def bench_case(name: str, mtype: int, code: int, mid: int, token: bytes, options, payload: bytes):
    """Print one row: decode, encode and build+encode, ours then aiocoap's."""
    raw = codec.encode_message(mtype, code, mid, token, options, payload)
    option_tuple = tuple(options)
    message_type = codec.MessageType(mtype)
    ours_message = codec.CoapMessage(message_type, code, mid, token, option_tuple, payload)
    ours = (
        lambda: decode_ours(raw),
        ours_message.encode,
        lambda: codec.CoapMessage(message_type, code, mid, token, option_tuple, payload).encode(),
    )
    if AioMessage is None:
        print(f"{name:20}" + "".join(f" {rate(f):6.0f} {'-':>6} {'-':>5}" for f in ours))
        return
    check_agreement(raw)
    aio_type, aio_code, fields = AioType(mtype), AioCode(code), aio_fields(options)
    aio_message = build_aio(aio_type, aio_code, mid, token, fields, payload)
    theirs = (
        lambda: decode_aio(raw),
        aio_message.encode,
        lambda: build_aio(aio_type, aio_code, mid, token, fields, payload).encode(),
    )
    rates = [paired_rates(mine, other) for mine, other in zip(ours, theirs, strict=True)]
    note = "" if aio_message.encode() == raw else "  (aiocoap writes Max-Age in 2 bytes, not 3)"
    print(
        f"{name:20}"
        + "".join(f" {a:6.0f} {b:6.0f} {a / b:4.1f}x" for a, b in rates)
        + note
    )


def bench_codecs() -> None:
    print(f"{'':20} {'decode':^19} {'encode':^19} {'build+encode':^19}  k ops/s")
    print(f"{'message':20}" + " {:>6} {:>6} {:>5}".format("ours", "aio", "ratio") * 3)
    for case in CASES:
        bench_case(*case)


def bench_builders() -> None:
    print("\nbuilders (k ops/s)")
    cases = {
        "hello": lambda: messages.hello(1),
        "function_call": lambda: messages.function_call(0xABCD, 0xEF, "brew", b"32,240"),
        "variable_request": lambda: messages.variable_request(0x97B2, 0x88, "temperature"),
        "event": lambda: messages.event(0xBBBB, "teapot-boiled", "208F"),
        "empty_ack": lambda: messages.empty_ack(0x1234),
        "classify+parse_event": lambda: messages.parse_event(
            codec.decode(b"\x50\x02\x97\xb3\xb1\x45\x0clake-depth/1\x33\x00\x54\x60\xff28m")
        ),
    }
    for name, function in cases.items():
        print(f"  {name:22} {rate(function):8.0f}")


def bench_channel(count: int = 20000) -> None:
    """Encrypt a run of frames, then decrypt the same run in order (the IV chains)."""
    print("\nAES frame channel (k frames/s)")
    for size in (13, 45, 200, 600):
        plaintext = bytes(size)
        best_encrypt = best_decrypt = float("inf")
        for _ in range(REPEAT):
            sender = AesCbcChannel(bytes(16), bytes(16))
            receiver = AesCbcChannel(bytes(16), bytes(16))
            start = timeit.default_timer()
            frames = [sender.encrypt(plaintext) for _ in range(count)]
            best_encrypt = min(best_encrypt, timeit.default_timer() - start)
            start = timeit.default_timer()
            for ciphertext in frames:
                receiver.decrypt(ciphertext)
            best_decrypt = min(best_decrypt, timeit.default_timer() - start)
        print(
            f"  {size:4} B  encrypt {count / best_encrypt / 1000:7.0f}"
            f"  decrypt {count / best_decrypt / 1000:7.0f}"
        )


def milliseconds(function: Callable[[], object], number: int = 200) -> float:
    """Best-of-REPEAT milliseconds per call."""
    return min(timeit.repeat(function, number=number, repeat=REPEAT)) / number * 1000


def bench_handshake() -> None:
    keys = Path(__file__).resolve().parent.parent / "tests" / "keys"
    if not (keys / "server.pem").exists():
        return
    from Crypto.PublicKey import RSA

    server_pycryptodome = load_server_private_key((keys / "server.pem").read_bytes())
    server = openssl_private_key(server_pycryptodome)  # as the device server holds it
    device: RsaKey = RSA.import_key((keys / "device-1.pem").read_bytes())
    nonce = handshake.make_nonce()
    device_id = os.urandom(12)
    server_public = server_pycryptodome.public_key()
    core = handshake.encrypt_identity(server_public, nonce, device_id)
    photon = handshake.encrypt_identity(server_public, nonce, device_id, public_key_der(device))
    _, blob = handshake.build_session_blob(server, device.public_key())
    print("\nRSA handshake steps (ms per call; server side runs in a thread pool)")
    rows = {
        "decrypt_identity (Core, 52 B)": lambda: handshake.decrypt_identity(server, core, nonce),
        "decrypt_identity (Photon, 214 B)": lambda: handshake.decrypt_identity(
            server, photon, nonce
        ),
        "build_session_blob": lambda: handshake.build_session_blob(server, device.public_key()),
        "  of which sign_raw": lambda: handshake.sign_raw(server, bytes(20)),
        "  sign_raw, pycryptodome key": lambda: handshake.sign_raw(
            server_pycryptodome, bytes(20)
        ),
        "device: encrypt_identity": lambda: handshake.encrypt_identity(
            server_public, nonce, device_id
        ),
        "device: open_session_blob": lambda: handshake.open_session_blob(
            device, server_public, blob
        ),
    }
    for name, function in rows.items():
        print(f"  {name:34} {milliseconds(function):6.2f}")


if __name__ == "__main__":
    bench_codecs()
    bench_builders()
    bench_channel()
    bench_handshake()
