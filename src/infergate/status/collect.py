"""Collect a ``StatusSnapshot``: objects from a reader, then ``/metrics`` twice, an interval apart.

Endpoints are the pods a pool selects (their IP and the pool's target port, or the endpoint
``infergate serve`` annotated); each one's ``/metrics`` gives queue, running, KV cache, prefix
cache hits, LoRA adapters and time to first token. The EPP (found through its Service: the
port named ``http-metrics`` or ``metrics``, else 9090) gives each pool's requests and errors
and their latency, and each endpoint's requests and errors (infergate's EPP; with another EPP,
an endpoint's request rate is its model server's count of finished requests). Rates and quantiles are over the window between the two scrapes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx

from infergate.status import metrics as m
from infergate.status.model import (
    Backend,
    EndpointStatus,
    GatewayStatus,
    Model,
    Objective,
    PoolStatus,
    RouteRule,
    RouteStatus,
    StatusSnapshot,
    Traffic,
)
from infergate.status.sources import Reader
from infergate.util.clock import utc_now
from infergate.util.tls import default_verify_context

GATEWAY_GROUP = "gateway.networking.k8s.io"
GA_GROUP = "inference.networking.k8s.io"
PREVIEW_GROUP = "inference.networking.x-k8s.io"
DEFAULT_EPP_METRICS_PORT = 9090
SERVE_ENDPOINT_ANNOTATION = "infergate.io/endpoint"  # set by infergate serve (endpoints with their own ports)

TTFT = ("vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds")
EPP_ENDPOINT_REQUESTS = "infergate_epp_endpoint_requests_total"  # per endpoint="address:port"
EPP_ENDPOINT_ERRORS = "infergate_epp_endpoint_errors_total"
EPP_FLOW_CONTROL_QUEUE = "inference_extension_flow_control_queue_size"  # requests waiting in the EPP
SERVER_FINISHED = ("vllm:request_success_total", "sglang:num_requests_total")  # the fallback


@dataclass(frozen=True)
class Objects:
    gateways: list[dict[str, Any]]
    routes: list[dict[str, Any]]
    pools: list[dict[str, Any]]
    objectives: list[dict[str, Any]]
    models: list[dict[str, Any]]
    services: list[dict[str, Any]]
    pods: list[dict[str, Any]]


def read_objects(reader: Reader) -> Objects:
    return Objects(
        gateways=reader.list_objects(GATEWAY_GROUP, "Gateway"),
        routes=reader.list_objects(GATEWAY_GROUP, "HTTPRoute"),
        pools=reader.list_objects(GA_GROUP, "InferencePool") + reader.list_objects(PREVIEW_GROUP, "InferencePool"),
        objectives=reader.list_objects(PREVIEW_GROUP, "InferenceObjective"),
        models=reader.list_objects(PREVIEW_GROUP, "InferenceModel"),
        services=reader.list_objects("", "Service"),
        pods=reader.list_objects("", "Pod"),
    )


# -- objects -> structure --------------------------------------------------------------------------

def _meta(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _condition(conditions: Sequence[Mapping[str, Any]] | None, kind: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == kind), None)


def _bool(cond: Mapping[str, Any] | None) -> bool | None:
    return None if cond is None else cond.get("status") == "True"


def gateway_status(obj: Mapping[str, Any]) -> GatewayStatus:
    ns, name = _meta(obj)
    status = obj.get("status") or {}
    programmed = _condition(status.get("conditions"), "Programmed")
    spec = obj.get("spec") or {}
    return GatewayStatus(
        namespace=ns, name=name, gateway_class=str(spec.get("gatewayClassName", "")),
        addresses=[str(a.get("value")) for a in status.get("addresses") or ()],
        programmed=_bool(programmed), programmed_reason=str((programmed or {}).get("reason", "")),
        programmed_message=str((programmed or {}).get("message", "")),
        listeners=[f"{li.get('name')} {li.get('port')}/{li.get('protocol')}" for li in spec.get("listeners") or ()],
    )


def _match_text(match: Mapping[str, Any]) -> str:
    parts = []
    path = match.get("path")
    if path:
        parts.append(f"path {path.get('type', 'PathPrefix')} {path.get('value', '/')}")
    for header in match.get("headers") or ():
        parts.append(f"header {header.get('name')}={header.get('value')}")
    if match.get("method"):
        parts.append(f"method {match['method']}")
    return " & ".join(parts) or "any"


def route_status(obj: Mapping[str, Any]) -> RouteStatus:
    ns, name = _meta(obj)
    spec = obj.get("spec") or {}
    rules = []
    for rule in spec.get("rules") or ():
        refs = list(rule.get("backendRefs") or ())
        weights = [int(r.get("weight", 1)) for r in refs]
        whole = sum(weights)
        rules.append(RouteRule(
            matches=[_match_text(mt) for mt in rule.get("matches") or ()] or ["any"],
            backends=[Backend(group=str(r.get("group", "")), kind=str(r.get("kind") or "Service"),
                              namespace=str(r.get("namespace") or ns), name=str(r.get("name", "")), weight=w,
                              share=(w / whole) if whole else 0.0) for r, w in zip(refs, weights, strict=True)]))
    parents = (obj.get("status") or {}).get("parents") or []
    accepted = resolved = None
    message = ""
    for parent in parents:
        a = _condition(parent.get("conditions"), "Accepted")
        r = _condition(parent.get("conditions"), "ResolvedRefs")
        accepted = _bool(a) if accepted is None else (accepted and bool(_bool(a)))
        resolved = _bool(r) if resolved is None else (resolved and bool(_bool(r)))
        for cond in (a, r):
            if cond is not None and cond.get("status") != "True":
                message = str(cond.get("message", ""))
    return RouteStatus(
        namespace=ns, name=name,
        parents=[f"{p.get('namespace') or ns}/{p.get('name')}" + (f"#{p['sectionName']}" if p.get("sectionName") else "")
                 for p in spec.get("parentRefs") or ()],
        accepted=accepted, resolved_refs=resolved, message=message, rules=rules)


@dataclass(frozen=True)
class _PoolPlan:
    """A pool with what to scrape for it."""

    obj: Mapping[str, Any]
    endpoints: list[tuple[str, str, int, bool]]  # name, address, port, ready
    epp: str
    epp_metrics_url: str | None
    failure_mode: str


def _labels_match(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return (pod.get("metadata") or {}).get("deletionTimestamp") is None and \
        _bool(_condition(status.get("conditions"), "Ready")) is True


def _pool_selector(pool: Mapping[str, Any]) -> dict[str, str]:
    spec = pool.get("spec") or {}
    group = str(pool.get("apiVersion", "")).split("/")[0]
    raw = (spec.get("selector") or {}).get("matchLabels") if group == GA_GROUP else spec.get("selector")
    return {str(k): str(v) for k, v in (raw or {}).items()}


def _pool_ports(pool: Mapping[str, Any]) -> list[int]:
    spec = pool.get("spec") or {}
    if "targetPorts" in spec:
        return [int(p.get("number")) for p in spec.get("targetPorts") or () if isinstance(p.get("number"), int)]
    number = spec.get("targetPortNumber")
    return [int(number)] if isinstance(number, int) else []


def _picker(pool: Mapping[str, Any]) -> tuple[str, int, str]:
    """(EPP Service, port, failure mode); ("", 0, "-") for a pool without one (the gateway
    balances it itself, GIE v1.6)."""
    spec = pool.get("spec") or {}
    if not (spec.get("endpointPickerRef") or spec.get("extensionRef") or {}).get("name"):
        return "", 0, "-"
    if "endpointPickerRef" in spec:
        ref = spec.get("endpointPickerRef") or {}
        return str(ref.get("name", "")), int((ref.get("port") or {}).get("number") or 0), \
            str(ref.get("failureMode") or "FailClose")
    ref = spec.get("extensionRef") or {}
    return str(ref.get("name", "")), int(ref.get("portNumber") or 9002), str(ref.get("failureMode") or "FailClose")


def _epp_metrics_url(objects: Objects, namespace: str, service_name: str) -> str | None:
    service = next((s for s in objects.services if _meta(s) == (namespace, service_name)), None)
    if service is None:
        return None
    spec = service.get("spec") or {}
    port = DEFAULT_EPP_METRICS_PORT
    for item in spec.get("ports") or ():
        if item.get("name") in ("http-metrics", "metrics"):
            target = item.get("targetPort")
            port = int(target) if isinstance(target, int) else int(item.get("port"))
            break
    selector = spec.get("selector") or {}
    if selector:
        for pod in objects.pods:
            if _meta(pod)[0] == namespace and _labels_match(selector, (pod.get("metadata") or {}).get("labels") or {}) \
                    and _pod_ready(pod) and (pod.get("status") or {}).get("podIP"):
                return f"http://{pod['status']['podIP']}:{port}/metrics"
    cluster_ip = spec.get("clusterIP")
    if isinstance(cluster_ip, str) and cluster_ip not in ("", "None"):
        return f"http://{cluster_ip}:{port}/metrics"
    return None


def plan_pool(objects: Objects, pool: Mapping[str, Any]) -> _PoolPlan:
    ns, _ = _meta(pool)
    selector = _pool_selector(pool)
    ports = _pool_ports(pool)
    endpoints: list[tuple[str, str, int, bool]] = []
    for pod in objects.pods:
        meta = pod.get("metadata") or {}
        if _meta(pod)[0] != ns or not selector or not _labels_match(selector, meta.get("labels") or {}):
            continue
        address = str((pod.get("status") or {}).get("podIP") or "")
        annotated = (meta.get("annotations") or {}).get(SERVE_ENDPOINT_ANNOTATION)
        port_list = [int(str(annotated).rsplit(":", 1)[1])] if annotated else ports
        for port in port_list:
            endpoints.append((str(meta.get("name")), address, port, _pod_ready(pod) and bool(address)))
    name, port, failure_mode = _picker(pool)
    if not name:
        return _PoolPlan(pool, endpoints, "", None, failure_mode)
    return _PoolPlan(pool, endpoints, f"{name}:{port}", _epp_metrics_url(objects, ns, name), failure_mode)


# -- scraping -----------------------------------------------------------------------------------------

ScrapeResult = m.Scrape | str  # the samples, or why not


async def _scrape(client: httpx.AsyncClient, url: str) -> ScrapeResult:
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if response.status_code != 200:
        return f"GET {url}: {response.status_code}"
    try:
        return m.parse(response.text)
    except ValueError as exc:
        return f"GET {url}: not Prometheus text ({exc})"


async def scrape_all(urls: Sequence[str], timeout: float) -> dict[str, ScrapeResult]:
    unique = list(dict.fromkeys(urls))
    async with httpx.AsyncClient(verify=default_verify_context(), timeout=timeout) as client:
        results = await asyncio.gather(*(_scrape(client, url) for url in unique))
    return dict(zip(unique, results, strict=True))


# -- metrics -> numbers ------------------------------------------------------------------------------

def _ttft_buckets(before: m.Scrape, after: m.Scrape) -> dict[float, float]:
    for name in TTFT:
        later = m.buckets(after, name)
        if later:
            return m.bucket_delta(m.buckets(before, name), later)
    return {}


def endpoint_status(name: str, address: str, port: int, ready: bool, before: ScrapeResult,
                    after: ScrapeResult) -> EndpointStatus:
    url = f"http://{address}:{port}/metrics"
    if isinstance(after, str):
        return EndpointStatus(name, address, port, ready, url, reachable=False, error=after)
    prior = before if not isinstance(before, str) else []
    queries = m.delta(prior, after, "vllm:prefix_cache_queries_total")
    hits = m.delta(prior, after, "vllm:prefix_cache_hits_total")
    if queries <= 0:  # no traffic in the window: since the server started
        queries = m.total(after, "vllm:prefix_cache_queries_total") or 0.0
        hits = m.total(after, "vllm:prefix_cache_hits_total") or 0.0
    hit_rate = hits / queries if queries > 0 else m.first(after, "sglang:cache_hit_rate")
    ttft = _ttft_buckets(prior, after)
    return EndpointStatus(
        name, address, port, ready, url, reachable=True,
        queue=m.first(after, "vllm:num_requests_waiting", "sglang:num_queue_reqs"),
        running=m.first(after, "vllm:num_requests_running", "sglang:num_running_reqs"),
        kv_cache=m.first(after, "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"),
        prefix_cache_hit_rate=hit_rate,
        lora_running=m.label_list(after, "vllm:lora_requests_info", "running_lora_adapters"),
        lora_waiting=m.label_list(after, "vllm:lora_requests_info", "waiting_lora_adapters"),
        ttft_p50_s=m.quantile(0.5, ttft), ttft_p90_s=m.quantile(0.9, ttft),
    )


@dataclass(frozen=True)
class EndpointRates:
    requests_per_s: float | None
    errors_per_s: float | None
    source: str | None  # "epp", "model server", None (not measurable)


NOT_MEASURED = EndpointRates(None, None, None)


def _usable(before: ScrapeResult, after: ScrapeResult) -> tuple[m.Scrape, m.Scrape] | None:
    """Both scrapes of a window, or None (a rate needs both: a total since start is not one)."""
    if isinstance(before, str) or isinstance(after, str):
        return None
    return before, after


def endpoint_rates(address: str, port: int, window: float, epp: tuple[ScrapeResult, ScrapeResult],
                   server: tuple[ScrapeResult, ScrapeResult]) -> EndpointRates:
    """Requests and errors per second of one endpoint over ``window`` seconds: from the pool's EPP
    (what it sent there, labelled ``endpoint="address:port"``) when it exports the per-endpoint
    counters, else from the model server's own count of finished requests (all its traffic)."""
    if window <= 0:
        return NOT_MEASURED
    hostports = {f"{address}:{port}", f"[{address}]:{port}"}

    def here(labels: Mapping[str, str]) -> bool:
        return labels.get("endpoint") in hostports

    pair = _usable(*epp)
    if pair is not None and m.total(pair[1], EPP_ENDPOINT_REQUESTS) is not None:
        before, after = pair
        return EndpointRates(m.delta(before, after, EPP_ENDPOINT_REQUESTS, here) / window,
                             m.delta(before, after, EPP_ENDPOINT_ERRORS, here) / window, "epp")
    pair = _usable(*server)
    if pair is not None:
        before, after = pair
        for name in SERVER_FINISHED:
            if m.total(after, name) is not None:
                return EndpointRates(m.delta(before, after, name) / window, None, "model server")
    return NOT_MEASURED


