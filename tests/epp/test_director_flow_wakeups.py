"""When the Director wakes flow control: every event that can free capacity must re-check it, or a
request waits in the queue with room available until the next scrape or request end."""

from __future__ import annotations

import asyncio
import time

from infergate.epp.contract import InferenceRequest
from infergate.epp.datastore import Datastore, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.flowcontrol import FlowControlConfig
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.saturation import SaturationConfig
from infergate.epp.scheduling import load_preset

IPS = ["10.0.0.1", "10.0.0.2"]


def _request(rid: str, prompt: str) -> InferenceRequest:
    return InferenceRequest(request_id=rid, headers={}, body={"model": "m", "prompt": prompt}, model="m",
                            objective=None, prompt=prompt)


async def test_first_response_bytes_release_a_request_held_for_pending_prefill() -> None:
    """With the pick-time limit on pending prefill tokens, an endpoint has no headroom while a long
    prompt waits for its prefill; its first response bytes (a data plane that sends response bodies)
    end that, and the request waiting in flow control must go at once, not at the next scrape."""
    ds = Datastore()
    ds.set_pool(PoolInfo("pool", selector={"app": "vllm"}, target_ports=(8000,)))
    ds.replace_pods([PodInfo(f"pod-{i}", ip, {"app": "vllm"}) for i, ip in enumerate(IPS)])
    store = MetricsStore()
    config = DirectorConfig(flow_control=FlowControlConfig(enabled=True, max_wait=5.0),
                            saturation=SaturationConfig(max_pending_prefill_tokens=1000), seed=1)
    director = EppDirector(ds, load_preset("default", seed=1), store, config=config)
    for ip in IPS:  # scraped before the picks: they show nothing yet
        store.update(f"{ip}:8000", EndpointMetrics(update_time=time.monotonic()))
    long = [await director.handle_request(_request(f"long{i}", f"prompt {i} " + "x" * 8000)) for i in range(len(IPS))]
    assert sorted(d.endpoint for d in long) == sorted(f"{ip}:8000" for ip in IPS)
    assert director._capacity() == 0  # ~2,000 uncached tokens pending on each endpoint
    waiting = asyncio.create_task(director.handle_request(_request("next", "a short question")))
    await asyncio.sleep(0.01)
    assert not waiting.done() and director.flow.queue_size == 1
    director.on_response_body("long0", b"data: {}\n\n", False)  # prefilled: decoding now
    decision = await asyncio.wait_for(waiting, 0.5)  # no scrape, no request end
    assert decision.endpoint == long[0].endpoint
