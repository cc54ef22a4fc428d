"""The decision replay with the EPP's latency holdback (issue 16): it reads the engines' TTFT and
inter-token latency histograms through the replay's scrapes; workloads without sheddable
requests make the same picks with it on; on the priority mix it sheds sheddable requests only."""

from __future__ import annotations

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
    off = replay(workload, "default", 1, 8.0,
                 saturation=SaturationConfig(sheddable_ttft_objective=0, sheddable_itl_objective=0))
    assert on.shed and set(on.shed) == {SHEDDABLE}
    assert len(on.shed) > len(off.shed)
    assert all(o.objective == CRITICAL for o in on.measured)
