"""`infergate bench peers --repeats N`: medians over repeats, ratios computed per repeat (each
against that repeat's best peer and oracle) with their spread, failed repeats said, the loop order."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infergate.bench.peers import run as peers_run
from infergate.bench.peers.report import (
    as_json,
    details,
    markdown,
    per_repeat_ratios,
    plot_title,
    spread,
    write_outputs,
)
from infergate.bench.peers.run import PeersConfig, PeersResult, RunOutcome
from infergate.bench.peers.summary import JSON_FIELDS, Summary
from infergate.bench.peers.workloads import make as real_make

ROUTERS = ("infergate-default", "sglang-cache-aware", "vllm-router-cache-aware", "oracle")


def _summary(ttft_p90: float, tok_s: float = 1000.0, *, steady: float = math.nan, failed: int = 0,
             requests: int = 100, prefix_hit: float = 0.9) -> Summary:
    return Summary(ttft_p50=ttft_p90 / 2, ttft_p90=ttft_p90, ttft_p99=ttft_p90 * 2, itl_p50=0.01, e2e_p90=1.0,
                   output_tokens_per_s=tok_s, goodput=5.0, requests=requests, failed=failed, shed=0,
                   prefix_hit=prefix_hit, ttft_p90_steady=steady)


# TTFT p90 per seed. Per repeat, infergate-default against that repeat's best peer: 0.2/0.1 = 2.0,
# 0.3/0.3 = 1.0, 0.6/0.5 = 1.2 -> median 1.2. The ratio of medians would say 0.3 / min(0.5, 0.4) = 0.75.
TTFT_P90 = {
    1: {"infergate-default": 0.2, "sglang-cache-aware": 0.1, "vllm-router-cache-aware": 0.4, "oracle": 0.1},
    2: {"infergate-default": 0.3, "sglang-cache-aware": 0.5, "vllm-router-cache-aware": 0.3, "oracle": 0.15},
    3: {"infergate-default": 0.6, "sglang-cache-aware": 0.6, "vllm-router-cache-aware": 0.5, "oracle": 0.3},
}


def _result(*, fail: tuple[int, str] | None = None, failed_requests: tuple[int, str, int] | None = None) -> PeersResult:
    config = PeersConfig(workloads=("shared-prefix",), routers=ROUTERS, repeats=3, seed=1)
    runs = []
    for seed, ttfts in TTFT_P90.items():
        for router, ttft in ttfts.items():
            if fail == (seed, router):
                runs.append(RunOutcome("shared-prefix", "open", router, None, error="RuntimeError: boom", seed=seed))
                continue
            failed = failed_requests[2] if failed_requests and failed_requests[:2] == (seed, router) else 0
            runs.append(RunOutcome("shared-prefix", "open", router,
                                   _summary(ttft, tok_s=1000.0 * seed, steady=ttft / 2, failed=failed),
                                   [ttft] * 3, seed=seed))
    return PeersResult(config, runs, {}, {"shared-prefix": "uniform groups"})


def _row(text: str, router: str) -> list[str]:
    """The cells of the router's first row (the summary table comes before the per-repeat tables)."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {router} |"))
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_json_keeps_the_shape_with_medians_and_summed_counts() -> None:
    result = _result(failed_requests=(3, "sglang-cache-aware", 4))
    data = as_json(result)
    assert list(data) == ["shared-prefix/open"] and list(data["shared-prefix/open"]) == list(ROUTERS)
    ours = data["shared-prefix/open"]["infergate-default"]
    assert list(ours) == list(JSON_FIELDS)  # nothing else in the object
    assert ours["ttft_p90"] == 0.3 and ours["ttft_p50"] == 0.15 and ours["output_tokens_per_s"] == 2000.0
    assert ours["ttft_p90_steady"] == 0.15 and ours["prefix_hit"] == 0.9
    assert ours["requests"] == 300 and ours["failed"] == 0  # summed over the 3 repeats
    assert data["shared-prefix/open"]["sglang-cache-aware"]["failed"] == 4  # one repeat's failures show
    json.dumps(data, allow_nan=False)


