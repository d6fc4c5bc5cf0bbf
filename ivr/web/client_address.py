"""The client's address of a web request, behind a reverse proxy only when the proxy is trusted.

By default it is the TCP peer (``request.remote``); X-Forwarded-For is ignored, since anyone can
send it. With ``web.trusted_proxies`` (addresses or networks, e.g. ``["127.0.0.1", "10.0.0.0/8"]``)
a request whose peer is one of them takes X-Forwarded-For from the right: each proxy appends the
address it saw, so the first address from the right that is NOT a trusted proxy is the client
(entries further left were written by the client itself and may be forged). Used by the sign-in
throttle, the sessions' recorded address, the access log and the loopback check of /metrics.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

TRUSTED_PROXIES_KEY = web.AppKey("trusted_proxies", tuple)  # tuple[Network, ...]


def parse_networks(values: Iterable[str], setting: str = "web.trusted_proxies") -> tuple[Network, ...]:
    """Raises ValueError naming the setting and the entry that is not an address or a network."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{setting}: {value!r} is not an IP address or network (e.g. 10.0.0.0/8)") from exc
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def client_address(request: web.Request) -> str:
    """The client's IP address as text; "unknown" when the peer has none (a Unix socket)."""
    peer = request.remote or ""
    networks: tuple[Network, ...] = request.app.get(TRUSTED_PROXIES_KEY, ())
    peer_address = _address(peer)
    if not networks or peer_address is None or not _trusted(peer_address, networks):
        return peer or "unknown"
    hops = [hop for header in request.headers.getall("X-Forwarded-For", []) for hop in header.split(",")]
    client = peer_address
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # garbage: trust nothing further left
        client = address
        if not _trusted(address, networks):
            break
    return str(client)
