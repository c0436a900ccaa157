# -*- test-case-name: tests.test_fuzz_corpus -*-
"""Write the seed corpus of every target into ``fuzz/corpus/<target>/``.

Seeds are valid inputs taken from what the suite already trusts: the
PROTOCOL.md §13 vectors (``tests/vectors.py``), the Device OS captures of
``tests/test_coap_gen3.py``, the recorded DTLS and UDP transcripts
(``tests/dtls_transcripts``, ``tests/udp_transcripts``), messages built by
the same builders the simulator uses, and the requests real clients (the
Particle CLI, curl, the web console) send.  Run from the repository root
(``python -m fuzz.seeds``) after changing it; files are named by the SHA-1 of
their content, so re-running adds nothing twice.  Crash inputs found by the
fuzzer go in the same directories by hand, minimised (``-minimize_crash=1``).
"""

from __future__ import annotations

import hashlib
import json
import sys

from fuzz.cloud import TOKEN, device_cloud
from fuzz.harness import CORPUS, ROOT, SEPARATOR
from twisted_spark.coap import from_device, to_device
from twisted_spark.coap.codec import CoapMessage, Code, MessageType, OptionNumber
from twisted_spark.coap.payloads import UpdateParams
from twisted_spark.crypto.channel import AesCbcChannel
from twisted_spark.crypto.handshake import NONCE_LENGTH
from twisted_spark.crypto.keys import public_key_pem

sys.path.insert(0, str(ROOT / "tests"))
import vectors  # noqa: E402  (the suite's §13 vectors)

SYSTEM_DESCRIBE = bytes.fromhex(
    "0a19080218e8072880808005351e0000003d1e00000058848080050a20080318b830288080800535"
    "1e0000003d1e0000004a05080218e8075884808005")
GEN3_HELLO = bytes.fromhex(
    "40020001b168ff0003ffff00360003000c12ab34cd56ef7890a1b2c3d41838048000a000000200")
APPLICATION_DESCRIBE = bytes.fromhex(
    "4102000609b1644102ff7b2266223a5b2262756d70225d2c2276223a7b22636f756e746572223a327d7d")
SYSTEM_DESCRIBE_MESSAGE = bytes.fromhex(
    "4102000207b164112a3101ff") + SYSTEM_DESCRIBE


def _device_messages() -> list[bytes]:
    """What a device sends after its Hello, built as the simulator builds it."""
    mid = 0x0200
    return [
        from_device.device_event(mid + 1, "temperature", "21.5"),
        from_device.device_event(mid + 2, "spark/device/last_reset", "power_down", private=True),
        from_device.device_event(mid + 3, "with-ack", "x" * 40, ttl=600, confirmable=True),
        from_device.subscribe(mid + 4, "temp"),
        from_device.subscribe(mid + 5, None, my_devices=True),
        from_device.subscribe(mid + 6, "t", device_id="53ff73065067544816300187"),
        from_device.get_time(mid + 7, 3),
        from_device.describe_response(260, 1, vectors.DESCRIBE_JSON),
        from_device.function_return(mid + 8, 2, 42),
        from_device.variable_value(mid + 9, 2, b"\x00\x00\x00\x2a"),
        from_device.update_ready(mid + 10, 2, fast=True),
        from_device.chunk_received(mid + 11, 2),
        from_device.chunk_missed(mid + 12, [1, 2, 5]),
        from_device.device_update_done(mid + 13),
        from_device.signal_ack(mid + 14, 2),
        from_device.coded_ack(mid + 15, 1, Code.NOT_FOUND),
        to_device.ping(mid + 16),
        to_device.empty_ack(260),
    ]


