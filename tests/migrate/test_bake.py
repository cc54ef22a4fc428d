"""Bake time per weight step (issue 17 defect 5): each step is watched for --step-duration, with
probe windows throughout and judged on the real traffic the EPPs counted — read from Prometheus's
HTTP API (a small fake Prometheus here, answering /api/v1/query as Prometheus does) or from the
EPPs' /metrics — and on probes when there is too little of it. --fast keeps one short window.

The gateway is a stand-in that answers every probe 200 (these tests are about the runner's
decisions; test_e2e.py and test_up.py run the real gateway)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from tests.support.aiohttp_server import served

from infergate.epp.metrics import EppMetrics
from infergate.migrate.bake import BakeOptions, EppMeter, PrometheusMeter, Traffic, real_traffic_gate
from infergate.migrate.discover import plan_from_cluster
from infergate.migrate.plan import Gates, PlanOptions
from infergate.migrate.resources import HTTPROUTES
from infergate.migrate.runner import Migrator, RunOptions

from .stand_in_gateway import epp_metrics_page, smooth_weighted_pick, streamed_completion

PREVIEW, GA = "vllm-llama3-8b-instruct-preview", "vllm-llama3-8b-instruct-ga"


@dataclass
class Fakes:
    url: str
    queries: list[str] = field(default_factory=list)
    # (pool EPP name, "requests" | "errors") -> the value Prometheus answers for the step
    prometheus: dict[tuple[str, str], float] = field(default_factory=dict)
    epp: dict[str, EppMetrics] = field(default_factory=dict)
    route: tuple[Any, str] | None = None  # (cluster, namespace) whose llm-route weights split the probes
    sent: dict[str, dict[str, int]] = field(default_factory=dict)  # per weights: requests sent to each pool

    def pick(self) -> str:
        """The pool a request goes to: the route's weights, as a smooth weighted round robin."""
        if self.route is None:
            return "preview"
        cluster, ns = self.route
        refs = cluster.get(HTTPROUTES, ns, "llm-route")["spec"]["rules"][0]["backendRefs"]
        weights = {("ga" if r["group"] == "inference.networking.k8s.io" else "preview"): int(r.get("weight", 1))
                   for r in refs}
        return smooth_weighted_pick(self.sent, weights)


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    state = Fakes("")

    async def completions(request: web.Request) -> web.StreamResponse:
        return await streamed_completion(state.epp, await asyncio.to_thread(state.pick), request)

    async def query(request: web.Request) -> web.Response:
        promql = request.query["query"]
        state.queries.append(promql)
        kind = "errors" if "request_total" not in promql.split("__name__=~")[1].split(",")[0].replace(
            "error_total", "") else "requests"
        epp = next((e for e, _ in state.prometheus if f'pod=~"{e}-' in promql), None)
        value = state.prometheus.get((epp or "", kind))
        result = [] if value is None else [{"metric": {}, "value": [time.time(), str(value)]}]
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})

    async def metrics(request: web.Request) -> web.Response:
        return epp_metrics_page(state.epp, request)

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/api/v1/query", query)
    app.router.add_get("/epp/{pool}/metrics", metrics)
    async with served(app) as state.url:
        yield state


async def migrate(cluster: Any, ns: str, fakes: Fakes, bake: BakeOptions, *, stop_after: str | None = "analyse-0") -> Any:
    fakes.route = (cluster, ns)
    plan = await asyncio.to_thread(plan_from_cluster, cluster, ns, None, PlanOptions(
        path="zero-downtime", gates=Gates(probes=12, p99_ttft_factor=100, p99_ttft_slack_s=5.0)))  # latency: not here
    options = RunOptions(gateway_url=fakes.url, analysis_delay_s=0, ready_timeout_s=10, poll_s=0.1,
                         epp_metrics={PREVIEW: f"{fakes.url}/epp/preview/metrics", GA: f"{fakes.url}/epp/ga/metrics"},
                         bake=bake, stop_after=stop_after)
    return await Migrator(cluster, None, options).run(plan)


def gate(result: Any, name: str) -> dict[str, Any]:
    return next(g for g in result.gates if g["gate"] == name)


