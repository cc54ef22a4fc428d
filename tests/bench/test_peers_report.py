"""The peer benchmark's numbers and outputs: summaries in model time, JSON shape, markdown, ratios."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from infergate.bench.peers.driver import TurnResult
from infergate.bench.peers.report import as_json, best_peer, markdown, write_outputs
from infergate.bench.peers.run import PeersConfig, PeersResult, RunOutcome
from infergate.bench.peers.summary import JSON_FIELDS, prefix_hit_rate, summarize, tokens_by
from infergate.bench.stats import percentile


def _ok(ttft: float, gap: float = 0.01, objective: str | None = None, sent_at: float = 0.0) -> TurnResult:
    return TurnResult(ok=True, status=200, ttft=ttft, e2e=ttft + 1.0, output_tokens=64, gaps=[gap] * 63,
                      objective=objective, sent_at=sent_at)


def test_summary_is_in_model_time_with_goodput_under_the_slo() -> None:
    results = [_ok(0.1), _ok(0.2), _ok(0.3, gap=0.03), _ok(1.0), TurnResult(ok=False, status=500)]
    s = summarize(results, wall_time=10.0, time_scale=2.0, prefix_hit=0.5, router_cpu_s=1.0)
    # model time = wall x 2: TTFTs 0.2, 0.4, 0.6, 2.0; ITLs 20, 20, 60, 20 ms
    assert s.requests == 5 and s.failed == 1 and s.shed == 0
    assert math.isclose(s.ttft_p50, 0.5) and math.isclose(s.itl_p50, 0.02)
    assert math.isclose(s.output_tokens_per_s, 4 * 64 / 20.0)
    assert math.isclose(s.goodput, 2 / 20.0)  # 0.2 s and 0.4 s pass; 0.6 s TTFT and 60 ms ITL do not
    assert math.isclose(s.goodput_fraction, 2 / 5) and math.isclose(s.router_cpu_s_per_request, 0.2)
    assert list(s.as_json()) == list(JSON_FIELDS)


def test_priority_summary_measures_critical_requests_and_counts_sheds_apart() -> None:
    results = [_ok(0.1, objective="critical"), _ok(0.9, objective="sheddable"),
               TurnResult(ok=False, status=429, objective="sheddable"),
               TurnResult(ok=False, status=503, objective="critical")]
    s = summarize(results, wall_time=10.0, time_scale=1.0, prefix_hit=math.nan, priority=True)
    assert s.shed == 1 and s.failed == 1 and s.requests == 4
    assert math.isclose(s.ttft_p90, 0.1)  # the sheddable request's 0.9 s is not measured
    assert math.isclose(s.goodput_fraction, 0.5)
    assert s.as_json()["prefix_hit"] is None  # NaN becomes null


def test_ttft_p90_after_warm_up_leaves_out_the_first_fifth_of_the_phase() -> None:
    """A closed loop's first turns are one cold burst: the p90 of all turns is the burst's, the
    figure after the warm-up is the steady state's."""
    burst = [_ok(2.0) for _ in range(3)]  # sent at 0 s: 3 of 20 turns, the p90 lands in them
    steady = []
    for i in range(17):
        turn = _ok(0.1 + i * 0.001)
        turn.sent_at = 2.0 + i * 0.5  # after the first 2 s (a fifth of 10 s of wall time)
        steady.append(turn)
    s = summarize(burst + steady, wall_time=10.0, time_scale=0.5, prefix_hit=math.nan)
    assert math.isclose(s.ttft_p90, 1.0)  # model time: 2.0 s wall x 0.5
    assert 0.05 < s.ttft_p90_steady < 0.06  # only the steady turns: 0.1-0.116 s wall x 0.5
    assert s.as_json()["ttft_p90_steady"] == s.ttft_p90_steady
    assert math.isnan(summarize(burst, wall_time=10.0, time_scale=1.0, prefix_hit=math.nan).ttft_p90_steady)


def test_closed_loop_rates_count_what_arrived_within_the_window() -> None:
    """A closed loop's turns in flight at its end finish and count in the latencies, but its
    output tokens/s and goodput count only the tokens and requests of the window, over its length."""
    early = _ok(0.1)  # sent at 0 s: first token at 0.1 s, 63 more 10 ms apart, ended at 1.1 s
    late = _ok(0.205, sent_at=9.5)  # first token at 9.705 s: events at 9.705 + 0.01 k, k <= 29 by 10 s
    after = _ok(0.5, sent_at=9.9)  # first token after the window
    results = [early, late, after]
    s = summarize(results, wall_time=12.0, time_scale=2.0, prefix_hit=math.nan, window=10.0)
    assert math.isclose(s.output_tokens_per_s, (64 + 30) / 20.0)  # 30 of late's 64 events by 10 s, in 20 model s
    # late met the SLO (TTFT 0.41 s model) but ended at 10.705 s: only early counts
    assert math.isclose(s.goodput, 1 / 20.0)
    assert s.requests == 3 and math.isclose(s.ttft_p99, percentile([0.2, 0.41, 1.0], 99))  # latencies: all three
    drained = summarize(results, wall_time=12.0, time_scale=2.0, prefix_hit=math.nan)  # no window: over the wall time
    assert math.isclose(drained.output_tokens_per_s, 3 * 64 / 24.0) and math.isclose(drained.goodput, 2 / 24.0)


def test_tokens_by_spreads_the_usage_over_the_events_and_counts_none_without_a_first_token() -> None:
    turn = TurnResult(ok=True, status=200, ttft=0.5, output_tokens=8, gaps=[0.1, 0.1, 0.1], sent_at=1.0)
    assert tokens_by(turn, 1.49) == 0.0  # first event at 1.5 s
    assert tokens_by(turn, 1.65) == 4.0  # 2 of 4 events, 2 tokens each
    assert tokens_by(turn, 5.0) == 8.0
    assert tokens_by(TurnResult(ok=False, status=500), 5.0) == 0.0


