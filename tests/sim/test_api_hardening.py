"""Issue 13, simulator side: no fault injection on the serving port (item 2), deeply nested and
oversized values answer 400 (items 7, 11), and sampling parameters are checked as vLLM checks
them, with vLLM's messages (item 11)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
BODY: dict[str, Any] = {"model": MODEL, "prompt": "hello", "max_tokens": 2}
CHAT: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/admin/crash"), ("POST", "/admin/restart"), ("POST", "/admin/faults"),
    ("GET", "/admin/faults"), ("GET", "/admin/state"), ("POST", "/admin/replicas/0/crash"),
])
async def test_the_serving_port_has_no_admin_api(make_cluster, http: httpx.AsyncClient, method: str,
                                                 path: str) -> None:
    cluster = await make_cluster(admin=True)
    replica = cluster.replicas[0]
    body = {"model": MODEL, "prompt": "x", "stalled": True, "error_rate": 1.0}
    response = await http.request(method, f"{replica.url}{path}", json=body)
    assert response.status_code in (404, 405), response.text
    assert replica.ready and replica.state == "ready" and replica.restarts == 0
    assert replica.faults.error_rate == 0 and not replica.faults.stalled
    assert (await http.post(f"{replica.url}/v1/completions", json=BODY)).status_code == 200


async def test_the_admin_port_is_off_by_default_and_separate(make_cluster, http: httpx.AsyncClient) -> None:
    plain = await make_cluster()
    assert plain.admin_url is None
    cluster = await make_cluster(admin=True)
    assert cluster.admin_url is not None and not cluster.admin_url.endswith(f":{cluster.port}")
    listing = await http.get(f"{cluster.admin_url}/admin/replicas")
    assert listing.status_code == 200 and listing.json()[0]["name"] == "sim-0"
    assert (await http.post(f"{cluster.admin_url}/admin/replicas/7/crash")).status_code == 404
    bad = await http.post(f"{cluster.admin_url}/admin/replicas/0/crash", json={"restart_after_s": "soon"})
    assert bad.status_code == 400 and "restart_after_s" in bad.json()["detail"]
    assert (await http.post(f"{cluster.admin_url}/admin/replicas/0/crash", content=b"{")).status_code == 400
    assert cluster.replicas[0].ready


def _nested(depth: int) -> bytes:
    return b'{"model": "' + MODEL.encode() + b'", "prompt": "x", "extra": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [2_000, 100_000])
async def test_a_deeply_nested_body_is_a_400(make_cluster, http: httpx.AsyncClient, depth: int) -> None:
    cluster = await make_cluster(allow_runtime_lora_updating=True)
    for path in ("/v1/completions", "/v1/chat/completions", "/tokenize", "/v1/load_lora_adapter"):
        response = await http.post(f"{cluster.replicas[0].url}{path}", content=_nested(depth),
                                   headers={"content-type": "application/json"})
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["type"] == "BadRequestError" and error["code"] == 400 and "nested" in error["message"]


async def test_a_huge_integer_is_a_400(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster()
    url = f"{cluster.replicas[0].url}/v1/completions"
    raw = b'{"model": "' + MODEL.encode() + b'", "prompt": "x", "max_tokens": ' + b"9" * 5_000 + b"}"
    response = await http.post(url, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "BadRequestError"
    within = await http.post(url, json={**BODY, "max_tokens": int("9" * 4_000)})  # parses; too long a completion
    assert within.status_code == 400 and "maximum context length" in within.json()["error"]["message"]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("top_p", 2, "top_p must be in (0, 1], got 2.0."),
    ("top_p", -0.1, "top_p must be in (0, 1], got -0.1."),
    ("top_p", 0, "top_p must be in (0, 1], got 0.0."),
    ("top_p", "x", "top_p: Input should be a valid number, unable to parse string as a number"),
    ("top_k", -5, "top_k must be 0 (disable), or at least 1, got -5."),
    ("top_k", 1.5, "top_k: Input should be a valid integer"),
    ("min_p", 1.5, "min_p must be in [0, 1], got 1.5."),
    ("presence_penalty", 5, "presence_penalty must be in [-2, 2], got 5.0."),
    ("frequency_penalty", -3, "frequency_penalty must be in [-2, 2], got -3.0."),
    ("repetition_penalty", 0, "repetition_penalty must be greater than zero, got 0.0."),
    ("temperature", -1, "temperature must be non-negative, got -1.0."),
    ("temperature", [1], "temperature: Input should be a valid number"),
    ("logprobs", -1, "`logprobs` must be a positive value."),
    ("stop", 5, "stop: Input should be a valid string or a list of strings"),
    ("stop", ["a", 1], "stop: Input should be a valid string or a list of strings"),
    ("seed", "x", "seed: Input should be a valid integer, unable to parse string as an integer"),
    ("seed", 2**64, "seed: Input should be less than or equal to 9223372036854775807"),
    ("max_tokens", "8", "max_tokens: Input should be a valid integer, unable to parse string as an integer"),
    ("ignore_eos", "yes", "ignore_eos: Input should be a valid boolean"),
    ("prompt", [1, 2, 128_256], "Token id 128256 is out of vocabulary"),
    ("prompt", [1, -1], "Token id -1 is out of vocabulary"),
])
async def test_sampling_parameters_vllm_refuses_are_a_400(make_cluster, http: httpx.AsyncClient, field: str,
                                                          value: Any, message: str) -> None:
    cluster = await make_cluster()
    response = await http.post(f"{cluster.replicas[0].url}/v1/completions", json={**BODY, field: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["message"], error["type"], error["code"]) == (message, "BadRequestError", 400)


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"-Infinity"])
async def test_non_finite_numbers_are_not_json(make_cluster, http: httpx.AsyncClient, raw: bytes) -> None:
    cluster = await make_cluster()
    body = b'{"model": "' + MODEL.encode() + b'", "prompt": "x", "temperature": ' + raw + b"}"
    response = await http.post(f"{cluster.replicas[0].url}/v1/completions", content=body,
                               headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Invalid JSON body:")


@pytest.mark.parametrize(("change", "message"), [
    ({"logprobs": 1}, "logprobs: Input should be a valid boolean"),
    ({"top_logprobs": -1, "logprobs": True}, "`top_logprobs` must be a positive value."),
    ({"top_logprobs": 2}, "when using `top_logprobs`, `logprobs` must be set to true."),
    ({"messages": [{"role": 1, "content": "x"}]}, "messages.0.role: Input should be a valid string"),
    ({"messages": [{"role": "user", "content": {"a": {"b": 1}}}]},
     "messages.0.content: Input should be a valid string or a list of content parts"),
])
async def test_chat_fields_vllm_refuses_are_a_400(make_cluster, http: httpx.AsyncClient,
                                                  change: dict[str, Any], message: str) -> None:
    cluster = await make_cluster()
    response = await http.post(f"{cluster.replicas[0].url}/v1/chat/completions", json={**CHAT, **change})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == message


async def test_parameters_vllm_accepts_are_served(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster()
    url = cluster.replicas[0].url
    accepted = {"top_p": 1, "top_k": -1, "min_p": 0, "presence_penalty": -2, "frequency_penalty": 2,
                "repetition_penalty": 1.1, "temperature": "0.5", "logprobs": 0, "stop": ["\n"], "seed": -1,
                "stop_token_ids": [2], "ignore_eos": False}
    assert (await http.post(f"{url}/v1/completions", json={**BODY, **accepted})).status_code == 200
    ids = await http.post(f"{url}/v1/completions", json={**BODY, "prompt": [0, 128_255]})
    assert ids.status_code == 200
    chat = {**CHAT, "logprobs": True, "top_logprobs": 3, "stop": "x",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert (await http.post(f"{url}/v1/chat/completions", json=chat)).status_code == 200


async def test_runtime_lora_updates_are_off_by_default(make_cluster, http: httpx.AsyncClient) -> None:
    """As vLLM without VLLM_ALLOW_RUNTIME_LORA_UPDATING: a client (or anything routed through a
    gateway) cannot unload the adapters a pool serves."""
    cluster = await make_cluster(lora_adapters=("food-review",))
    url = cluster.replicas[0].url
    unload = await http.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "food-review"})
    load = await http.post(f"{url}/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "/x"})
    assert (unload.status_code, load.status_code) == (404, 404)
    served = await http.post(f"{url}/v1/completions", json={**BODY, "model": "food-review"})
    assert served.status_code == 200


async def test_a_body_over_the_simulators_limit_is_a_413(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster()
    body = b'{"model": "' + MODEL.encode() + b'", "prompt": "' + b"x" * (64 * 1024 * 1024) + b'"}'
    response = await http.post(f"{cluster.replicas[0].url}/v1/completions", content=body,
                               headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text[:200]
    assert response.json()["error"]["code"] == 413
    assert (await http.post(f"{cluster.replicas[0].url}/v1/completions", json=BODY)).status_code == 200
