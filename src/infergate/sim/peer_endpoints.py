"""Endpoints other routers call on a real vLLM or SGLang server, and the oracle's debug view.

- ``POST /v1/completions/render`` and ``POST /v1/chat/completions/render``: vLLM's
  tokenize-and-render API (vllm-router's ``cache_aware`` posts every request there first).
  Completions answer a list of ``GenerateRequest`` objects (one per prompt), chat one object;
  ``token_ids`` are the simulator's stand-in token ids (the ones ``/tokenize`` returns).
- ``GET /model_info`` and ``GET /server_info``: SGLang's newer names of ``/get_model_info`` and
  ``/get_server_info`` (sglang-router asks them first).
- ``GET|POST /debug/state``: the engine's true state for the benchmark's oracle (bench only,
  not a vLLM API): running batch, waiting queue, free KV blocks, the latency profile and, for a
  request body given with POST, how many of its prompt tokens the cache (or a sequence already
  admitted that will store them) holds.

``register(app, replica)`` adds them to a replica's aiohttp application.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from infergate.sim import protocol, tokenizer
from infergate.sim.protocol import ApiError

if TYPE_CHECKING:
    from infergate.sim.engine import Engine, Sequence
    from infergate.sim.replica import Replica


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


async def _body(request: web.Request) -> Any:
    try:
        return await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Invalid JSON body: {exc}") from None


def token_ids(text: str) -> list[int]:
    """The simulator's stand-in token ids of ``text`` (one per 4 characters, as ``/tokenize``)."""
    width = tokenizer.CHARS_PER_TOKEN
    return [tokenizer.prompt_fingerprint([text[i : i + width]]) % 128_000 for i in range(0, len(text), width)]


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    keys = ("max_tokens", "temperature", "top_p", "ignore_eos", "min_tokens", "stop")
    return {k: body[k] for k in keys if k in body}


def _generate_request(model: str, ids: list[int], body: dict[str, Any]) -> dict[str, Any]:
    return {"request_id": "render-" + uuid.uuid4().hex, "model": model, "token_ids": ids,
            "sampling_params": _sampling(body), "stream": bool(body.get("stream", False))}


def register(app: web.Application, replica: Replica) -> None:
    """Add the peer-compatibility and debug routes for ``replica`` to ``app``."""
    endpoints = _PeerEndpoints(replica)
    app.middlewares.append(endpoints.count_not_found)
    r = app.router
    r.add_post("/v1/completions/render", endpoints.render_completions)
    r.add_post("/v1/chat/completions/render", endpoints.render_chat)
    r.add_get("/model_info", endpoints.model_info)
    r.add_get("/server_info", replica._get_server_info)  # SGLang's newer name of /get_server_info
    r.add_get("/debug/state", endpoints.debug_state)
    r.add_post("/debug/state", endpoints.debug_state)


