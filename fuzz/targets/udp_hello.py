# -*- test-case-name: tests.test_fuzz_corpus -*-
"""The first CoAP message of a Gen3 session: the Hello that names the device (``udp/hello.py``).

Contract: :func:`read_hello` returns a :class:`Gen3Hello` with a 24-hex-digit
device id or raises ``CoapError`` (a sentence the port logs), nothing else;
the gate's verdict is a refusal or an admission, never an exception.
"""

from __future__ import annotations

from fuzz.harness import ContractBroken
from twisted_spark.coap.codec import CoapError
from twisted_spark.store.memory import MemoryStore
from twisted_spark.udp.hello import HelloGate, read_hello

GATE = HelloGate(MemoryStore())
KEY = b"\x30" * 91


def one_input(data: bytes) -> None:
    try:
        hello = read_hello(data)
    except CoapError:
        pass
    else:
        if len(hello.device_id) != 24:
            raise ContractBroken(f"device id {hello.device_id!r}")
        hello.flag_names  # noqa: B018
    verdicts = []
    GATE.admit(KEY, data).addBoth(verdicts.append)
    if len(verdicts) != 1 or verdicts[0].__class__.__name__ != "Admission":
        raise ContractBroken(f"the gate answered {verdicts!r}")
