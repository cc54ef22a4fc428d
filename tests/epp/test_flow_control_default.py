"""Flow control as the default (issue 16: late binding) and its fail-open rule.

With a profile that accounts its picks (infergate's default, ``inflight-load-producer``), flow
control is on unless ``--no-flow-control``, with placement left to the scheduler; upstream's
presets keep it off. Flow control must never hold a request for want of *information*: an
endpoint without fresh metrics (never scraped yet, or its scrapes late) is counted from what the
EPP knows itself (its own requests there, under the pick-time limits), and a pool with no
candidate endpoint answers 503 at once, as with flow control off.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from infergate.epp.build import build_epp
from infergate.epp.contract import InferenceRequest, Rejection
from infergate.epp.datastore import Datastore, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.flowcontrol import FlowControlConfig
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.options import EPPOptions
from infergate.epp.saturation import SaturationConfig
from infergate.epp.scheduling import load_preset

IPS = ["10.0.0.1", "10.0.0.2"]


def _request(rid: str, prompt: str = "a short question") -> InferenceRequest:
    return InferenceRequest(request_id=rid, headers={}, body={"model": "m", "prompt": prompt}, model="m",
                            objective=None, prompt=prompt)


def _director(ips: list[str], saturation: SaturationConfig | None = None,
              preset: str = "default") -> tuple[EppDirector, MetricsStore]:
    ds = Datastore()
    ds.set_pool(PoolInfo("pool", selector={"app": "vllm"}, target_ports=(8000,)))
    ds.replace_pods([PodInfo(f"pod-{i}", ip, {"app": "vllm"}) for i, ip in enumerate(ips)])
    store = MetricsStore()
    config = DirectorConfig(flow_control=FlowControlConfig(enabled=True, max_wait=5.0),
                            saturation=saturation or SaturationConfig(), seed=1)
    return EppDirector(ds, load_preset(preset, seed=1), store, config=config), store


def test_flow_control_is_on_by_default_with_placement_left_to_the_scheduler() -> None:
    config = build_epp(EPPOptions(pool_name="pool")).director.config.flow_control
    assert config.enabled and config.placement == "scheduler"
    assert FlowControlConfig().placement == "scheduler"


def test_upstream_presets_keep_flow_control_off_and_the_flags_win() -> None:
    def enabled(**options: object) -> bool:
        return build_epp(EPPOptions(pool_name="pool", **options)).director.config.flow_control.enabled  # type: ignore[arg-type]

    assert not enabled(scheduling_preset="upstream-v1.0")  # no pick-time accounting: upstream's behaviour
    assert not enabled(flow_control=False)  # --no-flow-control
    assert enabled(flow_control=True, scheduling_preset="upstream-v1.0")  # --flow-control


@pytest.mark.parametrize("preset", ["default", "upstream-v1.0"])
async def test_endpoints_never_scraped_do_not_hold_requests(preset: str) -> None:
    """No scrape has answered yet: flow control cannot measure capacity, so it fails open."""
    director, _ = _director(IPS, preset=preset)
    decisions = [await asyncio.wait_for(director.handle_request(_request(f"r{i}")), 0.5) for i in range(8)]
    assert {d.endpoint for d in decisions} <= {f"{ip}:8000" for ip in IPS}
    assert director.flow.queue_size == 0


async def test_stale_metrics_fail_open_but_the_pick_time_limit_on_its_own_requests_still_holds() -> None:
    """Scrapes late (metrics older than the staleness threshold): the endpoint takes requests up to
    the pick-time limit on the EPP's own requests, and the next one waits for one of them to end."""
    director, store = _director(IPS[:1], SaturationConfig(max_inflight_per_endpoint=2))
    store.update(f"{IPS[0]}:8000", EndpointMetrics(update_time=time.monotonic() - 60.0))  # a minute old
    for i in range(2):
        await asyncio.wait_for(director.handle_request(_request(f"r{i}")), 0.5)
    waiting = asyncio.create_task(director.handle_request(_request("third")))
    await asyncio.sleep(0.02)
    assert not waiting.done() and director.flow.queue_size == 1
    director.on_request_done("r0", completed=True)
    decision = await asyncio.wait_for(waiting, 0.5)
    assert decision.endpoint == f"{IPS[0]}:8000"


async def test_fresh_metrics_still_hold_a_request_when_every_endpoint_is_full() -> None:
    """The rule is about missing information only: a measured full pool still holds."""
    director, store = _director(IPS, SaturationConfig(queue_depth_threshold=0))
    for ip in IPS:
        store.update(f"{ip}:8000", EndpointMetrics(waiting_queue=3, update_time=time.monotonic()))
    waiting = asyncio.create_task(director.handle_request(_request("held")))
    await asyncio.sleep(0.02)
    assert not waiting.done() and director.flow.queue_size == 1
    waiting.cancel()