def _coap_messages() -> list[bytes]:
    messages = [frame.plaintext for frame in vectors.FIXTURE.values()]
    messages += [plaintext for *_, plaintext in vectors._TRANSCRIPT]
    messages += _device_messages()
    messages += [
        to_device.hello(1), to_device.describe(2, 1), to_device.function_call(3, 1, "brew", "x"),
        to_device.variable_request(4, 1, "temperature"), to_device.signal(5, 1, True),
        to_device.update_begin(6, 1, UpdateParams(1, 512, 4096)), to_device.update_done(7, 1),
        to_device.chunk(8, 1, 0x01234567, b"data" * 16, index=3),
        to_device.event(9, "temp", "1", 60, False), to_device.time_reply(10, 1, 1_700_000_000),
        GEN3_HELLO, APPLICATION_DESCRIBE, SYSTEM_DESCRIBE_MESSAGE,
        CoapMessage(MessageType.CON, Code.POST, 11, b"\x07",
                    ((OptionNumber.URI_PATH, b"d"), (OptionNumber.URI_QUERY, b"\x02"),
                     (27, b"\x0e")), b"{" * 1024).encode(),
    ]
    return messages


def _blockwise() -> list[bytes]:
    body = b'{"f":["bump"],"v":{"counter":2}}' * 40
    blocks = [body[i:i + 64] for i in range(0, len(body), 64)]
    first = []
    for number, block in enumerate(blocks):
        more = number < len(blocks) - 1
        option = ((number << 4) | (8 if more else 0) | 2).to_bytes(3, "big").lstrip(b"\0")
        first.append(CoapMessage(MessageType.CON, Code.POST, number, b"\x01",
                                 ((OptionNumber.URI_PATH, b"d"), (27, option)), block).encode())
    second = [CoapMessage(MessageType.ACK, Code.CONTENT, number, b"\x02",
                          ((4, b"tag1"), (23, bytes(((number << 4) | (8 if number < 2 else 0)
                                                     | 2,)))), b"y" * 64).encode()
              for number in range(3)]
    return [SEPARATOR.join(first), SEPARATOR.join(second), SEPARATOR.join(first[:2] + first)]


def _spark_messages() -> list[bytes]:
    from fuzz.targets.spark_messages import MESSAGE_PARSERS, PAYLOAD_PARSERS

    payloads = [
        bytes.fromhex("ffffffff0000"), bytes.fromhex("ffffffff00000006"),
        vectors.DESCRIBE_JSON, b'{"f":["a","b"],"v":{"x":9,"y":"4"},"p":6,"m":[]}',
        b"\x02\x00\x00\x00\x2a", b"\x09" + bytes(8), b"\x0000012345",
        b"\x00\x00\x01\xc8", b"\x01", bytes.fromhex("0102000000100000000000000000"),
        bytes.fromhex("000100020005"), GEN3_HELLO[6:],
        b'{"f":["bump"],"v":{"counter":2}}',
    ]
    seeds = [bytes((index,)) + payload
             for index in range(len(PAYLOAD_PARSERS)) for payload in payloads]
    seeds += [bytes((len(PAYLOAD_PARSERS) + index,)) + message
              for index in range(len(MESSAGE_PARSERS)) for message in _coap_messages()[::3]]
    return seeds


def _aes_channel() -> list[bytes]:
    frames = [len(f.ciphertext).to_bytes(2, "big") + f.ciphertext
              for f in vectors.FIXTURE.values()]
    channel = AesCbcChannel.from_session(bytes(range(40)))
    own = [channel.encrypt_frame(message) for message in _device_messages()[:6]]
    return [vectors.CF_HELLO_FRAME, b"".join(frames), SEPARATOR.join(own),
            b"".join(own)[:100] + SEPARATOR + b"".join(own)[100:]]


