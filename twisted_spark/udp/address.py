# -*- test-case-name: tests.test_udp_port -*-
"""``--udp-device [INTERFACE:]PORT`` (or ``off``): where the UDP device port listens.

Gen3 devices connect to UDP port 5684 (``gen3-dtls.md``).  An IPv6
interface is written in brackets: ``[::]:5684``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["DEFAULT_UDP_DEVICE", "UdpDeviceAddress", "parse_udp_device"]

DEFAULT_UDP_DEVICE = "5684"


@dataclass(frozen=True)
class UdpDeviceAddress:
    """An interface (``""``: every IPv4 one) and a port (0: any free one)."""

    port: int
    interface: str = ""

    def listen(self, reactor, protocol):
        """``reactor.listenUDP`` on this address. :rtype: IListeningPort"""
        return reactor.listenUDP(self.port, protocol, interface=self.interface)

    def __str__(self) -> str:
        host = f"[{self.interface}]" if ":" in self.interface else self.interface or "*"
        return f"{host}:{self.port}"


def parse_udp_device(text: str) -> UdpDeviceAddress | None:
    """The address in ``text``, None for ``off``; ValueError saying what is wrong."""
    text = text.strip()
    if text.lower() == "off":
        return None
    interface, port_text = "", text
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"{text!r}: write an IPv6 interface as [ADDRESS]:PORT")
        interface, port_text = host, rest[1:]
    elif ":" in text:
        interface, _, port_text = text.rpartition(":")
        if ":" in interface:
            raise ValueError(f"{text!r}: write an IPv6 interface as [ADDRESS]:PORT")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535 (or 'off')")
    if interface:
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            raise ValueError(f"{text!r}: {interface!r} is not an IP address") from None
    return UdpDeviceAddress(int(port_text), interface)
