"""The analysis gates (pure): no traffic pauses, allow-list divergence, success rate, p99
TTFT against the baseline, per-pool attribution within max(0.10, 3 sigma)."""

from __future__ import annotations

import math

from infergate.migrate.gates import (
    Baseline,
    GateResult,
    Sample,
    Window,
    analyse,
    attribution_tolerance,
    overall,
    percentile,
    slow_probes_allowed,
)
from infergate.migrate.plan import Gates

PAIRS = [("pool-preview", "pool-ga")]


def ok(model: str = "m", ttft: float = 0.02) -> Sample:
    return Sample(model, 200, ttft)


def verdicts(results: list) -> dict[str, str]:
    return {r.gate: r.verdict for r in results}


def test_no_traffic_is_paused_not_passed() -> None:
    results = analyse(Window((), {"pool-preview": 0.0, "pool-ga": 0.0}), None, 50, PAIRS, Gates())
    assert overall(results) == "paused"
    assert overall(analyse(Window((), None), None, 50, PAIRS, Gates())) == "paused"


def test_healthy_fifty_fifty_passes() -> None:
    window = Window(tuple(ok() for _ in range(100)), {"pool-preview": 104.0, "pool-ga": 96.0})
    results = analyse(window, Baseline(0.02, {"m": 200}), 50, PAIRS, Gates())
    assert overall(results) == "pass", results


def test_a_split_that_sends_everything_to_one_pool_fails_attribution() -> None:
    # migration.md §9 case 5: 200 requests at 50/50, all scheduled by the preview EPP
    window = Window(tuple(ok() for _ in range(200)), {"pool-preview": 200.0, "pool-ga": 0.0})
    results = analyse(window, Baseline(0.02, {"m": 200}), 50, PAIRS, Gates())
    assert verdicts(results)["attribution pool-ga"] == "fail"
    assert overall(results) == "fail"


def test_attribution_tolerance_is_the_larger_of_the_floor_and_three_sigma() -> None:
    assert attribution_tolerance(0.5, 10000, 0.10) == 0.10
    assert abs(attribution_tolerance(0.5, 25, 0.10) - 0.3) < 1e-9


def test_a_model_the_preview_epp_rejected_must_not_become_silent_success() -> None:
    # migration.md §9 case 6: the preview EPP answered 404 (no InferenceModel), the GA EPP serves it
    baseline = Baseline(0.02, {"known": 200, "unknown": 404})
    samples = (*[ok("known") for _ in range(50)], *[Sample("unknown", 404) for _ in range(25)],
               *[ok("unknown") for _ in range(25)])
    window = Window(samples, {"pool-preview": 75.0, "pool-ga": 75.0})
    results = analyse(window, baseline, 50, PAIRS, Gates())
    assert verdicts(results)["allow-list"] == "fail"
    assert "unknown" in next(r.detail for r in results if r.gate == "allow-list")
    # the expected 404s are not failures of the success rate
    assert verdicts(results)["success-rate"] == "pass"
    declared = analyse(window, baseline, 50, PAIRS, Gates(allow_unknown_models_served=True))
    assert overall(declared) == "pass"
    assert "declared change" in next(r.detail for r in declared if r.gate == "allow-list")


def test_a_model_the_preview_served_and_ga_rejects_fails() -> None:
    baseline = Baseline(0.02, {"m": 200})
    window = Window((*[ok() for _ in range(50)], *[Sample("m", 404) for _ in range(50)]),
                    {"pool-preview": 50.0, "pool-ga": 50.0})
    assert verdicts(analyse(window, baseline, 50, PAIRS, Gates()))["allow-list"] == "fail"


def test_errors_fail_the_success_rate() -> None:
    window = Window((*[ok() for _ in range(95)], *[Sample("m", 500) for _ in range(5)]),
                    {"pool-preview": 50.0, "pool-ga": 50.0})
    results = analyse(window, Baseline(0.02, {"m": 200}), 50, PAIRS, Gates())
    assert verdicts(results)["success-rate"] == "fail"
    assert "500: 5" in next(r.detail for r in results if r.gate == "success-rate")


