"""The egress policy: which names match, and which addresses may be reached."""

from __future__ import annotations

import pytest

from corral.host.egress_proxy import EgressPolicy, Refused
from corral.network import Network


async def addresses(network: Network, host: str) -> list[str]:
    return await EgressPolicy(network).addresses(host, 443)


async def test_names_must_match_exactly_or_as_subdomains():
    network = Network.allow(["api.example.com", "*.files.example.org"],
                            resolve={"api.example.com": "93.184.216.34", "a.files.example.org": "93.184.216.35",
                                     "example.org": "93.184.216.36", "files.example.org": "93.184.216.37"})
    assert await addresses(network, "API.Example.com.") == ["93.184.216.34"]
    assert await addresses(network, "a.files.example.org") == ["93.184.216.35"]
    for host in ("files.example.org", "example.org", "evil.com", "api.example.com.evil.com", "xapi.example.com"):
        with pytest.raises(Refused, match="allow-list"):
            await addresses(network, host)


async def test_addresses_the_operator_wrote_are_trusted_even_on_loopback():
    network = Network.allow(["127.0.0.1", "svc.test"], resolve={"svc.test": "10.1.2.3"})
    assert await addresses(network, "127.0.0.1") == ["127.0.0.1"]
    assert await addresses(network, "svc.test") == ["10.1.2.3"]


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
                                     "::1", "fe80::1", "fc00::1", "0.0.0.0", "224.0.0.1", "::ffff:127.0.0.1"])
async def test_full_network_never_reaches_private_loopback_or_link_local_addresses(address):
    with pytest.raises(Refused, match="private, loopback, link-local"):
        await addresses(Network.full(), address)


async def test_names_resolving_to_private_addresses_are_refused():
    with pytest.raises(Refused, match="loopback"):
        await addresses(Network.allow(["localhost"]), "localhost")


async def test_temporary_allowance_is_for_one_port_and_revoked():
    policy = EgressPolicy(Network.none())
    policy.allow_temporarily("127.0.0.1", 8000)
    assert await policy.addresses("127.0.0.1", 8000) == ["127.0.0.1"]
    with pytest.raises(Refused):
        await policy.addresses("127.0.0.1", 22)
    policy.revoke("127.0.0.1", 8000)
    with pytest.raises(Refused):
        await policy.addresses("127.0.0.1", 8000)


async def test_wildcards_never_match_ip_literals():
    with pytest.raises(Refused, match="allow-list"):
        await addresses(Network.allow(["*.0.0.1"]), "127.0.0.1")


async def test_the_hosts_own_public_addresses_are_refused(monkeypatch):
    from corral.host import egress_proxy

    monkeypatch.setattr(egress_proxy, "host_addresses", lambda: frozenset({"93.184.216.34"}))
    with pytest.raises(Refused, match="own addresses"):
        await addresses(Network.full(), "93.184.216.34")
    assert await addresses(Network.full(), "93.184.216.35") == ["93.184.216.35"]


def test_host_addresses_include_loopback():
    from corral.host.egress_proxy import host_addresses

    assert {"127.0.0.1", "::1"} <= host_addresses()