def test_json_median_of_an_even_count_and_nan_as_null() -> None:
    config = PeersConfig(workloads=("w",), routers=("oracle",), repeats=2)
    runs = [RunOutcome("w", "closed", "oracle", _summary(0.1, prefix_hit=math.nan), seed=1),
            RunOutcome("w", "closed", "oracle", _summary(0.3, prefix_hit=math.nan), seed=2)]
    data = as_json(PeersResult(config, runs, {}, {}))["w/closed"]["oracle"]
    assert math.isclose(data["ttft_p90"], 0.2) and data["prefix_hit"] is None and data["ttft_p90_steady"] is None


def test_ratios_are_computed_per_repeat_against_that_repeats_best_peer() -> None:
    result = _result()
    by_seed = {seed: [r for r in result.runs if r.seed == seed] for seed in (1, 2, 3)}
    ratios = per_repeat_ratios(by_seed, "infergate-default", "ttft_p90")
    assert {seed: round(v, 6) for seed, v in ratios.items()} == {1: 2.0, 2: 1.0, 3: 1.2}
    assert math.isclose(spread(list(ratios.values())), 1.0)  # 2.0 / 1.0 - 1
    cells = _row(markdown(result), "infergate-default")
    # router, repeats, TTFT p90 (median), / best peer, / oracle, after warm-up, / best peer, / oracle,
    # tok/s, / best peer, / oracle, failed, shed
    assert cells[1] == "3"
    assert cells[2] == "0.300 (0.200-0.600)"
    assert cells[3] == "1.20x (1.00-2.00x, spread 100%)"  # not the ratio of medians, 0.75x
    assert cells[4] == "2.00x (2.00-2.00x, spread 0%)"  # 0.2/0.1, 0.3/0.15, 0.6/0.3
    assert cells[6] == "1.20x (1.00-2.00x, spread 100%)"  # after warm-up: the halves, same ratios
    assert cells[8] == "2000 (1000-3000)"
    assert cells[9] == "1.00x (1.00-1.00x, spread 0%)"  # every router of a repeat has the same tok/s
    assert cells[11:] == ["0", "0"]


def test_markdown_states_the_repeats_and_has_each_repeats_table_with_its_seed() -> None:
    text = markdown(_result())
    assert "; 3 repeats, seeds 1-3\n" in text
    assert "computed PER REPEAT" in text and "spread of at most 10%" in text
    assert text.index("## shared-prefix/open") < text.index("Summary over 3 repeats") < text.index(
        "### shared-prefix/open, seed 1") < text.index("### shared-prefix/open, seed 2") < text.index(
        "### shared-prefix/open, seed 3")
    assert ("Best peer per repeat, by TTFT p90: seed 1 sglang-cache-aware, seed 2 vllm-router-cache-aware, "
            "seed 3 vllm-router-cache-aware") in text
    seed_2 = text[text.index("### shared-prefix/open, seed 2"):text.index("### shared-prefix/open, seed 3")]
    row = next(line for line in seed_2.splitlines() if line.startswith("| infergate-default |"))
    assert row.rstrip().endswith("| 1.00x | 2.00x | 1.00x | 1.00x | 1.00x |")  # that repeat's own ratios
    assert "Failed or missing repeats" not in text


