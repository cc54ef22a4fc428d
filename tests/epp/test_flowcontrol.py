"""Saturation detector and flow control (off = upstream v1.0; on = priority queue)."""

from __future__ import annotations

import asyncio

import pytest

from infergate.epp.contract import Rejection
from infergate.epp.flowcontrol import FlowControlConfig, FlowController
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.saturation import SaturationConfig, SaturationDetector


def test_saturation_detector_thresholds_and_staleness() -> None:
    store = MetricsStore()
    det = SaturationDetector(store)
    now = 1000.0
    assert det.is_saturated([], now)  # no endpoints
    store.update("a", EndpointMetrics(waiting_queue=6, kv_cache_usage=0.1, update_time=now))
    store.update("b", EndpointMetrics(waiting_queue=0, kv_cache_usage=0.81, update_time=now))
    assert det.is_saturated(["a", "b"], now)
    store.update("c", EndpointMetrics(waiting_queue=5, kv_cache_usage=0.8, update_time=now))
    assert not det.is_saturated(["a", "b", "c"], now)
    assert det.is_saturated(["a", "b", "c"], now + 0.25)  # c's metrics older than 200 ms: unknown
    assert det.headroom(["a", "b", "c"], now) == 1
    store.update("d", EndpointMetrics(waiting_queue=0, kv_cache_usage=0.0, update_time=now))
    assert det.headroom(["a", "b", "c", "d"], now) == 1 + 6


def test_saturation_config_from_env() -> None:
    c = SaturationConfig.from_env({"SD_QUEUE_DEPTH_THRESHOLD": "9", "SD_KV_CACHE_UTIL_THRESHOLD": "0.5",
                                   "SD_METRICS_STALENESS_THRESHOLD": "1s"})
    assert (c.queue_depth_threshold, c.kv_cache_util_threshold, c.metrics_staleness_threshold) == (9, 0.5, 1.0)
    d = SaturationConfig.from_env({"SD_KV_CACHE_UTIL_THRESHOLD": "1.5", "SD_METRICS_STALENESS_THRESHOLD": "350ms"})
    assert d.kv_cache_util_threshold == 0.8 and d.metrics_staleness_threshold == pytest.approx(0.35)


def test_saturation_staleness_takes_any_go_duration_and_rejects_other_text() -> None:
    # issue 11 finding 8: "1m30s" fell back to the 200 ms default
    assert SaturationConfig.from_env({"SD_METRICS_STALENESS_THRESHOLD": "1m30s"}).metrics_staleness_threshold == 90.0
    assert SaturationConfig.from_env({"SD_METRICS_STALENESS_THRESHOLD": "0.5"}).metrics_staleness_threshold == 0.5
    with pytest.raises(ValueError, match="SD_METRICS_STALENESS_THRESHOLD='soon' is not a duration"):
        SaturationConfig.from_env({"SD_METRICS_STALENESS_THRESHOLD": "soon"})


class Capacity:
    def __init__(self, value: int) -> None:
        self.value = value

    def __call__(self) -> int:
        return self.value


async def test_off_is_upstream_behaviour() -> None:
    cap = Capacity(0)
    fc = FlowController(FlowControlConfig(enabled=False), cap)
    await fc.admit("critical", 0)  # priority >= 0 is never queued or shed
    await fc.admit("high", 5)
    with pytest.raises(Rejection) as err:
        await fc.admit("batch", -1)
    assert (err.value.status, err.value.code) == (429, "InferencePoolResourceExhausted")
    assert err.value.body == "inference gateway: InferencePoolResourceExhausted - system saturated, sheddable request dropped"
    cap.value = 1
    await fc.admit("batch", -1)  # not saturated: sheddable admitted


