"""The oracle: a bound for the peer benchmark, not a product feature.

A small HTTP proxy that, for each request, reads every simulator's true state through its
``POST /debug/state`` (the running batch, the waiting queue, free KV blocks, loaded adapters,
the latency profile, and how many of this prompt's tokens are already cached or being
computed there), predicts the time to first token on each replica with the simulator's own
step-time formula, and forwards the request to the replica with the lowest prediction.
Requests it has forwarded that the replica has not yet admitted (no response headers yet) are
counted as queued work on that replica, so concurrent picks see each other.

Run: ``python -m infergate.bench.peers.oracle --port P --backend http://ip:port ...``
(prints ``ready <port>`` once listening).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

CHARS_PER_TOKEN = 4  # the simulator's tokenizer


@dataclass
class Pending:
    prompt: str
    uncached_tokens: int


@dataclass
class Backend:
    url: str
    pending: list[Pending] = field(default_factory=list)


def predict_ttft(state: Mapping[str, Any], pending_tokens: int = 0, pending_cached_tokens: int = 0) -> float:
    """Predicted model seconds until the first token of the request ``state["request"]`` on the
    replica whose ``/debug/state`` is ``state``: the prefill work queued ahead of it plus its own
    uncached tokens, processed in steps of the token budget, each step costing the profile's
    step time for the batch it would run in; plus an adapter load, a wait for an adapter slot
    and a wait for KV blocks when those are short."""
    p = state["profile"]
    request = state["request"]
    bs = int(state["block_size"])
    running = state["running"]
    waiting = state["waiting"]
    cached = max(int(request["cached_tokens"]), pending_cached_tokens)
    own = max(1, int(request["prompt_tokens"]) - cached)
    ahead = (sum(int(r["prefill_remaining"]) for r in running)
             + sum(max(0, int(w["prompt_tokens"]) - int(w["cached_tokens"])) for w in waiting) + pending_tokens)
    decoding = [r for r in running if int(r["prefill_remaining"]) == 0]
    budget = max(1, int(state["max_num_batched_tokens"]) - len(decoding))
    work = ahead + own
    steps = math.ceil(work / budget)
    batch = min(int(state["max_num_seqs"]), len(running) + len(waiting) + 1)
    context = sum(int(r["computed"]) for r in decoding)
    step = p["step_base_s"] + p["per_seq_s"] * batch + p["per_context_token_s"] * context
    t = steps * step + p["per_prefill_token_s"] * work + p["attention_s"] * own * (cached + own / 2)
    remaining_decode = sorted((int(r["max_output"]) - int(r["generated"])) for r in decoding)
    lora = request.get("lora")
    if lora is not None:
        if lora not in state["loaded_loras"]:
            t += p["lora_load_s"]
        slots = state["running_loras"]
        if lora not in slots and len(slots) >= int(state["max_loras"]):
            t += (remaining_decode[0] if remaining_decode else 0) * step  # until a slot frees
    needed = -(-own // bs) + sum(-(-max(0, int(w["prompt_tokens"]) - int(w["cached_tokens"])) // bs)
                                 for w in waiting)
    if needed > int(state["free_blocks"]) and remaining_decode:
        t += remaining_decode[len(remaining_decode) // 2] * step  # until running sequences free blocks
    if len(running) >= int(state["max_num_seqs"]) and remaining_decode:
        t += remaining_decode[0] * step
    return float(t)


def common_prefix_tokens(a: str, b: str, block_size: int = 16) -> int:
    """Full blocks of tokens two prompts share from the start (the simulator's 4 chars/token)."""
    n = len(os.path.commonprefix([a, b])) // CHARS_PER_TOKEN  # noqa: RUF071 (characters are what we want)
    return n // block_size * block_size


def choose(states: Sequence[Mapping[str, Any]], pendings: Sequence[Sequence[Pending]], prompt: str,
           rng: random.Random) -> tuple[int, list[float]]:
    """Index of the replica with the lowest predicted TTFT (ties broken at random), and the predictions."""
    predictions: list[float] = []
    for state, pending in zip(states, pendings, strict=True):
        if not state.get("ready", True):
            predictions.append(math.inf)
            continue
        bs = int(state["block_size"])
        shared = max((common_prefix_tokens(prompt, p.prompt, bs) for p in pending), default=0)
        predictions.append(predict_ttft(state, sum(p.uncached_tokens for p in pending), shared))
    best = min(predictions)
    ties = [i for i, v in enumerate(predictions) if v <= best * 1.0001]
    return rng.choice(ties), predictions


class OracleProxy:
    def __init__(self, backends: Sequence[str], seed: int = 1) -> None:
        self.backends = [Backend(url.rstrip("/")) for url in backends]
        self.rng = random.Random(seed)
        self.session: aiohttp.ClientSession | None = None
        self.picks = [0] * len(self.backends)

    async def start(self, host: str, port: int) -> web.AppRunner:
        connector = aiohttp.TCPConnector(limit=0)
        self.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/completions", self._generate)
        app.router.add_post("/v1/chat/completions", self._generate)
        app.router.add_get("/oracle/picks", self._picks)
        app.router.add_route("*", "/{tail:.*}", self._passthrough)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner

    async def _state(self, backend: Backend, raw: bytes) -> dict[str, Any]:
        assert self.session is not None
        async with self.session.post(backend.url + "/debug/state", data=raw,
                                     headers={"content-type": "application/json"}) as response:
            if response.status != 200:
                return {"ready": False}
            return dict(await response.json())

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
            prompt = str(body.get("prompt") or json.dumps(body.get("messages")))
        except (ValueError, AttributeError):
            return web.json_response({"error": {"message": "invalid JSON body"}}, status=400)
        states = await asyncio.gather(*(self._state(b, raw) for b in self.backends), return_exceptions=True)
        usable: list[dict[str, Any]] = [s if isinstance(s, dict) else {"ready": False} for s in states]
        index, predictions = choose(usable, [b.pending for b in self.backends], prompt, self.rng)
        if math.isinf(predictions[index]):
            return web.json_response({"error": {"message": "no replica is ready"}}, status=503)
        backend = self.backends[index]
        self.picks[index] += 1
        chosen = usable[index]
        own = max(0, int(chosen["request"]["prompt_tokens"]) - int(chosen["request"]["cached_tokens"]))
        pending = Pending(prompt, own)
        backend.pending.append(pending)
        return await self._forward(request, backend, raw, pending)

    async def _forward(self, request: web.Request, backend: Backend, raw: bytes,
                       pending: Pending | None) -> web.StreamResponse:
        assert self.session is not None
        hop = {"host", "content-length", "transfer-encoding", "connection"}
        out_headers = {k: v for k, v in request.headers.items() if k.lower() not in hop}
        try:
            async with self.session.request(request.method, backend.url + request.path_qs, data=raw,
                                            headers=out_headers) as upstream:
                if pending is not None:
                    backend.pending.remove(pending)
                    pending = None
                response = web.StreamResponse(status=upstream.status, headers={
                    k: v for k, v in upstream.headers.items() if k.lower() not in hop})
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        finally:
            if pending is not None:
                backend.pending.remove(pending)

    async def _passthrough(self, request: web.Request) -> web.StreamResponse:
        return await self._forward(request, self.backends[0], await request.read(), None)

    async def _picks(self, request: web.Request) -> web.Response:
        return web.json_response({b.url: n for b, n in zip(self.backends, self.picks, strict=True)})


async def _main(args: argparse.Namespace) -> None:
    proxy = OracleProxy(args.backend, args.seed)
    runner = await proxy.start(args.host, args.port)
    print(f"ready {args.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        if proxy.session is not None:
            await proxy.session.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infergate.bench.peers.oracle", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", action="append", required=True, help="http://ip:port of a simulator replica")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    import contextlib
    import signal

    import uvloop

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_main(args))


if __name__ == "__main__":
    main()
