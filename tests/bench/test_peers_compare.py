"""`infergate bench peers-compare`: issue 16's ratios of separate runs side by side, with their spread."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from infergate.bench.peers import compare, stored
from infergate.bench.peers.floor import ttft_floor
from infergate.bench.peers.report import write_outputs
from infergate.bench.peers.run import PeersConfig, PeersResult, RunOutcome
from infergate.bench.peers.summary import Summary
from infergate.bench.peers.workloads import make
from infergate.cli.bench import command as bench_command

ROUTERS = ("infergate-default", "sglang-cache-aware", "vllm-router-cache-aware", "oracle")


def _summary(ttft_p90: float, tok_s: float = 1000.0, steady: float = math.nan, goodput: float = 5.0) -> Summary:
    return Summary(ttft_p50=ttft_p90 / 2, ttft_p90=ttft_p90, ttft_p99=ttft_p90 * 2, itl_p50=0.01, e2e_p90=1.0,
                   output_tokens_per_s=tok_s, goodput=goodput, requests=100, failed=0, shed=0, prefix_hit=0.9,
                   ttft_p90_steady=steady)


def _run(figures: dict[str, dict[str, Summary]], seed: int = 1, duration: float = 120.0,
         repeats: int = 1) -> PeersResult:
    """``figures``: "<workload>/<phase>" -> router -> summary."""
    workloads = tuple(dict.fromkeys(key.split("/")[0] for key in figures))
    config = PeersConfig(workloads=workloads, routers=ROUTERS, duration=duration, time_scale=0.25, seed=seed,
                         repeats=repeats)
    runs = [RunOutcome(key.split("/")[0], key.split("/")[1], router, summary)
            for key, by_router in figures.items() for router, summary in by_router.items()]
    return PeersResult(config, runs, {}, {w: w for w in workloads})


def _phase(subject: float, sglang: float, vllm: float, oracle: float, *, tok: tuple[float, float] = (1000, 1000),
           steady: tuple[float, float] = (math.nan, math.nan)) -> dict[str, Summary]:
    return {"infergate-default": _summary(subject, tok[0], steady[0]), "sglang-cache-aware": _summary(sglang, tok[1], steady[1]),
            "vllm-router-cache-aware": _summary(vllm, 900.0), "oracle": _summary(oracle)}


def test_each_runs_ratios_are_against_its_own_best_peer_and_the_spread_is_max_over_min() -> None:
    a = _run({"shared-prefix/open": _phase(0.30, 0.50, 0.60, 0.25),
              "multi-turn/closed": _phase(0.40, 0.50, 0.45, 0.40, tok=(1100, 1000), steady=(0.09, 0.10))})
    # run b: another best peer (vllm-router), and the subject's figures moved
    b = _run({"shared-prefix/open": _phase(0.33, 0.90, 0.60, 0.30),
              "multi-turn/closed": _phase(0.90, 0.50, 0.45, 0.30, tok=(990, 1000), steady=(0.12, 0.10))}, seed=2)
    result = compare.compare([("a", a), ("b", b)])
    rows = {(r.key, r.measure): r for r in result.rows}
    peer = rows[("shared-prefix/open", "TTFT p90 / best peer")]
    assert peer.values == pytest.approx((0.30 / 0.50, 0.33 / 0.60))  # sglang best in a, vllm-router in b
    assert peer.spread == pytest.approx(0.6 / 0.55 - 1)
    assert peer.within
    oracle = rows[("shared-prefix/open", "TTFT p90 / oracle")]
    assert oracle.values == pytest.approx((1.2, 1.1)) and oracle.spread == pytest.approx(1.2 / 1.1 - 1)
    assert oracle.within  # 9%
    assert ("shared-prefix/open", "out tok/s / best peer") not in rows  # open loop: no throughput target
    tail = rows[("multi-turn/closed", "TTFT p90 / best peer")]
    assert tail.values == pytest.approx((0.40 / 0.45, 0.90 / 0.45)) and not tail.within
    output = rows[("multi-turn/closed", "out tok/s / best peer")]
    assert output.values == pytest.approx((1.1, 0.99)) and not output.within  # 11%
    steady = rows[("multi-turn/closed", compare.STEADY)]
    assert steady.values == pytest.approx((0.9, 1.2))
    # a run whose open phase has no steady figures: the row is there, without a spread
    assert math.isnan(rows[("shared-prefix/open", compare.STEADY)].spread)
    assert result.seeds == (1, 2)

    text = compare.markdown(result)
    assert "| multi-turn/closed | TTFT p90 / best peer | 0.89x | 2.00x | **125%** |" in text
    assert "| shared-prefix/open | TTFT p90 / oracle | 1.20x | 1.10x | 9% |" in text
    assert "| shared-prefix/open | TTFT p90 after warm-up / best peer | - | - | - |" in text
    assert "- TTFT p90 / best peer: 1 of 2; widest: multi-turn/closed 125%" in text
    assert "- all: 2 of 6" in text  # open's two ratios with a spread are within 10%, none of closed's four
    data = result.as_json()
    assert data["runs"] == ["a", "b"] and data["max_spread"] == 0.10
    assert data["phases"]["shared-prefix/open"][compare.STEADY] == {"values": [None, None], "spread": None}


def test_a_phase_missing_the_subject_in_a_run_is_left_out() -> None:
    a = _run({"bursty/open": _phase(0.3, 0.5, 0.6, 0.3), "bursty/closed": _phase(0.3, 0.5, 0.6, 0.3)})
    b = _run({"bursty/open": _phase(0.3, 0.5, 0.6, 0.3)})
    b.runs.append(RunOutcome("bursty", "closed", "infergate-default", None, error="RuntimeError: Envoy exited"))
    assert {r.key for r in compare.compare([("a", a), ("b", b)]).rows} == {"bursty/open"}


def test_runs_measured_differently_or_with_repeats_are_refused() -> None:
    a = _run({"bursty/open": _phase(0.3, 0.5, 0.6, 0.3)})
    with pytest.raises(stored.StoredRunError, match="two runs at least"):
        compare.compare([("a", a)])
    with pytest.raises(stored.StoredRunError, match=r"b was not measured as a: duration 120.0 vs 60.0"):
        compare.compare([("a", a), ("b", _run({"bursty/open": _phase(0.3, 0.5, 0.6, 0.3)}, duration=60.0))])
    with pytest.raises(stored.StoredRunError, match="b: 3 repeats; compare runs of one repeat each"):
        compare.compare([("a", a), ("b", _run({"bursty/open": _phase(0.3, 0.5, 0.6, 0.3)}, repeats=3))])
    declared = dataclasses.replace(a, config=dataclasses.replace(a.config, declare_slow_speed_factor=2.0))
    with pytest.raises(stored.StoredRunError, match="declare_slow_speed_factor"):
        compare.compare([("a", a), ("b", declared)])


def test_the_command_compares_run_directories(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_outputs(_run({"lora-mix/closed": _phase(0.2, 0.4, 0.5, 0.3, tok=(1000, 1000))}), first, plots=[])
    write_outputs(_run({"lora-mix/closed": _phase(0.3, 0.4, 0.5, 0.3, tok=(1050, 1000))}, seed=5), second, plots=[])
    out = tmp_path / "cmp" / "compared.md"
    result = CliRunner().invoke(bench_command, ["peers-compare", str(first), str(second), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| lora-mix/closed | TTFT p90 / best peer | 0.50x | 0.75x | **50%** |" in result.output
    assert "| lora-mix/closed | out tok/s / best peer | 1.00x | 1.05x | 5% |" in result.output
    assert "- second: seed 5" in result.output
    assert out.read_text().startswith("# infergate-default in 2 peer benchmark runs")
    as_json = CliRunner().invoke(bench_command, ["peers-compare", str(first), str(second), "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["phases"]["lora-mix/closed"]["TTFT p90 / oracle"]["values"] == pytest.approx([0.2 / 0.3, 1.0])
    alone = CliRunner().invoke(bench_command, ["peers-compare", str(first)])
    assert alone.exit_code == 2 and "two run directories at least" in alone.output
    (tmp_path / "empty").mkdir()
    missing = CliRunner().invoke(bench_command, ["peers-compare", str(first), str(tmp_path / "empty")])
    assert missing.exit_code == 1 and "details.json: not found" in missing.output


def test_each_routers_own_ttft_p90_says_whose_figure_moved() -> None:
    """The subject's ratio to the best peer moves 3x between the runs while its own p90 stays put:
    the peers' p90 moved, and the own-figures section shows it."""
    a = _run({"heterogeneous/closed": _phase(0.130, 0.098, 0.112, 0.672)})
    b = _run({"heterogeneous/closed": _phase(0.124, 0.351, 0.626, 0.267)})
    b.runs = [r for r in b.runs if r.router != "oracle"]  # not measured in b: left out of the section
    b.runs.append(RunOutcome("heterogeneous", "closed", "oracle", None, error="RuntimeError: boom"))
    result = compare.compare([("a", a), ("b", b)])
    own = {row.measure: row for row in result.own}
    assert set(own) == {"infergate-default", "sglang-cache-aware", "vllm-router-cache-aware"}
    assert own["infergate-default"].values == (0.130, 0.124) and own["infergate-default"].within
    assert own["sglang-cache-aware"].spread == pytest.approx(0.351 / 0.098 - 1) and not own["sglang-cache-aware"].within
    text = compare.markdown(result)
    assert "## Each router's own TTFT p90" in text
    assert "| heterogeneous/closed | 0.130 / 0.124 (5%) | 0.098 / 0.351 (**258%**) | 0.112 / 0.626 (**459%**) |" in text
    assert "- infergate-default: 1 of 1" in text and "- sglang-cache-aware: 0 of 1" in text
    data = result.as_json()["own_ttft_p90"]["heterogeneous/closed"]
    assert data["infergate-default"] == {"values": [0.130, 0.124], "spread": pytest.approx(0.130 / 0.124 - 1)}


def test_the_own_p90_section_gives_each_runs_floor() -> None:
    """The floor (bench.peers.floor) beside the routers' own p90: for an open phase whose routers
    measured that traffic's request count; "-" (null in JSON) where they did not."""
    requests = make("shared-prefix", 30.0, 1, 4).requests
    same = {r: dataclasses.replace(s, requests=requests) for r, s in _phase(0.40, 0.43, 0.45, 0.43).items()}
    a = _run({"shared-prefix/open": same})
    b = _run({"shared-prefix/open": _phase(0.41, 0.44, 0.46, 0.44)})  # 100 requests: not today's traffic
    result = compare.compare([("a", a), ("b", b)])
    [floor] = result.floors
    assert floor.values[0] == pytest.approx(ttft_floor(make("shared-prefix", 30.0, 1, 4)).percentile(90))
    assert math.isnan(floor.values[1])
    text = compare.markdown(result)
    assert f"| {floor.values[0]:.3f} / - |" in text and "| floor |" in text
    assert result.as_json()["ttft_p90_floor"]["shared-prefix/open"] == [floor.values[0], None]
