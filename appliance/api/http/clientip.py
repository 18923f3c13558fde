"""Who is the real client? Walk X-Forwarded-For from the right, trusting only known proxies.

Waitress 3 removes X-Forwarded-* headers from peers it does not trust before the app sees them
(``clear_untrusted_proxy_headers``), so it is started with that off and no ``trusted_proxy``: the
raw header reaches us, and this module is the only place that interprets it.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Callable, Iterable

from appliance.core.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_HOPS = 32  # X-Forwarded-For entries read, nearest first: far more than a real chain has,
# and it bounds what any client can make us parse (a 250 KB header cost ~1.5 s of CPU read whole)
MAX_ENTRY = 64  # characters: the longest address form, "[v6 with zone]:port", is shorter
# Answers remembered per API process: the same few peers and chains come again and again, and
# parsing them with ipaddress was ~15 % of the request's own CPU (bench/request_cost.py
# --cprofile). A remembered answer costs ~1 KB at most; longer headers are not remembered.
REMEMBERED = 1024
REMEMBERED_HEADER = 256  # characters


@dataclass(frozen=True)
class ClientAddress:
    user_ip: str
    proxy_chain: str  # the valid X-Forwarded-For hops, as sent, joined with ", "


def _is_port_suffix(text: str) -> bool:
    port = text[1:]
    return text.startswith(":") and port.isascii() and port.isdigit() and len(port) <= 5


def parse_ip(text: str) -> IPAddress | None:
    """An address from a header entry or a peer: tolerate ports, brackets, IPv4-mapped IPv6."""
    value = text.strip().strip('"')
    if value.startswith("["):  # [2001:db8::1] or [2001:db8::1]:443
        value, closed, rest = value[1:].partition("]")
        if not closed or (rest and not _is_port_suffix(rest)):
            return None
    elif value.count(":") == 1:  # 203.0.113.7:5123
        value, _, port = value.partition(":")
        if not (port.isascii() and port.isdigit() and len(port) <= 5):
            return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def nearest_entries(forwarded_for: str | None) -> list[str]:
    """The MAX_HOPS entries nearest to us (the header's right end), oldest first."""
    if not forwarded_for:  # the usual case: no entry to parse (an empty one raised, and cost)
        return []
    entries = forwarded_for.rsplit(",", MAX_HOPS)[-MAX_HOPS:]
    return [entry for entry in entries if len(entry) <= MAX_ENTRY]


def is_trusted(address: IPAddress, trusted: Iterable[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def resolve(peer: str, forwarded_for: str | None, trusted: tuple[IPNetwork, ...]) -> ClientAddress:
    """Return the real client and the reported chain.

    The header only counts when the direct peer is a trusted proxy; then hops are skipped from
    the right while they are trusted, and the first untrusted one is the client. Entries that
    are not IP addresses are ignored, never an error; only the MAX_HOPS nearest are read.
    """
    hops = [hop for hop in map(parse_ip, nearest_entries(forwarded_for)) if hop]
    chain = ", ".join(str(hop) for hop in hops)
    peer_ip = parse_ip(peer or "")
    if peer_ip is None:
        return ClientAddress(user_ip=peer or "", proxy_chain=chain)
    if not hops or not is_trusted(peer_ip, trusted):
        return ClientAddress(user_ip=str(peer_ip), proxy_chain=chain)
    for hop in reversed(hops):
        if not is_trusted(hop, trusted):
            return ClientAddress(user_ip=str(hop), proxy_chain=chain)
    # Every hop is one of our proxies: the leftmost is as close to the client as we can see.
    return ClientAddress(user_ip=str(hops[0]), proxy_chain=chain)


@dataclass(frozen=True)
class Hop:
    address: str
    trusted: bool  # one of TRUSTED_PROXIES: a proxy of ours, not the client


def hops(forwarded_for: str | None, trusted: tuple[IPNetwork, ...]) -> list[Hop]:
    """The valid X-Forwarded-For hops (the same ones as proxy_chain), each marked trusted or
    not, for the status page."""
    parsed = [hop for hop in map(parse_ip, nearest_entries(forwarded_for)) if hop]
    return [Hop(str(hop), is_trusted(hop, trusted)) for hop in parsed]


def remembering_resolver(trusted: tuple[IPNetwork, ...]) -> Callable[[str, str | None], ClientAddress]:
    """``resolve`` for one set of trusted proxies, answering a peer and header seen lately from
    memory (the answer is immutable: shared safely between threads)."""
    remembered = functools.lru_cache(maxsize=REMEMBERED)(
        lambda peer, forwarded_for: resolve(peer, forwarded_for, trusted))

    def resolver(peer: str, forwarded_for: str | None) -> ClientAddress:
        if forwarded_for and len(forwarded_for) > REMEMBERED_HEADER:
            return resolve(peer, forwarded_for, trusted)
        return remembered(peer, forwarded_for)
    return resolver
