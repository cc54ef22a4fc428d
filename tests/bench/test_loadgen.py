"""The load generator against a real simulator replica: each streamed completion is timed from its SSE events."""

from __future__ import annotations

import httpx

from infergate.bench.loadgen import run_plan, stream_completion
from infergate.bench.workload import PlannedRequest
from infergate.sim import SimCluster, SimConfig
from infergate.util.net import free_port, random_loopback_block

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


async def test_a_streamed_completion_is_timed_per_event() -> None:
    port = free_port()
    cluster = SimCluster(SimConfig(time_scale=20.0, jitter=0.0), random_loopback_block(1, port),
                         port)
    await cluster.start()
    try:
        url = f"{cluster.replicas[0].url}/v1/completions"
        request = PlannedRequest(at=0.0, group=0, prompt="Explain continuous batching.", max_tokens=8)
        async with httpx.AsyncClient(timeout=30.0) as client:
            result = await stream_completion(client, url, MODEL, request)
            missing = await stream_completion(client, f"{cluster.replicas[0].url}/v1/nowhere", MODEL, request)
        (planned,), wall = await run_plan(url, MODEL, [request])
    finally:
        await cluster.stop()
    assert result.ok and result.status == 200 and result.pod == "sim-0"
    assert result.output_tokens == 8  # the final usage event's completion_tokens
    assert result.ttft is not None and result.e2e is not None and 0 < result.ttft <= result.e2e
    # one gap between consecutive text events (the simulator may flush several tokens in one event)
    assert len(result.gaps) <= 7 and all(gap >= 0 for gap in result.gaps)
    assert not missing.ok and missing.status == 404 and missing.error
    assert planned.ok and planned.output_tokens == 8 and wall > 0
