# -*- test-case-name: tests.test_crypto_ec_keys -*-
"""The 320-byte server-key block a Gen3 device keeps in its DCT.

``particle keys server`` writes it over DFU at DCT offset 3298 (particle-cli
``src/lib/keys-specs.js``, segment ``udpServerKey``).  Layout, checked
against Device OS v6.2.0 (``platform/MCU/nRF52840/inc/dct.h``:
``alt_server_public_key[192]`` then ``alt_server_address[128]``, a packed
``ServerAddress`` from ``hal/inc/ota_flash_hal.h``, read by
``hal/shared/parse_server_address.h``)::

    0    EC P-256 SubjectPublicKeyInfo DER (91 bytes), then 0xFF
    192  address type: 0 = IPv4, 1 = host name (0xFF: none, use Particle's)
    193  address length: 4, or the name's length (at most 63, printable ASCII)
    194  the address: 4 bytes in network order, or the name without a NUL
    258  port, 2 bytes big-endian (0 or 0xFFFF: the default, 5684)
    260  0xFF up to 320

Everything not written is 0xFF, as particle-cli leaves it.  A host name
may contain ``$id``, which the device replaces by its id.  IPv6 addresses
have no encoding here: use a host name that resolves to one.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from twisted_spark.crypto.ec_keys import ec_public_key_der, load_ec_device_public_key
from twisted_spark.crypto.keys import KeyFormatError

__all__ = [
    "ADDRESS_OFFSET",
    "BLOCK_SIZE",
    "DEFAULT_PORT",
    "PORT_OFFSET",
    "ServerAddress",
    "decode_block",
    "encode_block",
    "parse_address",
]

BLOCK_SIZE = 320
KEY_SPACE = 192
ADDRESS_OFFSET = 192
PORT_OFFSET = 258
DEFAULT_PORT = 5684
MAX_NAME_LENGTH = 63  # ServerAddress.domain[64], one byte kept for the NUL
_IP, _NAME, _NONE = 0, 1, 0xFF


@dataclass(frozen=True)
class ServerAddress:
    """Where a device should connect: an IPv4 address or a host name, and a port."""

    host: str
    port: int = DEFAULT_PORT

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.IPv4Address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> ServerAddress:
    """``HOST[:PORT]`` as a :class:`ServerAddress`, or ValueError saying what is wrong."""
    text = text.strip()
    host, port = text, default_port
    if text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"port {port_text!r} in {text!r} is not a number")
        port = int(port_text)
    elif ":" in text:
        raise ValueError(
            f"{text!r} looks like an IPv6 address; the server-key block holds only IPv4 "
            "addresses and host names: use a host name that resolves to it"
        )
    if not 0 < port < 0xFFFF:
        raise ValueError(f"port {port} is out of range (1-65534)")
    if not host:
        raise ValueError("the address has no host")
    address = ServerAddress(host, port)
    if address.is_ip:
        return address
    if all(c.isdigit() or c == "." for c in host):
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    if len(host) > MAX_NAME_LENGTH:
        raise ValueError(f"host name is {len(host)} characters; a device holds at most 63")
    if not all(32 < ord(c) < 127 for c in host):
        raise ValueError(f"host name {host!r} must be printable ASCII without spaces")
    return address


def encode_block(
    server_public_key: ec.EllipticCurvePublicKey | bytes, address: ServerAddress
) -> bytes:
    """The block for ``particle keys server``: the server's EC key and its address."""
    if isinstance(server_public_key, bytes):
        server_public_key = load_ec_device_public_key(server_public_key)
    der = ec_public_key_der(server_public_key)
    if len(der) > KEY_SPACE:
        raise KeyFormatError(f"the server key is {len(der)} bytes of DER; {KEY_SPACE} fit")
    block = bytearray(b"\xff" * BLOCK_SIZE)
    block[: len(der)] = der
    if address.is_ip:
        value = ipaddress.IPv4Address(address.host).packed
        block[ADDRESS_OFFSET : ADDRESS_OFFSET + 2] = bytes((_IP, 4))
    else:
        value = address.host.encode("ascii")
        block[ADDRESS_OFFSET : ADDRESS_OFFSET + 2] = bytes((_NAME, len(value)))
    block[ADDRESS_OFFSET + 2 : ADDRESS_OFFSET + 2 + len(value)] = value
    block[PORT_OFFSET : PORT_OFFSET + 2] = address.port.to_bytes(2, "big")
    return bytes(block)


def decode_block(block: bytes) -> tuple[bytes, ServerAddress | None]:
    """``(server key SPKI DER, address)`` read back from a block, as a device reads it.

    The address is None when the device would fall back to Particle's
    server (type 0xFF or anything invalid).
    """
    if len(block) != BLOCK_SIZE:
        raise ValueError(f"a server-key block is {BLOCK_SIZE} bytes, not {len(block)}")
    if block[0] != 0x30 or block[1] != 0x59:  # SEQUENCE of 89 bytes: a P-256 SPKI
        raise ValueError("the block does not start with an EC P-256 SubjectPublicKeyInfo")
    der = bytes(block[:91])
    load_ec_device_public_key(der)
    kind, length = block[ADDRESS_OFFSET], block[ADDRESS_OFFSET + 1]
    value = bytes(block[ADDRESS_OFFSET + 2 : ADDRESS_OFFSET + 2 + length])
    port = int.from_bytes(block[PORT_OFFSET : PORT_OFFSET + 2], "big")
    if port in (0, 0xFFFF):
        port = DEFAULT_PORT
    if kind == _IP and length == 4 and value not in (b"\0\0\0\0", b"\xff\xff\xff\xff"):
        return der, ServerAddress(str(ipaddress.IPv4Address(value)), port)
    if kind == _NAME and length <= MAX_NAME_LENGTH and all(32 <= b < 127 for b in value):
        return der, ServerAddress(value.decode("ascii"), port)
    return der, None
