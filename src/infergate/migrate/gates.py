"""Analysis gates between weight steps (pure functions over measured windows).

* **success rate**: 2xx among probe responses, not counting a 404 for a model the preview
  stack already answered 404 for (that is its allow-list, not an error);
* **p99 time to first token** against the baseline measured before any shift: the gate fails
  when more probes are over the limit than a p99 at the limit would let through (a binomial
  test), not on the slowest of a few dozen probes alone;
* **per-pool attribution**: requests each EPP scheduled in the window; the GA share of every
  (preview, GA) pair within max(0.10, 3 sigma) of the weight (GIE's weighted-pools
  conformance rule);
* **model allow-list**: a model the preview EPP answered 404 for must not turn into silent
  success (the GA EPP serves any model) or failure; it is reported, and passes only when the
  operator declared the change (``--allow-unknown-models-served``);
* **no traffic** is ``paused``, never ``pass``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from infergate.migrate.plan import Gates

Verdict = Literal["pass", "fail", "paused"]


@dataclass(frozen=True)
class Sample:
    model: str
    status: int  # HTTP status; 0 when the request failed without a response
    ttft_s: float | None = None
    pod: str | None = None


@dataclass(frozen=True)
class Window:
    samples: tuple[Sample, ...]
    # requests each pool's EPP scheduled during the window (pool name -> count); None: not measurable
    pool_requests: Mapping[str, float] | None = None
    unreachable: tuple[str, ...] = ()  # pools whose EPP /metrics did not answer


@dataclass(frozen=True)
class GateResult:
    gate: str
    verdict: Verdict
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "verdict": self.verdict, "detail": self.detail}


@dataclass(frozen=True)
class Baseline:
    p99_ttft_s: float | None
    model_status: Mapping[str, int]  # the most frequent status per model before the shift

    def to_dict(self) -> dict[str, Any]:
        return {"p99TtftS": self.p99_ttft_s, "modelStatus": dict(self.model_status)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        return cls(data.get("p99TtftS"), {str(k): int(v) for k, v in (data.get("modelStatus") or {}).items()})


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def baseline_of(window: Window) -> Baseline:
    per_model: dict[str, Counter[int]] = {}
    for s in window.samples:
        per_model.setdefault(s.model, Counter())[s.status] += 1
    statuses = {m: c.most_common(1)[0][0] for m, c in per_model.items()}
    ttfts = [s.ttft_s for s in window.samples if 200 <= s.status < 300 and s.ttft_s is not None]
    return Baseline(percentile(ttfts, 99), statuses)


def attribution_tolerance(expected: float, n: float, floor: float) -> float:
    sigma = math.sqrt(max(expected * (1 - expected), 0.0) / n) if n > 0 else 1.0
    return max(floor, 3 * sigma)


def analyse(
    window: Window,
    baseline: Baseline | None,
    ga_weight: int,
    pairs: Sequence[tuple[str, str]],  # (preview pool, GA pool)
    gates: Gates,
) -> list[GateResult]:
    """Every gate's verdict on one window, in report order."""
    rejected = {m for m, status in (baseline.model_status if baseline else {}).items() if status == 404}
    epp_down = epp_gate(window, pairs)
    no_epp_traffic = window.pool_requests is not None and sum(window.pool_requests.values()) <= 0
    if not window.samples and (window.pool_requests is None or no_epp_traffic):
        return [*epp_down, GateResult("traffic", "paused", "no requests in the analysis window: nothing to judge")]
    results = [allow_list_gate(window, baseline, rejected, gates)]
    if window.samples:
        judged = [s for s in window.samples if not (s.model in rejected and s.status == 404)]  # expected 404s
        results += [success_rate_gate(judged, gates), p99_ttft_gate(judged, baseline, gates)]
    return [*results, *epp_down, *attribution_gates(window, ga_weight, pairs, gates)]


def epp_gate(window: Window, pairs: Sequence[tuple[str, str]]) -> list[GateResult]:
    """A GA EPP that does not answer while its preview counterpart does (so EPPs are reachable
    from here at all: from outside a cluster, often none is) is down."""
    down = [ga for preview, ga in pairs if ga in window.unreachable and preview not in window.unreachable]
    if not down:
        return []
    return [GateResult("epp", "fail", "the EPP of " + ", ".join(down) + " does not answer (its /metrics is "
                       "unreachable): traffic shifted to it would fail")]


def allow_list_gate(window: Window, baseline: Baseline | None, rejected: set[str], gates: Gates) -> GateResult:
    """Model allow-list divergence: a model the preview stack answered 404 (``rejected``) now served,
    or one it served now answered 404."""
    divergent: list[str] = []
    newly_rejected: list[str] = []
    for s in window.samples:
        if s.model in rejected and 200 <= s.status < 300:
            divergent.append(s.model)
        elif baseline is not None and baseline.model_status.get(s.model, 0) // 100 == 2 and s.status == 404:
            newly_rejected.append(s.model)
    if newly_rejected:
        return GateResult("allow-list", "fail", "404 for models the preview stack served: "
                          + ", ".join(sorted(set(newly_rejected))))
    if not divergent:
        return GateResult("allow-list", "pass",
                          "no divergence" + (f" ({', '.join(sorted(rejected))} still 404)" if rejected else ""))
    models = ", ".join(sorted(set(divergent)))
    if gates.allow_unknown_models_served:
        return GateResult("allow-list", "pass",
                          f"declared change: the GA stack serves {models}, which the preview EPP "
                          "answered 404 (no InferenceModel) [--allow-unknown-models-served]")
    return GateResult("allow-list", "fail",
                      f"divergence: the GA stack serves {models} ({len(divergent)} responses 200), "
                      "which the preview EPP answered 404 (no InferenceModel); convert with "
                      "--unknown-models reject, add InferenceModels, or accept it with "
                      "--allow-unknown-models-served")


