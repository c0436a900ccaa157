# -*- test-case-name: tests.test_coap_codec -*-
"""CoAP on the Spark device link: a small codec and the Spark message catalogue.

See PROTOCOL.md §5-§9 and §11.  No I/O and no Twisted.
"""

from twisted_spark.coap.codec import (
    CoapError,
    CoapMessage,
    Code,
    MessageType,
    OptionNumber,
    decode,
    encode,
)
from twisted_spark.coap.kinds import (
    DeviceBoundKind,
    MessageKind,
    classify,
    classify_device_bound,
)

__all__ = [
    "Code",
    "CoapError",
    "CoapMessage",
    "DeviceBoundKind",
    "MessageKind",
    "MessageType",
    "OptionNumber",
    "classify",
    "classify_device_bound",
    "decode",
    "encode",
]
