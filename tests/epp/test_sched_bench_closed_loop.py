"""`infergate bench scheduling --concurrency N`: a closed loop of N users against a real simulator."""

from __future__ import annotations

import itertools

from infergate.bench.scheduling import (
    BenchConfig,
    BenchResult,
    closed_loop_requests,
    markdown_report,
    run_closed_loop,
)
from infergate.bench.workload import WorkloadSpec, system_prompts
from infergate.sim import SimCluster, SimConfig
from infergate.util.net import free_port, random_loopback_block

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def test_closed_loop_requests_are_seeded_and_use_the_groups_prompts() -> None:
    spec = WorkloadSpec(groups=3, system_prompt_tokens=50, question_tokens=5, seed=7)
    first = list(itertools.islice(closed_loop_requests(spec), 20))
    again = list(itertools.islice(closed_loop_requests(spec), 20))
    assert [r.prompt for r in first] == [r.prompt for r in again]
    prompts = system_prompts(spec)
    assert all(r.prompt.startswith(prompts[r.group]) for r in first)
    assert len({r.prompt for r in first}) == 20  # every question differs
    assert {r.group for r in first} == {0, 1, 2}


async def test_closed_loop_keeps_n_users_busy_for_the_duration() -> None:
    port = free_port()
    cluster = SimCluster(SimConfig(time_scale=20.0, jitter=0.0), random_loopback_block(1, port), port)
    await cluster.start()
    try:
        url = f"{cluster.replicas[0].url}/v1/completions"
        spec = WorkloadSpec(groups=2, system_prompt_tokens=30, question_tokens=5, max_tokens=4)
        results, wall = await run_closed_loop(url, MODEL, spec, concurrency=3, duration=0.5)
    finally:
        await cluster.stop()
    assert wall >= 0.5
    assert len(results) > 3  # each user sent more than one request, one after the other
    assert all(r.ok and r.output_tokens == 4 for r in results)


def test_report_names_the_closed_loop() -> None:
    result = BenchResult(BenchConfig(concurrency=32), [])
    assert "closed loop, 32 concurrent users" in markdown_report(result)
