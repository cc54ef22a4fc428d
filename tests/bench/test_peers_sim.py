"""The simulator's endpoints for peer routers (vLLM render, SGLang info) and the oracle's /debug/state."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from infergate.sim import SimCluster, SimConfig
from infergate.util.net import free_port, random_loopback_block

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture
async def replica_url() -> AsyncIterator[str]:
    config = SimConfig(model=MODEL, time_scale=20.0, jitter=0.0, lora_adapters=("a1",), max_loras=2,
                       mean_output_tokens=0)
    port = free_port()
    cluster = SimCluster(config, random_loopback_block(1, port), port)
    await cluster.start()
    try:
        yield cluster.urls[0]
    finally:
        await cluster.stop()


async def test_render_model_info_and_server_info(replica_url: str) -> None:
    async with httpx.AsyncClient(base_url=replica_url, timeout=30.0) as http:
        r = await http.post("/v1/completions/render", json={"model": MODEL, "prompt": "abcdefghij", "max_tokens": 5})
        assert r.status_code == 200
        [rendered] = r.json()
        assert rendered["model"] == MODEL and len(rendered["token_ids"]) == 3  # 10 characters, 4 per token
        assert rendered["sampling_params"] == {"max_tokens": 5}
        tokenized = (await http.post("/tokenize", json={"prompt": "abcdefghij"})).json()
        assert tokenized["tokens"] == rendered["token_ids"]
        r = await http.post("/v1/chat/completions/render", json={"model": MODEL,
                                                                  "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["token_ids"]
        assert (await http.post("/v1/chat/completions/render", json={"model": MODEL})).status_code == 400
        info = (await http.get("/model_info")).json()
        assert info["model_path"] == MODEL and info["is_generation"] is True
        assert (await http.get("/server_info")).json()["page_size"] == 16


async def test_debug_state_reports_cached_prefix_and_404s(replica_url: str) -> None:
    prompt = "shared system prompt " * 100  # ~525 tokens
    async with httpx.AsyncClient(base_url=replica_url, timeout=30.0) as http:
        before = (await http.post("/debug/state", json={"model": MODEL, "prompt": prompt + "q1"})).json()
        assert before["request"] == {"prompt_tokens": -(-len(prompt + "q1") // 4), "cached_tokens": 0, "lora": None}
        assert before["running"] == [] and before["waiting"] == [] and before["free_blocks"] == before["num_blocks"]
        assert before["profile"]["per_prefill_token_s"] > 0 and before["max_loras"] == 2
        r = await http.post("/v1/completions", json={"model": MODEL, "prompt": prompt + "q1", "max_tokens": 4})
        assert r.status_code == 200
        after = (await http.post("/debug/state", json={"model": MODEL, "prompt": prompt + "q2"})).json()
        assert after["request"]["cached_tokens"] == len(prompt) // 4 // 16 * 16
        assert after["cached_blocks"] > 0
        lora = (await http.post("/debug/state", json={"model": "a1", "prompt": prompt})).json()
        assert lora["request"]["cached_tokens"] == 0 and lora["request"]["lora"] == "a1"  # adapters hash apart
        assert (await http.get("/get_nothing")).status_code == 404
        state = (await http.get("/debug/state")).json()
        assert state["not_found"] == {"GET /get_nothing": 1}
        assert state["calls"]["POST /v1/completions"] == 1 and "request" not in state


async def test_debug_state_counts_a_queued_sequence_s_prefix(replica_url: str) -> None:
    import asyncio

    prompt = "queued prompt prefix " * 100
    async with httpx.AsyncClient(base_url=replica_url, timeout=30.0) as http:
        assert (await http.post("/admin/faults", json={"stalled": True})).status_code == 200
        pending = asyncio.create_task(http.post("/v1/completions", json={"model": MODEL, "prompt": prompt + "a",
                                                                          "max_tokens": 2}))
        for _ in range(100):
            state = (await http.post("/debug/state", json={"model": MODEL, "prompt": prompt + "b"})).json()
            if state["waiting"]:
                break
            await asyncio.sleep(0.02)
        assert len(state["waiting"]) == 1 and state["waiting"][0]["cached_tokens"] == 0
        assert state["request"]["cached_tokens"] == len(prompt) // 4 // 16 * 16  # it will be computed first
        await http.post("/admin/faults", json={"stalled": False})
        assert (await pending).status_code == 200
