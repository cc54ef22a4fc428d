"""Summaries of a profile's results: the numbers `infergate bench scheduling` prints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from infergate.bench.loadgen import RequestResult


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class ProfileSummary:
    ttft_p50: float
    ttft_p90: float
    itl_p50: float
    e2e_p90: float
    output_tokens_per_s: float
    requests: int
    failed: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize(results: Sequence[RequestResult], wall_time: float) -> ProfileSummary:
    good = [r for r in results if r.ok]
    ttfts = [r.ttft for r in good if r.ttft is not None]
    e2es = [r.e2e for r in good if r.e2e is not None]
    gaps = [g for r in good for g in r.gaps]
    tokens = sum(r.output_tokens for r in good)
    return ProfileSummary(
        ttft_p50=percentile(ttfts, 50),
        ttft_p90=percentile(ttfts, 90),
        itl_p50=percentile(gaps, 50),
        e2e_p90=percentile(e2es, 90),
        output_tokens_per_s=tokens / wall_time if wall_time > 0 else math.nan,
        requests=len(results),
        failed=len(results) - len(good),
    )
