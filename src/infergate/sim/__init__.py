"""infergate's vLLM-compatible model-server simulator (``infergate sim``).

Programmatic use (asyncio)::

    from infergate.sim import SimConfig, SimCluster

    cfg = SimConfig(model="meta-llama/Llama-3.1-8B-Instruct", lora_adapters=("food-review",),
                    max_loras=4, profile="llama-3.1-8b-h100", time_scale=20.0)
    async with SimCluster(cfg, addresses=["127.40.1.1", "127.40.1.2"], port=8000) as cluster:
        cluster.endpoints    # ["127.40.1.1:8000", "127.40.1.2:8000"]
        cluster.replicas[0]  # Replica: .engine, .set_faults(...), .crash(...), .restart(...)

The HTTP-serving classes import aiohttp, so they are loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infergate.sim.config import PROFILES, LatencyProfile, SimConfig

if TYPE_CHECKING:
    from infergate.sim.cluster import SimCluster, consecutive_addresses
    from infergate.sim.replica import Faults, Replica

__all__ = ["PROFILES", "Faults", "LatencyProfile", "Replica", "SimCluster", "SimConfig", "consecutive_addresses"]


def __getattr__(name: str) -> Any:
    if name in ("SimCluster", "consecutive_addresses"):
        from infergate.sim import cluster

        return getattr(cluster, name)
    if name in ("Replica", "Faults"):
        from infergate.sim import replica

        return getattr(replica, name)
    raise AttributeError(f"module 'infergate.sim' has no attribute {name!r}")
