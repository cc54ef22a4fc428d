"""``precise-prefix-cache-scorer``: exact prefix scores from simulator KV events, with fallback."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from infergate.epp.contract import InferenceRequest
from infergate.epp.datastore import Datastore, Endpoint, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.metrics_scraper import MetricsStore
from infergate.epp.scheduling import load_config_text
from infergate.epp.scheduling.framework import (
    Candidate,
    ConfigError,
    PluginHandle,
    ProfileResult,
    SchedulingRequest,
    SchedulingResult,
)
from infergate.epp.scheduling.plugins import create_plugin
from infergate.epp.scheduling.plugins.precise_prefix import PrecisePrefixCacheScorer
from infergate.kvevents import BlockStored, EventBatch
from infergate.sim import SimCluster, SimConfig, tokenizer
from infergate.util.net import free_port, random_loopback_block
from infergate.util.wait import async_wait_until

MODEL = "m"
PROMPT = "Shared system prompt about the simulated accelerator and its caches. " * 8


def make(params: dict[str, Any] | None = None) -> PrecisePrefixCacheScorer:
    plugin = create_plugin("precise-prefix-cache-scorer", "p", params or {}, PluginHandle(random.Random(0)))
    assert isinstance(plugin, PrecisePrefixCacheScorer)
    return plugin


def config_text(events_port: int, extra: str = "") -> str:
    return f"""\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: precise-prefix-cache-scorer
  parameters:
    tokenProcessorConfig: {{blockSize: 16}}
    kvEventsConfig: {{topicFilter: "kv@", concurrency: 4, discoverPods: true, port: {events_port}}}{extra}
- type: max-score-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: precise-prefix-cache-scorer
  - pluginRef: max-score-picker
"""


# ---- configuration -----------------------------------------------------------------------
def test_parameters_as_upstream() -> None:
    scheduler = load_config_text(config_text(6000, "\n    speculativeIndexing: true\n    speculativeTTL: 500ms"))
    plugin = scheduler.plugins["precise-prefix-cache-scorer"]
    assert isinstance(plugin, PrecisePrefixCacheScorer)
    assert (plugin.kv_block_size, plugin.events_port, plugin.topic_filter, plugin.concurrency) == (16, 6000, "kv@", 4)
    assert plugin.speculative and plugin.speculative_ttl_s == 0.5 and plugin.replay_port is None
    assert [p.name for p in scheduler.pre_request_plugins] == ["precise-prefix-cache-scorer"]
    default = make()
    assert (default.kv_block_size, default.events_port, default.block_size) == (16, 5557, 64)


@pytest.mark.parametrize(("params", "message"), [
    ({"kvEventsConfig": {"discoverPods": False}}, "discoverPods: false .* is not supported"),
    ({"kvEventsConfig": {"zmqEndpoint": "tcp://*:5557"}}, r"kvEventsConfig\.zmqEndpoint: unknown parameter"),
    ({"tokenProcessorConfig": {"blockSize": "16"}}, r"tokenProcessorConfig\.blockSize: must be an integer"),
    ({"tokenProcessorConfig": 16}, "tokenProcessorConfig: must be an object"),
    ({"kvEventsConfig": {"port": 70000}}, "port: must be a port"),
    ({"speculativeTTL": "soon"}, "speculativeTTL"),
    ({"speculativeIndexing": "yes"}, "speculativeIndexing: must be a boolean"),
])
def test_bad_parameters_are_named(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_plugin("precise-prefix-cache-scorer", "p", params, PluginHandle())


# ---- scoring over hand-fed indexes ---------------------------------------------------------
def candidates(*addresses: str) -> list[Candidate]:
    return [Candidate(Endpoint(f"pod-{i}", a, 8000)) for i, a in enumerate(addresses)]


def sreq(prompt: str, body: dict[str, Any] | None = None) -> SchedulingRequest:
    return SchedulingRequest("r", MODEL, prompt, {}, body if body is not None else {"model": MODEL, "prompt": prompt})


def picked(c: Candidate) -> SchedulingResult:
    return SchedulingResult({"default": ProfileResult([c])}, "default")


VERIFY = "A different prompt that shows the events hash blocks as the EPP does. " * 4


def verify(plugin: PrecisePrefixCacheScorer, c: Candidate) -> None:
    """Start ``c``'s index fresh and let it show a block hashed as the plugin hashes requests."""
    index = plugin.index_of(c.hostport)
    assert index is not None
    index.reset()  # as a publisher's first batch would
    index.apply(EventBatch(0.0, (BlockStored(tuple(tokenizer.block_hashes(VERIFY, 16, MODEL)[:1]), None, (), 16),)))
    plugin.score({}, sreq(VERIFY), [c])
    assert plugin.describe()[c.hostport]["verified"] is True


