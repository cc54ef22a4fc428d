"""Bake time per weight step: watch each weight for ``--step-duration`` (the source document's
"monitor for a few minutes"), judged on real traffic where it can be read and on probes otherwise.

Real traffic is what the EPPs counted while the step baked, per pool: requests
(``inference_model_request_total``, GIE >= v1.0's ``inference_objective_request_total``) and
errors (``..._request_error_total``), read either

* from each EPP's ``/metrics`` at the start and the end of the step (:class:`EppMeter`), or
* from Prometheus's HTTP API (``--prometheus-url``, :class:`PrometheusMeter`), as Flagger
  does: ``sum(increase(<counter>{namespace="NS", pod=~"<EPP>-<hash>-<hash>"}[<step>s]))``.

The probe requests the analysis sends itself are subtracted; with fewer than
``--min-requests`` real requests the step is judged on the probe windows alone (reported).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from infergate.migrate.gates import GateResult
from infergate.util.tls import default_verify_context

REQUEST_COUNTERS = ("inference_model_request_total", "inference_objective_request_total")
ERROR_COUNTERS = ("inference_model_request_error_total", "inference_objective_request_error_total")
DEFAULT_STEP_DURATION_S = 120.0
DEFAULT_MIN_REQUESTS = 100
DEFAULT_PROBE_INTERVAL_S = 10.0  # a probe window (and the EPP gate) this often while a step bakes


@dataclass(frozen=True)
class BakeOptions:
    duration_s: float = DEFAULT_STEP_DURATION_S
    min_requests: int = DEFAULT_MIN_REQUESTS
    probe_interval_s: float = DEFAULT_PROBE_INTERVAL_S
    prometheus_url: str | None = None
    fast: bool = False  # one probe window per step, no bake (demos, tests)


@dataclass(frozen=True)
class Traffic:
    """Requests and errors a pool's EPP counted (errors are also requests the EPP saw)."""

    requests: float
    errors: float

    def __sub__(self, other: Traffic) -> Traffic:
        return Traffic(max(0.0, self.requests - other.requests), max(0.0, self.errors - other.errors))


PoolTraffic = dict[str, Traffic | None]  # pool -> traffic; None: not readable


class TrafficMeter(Protocol):
    async def start(self) -> None: ...
    async def read(self) -> PoolTraffic: ...


def traffic_of(text: str) -> Traffic:
    """The request and error counters of one /metrics page, summed over their labels."""
    requests = errors = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in REQUEST_COUNTERS:
                requests += sample.value
            elif sample.name in ERROR_COUNTERS:
                errors += sample.value
    return Traffic(requests + errors, errors)


class EppMeter:
    """Counters read from each pool's EPP /metrics; the difference since ``start``."""

    def __init__(self, urls: Mapping[str, str], *, timeout_s: float = 5.0) -> None:
        self.urls = dict(urls)
        self.timeout_s = timeout_s
        self._start: PoolTraffic = {}

    async def _snapshot(self) -> PoolTraffic:
        out: PoolTraffic = {}
        async with httpx.AsyncClient(verify=default_verify_context(), timeout=self.timeout_s) as client:
            for pool, url in self.urls.items():
                try:
                    response = await client.get(url)
                    out[pool] = traffic_of(response.text) if response.status_code == 200 else None
                except (httpx.HTTPError, ValueError):
                    out[pool] = None
        return out

    async def start(self) -> None:
        self._start = await self._snapshot()

    async def read(self) -> PoolTraffic:
        now = await self._snapshot()
        out: PoolTraffic = {}
        for pool, value in now.items():
            before = self._start.get(pool)
            out[pool] = None if value is None or before is None else value - before
        return out


class PrometheusMeter:
    """Counters queried from Prometheus (``/api/v1/query``), over the time since ``start``.

    ``epp_pods`` maps each pool to its EPP's name; the query selects that EPP's pods by
    namespace and pod name (``<epp>-<replicaset hash>-<pod hash>``), as Flagger selects a
    workload's pods."""

    def __init__(self, base_url: str, namespace: str, epp_pods: Mapping[str, str], *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        self.epp_pods = dict(epp_pods)
        self.timeout_s = timeout_s
        self._started = 0.0

    async def start(self) -> None:
        self._started = time.monotonic()

    def query(self, names: Sequence[str], epp: str, window_s: int) -> str:
        selector = (f'__name__=~"{"|".join(names)}",namespace="{self.namespace}",'
                    f'pod=~"{epp}-[a-z0-9]+-[a-z0-9]+"')
        return f"sum(increase({{{selector}}}[{window_s}s]))"

    async def _value(self, client: httpx.AsyncClient, promql: str) -> float | None:
        try:
            response = await client.get(f"{self.base_url}/api/v1/query", params={"query": promql})
            doc = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        if response.status_code != 200 or doc.get("status") != "success":
            return None
        result = (doc.get("data") or {}).get("result") or []
        if not result:
            return 0.0  # no series matched: no requests (sum() of nothing is empty)
        try:
            return float(result[0]["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            return None

    async def read(self) -> PoolTraffic:
        window = max(1, math.ceil(time.monotonic() - self._started))
        out: PoolTraffic = {}
        async with httpx.AsyncClient(verify=default_verify_context(), timeout=self.timeout_s) as client:
            for pool, epp in self.epp_pods.items():
                requests = await self._value(client, self.query(REQUEST_COUNTERS + ERROR_COUNTERS, epp, window))
                errors = await self._value(client, self.query(ERROR_COUNTERS, epp, window))
                out[pool] = None if requests is None or errors is None else Traffic(requests, errors)
        return out


def real_traffic_gate(traffic: PoolTraffic, pairs: Sequence[tuple[str, str]], probes_sent: int,
                      min_requests: int, min_success_rate: float, source: str) -> GateResult:
    """The step judged on the traffic the EPPs counted while it baked.

    Passes with a note when fewer than ``min_requests`` real requests (the EPPs' count minus
    the analysis's own probes) were seen: the probe windows judged the step. Fails when a GA
    pool's error ratio exceeds its preview pool's by more than ``1 - min_success_rate`` (the
    preview side's errors, e.g. 404s for models it never served, are its normal)."""
    unreadable = sorted(p for p, t in traffic.items() if t is None)
    if unreadable or not traffic:
        return GateResult("real-traffic", "pass", f"counters not readable ({', '.join(unreadable) or 'no EPP'}): "
                          "judged on probes")
    seen = sum(t.requests for t in traffic.values() if t is not None)
    real = max(0.0, seen - probes_sent)
    if real < min_requests:
        return GateResult("real-traffic", "pass", f"{real:.0f} real requests (< --min-requests {min_requests}) from "
                          f"{source}: judged on probes")
    budget = 1.0 - min_success_rate
    details: list[str] = []
    failed = False
    for preview, ga in pairs:
        p, g = traffic.get(preview), traffic.get(ga)
        if p is None or g is None:
            continue
        p_ratio = p.errors / p.requests if p.requests else 0.0
        g_ratio = g.errors / g.requests if g.requests else 0.0
        details.append(f"{ga}: {g.errors:.0f}/{g.requests:.0f} errors ({g_ratio:.1%}), {preview}: "
                       f"{p.errors:.0f}/{p.requests:.0f} ({p_ratio:.1%})")
        if g.requests and g_ratio > p_ratio + budget:
            failed = True
    text = f"{real:.0f} real requests from {source}; " + "; ".join(details)
    return GateResult("real-traffic", "fail" if failed else "pass",
                      text + (f" (GA error ratio above the preview's + {budget:.1%})" if failed else ""))
