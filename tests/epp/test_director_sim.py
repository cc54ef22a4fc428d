"""The scheduling side end to end without a proxy: static pool file -> build_epp (datastore,
scraper, scheduler, Director) -> real simulator replicas. The test plays the proxy: it asks
the Director, sends the request to the chosen replica and reports the response back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import yaml

from infergate.epp.build import build_epp
from infergate.epp.contract import InferenceRequest, Rejection
from infergate.epp.options import EPPOptions
from infergate.epp.sources.static import StaticFileSource
from infergate.sim import SimCluster
from infergate.sim.config import SimConfig
from infergate.util.net import free_port, random_loopback_block
from infergate.util.wait import async_wait_until

pytestmark = pytest.mark.e2e


class Harness:
    def __init__(self, parts: Any, http: aiohttp.ClientSession) -> None:
        self.parts = parts
        self.director = parts.director
        self.http = http
        self.count = 0

    async def send(self, prompt: str, *, objective: str | None = None, max_tokens: int = 4,
                   stream: bool = False, on_decision: Callable[[], None] | None = None) -> tuple[str, str]:
        """Route one request through the Director and serve it; returns (chosen endpoint, serving pod)."""
        self.count += 1
        rid = f"req-{self.count}"
        body = {"model": "m", "prompt": prompt, "max_tokens": max_tokens, "stream": stream, "ignore_eos": True}
        request = InferenceRequest(rid, {}, body, "m", objective, prompt, streaming=stream)
        decision = await self.director.handle_request(request)
        if on_decision is not None:
            on_decision()
        completed = False
        try:
            async with self.http.post(f"http://{decision.endpoint}/v1/completions", json=body) as response:
                self.director.on_response_headers(rid, response.status, dict(response.headers))
                pod = response.headers["x-inference-pod"]
                async for chunk in response.content.iter_any():
                    self.director.on_response_body(rid, chunk, False)
                self.director.on_response_body(rid, b"", True)
                completed = True
        finally:
            self.director.on_request_done(rid, completed=completed)
        return decision.endpoint, pod


@pytest.fixture
async def harness(tmp_path: Path) -> Any:
    port = free_port()
    addresses = random_loopback_block(3, port)
    config = SimConfig(model="m", time_scale=2.0, max_num_seqs=2, seed=3)
    async with SimCluster(config, addresses, port) as cluster:
        pool_file = tmp_path / "pool.yaml"
        pool_file.write_text(yaml.safe_dump({
            "pool": {"name": "sims", "selector": {"app": "sim"}, "targetPorts": [port]},
            "objectives": [{"name": "critical", "priority": 1}, {"name": "batch", "priority": -1}],
            "endpoints": [{"name": r.name, "address": r.host, "labels": {"app": "sim"}} for r in cluster.replicas],
        }))
        parts = build_epp(EPPOptions(pool_name="sims", seed=7, refresh_metrics_interval=0.02))
        source = StaticFileSource(pool_file, poll_interval=0.05)
        source_task = asyncio.create_task(source.run(parts.datastore))
        await parts.scraper.start()
        try:
            async with aiohttp.ClientSession() as http:
                h = Harness(parts, http)
                h.cluster = cluster  # type: ignore[attr-defined]
                await async_wait_until(lambda: all(parts.store.fresh(e) is not None for e in cluster.endpoints),
                                       10, interval=0.02, what="all replicas scraped")
                yield h
        finally:
            await parts.scraper.stop()
            source_task.cancel()
            await asyncio.gather(source_task, return_exceptions=True)


async def test_shared_prefix_lands_on_the_same_replica(harness: Harness) -> None:
    system = "You are an expert travel agent. Answer briefly and precisely. " * 25
    endpoint, pod = await harness.send(system + "Where should I go in May?")
    for question in ("What about June?", "And in winter?", "Is Lisbon nice?"):
        again, again_pod = await harness.send(system + question, stream=True)
        assert (again, again_pod) == (endpoint, pod)
    assert all(harness.director.inflight(e) == 0 for e in harness.cluster.endpoints)  # type: ignore[attr-defined]


async def test_sheddable_rejected_under_saturation_critical_served(harness: Harness) -> None:
    cluster = harness.cluster  # type: ignore[attr-defined]
    store = harness.parts.store
    long_tasks = []
    try:
        for i in range(30):  # spaced a little, so scraped queues steer the load (a burst herds, as upstream)
            long_tasks.append(asyncio.create_task(
                harness.send(f"filler {i} " * 10, objective="critical", max_tokens=3000)))
            await asyncio.sleep(0.03)
        await async_wait_until(lambda: all((store.fresh(e) or SimpleNamespace(waiting_queue=0)).waiting_queue > 5
                                           for e in cluster.endpoints),
                               10, interval=0.02, what="every replica queued past the threshold")
        with pytest.raises(Rejection) as err:
            await harness.send("a sheddable request", objective="batch")
        assert err.value.status == 429 and "sheddable" in err.value.message
        served = asyncio.create_task(harness.send("a critical request", objective="critical", max_tokens=2))
    finally:
        for t in long_tasks:
            t.cancel()
        await asyncio.gather(*long_tasks, return_exceptions=True)
    endpoint, _ = await asyncio.wait_for(served, 30)
    assert endpoint in cluster.endpoints


async def test_flow_control_admits_higher_priority_first_on_real_saturation(tmp_path: Path) -> None:
    port = free_port()
    addresses = random_loopback_block(2, port)
    config = SimConfig(model="m", time_scale=2.0, max_num_seqs=1, seed=3)
    async with SimCluster(config, addresses, port) as cluster:
        pool_file = tmp_path / "pool.yaml"
        pool_file.write_text(yaml.safe_dump({
            "pool": {"name": "sims", "targetPorts": [port]},
            "objectives": [{"name": "high", "priority": 5}],
            "endpoints": [{"name": r.name, "address": r.host} for r in cluster.replicas],
        }))
        # metrics count as measured for 5 s, not upstream's 200 ms: on a loaded machine a scrape can come
        # later than that, and flow control then fails open (admits every filler: no queue ever formed)
        parts = build_epp(EPPOptions(pool_name="sims", seed=7, refresh_metrics_interval=0.02, flow_control=True,
                                      flow_control_max_wait=20.0, sd_metrics_staleness_threshold=5.0))
        source = asyncio.create_task(StaticFileSource(pool_file, poll_interval=0.05).run(parts.datastore))
        await parts.scraper.start()
        try:
            async with aiohttp.ClientSession() as http:
                h = Harness(parts, http)
                await async_wait_until(lambda: all(parts.store.fresh(e) is not None for e in cluster.endpoints),
                                       10, interval=0.02, what="all replicas scraped")
                fillers = [asyncio.create_task(h.send(f"filler {i} " * 10, max_tokens=3000)) for i in range(20)]
                await async_wait_until(lambda: parts.director.flow.queue_size >= 1,
                                       10, interval=0.02, what="flow control queueing")
                # admitted requests went where the capacity was: both replicas filled past the queue
                # threshold (5: at exactly 5 a replica still has capacity, and flow control keeps
                # admitting fillers, so a request sent then may be admitted at once), neither overfilled
                await async_wait_until(lambda: all((parts.store.fresh(e) or SimpleNamespace(waiting_queue=0)).waiting_queue
                                                   > 5 for e in cluster.endpoints),
                                       10, interval=0.02, what="both replicas past the threshold")
                queues = {e: (parts.store.fresh(e) or SimpleNamespace(waiting_queue=99)).waiting_queue
                          for e in cluster.endpoints}
                assert all(q <= 7 for q in queues.values()), queues
                order: list[str] = []

                async def tracked(name: str, objective: str | None) -> None:  # records admission order
                    await h.send(f"{name} " * 10, objective=objective, max_tokens=2,
                                 on_decision=lambda: order.append(name))

                low = asyncio.create_task(tracked("low", None))
                await asyncio.sleep(0.05)
                high = asyncio.create_task(tracked("high", "high"))
                await asyncio.sleep(0.3)
                assert order == []  # both wait: the pool is saturated
                for t in fillers:  # capacity frees as the long requests go away
                    t.cancel()
                await asyncio.gather(*fillers, return_exceptions=True)
                await asyncio.wait_for(asyncio.gather(low, high), 30)
                assert order[0] == "high", order
        finally:
            await parts.scraper.stop()
            source.cancel()
            await asyncio.gather(source, return_exceptions=True)
