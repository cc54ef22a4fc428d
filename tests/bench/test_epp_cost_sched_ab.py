"""The scheduling A/B's pieces that run without processes: the measurement with the scrapes fed
as the Director feeds them, the summary over rounds and the report."""

from __future__ import annotations

import random

from infergate.bench.epp_cost import measure_scheduling
from infergate.bench.epp_cost_sched_ab import FED, THIS_TREE, render, summarise


def test_the_measurement_runs_with_and_without_the_scrapes_fed() -> None:
    for fed in (False, True):
        result = measure_scheduling(8, 5, random.Random(1), feed_scrapes=fed)
        assert result["endpoints"] == 8 and result["requests"] == 5 and result["mean_ms"] > 0


def test_the_summary_takes_medians_and_the_spread_of_the_means() -> None:
    def row(mean: float) -> dict[str, float]:
        return {"mean_ms": mean, "p50_ms": mean - 0.05, "p99_ms": mean * 2}

    rows = {"abc1234": [row(0.5), row(0.6), row(0.55)], THIS_TREE: [row(0.3), row(0.35), row(0.4)],
            FED: [row(0.28), row(0.3), row(0.32)]}
    summary = summarise(rows)
    assert [s["side"] for s in summary] == ["abc1234", THIS_TREE, FED]
    assert summary[0]["mean_ms"] == 0.55 and summary[0]["least_mean_ms"] == 0.5 and summary[0]["most_mean_ms"] == 0.6
    text = render(["abc1234"], summary, (2.3, 2.8), 3, 600)
    assert "--rev abc1234 --rounds 3 --requests 600" in text and "load average (1 min) 2.30 to 2.80" in text
    assert "| this tree | 0.350 | 0.300 - 0.400 |" in text and "| 0.64x |" in text
