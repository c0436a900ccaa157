# -*- test-case-name: tests.test_webhooks_definition -*-
"""Which addresses a webhook may connect to (API.md §6, "Targets").

The guard against server-side request forgery: a user must not be able to
make the server call its own loopback services or a cloud metadata endpoint.

* Always denied: ``0.0.0.0/8``, ``::``, multicast, ``255.255.255.255``.
* Denied by default: loopback (``127.0.0.0/8``, ``::1``) and link-local
  (``169.254.0.0/16``, ``fe80::/10``).
* Allowed by default: the private LAN ranges and public addresses.
* ``--webhook-allow`` (names ``loopback``, ``link-local`` or CIDRs) lifts
  default denials; ``--webhook-deny`` (the name ``private`` or CIDRs) adds
  denials; an allow entry wins over a deny entry.

An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) and a NAT64 one
(``64:ff9b::a.b.c.d``) are judged as the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _nets(*cidrs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


ALWAYS_DENIED = _nets("0.0.0.0/8", "::/128", "224.0.0.0/4", "ff00::/8", "255.255.255.255/32")
LOOPBACK = _nets("127.0.0.0/8", "::1/128")
LINK_LOCAL = _nets("169.254.0.0/16", "fe80::/10")
PRIVATE = _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

#: Names ``--webhook-allow`` and ``--webhook-deny`` accept.
ALLOW_NAMES = {"loopback": LOOPBACK, "link-local": LINK_LOCAL}
DENY_NAMES = {"private": PRIVATE}


def parse_networks(entries: Iterable[str], names: dict) -> tuple[Network, ...]:
    """CIDRs (or a bare address) and the ``names`` given, as networks.

    :raises ValueError: naming the entry that is neither.
    """
    networks: list[Network] = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        if entry.lower() in names:
            networks.extend(names[entry.lower()])
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            known = ", ".join(sorted(names))
            raise ValueError(
                f"{entry!r} is neither a CIDR network (such as 192.168.1.0/24) "
                f"nor one of: {known}") from None
    return tuple(networks)


def plain_address(address: Address) -> Address:
    """The IPv4 address an IPv4-mapped or NAT64 IPv6 address carries, else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


class NetworkPolicy:
    """Judges target addresses; see the module docstring for the rules.

    :param allow: entries of ``--webhook-allow``.
    :param deny: entries of ``--webhook-deny``.
    """

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        self.allow = parse_networks(allow, ALLOW_NAMES)
        self.deny = LOOPBACK + LINK_LOCAL + parse_networks(deny, DENY_NAMES)

    def allows(self, address: str | Address) -> bool:
        """Whether a connection to ``address`` (text or ``ipaddress`` object) may be made."""
        if isinstance(address, str):
            try:
                address = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                return False
        address = plain_address(address)
        if _within(address, ALWAYS_DENIED):
            return False
        if _within(address, self.allow):
            return True
        return not _within(address, self.deny)


def _within(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def ip_literal(host: str) -> Address | None:
    """The address if ``host`` (as in a URL, IPv6 in brackets or not) is an IP literal."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
