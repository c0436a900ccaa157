# -*- test-case-name: tests.test_fuzz_corpus -*-
"""The Gen3 protobuf system describe: a ``SystemDescribe`` or ``CoapError``, bounded."""

from __future__ import annotations

from fuzz.harness import ContractBroken
from twisted_spark.coap.codec import CoapError
from twisted_spark.coap.describe_pb import MAX_MODULES, parse_system_describe


def one_input(data: bytes) -> None:
    try:
        described = parse_system_describe(data)
    except CoapError:
        return
    if len(described.modules) > MAX_MODULES:
        raise ContractBroken(f"{len(described.modules)} modules kept (limit {MAX_MODULES})")
    described.system_version  # noqa: B018
    for module in described.modules:
        module.type_name, module.valid  # noqa: B018