def _tcp_handshake() -> list[bytes]:
    from fuzz.harness import constant_random, test_keys

    _, devices = test_keys()
    identity = constant_random(NONCE_LENGTH) + bytes.fromhex("1a118ad1c886d54240ce4b17")
    der = devices[0].public_key().export_key("DER")
    blob = device_cloud().identity_blob
    return [
        b"\x00" + identity, b"\x00" + identity + der,
        b"\x00" + identity + public_key_pem(devices[0]).encode(),
        b"\x00" + identity + devices[0].public_key().export_key("DER", pkcs=1),
        b"\x01" + blob, b"\x01" + blob[:100] + SEPARATOR + blob[100:], b"\x01" + bytes(300),
    ]


def _tcp_session() -> list[bytes]:
    messages = _device_messages()
    return [
        b"\x00" + SEPARATOR.join(messages),
        b"\x00" + SEPARATOR.join(messages[:3]),
        b"\x00" + from_device.describe_response(260, 1, vectors.DESCRIBE_JSON),
        b"\x02" + SEPARATOR.join([from_device.device_hello(0x0102, 6, 1, 0, 6), *messages[3:8]]),
        b"\x01" + vectors.CF_HELLO_FRAME + SEPARATOR + bytes(18),
        b"\x04" + SEPARATOR.join(_ota_answers(fast=True)),
        b"\x04" + SEPARATOR.join(_ota_answers(fast=False)),
    ]


def _ota_answers(fast: bool) -> list[bytes]:
    """A Photon's side of the 1 KiB update the tcp_session target starts (mode 4):
    UpdateBegin is CON mid 261 token 2; chunks then carry tokens 3 and 4."""
    mid = 0x2130
    answers = [to_device.empty_ack(260), from_device.describe_response(260, 1,
                                                                       vectors.DESCRIBE_JSON),
               to_device.empty_ack(261), from_device.update_ready(mid, 2, fast=fast)]
    if fast:
        answers += [from_device.chunk_missed(mid + 1, [1]), from_device.device_update_done(mid + 2)]
    else:
        answers += [from_device.chunk_received(mid + 1, 3), from_device.chunk_received(mid + 2, 4),
                    to_device.empty_ack(264)]
    return answers


def _multipart(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"'
                                                    if filename else "")
        out += (b"--B0undary\r\nContent-Disposition: " + disposition.encode() + b"\r\n"
                + (b"Content-Type: application/octet-stream\r\n" if filename else b"")
                + b"\r\n" + data + b"\r\n")
    return out + b"--B0undary--\r\n"


MULTIPART = _multipart([("file", "firmware.bin", b"\x00\x01" * 64),
                        ("platform_id", None, b"6"), ("file1", "app.ino", b"void setup(){}")])


def _bodies() -> list[tuple[bytes, bytes]]:
    return [
        (b"application/x-www-form-urlencoded",
         b"grant_type=password&username=a%40b.c&password=x&client_id=particle"),
        (b"application/x-www-form-urlencoded", b"name=temp&data=21.5&private=true&ttl=60"),
        (b"application/json", b'{"arg":"on","access_token":"abc","nested":{"a":[1,2.5,null]}}'),
        (b"application/json", b'{"id":"1a118ad1c886d54240ce4b17"}'),
        (b"multipart/form-data; boundary=B0undary", MULTIPART),
        (b"text/plain; charset=utf-8", b"args=x"),
        (b"", b"arg=1"),
    ]


def _api_bodies() -> list[bytes]:
    seeds = [content_type + b"\n" + body for content_type, body in _bodies()]
    seeds.append(b"application/json\t18\n" + b'{"a": [1, 2, 3]}')
    return seeds


def _sse_path() -> list[bytes]:
    return [b"/v1/events", b"/v1/events/spark%2Fstatus", b"/v1/events/spark/status?x=1",
            b"/v1/devices/events/temp", b"/v1/devices/1a118ad1c886d54240ce4b17/events/t%C3%A9",
            b"/v1/events/%ff%fe/\xe9"]


