"""``infergate sim``: run vLLM-compatible model-server simulator replicas in one process.

Contract for scripts and tests: once every replica listens, the command prints exactly one
line ``ready <ip:port> <ip:port> ...`` to stdout (flushed) and keeps serving until SIGINT or
SIGTERM, then exits 0. Errors go to stderr with a non-zero exit status.
"""

from __future__ import annotations

import click

from infergate.sim.config import DEFAULT_PROFILE, PROFILES

_OVERRIDABLE = ("step_base_s", "per_seq_s", "per_prefill_token_s", "per_context_token_s", "attention_s",
                "lora_load_s", "request_overhead_s")


def _parse_overrides(values: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        try:
            out[key.strip()] = float(raw)
        except ValueError:
            raise click.BadParameter(f"{item!r}: {raw!r} is not a number", param_hint="--set") from None
    return out


@click.command(
    "sim",
    epilog=(
        "Prints one line 'ready <ip:port>...' to stdout when all replicas listen. "
        f"Profiles: {', '.join(sorted(PROFILES))}. Profile parameters settable with --set: "
        f"{', '.join(_OVERRIDABLE)}. Faults at run time, only with --admin-port (never on the "
        "serving port): POST /admin/replicas/<index|name>/faults (JSON: error_rate, error_status, "
        "added_latency_s, stalled), .../crash ({restart_after_s, startup_delay_s}), .../restart; "
        "GET /admin/replicas. See docs/sim.md."
    ),
)
@click.option("--replicas", type=click.IntRange(1, 250), default=1, show_default=True,
              help="Number of replicas; replica i listens on --address + i.")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="IPv4 address of the first replica (loopback: 127.0.0.0/8 all work on Linux).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              help="Port every replica listens on.")
@click.option("--model", default="meta-llama/Llama-3.1-8B-Instruct", show_default=True, help="Served base model name.")
@click.option("--lora", default="", help="Comma-separated LoRA adapter names served next to the base model.")
@click.option("--max-loras", type=click.IntRange(1), default=1, show_default=True,
              help="Most distinct adapters in one batch (vLLM --max-loras).")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default=DEFAULT_PROFILE, show_default=True,
              help="Latency/capacity preset.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a profile parameter.")
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Run the model this many times faster than real time (metrics stay in model time).")
@click.option("--max-num-seqs", type=click.IntRange(1), default=None, help="Batch size cap (profile default 256).")
@click.option("--max-num-batched-tokens", type=click.IntRange(1), default=None,
              help="Token budget per step (chunked prefill; profile default 8192).")
@click.option("--num-gpu-blocks", type=click.IntRange(1), default=None, help="KV cache capacity in blocks.")
@click.option("--block-size", type=click.Choice(["8", "16", "32", "64", "128"]), default="16", show_default=True,
              help="Tokens per KV block.")
@click.option("--max-model-len", type=click.IntRange(1), default=None, help="Context length limit.")
@click.option("--no-prefix-caching", is_flag=True, help="Disable automatic prefix caching.")
@click.option("--jitter", type=click.FloatRange(0, 0.5, max_open=True), default=None,
              help="Relative std-dev of step times (profile default 0.05).")
@click.option("--mean-output-tokens", type=click.IntRange(0), default=128, show_default=True,
              help="Mean natural output length without ignore_eos (0: always max_tokens).")
@click.option("--stream-interval", type=click.IntRange(1), default=1, show_default=True,
              help="Tokens per streamed chunk at most (vLLM --stream-interval).")
@click.option("--max-waiting", type=click.IntRange(1), default=None,
              help="Bound the waiting queue; overflow gets 429 (default unbounded, like vLLM).")
@click.option("--unknown-model-status", type=click.Choice(["404", "400"]), default="404", show_default=True,
              help="Status for a model that is neither the base model nor an adapter: 404 NotFoundError "
                   "as vLLM answers, or 400 BadRequestError.")
@click.option("--allow-runtime-lora-updating", is_flag=True, envvar="VLLM_ALLOW_RUNTIME_LORA_UPDATING",
              help="Serve POST /v1/load_lora_adapter and /v1/unload_lora_adapter (vLLM: env "
                   "VLLM_ALLOW_RUNTIME_LORA_UPDATING). Off by default: any client that reaches the port, "
                   "through a gateway too, could unload an adapter.")
@click.option("--metrics-flavor", type=click.Choice(["vllm", "sglang"]), default="vllm", show_default=True,
              help="Metric names on /metrics.")
@click.option("--pod-name", envvar="POD_NAME", default=None,
              help="x-inference-pod value (env POD_NAME; '<name>-<i>' with several replicas). Default sim-<i>.")
