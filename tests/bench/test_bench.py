"""The benchmark's building blocks: workload, statistics, Envoy bootstrap (validated by real Envoy)."""

from __future__ import annotations

import json
import math
import random
import subprocess
from pathlib import Path

from infergate.bench.loadgen import RequestResult
from infergate.bench.stats import percentile, summarize
from infergate.bench.topology import Lane, PortPool, envoy_bootstrap, free_ports
from infergate.bench.workload import _WORDS, WorkloadSpec, plan, text_of_tokens


def test_plan_is_seeded_poisson_with_shared_prefixes() -> None:
    spec = WorkloadSpec(groups=4, system_prompt_tokens=200, question_tokens=10, rate=20.0, seed=5)
    first, again = plan(spec, 30.0), plan(spec, 30.0)
    assert [(p.at, p.prompt) for p in first] == [(p.at, p.prompt) for p in again]
    assert plan(WorkloadSpec(groups=4, system_prompt_tokens=200, rate=20.0, seed=6), 30.0)[0].prompt != first[0].prompt
    assert 450 < len(first) < 750  # ~600 arrivals at 20/s over 30 s
    assert all(0 <= p.at < 30.0 for p in first) and [p.at for p in first] == sorted(p.at for p in first)
    by_group: dict[int, set[str]] = {}
    for p in first:
        by_group.setdefault(p.group, set()).add(p.prompt.split("\nQuestion")[0])
    assert set(by_group) == {0, 1, 2, 3} and all(len(prefixes) == 1 for prefixes in by_group.values())
    assert len({next(iter(v)) for v in by_group.values()}) == 4
    assert all(len(next(iter(v))) >= 800 for v in by_group.values())  # ~4 characters per token


def test_texts_are_the_words_random_choice_draws_so_stored_runs_keep_their_traffic() -> None:
    """The text generator inlines ``random.choice``'s sampling for speed; a seed must still give
    the very words ``choice`` gives (and leave the generator in the same state), or every stored
    benchmark run would have been measured on other traffic than its seed now makes."""

    def by_choice(rng: random.Random, tokens: int) -> str:
        drawn: list[str] = []
        while sum(len(w) + 1 for w in drawn) < tokens * 4:
            drawn.append(rng.choice(_WORDS))
        return " ".join(drawn)

    for seed in range(20):
        for tokens in (0, 1, 7, 40, 1500):
            fast, reference = random.Random(seed), random.Random(seed)
            assert text_of_tokens(fast, tokens) == by_choice(reference, tokens), (seed, tokens)
            assert fast.random() == reference.random()
    # what the generator drew before it was inlined (git show a9c0ded:src/infergate/bench/workload.py)
    assert text_of_tokens(random.Random(3), 10) == "objective support customer prefix kubernetes"


def test_percentiles_and_summary() -> None:
    assert percentile([], 50) != percentile([], 50)  # NaN
    assert percentile([3.0], 90) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert math.isclose(percentile(list(range(11)), 90), 9.0)
    results = [RequestResult(ok=True, ttft=0.1 * i, e2e=1.0 + i, output_tokens=10, gaps=[0.01, 0.03])
               for i in range(1, 11)]
    results.append(RequestResult(ok=False, status=503))
    summary = summarize(results, wall_time=10.0)
    assert summary.requests == 11 and summary.failed == 1
    assert math.isclose(summary.ttft_p50, 0.55) and math.isclose(summary.ttft_p90, 0.91)
    assert math.isclose(summary.itl_p50, 0.02) and math.isclose(summary.output_tokens_per_s, 10.0)
    assert set(summary.as_dict()) == {"ttft_p50", "ttft_p90", "itl_p50", "e2e_p90", "output_tokens_per_s",
                                      "requests", "failed"}


def test_ports_are_distinct() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    pool = PortPool(batch=4)
    assert len({pool() for _ in range(30)}) == 30


def test_envoy_accepts_the_generated_bootstrap(envoy_bin: str, tmp_path: Path) -> None:
    lanes = [
        Lane("a", 10001, 9002, ("127.0.0.2:8000", "127.0.0.3:8000"), fail_open=True, debug_headers=True),
        Lane("b", 10002, 9003, ("127.0.0.2:8000",), request_body_mode="FULL_DUPLEX_STREAMED",
             response_body_mode="FULL_DUPLEX_STREAMED", bbr_port=9004),
    ]
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(envoy_bootstrap(lanes, 9901)))
    done = subprocess.run([envoy_bin, "--mode", "validate", "-c", str(path), "--use-dynamic-base-id"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    clusters = {c["name"] for c in envoy_bootstrap(lanes, 9901)["static_resources"]["clusters"]}
    # the gateway's cluster names (the IR keys), and the no-EPP cluster its listener-level ext_proc names
    assert clusters == {"pool/inference.networking.k8s.io/default/a", "epp/default/a-epp/9002",
                        "pool/inference.networking.k8s.io/default/b", "epp/default/b-epp/9003", "bbr-b",
                        "infergate/no-epp"}
