"""One simulated model-server replica: an engine behind a vLLM-compatible HTTP server.

A replica listens on its own ``host:port`` (pods have their own IPs), serves the OpenAI API,
vLLM's and SGLang's probe endpoints and ``/metrics``, adds ``x-inference-pod`` /
``x-inference-port`` to every response, and can be told to misbehave (``Faults``) through the
methods below or the separate admin port (``sim.admin``; never the serving port): error rate,
added latency, stall, crash (and restart), start-up delay (readiness false while starting).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from infergate.sim import peer_endpoints, protocol, tokenizer
from infergate.sim.config import SimConfig
from infergate.sim.engine import Engine, QueueFull, SeqStatus, Sequence
from infergate.sim.kv_events import ReplicaKvEvents
from infergate.sim.metrics import render_sglang, render_vllm
from infergate.sim.protocol import ApiError

log = logging.getLogger(__name__)

SIM_VERSION = "0.11.0+infergate.sim"


@dataclass
class Faults:
    """Run-time faults of a replica (all off by default).

    error_rate: fraction of inference requests answered with ``error_status`` at once.
    added_latency_s: model seconds added before each inference request enters the queue.
    stalled: the engine stops stepping; requests are accepted and hang (health stays OK).
    """

    error_rate: float = 0.0
    error_status: int = 500
    added_latency_s: float = 0.0
    stalled: bool = False

    def updated(self, changes: dict[str, Any]) -> Faults:
        known = {f.name for f in dataclasses.fields(self)}
        errors = [f"{k}: unknown fault (known: {', '.join(sorted(known))})" for k in changes if k not in known]
        if errors:
            raise ValueError("; ".join(errors))
        new = dataclasses.replace(self, **changes)
        if not isinstance(new.error_rate, int | float) or not 0 <= new.error_rate <= 1:
            raise ValueError("error_rate: must be a number in [0, 1]")
        if not isinstance(new.error_status, int) or not 400 <= new.error_status <= 599:
            raise ValueError("error_status: must be an HTTP error status (400-599)")
        if not isinstance(new.added_latency_s, int | float) or new.added_latency_s < 0:
            raise ValueError("added_latency_s: must be a number >= 0")
        if not isinstance(new.stalled, bool):
            raise ValueError("stalled: must be a boolean")
        return new


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    return _json(protocol.error_body(status, message, param), status)


class Replica:
    """A replica; construct through ``SimCluster`` or directly, then ``await start()``."""

    def __init__(self, config: SimConfig, host: str, port: int, *, index: int = 0, name: str | None = None) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.index = index
        self.name = name or f"sim-{index}"
        self.profile = config.latency_profile()
        self.faults = Faults()
        self.lora_adapters: dict[str, str] = {a: f"/adapters/{a}" for a in config.lora_adapters}
        self.state = "stopped"  # stopped | starting | ready | crashed
        self.restarts = 0
        self.engine = self._new_engine()
        self.kv_events: ReplicaKvEvents | None = None  # KV-event publisher while running (if configured)
        self._rng = random.Random(config.seed * 1_000_003 + index)
        self._runner: web.AppRunner | None = None
        self._ready_at = 0.0
        self._active: set[asyncio.Transport] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._headers = {"x-inference-pod": self.name, "x-inference-port": str(port)}
        if config.namespace:
            self._headers["x-inference-namespace"] = config.namespace

    def _new_engine(self) -> Engine:
        return Engine(self.config, self.profile, seed=self.config.seed * 7919 + self.index + 1000 * self.restarts)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ready(self) -> bool:
        if self.state == "starting" and asyncio.get_running_loop().time() >= self._ready_at:
            self.state = "ready"
        return self.state == "ready"

    # ---- lifecycle ----------------------------------------------------------------------
    async def start(self, startup_delay_s: float | None = None) -> None:
        """Listen and start the engine; readiness is false for the (scaled) start-up delay."""
        if self._runner is not None:
            raise RuntimeError(f"replica {self.name} is already running")
        delay = self.config.startup_delay_s if startup_delay_s is None else startup_delay_s
        if self.config.kv_events_endpoint:
            self.kv_events = await ReplicaKvEvents.open(self.config, self.host, self.port, self.index)
            self.kv_events.attach(self.engine)
        self.engine.start()
        self.engine.set_stalled(self.faults.stalled)
        self._ready_at = asyncio.get_running_loop().time() + delay / self.config.time_scale
        self.state = "starting"
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5, handle_signals=False,
                               handler_cancellation=True)  # a client that goes away aborts its request
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self.engine.stop()
            await self._close_kv_events()
            self.state = "stopped"
            raise
        self._runner = runner

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self._shutdown()
        self.state = "stopped"

    async def _shutdown(self) -> None:
        await self.engine.stop()  # fails in-flight sequences: their handlers drop the connections
        await self._close_kv_events()
        for transport in list(self._active):
            transport.abort()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _close_kv_events(self) -> None:
        kv_events, self.kv_events = self.kv_events, None
        if kv_events is not None:
            await kv_events.close()

    async def crash(self, restart_after_s: float | None = None, startup_delay_s: float = 0.0) -> None:
        """Die like a killed process: connections drop, the port closes, all state is lost.

        With ``restart_after_s`` (model seconds) the replica comes back by itself, cold, and is
        not ready for a further ``startup_delay_s``.
        """
        if self.state in ("crashed", "stopped"):
            raise RuntimeError(f"replica {self.name} is not running")
        self.state = "crashed"
        await self._shutdown()
        self.state = "crashed"
        if restart_after_s is not None:
            self._spawn(self._restart_later(restart_after_s, startup_delay_s))

    async def _restart_later(self, after_s: float, startup_delay_s: float) -> None:
        await asyncio.sleep(after_s / self.config.time_scale)
        await self.restart(startup_delay_s)

    async def restart(self, startup_delay_s: float = 0.0) -> None:
        """Restart with a cold engine (empty caches, counters at zero); crashes first if running."""
        if self._runner is not None:
            await self._shutdown()
        self.restarts += 1
        self.engine = self._new_engine()
        await self.start(startup_delay_s)

    def set_faults(self, **changes: Any) -> Faults:
        self.faults = self.faults.updated(changes)
        self.engine.set_stalled(self.faults.stalled)
        return self.faults

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def describe(self) -> dict[str, Any]:
        snap = self.engine.snapshot()
        return {
            "name": self.name, "endpoint": self.endpoint, "state": self.state, "ready": self.ready,
            "restarts": self.restarts, "faults": dataclasses.asdict(self.faults),
            "engine": {"running": snap.running, "waiting": snap.waiting, "kv_cache_usage": snap.kv_usage,
                       "used_blocks": snap.used_blocks, "num_blocks": snap.num_blocks, "steps": self.engine.steps,
                       "cached_blocks": self.engine.kv.num_cached, "loaded_loras": list(self.engine.loaded_loras)},
        }

    # ---- HTTP ---------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.on_response_prepare.append(self._add_headers)
        r = app.router
        r.add_post("/v1/completions", self._completions)
        r.add_post("/v1/chat/completions", self._chat_completions)
        r.add_get("/v1/models", self._models)
        r.add_get("/health", self._health)
        r.add_get("/health/ready", self._health_ready)
        r.add_get("/ping", self._health)
        r.add_get("/metrics", self._metrics)
        r.add_get("/version", self._version)
        r.add_get("/get_load", self._get_load)
        r.add_get("/get_model_info", self._get_model_info)
        r.add_get("/get_server_info", self._get_server_info)
        r.add_route("*", "/flush_cache", self._flush_cache)
        r.add_post("/reset_prefix_cache", self._flush_cache)
        r.add_post("/tokenize", self._tokenize)
        if self.config.allow_runtime_lora_updating:  # as vLLM: off unless asked for (any client could unload)
            r.add_post("/v1/load_lora_adapter", self._load_lora)
            r.add_post("/v1/unload_lora_adapter", self._unload_lora)
        # No fault injection here: it is served on the separate admin port (``sim.admin``), so
        # nothing that can reach the serving port (a gateway, any client) can crash a replica.
        peer_endpoints.register(app, self)  # vLLM render, SGLang /model_info, the oracle's read-only /debug/state
        return app

    async def _add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(self._headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            self._active.add(transport)
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except web.HTTPNotFound:
            return _json({"detail": "Not Found"}, 404)
        except web.HTTPMethodNotAllowed:
            return _json({"detail": "Method Not Allowed"}, 405)
        except web.HTTPRequestEntityTooLarge as exc:
            return _error(413, exc.text or "Request Entity Too Large")
        except ApiError as exc:
            return _json(exc.body(), exc.status)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:  # nothing a client sends may take the server down
            log.exception("sim %s: unexpected error on %s", self.name, request.path)
            return _error(500, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if transport is not None:
                self._active.discard(transport)

    async def _read_json(self, request: web.Request) -> Any:
        return protocol.decode_body(await request.read())

    def _known_model(self, model: str) -> str | None:
        """``None`` for the base model, the adapter name for a LoRA; raises for unknown models."""
        if model == self.config.model:
            return None
        if model in self.lora_adapters:
            return model
        raise ApiError(self.config.unknown_model_status, f"The model `{model}` does not exist.", "model")

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        if not self.ready:
            return _error(503, f"replica {self.name} is starting up", None)
        forced = request.headers.get("x-return-error")
        if forced is not None and forced.isdigit() and 400 <= int(forced) <= 599:
            return _error(int(forced), f"error forced by the X-Return-Error header ({forced})")
        faults = self.faults
        if faults.error_rate and self._rng.random() < faults.error_rate:
            return _error(faults.error_status, f"injected fault on replica {self.name}")
        parsed = protocol.parse_request(await self._read_json(request), chat=chat)
        lora = self._known_model(parsed.model)
        engine = self.engine
        max_len = engine.max_model_len
        if parsed.prompt_tokens >= max_len or (
            parsed.max_tokens is not None and parsed.prompt_tokens + parsed.max_tokens > max_len
        ):
            requested = parsed.prompt_tokens + (parsed.max_tokens or 0)
            where = "messages" if chat else "prompt"
            raise ApiError(
                400,
                f"This model's maximum context length is {max_len} tokens. However, you requested "
                f"{requested} tokens ({parsed.prompt_tokens} in the {where}, {parsed.max_tokens or 0} in the "
                f"completion). Please reduce the length of the {where} or completion.",
                "max_tokens",
            )
        namespace = lora or self.config.model
        if parsed.prompt_ids is not None:
            hashes = tokenizer.block_hashes_of_ids(parsed.prompt_ids, engine.kv.block_size, namespace)
            fingerprint = tokenizer.prompt_fingerprint(str(t) for t in parsed.prompt_ids[:4096])
        else:
            text = parsed.prompt_text or ""
            hashes = tokenizer.block_hashes(text, engine.kv.block_size, namespace)
            fingerprint = tokenizer.prompt_fingerprint((text[:4096], str(len(text))))
        limit = parsed.max_tokens if parsed.max_tokens is not None else max_len - parsed.prompt_tokens
        mean = self.config.mean_output_tokens
        if parsed.ignore_eos or mean <= 0:
            output, reason = limit, "length"
        else:
            natural = max(1 + (fingerprint ^ self.config.seed) % (2 * mean), parsed.min_tokens)
            output, reason = (natural, "stop") if natural < limit else (limit, "length")
        delay = faults.added_latency_s + self.profile.request_overhead_s
        if delay > 0:
            await asyncio.sleep(delay / self.config.time_scale)
        if engine is not self.engine or not self.ready:
            raise ApiError(503, f"replica {self.name} restarted while the request was queued")
        request_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        seq = Sequence(request_id, parsed.prompt_tokens, hashes, output, reason, lora, fingerprint % 997,
                       prompt_text=parsed.prompt_text, namespace=namespace)
        try:
            engine.submit(seq)
        except QueueFull as exc:
            raise ApiError(429, str(exc)) from None
        if parsed.stream:
            return await self._stream(request, engine, seq, parsed)
        try:
            while not seq.done:
                await seq.wait(seq.generated)
        except asyncio.CancelledError:
            engine.abort(seq)
            raise
        if seq.status is not SeqStatus.FINISHED:
            if self._alive(engine):  # the engine failed the request; the server is up
                return _error(500, seq.error or "request failed")
            self._drop(request)  # a crash: the connection breaks without a response
            return web.Response(status=500)
        text_out = tokenizer.output_text(seq.text_start, 0, seq.generated)
        body = protocol.full_response(
            chat=chat, request_id=request_id, model=parsed.model, text=text_out,
            finish_reason=seq.finish_reason or reason,
            usage_body=protocol.usage(seq.prompt_tokens, seq.generated, seq.cached_tokens),
        )
        return _json(body)

    def _alive(self, engine: Engine) -> bool:
        return engine is self.engine and self.state in ("ready", "starting") and self._runner is not None

    @staticmethod
    def _drop(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()

    async def _stream(self, request: web.Request, engine: Engine, seq: Sequence,
                      parsed: protocol.ParsedRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8",
                                               "cache-control": "no-cache"})
        templates = protocol.ChunkTemplates(chat=parsed.chat, request_id=seq.request_id, model=parsed.model)
        sent = 0
        try:
            await response.prepare(request)
            if parsed.chat:
                await response.write(templates.role())
            while True:
                await seq.wait(sent)
                if seq.status is SeqStatus.FAILED or seq.status is SeqStatus.ABORTED:
                    if seq.status is SeqStatus.FAILED and self._alive(engine):
                        error = json.dumps(protocol.error_body(500, seq.error or "request failed"))
                        await response.write(f"data: {error}\n\n".encode() + protocol.DONE)
                        await response.write_eof()
                        return response
                    self._drop(request)  # a crash: the stream breaks without [DONE]
                    return response
                produced = seq.generated
                if produced > sent:
                    text = tokenizer.output_text(seq.text_start, sent, produced)
                    finish = seq.finish_reason if seq.status is SeqStatus.FINISHED else None
                    data = templates.text(text, finish)
                    sent = produced
                    if finish is not None:
                        tail = [data]
                        if parsed.include_usage:
                            tail.append(templates.usage(protocol.usage(seq.prompt_tokens, seq.generated,
                                                                       seq.cached_tokens)))
                        tail.append(protocol.DONE)
                        await response.write(b"".join(tail))
                        await response.write_eof()
                        return response
                    await response.write(data)
        except (asyncio.CancelledError, ConnectionError):
            engine.abort(seq)
            raise

    async def _models(self, request: web.Request) -> web.Response:
        created = 1_700_000_000
        base = self.config.model
        data = [{"id": base, "object": "model", "created": created, "owned_by": "vllm", "root": base,
                 "parent": None, "max_model_len": self.engine.max_model_len}]
        data += [{"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": path,
                  "parent": base, "max_model_len": self.engine.max_model_len}
                 for name, path in self.lora_adapters.items()]
        return _json({"object": "list", "data": data})

    async def _health(self, request: web.Request) -> web.Response:
        if not self.ready:
            return _error(503, f"replica {self.name} is starting up")
        return web.Response(status=200)

    async def _health_ready(self, request: web.Request) -> web.Response:
        if not self.ready:
            return _json({"status": "starting"}, 503)
        return _json({"status": "ready"})

    async def _metrics(self, request: web.Request) -> web.Response:
        render = render_sglang if self.config.metrics_flavor == "sglang" else render_vllm
        # ``name[]=...``: only those series, as prometheus_client's exposition (vLLM's, SGLang's) answers
        names = request.query.getall("name[]", None) or None
        text = render(self.engine.snapshot(), self.engine.stats, frozenset(names) if names else None)
        return web.Response(body=text.encode(), headers={"content-type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _version(self, request: web.Request) -> web.Response:
        return _json({"version": SIM_VERSION})

    async def _get_load(self, request: web.Request) -> web.Response:
        return _json({"load": len(self.engine.running) + len(self.engine.waiting)})

    async def _get_model_info(self, request: web.Request) -> web.Response:
        return _json({"model_path": self.config.model, "tokenizer_path": self.config.model,
                      "is_generation": True, "preferred_sampling_params": None, "weight_version": "default"})

    async def _get_server_info(self, request: web.Request) -> web.Response:
        engine = self.engine
        return _json({
            "model_path": self.config.model, "served_model_name": self.config.model, "dp_size": 1, "tp_size": 1,
            "max_running_requests": engine.max_num_seqs, "chunked_prefill_size": engine.max_num_batched_tokens,
            "page_size": engine.kv.block_size, "max_total_num_tokens": engine.kv.num_blocks * engine.kv.block_size,
            "context_length": engine.max_model_len, "version": SIM_VERSION,
            "internal_states": [{"num_running_reqs": len(engine.running), "num_queue_reqs": len(engine.waiting),
                                 "token_usage": engine.kv.usage}],
        })

    async def _flush_cache(self, request: web.Request) -> web.Response:
        dropped = self.engine.reset_prefix_cache()
        return web.Response(text=f"Cache flushed ({dropped} blocks).\n")

    async def _tokenize(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        if "messages" in body:
            text = tokenizer.render_chat(body["messages"]) if isinstance(body["messages"], list) else ""
        else:
            text = str(body.get("prompt", ""))
        width = tokenizer.CHARS_PER_TOKEN
        tokens = [tokenizer.prompt_fingerprint([text[i : i + width]]) % 128_000 for i in range(0, len(text), width)]
        return _json({"count": len(tokens), "max_model_len": self.engine.max_model_len, "tokens": tokens})

    async def _load_lora(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        name = body.get("lora_name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name or "," in name:
            raise ApiError(400, "lora_name: Field required", "lora_name")
        if name in self.lora_adapters:
            raise ApiError(400, f"The lora adapter '{name}' has already been loaded.", "lora_name")
        self.lora_adapters[name] = str(body.get("lora_path") or f"/adapters/{name}")
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def _unload_lora(self, request: web.Request) -> web.Response:
        body = await self._read_json(request)
        name = body.get("lora_name") if isinstance(body, dict) else None
        if not isinstance(name, str) or name not in self.lora_adapters:
            raise ApiError(404, f"The lora adapter '{name}' cannot be found.", "lora_name")
        del self.lora_adapters[name]
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")