@click.option("--namespace", envvar="POD_NAMESPACE", default=None, help="x-inference-namespace value (env POD_NAMESPACE).")
@click.option("--startup-delay", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Model seconds during which /health and /health/ready answer 503.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for jitter, output lengths and faults.")
@click.option("--kv-events-endpoint", default=None, metavar="tcp://HOST:PORT",
              help="Publish vLLM KV events (ZMQ PUB) here; off by default. tcp://*:PORT binds each replica's "
                   "own address, tcp://HOST:PORT binds HOST at PORT + replica index.")
@click.option("--kv-events-replay-endpoint", default=None, metavar="tcp://HOST:PORT",
              help="Serve KV-event replays (ZMQ ROUTER) here; same address rules.")
@click.option("--kv-events-encoding", type=click.Choice(["map", "array"]), default="map", show_default=True,
              help="KV-event msgpack form: map (vLLM since 2026-06) or array (earlier vLLM).")
@click.option("--admin-port", type=click.IntRange(1, 65535), default=None,
              help="Serve the fault-injection API (faults, crash, restart) on --admin-address:PORT. "
                   "Off by default; it is never served on the replicas' --port.")
@click.option("--admin-address", default="127.0.0.1", show_default=True,
              help="Address of the admin API; keep it off addresses a gateway or client can reach.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True)
def command(replicas: int, address: str, port: int, model: str, lora: str, max_loras: int, profile: str,
            overrides: tuple[str, ...], time_scale: float, max_num_seqs: int | None,
            max_num_batched_tokens: int | None, num_gpu_blocks: int | None, block_size: str,
            max_model_len: int | None, no_prefix_caching: bool, jitter: float | None, mean_output_tokens: int,
            stream_interval: int, max_waiting: int | None, unknown_model_status: str,
            allow_runtime_lora_updating: bool, metrics_flavor: str, pod_name: str | None,
            namespace: str | None, startup_delay: float, seed: int, kv_events_endpoint: str | None,
            kv_events_replay_endpoint: str | None, kv_events_encoding: str, admin_port: int | None,
            admin_address: str, log_level: str) -> None:
    """Run vLLM-compatible model-server simulator replicas.

    Each replica serves the OpenAI API (/v1/completions, /v1/chat/completions, /v1/models),
    /health, /health/ready, /metrics (vLLM or SGLang names), /get_load, /get_model_info,
    /get_server_info, with a calibrated continuous-batching latency model. Fault injection
    (/admin/*) is served only on --admin-port, which is off by default.

    \b
    Example (4 replicas on 127.0.1.1-4:8000, two adapters, 10x faster than real time):
      infergate sim --replicas 4 --address 127.0.1.1 --port 8000 --lora a,b --time-scale 10
    """
    import asyncio
    import ipaddress
    import logging
    import signal
    import sys

    from infergate.sim.config import SimConfig

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ipaddress.IPv4Address(address)
        if int(ipaddress.IPv4Address(address)) + replicas - 1 > int(ipaddress.IPv4Address("255.255.255.255")):
            raise ValueError("too many replicas for this address")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--address") from None
    adapters = tuple(a.strip() for a in lora.split(",") if a.strip())
    try:
        config = SimConfig(
            model=model, lora_adapters=adapters, max_loras=max_loras, profile=profile, time_scale=time_scale,
            max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens, num_gpu_blocks=num_gpu_blocks,
            block_size=int(block_size), max_model_len=max_model_len, enable_prefix_caching=not no_prefix_caching,
            jitter=jitter, mean_output_tokens=mean_output_tokens, max_waiting_requests=max_waiting,
            stream_interval=stream_interval, seed=seed, metrics_flavor=metrics_flavor,  # type: ignore[arg-type]
            pod_name=pod_name, namespace=namespace, startup_delay_s=startup_delay,
            profile_overrides=_parse_overrides(overrides), unknown_model_status=int(unknown_model_status),
            kv_events_endpoint=kv_events_endpoint, kv_events_replay_endpoint=kv_events_replay_endpoint,
            kv_events_encoding=kv_events_encoding,  # type: ignore[arg-type]
            allow_runtime_lora_updating=allow_runtime_lora_updating,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def serve() -> None:
        from infergate.sim.cluster import SimCluster, consecutive_addresses

        cluster = SimCluster(config, consecutive_addresses(address, replicas), port,
                             admin_address=admin_address, admin_port=admin_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await cluster.start()
        except OSError as exc:
            click.echo(f"infergate sim: cannot listen: {exc}", err=True)
            sys.exit(1)
        try:
            sys.stdout.write("ready " + " ".join(cluster.endpoints) + "\n")
            sys.stdout.flush()
            await stop.wait()
        finally:
            await cluster.stop()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())
