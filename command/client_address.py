"""Which address a request came from, for the audit log and the login limit. Pure.

``X-Forwarded-For`` is whatever the client chose to write, unless a proxy we
trust wrote it. So the header is read only when the TCP peer is one of the
configured proxies (``EMERGENCY_TRUSTED_PROXIES``), and then from the right:
each trusted proxy appends the address it saw, so the right-most address that
is not itself a trusted proxy is the first one nobody we trust could have
forged. Everything left of it may be invented by the client.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Longest address kept (the audit and login tables cap theirs at 64).
MAX_LENGTH = 64


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.1``, ``10.0.0.0/8`` or ``::1`` entries as networks.

    Raises:
        ValueError: an entry is neither an address nor a network.
    """
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())


@functools.lru_cache(maxsize=16)
def networks_of(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """:func:`parse_networks` of a setting, parsed once (settings never change)."""
    return parse_networks(entries)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket: record it as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def peer_in(peer: str | None, networks: tuple[Network, ...]) -> bool:
    """Is the TCP peer itself (never a forwarded address) in one of ``networks``?"""
    address = _address(peer) if peer else None
    return address is not None and _trusted(address, networks)


def client_address(peer: str | None, forwarded_for: list[str], proxies: tuple[Network, ...]) -> str:
    """The client's address.

    Args:
        peer: the TCP peer (``request.remote``), None when unknown (a Unix socket).
        forwarded_for: every ``X-Forwarded-For`` header value, in order.
        proxies: the trusted proxies.

    Returns:
        the address as text, at most ``MAX_LENGTH`` characters; ``"unknown"``
        when there is no peer.
    """
    if peer is None:
        return "unknown"
    current = _address(peer)
    if current is None:
        return peer[:MAX_LENGTH]
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    while _trusted(current, proxies) and hops:
        previous = _address(hops.pop())
        if previous is None:
            # A trusted proxy wrote garbage, or the client did and the proxy
            # passed it on: either way we know no further than the proxy.
            break
        current = previous
    return str(current)[:MAX_LENGTH]
