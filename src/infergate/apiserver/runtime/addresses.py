"""Loopback pod IPs: one address per pod, stable per pod name, kept across restarts."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from pathlib import Path

DEFAULT_POD_CIDR = "127.3.0.0/16"


class PodIPAllocator:
    """Hands out addresses of a loopback network, one per pod key (``namespace/name``).

    A key gets the address it had before (the mapping is kept in ``state_file`` when one is
    given), else the first free address at or after a hash of the key, so that the same pod
    name tends to get the same address even on a fresh state directory. Addresses ending in
    ``.0`` or ``.255`` are skipped.
    """

    def __init__(self, cidr: str = DEFAULT_POD_CIDR, state_file: Path | None = None, what: str = "pod network") -> None:
        try:
            network = ipaddress.IPv4Network(cidr, strict=False)
        except ValueError as exc:
            raise ValueError(f"{what} {cidr!r}: not an IPv4 network ({exc})") from None
        if not network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            raise ValueError(f"{what} {cidr} is not inside 127.0.0.0/8 (loopback)")
        if network.num_addresses < 4:
            raise ValueError(f"{what} {cidr} is too small")
        self.what = what
        self.network = network
        self.state_file = state_file
        self._by_key: dict[str, str] = {}
        if state_file is not None and state_file.exists():
            try:
                saved = json.loads(state_file.read_text())
            except ValueError:
                saved = {}
            self._by_key = {str(k): str(v) for k, v in saved.items()
                            if ipaddress.IPv4Address(v) in network}

    def _usable(self, address: ipaddress.IPv4Address) -> bool:
        last = int(address) & 0xFF
        return last not in (0, 255) and address != self.network.network_address \
            and address != self.network.broadcast_address

    def allocate(self, key: str, preferred: str | None = None) -> str:
        """The address of ``key`` (its previous one, ``preferred`` if free and in the network, or a new one)."""
        if key in self._by_key:
            return self._by_key[key]
        taken = set(self._by_key.values())
        if preferred and preferred not in taken:
            try:
                candidate = ipaddress.IPv4Address(preferred)
            except ValueError:
                candidate = None
            if candidate is not None and candidate in self.network and self._usable(candidate):
                return self._remember(key, preferred)
        size = self.network.num_addresses
        start = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % size
        base = int(self.network.network_address)
        for step in range(size):
            address = ipaddress.IPv4Address(base + (start + step) % size)
            if self._usable(address) and str(address) not in taken:
                return self._remember(key, str(address))
        raise RuntimeError(f"{self.what} {self.network} is full")

    def release(self, key: str) -> None:
        if self._by_key.pop(key, None) is not None:
            self._save()

    def holders(self) -> list[str]:
        """The keys holding an address."""
        return list(self._by_key)

    def address_of(self, key: str) -> str | None:
        return self._by_key.get(key)

    def _remember(self, key: str, address: str) -> str:
        self._by_key[key] = address
        self._save()
        return address

    def _save(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._by_key, indent=1, sort_keys=True))
        os.replace(tmp, self.state_file)