def test_a_repeat_in_which_a_router_failed_is_said_not_dropped() -> None:
    result = _result(fail=(2, "infergate-default"), failed_requests=(3, "infergate-default", 5))
    text = markdown(result)
    cells = _row(text, "infergate-default")
    assert cells[1] == "2 of 3"
    assert cells[2] == "0.400 (0.200-0.600; 2 of 3 repeats)"
    assert cells[3] == "1.60x (1.20-2.00x, spread 67%; 2 of 3 repeats)"  # seeds 1 and 3 only
    assert cells[11] == "5 (seed 3: 5)"
    assert "- **infergate-default**: failed requests (seed 3: 5); its medians and ratios include those repeats." in text
    assert ("- **infergate-default**: seed 2 failed to run (RuntimeError: boom): its medians and ratios are "
            "over the 2 of 3 repeats with numbers, not 3.") in text
    assert "failed to run: RuntimeError: boom" in text  # and seed 2's own table has the error
    data = as_json(result)["shared-prefix/open"]["infergate-default"]
    assert data["ttft_p90"] == 0.4 and data["requests"] == 200 and data["failed"] == 5
    runs = details(result)["runs"]
    assert [(r["seed"], r["error"]) for r in runs if r["router"] == "infergate-default"] == [
        (1, None), (2, "RuntimeError: boom"), (3, None)]


def test_a_repeat_without_a_peer_is_said() -> None:
    result = _result(fail=(3, "sglang-cache-aware"))
    result.runs = [r for r in result.runs if not (r.seed == 3 and r.router == "vllm-router-cache-aware")]
    text = markdown(result)
    assert _row(text, "infergate-default")[3] == "1.50x (1.00-2.00x, spread 100%; 2 of 3 repeats)"
    assert "no peer has numbers in seed(s) 3: the ratios against the best peer leave those repeats out" in text
    assert "- **vllm-router-cache-aware**: seed 3 not run" in text


def test_a_stopped_run_shows_the_repeats_not_run_yet() -> None:
    result = _result()
    result.runs = [r for r in result.runs if r.seed == 1]
    text = markdown(result)
    assert _row(text, "infergate-default")[3] == "2.00x (1 of 3 repeats)"
    assert "### shared-prefix/open, seed 3\n\nNot run." in text


def test_one_repeat_is_as_before() -> None:
    config = PeersConfig(workloads=("shared-prefix",), routers=ROUTERS)
    runs = [RunOutcome("shared-prefix", "open", router, _summary(ttft), seed=1)
            for router, ttft in TTFT_P90[1].items()]
    result = PeersResult(config, runs, {}, {})
    text = markdown(result)
    assert "Summary over" not in text and "###" not in text and "; seed 1\n" in text
    assert as_json(result)["shared-prefix/open"]["infergate-default"] == runs[0].summary.as_json()  # type: ignore[union-attr]


def test_write_outputs_with_repeats(tmp_path: Path) -> None:
    paths = write_outputs(_result(), tmp_path)
    saved = json.loads((tmp_path / "details.json").read_text())
    assert saved["config"]["repeats"] == 3 and [r["seed"] for r in saved["runs"]] == [1] * 4 + [2] * 4 + [3] * 4
    assert json.loads((tmp_path / "results.json").read_text())["shared-prefix/open"]["oracle"]["ttft_p90"] == 0.15
    assert all(p.exists() for p in paths)
    result = _result(fail=(3, "oracle"))
    assert plot_title(result, "shared-prefix/open", result.runs) == (
        "TTFT CDF: shared-prefix/open, 3 repeats pooled (seeds 1, 2, 3)")
    one = PeersResult(PeersConfig(workloads=("w",), routers=("oracle",)), result.runs[:1], {}, {})
    assert plot_title(one, "w/open", one.runs) == "TTFT CDF: w/open"


def test_config_refuses_repeats_out_of_range() -> None:
    for repeats in (0, 21):
        with pytest.raises(ValueError, match="repeats"):
            PeersConfig(workloads=("shared-prefix",), routers=("oracle",), repeats=repeats)
    assert PeersConfig(workloads=(), routers=(), seed=5, repeats=3).seeds == (5, 6, 7)


