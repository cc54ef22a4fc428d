"""Gateway address allocation.

Embedded mode (``LoopbackAllocator``): each Gateway gets its own loopback address from a
pool such as 127.0.2.0/24, chosen from a hash of namespace/name (so it is stable across
restarts) and kept for the Gateway's lifetime; Envoy binds the listeners there and
``status.addresses`` reports it. An address already recorded in the Gateway's status, or
requested in ``spec.addresses``, is honoured when it lies in the pool.

Cluster mode (``ClusterAllocator``): listeners bind 0.0.0.0 and ``status.addresses``
reports a configured external address (a LoadBalancer IP, node IP or pod IP).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from infergate.controller.resources import ObjectRef


class AddressError(Exception):
    """The Gateway asks for an address the allocator cannot give (``UnsupportedAddress``)."""


@dataclass(frozen=True)
class Assignment:
    bind_address: str  # where Envoy's listeners bind
    status_address: str | None  # what status.addresses reports (None: nothing to report)


class AddressAllocator(Protocol):
    def assign(
        self, gateway: ObjectRef, requested: Sequence[str], previous: Sequence[str]
    ) -> Assignment: ...

    def retain(self, gateways: Iterable[ObjectRef]) -> None:
        """Forget the assignments of Gateways that are gone."""
        ...


class LoopbackAllocator:
    """One loopback address per Gateway from ``cidr``; stateful so assignments never move."""

    def __init__(self, cidr: str = "127.0.2.0/24") -> None:
        network = ipaddress.ip_network(cidr, strict=False)
        if not isinstance(network, ipaddress.IPv4Network) or not network.is_loopback:
            raise ValueError(f"address pool {cidr}: must be an IPv4 loopback network (inside 127.0.0.0/8)")
        hosts = [str(host) for host in network.hosts()] or [str(network.network_address)]
        self.cidr = str(network)
        self._network = network
        self._hosts = hosts
        self._by_gateway: dict[ObjectRef, str] = {}

    def _in_pool(self, address: str) -> bool:
        try:
            return ipaddress.ip_address(address) in self._network
        except ValueError:
            return False

    def _taken(self, address: str, gateway: ObjectRef) -> bool:
        return any(addr == address and ref != gateway for ref, addr in self._by_gateway.items())

    def assign(self, gateway: ObjectRef, requested: Sequence[str], previous: Sequence[str]) -> Assignment:
        for address in requested:
            if not self._in_pool(address):
                raise AddressError(f"address {address} is not in the gateway address pool {self.cidr}")
            if self._taken(address, gateway):
                raise AddressError(f"address {address} is already used by another Gateway")
            self._by_gateway[gateway] = address
            return Assignment(address, address)
        current = self._by_gateway.get(gateway)
        if current is not None:
            return Assignment(current, current)
        for address in previous:
            if self._in_pool(address) and not self._taken(address, gateway):
                self._by_gateway[gateway] = address
                return Assignment(address, address)
        digest = hashlib.sha256(f"{gateway.namespace}/{gateway.name}".encode()).digest()
        start = int.from_bytes(digest[:4], "big") % len(self._hosts)
        for offset in range(len(self._hosts)):
            address = self._hosts[(start + offset) % len(self._hosts)]
            if not self._taken(address, gateway):
                self._by_gateway[gateway] = address
                return Assignment(address, address)
        raise AddressError(f"the gateway address pool {self.cidr} is exhausted")

    def retain(self, gateways: Iterable[ObjectRef]) -> None:
        keep = set(gateways)
        for ref in list(self._by_gateway):
            if ref not in keep:
                del self._by_gateway[ref]


class ClusterAllocator:
    """Bind every listener on ``bind_address`` (0.0.0.0); report ``external_address``."""

    def __init__(self, external_address: str | None = None, bind_address: str = "0.0.0.0") -> None:
        self.external_address = external_address
        self.bind_address = bind_address

    def assign(self, gateway: ObjectRef, requested: Sequence[str], previous: Sequence[str]) -> Assignment:
        for address in requested:
            if address != self.external_address:
                raise AddressError(
                    f"address {address} cannot be assigned (this gateway serves {self.external_address or 'no external address'})"
                )
        return Assignment(self.bind_address, self.external_address)

    def retain(self, gateways: Iterable[ObjectRef]) -> None:
        return None