def success_rate_gate(judged: Sequence[Sample], gates: Gates) -> GateResult:
    """2xx among the ``judged`` probe responses (the expected 404s left out)."""
    if not judged:
        return GateResult("success-rate", "paused", "only requests for rejected models: nothing to judge")
    ok = sum(1 for s in judged if 200 <= s.status < 300)
    rate = ok / len(judged)
    failed = Counter(s.status for s in judged if not 200 <= s.status < 300)
    detail = f"{ok}/{len(judged)} = {rate:.3f} (min {gates.min_success_rate})"
    if failed:
        detail += "; failures " + ", ".join(f"{k or 'no response'}: {v}" for k, v in sorted(failed.items()))
    return GateResult("success-rate", "pass" if rate >= gates.min_success_rate else "fail", detail)


# The p99 gate's test: a window fails when, were 1% of all requests over the limit (a p99 right at
# it), as many of its probes over the limit would come less often than this.
P99_SHARE = 0.01
P99_SIGNIFICANCE = 0.05


def slow_probes_allowed(n: int, share: float = P99_SHARE, significance: float = P99_SIGNIFICANCE) -> int:
    """The most of ``n`` probes that may be over the limit when ``share`` of all requests are: the
    largest k with P(X >= k) >= ``significance``, X ~ Binomial(n, share): 0 up to 5 probes, 1 for
    20, 2 for 60 (the default ``--probes``), 3 for 100. The p99 of a few dozen probes is their
    slowest, and one slow probe is no evidence that the p99 of the traffic moved."""
    if n <= 0:
        return 0
    term = (1.0 - share) ** n  # P(X = 0)
    if term == 0.0:  # n in the tens of thousands: the normal approximation, 3 sigma over the mean
        return math.floor(n * share + 3 * math.sqrt(n * share * (1 - share)))
    at_least = 1.0  # P(X >= k), from k = 0
    for k in range(n):
        at_least -= term  # now P(X >= k + 1)
        if at_least < significance:
            return k
        term *= (n - k) / (k + 1) * share / (1.0 - share)
    return n


def p99_ttft_gate(judged: Sequence[Sample], baseline: Baseline | None, gates: Gates) -> GateResult:
    """p99 time to first token of the successful ``judged`` responses against the baseline's: fails
    when more of them are over the limit than ``slow_probes_allowed`` lets through."""
    ttfts = [s.ttft_s for s in judged if 200 <= s.status < 300 and s.ttft_s is not None]
    p99 = percentile(ttfts, 99)
    if p99 is None:
        return GateResult("p99-ttft", "paused", "no successful streamed responses")
    if baseline is None or baseline.p99_ttft_s is None:
        return GateResult("p99-ttft", "pass", f"p99 {p99 * 1000:.1f} ms (no baseline)")
    limit = baseline.p99_ttft_s * gates.p99_ttft_factor + gates.p99_ttft_slack_s
    over = sum(1 for t in ttfts if t > limit)
    allowed = slow_probes_allowed(len(ttfts))
    return GateResult("p99-ttft", "pass" if over <= allowed else "fail",
                      f"p99 {p99 * 1000:.1f} ms, baseline {baseline.p99_ttft_s * 1000:.1f} ms, limit "
                      f"{limit * 1000:.1f} ms: {over} of {len(ttfts)} over it (at most {allowed})")


def attribution_gates(window: Window, ga_weight: int, pairs: Sequence[tuple[str, str]],
                      gates: Gates) -> list[GateResult]:
    """Per (preview, GA) pair: the GA share of the requests their EPPs scheduled, against the weight."""
    if window.pool_requests is None:
        return [GateResult("attribution", "paused" if gates.require_attribution else "pass",
                           "no per-pool evidence (EPP metrics unreachable)"
                           + ("" if gates.require_attribution else ": skipped (--no-attribution)"))]
    results: list[GateResult] = []
    expected = ga_weight / 100
    for preview, ga in pairs:
        p = float(window.pool_requests.get(preview, 0.0))
        g = float(window.pool_requests.get(ga, 0.0))
        n = p + g
        if n <= 0:
            results.append(GateResult(f"attribution {ga}", "paused", f"no requests scheduled by {preview} or {ga}"))
            continue
        observed = g / n
        tol = attribution_tolerance(expected, n, gates.attribution_floor)
        ok = abs(observed - expected) <= tol
        results.append(GateResult(
            f"attribution {ga}", "pass" if ok else "fail",
            f"GA share {observed:.3f} of {n:.0f} requests ({preview}: {p:.0f}, {ga}: {g:.0f}), expected "
            f"{expected:.2f} +/- {tol:.3f}"))
    return results


def overall(results: Sequence[GateResult]) -> Verdict:
    if any(r.verdict == "fail" for r in results):
        return "fail"
    if any(r.verdict == "paused" for r in results):
        return "paused"
    return "pass"
