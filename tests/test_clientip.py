"""clientip.resolve: the real client is found by walking X-Forwarded-For from the right."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.api.http import clientip
from appliance.api.http.clientip import parse_ip, resolve
from appliance.core.config import LOOPBACK

net = ipaddress.ip_network
PROXIES = (net("10.0.0.0/8"), net("fd00::/8"), *LOOPBACK)  # loopback plus a private proxy tier


# --- the peer decides whether the header counts --------------------------------------------


def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored():
    client = resolve("203.0.113.9", "198.51.100.7", LOOPBACK)
    assert client.user_ip == "203.0.113.9"
    assert client.proxy_chain == "198.51.100.7"  # still reported, never believed


def test_trusted_peer_without_header_is_the_client():
    assert resolve("127.0.0.1", None, LOOPBACK).user_ip == "127.0.0.1"
    assert resolve("127.0.0.1", "", LOOPBACK).proxy_chain == ""


def test_forwarded_for_from_trusted_peer_names_the_client():
    client = resolve("127.0.0.1", "198.51.100.7", LOOPBACK)
    assert client.user_ip == "198.51.100.7"
    assert client.proxy_chain == "198.51.100.7"


def test_walk_goes_right_to_left_skipping_trusted_hops():
    # The leftmost entry was written by the client itself and may be forged: the first
    # untrusted hop seen from the right is the one our proxies actually talked to.
    header = "192.0.2.66, 198.51.100.7, 10.0.0.2, 10.1.1.1"
    client = resolve("10.0.0.4", header, PROXIES)
    assert client.user_ip == "198.51.100.7"
    assert client.proxy_chain == "192.0.2.66, 198.51.100.7, 10.0.0.2, 10.1.1.1"


def test_when_every_hop_is_trusted_the_leftmost_is_the_client():
    assert resolve("10.0.0.4", "10.0.0.1, 10.0.0.2, 127.0.0.1", PROXIES).user_ip == "10.0.0.1"


def test_empty_trusted_proxies_trusts_nobody():
    assert resolve("127.0.0.1", "198.51.100.7", ()).user_ip == "127.0.0.1"


# --- tolerant parsing -----------------------------------------------------------------------


def test_garbage_entries_are_ignored_without_error():
    client = resolve("127.0.0.1", "unknown, not-an-ip, , 198.51.100.7, ;;, 999.1.1.1", LOOPBACK)
    assert client.user_ip == "198.51.100.7"
    assert client.proxy_chain == "198.51.100.7"


def test_garbage_between_hops_does_not_stop_the_walk():
    assert resolve("10.0.0.9", "198.51.100.7, _hidden, 10.0.0.2", PROXIES).user_ip == "198.51.100.7"


def test_header_of_only_garbage_leaves_the_peer_as_client():
    client = resolve("127.0.0.1", "<script>alert(1)</script>, unknown", LOOPBACK)
    assert client.user_ip == "127.0.0.1"
    assert client.proxy_chain == ""


@pytest.mark.parametrize(("entry", "address"), [
    ("198.51.100.7", "198.51.100.7"),
    ("198.51.100.7:5123", "198.51.100.7"),
    (" 198.51.100.7 ", "198.51.100.7"),
    ('"198.51.100.7"', "198.51.100.7"),
    ("2001:db8::1", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("[::ffff:198.51.100.7]:80", "198.51.100.7"),
])
def test_entries_with_ports_brackets_and_mapped_addresses_are_understood(entry, address):
    assert str(parse_ip(entry)) == address
    assert resolve("127.0.0.1", entry, LOOPBACK).user_ip == address


@pytest.mark.parametrize("entry", ["", "unknown", "1.2.3", "::g", "[]:80", "1.2.3.4.5"])
def test_entries_that_are_not_addresses_parse_to_none(entry):
    assert parse_ip(entry) is None


@pytest.mark.parametrize("entry", ["[2001:db8::1", "[::", "[2001:db8::1]junk", "198.51.100.7:abc"])
def test_malformed_bracket_or_port_forms_are_garbage_not_addresses(entry):
    # An unclosed bracket or a non-numeric port is not the "[v6]:port" / "v4:port" form.
    assert parse_ip(entry) is None
    assert resolve("127.0.0.1", entry, LOOPBACK).user_ip == "127.0.0.1"


# --- IPv6 -----------------------------------------------------------------------------------


def test_ipv6_loopback_peer_is_trusted_by_default():
    client = resolve("::1", "2001:db8::7", LOOPBACK)
    assert client.user_ip == "2001:db8::7"


def test_untrusted_ipv6_peer_is_the_client():
    client = resolve("2001:db8::9", "2001:db8::7", LOOPBACK)
    assert client.user_ip == "2001:db8::9"
    assert client.proxy_chain == "2001:db8::7"


def test_ipv6_hops_are_walked_like_ipv4_ones():
    header = "2001:db8::1, [2001:db8::2]:443, fd00::5, 10.0.0.3"
    assert resolve("fd00::9", header, PROXIES).user_ip == "2001:db8::2"


# --- IPv4-mapped IPv6 (dual-stack listeners) -----------------------------------------------


def test_ipv4_mapped_peer_is_matched_against_ipv4_proxies():
    client = resolve("::ffff:127.0.0.1", "198.51.100.7", LOOPBACK)
    assert client.user_ip == "198.51.100.7"


def test_ipv4_mapped_untrusted_peer_is_reported_as_plain_ipv4():
    assert resolve("::ffff:203.0.113.9", "198.51.100.7", LOOPBACK).user_ip == "203.0.113.9"


def test_ipv4_mapped_hop_is_matched_against_ipv4_proxies():
    assert resolve("127.0.0.1", "198.51.100.7, ::ffff:10.0.0.2", PROXIES).user_ip == "198.51.100.7"


def test_unparseable_peer_is_reported_as_is_and_the_header_is_not_believed():
    client = resolve("unix-socket", "198.51.100.7", LOOPBACK)
    assert client.user_ip == "unix-socket"
    assert client.proxy_chain == "198.51.100.7"


# --- property: never raises, and the client is always someone we actually saw -------------

def unmapped(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text)
    return getattr(address, "ipv4_mapped", None) or address


PEERS = ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.5", "fd00::1", "203.0.113.9", "2001:db8::9"]
entries = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda a: f"{a}:{8080}"),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]:443"),
    st.sampled_from(["unknown", "", " ", "[", "]:", "::", "%", "[::1", "\"", "10.0.0.1/8"]),
    st.text(max_size=24),
)
headers = st.one_of(st.none(), st.text(), st.lists(entries, max_size=8).map(",".join),
                    st.lists(entries, max_size=8).map(", ".join))


@settings(max_examples=400, deadline=None)
@given(peer=st.sampled_from(PEERS), header=headers)
def test_resolve_never_raises_and_names_the_peer_or_a_header_entry(peer, header):
    client = resolve(peer, header, PROXIES)
    peer_address = unmapped(peer)
    chain = client.proxy_chain.split(", ") if client.proxy_chain else []
    for hop in chain:
        ipaddress.ip_address(hop)  # the reported chain only holds addresses
    assert client.user_ip == str(peer_address) or client.user_ip in chain
    if not any(peer_address in n for n in PROXIES if n.version == peer_address.version):
        assert client.user_ip == str(peer_address)


@settings(max_examples=200, deadline=None)
@given(peer=st.text(max_size=40), header=st.one_of(st.none(), st.text()))
def test_resolve_never_raises_for_any_peer_text(peer, header):
    client = resolve(peer, header, PROXIES)
    assert isinstance(client.user_ip, str) and isinstance(client.proxy_chain, str)


def test_only_the_nearest_hops_of_a_huge_header_are_read(monkeypatch):
    parsed: list[str] = []
    real = clientip.parse_ip
    monkeypatch.setattr(clientip, "parse_ip", lambda text: parsed.append(text) or real(text))
    header = ", ".join(f"10.0.{i // 250}.{i % 250}" for i in range(20_000)) + ", " + "x" * 100_000
    client = clientip.resolve("127.0.0.1", header, LOOPBACK)
    assert len(parsed) <= clientip.MAX_HOPS + 1  # the hops, and the peer
    assert len(client.proxy_chain.split(", ")) == clientip.MAX_HOPS - 1  # the long entry is skipped


# --- remembered answers ---------------------------------------------------------------------


CASES = [("127.0.0.1", None), ("127.0.0.1", "198.51.100.7"), ("10.1.2.3", "203.0.113.9, 10.0.0.5"),
         ("203.0.113.9", "198.51.100.7"), ("::ffff:127.0.0.1", "2001:db8::1"), ("garbage", "x, y")]


@pytest.mark.parametrize("peer,header", CASES)
def test_a_remembering_resolver_answers_as_resolve_does(peer, header):
    resolver = clientip.remembering_resolver(PROXIES)
    assert resolver(peer, header) == resolve(peer, header, PROXIES)
    assert resolver(peer, header) == resolve(peer, header, PROXIES)  # the remembered answer


def test_a_peer_and_header_seen_before_are_not_parsed_again(monkeypatch):
    parsed: list[str] = []
    real = clientip.parse_ip
    monkeypatch.setattr(clientip, "parse_ip", lambda text: parsed.append(text) or real(text))
    resolver = clientip.remembering_resolver(PROXIES)
    first = resolver("127.0.0.1", "198.51.100.7")
    count = len(parsed)
    assert resolver("127.0.0.1", "198.51.100.7") is first and len(parsed) == count
    resolver("127.0.0.1", "198.51.100.8")  # another chain: parsed
    assert len(parsed) > count


def test_a_long_header_is_answered_but_not_remembered(monkeypatch):
    resolver = clientip.remembering_resolver(PROXIES)
    header = ", ".join(["198.51.100.7"] * 40)
    assert len(header) > clientip.REMEMBERED_HEADER
    parsed: list[str] = []
    real = clientip.parse_ip
    monkeypatch.setattr(clientip, "parse_ip", lambda text: parsed.append(text) or real(text))
    assert resolver("127.0.0.1", header) == resolver("127.0.0.1", header)
    assert len(parsed) == 2 * (clientip.MAX_HOPS + 1)  # parsed each time
