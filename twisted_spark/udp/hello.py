# -*- test-case-name: tests.test_udp_port -*-
"""Who is on the other end: the CoAP Hello names the device, its registered key confirms it.

A Gen3 handshake authenticates only a raw public key; the device id comes
afterwards, in the first CoAP message (``gen3-dtls.md``).  So the first
message of a new session must be a Hello, and the key that did the
handshake must be the one registered for the id it names.  Until then
nothing the connection sends reaches a CoAP session.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from twisted_spark.coap.codec import CoapError, MessageType, decode
from twisted_spark.coap.gen3 import Gen3Hello, is_hello, parse_gen3_hello
from twisted_spark.store import adopt_device_key

__all__ = ["Admission", "HelloGate", "read_hello"]


@dataclass(frozen=True)
class Admission:
    """The gate's verdict: ``hello`` when admitted, else ``refused`` says why (for the log)."""

    hello: Gen3Hello | None = None
    refused: str | None = None
    device_id: str | None = None


def read_hello(message: bytes) -> Gen3Hello:
    """The Hello in a CoAP message, or :class:`CoapError` saying why it is not one."""
    coap = decode(message)
    if coap.type != MessageType.CON or not is_hello(coap):
        code = f"{coap.code >> 5}.{coap.code & 31:02d}"
        path = "/".join(coap.uri_path) or "-"
        kind = MessageType(coap.type).name
        raise CoapError(f"expected a confirmable POST h (Hello), got {kind} {code} {path}")
    return parse_gen3_hello(coap.payload)


class HelloGate:
    """Admits a connection whose Hello names a device registered with the handshake's key.

    :param devices: an :class:`~twisted_spark.interfaces.IDeviceStore`.
    :param accept_unknown: store the key of an unregistered device and admit
        it (``--accept-unknown-devices``, as on the TCP port).
    """

    def __init__(self, devices, *, accept_unknown: bool = False) -> None:
        self.devices = devices
        self.accept_unknown = accept_unknown

    def admit(self, peer_public_key: bytes, message: bytes) -> defer.Deferred:
        """Check the first message of a session. :rtype: Deferred[Admission]"""
        try:
            hello = read_hello(message)
        except CoapError as error:
            return defer.succeed(Admission(refused=f"first message: {error}"))
        return defer.ensureDeferred(self._check(peer_public_key, hello))

    async def _check(self, peer_public_key: bytes, hello: Gen3Hello) -> Admission:
        device_id = hello.device_id
        record = await self.devices.get_device(device_id)
        stored = record.public_key if record is not None else None
        if stored is None:
            if not self.accept_unknown:
                return Admission(
                    refused="unknown device; register its key with: "
                    f"python -m twisted_spark keys add {device_id} <file>",
                    device_id=device_id,
                )
            record = await adopt_device_key(self.devices, device_id, peer_public_key)
            stored = record.public_key
        if stored != peer_public_key:
            return Admission(
                refused="the key of its DTLS handshake differs from the registered one; "
                f"if the device was re-keyed: python -m twisted_spark keys add {device_id} <file>",
                device_id=device_id,
            )
        return Admission(hello=hello, device_id=device_id)
