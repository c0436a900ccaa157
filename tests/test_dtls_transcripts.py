"""Replay datagrams recorded from a real mbedTLS device: same replies, byte for byte.

The transcripts in dtls_transcripts/ were recorded on a development machine
from a client built on Particle's mbedTLS fork (particle-2.22.0) configured
the way Device OS configures it, against DtlsServer with fixed randomness:
a full handshake, data both ways, a type-253 record from a new port, a
900-byte record and close_notify; the same with the server's first flight
lost (its timer resends it) and with its Finished lost (the device resends
its flight and the session answers).  Each step is one call into the
server at the recorded time; the server echoes application data.
"""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.backends.openssl.backend import backend
from dtls_harness import FixedRandom, key, run_work

from twisted_spark.dtls import ApplicationData, DtlsServer, ServerConfig
from twisted_spark.dtls.record import split_records

TRANSCRIPTS = sorted((Path(__file__).parent / "dtls_transcripts").glob("*.json"))

pytestmark = pytest.mark.skipif(
    not backend.ecdsa_deterministic_supported(),
    reason="the recorded ServerKeyExchange signatures are RFC 6979 ones",
)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_server_replies_to_a_real_device_client_byte_for_byte(path):
    transcript = json.loads(path.read_text())
    server = DtlsServer(
        ServerConfig(key(transcript["server_key_label"]), rng=FixedRandom(transcript["rng_label"]))
    )
    for index, step in enumerate(transcript["steps"]):
        now = step["t"]
        if step.get("timer"):
            out = server.timer_expired(now)
        else:
            out = server.datagram_received(bytes.fromhex(step["data"]), tuple(step["from"]), now)
        out = run_work(server, out, now)
        for source, event in out.events:
            if isinstance(event, ApplicationData):
                out.extend(source.send(b"echo:" + event.data[:50], now))
        got = [{"to": list(address), "data": datagram.hex()} for address, datagram in out.datagrams]
        expected = [{"to": o["to"], "data": o["data"]} for o in step["out"]]
        assert got == expected, f"step {index} at t={now}"
        assert [type(e).__name__ for _, e in out.events] == step["events"], f"step {index}"


def test_transcripts_cover_what_they_claim():
    steps = [s for p in TRANSCRIPTS for s in json.loads(p.read_text())["steps"]]
    device_types = {bytes.fromhex(s["data"])[0] for s in steps if "data" in s}
    assert {22, 20, 25, 253} <= device_types | {
        r.content_type
        for s in steps
        if "data" in s
        for r in split_records(bytes.fromhex(s["data"]), 8)[0]
    }
    assert any(s.get("timer") and s["out"] for s in steps)  # a retransmission on the timer
    assert any(o["lost"] for s in steps for o in s["out"])
    assert sum("HandshakeComplete" in s["events"] for s in steps) == len(TRANSCRIPTS)
