"""The egress policy sees through IPv6 addresses that carry an IPv4 address.

A sandbox with ``Network.full()`` asks the proxy for an IP literal; every IPv6 form that leads
to a private, loopback or link-local IPv4 address (or to this host) must be refused like that
IPv4 address, and the forms of a public one stay reachable.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.host.egress_proxy import EgressPolicy, Refused, _public, embedded_ipv4
from corral.network import Network


def forms(v4: ipaddress.IPv4Address) -> dict[str, str]:
    """``v4`` embedded in each IPv6 form that carries an IPv4 address."""
    value = int(v4)
    return {
        "mapped": f"::ffff:{v4}",
        "siit": str(ipaddress.IPv6Address((0xFFFF << 32) | value)),
        "compatible": str(ipaddress.IPv6Address(value)),
        "nat64": str(ipaddress.IPv6Address((0x64FF9B << 96) | value)),
        "6to4": str(ipaddress.IPv6Address((0x2002 << 112) | (value << 80) | 1)),
    }


async def refused(address: str) -> bool:
    try:
        await EgressPolicy(Network.full()).addresses(address, 443)
    except Refused:
        return True
    return False


@pytest.mark.parametrize("address", [
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
    "64:ff9b::7f00:1",
    "64:ff9b:1::a00:1",  # local-use NAT64
    "::ffff:0:7f00:1",  # SIIT of 127.0.0.1
    "::ffff:0:a00:1",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::a9fe:a9fe",
    "::c0a8:101",
    "fec0::1",  # site-local
    "2001::1",  # Teredo
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001:0:808:808:0:0:f7f7:f7f7",  # Teredo, public server, client 8.8.8.8
    "::ffff:127.0.0.1",
    "::ffff:10.1.2.3",
    "::ffff:169.254.169.254",
])
async def test_ipv6_forms_of_non_public_addresses_are_refused(address):
    assert await refused(address)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "::ffff:8.8.8.8", "::ffff:0:808:808", "2002:808:808::1",
                                     "2606:4700:4700::1111"])
async def test_ipv6_forms_of_public_addresses_stay_reachable(address):
    assert not await refused(address)


def test_every_form_gives_back_its_ipv4_address():
    v4 = ipaddress.IPv4Address("192.0.2.33")
    for name, address in forms(v4).items():
        assert embedded_ipv4(ipaddress.IPv6Address(address)) == [v4], name
    assert embedded_ipv4(ipaddress.IPv6Address("2001:0:4136:e378:8000:63bf:3fff:fdd2")) == [
        ipaddress.IPv4Address("65.54.227.120"), ipaddress.IPv4Address("192.0.2.45")]
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700::1111")) == []


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_an_embedded_address_is_public_exactly_when_its_ipv4_address_is(value):
    v4 = ipaddress.IPv4Address(value)
    expected = _public(str(v4))
    for name, address in forms(v4).items():
        if name == "compatible" and value <= 1:
            continue  # :: and ::1 are IPv6 addresses of their own (both refused)
        assert _public(address) == expected, (name, address, v4)
