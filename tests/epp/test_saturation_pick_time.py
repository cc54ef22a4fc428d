"""Pick-time saturation (issue 16): the detector reads the EPP's own in-flight accounting, so a
sheddable request is shed (429) when the pool is full even though the scraped metrics still
look idle; upstream v1.0's profile keeps upstream's metrics-only detector."""

from __future__ import annotations

import asyncio
import time

import pytest

from infergate.epp.build import director_config
from infergate.epp.contract import Decision, InferenceRequest, Rejection
from infergate.epp.datastore import Datastore, Objective, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.flowcontrol import FlowControlConfig
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.options import EPPOptions
from infergate.epp.saturation import (
    DEFAULT_MAX_INFLIGHT_PER_ENDPOINT,
    DEFAULT_MAX_PENDING_PREFILL_TOKENS,
    SaturationConfig,
    SaturationDetector,
)
from infergate.epp.scheduling import load_preset

IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
HOSTS = [f"{ip}:8000" for ip in IPS]
NO_HOLDBACK = SaturationConfig(sheddable_max_inflight_per_endpoint=0)


def make(preset: str = "default", config: DirectorConfig | None = None) -> tuple[EppDirector, MetricsStore]:
    ds = Datastore()
    ds.set_pool(PoolInfo("pool", selector={"app": "vllm"}, target_ports=(8000,)))
    ds.replace_pods([PodInfo(f"pod-{i}", ip, {"app": "vllm"}) for i, ip in enumerate(IPS)])
    ds.upsert_objective(Objective("critical", 1))
    ds.upsert_objective(Objective("sheddable", -1))
    store = MetricsStore()
    director = EppDirector(ds, load_preset(preset, seed=1), store, config=config or DirectorConfig(seed=1))
    idle(store)
    return director, store


def idle(store: MetricsStore, *hosts: str) -> None:
    """Fresh scraped metrics that show nothing running or waiting (the scrape lags the picks)."""
    for h in hosts or HOSTS:
        store.update(h, EndpointMetrics(update_time=time.monotonic()))


def req(rid: str, objective: str, prompt: str = "hello") -> InferenceRequest:
    return InferenceRequest(request_id=rid, headers={}, body={"model": "m", "prompt": prompt}, model="m",
                            objective=objective, prompt=prompt)


async def shed(director: EppDirector, request: InferenceRequest) -> Rejection:
    with pytest.raises(Rejection) as err:
        await director.handle_request(request)
    return err.value


async def fill(director: EppDirector, count: int) -> list[Decision]:
    """``count`` critical requests with distinct prompts, left in flight."""
    return [await director.handle_request(req(f"c{i}", "critical", f"question {i} " * 3)) for i in range(count)]


# ---- the detector ---------------------------------------------------------------------

def test_detector_in_flight_and_pending_prefill_limits() -> None:
    store = MetricsStore()
    now = 1000.0
    for h in ("a", "b"):
        store.update(h, EndpointMetrics(update_time=now))
    loads = {"a": (3, 0.0), "b": (1, 500.0)}
    config = SaturationConfig(max_inflight_per_endpoint=3, max_pending_prefill_tokens=400)
    det = SaturationDetector(store, config, load=lambda h, _m: loads[h], accounts_picks=True)
    assert det.endpoint_headroom("a", now) == 0  # 3 in flight = the limit
    assert det.endpoint_headroom("b", now) == 0  # 500 prefill tokens queued > 400
    assert det.is_saturated(["a", "b"], now)
    loads["a"] = (1, 0.0)
    assert det.endpoint_headroom("a", now) == 2 and not det.is_saturated(["a", "b"], now)
    # the queue threshold still bounds the room (scraped queue + requests the scrape cannot show)
    assert det.endpoint_headroom("a", now, unseen=5) == 1
    # stale metrics stay "no capacity" as upstream, whatever the pick-time load
    assert det.endpoint_headroom("a", now + 1.0) == 0


def test_auto_limits_follow_the_profile_and_zero_turns_them_off() -> None:
    store = MetricsStore()
    busy = (10_000, 1e9)
    auto = SaturationConfig()
    on = SaturationDetector(store, auto, load=lambda h, m: busy, accounts_picks=True)
    assert (on.limits.max_inflight_per_endpoint, on.limits.max_pending_prefill_tokens) == (
        DEFAULT_MAX_INFLIGHT_PER_ENDPOINT, DEFAULT_MAX_PENDING_PREFILL_TOKENS)
    assert on.config == auto and on.pick_time
    off = SaturationDetector(store, auto, load=lambda h, m: busy, accounts_picks=False)
    assert (off.limits.max_inflight_per_endpoint, off.limits.max_pending_prefill_tokens) == (0, 0)
    assert not off.pick_time
    store.update("a", EndpointMetrics(update_time=time.monotonic()))
    assert not off.is_saturated(["a"]) and on.is_saturated(["a"])
    explicit_off = SaturationDetector(store, SaturationConfig(max_inflight_per_endpoint=0, max_pending_prefill_tokens=0),
                                      load=lambda h, m: busy, accounts_picks=True)
    assert not explicit_off.pick_time and not explicit_off.is_saturated(["a"])


