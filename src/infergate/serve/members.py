"""The pool members ``infergate serve`` gives Envoy: each endpoint's own ``ip:port``.

An InferencePool has one target port, so the gateway's translator makes a pool's members
``pod IP x that port``; Envoy honours the EPP's pick only if it is a member. The EPP's static
format lets each endpoint have its own port (two model servers on one machine), so ``serve``
sets each pool's members in the IR to the endpoints it serves, just before the IR reaches the
data plane. Everything else in the IR is the translator's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from infergate.ir import DataplaneConfig, Endpoint

Members = Callable[[], Mapping[str, tuple[Endpoint, ...]]]


def pool_key(group: str, namespace: str, name: str) -> str:
    """The IR key of a pool (as the controller's translator names it)."""
    return f"pool/{group}/{namespace}/{name}"


def with_members(ir: DataplaneConfig, members: Mapping[str, tuple[Endpoint, ...]]) -> DataplaneConfig:
    pools = tuple(replace(pool, endpoints=members[pool.key]) if pool.key in members else pool for pool in ir.pools)
    return replace(ir, pools=pools)


class MemberApplier:
    """An ``Applier`` for the controller's ``Reconciler`` in front of the ``Dataplane``."""

    def __init__(self, dataplane: Any, members: Members) -> None:
        self.dataplane = dataplane
        self.members = members
        self._last: DataplaneConfig | None = None
        self._lock = asyncio.Lock()

    async def apply(self, ir: DataplaneConfig) -> Any:
        async with self._lock:
            self._last = ir
            return await self.dataplane.apply(with_members(ir, self.members()))

    async def reapply(self) -> None:
        """Apply the last IR again with the current members (after a pool file changed)."""
        if self._last is not None:
            await self.apply(self._last)
