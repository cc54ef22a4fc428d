"""The Director: generation-faithful admission, priority, rewrite, subset hints, errors as upstream,
per-request accounting and the EPP's own metrics."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infergate.epp.contract import Decision, Director, InferenceRequest, Rejection
from infergate.epp.datastore import (
    PREVIEW_GROUP,
    Datastore,
    InferenceModelInfo,
    Objective,
    PodInfo,
    PoolInfo,
    TargetModel,
)
from infergate.epp.director import DirectorConfig, EppDirector, PoolNotReady
from infergate.epp.flowcontrol import FlowControlConfig
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.scheduling import load_config_text, load_preset
from infergate.epp.scheduling.config import preset_text

IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def make(group: str = "inference.networking.k8s.io", *, config: DirectorConfig | None = None,
         scheduler_text: str | None = None, seed: int = 1) -> tuple[EppDirector, Datastore, MetricsStore]:
    ds = Datastore()
    ds.set_pool(PoolInfo("pool", group=group, selector={"app": "vllm"}, target_ports=(8000,)))
    ds.replace_pods([PodInfo(f"pod-{i}", ip, {"app": "vllm"}) for i, ip in enumerate(IPS)])
    store = MetricsStore()
    scheduler = load_config_text(scheduler_text, seed=seed) if scheduler_text else load_preset("default", seed=seed)
    director = EppDirector(ds, scheduler, store, config=config or DirectorConfig(seed=seed))
    return director, ds, store


def idle(store: MetricsStore, *ips: str, queue: int = 0, kv: float = 0.0) -> None:
    for ip in ips or IPS:
        store.update(f"{ip}:8000", EndpointMetrics(waiting_queue=queue, kv_cache_usage=kv, update_time=time.monotonic()))


def req(rid: str, model: str = "m", prompt: str = "hello", *, headers: dict[str, str] | None = None,
        objective: str | None = None, body: dict[str, Any] | None = None, subset: list[str] | None = None,
        headers_only: bool = False) -> InferenceRequest:
    body = {"model": model, "prompt": prompt} if body is None else body
    return InferenceRequest(request_id=rid, headers=headers or {}, body=body, model=model, objective=objective,
                            prompt=prompt, subset_hint=subset, headers_only=headers_only)


async def expect_rejection(director: EppDirector, request: InferenceRequest) -> Rejection:
    with pytest.raises(Rejection) as err:
        await director.handle_request(request)
    return err.value


def test_implements_the_contract() -> None:
    director, _, _ = make()
    as_protocol: Director = director  # structural check by mypy; runtime: the methods exist
    assert as_protocol is director
    assert callable(director.handle_request) and callable(director.on_request_done)


async def test_pool_not_synced_is_not_a_rejection() -> None:
    director = EppDirector(Datastore(), load_preset("default"), MetricsStore())
    with pytest.raises(PoolNotReady):
        await director.handle_request(req("r"))


async def test_headers_only_picks_any_available_endpoint() -> None:
    director, ds, _store = make()
    seen = {(await director.handle_request(req(f"r{i}", headers_only=True, body={}))).endpoint for i in range(60)}
    assert seen == {f"{ip}:8000" for ip in IPS}
    assert director.inflight(f"{IPS[0]}:8000") > 0
    for i in range(60):
        director.on_request_done(f"r{i}", completed=True)
    assert all(director.inflight(f"{ip}:8000") == 0 for ip in IPS)
    assert b"inference_model_request_total{" not in director.metrics.render()  # not counted, as upstream
    ds.replace_pods([])
    r = await expect_rejection(director, req("x", headers_only=True, body={}))
    assert (r.status, r.code, r.message) == (500, "Internal", "no pods available in datastore")


async def test_bad_bodies_are_400() -> None:
    director, _, _ = make()
    for request, message in [
        (req("a", body={"prompt": "x"}), "model not found in request body"),
        (req("b", body={"model": 3, "prompt": "x"}), "model not found in request body"),
        (req("c", body={"model": "m"}), "prompt not found in request"),
        (req("d", body={"model": "m", "messages": []}), "messages must be a non-empty list"),
    ]:
        r = await expect_rejection(director, request)
        assert (r.status, r.code, r.message) == (400, "BadRequest", message)


async def test_ga_serves_any_model_and_priority_from_objective() -> None:
    director, ds, store = make()
    idle(store)
    ds.upsert_objective(Objective("critical", 3))
    ds.upsert_objective(Objective("batch", -2))
    ds.upsert_objective(Objective("unset", None))
    d = await director.handle_request(req("r1", model="anything-at-all"))
    assert d.endpoint in {f"{ip}:8000" for ip in IPS} and d.target_model is None and d.priority == 0
    assert (await director.handle_request(req("r2", objective="critical"))).priority == 3
    assert (await director.handle_request(req("r3", objective="unset"))).priority == 0
    assert (await director.handle_request(req("r4", objective="no-such-objective"))).priority == 0
    assert (await director.handle_request(req("r5", objective="batch"))).priority == -2  # not saturated


async def test_sheddable_rejected_under_saturation_critical_served() -> None:
    director, ds, store = make()
    ds.upsert_objective(Objective("critical", 1))
    ds.upsert_objective(Objective("batch", -1))
    idle(store, queue=6)  # every endpoint over the queue threshold
    r = await expect_rejection(director, req("shed", objective="batch"))
    assert (r.status, r.code) == (429, "InferencePoolResourceExhausted")
    assert r.body == "inference gateway: InferencePoolResourceExhausted - system saturated, sheddable request dropped"
    assert (await director.handle_request(req("crit", objective="critical"))).endpoint
    assert (await director.handle_request(req("std"))).endpoint  # priority 0 is never shed
    idle(store, IPS[0], queue=0)
    assert (await director.handle_request(req("shed-ok", objective="batch"))).endpoint == f"{IPS[0]}:8000"


async def test_stale_metrics_count_as_saturated() -> None:
    director, ds, store = make()
    ds.upsert_objective(Objective("batch", -1))
    for ip in IPS:
        store.update(f"{ip}:8000", EndpointMetrics(update_time=time.monotonic() - 1.0))  # idle but 1 s old
    r = await expect_rejection(director, req("shed", objective="batch"))
    assert r.status == 429


async def test_preview_pool_404_for_unknown_model_and_target_model_split() -> None:
    director, ds, store = make(PREVIEW_GROUP, seed=5)
    idle(store)
    r = await expect_rejection(director, req("r", model="unknown"))
    assert (r.status, r.code) == (404, "BadConfiguration")
    assert r.body == ("inference gateway: BadConfiguration - error finding a model object in InferenceModel "
                      "for input model unknown")
    ds.upsert_model(InferenceModelInfo("food", "food-review", "Standard",
                                       (TargetModel("food-review-1", 90), TargetModel("food-review-2", 10))))
    counts: Counter[str | None] = Counter()
    for i in range(1000):
        d = await director.handle_request(req(f"f{i}", model="food-review"))
        counts[d.target_model] += 1
        director.on_request_done(f"f{i}", completed=True)
    assert set(counts) == {"food-review-1", "food-review-2"}
    assert 850 <= counts["food-review-1"] <= 950
    ds.upsert_model(InferenceModelInfo("base", "base-model", "Critical"))
    d = await director.handle_request(req("b", model="base-model"))
    assert d.target_model is None and d.priority == 1  # target = modelName: no rewrite
    ds.upsert_model(InferenceModelInfo("uniform", "u", None, (TargetModel("u-a"), TargetModel("u-b"))))
    targets = set()
    for i in range(40):
        targets.add((await director.handle_request(req(f"u{i}", model="u"))).target_model)
    assert targets == {"u-a", "u-b"}


async def test_preview_criticality_sheds() -> None:
    director, ds, store = make(PREVIEW_GROUP)
    ds.upsert_model(InferenceModelInfo("s", "shed-me", "Sheddable"))
    ds.upsert_model(InferenceModelInfo("c", "keep-me", "Critical"))
    idle(store, queue=10)
    assert (await expect_rejection(director, req("s", model="shed-me"))).status == 429
    assert (await director.handle_request(req("c", model="keep-me"))).priority == 1
    v030 = DirectorConfig(criticality_priority={"Critical": 1, "Standard": -1, "Sheddable": -1})
    director2, ds2, store2 = make(PREVIEW_GROUP, config=v030)
    ds2.upsert_model(InferenceModelInfo("std", "std", None))  # unset criticality = Standard
    idle(store2, queue=10)
    assert (await expect_rejection(director2, req("x", model="std"))).status == 429


async def test_model_name_rewrite() -> None:
    director, _, store = make()
    idle(store)
    request = req("r", model="rewritten", headers={"x-gateway-model-name-rewrite": "rewritten"},
                  body={"model": "original", "prompt": "p"})
    d = await director.handle_request(request)
    assert d.target_model == "rewritten"


async def test_preview_pool_ignores_the_rewrite_header_like_v030() -> None:
    # A migration's HTTPRoute may set x-gateway-model-name-rewrite for the GA pool's share;
    # the preview pool must still find the InferenceModel by the body's model.
    director, ds, store = make(PREVIEW_GROUP)
    idle(store)
    ds.upsert_model(InferenceModelInfo("food", "food-review", "Critical", (TargetModel("food-review-1", 1),)))
    request = req("r", model="food-review-2", headers={"x-gateway-model-name-rewrite": "food-review-2"},
                  body={"model": "food-review", "prompt": "p"})
    d = await director.handle_request(request)
    assert d.target_model == "food-review-1"
    assert d.priority == 1


async def test_subset_hint() -> None:
    director, _, store = make()
    idle(store)
    for i in range(20):
        d = await director.handle_request(req(f"r{i}", subset=[f"{IPS[2]}:8000", "10.9.9.9:8000"]))
        assert d.endpoint == f"{IPS[2]}:8000"
    r = await expect_rejection(director, req("empty", subset=[]))
    assert (r.status, r.code) == (503, "ServiceUnavailable")
    assert (await expect_rejection(director, req("none", subset=["10.9.9.9:1"]))).status == 503


async def test_no_candidates_is_503_and_scheduler_failure_is_429() -> None:
    director, _ds, store = make()
    for ip in IPS:
        for _ in range(2):
            store.fail(f"{ip}:8000")  # failing endpoints are dropped from candidates
    assert (await expect_rejection(director, req("r"))).status == 503
    store.update(f"{IPS[1]}:8000", EndpointMetrics(update_time=time.monotonic()))
    assert (await director.handle_request(req("r2"))).endpoint == f"{IPS[1]}:8000"

    text = """apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: header-based-testing-filter
