"""Which network addresses a URL job may connect to (pure): public ones, plus URL_ALLOWED_NETWORKS.

An IPv6 address that carries an IPv4 one is judged by that IPv4 address too: mapped ::ffff:a.b.c.d (as
the IPv4 address itself: ::ffff:10.0.0.5 is 10.0.0.5), 6to4 and Teredo. (NAT64's 64:ff9b::/96 lies in
the reserved ::/8: refused as such.)"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """URL_ALLOWED_NETWORKS: comma-separated CIDRs (a bare address is a /32 or /128). Raises ValueError."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()
    )


def _kind(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address, or None when it is."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:  # before private: Python counts 240.0.0.0/4 as both
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not public"
    return None


def _embedded(address: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.sixtofour, address.teredo[1] if address.teredo else None]
    return [a for a in found if a is not None]


def address_refusal(address: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """Why a URL job may not connect to `address` (a sentence naming the address and the setting), or None."""
    address = getattr(address, "ipv4_mapped", None) or address  # ::ffff:a.b.c.d is a.b.c.d
    if any(address.version == net.version and address in net for net in allowed):
        return None
    for candidate in (address, *_embedded(address)):
        kind = _kind(candidate)
        if kind is not None:
            allows = ", ".join(str(net) for net in allowed) or "none"
            shown = str(address) if candidate == address else f"{address} (IPv4 {candidate})"
            return f"address {shown} is {kind} (URL_ALLOWED_NETWORKS allows {allows})"
    return None
