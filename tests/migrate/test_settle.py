"""The analysis waits for the data plane to serve a shift's weights (issue: the attribution gate
relied on a fixed --analysis-delay; with 0.5 s the chart's zero-downtime migration failed at
analyse-50, judging the split of the weights before the shift).

The pure decisions (:mod:`infergate.migrate.settle`) are tested on counts; the runner against
the embedded API server (in this process) and a stand-in gateway that serves a route's new
weights only some time after they were written, as Envoy does after the controller's
translation and the xDS push. That time is counted in requests served since the change, not in
seconds: the test then means the same on a loaded machine (where the runner's own steps between
the shift and the first probe may take longer than any lag in seconds)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from tests.support.aiohttp_server import served

from infergate.epp.metrics import EppMetrics
from infergate.migrate.bake import BakeOptions
from infergate.migrate.discover import plan_from_cluster
from infergate.migrate.plan import Gates, PlanOptions
from infergate.migrate.resources import HTTPROUTES
from infergate.migrate.runner import Migrator, RunOptions
from infergate.migrate.settle import (
    SETTLED_LOG_RATIO,
    STRAY_SHARE,
    SplitTracker,
    SplitWatch,
    parent_generation_lag,
    previous_weight,
    split_consistent,
    split_log_likelihood,
)

from .stand_in_gateway import epp_metrics_page, smooth_weighted_pick, streamed_completion

PREVIEW, GA = "vllm-llama3-8b-instruct-preview", "vllm-llama3-8b-instruct-ga"

# -- the pure decisions ---------------------------------------------------------------------------


def test_a_split_at_0_or_100_percent_is_judged_with_the_gates_floor() -> None:
    assert split_consistent(0, 20, 0.0, 0.10) and split_consistent(2, 20, 0.0, 0.10)
    assert not split_consistent(3, 20, 0.0, 0.10)  # 15 % GA: weight 0 is not what serves
    assert split_consistent(20, 20, 1.0, 0.10) and split_consistent(18, 20, 1.0, 0.10)
    assert not split_consistent(17, 20, 1.0, 0.10)
    assert not split_consistent(0, 0, 0.0, 0.10)  # no requests: no evidence


def test_a_split_between_is_judged_with_the_attribution_gates_band() -> None:
    # 20 requests at 50 %: 3 sigma = 0.335
    assert split_consistent(4, 20, 0.5, 0.10) and split_consistent(16, 20, 0.5, 0.10)
    assert not split_consistent(3, 20, 0.5, 0.10) and not split_consistent(17, 20, 0.5, 0.10)
    # 1000 requests at 50 %: the floor (0.10) is wider than 3 sigma (0.047)
    assert split_consistent(401, 1000, 0.5, 0.10) and not split_consistent(399, 1000, 0.5, 0.10)
    # a share of 0 or 1 leaves STRAY_SHARE to the other side: one stray request is unlikely, not impossible
    assert split_log_likelihood(1, 20, 0.0) == pytest.approx(math.log(STRAY_SHARE) + 19 * math.log(1 - STRAY_SHARE))
    assert split_log_likelihood(19, 20, 1.0) == split_log_likelihood(1, 20, 0.0)


def test_the_tracker_needs_evidence_against_the_previous_split() -> None:
    tracker = SplitTracker(share=0.5, previous=0.1)
    stale = tracker.observe(2, 20)  # 10 %: the old split
    assert not stale.settled and stale.evidence == 0.0
    new = stale.observe(10, 20)  # inside 50 %'s band (0.165..0.835), and e^10 times likelier than at 10 %
    assert new.settled and new.evidence >= SETTLED_LOG_RATIO, new.describe()
    # a window that could be either (25 % -> 50 %, 4 requests) is not enough alone; evidence adds up
    small = SplitTracker(share=0.5, previous=0.25)
    once = small.observe(2, 4)
    assert not once.settled and 0 < once.evidence < SETTLED_LOG_RATIO
    more = once
    for _ in range(10):
        more = more.observe(2, 4)
    assert more.settled, more.describe()
    # windows that favour the old split take evidence away, down to 0 and not below (a CUSUM: a
    # stretch of old windows never has to be paid back by new ones)
    back = more
    for _ in range(5):
        back = back.observe(0, 4)
    assert back.evidence == 0.0 and not back.observe(2, 4).settled


def test_a_stray_request_neither_proves_a_split_nor_holds_the_wait() -> None:
    first = SplitTracker(share=0.5, previous=0.0)
    assert first.observe(0, 20).evidence == 0.0  # all preview: the old split (weight 0)
    stray = first.observe(1, 20)  # one GA request at weight 0 (a stray): no proof of 50 %
    assert stray.evidence == 0.0 and not stray.settled
    assert stray.observe(9, 20).settled  # then a window at 50 %
    last = SplitTracker(share=1.0, previous=0.5)
    # at 100 %, one preview request of 20 (another route to the preview pool, say) still settles:
    # 19 of 20 is e^9 times likelier at 100 % (with its stray share) than at 50 %
    one_stray = last.observe(19, 20)
    assert one_stray.settled, one_stray.describe()
    assert not last.observe(12, 20).settled  # 60 %: neither 100 % nor proven
    assert "expected 1.00 +/- 0.100" in one_stray.describe()


def test_the_same_split_before_and_after_asks_only_consistency() -> None:
    zero = SplitTracker(share=0.0, previous=0.0)  # the shift to weight 0 of the first step
    assert zero.observe(0, 20).settled and not zero.observe(3, 20).settled
    assert SplitTracker(share=0.5, previous=None).observe(10, 20).settled
    assert previous_weight((0, 50, 100), 0) == 0 and previous_weight((0, 50, 100), 50) == 0
    assert previous_weight((10, 50, 100), 100) == 50 and previous_weight((10, 50, 100), 10) == 0


def test_every_pair_must_settle() -> None:
    watch = SplitWatch.start([("p1", "g1"), ("p2", "g2")], 50, 0, 0.10)
    half = watch.observe({"p1": 10, "g1": 10, "p2": 20, "g2": 0})
    assert not half.settled and half.requests == 40
    assert "g2: GA share 0.000 of 20 requests" in half.describe()
    assert half.observe({"p1": 10, "g1": 10, "p2": 9, "g2": 11}).settled
    assert not SplitWatch.start([], 50, 0, 0.10).settled


def route_with_status(generation: int, *observed: int | None) -> dict[str, Any]:
    conditions = [{"type": t, "status": "True", **({} if g is None else {"observedGeneration": g})}
                  for t, g in zip(("Accepted", "ResolvedRefs"), observed, strict=False)]
    return {"metadata": {"name": "r", "namespace": "ns", "generation": generation},
            "spec": {"parentRefs": [{"name": "gw"}]},
            "status": {"parents": [{"parentRef": {"name": "gw", "namespace": "ns"}, "controllerName": "c/x",
                                    "conditions": conditions},
                                   {"parentRef": {"name": "other"}, "conditions": [{"observedGeneration": 1}]}]}}


def test_the_route_status_must_describe_the_routes_generation() -> None:
    assert parent_generation_lag(route_with_status(3, 3, 3)) == []
    assert parent_generation_lag(route_with_status(3, 3, 2)) == [
        "parent gw: status written by c/x for generation 2, the route is at generation 3"]
    assert parent_generation_lag(route_with_status(3, None, None)) == []  # not written: not judged
    assert parent_generation_lag({"metadata": {}, "spec": {"parentRefs": [{"name": "gw"}]}}) == []


# -- the runner, with a gateway whose data plane lags ---------------------------------------------


@dataclass
class LaggingGateway:
    """Splits requests as the route's weights say once ``lag_requests`` requests were served
    after they were written (a smooth weighted round robin), and counts them per pool on a fake
    EPP /metrics page."""

    cluster: Any
    namespace: str
    lag_requests: float
    served_requests: int = 0
    url: str = ""
    written: list[tuple[int, dict[str, int]]] = field(default_factory=list)  # (requests served then, weights)
    epp: dict[str, EppMetrics] = field(default_factory=dict)
    sent: dict[str, dict[str, int]] = field(default_factory=dict)

    def read_weights(self) -> dict[str, int]:
        refs = self.cluster.get(HTTPROUTES, self.namespace, "llm-route")["spec"]["rules"][0]["backendRefs"]
        return {("ga" if r["group"] == "inference.networking.k8s.io" else "preview"): int(r.get("weight", 1))
                for r in refs}

    async def watch(self) -> None:
        while True:
            weights = await asyncio.to_thread(self.read_weights)
            if not self.written or self.written[-1][1] != weights:
                self.written.append((self.served_requests, weights))
            await asyncio.sleep(0.05)

    def served(self) -> dict[str, int]:
        return next((w for at, w in reversed(self.written) if at + self.lag_requests <= self.served_requests),
                    self.written[0][1])

    def pick(self) -> str:
        weights = self.served()
        self.served_requests += 1
        return smooth_weighted_pick(self.sent, weights)


@pytest.fixture
async def gateway(cluster: Any, preview_stack: str) -> AsyncIterator[LaggingGateway]:
    state = LaggingGateway(cluster, preview_stack, lag_requests=30)

    async def completions(request: web.Request) -> web.StreamResponse:
        return await streamed_completion(state.epp, state.pick(), request)

    async def metrics(request: web.Request) -> web.Response:
        return epp_metrics_page(state.epp, request)

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/epp/{pool}/metrics", metrics)
    async with served(app) as state.url:
        watcher = asyncio.create_task(state.watch())
        try:
            while not state.written:
                await asyncio.sleep(0.01)
            yield state
        finally:
            watcher.cancel()


async def migrate(gateway: LaggingGateway, *, stop_after: str,
                  ready_timeout_s: float = 20.0) -> tuple[Any, list[str]]:
    """``migrate run --fast --analysis-delay 0 --probes 20`` with its progress lines."""
    plan = await asyncio.to_thread(plan_from_cluster, gateway.cluster, gateway.namespace, None, PlanOptions(
        path="zero-downtime", gates=Gates(probes=20, p99_ttft_factor=100, p99_ttft_slack_s=5.0)))  # latency: not here
    options = RunOptions(gateway_url=gateway.url, analysis_delay_s=0, ready_timeout_s=ready_timeout_s, poll_s=0.1,
                         epp_metrics={PREVIEW: f"{gateway.url}/epp/preview/metrics",
                                      GA: f"{gateway.url}/epp/ga/metrics"},
                         bake=BakeOptions(fast=True), stop_after=stop_after)
    lines: list[str] = []
    result = await Migrator(gateway.cluster, None, options, progress=lines.append).run(plan)
    return result, lines


def data_plane(result: Any) -> dict[str, Any]:
    return next(g for g in result.gates if g["gate"] == "data-plane")


async def test_the_analysis_waits_until_the_gateway_serves_the_new_weights(
        gateway: LaggingGateway, status_writer: Any) -> None:
    # --analysis-delay 0 and a data plane 30 requests behind the route: measured at once (20 probes),
    # analyse-50 saw the old split (0 % GA) and rolled back; now it waits until the split is the new one
    result, progress = await migrate(gateway, stop_after="analyse-50")
    assert result.exit_code == 0, (result.message, result.gates)
    assert [s["step"] for s in result.steps][-2:] == ["shift-50", "analyse-50"]
    served = data_plane(result)
    assert served["verdict"] == "pass" and served["detail"].startswith("serves 50% GA after "), served
    attribution = next(g for g in result.gates if g["gate"].startswith("attribution"))
    assert "GA share 0.500 of 20 requests" in attribution["detail"], attribution
    # it did wait (the first window after the shift still saw the old split), and said so
    assert any(line.startswith("  waiting for the data plane to serve 50% GA") for line in progress), progress


async def test_weights_that_never_take_effect_fail_the_step_with_the_reason(
        gateway: LaggingGateway, status_writer: Any) -> None:
    original = gateway.cluster.get(HTTPROUTES, gateway.namespace, "llm-route")["spec"]
    first, _ = await migrate(gateway, stop_after="analyse-0")
    assert first.exit_code == 0, (first.message, first.gates)
    gateway.lag_requests = math.inf  # from now on, the data plane keeps the split it has
    started = time.monotonic()
    result, _ = await migrate(gateway, stop_after="analyse-100", ready_timeout_s=1.5)
    assert result.exit_code == 5 and result.phase == "rolled-back", (result.message, result.gates)
    assert "analyse-50 failed: data-plane fail: the gateway did not serve the 50% GA weights within 1.5 s " \
           "(--ready-timeout" in result.message, result.message
    assert f"{GA}: GA share 0.000 of 20 requests (expected 0.50 +/- 0.335" in result.message, result.message
    assert time.monotonic() - started < 15
    assert gateway.cluster.get(HTTPROUTES, gateway.namespace, "llm-route")["spec"] == original


async def test_a_controller_that_has_not_processed_the_shift_is_waited_for_then_reported(
        gateway: LaggingGateway, status_writer: Any) -> None:
    gateway.lag_requests = 0
    first, _ = await migrate(gateway, stop_after="analyse-0")
    assert first.exit_code == 0, (first.message, first.gates)
    status_writer.paused = True  # the route's status stays at the generation of the shift to 0 %
    result, progress = await migrate(gateway, stop_after="analyse-50", ready_timeout_s=1.0)
    assert result.exit_code == 5, (result.message, result.gates)
    assert "data-plane fail: the gateway controller did not process the shift to 50% within 1 s (--ready-timeout): " \
           "HTTPRoute llm-route parent inference-gateway: status written by infergate.io/gateway-controller for " \
           "generation" in result.message, result.message
    assert any(line.startswith("  waiting for the gateway controller: HTTPRoute llm-route parent")
               for line in progress), progress