def _code_is(code: str) -> m.LabelFilter:
    return lambda labels: labels.get("error_code", "") == code


def pool_traffic(window: float, epp_before: ScrapeResult, epp_after: ScrapeResult,
                 ttft: Mapping[float, float]) -> Traffic | None:
    if isinstance(epp_after, str):
        return None
    before = epp_before if not isinstance(epp_before, str) else []
    requests = m.delta(before, epp_after, "inference_model_request_total")
    errors = m.delta(before, epp_after, "inference_model_request_error_total")
    codes = sorted({s.labels.get("error_code", "") for s in epp_after if s.name == "inference_model_request_error_total"})
    by_code = {code: d for code in codes
               if (d := m.delta(before, epp_after, "inference_model_request_error_total", _code_is(code))) > 0}
    latency = m.bucket_delta(m.buckets(before, "inference_model_request_duration_seconds"),
                             m.buckets(epp_after, "inference_model_request_duration_seconds"))
    return Traffic(
        window_s=round(window, 3), requests=requests, errors=errors,
        requests_per_s=requests / window if window > 0 else 0.0, errors_per_s=errors / window if window > 0 else 0.0,
        error_ratio=(errors / requests) if requests > 0 else None,
        latency_p50_s=m.quantile(0.5, latency), latency_p90_s=m.quantile(0.9, latency),
        ttft_p50_s=m.quantile(0.5, ttft), ttft_p90_s=m.quantile(0.9, ttft), errors_by_code=by_code,
        held_in_epp=m.total(epp_after, EPP_FLOW_CONTROL_QUEUE),
    )


