"""Fuzzing the simulator's request parser: the pure functions (``protocol.decode_body`` and
``protocol.parse_request``) with many inputs, and a running replica over HTTP with fewer.

Properties: the parser returns a request or raises a 4xx ``ApiError``, nothing else; the server
answers every body with a status below 500 (4xx bodies are OpenAI-style error objects), within
the hang bound, and still answers ``/health`` afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infergate.sim import protocol
from infergate.sim.cluster import SimCluster
from infergate.sim.config import SimConfig
from infergate.util.net import free_port, random_loopback_block

from ._profiles import HANG_BOUND_S, fuzz_settings

pytestmark = pytest.mark.fuzz

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
FIELDS = ("prompt", "messages", "max_tokens", "max_completion_tokens", "min_tokens", "n", "stream",
          "stream_options", "temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
          "repetition_penalty", "logprobs", "top_logprobs", "stop", "stop_token_ids", "seed", "ignore_eos", "user")

scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=16)
messages = st.lists(
    st.fixed_dictionaries({}, optional={"role": st.sampled_from(["user", "system", "assistant"]) | json_values,
                                        "content": st.text(max_size=40) | json_values
                                        | st.lists(st.fixed_dictionaries({"type": st.just("text"),
                                                                          "text": st.text(max_size=20)}),
                                                   max_size=3)}),
    max_size=3,
)
field_values = (json_values | messages | st.lists(st.integers(-5, 130_000), min_size=1, max_size=6)
                | st.integers(-3, 40) | st.floats(-3, 3) | st.text(max_size=200))
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "unknown-model"]) | json_values},
    optional={name: field_values for name in FIELDS},
)


def nested(depth: int, opener: bytes) -> bytes:
    closer = b"]" if opener == b"[" else b"}"
    inner = b"1" if opener == b"[" else b""
    if opener == b"{":
        return b'{"model": "m", "prompt": "x", "x": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"
    return b'{"model": "m", "prompt": "x", "x": ' + opener * depth + inner + closer * depth + b"}"


raw_bodies = (
    st.binary(max_size=300)
    | bodies.map(lambda b: json.dumps(b).encode())
    | st.builds(nested, st.integers(1, 5_000), st.sampled_from([b"[", b"{"]))
    | st.builds(lambda b, cut: json.dumps(b).encode()[:cut], bodies, st.integers(0, 200))  # truncated
    | st.builds(lambda digits: b'{"model": "m", "prompt": "x", "max_tokens": ' + b"7" * digits + b"}",
                st.integers(1, 6_000))
    | st.sampled_from([b"NaN", b'{"model": "m", "prompt": "x", "temperature": Infinity}', b"\xff\xfe", b""])
)


@fuzz_settings(examples=300)
@given(raw=raw_bodies, chat=st.booleans())
def test_parser_accepts_or_refuses_with_a_4xx(raw: bytes, chat: bool) -> None:
    try:
        parsed = protocol.parse_request(protocol.decode_body(raw), chat=chat)
    except protocol.ApiError as exc:
        assert 400 <= exc.status < 500, exc.message
        assert exc.body()["error"]["message"]
        return
    assert parsed.model and parsed.prompt_tokens > 0
    assert parsed.max_tokens is None or parsed.max_tokens >= 1


@pytest.fixture(scope="module")
def replica() -> Iterator[tuple[str, SimCluster, asyncio.AbstractEventLoop]]:
    """One replica serving on its own event loop in a thread (hypothesis drives it synchronously)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-sim", daemon=True)
    thread.start()
    port = free_port()
    config = SimConfig(model=MODEL, lora_adapters=("a",), time_scale=2_000.0, jitter=0.0, max_model_len=2_048,
                       mean_output_tokens=4, max_waiting_requests=64,
                       allow_runtime_lora_updating=True)
    cluster = SimCluster(config, random_loopback_block(1, port), port)
    asyncio.run_coroutine_threadsafe(cluster.start(), loop).result(30)
    try:
        yield cluster.replicas[0].url, cluster, loop
    finally:
        asyncio.run_coroutine_threadsafe(cluster.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


PATHS = ["/v1/completions", "/v1/chat/completions", "/tokenize", "/v1/load_lora_adapter", "/v1/unload_lora_adapter"]


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=HANG_BOUND_S) as http:
        yield http


@fuzz_settings(examples=150)
@given(raw=raw_bodies, path=st.sampled_from(PATHS))
def test_the_server_answers_every_body_below_500(replica: tuple[str, SimCluster, Any], client: httpx.Client,
                                                  raw: bytes, path: str) -> None:
    url, _, _ = replica
    with client.stream("POST", url + path, content=raw, headers={"content-type": "application/json"}) as response:
        body = response.read()
    assert response.status_code < 500, (response.status_code, body[:300])
    if response.status_code >= 400 and path.startswith("/v1/"):
        error = json.loads(body)
        assert error["error"]["code"] == response.status_code and error["error"]["message"]


def test_the_server_still_answers_after_the_fuzzing(replica: tuple[str, SimCluster, Any],
                                                    client: httpx.Client) -> None:
    url, cluster, _ = replica
    assert client.get(url + "/health").status_code == 200
    served = client.post(url + "/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 2})
    assert served.status_code == 200 and cluster.replicas[0].ready
