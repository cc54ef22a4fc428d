"""Measure how much streaming load one ``infergate sim`` process sustains (not a test).

    python -m infergate.sim.loadcheck --replicas 8 --concurrency 64 --duration 20

Starts ``infergate sim`` as a subprocess (so the load generator does not share its event
loop), opens ``replicas x concurrency`` streaming completions in a closed loop for
``--duration`` seconds, and reports: the simulator's start-up time, delivered tokens/s against
what the latency model predicts for that batch size, client-side time to first token and
inter-chunk gaps, the simulator's own ITL histogram (model time), and the CPU used by the
simulator process. Prints a JSON summary on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from infergate.util.net import free_port, random_loopback_block


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _worker(session: Any, url: str, body: dict[str, Any], stop_at: float, out: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        start = loop.time()
        last = None
        tokens_chunks = 0
        async with session.post(f"{url}/v1/completions", json=body) as response:
            if response.status != 200:
                out["errors"] += 1
                await response.read()
                continue
            async for data in response.content.iter_any():
                now = loop.time()
                n = data.count(b'"text":"')
                if not n:
                    continue
                if last is None:
                    out["ttft"].append(now - start)
                else:
                    out["gaps"].append(now - last)
                last = now
                tokens_chunks += n
        out["requests"] += 1
        out["chunks"] += tokens_chunks


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    port = free_port()
    first = random_loopback_block(args.replicas, port)[0]
    cmd = [sys.executable, "-m", "infergate", "sim", "--replicas", str(args.replicas), "--address", first,
           "--port", str(port), "--time-scale", str(args.time_scale), "--max-num-seqs", str(args.max_num_seqs)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
        startup = time.perf_counter() - t0
        endpoints = line.split()[1:]
        if not line.startswith("ready") or len(endpoints) != args.replicas:
            raise RuntimeError(f"simulator did not start: {line!r}")
        body = {"model": "meta-llama/Llama-3.1-8B-Instruct", "prompt": "word " * (args.prompt_tokens * 4 // 5),
                "max_tokens": args.output_tokens, "ignore_eos": True, "stream": True}
        out: dict[str, Any] = {"ttft": [], "gaps": [], "requests": 0, "chunks": 0, "errors": 0}
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
            loop = asyncio.get_running_loop()
            warm = loop.time() + args.warmup
            # warm up (fills the batch), then measure
            stop_at = warm + args.duration
            workers = [asyncio.create_task(_worker(session, f"http://{ep}", body, stop_at, out))
                       for ep in endpoints for _ in range(args.concurrency)]
            await asyncio.sleep(args.warmup)
            before = await _scrape(session, endpoints)
            cpu0, wall0 = _cpu_seconds(proc.pid), time.perf_counter()
            n_gaps0, req0 = len(out["gaps"]), out["requests"]
            await asyncio.sleep(args.duration)
            cpu1, wall1 = _cpu_seconds(proc.pid), time.perf_counter()
            after = await _scrape(session, endpoints)
            gaps = out["gaps"][n_gaps0:]
            requests = out["requests"] - req0
            await asyncio.gather(*workers, return_exceptions=True)
        gen = sum(after[ep]["gen"] - before[ep]["gen"] for ep in endpoints)
        itl_sum = sum(after[ep]["itl_sum"] - before[ep]["itl_sum"] for ep in endpoints)
        itl_n = sum(after[ep]["itl_n"] - before[ep]["itl_n"] for ep in endpoints)
        running = sum(after[ep]["running"] for ep in endpoints) / len(endpoints)
        from infergate.sim.config import SimConfig
        from infergate.sim.latency import StepShape, step_time

        profile = SimConfig(max_num_seqs=args.max_num_seqs).latency_profile()
        shape = StepShape()
        for _ in range(args.concurrency):
            shape.add_decode(args.prompt_tokens + args.output_tokens // 2)
        model_itl = step_time(profile, shape)
        elapsed = wall1 - wall0
        expected_tps = args.replicas * args.concurrency / model_itl * args.time_scale
        return {
            "replicas": args.replicas, "concurrency_per_replica": args.concurrency, "time_scale": args.time_scale,
            "startup_s": round(startup, 3), "measured_s": round(elapsed, 2),
            "sim_cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / elapsed, 1),
            "mean_running_per_replica_at_end": running,
            "tokens_per_s": round(gen / elapsed), "model_tokens_per_s_at_full_batch": round(expected_tps),
            "keep_up_ratio": round(gen / elapsed / expected_tps, 3),
            "model_itl_ms_formula": round(model_itl * 1000, 2),
            "sim_itl_ms_mean_model_time": round(1000 * itl_sum / itl_n, 2) if itl_n else None,
            "client_chunk_gap_ms_p50_wall": round(1000 * _pct(gaps, 0.5), 2),
            "client_chunk_gap_ms_p99_wall": round(1000 * _pct(gaps, 0.99), 2),
            "client_ttft_ms_p50_wall": round(1000 * _pct(out["ttft"], 0.5), 2),
            "requests_completed": requests, "errors": out["errors"],
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _scrape(session: Any, endpoints: list[str]) -> dict[str, dict[str, float]]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float]] = {}
    for ep in endpoints:
        async with session.get(f"http://{ep}/metrics") as response:
            text = await response.text()
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "vllm:generation_tokens_total":
                    values["gen"] = s.value
                elif s.name == "vllm:inter_token_latency_seconds_sum":
                    values["itl_sum"] = s.value
                elif s.name == "vllm:inter_token_latency_seconds_count":
                    values["itl_n"] = s.value
                elif s.name == "vllm:num_requests_running":
                    values["running"] = s.value
        out[ep] = values
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent streams per replica")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--output-tokens", type=int, default=256)
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(_run(args))
    except ImportError:
        result = asyncio.run(_run(args))
    for key, value in result.items():
        print(f"{key:40s} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
