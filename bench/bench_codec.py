"""Compare our CoAP codec with aiocoap's Message codec on typical Spark messages.

Run from the repository root::

    PYTHONPATH=. python bench/bench_codec.py

Prints thousands of operations per second (best of several runs) for
decode and for encode-from-fields, for both codecs, plus our builders,
the AES frame channel and (with the shipped test keys) the milliseconds
each RSA handshake step costs.  aiocoap is optional: without it only our
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
from twisted_spark.crypto.keys import RsaKey, load_server_private_key, public_key_der

try:
    from aiocoap.message import Message as AioMessage
    from aiocoap.numbers.codes import Code as AioCode
    from aiocoap.numbers.types import Type as AioType
except ImportError:  # pragma: no cover - aiocoap is a declared dependency
    AioMessage = None

REPEAT = 5


def rate(function: Callable[[], object], number: int = 20000) -> float:
    """Best-of-REPEAT thousands of calls per second."""
    best = min(timeit.repeat(function, number=number, repeat=REPEAT))
    return number / best / 1000


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


def aio_message(mtype: int, code: int, mid: int, token: bytes, options, payload: bytes):
    """Build an outgoing aiocoap Message with the same fields (text options as str)."""
    message = AioMessage(code=AioCode(code), payload=payload)
    message.mtype = AioType(mtype)
    message.mid = mid
    message.token = token
    paths = [value.decode() for number, value in options if number == 11]
    queries = [value.decode() for number, value in options if number == 15]
    ages = [value for number, value in options if number == 14]
    if paths:
        message.opt.uri_path = paths
    if queries:
        message.opt.uri_query = queries
    if ages:
        message.opt.max_age = int.from_bytes(ages[0], "big")
    return message


def bench_case(name: str, mtype: int, code: int, mid: int, token: bytes, options, payload: bytes):
    """Print one row: our decode/encode and aiocoap's on the same message."""
    raw = codec.encode_message(mtype, code, mid, token, options, payload)
    option_tuple = tuple(options)
    ours_decode = rate(lambda: codec.decode(raw))
    ours_encode = rate(
        lambda: codec.CoapMessage(mtype, code, mid, token, option_tuple, payload).encode()
    )
    if AioMessage is None:
        print(f"{name:20} {ours_decode:9.0f} {'-':>9} {ours_encode:9.0f} {'-':>9}")
        return
    aio_decode = rate(lambda: AioMessage.decode(raw))
    aio_encode = rate(lambda: aio_message(mtype, code, mid, token, options, payload).encode())
    same = aio_message(mtype, code, mid, token, options, payload).encode() == raw
    note = "" if same else "  (aiocoap bytes differ: it re-encodes Max-Age minimally)"
    print(
        f"{name:20} {ours_decode:9.0f} {aio_decode:9.0f} "
        f"{ours_encode:9.0f} {aio_encode:9.0f}{note}"
    )


def bench_codecs() -> None:
    print(f"{'message':20} {'ours dec':>9} {'aio dec':>9} {'ours enc':>9} {'aio enc':>9}  k ops/s")
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

    server = load_server_private_key((keys / "server.pem").read_bytes())
    device: RsaKey = RSA.import_key((keys / "device-1.pem").read_bytes())
    nonce = handshake.make_nonce()
    device_id = os.urandom(12)
    core = handshake.encrypt_identity(server.public_key(), nonce, device_id)
    photon = handshake.encrypt_identity(
        server.public_key(), nonce, device_id, public_key_der(device)
    )
    _, blob = handshake.build_session_blob(server, device.public_key())
    print("\nRSA handshake steps (ms per call; server side runs in a thread pool)")
    rows = {
        "decrypt_identity (Core, 52 B)": lambda: handshake.decrypt_identity(server, core, nonce),
        "decrypt_identity (Photon, 214 B)": lambda: handshake.decrypt_identity(
            server, photon, nonce
        ),
        "build_session_blob": lambda: handshake.build_session_blob(server, device.public_key()),
        "  of which sign_raw": lambda: handshake.sign_raw(server, bytes(20)),
        "device: encrypt_identity": lambda: handshake.encrypt_identity(
            server.public_key(), nonce, device_id
        ),
        "device: open_session_blob": lambda: handshake.open_session_blob(
            device, server.public_key(), blob
        ),
    }
    for name, function in rows.items():
        print(f"  {name:34} {milliseconds(function):6.2f}")


if __name__ == "__main__":
    bench_codecs()
    bench_builders()
    bench_channel()
    bench_handshake()
