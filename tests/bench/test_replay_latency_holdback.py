"""The decision replay with the EPP's latency holdback (issue 16): it reads the engines' TTFT and
inter-token latency histograms through the replay's scrapes; workloads without sheddable
requests make the same picks with it on; on the priority mix it sheds sheddable requests only."""

from __future__ import annotations

import dataclasses

import pytest

from infergate.bench.peers.replay import replay
from infergate.bench.peers.workloads import CRITICAL, SHEDDABLE, make
from infergate.epp.saturation import SaturationConfig

ON = SaturationConfig(sheddable_ttft_objective=0.5, sheddable_itl_objective=0.05)


@pytest.mark.parametrize("name", ["shared-prefix", "heterogeneous", "lora-mix"])
def test_workloads_without_sheddable_requests_make_the_same_picks(name: str) -> None:
    workload = make(name, 3.0, 1, 4)
    off, on = replay(workload, "default", 1), replay(workload, "default", 1, saturation=ON)
    assert not on.shed
    assert [(o.replica, o.ttft, o.itl) for o in on.outcomes] == [(o.replica, o.ttft, o.itl) for o in off.outcomes]


def test_priority_mix_overload_sheds_only_sheddable_requests() -> None:
    workload = make("priority-mix", 8.0, 1, 4, closed=True)
    on = replay(workload, "default", 1, 8.0, saturation=ON)
    assert on.shed and set(on.shed) == {SHEDDABLE}
    assert all(o.objective == CRITICAL for o in on.measured)
    # the latency holdback's own sheds, with the prefill holdback off in both (since the replay's idle
    # scrape precedes t = 0, the prefill holdback sees the cold start's pending prefill and sheds as
    # many in these 8 s as the latency holdback would)
    off = SaturationConfig(sheddable_max_pending_prefill_tokens=0, sheddable_max_prefill_busy_fraction=0.0)
    on = replay(workload, "default", 1, 8.0, saturation=dataclasses.replace(
        off, sheddable_ttft_objective=ON.sheddable_ttft_objective, sheddable_itl_objective=ON.sheddable_itl_objective))
    without = replay(workload, "default", 1, 8.0, saturation=off)
    assert on.shed and set(on.shed) == {SHEDDABLE}
    assert len(on.shed) > len(without.shed)
    assert all(o.objective == CRITICAL for o in on.measured)
