# -*- test-case-name: tests.test_fuzz_corpus -*-
"""The fuzz targets, one module each; :data:`TARGETS` names them in run order.

Every module has ``one_input(data: bytes) -> None``: it feeds ``data`` to the
real code and raises only when that code broke its contract.
"""

TARGETS = (
    "coap_codec",
    "spark_messages",
    "describe_pb",
    "blockwise",
    "aes_channel",
    "tcp_handshake",
    "tcp_session",
    "api_bodies",
    "sse_path",
    "http_api",
    "dtls_records",
    "dtls_server",
    "udp_hello",
    "udp_session",
    "webhooks",
)