def test_p99_ttft_against_the_baseline() -> None:
    slow = Window(tuple(ok(ttft=0.5) for _ in range(100)), {"pool-preview": 50.0, "pool-ga": 50.0})
    assert verdicts(analyse(slow, Baseline(0.02, {"m": 200}), 50, PAIRS, Gates()))["p99-ttft"] == "fail"
    fine = Window(tuple(ok(ttft=0.03) for _ in range(100)), {"pool-preview": 50.0, "pool-ga": 50.0})
    assert verdicts(analyse(fine, Baseline(0.02, {"m": 200}), 50, PAIRS, Gates()))["p99-ttft"] == "pass"



def test_one_slow_probe_is_no_evidence_but_a_few_are() -> None:
    """The p99 of 20 or 60 probes is their slowest: the gate counts the probes over the limit
    (baseline 20 ms x 1.5 + 50 ms = 80 ms) against what a p99 at the limit lets through."""
    baseline = Baseline(0.02, {"m": 200})

    def p99_gate(ttfts: list[float]) -> GateResult:
        window = Window(tuple(ok(ttft=t) for t in ttfts), {"pool-preview": 50.0, "pool-ga": 50.0})
        return next(r for r in analyse(window, baseline, 50, PAIRS, Gates()) if r.gate == "p99-ttft")

    one = p99_gate([0.03] * 19 + [0.5])
    assert one.verdict == "pass" and "1 of 20 over it (at most 1)" in one.detail, one
    assert "p99 500.0 ms" in one.detail  # the p99 is still reported: the slowest probe
    assert p99_gate([0.03] * 18 + [0.5, 0.5]).verdict == "fail"
    assert p99_gate([0.03] * 58 + [0.5, 0.5]).verdict == "pass"
    three = p99_gate([0.03] * 57 + [0.5, 0.5, 0.5])
    assert three.verdict == "fail" and "3 of 60 over it (at most 2)" in three.detail, three
    assert p99_gate([0.081] * 60).verdict == "fail"  # the whole window just over the limit
    assert p99_gate([0.08] * 60).verdict == "pass"  # at the limit is within it
    assert p99_gate([0.5] * 3).verdict == "fail"  # three probes: none may be slow


def test_slow_probes_allowed_is_the_binomial_tail() -> None:
    """The largest k with P(X >= k) >= 5% for X ~ Binomial(n, 1%), computed here from the sums."""
    def tail(n: int, k: int) -> float:
        return 1.0 - sum(math.comb(n, i) * 0.01**i * 0.99 ** (n - i) for i in range(k))

    for n in (1, 5, 6, 10, 20, 40, 60, 100, 250, 1000):
        k = slow_probes_allowed(n)
        assert tail(n, k) >= 0.05 > tail(n, k + 1), (n, k)
    assert slow_probes_allowed(0) == 0
    assert 1000 < slow_probes_allowed(100_000) < 1100  # past float range: mean + 3 sigma

def test_missing_per_pool_evidence_pauses_unless_waived() -> None:
    window = Window(tuple(ok() for _ in range(20)), None)
    assert overall(analyse(window, Baseline(0.02, {"m": 200}), 50, PAIRS, Gates())) == "paused"
    assert overall(analyse(window, Baseline(0.02, {"m": 200}), 50, PAIRS, Gates(require_attribution=False))) == "pass"


def test_percentile_nearest_rank() -> None:
    assert percentile([], 99) is None
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


def test_an_unreachable_ga_epp_fails_even_at_weight_zero() -> None:
    window = Window(tuple(ok() for _ in range(20)), None, ("pool-ga",))
    results = analyse(window, Baseline(0.02, {"m": 200}), 0, PAIRS, Gates())
    assert verdicts(results)["epp"] == "fail" and overall(results) == "fail"
    idle = analyse(Window((), None, ("pool-ga",)), None, 0, PAIRS, Gates())
    assert overall(idle) == "fail"  # no traffic does not hide a dead EPP


def test_unreachable_epps_on_both_sides_are_no_evidence_not_a_failure() -> None:
    # from outside a cluster no EPP may be reachable: attribution pauses, nothing is declared down
    window = Window(tuple(ok() for _ in range(20)), None, ("pool-ga", "pool-preview"))
    results = analyse(window, Baseline(0.02, {"m": 200}), 0, PAIRS, Gates())
    assert "epp" not in verdicts(results) and overall(results) == "paused"
