"""Which EPP presets `infergate bench peers` can run as routers."""

from __future__ import annotations

from infergate.bench.peers.routers import ALL_ROUTERS, InfergateRouter, make_router
from infergate.epp.scheduling.config import PRESETS


def test_upstream_default_is_a_router_and_all_has_no_duplicate_config() -> None:
    router = make_router("infergate-upstream-v1.0")
    assert isinstance(router, InfergateRouter) and router.profile == "upstream-v1.0"
    assert isinstance(make_router("infergate-default"), InfergateRouter)
    # `all` runs each EPP config once: predicted-latency is the default, so only infergate-default
    epp = [r[len("infergate-"):] for r in ALL_ROUTERS if r.startswith("infergate-")]
    assert len({PRESETS[p] for p in epp}) == len(epp)
    assert "infergate-predicted-latency" not in ALL_ROUTERS