def _request(method: str, path: str, body: bytes = b"", content_type: bytes | None = None,
             auth: bool = True, extra: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n".encode()
    head += b"User-Agent: particle-cli\r\nAccept: */*\r\n"
    if auth:
        head += b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    if content_type is not None:
        head += b"Content-Type: " + content_type + b"\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n".encode()
    return head + extra + b"\r\n" + body


def _http_api() -> list[bytes]:
    device = "1a118ad1c886d54240ce4b17"
    form = b"application/x-www-form-urlencoded"
    requests = [
        _request("GET", "/v1/devices"),
        _request("GET", f"/v1/devices/{device}"),
        _request("POST", f"/v1/devices/{device}/brew", b"arg=on", form),
        _request("GET", f"/v1/devices/{device}/temperature"),
        _request("PUT", f"/v1/devices/{device}", b'{"name":"kettle"}', b"application/json"),
        _request("PUT", f"/v1/devices/{device}", b"signal=1", form),
        _request("POST", "/v1/devices", b"id=53ff73065067544816300187", form),
        _request("GET", "/v1/events/temp"),
        _request("GET", "/v1/devices/events?access_token=" + TOKEN, auth=False),
        _request("POST", "/v1/devices/events", b"name=temp&data=21&private=false", form),
        _request("POST", "/oauth/token",
                 b"grant_type=password&username=fuzz%40example.com&password=wrong",
                 form, auth=False, extra=b"Authorization: Basic cGFydGljbGU6cGFydGljbGU=\r\n"),
        _request("GET", "/v1/access_tokens", auth=False,
                 extra=b"Authorization: Basic ZnV6ekBleGFtcGxlLmNvbTp4\r\n"),
        _request("DELETE", f"/v1/access_tokens/{'ab' * 20}"),
        _request("PUT", f"/v1/devices/{device}", MULTIPART,
                 b"multipart/form-data; boundary=B0undary"),
        _request("POST", "/v1/binaries", MULTIPART, b"multipart/form-data; boundary=B0undary"),
        _request("GET", "/v1/user"),
        _request("OPTIONS", "/v1/devices", auth=False,
                 extra=b"Origin: http://x\r\nAccess-Control-Request-Method: POST\r\n"),
        _request("GET", "/metrics"),
        _request("GET", "/"),
    ]
    pipelined = b"".join(requests[:4])
    chunked = (b"POST /v1/devices/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
               + TOKEN.encode() + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n9\r\nname=temp\r\n0\r\n\r\n")
    return [*requests, pipelined, chunked, requests[2][:40] + SEPARATOR + requests[2][40:]]


def _transcripts() -> list[dict]:
    paths = sorted((ROOT / "tests" / "dtls_transcripts").glob("*.json"))
    paths += sorted((ROOT / "tests" / "udp_transcripts").glob("*.json"))
    return [json.loads(path.read_text()) for path in paths]


def _device_datagrams(transcript: dict) -> list[bytes]:
    return [bytes.fromhex(step["data"]) for step in transcript["steps"] if "data" in step]


def _dtls_records() -> list[bytes]:
    from twisted_spark.dtls.record import split_records

    seeds = []
    for transcript in _transcripts()[:1]:
        for step in transcript["steps"]:
            for datagram in [step.get("data")] + [o["data"] for o in step.get("out", [])]:
                if not datagram:
                    continue
                data = bytes.fromhex(datagram)
                seeds.append(b"\x00" + data)
                records, _ = split_records(data, 8)
                for record in records:
                    if record.content_type == 22 and record.epoch == 0:
                        seeds.append(b"\x01" + record.fragment)
                        body, kind = record.fragment[12:], record.fragment[0]
                        index = {1: 0, 3: 1, 2: 2, 12: 3, 13: 4, 11: 5, 16: 6, 15: 7, 20: 8}
                        if kind in index:
                            seeds.append(bytes((index[kind] + 2,)) + body)
    return seeds


def _dtls_server() -> list[bytes]:
    seeds = []
    for transcript in _transcripts():
        datagrams = _device_datagrams(transcript)
        seeds.append(b"\x00" + SEPARATOR.join(datagrams[:8]))
    return seeds


def _udp_hello() -> list[bytes]:
    return [GEN3_HELLO, GEN3_HELLO[:-10], APPLICATION_DESCRIBE,
            bytes.fromhex("40020001b168ff0003ffff00360003000812ab34cd56ef7890")]


def _udp_session() -> list[bytes]:
    mid = 0x0300
    gen3 = [
        SYSTEM_DESCRIBE_MESSAGE, APPLICATION_DESCRIBE,
        from_device.get_time(mid + 1, 4),
        from_device.device_event(mid + 2, "gen3/temp", "20", confirmable=True),
        from_device.subscribe(mid + 3, "gen3"),
        to_device.ping(mid + 4),
    ]
    blocks = _blockwise()[0].split(SEPARATOR)
    return [b"\x00" + SEPARATOR.join(gen3), b"\x01" + SEPARATOR.join(gen3[:2]),
            b"\x00" + SEPARATOR.join(blocks[:6]), b"\x00" + GEN3_HELLO]


def _webhooks() -> list[bytes]:
    hooks = [
        {"event": "temp", "url": "https://hooks.example.com/in", "requestType": "POST",
         "json": {"t": "{{t}}", "id": "{{PARTICLE_DEVICE_ID}}",
                  "all": "{{{PARTICLE_EVENT_VALUE}}}"},
         "responseTemplate": "{{#items}}{{name}};{{/items}}",
         "responseTopic": "r/{{PARTICLE_DEVICE_ID}}"},
        {"event": "t", "url": "https://hooks.example.com/q", "requestType": "GET",
         "query": {"v": "{{v}}"}, "headers": {"X-T": "{{t}}"}, "auth": {"username": "u",
                                                                       "password": "p"}},
        {"event": "f", "url": "https://hooks.example.com/f", "form": {"a": "{{a.0}}"},
         "body": "{{PARTICLE_EVENT_NAME}}={{PARTICLE_EVENT_VALUE}}", "noDefaults": True,
         "errorResponseTopic": "e/{{PARTICLE_EVENT_NAME}}"},
    ]
    data = [b'{"t":21,"v":"x","a":[1,2],"items":[{"name":"n"}]}', b"21.5", b""]
    answers = [b'{"items":[{"name":"a"},{"name":"b"}]}', b"OK", "é".encode() * 400]
    return [SEPARATOR.join((json.dumps(hook).encode(), d, a))
            for hook in hooks for d, a in zip(data, answers, strict=True)]


SEEDS = {
    "coap_codec": _coap_messages,
    "spark_messages": _spark_messages,
    "describe_pb": lambda: [SYSTEM_DESCRIBE, SYSTEM_DESCRIBE[:30],
                            SYSTEM_DESCRIBE + bytes.fromhex("120f333536373236313030313233343536")],
    "blockwise": _blockwise,
    "aes_channel": _aes_channel,
    "tcp_handshake": _tcp_handshake,
    "tcp_session": _tcp_session,
    "api_bodies": _api_bodies,
    "sse_path": _sse_path,
    "http_api": _http_api,
    "dtls_records": _dtls_records,
    "dtls_server": _dtls_server,
    "udp_hello": _udp_hello,
    "udp_session": _udp_session,
    "webhooks": _webhooks,
}


def write(target: str, seeds: list[bytes]) -> int:
    """Write ``seeds`` into the target's corpus; the number of new files."""
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    new = 0
    for seed in seeds:
        path = folder / f"seed-{hashlib.sha1(seed).hexdigest()[:16]}"
        if not path.exists():
            path.write_bytes(seed)
            new += 1
    return new


def main(names: list[str]) -> None:
    for target in names or SEEDS:
        print(f"{target}: {write(target, SEEDS[target]())} new seeds")


if __name__ == "__main__":
    main(sys.argv[1:])