@pytest.mark.parametrize("case", ["no endpoint", "every endpoint failing"])
async def test_no_candidate_endpoint_is_a_503_at_once_as_with_flow_control_off(case: str) -> None:
    director, store = _director([] if case == "no endpoint" else IPS)
    if case == "every endpoint failing":
        for ip in IPS:
            for _ in range(store.failure_threshold):
                store.fail(f"{ip}:8000")
    with pytest.raises(Rejection) as raised:
        await asyncio.wait_for(director.handle_request(_request("r")), 0.5)
    assert raised.value.status == 503 and director.flow.queue_size == 0


async def test_admission_counts_endpoints_only_until_one_has_room_and_agrees_with_the_full_count() -> None:
    """Flow control asks for room on every request: on a pool of 256 endpoints with room, admitting
    one reads one or two endpoints, not all of them; and the early answer is the full count's."""
    ips = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(256)]
    director, store = _director(ips)
    now = time.monotonic()
    for i, ip in enumerate(ips):  # a third of the pool is full (queue over the threshold)
        store.update(f"{ip}:8000", EndpointMetrics(waiting_queue=9 if i % 3 == 0 else i % 4, update_time=now))
    reads = 0
    headroom = director.saturation.admission_headroom

    def counted(hostport: str, now: float, unseen: int = 0) -> int:
        nonlocal reads
        reads += 1
        return headroom(hostport, now, unseen)

    # the endpoints are read in the set's order (it varies with the hash seed): a request reads the full
    # ones ahead of the first with room, then that one, at each of its admission checks
    leading_full = next(i for i, h in enumerate(director._known_endpoints) if headroom(h, now) > 0)
    checks = 0
    capacity_over = director.flow.capacity_over

    def counted_check(taken: int) -> bool:
        nonlocal checks
        checks += 1
        return capacity_over(taken)

    director.flow.capacity_over = counted_check
    director.saturation.admission_headroom = counted  # type: ignore[method-assign]
    await asyncio.wait_for(director.handle_request(_request("r")), 0.5)
    assert 1 <= checks <= 2 and reads == checks * (leading_full + 1), (checks, reads, leading_full)
    director.flow.capacity_over = capacity_over
    full = director._capacity()
    assert full > 100
    for taken in (0, 1, full - 1, full, full + 1, 10 * full):
        assert director._capacity_over(taken) == (full > taken), taken


async def test_a_fast_client_is_not_held_by_its_own_finished_requests() -> None:
    """Requests sent since the last scrape count as queue the scrape cannot show yet, but only while
    they are in flight: one client sending short requests one after another, faster than the
    scrapes, is never held (before, the 7th request within a scrape interval waited for the next
    scrape: a throughput cap of ~6 requests per endpoint per scrape interval)."""
    director, store = _director(IPS[:1])
    store.update(f"{IPS[0]}:8000", EndpointMetrics(update_time=time.monotonic()))
    for i in range(30):
        await asyncio.wait_for(director.handle_request(_request(f"r{i}")), 0.5)
        director.on_request_done(f"r{i}", completed=True)
    assert director.flow.queue_size == 0 and director.flow.queued_total == 0
    # requests still in flight do count: a burst is not released into one stale snapshot
    for i in range(6):  # queue threshold 5: room for 6
        await asyncio.wait_for(director.handle_request(_request(f"burst{i}")), 0.5)
    held = asyncio.create_task(director.handle_request(_request("seventh")))
    await asyncio.sleep(0.02)
    assert not held.done() and director.flow.queue_size == 1
    held.cancel()


async def test_may_hold_says_when_a_request_could_wait() -> None:
    """The ext_proc server runs a request in a task of its own only when flow control could hold it:
    not with room and nobody waiting (the common case), yes with no room or requests waiting."""
    director, store = _director(IPS[:1], SaturationConfig(queue_depth_threshold=0))
    store.update(f"{IPS[0]}:8000", EndpointMetrics(update_time=time.monotonic()))
    assert not director.may_hold()  # room for one (queue threshold 0: one request)
    await asyncio.wait_for(director.handle_request(_request("first")), 0.5)
    assert director.may_hold()  # the one slot is taken (in flight, unseen by the last scrape)
    held = asyncio.create_task(director.handle_request(_request("second")))
    await asyncio.sleep(0.02)
    assert not held.done() and director.may_hold()
    director.on_request_done("first", completed=True)
    await asyncio.wait_for(held, 0.5)
    director.on_request_done("second", completed=True)
    assert not director.may_hold()
    off, _ = _director(IPS[:1])
    off.flow.config = FlowControlConfig(enabled=False)
    assert not off.may_hold()
