"""One router's numbers on one workload phase, in model time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from infergate.bench.peers.driver import TurnResult
from infergate.bench.peers.workloads import CRITICAL
from infergate.bench.stats import percentile

SLO_TTFT_S = 0.5  # model seconds
SLO_ITL_S = 0.050
JSON_FIELDS = ("ttft_p50", "ttft_p90", "ttft_p99", "itl_p50", "e2e_p90", "output_tokens_per_s", "goodput",
               "requests", "failed", "shed", "prefix_hit", "ttft_p90_steady")
SHED_STATUSES = (429, 503)
# "after warm-up" figures leave out the turns sent in the phase's first fifth: every router starts
# on cold caches, and a closed loop starts all its users at once, so its first turns are one cold
# burst (multi-turn: 32 first turns of ~1,150 uncached tokens each, ~10% of a phase's requests,
# exactly where the p90 falls)
WARMUP_FRACTION = 0.2


@dataclass(frozen=True)
class Summary:
    ttft_p50: float
    ttft_p90: float
    ttft_p99: float
    itl_p50: float
    e2e_p90: float
    output_tokens_per_s: float  # per model second
    goodput: float  # requests meeting the SLO per model second
    requests: int
    failed: int
    shed: int
    prefix_hit: float  # fraction of prompt tokens served from the replicas' prefix caches
    goodput_fraction: float = math.nan
    router_cpu_s_per_request: float = math.nan
    machine_busy: float = math.nan  # the whole machine, other jobs included (bench.peers.cpu)
    bench_cores: float = math.nan  # the run's own processes: simulators, router, load generator
    cpu_wait: float = math.nan  # of their runnable time, the fraction spent waiting for a core
    sched_delay_ms: float = math.nan  # their mean run-queue wait per timeslice, wall ms
    ttft_p90_steady: float = math.nan  # TTFT p90 of the turns sent after the warm-up (WARMUP_FRACTION)

    def as_json(self) -> dict[str, float | int | None]:
        data = asdict(self)
        return {k: _finite(data[k]) for k in JSON_FIELDS}


def _finite(value: float | int) -> float | int | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def meets_slo(result: TurnResult, time_scale: float) -> bool:
    if not result.ok or result.ttft is None or result.ttft * time_scale > SLO_TTFT_S:
        return False
    if not result.gaps:
        return True
    return sum(result.gaps) / len(result.gaps) * time_scale <= SLO_ITL_S


def tokens_by(result: TurnResult, end: float) -> float:
    """The output tokens of ``result`` that had arrived by ``end`` (wall seconds from the phase's
    start): its text events arrive at ``sent_at + ttft``, then one gap after another, and carry
    ``output_tokens`` evenly (one token per event from the simulator)."""
    if result.ttft is None or result.output_tokens <= 0:
        return 0.0
    at = result.sent_at + result.ttft
    if at > end:
        return 0.0
    events = 1
    for gap in result.gaps:
        at += gap
        if at > end:
            break
        events += 1
    return result.output_tokens * events / (len(result.gaps) + 1)


def summarize(results: Sequence[TurnResult], wall_time: float, time_scale: float, *, prefix_hit: float,
              priority: bool = False, router_cpu_s: float = math.nan, machine_busy: float = math.nan,
              bench_cores: float = math.nan, cpu_wait: float = math.nan,
              sched_delay_ms: float = math.nan, window: float | None = None) -> Summary:
    """Latencies and rates in model time. With ``priority`` the latency, goodput and token
    figures are the critical requests'; sheds (429/503 of sheddable requests) are counted apart.

    ``window`` (wall seconds from the phase's start; a closed loop's duration): output tokens/s
    and goodput count only what arrived within it (tokens received by then, requests that ended
    by then) over its length. A closed loop's turns in flight at its end finish and count in the
    latencies, but the time they take to drain, with ever fewer users, is no throughput: rated
    over ``wall_time`` instead, a run's figure moves with when its last turns happen to end
    (multi-turn: a user thinking at the deadline ended the phase up to 3 model seconds later).
    Without a window (an open loop, which sends every session) the rates are over ``wall_time``."""
    shed = [r for r in results if not r.ok and r.objective not in (None, CRITICAL) and r.status in SHED_STATUSES]
    measured = [r for r in results if r.objective in (None, CRITICAL)] if priority else list(results)
    failed = [r for r in results if not r.ok and r not in shed]
    good = [r for r in measured if r.ok]
    model_time = wall_time * time_scale
    ttfts = [r.ttft * time_scale for r in good if r.ttft is not None]
    warmup = WARMUP_FRACTION * wall_time
    steady = [r.ttft * time_scale for r in good if r.ttft is not None and r.sent_at >= warmup]
    e2es = [r.e2e * time_scale for r in good if r.e2e is not None]
    gaps = [g * time_scale for r in good for g in r.gaps]
    in_slo = [r for r in measured if meets_slo(r, time_scale)]
    if window is None:
        rated_time, tokens, good_requests = model_time, float(sum(r.output_tokens for r in good)), len(in_slo)
    else:
        rated_time = window * time_scale
        tokens = sum(tokens_by(r, window) for r in good)
        good_requests = sum(1 for r in in_slo if r.e2e is not None and r.sent_at + r.e2e <= window)
    return Summary(
        ttft_p50=percentile(ttfts, 50), ttft_p90=percentile(ttfts, 90), ttft_p99=percentile(ttfts, 99),
        itl_p50=percentile(gaps, 50), e2e_p90=percentile(e2es, 90),
        output_tokens_per_s=tokens / rated_time if rated_time > 0 else math.nan,
        goodput=good_requests / rated_time if rated_time > 0 else math.nan,
        requests=len(results), failed=len(failed), shed=len(shed), prefix_hit=prefix_hit,
        goodput_fraction=len(in_slo) / len(measured) if measured else math.nan,
        router_cpu_s_per_request=router_cpu_s / len(results) if results else math.nan,
        machine_busy=machine_busy, bench_cores=bench_cores, cpu_wait=cpu_wait, sched_delay_ms=sched_delay_ms,
        ttft_p90_steady=percentile(steady, 90),
    )


def prefix_hit_rate(metrics_texts: Sequence[str]) -> float:
    """hits / queries summed over the replicas' ``vllm:prefix_cache_{hits,queries}`` counters."""
    hits = queries = 0.0
    for text in metrics_texts:
        for line in text.splitlines():
            if line.startswith("vllm:prefix_cache_hits_total") or line.startswith("vllm:prefix_cache_hits{"):
                hits += float(line.rsplit(" ", 1)[1])
            elif line.startswith("vllm:prefix_cache_queries_total") or line.startswith("vllm:prefix_cache_queries{"):
                queries += float(line.rsplit(" ", 1)[1])
    return hits / queries if queries else math.nan


def replicas_per_group(results: Sequence[TurnResult]) -> float:
    """Mean number of distinct replicas that served each prefix group (1 = perfect affinity)."""
    pods: dict[int, set[str]] = {}
    for r in results:
        if r.ok and r.pod is not None:
            pods.setdefault(r.group, set()).add(r.pod)
    return sum(len(v) for v in pods.values()) / len(pods) if pods else math.nan


def load_shares(results: Sequence[TurnResult]) -> dict[str, float]:
    """Fraction of the served requests each replica got."""
    counts: dict[str, int] = {}
    for r in results:
        if r.ok and r.pod is not None:
            counts[r.pod] = counts.get(r.pod, 0) + 1
    total = sum(counts.values())
    return {pod: n / total for pod, n in sorted(counts.items())} if total else {}