async def test_events_hashed_otherwise_are_never_trusted() -> None:
    plugin = make({"kvEventsConfig": {"port": 9}})
    cands = candidates("127.0.0.1", "127.0.0.2")
    try:
        state: dict[str, Any] = {}
        plugin.score(state, sreq(PROMPT), cands)
        plugin.pre_request(state, sreq(PROMPT), picked(cands[0]))  # the approximate index learns
        for c in cands:  # reliable events, but with hashes of another scheme (as a real vLLM's)
            index = plugin.index_of(c.hostport)
            assert index is not None
            index.reset()
            index.apply(EventBatch(0.0, (BlockStored((b"\x01" * 32, b"\x02" * 32), None, (), 16),)))
        assert plugin.score({}, sreq(PROMPT), cands) == [1.0, 0.0]  # the approximate scores
        assert all(d["verified"] is False and d["reliable"] is True for d in plugin.describe().values())
    finally:
        await plugin.aclose()


async def test_exact_scores_and_fallback_for_endpoints_without_events() -> None:
    plugin = make({"kvEventsConfig": {"port": 9}})  # nothing listens there: no events ever arrive
    cands = candidates("127.0.0.1", "127.0.0.2", "127.0.0.3")
    try:
        assert plugin.score({}, sreq(PROMPT), cands) == [0.0, 0.0, 0.0]  # starts following them
        assert set(plugin.subscribed()) == {c.hostport for c in cands}
        hashes = tokenizer.block_hashes(PROMPT, 16, MODEL)
        for c, held in ((cands[0], 3), (cands[1], len(hashes))):
            index = plugin.index_of(c.hostport)
            assert index is not None
            index.reset()  # as a publisher's first batch would
            index.apply(EventBatch(0.0, (BlockStored(tuple(hashes[:held]), None, (), 16),)))
        # (a first block that matches is what verifies an endpoint's hashing)
        # endpoint 2 never got events: approximate fallback, which learns from picks
        state: dict[str, Any] = {}
        scores = plugin.score(state, sreq(PROMPT), cands)
        assert scores[1] == 1.0 and scores[0] == pytest.approx(3 / len(hashes)) and scores[2] == 0.0
        plugin.pre_request(state, sreq(PROMPT), picked(cands[2]))
        scores = plugin.score({}, sreq(PROMPT), cands)
        assert scores[2] == 1.0 and scores[1] == 1.0  # fallback: the approximate index holds it now
        assert plugin.fallback_scores > 0 and plugin.exact_scores > 0
        # an index that became unreliable falls back too
        index1 = plugin.index_of(cands[1].hostport)
        assert index1 is not None
        index1.mark_unreliable("test")
        assert plugin.score({}, sreq(PROMPT), cands)[1] == 0.0  # never picked: approximate knows nothing
        # chat bodies are rendered as the simulator renders them
        messages = [{"role": "user", "content": PROMPT}]
        chat_hashes = tokenizer.block_hashes(tokenizer.render_chat(messages), 16, MODEL)
        plugin.index_of(cands[0].hostport).apply(  # type: ignore[union-attr]
            EventBatch(1.0, (BlockStored(tuple(chat_hashes), None, (), 16),)))
        chat = sreq("ignored", {"model": MODEL, "messages": messages})
        assert plugin.score({}, chat, cands)[0] == 1.0
    finally:
        await plugin.aclose()


async def test_speculative_indexing_counts_a_pick_until_its_ttl() -> None:
    plugin = make({"kvEventsConfig": {"port": 9}, "speculativeIndexing": True, "speculativeTTL": "200ms"})
    cands = candidates("127.0.0.1", "127.0.0.2")
    try:
        plugin.score({}, sreq(PROMPT), cands)
        for c in cands:
            verify(plugin, c)
        state: dict[str, Any] = {}
        assert plugin.score(state, sreq(PROMPT), cands) == [0.0, 0.0]
        plugin.pre_request(state, sreq(PROMPT), picked(cands[1]))
        assert plugin.score({}, sreq(PROMPT), cands) == [0.0, 1.0]  # before any event confirms it
        await asyncio.sleep(0.25)
        assert plugin.score({}, sreq(PROMPT), cands) == [0.0, 0.0]  # expired, never confirmed
    finally:
        await plugin.aclose()