def _pool_refs(obj: Mapping[str, Any], pool_name: str, pool_group: str) -> bool:
    ref = (obj.get("spec") or {}).get("poolRef") or {}
    return ref.get("name") == pool_name and (ref.get("group") in (None, "", pool_group))


def _objectives(objects: Objects, ns: str, name: str, group: str) -> list[Objective]:
    found = []
    for obj in objects.objectives:
        if _meta(obj)[0] == ns and _pool_refs(obj, name, group):
            priority = (obj.get("spec") or {}).get("priority")
            found.append(Objective(_meta(obj)[1], priority if isinstance(priority, int) else None))
    return sorted(found, key=lambda o: (-(o.priority or 0), o.name))


def _models(objects: Objects, ns: str, name: str, group: str) -> list[Model]:
    found = []
    for obj in objects.models:
        if _meta(obj)[0] == ns and _pool_refs(obj, name, group):
            spec = obj.get("spec") or {}
            found.append(Model(_meta(obj)[1], str(spec.get("modelName", "")), spec.get("criticality"),
                               [f"{t.get('name')}:{t.get('weight', '')}" for t in spec.get("targetModels") or ()]))
    return found


def _pool_status(objects: Objects, plan: _PoolPlan, before: Mapping[str, ScrapeResult],
                 after: Mapping[str, ScrapeResult], window: float) -> PoolStatus:
    pool = plan.obj
    ns, name = _meta(pool)
    group = str(pool.get("apiVersion", "")).split("/")[0]
    if not plan.epp:  # no EPP: nothing to reach
        epp_after: ScrapeResult = []
    elif plan.epp_metrics_url:
        epp_after = after.get(plan.epp_metrics_url, "no metrics address")
    else:
        epp_after = "the EPP Service or its pods were not found"
    epp_before = before.get(plan.epp_metrics_url, "") if plan.epp_metrics_url else ""
    endpoints = []
    ttft_parts = []
    for ep_name, address, port, ready in plan.endpoints:
        url = f"http://{address}:{port}/metrics"
        b, a = before.get(url, "not scraped"), after.get(url, "not scraped")
        rates = endpoint_rates(address, port, window, (epp_before, epp_after), (b, a))
        endpoints.append(replace(endpoint_status(ep_name, address, port, ready, b, a),
                                 requests_per_s=rates.requests_per_s, errors_per_s=rates.errors_per_s,
                                 requests_source=rates.source))
        if not isinstance(a, str):
            ttft_parts.append(_ttft_buckets(b if not isinstance(b, str) else [], a))
    status = pool.get("status") or {}
    parents = status.get("parents") or status.get("parent") or []  # v1: parents; v1alpha2: parent
    accepted = None
    for parent in parents:
        value = _bool(_condition(parent.get("conditions"), "Accepted"))
        accepted = value if accepted is None else bool(accepted and value)
    return PoolStatus(
        namespace=ns, name=name, group=group, generation="GA" if group == GA_GROUP else "preview",
        selector=_pool_selector(pool), target_ports=_pool_ports(pool), epp=plan.epp,
        epp_metrics_url=plan.epp_metrics_url, epp_reachable=not isinstance(epp_after, str),
        epp_error=epp_after if isinstance(epp_after, str) else None, failure_mode=plan.failure_mode,
        accepted=accepted, endpoints=endpoints, objectives=_objectives(objects, ns, name, group),
        models=_models(objects, ns, name, group),
        traffic=pool_traffic(window, epp_before, epp_after, m.merge_buckets(ttft_parts)),
    )