async def test_a_step_bakes_for_its_duration_judged_on_real_traffic_from_prometheus(
        cluster: Any, preview_stack: str, status_writer: Any, fakes: Fakes) -> None:
    fakes.prometheus = {(f"{PREVIEW}-epp", "requests"): 900, (f"{PREVIEW}-epp", "errors"): 9,
                        (f"{GA}-epp", "requests"): 300, (f"{GA}-epp", "errors"): 0}
    started = time.monotonic()
    result = await migrate(cluster, preview_stack, fakes, BakeOptions(duration_s=3.0, probe_interval_s=0.3,
                                                                      min_requests=100, prometheus_url=fakes.url))
    assert result.exit_code == 0, (result.message, result.gates)
    assert time.monotonic() - started >= 3.0
    real = gate(result, "real-traffic")
    assert real["verdict"] == "pass" and f"from Prometheus {fakes.url}" in real["detail"], real
    bake = gate(result, "bake")
    windows = int(bake["detail"].split(" probe windows")[0].rsplit(" ", 1)[1])
    assert windows >= 2, bake  # probe windows all through the step, not one
    assert f'namespace="{preview_stack}"' in fakes.queries[0]
    assert any(f'pod=~"{GA}-epp-[a-z0-9]+-[a-z0-9]+"' in q and q.startswith("sum(increase(") for q in fakes.queries)


async def test_ga_errors_in_real_traffic_fail_the_step_and_roll_back(
        cluster: Any, preview_stack: str, status_writer: Any, fakes: Fakes) -> None:
    original = cluster.get(HTTPROUTES, preview_stack, "llm-route")["spec"]
    fakes.prometheus = {(f"{PREVIEW}-epp", "requests"): 500, (f"{PREVIEW}-epp", "errors"): 0,
                        (f"{GA}-epp", "requests"): 500, (f"{GA}-epp", "errors"): 60}
    result = await migrate(cluster, preview_stack, fakes, BakeOptions(duration_s=0.5, probe_interval_s=0.2,
                                                                      prometheus_url=fakes.url), stop_after=None)
    assert result.exit_code == 5, (result.message, result.gates)
    assert "real-traffic fail" in result.message and "60/500 errors (12.0%)" in result.message, result.message
    assert cluster.get(HTTPROUTES, preview_stack, "llm-route")["spec"] == original


async def test_too_little_real_traffic_is_judged_on_probes_and_fast_keeps_one_window(
        cluster: Any, preview_stack: str, status_writer: Any, fakes: Fakes) -> None:
    # the EPPs' /metrics count only the probes' own requests: no real traffic, below --min-requests
    result = await migrate(cluster, preview_stack, fakes, BakeOptions(duration_s=0.6, probe_interval_s=0.2))
    assert result.exit_code == 0, (result.message, result.gates)
    real = gate(result, "real-traffic")
    assert real["verdict"] == "pass" and "judged on probes" in real["detail"] and "the EPPs' /metrics" in real["detail"]

    fast = await migrate(cluster, preview_stack, fakes, BakeOptions(duration_s=600, fast=True), stop_after="analyse-50")
    assert fast.exit_code == 0, fast.message
    assert {g["gate"] for g in fast.gates}.isdisjoint({"bake", "real-traffic"})


async def test_the_epp_meter_counts_requests_and_errors_since_the_start(fakes: Fakes) -> None:
    page = fakes.epp.setdefault("ga", EppMetrics())
    page.request_total.labels("m", "m").inc(5)
    meter = EppMeter({GA: f"{fakes.url}/epp/ga/metrics", "gone": "http://127.0.0.1:9/metrics"})
    await meter.start()
    page.request_total.labels("m", "m").inc(40)
    page.request_error_total.labels("m", "m", "503").inc(2)
    traffic = await meter.read()
    assert traffic == {GA: Traffic(42, 2), "gone": None}


async def test_the_prometheus_meter_queries_increase_over_the_step(fakes: Fakes) -> None:
    fakes.prometheus = {("a-epp", "requests"): 120.5, ("a-epp", "errors"): 3}
    meter = PrometheusMeter(fakes.url, "prod", {"a": "a-epp", "b": "b-epp"})
    await meter.start()
    await asyncio.sleep(1.1)
    traffic = await meter.read()
    assert traffic == {"a": Traffic(120.5, 3), "b": Traffic(0, 0)}  # b: no series, no requests
    assert all("[2s]" in q for q in fakes.queries), fakes.queries
    down = PrometheusMeter("http://127.0.0.1:9", "prod", {"a": "a-epp"})
    await down.start()
    assert await down.read() == {"a": None}