def test_scoring_outside_an_event_loop_uses_the_approximate_index() -> None:
    plugin = make()
    cands = candidates("127.0.0.1", "127.0.0.2")
    state: dict[str, Any] = {}
    assert plugin.score(state, sreq(PROMPT), cands) == [0.0, 0.0]
    plugin.pre_request(state, sreq(PROMPT), picked(cands[0]))
    assert plugin.score({}, sreq(PROMPT), cands) == [1.0, 0.0]
    assert plugin.subscribed() == {}


# ---- real simulators, the director and the datastore ---------------------------------------
@pytest.fixture
async def sims() -> AsyncIterator[tuple[SimCluster, int]]:
    port, events_port = free_port(), free_port()
    config = SimConfig(model=MODEL, time_scale=20.0, jitter=0.0, kv_events_endpoint=f"tcp://*:{events_port}")
    cluster = SimCluster(config, random_loopback_block(3, port), port)
    await cluster.start()
    try:
        yield cluster, events_port
    finally:
        await cluster.stop()


async def post(url: str, path: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(timeout=30.0) as client:
        (await client.post(f"{url}{path}", json={"model": MODEL, "max_tokens": 2, **body})).raise_for_status()


def inference(rid: str, body: dict[str, Any]) -> InferenceRequest:
    return InferenceRequest(request_id=rid, headers={}, body=body, model=MODEL, objective=None, prompt="")


async def test_director_routes_to_the_replica_that_holds_the_prefix(sims: tuple[SimCluster, int]) -> None:
    cluster, events_port = sims
    ds = Datastore()
    ds.set_pool(PoolInfo("pool", selector={"app": "sim"}, target_ports=(cluster.port,)))
    ds.replace_pods([PodInfo(r.name, r.host, {"app": "sim"}) for r in cluster.replicas])
    scheduler = load_config_text(config_text(events_port), seed=3)
    plugin = scheduler.plugins["precise-prefix-cache-scorer"]
    assert isinstance(plugin, PrecisePrefixCacheScorer)
    director = EppDirector(ds, scheduler, MetricsStore(), config=DirectorConfig(seed=3))
    try:
        # the director attached the datastore: every endpoint is followed from the start
        await async_wait_until(lambda: len(plugin.subscribed()) == 3, 5.0)
        assert plugin.subscribed()[cluster.replicas[0].endpoint] == f"tcp://{cluster.replicas[0].host}:{events_port}"
        await async_wait_until(lambda: all(s.subscriber.connected for s in plugin._by_url.values()), 5.0)
        await asyncio.sleep(0.1)
        bodies = [{"prompt": f"{i} {PROMPT}"} for i in range(2)]
        bodies.append({"messages": [{"role": "system", "content": PROMPT}, {"role": "user", "content": "hi"}]})
        for replica, body in zip(cluster.replicas[::-1], bodies, strict=True):
            await post(replica.url, "/v1/chat/completions" if "messages" in body else "/v1/completions", body)
            text = tokenizer.render_chat(body["messages"]) if "messages" in body else body["prompt"]
            hashes = tokenizer.block_hashes(text, 16, MODEL)
            index = plugin.index_of(replica.endpoint)
            assert index is not None
            await async_wait_until(lambda: index.match_prefix(hashes) == len(hashes), 5.0)  # noqa: B023
            assert index.reliable
        for i, (replica, body) in enumerate(zip(cluster.replicas[::-1], bodies, strict=True)):
            decision = await director.handle_request(inference(f"r{i}", {"model": MODEL, **body}))
            assert decision.endpoint == replica.endpoint
        state = plugin.describe()[cluster.replicas[2].endpoint]
        assert state["connected"] is True and state["reliable"] is True and state["blocks"] >= 8
        # a pod that leaves the pool is no longer followed

        ds.delete_pod(cluster.replicas[0].name)
        assert cluster.replicas[0].endpoint not in plugin.subscribed() and len(plugin.subscribed()) == 2
        await plugin.aclose()  # the EPP's shutdown: nothing is followed afterwards, even on changes
        ds.upsert_pod(PodInfo(cluster.replicas[0].name, cluster.replicas[0].host, {"app": "sim"}))
        await director.handle_request(inference("after", {"model": MODEL, "prompt": PROMPT}))
        assert plugin.subscribed() == {}
    finally:
        await plugin.aclose()


def test_the_documented_config_loads() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "kv-events.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    scheduler = load_config_text(block)
    plugin = scheduler.plugins["precise-prefix-cache-scorer"]
    assert isinstance(plugin, PrecisePrefixCacheScorer)
    assert (plugin.events_port, plugin.replay_port, plugin.speculative_ttl_s) == (5557, 5558, 2.0)
