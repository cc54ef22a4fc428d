"""The OpenAI-compatible API, with the official openai client and plain HTTP."""

from __future__ import annotations

import json
import math

import httpx
import openai
import pytest
from httpx_sse import EventSource

from infergate.sim import tokenizer
from infergate.sim.config import SimConfig

from .support import scrape, stream_completion

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
PROMPT = "Explain how a continuous batching scheduler decides what runs in the next step."


def _client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30.0)


async def test_completions_non_streaming_usage_and_headers(make_cluster) -> None:
    cluster = await make_cluster(replicas=2)
    client = _client(cluster.replicas[1].url)
    raw = await client.completions.with_raw_response.create(
        model=MODEL, prompt=PROMPT, max_tokens=7, extra_body={"ignore_eos": True})
    completion = raw.parse()
    assert raw.headers["x-inference-pod"] == "sim-1"
    assert raw.headers["x-inference-port"] == str(cluster.port)
    assert completion.object == "text_completion"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == math.ceil(len(PROMPT) / 4)
    assert completion.usage.completion_tokens == 7
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 7
    assert tokenizer.count_tokens(completion.choices[0].text) == 7


async def test_completions_streaming_with_usage(make_cluster) -> None:
    cluster = await make_cluster()
    client = _client(cluster.replicas[0].url)
    stream = await client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=12, stream=True, stream_options={"include_usage": True},
        extra_body={"ignore_eos": True})
    texts: list[str] = []
    finish: list[str | None] = []
    usage = None
    async for chunk in stream:
        if chunk.choices:
            texts.append(chunk.choices[0].text)
            finish.append(chunk.choices[0].finish_reason)
        if chunk.usage is not None:
            usage = chunk.usage
    assert len(texts) >= 2, "tokens arrive as several chunks"
    assert finish[-1] == "length" and all(f is None for f in finish[:-1])
    assert tokenizer.count_tokens("".join(texts)) == 12
    assert usage is not None and usage.completion_tokens == 12
    assert usage.prompt_tokens == math.ceil(len(PROMPT) / 4)