def test_the_real_traffic_gate() -> None:
    pairs = [("p", "g")]
    ok = real_traffic_gate({"p": Traffic(100, 1), "g": Traffic(100, 1)}, pairs, 20, 100, 0.99, "x")
    assert ok.verdict == "pass" and "180 real requests" in ok.detail
    few = real_traffic_gate({"p": Traffic(50, 0), "g": Traffic(50, 40)}, pairs, 20, 100, 0.99, "x")
    assert few.verdict == "pass" and "judged on probes" in few.detail
    # the preview side's own error level (404s for models it never served) is its normal
    bad = real_traffic_gate({"p": Traffic(100, 10), "g": Traffic(100, 12)}, pairs, 0, 100, 0.99, "x")
    assert bad.verdict == "fail"
    same = real_traffic_gate({"p": Traffic(100, 10), "g": Traffic(100, 10)}, pairs, 0, 100, 0.99, "x")
    assert same.verdict == "pass"
    unreadable = real_traffic_gate({"p": None, "g": Traffic(1, 0)}, pairs, 0, 100, 0.99, "x")
    assert unreadable.verdict == "pass" and "not readable (p)" in unreadable.detail
    assert json.dumps(unreadable.to_dict())


def failure_mode(cluster: Any, ns: str) -> str:
    from infergate.migrate.resources import GA_POOLS

    return str(cluster.get(GA_POOLS, ns, GA)["spec"]["endpointPickerRef"]["failureMode"])


async def test_the_ga_pool_is_fail_open_while_both_pools_serve_and_restored_at_final_route(
        cluster: Any, preview_stack: str, status_writer: Any, fakes: Fakes) -> None:
    # issue 17 defect 4: a GA EPP that dies at 50 % must cost no request (FailOpen serves round robin
    # over the pool's pods while the analysis rolls back); the pool ends with its own failure mode
    ns = preview_stack
    first = await migrate(cluster, ns, fakes, BakeOptions(fast=True), stop_after=f"install-pool-{GA}")
    assert first.exit_code == 0, first.message
    assert failure_mode(cluster, ns) == "FailOpen"
    done = await migrate(cluster, ns, fakes, BakeOptions(fast=True), stop_after=None)
    assert done.exit_code == 0 and done.phase == "done", (done.message, done.gates)
    final = next(s for s in done.steps if s["step"] == "final-route")
    assert "failureMode FailClose" in final["detail"], final
    assert failure_mode(cluster, ns) == "FailClose"


async def test_fail_close_during_migration_keeps_the_failure_mode(
        cluster: Any, preview_stack: str, status_writer: Any, fakes: Fakes) -> None:
    ns = preview_stack
    plan = await asyncio.to_thread(plan_from_cluster, cluster, ns, None, PlanOptions(
        path="zero-downtime", gates=Gates(probes=0), fail_open_during_migration=False))
    result = await Migrator(cluster, None, RunOptions(stop_after=f"install-pool-{GA}")).run(plan)
    assert result.exit_code == 0, result.message
    assert failure_mode(cluster, ns) == "FailClose"


async def test_a_ga_epp_that_loses_its_deployment_while_a_step_bakes_fails_the_step_at_once(
        cluster: Any, preview_stack: str, status_writer: Any, fakes: Fakes) -> None:
    from infergate.migrate.resources import DEPLOYMENTS

    ns = preview_stack
    original = cluster.get(HTTPROUTES, ns, "llm-route")["spec"]

    async def kill_when_baking() -> None:
        while not fakes.sent:  # the first probe window of analyse-0 went through the gateway
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(cluster.delete, DEPLOYMENTS, ns, f"{GA}-epp")

    killer = asyncio.create_task(kill_when_baking())
    started = time.monotonic()
    result = await migrate(cluster, ns, fakes, BakeOptions(duration_s=60, probe_interval_s=30), stop_after=None)
    await killer
    assert result.exit_code == 5, (result.message, result.gates)
    assert f"epp-ready fail: EPP Deployment {ns}/{GA}-epp missing" in result.message, result.message
    assert time.monotonic() - started < 30  # not at the next probe window, not at the end of the bake
    assert cluster.get(HTTPROUTES, ns, "llm-route")["spec"] == original