class _PeerEndpoints:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.not_found: dict[str, int] = {}  # "METHOD /path" -> 404s answered (a peer calling what we lack)
        self.calls: dict[str, int] = {}  # "METHOD /path" -> requests (what routers ask of a replica)

    @web.middleware
    async def count_not_found(self, request: web.Request, handler: Any) -> web.StreamResponse:
        key = f"{request.method} {request.path}"
        if request.path != "/debug/state":
            self.calls[key] = self.calls.get(key, 0) + 1
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPNotFound:
            self._count(request)
            raise
        if response.status == 404 and request.match_info.route.resource is None:
            self._count(request)
        return response

    def _count(self, request: web.Request) -> None:
        key = f"{request.method} {request.path}"
        self.not_found[key] = self.not_found.get(key, 0) + 1

    async def render_completions(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        prompt = body.get("prompt")
        prompts = prompt if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt) else [prompt]
        if not all(isinstance(p, str) for p in prompts):
            raise ApiError(400, "prompt: must be a string or a list of strings", "prompt")
        model = str(body.get("model") or self.replica.config.model)
        return _json([_generate_request(model, token_ids(str(p)), body) for p in prompts])

    async def render_chat(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise ApiError(400, "messages: Field required", "messages")
        model = str(body.get("model") or self.replica.config.model)
        return _json(_generate_request(model, token_ids(tokenizer.render_chat(body["messages"])), body))

    async def model_info(self, request: web.Request) -> web.Response:
        config = self.replica.config
        return _json({"model_path": config.model, "tokenizer_path": config.model, "is_generation": True,
                      "preferred_sampling_params": None, "weight_version": "default"})

    async def debug_state(self, request: web.Request) -> web.Response:
        replica = self.replica
        state = engine_state(replica.engine)
        state.update(name=replica.name, endpoint=replica.endpoint, ready=replica.ready,
                     time_scale=replica.config.time_scale, not_found=dict(self.not_found),
                     calls=dict(self.calls))
        if request.method == "POST":
            body = await _body(request)
            chat = isinstance(body, dict) and "messages" in body
            parsed = protocol.parse_request(body, chat=chat)
            namespace = parsed.model if parsed.model in replica.lora_adapters else replica.config.model
            if parsed.prompt_ids is not None:
                hashes = tokenizer.block_hashes_of_ids(parsed.prompt_ids, replica.engine.kv.block_size, namespace)
            else:
                hashes = tokenizer.block_hashes(parsed.prompt_text or "", replica.engine.kv.block_size, namespace)
            state["request"] = {"prompt_tokens": parsed.prompt_tokens,
                                "cached_tokens": cached_prefix_tokens(replica.engine, hashes, parsed.prompt_tokens),
                                "lora": namespace if namespace != replica.config.model else None}
        return _json(state)


def _remaining_prefill(seq: Sequence) -> int:
    return max(0, seq.prompt_tokens - seq.computed) if seq.generated == 0 else 0


def engine_state(engine: Engine) -> dict[str, Any]:
    """The engine's state as the oracle needs it (JSON-ready)."""
    kv = engine.kv
    bs = kv.block_size
    waiting = []
    for seq in engine.waiting:
        hit = len(kv.lookup(seq.hashes, (seq.num_tokens - 1) // bs)) * bs if seq.computed == 0 else seq.computed
        waiting.append({"prompt_tokens": seq.num_tokens, "cached_tokens": hit, "lora": seq.lora})
    running = [{"prompt_tokens": seq.prompt_tokens, "computed": seq.computed, "generated": seq.generated,
                "max_output": seq.max_output, "prefill_remaining": _remaining_prefill(seq), "lora": seq.lora}
               for seq in engine.running]
    return {
        "running": running,
        "waiting": waiting,
        "free_blocks": kv.num_free,
        "num_blocks": kv.num_blocks,
        "block_size": bs,
        "cached_blocks": kv.num_cached,
        "max_num_seqs": engine.max_num_seqs,
        "max_num_batched_tokens": engine.max_num_batched_tokens,
        "max_loras": engine.max_loras,
        "loaded_loras": list(engine.loaded_loras),
        "running_loras": sorted(engine.running_loras),
        "profile": {k: v for k, v in dataclasses.asdict(engine.profile).items() if isinstance(v, int | float)},
    }


def cached_prefix_tokens(engine: Engine, hashes: list[int], prompt_tokens: int) -> int:
    """Tokens of a prompt with block hashes ``hashes`` that will not need computing: the longest
    prefix held by the cache, or by a queued or running sequence (which stores it before a new
    request could be admitted behind it)."""
    kv = engine.kv
    bs = kv.block_size
    limit = max(0, (prompt_tokens - 1) // bs)
    best = len(kv.lookup(hashes, limit))
    for seq in (*engine.running, *engine.waiting):
        other = seq.hashes
        n = 0
        for a, b in zip(hashes[:limit], other, strict=False):
            if a != b:
                break
            n += 1
        best = max(best, n)
    return best * bs
