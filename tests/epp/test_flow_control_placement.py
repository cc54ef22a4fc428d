"""Flow control's placement: where an admitted request may go.

"scheduler" (the default): flow control only decides when a request goes; the scheduling profile
decides where, so prefix affinity is kept. "headroom": only to endpoints with headroom, so a request
leaves the replica that holds its prefix whenever that replica is briefly over a threshold
(bench/results/peers/replay-flow-control/: the hold without the placement rule).
"""

from __future__ import annotations

import time

import pytest

from infergate.epp.build import director_config
from infergate.epp.contract import InferenceRequest
from infergate.epp.datastore import Datastore, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.flowcontrol import FlowControlConfig
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.options import EPPOptions
from infergate.epp.saturation import SaturationConfig
from infergate.epp.scheduling.config import load_preset

IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
PROMPT = "You are a careful reviewer of restaurant food. " * 150  # a long shared prefix (~1,800 tokens)


def make(placement: str) -> tuple[EppDirector, MetricsStore]:
    ds = Datastore()
    ds.set_pool(PoolInfo("pool", selector=None, target_ports=(8000,)))
    ds.replace_pods([PodInfo(f"pod-{i}", ip) for i, ip in enumerate(IPS)])
    store = MetricsStore()
    # an endpoint with 2 waiting has no headroom (queue threshold 1), yet the default profile keeps a
    # long prefix there (its predicted wait is below recomputing the prefix elsewhere)
    config = DirectorConfig(flow_control=FlowControlConfig(enabled=True, max_wait=5.0, placement=placement),
                            saturation=SaturationConfig(queue_depth_threshold=1), seed=1)
    return EppDirector(ds, load_preset("default", seed=1), store, config=config), store


def scrape(store: MetricsStore, queues: dict[str, int]) -> None:
    for ip, queue in queues.items():
        store.update(f"{ip}:8000", EndpointMetrics(waiting_queue=queue, kv_cache_usage=0.0,
                                                   update_time=time.monotonic()))


def request(rid: str, prompt: str) -> InferenceRequest:
    return InferenceRequest(request_id=rid, headers={}, body={"model": "m", "prompt": prompt}, model="m",
                            objective=None, prompt=prompt)


async def second_request_endpoint(placement: str) -> tuple[str, str]:
    """The endpoint of a first request, and of a second one with the same prefix sent while the
    first one's endpoint is over the queue threshold (the others idle)."""
    director, store = make(placement)
    scrape(store, {ip: 0 for ip in IPS})
    first = await director.handle_request(request("first", PROMPT + "Question 1?"))
    director.on_request_done("first", completed=True)
    holder = first.endpoint.split(":")[0]
    scrape(store, {ip: (2 if ip == holder else 0) for ip in IPS})  # the holder: no headroom
    second = await director.handle_request(request("second", PROMPT + "Question 2?"))
    return first.endpoint, second.endpoint


async def test_headroom_placement_moves_a_request_off_its_prefix_holder_when_the_holder_has_no_headroom() -> None:
    holder, second = await second_request_endpoint("headroom")
    assert second != holder


async def test_scheduler_placement_keeps_the_request_on_its_prefix_holder() -> None:
    holder, second = await second_request_endpoint("scheduler")
    assert second == holder


def test_the_epp_option_reaches_the_director_and_an_unknown_placement_is_refused() -> None:
    options = EPPOptions(pool_name="pool", flow_control=True, flow_control_placement="headroom")
    assert director_config(options, accounts_picks=True).flow_control.placement == "headroom"
    assert director_config(EPPOptions(pool_name="pool"), accounts_picks=True).flow_control.placement == "scheduler"
    with pytest.raises(ValueError, match="'anywhere' is not one of scheduler, headroom"):
        FlowControlConfig(enabled=True, placement="anywhere")