async def test_run_peers_loops_workload_phase_repeat_router_with_each_repeats_seed(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[str, str, int, str, int]] = []
    made: list[tuple[str, int, bool]] = []

    def recording_make(name: str, duration: float, seed: int, replicas: int, *, closed: bool) -> Any:
        made.append((name, seed, closed))
        return real_make(name, duration, seed, replicas, closed=closed)

    async def fake_run_one(config: PeersConfig, workload: Any, phase: str, router: str, *_: Any) -> RunOutcome:
        calls.append((workload.name, phase, config.seed, router, config.repeats))
        if router == "oracle" and config.seed == 8:
            raise RuntimeError("boom")
        return RunOutcome(workload.name, phase, router, _summary(0.1))  # no seed: run_peers sets it

    monkeypatch.setattr(peers_run, "run_one", fake_run_one)
    monkeypatch.setattr(peers_run, "make", recording_make)
    lines: list[str] = []
    seen: list[int] = []
    config = PeersConfig(workloads=("shared-prefix", "multi-turn"), routers=("oracle", "infergate-default"),
                         duration=2.0, seed=7, repeats=2)
    result = await peers_run.run_peers(config, lines.append, work=tmp_path,
                                       checkpoint=lambda partial: seen.append(len(partial.runs)))
    expected = [(w, p, s, r, 2) for w in ("shared-prefix", "multi-turn") for p in ("open", "closed")
                for s in (7, 8) for r in ("oracle", "infergate-default")]
    assert calls == expected
    assert made == [(w, s, p == "closed") for w in ("shared-prefix", "multi-turn") for p in ("open", "closed")
                    for s in (7, 8)]
    assert [(r.workload, r.phase, r.seed, r.router) for r in result.runs] == [c[:4] for c in expected]
    assert [r.error for r in result.runs if r.summary is None] == ["RuntimeError: boom"] * 4
    assert seen == list(range(1, 17))
    assert "shared-prefix/open seed 7: oracle (" in lines[0]
    assert any(line.startswith("multi-turn/closed seed 8: oracle FAILED") for line in lines)


async def test_run_peers_progress_without_repeats_is_as_before(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    async def fake_run_one(config: PeersConfig, workload: Any, phase: str, router: str, *_: Any) -> RunOutcome:
        return RunOutcome(workload.name, phase, router, _summary(0.1))

    monkeypatch.setattr(peers_run, "run_one", fake_run_one)
    lines: list[str] = []
    config = PeersConfig(workloads=("shared-prefix",), routers=("oracle",), duration=2.0, phases=("open",))
    result = await peers_run.run_peers(config, lines.append, work=tmp_path)
    assert lines[0].startswith("shared-prefix/open: oracle (") and "seed" not in "".join(lines)
    assert [r.seed for r in result.runs] == [1]


@pytest.mark.parametrize("value", ["0", "21"])
def test_cli_refuses_repeats_out_of_range_before_running(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from infergate.cli.bench import command

    def no_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("the run started")

    monkeypatch.setattr(peers_run, "run_peers", no_run)
    outcome = CliRunner().invoke(command, ["peers", "--routers", "oracle", "--repeats", value])
    assert outcome.exit_code == 2, outcome.output
    assert f"Invalid value for '--repeats': {value} is not in the range 1<=x<=20" in outcome.output


@pytest.mark.parametrize(("args", "repeats"), [((), 1), (("--repeats", "3"), 3)])
def test_cli_passes_repeats_to_the_run_with_one_by_default(monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...],
                                                           repeats: int) -> None:
    from infergate.cli.bench import command

    seen: list[PeersConfig] = []

    class Stop(Exception):
        pass

    def capture(config: PeersConfig, *_: Any, **__: Any) -> Any:
        seen.append(config)
        raise Stop

    monkeypatch.setattr(peers_run, "run_peers", capture)
    outcome = CliRunner().invoke(command, ["peers", "--routers", "oracle", *args])
    assert isinstance(outcome.exception, Stop), outcome.output  # the run was reached, with a valid config
    assert [c.repeats for c in seen] == [repeats]
