"""Prometheus text -> samples, and what ``status`` derives from two scrapes: rates, histogram quantiles."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


Scrape = list[Sample]
LabelFilter = Callable[[Mapping[str, str]], bool]


def parse(text: str) -> Scrape:
    """Every sample of a ``/metrics`` page (``ValueError`` if it is not Prometheus text)."""
    return [Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]


def total(scrape: Iterable[Sample], name: str, where: LabelFilter | None = None) -> float | None:
    """Sum of the samples named ``name`` (None when there are none)."""
    values = [s.value for s in scrape if s.name == name and (where is None or where(s.labels))]
    return sum(values) if values else None


def first(scrape: Iterable[Sample], *names: str) -> float | None:
    """The summed value of the first of ``names`` present (metric names differ between servers)."""
    for name in names:
        value = total(scrape, name)
        if value is not None:
            return value
    return None


def delta(before: Iterable[Sample], after: Iterable[Sample], name: str, where: LabelFilter | None = None) -> float:
    """Increase of a counter between two scrapes (a reset counts from zero)."""
    b, a = total(before, name, where) or 0.0, total(after, name, where) or 0.0
    return a - b if a >= b else a


def buckets(scrape: Iterable[Sample], name: str) -> dict[float, float]:
    """Cumulative counts per upper bound of histogram ``name`` (``name_bucket``), summed over label sets."""
    out: dict[float, float] = {}
    for s in scrape:
        if s.name == name + "_bucket" and "le" in s.labels:
            le = math.inf if s.labels["le"] in ("+Inf", "Inf") else float(s.labels["le"])
            out[le] = out.get(le, 0.0) + s.value
    return out


def bucket_delta(before: Mapping[float, float], after: Mapping[float, float]) -> dict[float, float]:
    return {le: max(0.0, count - before.get(le, 0.0)) for le, count in after.items()}


def merge_buckets(parts: Iterable[Mapping[float, float]]) -> dict[float, float]:
    out: dict[float, float] = {}
    for part in parts:
        for le, count in part.items():
            out[le] = out.get(le, 0.0) + count
    return out


def quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket; None without observations."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for le in bounds:
        count = cumulative[le]
        if count >= rank:
            if math.isinf(le):
                return lower  # in the +Inf bucket: the highest finite bound
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def label_list(scrape: Iterable[Sample], name: str, label: str) -> list[str]:
    """Comma-separated ``label`` of the newest sample of an info metric (vLLM's LoRA info: value = time)."""
    newest: Sample | None = None
    for s in scrape:
        if s.name == name and (newest is None or s.value >= newest.value):
            newest = s
    if newest is None:
        return []
    return [part for part in newest.labels.get(label, "").split(",") if part]