async def test_on_releases_by_priority_then_fifo() -> None:
    cap = Capacity(0)
    fc = FlowController(FlowControlConfig(enabled=True, max_wait=5.0), cap)
    order: list[str] = []

    async def request(name: str, priority: int) -> None:
        await fc.admit(name, priority)
        order.append(name)
        fc.scheduled()

    tasks = [asyncio.create_task(request(n, p)) for n, p in
             [("low-1", 0), ("high-1", 5), ("low-2", 0), ("mid", 2), ("high-2", 5)]]
    await asyncio.sleep(0.01)
    assert order == [] and fc.queue_size == 5
    with pytest.raises(Rejection, match="sheddable"):
        await fc.admit("shed", -1)  # sheddable never queued
    for _ in range(5):
        cap.value = 1
        fc.notify()
        await asyncio.sleep(0.01)
        cap.value = 0
    await asyncio.gather(*tasks)
    assert order == ["high-1", "high-2", "mid", "low-1", "low-2"]


async def test_on_pending_releases_count_against_capacity() -> None:
    cap = Capacity(2)
    fc = FlowController(FlowControlConfig(enabled=True), cap)
    await fc.admit("a", 0)
    await fc.admit("b", 0)  # two released, not yet scheduled
    waiter = asyncio.create_task(fc.admit("c", 0))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    fc.scheduled()  # a is scheduled: its load now shows in capacity, which stayed 2 -> room for c
    fc.notify()
    await asyncio.wait_for(waiter, 1.0)


async def test_on_bounded_queue_evicts_lower_priority_and_max_wait() -> None:
    cap = Capacity(0)
    fc = FlowController(FlowControlConfig(enabled=True, max_queued=2, max_wait=0.2), cap)
    low = asyncio.create_task(fc.admit("low", 0))
    mid = asyncio.create_task(fc.admit("mid", 1))
    await asyncio.sleep(0.01)
    with pytest.raises(Rejection, match="queue is full"):
        await fc.admit("another-low", 0)
    high = asyncio.create_task(fc.admit("high", 3))
    await asyncio.sleep(0.01)
    with pytest.raises(Rejection, match="evicted"):
        await low
    with pytest.raises(Rejection, match=r"waited 0.2s"):
        await mid
    with pytest.raises(Rejection):
        await high
    assert fc.queue_size == 0


async def test_on_cancelled_waiter_leaves_the_queue() -> None:
    cap = Capacity(0)
    fc = FlowController(FlowControlConfig(enabled=True), cap)
    waiter = asyncio.create_task(fc.admit("gone", 0))
    await asyncio.sleep(0.01)
    assert fc.queue_size == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert fc.queue_size == 0
    cap.value = 1
    await asyncio.wait_for(fc.admit("next", 0), 1.0)  # the slot was not consumed by the cancelled one


async def test_a_request_cancelled_as_it_is_released_gives_its_slot_back() -> None:
    """The client leaves in the same loop iteration as its queued request is released: the admit
    ends cancelled and the slot it was released into is free again (Python 3.11's wait_for dropped
    such a cancel: the request was taken as admitted by a task that had been cancelled)."""
    cap = Capacity(0)
    fc = FlowController(FlowControlConfig(enabled=True, max_wait=5.0), cap)
    task = asyncio.create_task(fc.admit("leaving", 0))
    await asyncio.sleep(0.01)
    assert fc.queue_size == 1
    cap.value = 1
    fc.notify()  # released: its slot is pending
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    assert done and task.cancelled()
    await fc.admit("next", 0)  # the one slot is free again: admitted at once


async def test_a_released_request_that_fails_to_schedule_gives_its_slot_to_the_next_one_at_once() -> None:
    """``scheduled()`` ends a released request's hold on capacity; when its scheduling failed (a 429
    from the scheduler), nothing else shows the freed slot, so the queue must be re-checked then,
    not at the next scrape."""
    capacity = Capacity(1)
    flow = FlowController(FlowControlConfig(enabled=True, max_wait=5.0), lambda: capacity.value)
    await flow.admit("first", 0)  # released at once: it holds the one slot until scheduled()
    waiting = asyncio.create_task(flow.admit("second", 0))
    await asyncio.sleep(0.01)
    assert not waiting.done() and flow.queue_size == 1
    flow.scheduled()  # the first one's scheduling failed: the slot is free again
    await asyncio.wait_for(waiting, 1.0)