async def collect_status(reader: Reader, *, sample_interval: float = 2.0, timeout: float = 3.0) -> StatusSnapshot:
    """One snapshot; the metrics are scraped twice, ``sample_interval`` seconds apart."""
    objects = await asyncio.to_thread(read_objects, reader)
    plans = [plan_pool(objects, pool) for pool in objects.pools]
    urls = [url for plan in plans for url in
            ([plan.epp_metrics_url] if plan.epp_metrics_url else []) +
            [f"http://{address}:{port}/metrics" for _, address, port, _ in plan.endpoints if address]]
    started = time.monotonic()
    before = await scrape_all(urls, timeout)
    if sample_interval > 0:
        await asyncio.sleep(max(0.0, sample_interval - (time.monotonic() - started)))
    second = time.monotonic()
    after = await scrape_all(urls, timeout)
    window = max(second - started, 1e-6)
    pools = [_pool_status(objects, plan, before, after, window) for plan in plans]
    errors = [f"{pool.namespace}/{pool.name}: EPP metrics: {pool.epp_error}" for pool in pools if pool.epp_error]
    errors += [f"{pool.namespace}/{pool.name}: endpoint {e.name} ({e.address}:{e.port}) metrics: {e.error}"
               for pool in pools for e in pool.endpoints if e.error]
    return StatusSnapshot(
        source=reader.description, taken_at=utc_now(), sample_interval_s=sample_interval,
        gateways=sorted((gateway_status(g) for g in objects.gateways), key=lambda g: (g.namespace, g.name)),
        routes=sorted((route_status(r) for r in objects.routes), key=lambda r: (r.namespace, r.name)),
        pools=sorted(pools, key=lambda p: (p.namespace, p.name)), errors=errors,
    )
