# -*- test-case-name: tests.test_fuzz_corpus -*-
"""The DTLS server endpoint of the UDP port: datagrams in, datagrams and events out.

A fresh :class:`DtlsServer` with the transcripts' key and fixed randomness
per input, so the recorded device flights (``tests/dtls_transcripts``) are
valid seeds: their cookie and handshake match, and mutations reach every
handshake state.  Each message of the input is one datagram, from one of two
addresses (the first byte of the input says which, bit by bit); time moves
a little per datagram and the retransmission timer runs in between.  Crypto
work runs inline.  Contract (``dtls/endpoint.py``): nothing the peer sends
makes a method raise, and what the server sends to an address it has not
verified is never more than what it received (no amplification).
"""

from __future__ import annotations

from fuzz.harness import ContractBroken, FixedRandom, ec_key, split
from twisted_spark.dtls import DtlsServer, ServerConfig

ADDRESSES = (("127.0.0.1", 54788), ("192.0.2.9", 40000))
START = 1.135
#: The first answer to an unknown address is a HelloVerifyRequest (60 bytes).
MAX_UNVERIFIED_ANSWER = 128


SERVER_KEY = ec_key("server")


def _settle(server: DtlsServer, out, now: float) -> int:
    """Run the crypto work inline; the bytes of every datagram sent."""
    sent = sum(len(datagram) for _, datagram in out.datagrams)
    pending = list(out.work)
    while pending:
        work = pending.pop(0)
        more = server.work_done(work, work.run(), now)
        sent += sum(len(datagram) for _, datagram in more.datagrams)
        pending.extend(more.work)
    return sent


def one_input(data: bytes) -> None:
    if not data:
        return
    rng = FixedRandom("transcript/handshake-move-close")
    server = DtlsServer(ServerConfig(SERVER_KEY, rng=rng))
    who, datagrams = data[0], split(data[1:])
    now = START
    verified = set()
    for index, datagram in enumerate(datagrams):
        address = ADDRESSES[(who >> (index % 8)) & 1]
        out = server.datagram_received(datagram, address, now)
        sent = _settle(server, out, now)
        if address in verified or server.handshakes or len(server.sessions):
            verified.add(address)
        elif sent > max(len(datagram), MAX_UNVERIFIED_ANSWER):
            raise ContractBroken(f"{sent} bytes sent for {len(datagram)} from {address}")
        now += 0.001
        timer = server.next_timer()
        if timer is not None and timer <= now + 2:
            now = max(now, timer)
            _settle(server, server.timer_expired(now), now)
    server.expire(now + 3600)