# ---- the director ---------------------------------------------------------------------

async def test_sheddable_is_shed_under_pick_time_load_while_scraped_metrics_look_idle() -> None:
    # the defect: the detector read only scraped queue/KV, so with every endpoint running
    # its limit of requests (the scrape still shows them idle) sheddable requests were admitted
    # (the priority holdback, which sheds them much earlier, is off: test_priority_holdback.py)
    director, store = make(config=DirectorConfig(saturation=NO_HOLDBACK, seed=1))
    limit = DEFAULT_MAX_INFLIGHT_PER_ENDPOINT
    await fill(director, limit * len(IPS))
    assert sorted(director.inflight(h) for h in HOSTS) == [limit] * len(IPS)
    idle(store)
    r = await shed(director, req("s", "sheddable"))
    assert (r.status, r.code) == (429, "InferencePoolResourceExhausted")
    assert r.message == "system saturated, sheddable request dropped"
    assert (await director.handle_request(req("c-more", "critical"))).endpoint in HOSTS  # never shed
    director.on_request_done("c-more", completed=True)
    first = HOSTS[0]
    done = [rid for rid, state in director._requests.items() if state.hostport == first][:1]
    director.on_request_done(done[0], completed=True)
    assert (await director.handle_request(req("s-ok", "sheddable"))).endpoint == first


async def test_upstream_v1_profile_keeps_the_metrics_only_detector() -> None:
    director, store = make("upstream-v1.0")
    await fill(director, DEFAULT_MAX_INFLIGHT_PER_ENDPOINT * len(IPS))
    idle(store)
    assert not director.saturation.pick_time
    assert (await director.handle_request(req("s", "sheddable"))).endpoint in HOSTS


async def test_sheddable_is_shed_when_its_picked_endpoint_is_full() -> None:
    # the prefix's holder is at its limit; the other endpoints have room, but moving the request
    # there would recompute the prefix at the expense of their running requests
    config = DirectorConfig(saturation=SaturationConfig(max_inflight_per_endpoint=2,
                                                        sheddable_max_inflight_per_endpoint=0), seed=1)
    director, store = make(config=config)
    system = "You are a meticulous assistant who answers in full sentences. " * 30
    a = await director.handle_request(req("a", "critical", system + "Question A"))
    b = await director.handle_request(req("b", "critical", system + "Question B"))
    assert a.endpoint == b.endpoint
    idle(store)
    assert not director.saturation.is_saturated(HOSTS)
    r = await shed(director, req("s", "sheddable", system + "Question S"))
    assert r.status == 429
    assert (await director.handle_request(req("s2", "sheddable", "an unrelated prompt"))).endpoint != a.endpoint
    director.on_request_done("a", completed=True)
    assert (await director.handle_request(req("s3", "sheddable", system + "Question S"))).endpoint == a.endpoint


async def test_pending_prefill_tokens_fill_an_endpoint_until_its_first_bytes() -> None:
    config = DirectorConfig(saturation=SaturationConfig(max_pending_prefill_tokens=1000), seed=1)
    director, _store = make(config=config)
    d = await director.handle_request(req("long", "critical", "x" * 8000))  # ~2,000 tokens, uncached
    assert director.saturation.endpoint_headroom(d.endpoint, time.monotonic()) == 0
    director.on_response_body("long", b"data: {}\n\n", False)  # prefilled: decoding now
    assert director.saturation.endpoint_headroom(d.endpoint, time.monotonic()) > 0


async def test_flow_control_capacity_counts_pick_time_load() -> None:
    config = DirectorConfig(flow_control=FlowControlConfig(enabled=True, max_wait=5.0),
                            saturation=SaturationConfig(max_inflight_per_endpoint=1), seed=1)
    director, store = make(config=config)
    await fill(director, len(IPS))  # one per endpoint: the limit
    idle(store)
    assert (await shed(director, req("s", "sheddable"))).status == 429
    waiting = asyncio.create_task(director.handle_request(req("c-wait", "critical")))
    await asyncio.sleep(0.05)
    assert not waiting.done() and director.flow.queue_size == 1
    director.on_request_done("c0", completed=True)
    assert (await asyncio.wait_for(waiting, 2.0)).endpoint == director._requests["c-wait"].hostport


def test_options_wire_the_pick_time_limits() -> None:
    options = EPPOptions(pool_name="p", sd_max_inflight_per_endpoint=7, sd_max_pending_prefill_tokens=0)
    saturation = director_config(options, accounts_picks=True).saturation
    assert (saturation.max_inflight_per_endpoint, saturation.max_pending_prefill_tokens) == (7, 0)
    auto = director_config(EPPOptions(pool_name="p"), accounts_picks=True).saturation
    assert (auto.max_inflight_per_endpoint, auto.max_pending_prefill_tokens) == (None, None)