async def test_chat_non_streaming_and_streaming(make_cluster) -> None:
    cluster = await make_cluster(lora_adapters=("food-review",))
    client = _client(cluster.replicas[0].url)
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": PROMPT}]
    expected_prompt = tokenizer.count_tokens(tokenizer.render_chat(messages))
    chat = await client.chat.completions.create(model="food-review", messages=messages, max_tokens=5,  # type: ignore[arg-type]
                                                extra_body={"ignore_eos": True})
    assert chat.object == "chat.completion"
    assert chat.model == "food-review"
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content and tokenizer.count_tokens(chat.choices[0].message.content) == 5
    assert chat.usage is not None and chat.usage.prompt_tokens == expected_prompt
    assert chat.usage.completion_tokens == 5

    stream = await client.chat.completions.create(
        model=MODEL, messages=messages, max_completion_tokens=9, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    roles, content, usage = [], [], None
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            delta = chunk.choices[0].delta
            if delta.role:
                roles.append(delta.role)
            if delta.content:
                content.append(delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    assert roles == ["assistant"]
    assert tokenizer.count_tokens("".join(content)) == 9
    assert usage is not None and usage.completion_tokens == 9 and usage.prompt_tokens == expected_prompt


async def test_sse_ends_with_done(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster()
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 3, "stream": True, "ignore_eos": True}
    async with http.stream("POST", f"{cluster.replicas[0].url}/v1/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [event.data async for event in EventSource(response).aiter_sse()]
    assert events[-1] == "[DONE]"
    assert all("usage" not in json.loads(e) for e in events[:-1])


async def test_natural_length_without_ignore_eos_is_deterministic(make_cluster) -> None:
    cluster = await make_cluster(mean_output_tokens=8)
    client = _client(cluster.replicas[0].url)
    first = await client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=100)
    second = await client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=100)
    assert first.choices[0].finish_reason == "stop"
    assert first.usage is not None and second.usage is not None
    assert 1 <= first.usage.completion_tokens <= 16
    assert first.usage.completion_tokens == second.usage.completion_tokens
    assert first.choices[0].text == second.choices[0].text


async def test_models_lists_base_and_adapters(make_cluster) -> None:
    cluster = await make_cluster(lora_adapters=("a", "b"))
    models = await _client(cluster.replicas[0].url).models.list()
    ids = [m.id for m in models.data]
    assert ids == [MODEL, "a", "b"]


async def test_errors_are_vllm_json(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster(max_model_len=256)
    url = cluster.replicas[0].url
    client = _client(url)
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.completions.create(model="no-such-model", prompt="x")
    assert unknown.value.status_code == 404
    assert "does not exist" in str(unknown.value)
    with pytest.raises(openai.BadRequestError) as too_long:
        await client.completions.create(model=MODEL, prompt="x" * 2000, max_tokens=10)
    assert "maximum context length is 256 tokens" in str(too_long.value)
    with pytest.raises(openai.BadRequestError):
        await client.completions.create(model=MODEL, prompt="x", max_tokens=0)

    strict = _client((await make_cluster(unknown_model_status=400)).replicas[0].url)
    with pytest.raises(openai.BadRequestError) as bad_model:
        await strict.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert bad_model.value.status_code == 400 and "does not exist" in str(bad_model.value)
    with pytest.raises(ValueError, match="unknown_model_status: must be 400 or 404"):
        SimConfig(unknown_model_status=500)

    bad_json = await http.post(f"{url}/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["type"] == "BadRequestError"
    missing = await http.post(f"{url}/v1/chat/completions", json={"model": MODEL})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == 400
    wrong_type = await http.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": "ten"})
    assert wrong_type.status_code == 400
    not_found = await http.get(f"{url}/v1/nothing-here")
    assert not_found.status_code == 404 and not_found.json() == {"detail": "Not Found"}
    assert not_found.headers["x-inference-pod"] == "sim-0"
    # the server survived all of that
    assert (await http.get(f"{url}/health")).status_code == 200


async def test_probe_endpoints(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster(pod_name="pod-a", namespace="ns1")
    url = cluster.replicas[0].url
    health = await http.get(f"{url}/health")
    assert health.status_code == 200 and health.headers["x-inference-pod"] == "pod-a"
    assert health.headers["x-inference-namespace"] == "ns1"
    assert (await http.get(f"{url}/health/ready")).status_code == 200
    assert (await http.get(f"{url}/get_load")).json() == {"load": 0}
    info = (await http.get(f"{url}/get_model_info")).json()
    assert info["model_path"] == MODEL and info["is_generation"] is True
    server = (await http.get(f"{url}/get_server_info")).json()
    assert server["max_running_requests"] == 256 and server["page_size"] == 16
    tokens = (await http.post(f"{url}/tokenize", json={"prompt": "abcdefgh"})).json()
    assert tokens["count"] == 2


async def test_dynamic_lora_load_and_unload(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster(allow_runtime_lora_updating=True)
    url = cluster.replicas[0].url
    assert (await http.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "new", "lora_path": "/x"})).status_code == 200
    ok = await http.post(f"{url}/v1/completions", json={"model": "new", "prompt": "hello", "max_tokens": 2})
    assert ok.status_code == 200
    assert (await http.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "new"})).status_code == 200
    gone = await http.post(f"{url}/v1/completions", json={"model": "new", "prompt": "hello", "max_tokens": 2})
    assert gone.status_code == 404


MALFORMED: list[object] = [
    [], None, "text", 42, {"prompt": "no model"}, {"model": MODEL}, {"model": MODEL, "prompt": ""},
    {"model": MODEL, "prompt": ["a", "b"]}, {"model": MODEL, "prompt": [[1, "x"]]}, {"model": MODEL, "prompt": {}},
    {"model": MODEL, "prompt": "x", "max_tokens": -1}, {"model": MODEL, "prompt": "x", "max_tokens": 10**30},
    {"model": MODEL, "prompt": "x", "max_tokens": True}, {"model": MODEL, "prompt": "x", "n": 3},
    {"model": MODEL, "prompt": "x", "stream": "yes"}, {"model": MODEL, "prompt": "x", "stream_options": {}},
    {"model": MODEL, "prompt": "x", "stream": True, "stream_options": []},
    {"model": MODEL, "prompt": "x", "min_tokens": 50, "max_tokens": 5},
    {"model": MODEL, "prompt": "x", "temperature": -1}, {"model": 7, "prompt": "x"},
]
MALFORMED_CHAT: list[object] = [
    {"model": MODEL, "messages": []}, {"model": MODEL, "messages": "hi"}, {"model": MODEL, "messages": [1, 2]},
    {"model": MODEL, "messages": [{"content": "no role"}]},
    {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 0},
]


async def test_malformed_requests_get_400_and_the_server_survives(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster()
    url = cluster.replicas[0].url
    for path, bodies in (("/v1/completions", MALFORMED), ("/v1/chat/completions", MALFORMED_CHAT)):
        for body in bodies:
            response = await http.post(f"{url}{path}", json=body)
            assert response.status_code == 400, (path, body, response.text)
            error = response.json()["error"]
            assert error["type"] == "BadRequestError" and error["code"] == 400 and error["message"]
    odd_chat = {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, 5]}],
                "max_tokens": 2}
    assert (await http.post(f"{url}/v1/chat/completions", json=odd_chat)).status_code == 200
    assert (await http.post(f"{url}/tokenize", json={"messages": [1, {"role": "user"}]})).status_code == 200
    assert (await http.get(f"{url}/v1/completions")).status_code == 405
    assert (await http.get(f"{url}/health")).status_code == 200


async def test_cluster_replica_names_and_lookup(http: httpx.AsyncClient) -> None:
    from infergate.sim import SimCluster, SimConfig
    from infergate.util.net import free_port, random_loopback_block

    port = free_port()
    addresses = random_loopback_block(2, port)
    with pytest.raises(ValueError, match="names"):
        SimCluster(SimConfig(), addresses, port, names=["only-one"])
    async with SimCluster(SimConfig(time_scale=20.0), addresses, port, names=["pool-a", "pool-b"]) as cluster:
        assert cluster.endpoints == [f"{a}:{port}" for a in addresses]
        assert cluster.replica("pool-b") is cluster.replicas[1] is cluster.replica(1)
        assert cluster.replica(f"{addresses[0]}:{port}") is cluster.replicas[0]
        for replica in cluster.replicas:
            response = await http.get(f"{replica.url}/health")
            assert response.headers["x-inference-pod"] == replica.name


async def test_stream_interval_groups_tokens_per_chunk(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster(stream_interval=4)
    result = await stream_completion(http, cluster.replicas[0].url,
                                     {"model": MODEL, "prompt": PROMPT, "max_tokens": 12, "ignore_eos": True})
    assert result.done and tokenizer.count_tokens(result.text) == 12
    assert result.chunks <= 3


async def test_prefix_caching_can_be_disabled(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster(enable_prefix_caching=False)
    url = cluster.replicas[0].url
    body = {"model": MODEL, "prompt": "same prompt " * 100, "max_tokens": 2}
    for _ in range(2):
        response = await http.post(f"{url}/v1/completions", json=body)
        assert response.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    metrics = await scrape(http, url)
    assert metrics["vllm:prefix_cache_hits_total"] == 0
    assert any("enable_prefix_caching=False" in key for key in metrics)