"""
    director, _, store = make(scheduler_text=text)
    r = await expect_rejection(director, req("x"))
    assert (r.status, r.code) == (429, "InferencePoolResourceExhausted")
    assert r.message.startswith("failed to find target pod: no pods available for the given request")
    d = await director.handle_request(req("y", headers={"test-epp-endpoint-selection": IPS[0]}))
    assert d.endpoint == f"{IPS[0]}:8000"


async def test_prefix_affinity_and_fallbacks() -> None:
    director, _, store = make()
    idle(store)
    system = "You are a meticulous assistant who answers in full sentences. " * 30
    first = await director.handle_request(req("a", prompt=system + "Question A"))
    for i in range(10):
        d = await director.handle_request(req(f"b{i}", prompt=system + f"Question {i}"))
        assert d.endpoint == first.endpoint  # equal load: the prefix decides
    text = """apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: queue-scorer
- type: max-score-picker
  parameters: {maxNumOfEndpoints: 3}
"""
    director, _, store = make(scheduler_text=text)
    idle(store, IPS[0], queue=3)
    idle(store, IPS[1], queue=1)
    idle(store, IPS[2], queue=2)
    d = await director.handle_request(req("multi"))
    assert [d.endpoint, *d.fallbacks] == [f"{IPS[1]}:8000", f"{IPS[2]}:8000", f"{IPS[0]}:8000"]


async def test_plugin_duration_metrics_of_upstream_v1_preset() -> None:
    # upstream v1.0's scorers (infergate's default before issue 16) are timed like any plugin
    director, _, store = make(scheduler_text=preset_text("upstream-v1.0"))
    idle(store)
    await director.handle_request(req("a", model="m"))
    samples = {(s.labels["extension_point"], s.labels["plugin_type"]): s.value
               for f in text_string_to_metric_families(director.metrics.render().decode())
               if f.name == "inference_extension_plugin_duration_seconds"
               for s in f.samples if s.name.endswith("_count")}
    for point, plugin_type in [("Scorer", "queue-scorer"), ("Scorer", "kv-cache-utilization-scorer"),
                               ("Scorer", "prefix-cache-scorer"), ("Picker", "max-score-picker"),
                               ("PreRequest", "prefix-cache-scorer")]:
        assert samples[(point, plugin_type)] == 1


async def test_inflight_accounting_usage_and_metrics() -> None:
    director, ds, store = make()
    idle(store)
    d = await director.handle_request(req("s", model="m"))
    assert director.inflight(d.endpoint) == 1
    director.on_response_headers("s", 200, {"content-type": "text/event-stream"})
    chunks = [
        b'data: {"choices":[{"text":"hi"}]}\n\ndata: {"choices":[],"us',
        b'age":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\n',
        b"data: [DONE]\n\n",
    ]
    for i, chunk in enumerate(chunks):
        director.on_response_body("s", chunk, i == len(chunks) - 1)
    assert director.request_usage("s") == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    director.on_request_done("s", completed=True)
    assert director.inflight(d.endpoint) == 0
    director.on_request_done("s", completed=True)  # idempotent
    director.on_request_done("never-seen", completed=False)

    d2 = await director.handle_request(req("n", model="m"))
    director.on_response_headers("n", 200, {"content-type": "application/json"})
    body = json.dumps({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5}}).encode()
    director.on_response_body("n", body[:10], False)
    director.on_response_body("n", body[10:], True)
    assert director.request_usage("n") == {"prompt_tokens": 11, "completion_tokens": 5}
    director.on_request_done("n", completed=True)

    d3 = await director.handle_request(req("broken", model="m"))
    director.on_response_headers("broken", 500, {})
    director.on_request_done("broken", completed=False)  # stream broke: state released
    assert director.inflight(d3.endpoint) == 0 and director.inflight(d2.endpoint) == 0

    families = {f.name: f for f in text_string_to_metric_families(director.metrics.render().decode())}

    def value(metric: str, suffix: str = "", **labels: str) -> float:
        for s in families[metric].samples:
            if s.name == metric + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
        raise AssertionError(f"no sample {metric}{suffix} {labels}")

    assert value("inference_model_request", "_total", model_name="m", target_model_name="m") == 3
    assert value("inference_model_request_error", "_total", error_code="ModelServerError") == 1
    assert value("inference_model_input_tokens", "_sum") == 7 + 11
    assert value("inference_model_output_tokens", "_count") == 2
    assert value("inference_model_request_duration_seconds", "_count") == 2
    assert value("inference_model_running_requests", model_name="m") == 0
    assert value("inference_extension_scheduler_e2e_duration_seconds", "_count") == 3
    # the default preset's plugins (predicted-latency since issue 16), one sample per scheduled request
    for point, plugin_type in [("Filter", "prefix-cache-affinity-filter"), ("Scorer", "prefix-cache-scorer"),
                               ("Scorer", "predicted-ttft-scorer"), ("Picker", "max-score-picker"),
                               ("PreRequest", "prefix-cache-scorer"), ("PreRequest", "inflight-load-producer")]:
        assert value("inference_extension_plugin_duration_seconds", "_count", extension_point=point,
                     plugin_type=plugin_type, plugin_name=plugin_type) == 3
    assert value("inference_pool_ready_pods", name="pool") == 3
    assert value("inference_pool_average_queue_size", name="pool") == 0
    assert value("inference_extension_prefix_indexer_size") == 0  # "hello" is shorter than one block
    await director.handle_request(req("long", prompt="x" * 640))
    families.update({f.name: f for f in text_string_to_metric_families(director.metrics.render().decode())})
    assert value("inference_extension_prefix_indexer_size") == 11  # model hash + 10 blocks
    assert value("inference_extension_prefix_indexer_hit_bytes", "_count") == 4  # one per scheduled request
    assert value("inference_extension_prefix_indexer_hit_bytes", "_sum") == 0  # nothing matched yet
    await director.handle_request(req("long-again", prompt="x" * 640))
    families.update({f.name: f for f in text_string_to_metric_families(director.metrics.render().decode())})
    assert value("inference_extension_prefix_indexer_hit_bytes", "_count") == 5
    assert value("inference_extension_prefix_indexer_hit_bytes", "_sum") == 11 * 64  # every block matched
    ds.delete_pod("pod-0")
    families.update({f.name: f for f in text_string_to_metric_families(director.metrics.render().decode())})
    assert value("inference_pool_ready_pods", name="pool") == 2


async def test_rejections_are_counted() -> None:
    director, _ds, _ = make(PREVIEW_GROUP)
    await expect_rejection(director, req("r", model="nope"))
    text = director.metrics.render().decode()
    assert ('inference_model_request_error_total{error_code="BadConfiguration",model_name="nope",'
            'target_model_name="nope"} 1.0') in text


async def test_flow_control_queues_until_capacity_and_orders_by_priority() -> None:
    config = DirectorConfig(flow_control=FlowControlConfig(enabled=True, max_wait=5.0), seed=1)
    director, ds, store = make(config=config)
    ds.upsert_objective(Objective("high", 5))
    ds.upsert_objective(Objective("batch", -1))
    idle(store, queue=9)  # saturated
    assert (await expect_rejection(director, req("shed", objective="batch"))).status == 429
    decided: list[str] = []

    async def go(rid: str, objective: str | None) -> Decision:
        d = await director.handle_request(req(rid, objective=objective))
        decided.append(rid)
        return d

    low = asyncio.create_task(go("low", None))
    high = asyncio.create_task(go("high", "high"))
    await asyncio.sleep(0.05)
    assert decided == [] and director.flow.queue_size == 2
    idle(store, IPS[0], queue=5)  # one slot on one endpoint (queue 5 <= threshold 5)
    await asyncio.sleep(0.05)
    assert decided == ["high"]  # the higher priority goes first; the slot is now used
    assert (await high).endpoint == f"{IPS[0]}:8000"
    idle(store, IPS[1], queue=0)
    await asyncio.wait_for(low, 2.0)
    assert decided == ["high", "low"]


async def test_reused_request_id_does_not_leak_inflight() -> None:
    director, _, store = make()
    idle(store)
    first = await director.handle_request(req("same"))
    second = await director.handle_request(req("same"))
    assert sum(director.inflight(f"{ip}:8000") for ip in IPS) == 1
    director.on_request_done("same", completed=True)
    director.on_request_done("same", completed=True)
    assert director.inflight(first.endpoint) == 0 and director.inflight(second.endpoint) == 0


def priority_counts(director: EppDirector) -> dict[tuple[str, str, str, str], float]:
    """``infergate_epp_request_priority_total`` by (model, target model, objective, priority)."""
    out: dict[tuple[str, str, str, str], float] = {}
    for family in text_string_to_metric_families(director.metrics.render().decode()):
        for s in family.samples:
            if s.name == "infergate_epp_request_priority_total":
                key = (s.labels["model_name"], s.labels["target_model_name"], s.labels["objective"],
                       s.labels["priority"])
                out[key] = float(s.value)
    return out


async def test_request_priority_metric_ga_objectives() -> None:
    director, ds, store = make()
    idle(store)
    ds.upsert_objective(Objective("critical", 3))
    ds.upsert_objective(Objective("batch", -2))
    ds.upsert_objective(Objective("unset", None))
    for rid, objective in [("a", "critical"), ("b", "critical"), ("c", "batch"), ("d", "unset"),
                           ("e", "no-such-objective"), ("f", None)]:
        await director.handle_request(req(rid, model="m", objective=objective))
    await director.handle_request(req("h", model="m", objective="critical", headers_only=True))  # not scheduled
    ds.upsert_objective(Objective("batch", -1))
    idle(store, queue=10)  # saturated: the sheddable request is rejected, so not counted
    await expect_rejection(director, req("shed", model="m", objective="batch"))
    assert priority_counts(director) == {
        ("m", "m", "critical", "3"): 2,
        ("m", "m", "batch", "-2"): 1,
        ("m", "m", "unset", "0"): 1,  # an objective without a priority: 0
        ("m", "m", "", "0"): 2,  # unknown objective (no label value from client input) and none
    }
    # one count per scheduled request, exactly as inference_model_request_total
    requests = sum(s.value for f in text_string_to_metric_families(director.metrics.render().decode())
                   for s in f.samples if s.name == "inference_model_request_total")
    assert sum(priority_counts(director).values()) == requests == 6


async def test_request_priority_metric_preview_criticality() -> None:
    director, ds, store = make(PREVIEW_GROUP)
    idle(store)
    ds.upsert_model(InferenceModelInfo("base", "base-model", "Critical"))
    ds.upsert_model(InferenceModelInfo("food", "food-review", "Standard", (TargetModel("food-review-1"),)))
    ds.upsert_model(InferenceModelInfo("unset", "plain", None))
    ds.upsert_model(InferenceModelInfo("shed", "batch", "Sheddable"))
    for i, model in enumerate(["base-model", "base-model", "food-review", "plain", "batch"]):
        await director.handle_request(req(f"r{i}", model=model))
    await expect_rejection(director, req("404", model="unknown"))
    assert priority_counts(director) == {
        ("base-model", "base-model", "", "1"): 2,
        ("food-review", "food-review-1", "", "0"): 1,
        ("plain", "plain", "", "0"): 1,  # unset criticality = Standard
        ("batch", "batch", "", "-1"): 1,
    }