def test_prefix_hit_rate_from_the_replicas_counters() -> None:
    a = ('# TYPE vllm:prefix_cache_queries counter\nvllm:prefix_cache_queries_total{model_name="m"} 1000.0\n'
         'vllm:prefix_cache_hits_total{model_name="m"} 250.0\n')
    b = 'vllm:prefix_cache_queries_total{model_name="m"} 1000.0\nvllm:prefix_cache_hits_total{model_name="m"} 750.0\n'
    assert math.isclose(prefix_hit_rate([a, b]), 0.5)
    assert math.isnan(prefix_hit_rate([]))


def _result() -> PeersResult:
    config = PeersConfig(workloads=("shared-prefix",), routers=("infergate-default", "sglang-cache-aware",
                                                                 "vllm-router-cache-aware", "oracle"))
    runs = []
    for router, ttft in (("infergate-default", 0.2), ("sglang-cache-aware", 0.1), ("vllm-router-cache-aware", 0.4),
                         ("oracle", 0.05)):
        s = summarize([_ok(ttft, sent_at=5.0)] * 10, 10.0, 1.0, prefix_hit=0.9, machine_busy=0.5)
        runs.append(RunOutcome("shared-prefix", "open", router, s, [ttft] * 10,
                               not_found={"GET /server_info": 2} if router == "sglang-cache-aware" else {},
                               calls={"POST /v1/completions/render": 10} if router.startswith("vllm") else {}))
    runs.append(RunOutcome("shared-prefix", "closed", "infergate-default", None, error="RuntimeError: boom"))
    return PeersResult(config, runs, {"sglang-round-robin": "not installed"}, {"shared-prefix": "uniform groups"})


def test_json_shape_and_markdown() -> None:
    result = _result()
    data = as_json(result)
    assert list(data) == ["shared-prefix/open"]  # a run that failed has no numbers
    assert list(data["shared-prefix/open"]) == ["infergate-default", "sglang-cache-aware", "vllm-router-cache-aware",
                                                 "oracle"]
    assert all(list(v) == list(JSON_FIELDS) for v in data["shared-prefix/open"].values())
    json.dumps(data, allow_nan=False)
    peer = best_peer(result.runs[:4])
    assert peer is not None and peer.router == "sglang-cache-aware"
    text = markdown(result)
    assert "sglang-round-robin: not installed" in text
    row = next(line for line in text.splitlines() if line.startswith("| infergate-default |"))
    # TTFT p90 vs the best peer (0.1 s) and the oracle (0.05 s), after the warm-up vs the best peer,
    # then output tokens/s (all equal)
    assert row.rstrip().endswith("| 2.00x | 4.00x | 2.00x | 1.00x | 1.00x |")
    assert "GET /server_info" in text and "POST /v1/completions/render x10" in text
    assert "failed to run: RuntimeError: boom" in text
    assert f"; seed {result.config.seed}\n" in text  # the seed itself, not its template


def test_write_outputs(tmp_path: Path) -> None:
    paths = write_outputs(_result(), tmp_path / "peers")
    names = {p.name for p in paths}
    assert {"results.json", "results.md", "details.json"} <= names
    details = json.loads((tmp_path / "peers" / "details.json").read_text())
    assert details["skipped"] == {"sglang-round-robin": "not installed"} and len(details["runs"]) == 5
    assert json.loads((tmp_path / "peers" / "results.json").read_text())["shared-prefix/open"]["oracle"]["requests"] == 10
    assert all(p.exists() for p in paths)


def test_affinity_diagnostics() -> None:
    from infergate.bench.peers.summary import load_shares, replicas_per_group

    def served(group: int, pod: str) -> TurnResult:
        r = _ok(0.1)
        r.group, r.pod = group, pod
        return r

    results = [served(0, "sim-0"), served(0, "sim-0"), served(1, "sim-1"), served(1, "sim-0"),
               TurnResult(ok=False, status=500, pod="sim-1")]
    assert replicas_per_group(results) == 1.5
    assert load_shares(results) == {"sim-0": 0.75, "sim-1": 0.25}
    assert math.isnan(replicas_per_group([]))


async def test_run_peers_hands_the_result_so_far_to_the_checkpoint(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    # the CLI writes the report from each checkpoint: a long run that is stopped keeps what it measured
    from infergate.bench.peers import run as peers_run

    async def fake_run_one(config: PeersConfig, workload: Any, phase: str, router: str, *_: Any) -> RunOutcome:
        return RunOutcome(workload.name, phase, router, summarize([_ok(0.1)] * 3, 3.0, 1.0))

    monkeypatch.setattr(peers_run, "run_one", fake_run_one)
    seen: list[PeersResult] = []
    config = PeersConfig(workloads=("shared-prefix",), routers=("oracle", "infergate-default"), duration=2.0)
    result = await peers_run.run_peers(config, work=tmp_path, checkpoint=seen.append)
    assert [[(r.phase, r.router) for r in partial.runs] for partial in seen] == [
        [("open", "oracle")], [("open", "oracle"), ("open", "infergate-default")],
        [("open", "oracle"), ("open", "infergate-default"), ("closed", "oracle")],
        [("open", "oracle"), ("open", "infergate-default"), ("closed", "oracle"), ("closed", "infergate-default")]]
    assert seen[-1].runs == result.runs and seen[0].descriptions == {"shared-prefix": result.descriptions["shared-prefix"]}
