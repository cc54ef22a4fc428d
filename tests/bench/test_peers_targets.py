"""Issue 16's targets section of the peer report, and stored runs read back and merged."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from infergate.bench.peers import stored, targets
from infergate.bench.peers.report import details, markdown, write_outputs
from infergate.bench.peers.run import PeersConfig, PeersResult, RunOutcome
from infergate.bench.peers.summary import Summary
from infergate.bench.peers.workloads import GENERATORS, make
from infergate.cli.bench import command as bench_command

PEERS = ("sglang-cache-aware", "vllm-router-cache-aware")


def _summary(ttft_p90: float, tok_s: float = 1000.0, goodput: float = 5.0, failed: int = 0) -> Summary:
    return Summary(ttft_p50=ttft_p90 / 2, ttft_p90=ttft_p90, ttft_p99=ttft_p90 * 2, itl_p50=0.01, e2e_p90=1.0,
                   output_tokens_per_s=tok_s, goodput=goodput, requests=100, failed=failed, shed=0, prefix_hit=0.9)


def _runs(key: str, figures: dict[str, Summary], seed: int | None = None) -> list[RunOutcome]:
    workload, phase = key.split("/")
    return [RunOutcome(workload, phase, router, s, seed=seed) for router, s in figures.items()]


def test_a_met_target_and_a_miss_the_oracle_shares() -> None:
    runs = _runs("shared-prefix/open", {"infergate-default": _summary(0.3), "sglang-cache-aware": _summary(1.0),
                                        "vllm-router-cache-aware": _summary(0.5), "oracle": _summary(0.45)})
    phase = targets.evaluate("shared-prefix/open", {1: runs})
    vs_peer, vs_oracle = phase.check("TTFT p90 / best peer"), phase.check("TTFT p90 / oracle")
    assert vs_peer is not None and vs_oracle is not None
    assert math.isclose(vs_peer.value, 0.6) and vs_peer.met and vs_peer.why() == ""  # 0.3 / vllm-router's 0.5
    assert math.isclose(vs_oracle.value, 0.3 / 0.45) and vs_oracle.met
    assert phase.check("out tok/s / best peer") is None  # open loop: no throughput target
    assert phase.check("critical goodput / best peer") is None

    runs = _runs("bursty/open", {"infergate-default": _summary(0.95), "sglang-cache-aware": _summary(1.0),
                                 "vllm-router-cache-aware": _summary(1.2), "oracle": _summary(0.9)})
    miss = targets.evaluate("bursty/open", {1: runs}).check("TTFT p90 / best peer")
    assert miss is not None and not miss.met
    assert math.isclose(miss.miss, 0.95 / 0.7 - 1)
    assert miss.cell() == "0.95x **missed by 36%**"
    assert miss.why() == "the oracle itself is at 0.90x: it misses 0.7x too"


def test_a_miss_the_oracle_does_not_share_is_the_schedulers() -> None:
    runs = _runs("multi-turn/closed", {"infergate-default": _summary(0.9, tok_s=950), "sglang-cache-aware": _summary(
        1.0, tok_s=1000), "vllm-router-cache-aware": _summary(1.1, tok_s=900), "oracle": _summary(0.5, tok_s=1100)})
    phase = targets.evaluate("multi-turn/closed", {1: runs})
    ttft, output = phase.check("TTFT p90 / best peer"), phase.check("out tok/s / best peer")
    assert ttft is not None and ttft.why() == "the oracle reaches 0.50x: this is the scheduler's to win"
    assert output is not None and not output.met and math.isclose(output.value, 0.95)  # vs the best by tok/s
    assert output.cell() == "0.95x **missed by 5%**"
    assert output.why() == "the oracle reaches 1.10x: this is the scheduler's to win"


def test_a_ratio_that_rounds_to_the_target_shows_a_third_decimal() -> None:
    runs = _runs("bursty/closed", {"infergate-default": _summary(1.0, tok_s=990), "sglang-cache-aware": _summary(
        1.0, tok_s=1000), "oracle": _summary(1.0, tok_s=998)})
    output = targets.evaluate("bursty/closed", {1: runs}).check("out tok/s / best peer")
    assert output is not None and output.cell() == "0.99x **missed by 1%**"
    close = targets.evaluate("bursty/closed", {1: _runs("bursty/closed", {
        "infergate-default": _summary(1.0, tok_s=997), "sglang-cache-aware": _summary(1.0, tok_s=1000)})})
    check = close.check("out tok/s / best peer")
    assert check is not None and check.cell() == "0.997x **missed by 0.3%**"  # not "missed by 0%"
    assert output.why() == "the oracle itself is at 0.998x: it misses 1x too"  # not "1.00x"


def test_a_miss_whose_repeats_straddle_the_target_says_so() -> None:
    """Three repeats of a saturated closed loop: two just short of the best peer's output, one past
    it. The median misses; the why says whether it is met depends on the seed. Repeats all on one side say
    nothing of it."""
    def repeat(seed: int, tok_s: float, peer: float) -> list[RunOutcome]:
        return _runs("long-context/closed", {"infergate-default": _summary(2.8, tok_s=tok_s),
                                             "sglang-cache-aware": _summary(3.0, tok_s=peer)}, seed=seed)

    straddling = targets.evaluate("long-context/closed", {1: repeat(1, 990, 1000), 2: repeat(2, 1010, 1000),
                                                          3: repeat(3, 996, 1000)}).check("out tok/s / best peer")
    assert straddling is not None and not straddling.met and straddling.straddles
    assert straddling.why() == "the repeats straddle 1x (0.990-1.010x): met or missed depending on the seed"
    short = targets.evaluate("long-context/closed", {1: repeat(1, 990, 1000), 2: repeat(2, 980, 1000)}).check(
        "out tok/s / best peer")
    assert short is not None and not short.met and not short.straddles and short.why() == ""
    single = targets.evaluate("long-context/closed", {1: repeat(1, 990, 1000)}).check("out tok/s / best peer")
    assert single is not None and not single.straddles  # one run says nothing of the seed's effect
    phase = targets.evaluate("long-context/closed", {1: repeat(1, 990, 1000), 2: repeat(2, 1010, 1000),
                                                     3: repeat(3, 996, 1000)})
    section = "\n".join(targets.markdown([phase], repeats=3))
    assert "\"why\" says the repeats straddle it" in section and "the repeats straddle 1x (0.990-1.010x)" in section
    assert "straddle" not in "\n".join(targets.markdown([targets.evaluate("long-context/closed",
                                                                         {1: repeat(1, 990, 1000)})], repeats=1))


def test_an_open_loops_floor_says_when_no_router_can_meet_the_target() -> None:
    """The floor (bench.peers.floor) under any router's TTFT p90: past the target, the miss is out of
    every router's reach; below it, the why gives it beside the oracle's."""
    runs = _runs("shared-prefix/open", {"infergate-default": _summary(0.40), "sglang-cache-aware": _summary(0.43),
                                        "vllm-router-cache-aware": _summary(0.46), "oracle": _summary(0.43)})
    phase = targets.evaluate("shared-prefix/open", {1: runs}, ttft_p90_floors={1: 0.31})
    vs_peer, vs_oracle = phase.check("TTFT p90 / best peer"), phase.check("TTFT p90 / oracle")
    assert vs_peer is not None and vs_oracle is not None
    assert len(vs_peer.floor_ratios) == 1 and math.isclose(vs_peer.floor_ratios[0], 0.31 / 0.43) and vs_peer.out_of_reach
    assert vs_peer.why() == "out of every router's reach: the floor under any router's figure on this traffic is at 0.72x"
    assert vs_oracle.met and not vs_oracle.out_of_reach and vs_oracle.why() == ""
    reachable = targets.evaluate("shared-prefix/open", {1: runs}, ttft_p90_floors={1: 0.2}).check("TTFT p90 / best peer")
    assert reachable is not None and not reachable.out_of_reach
    assert reachable.why() == "the oracle itself is at 1.00x: it misses 0.7x too; the floor is at 0.47x"
    tally = targets.markdown([phase], repeats=1)
    assert any("`infergate.bench.peers.floor`). Where the floor is past the target, no router can meet it." in line
               for line in tally)  # the section says what the floor is
    assert ("- TTFT p90 / best peer: met on 0 of 1; of the 1 missed, the oracle misses 1 too, and 1 is out of every "
            "router's reach (the floor)") in tally
    closed = targets.evaluate("shared-prefix/closed", {1: _runs("shared-prefix/closed", {
        "infergate-default": _summary(0.4), "sglang-cache-aware": _summary(0.43)})})
    check = closed.check("TTFT p90 / best peer")
    assert check is not None and check.floor_ratios == () and check.why() == ""  # no oracle, no floor: nothing to say


def test_critical_goodput_on_the_priority_workload_and_failed_requests() -> None:
    runs = _runs("priority-mix/closed", {
        "infergate-default": _summary(0.2, goodput=4.0, failed=2), "sglang-cache-aware": _summary(1.0, goodput=2.0),
        "vllm-router-cache-aware": _summary(1.0, goodput=2.5), "oracle": _summary(0.2, goodput=3.0)})
    phase = targets.evaluate("priority-mix/closed", {1: runs})
    goodput = phase.check("critical goodput / best peer")
    assert goodput is not None and math.isclose(goodput.value, 4.0 / 2.5) and goodput.met
    assert phase.failed == 2
    lines = targets.markdown([phase], repeats=1)
    row = next(line for line in lines if line.startswith("| priority-mix/closed |"))
    assert "1.60x met" in row and "| **2** |" in row
    assert "- failed requests: priority-mix/closed 2" in lines


def test_the_priority_workloads_are_those_with_objectives() -> None:
    with_objectives = {name for name in GENERATORS if make(name, 5.0).objectives}
    assert with_objectives == set(targets.CRITICAL_WORKLOADS)


def test_repeats_give_the_median_ratio_and_its_spread() -> None:
    repeats = {}
    for seed, ours in ((1, 0.3), (2, 0.5), (3, 0.35)):  # against a peer at 1.0: 0.3, 0.5, 0.35
        repeats[seed] = (_runs("shared-prefix/closed", {"infergate-default": _summary(ours), "sglang-cache-aware":
                                                      _summary(1.0), "oracle": _summary(0.4)}, seed=seed))
    phase = targets.evaluate("shared-prefix/closed", repeats)
    check = phase.check("TTFT p90 / best peer")
    assert check is not None and check.ratios == (0.3, 0.5, 0.35)
    assert math.isclose(check.value, 0.35) and math.isclose(check.spread, 0.5 / 0.3 - 1)
    assert check.cell() == "0.35x (0.30-0.50x) met"
    lines = targets.markdown([phase], repeats=3)
    spread_line = next(line for line in lines if line.startswith("- spread"))
    # TTFT / peer 67%, TTFT / oracle 67%, tok/s / peer 0%: one of three within 10%
    assert "within 10%: 1 of 3" in spread_line and "shared-prefix/closed TTFT p90 / best peer 67%" in spread_line


def test_the_report_gives_an_open_loops_floor_for_the_traffic_it_ran() -> None:
    """The report computes the floor from the run's workload, duration x time scale, seed and replicas,
    only where the routers measured that traffic's request count."""
    requests = make("shared-prefix", 30.0, 1, 4).requests
    figures = {"infergate-default": _summary(0.40), "sglang-cache-aware": _summary(0.43), "oracle": _summary(0.43)}
    runs = _runs("shared-prefix/open", {k: dataclasses.replace(v, requests=requests) for k, v in figures.items()})
    config = PeersConfig(workloads=("shared-prefix",), routers=tuple(figures), duration=120.0, time_scale=0.25)
    text = markdown(PeersResult(config, runs, {}, {}))
    assert re.search(r"Floor under any router's TTFT p90 on this traffic: 0\.3\d\d s", text)
    assert "out of every router's reach" in text
    other = markdown(PeersResult(config, _runs("shared-prefix/open", figures), {}, {}))  # 100 requests: other traffic
    assert "Floor under" not in other and "out of every router's reach" not in other


def test_the_report_gives_a_closed_loops_floor_over_the_counts_served() -> None:
    """long-context/closed: a fifth of the requests are unique 16k-token documents, whatever their
    arrival; the floor is past 0.7x of a best peer at 2.9 s."""
    counts = {"infergate-default": 131, "sglang-cache-aware": 131, "vllm-router-cache-aware": 132, "oracle": 133}
    runs = _runs("long-context/closed", {k: dataclasses.replace(_summary(2.9), requests=n) for k, n in counts.items()})
    config = PeersConfig(workloads=("long-context",), routers=tuple(counts), duration=120.0, time_scale=0.25)
    text = markdown(PeersResult(config, runs, {}, {}))
    assert re.search(r"Floor under any router's TTFT p90 on this traffic: 2\.\d{3} s \(`infergate.bench.peers.floor`: "
                     r"each request's least time to first token, from the first wave", text)
    assert "out of every router's reach" in text
    row = next(line for line in text.splitlines() if line.startswith("| long-context/closed |"))
    assert "TTFT p90 / best peer: out of every router's reach" in row


def test_the_report_has_the_section_only_when_infergate_default_ran() -> None:
    runs = _runs("shared-prefix/open", {"infergate-default": _summary(0.3), "sglang-cache-aware": _summary(1.0),
                                        "oracle": _summary(0.3)})
    config = PeersConfig(workloads=("shared-prefix",), routers=("infergate-default", "sglang-cache-aware", "oracle"))
    text = markdown(PeersResult(config, runs, {}, {}))
    assert "## Issue 16's targets for infergate-default" in text
    assert text.index("Issue 16's targets") < text.index("## shared-prefix/open")
    assert "- TTFT p90 / best peer: met on 1 of 1" in text
    without = markdown(PeersResult(config, [r for r in runs if r.router != "infergate-default"], {}, {}))
    assert "Issue 16's targets" not in without


def _stream(workload: str, scale: float, seed: int = 1, duration: float = 120.0) -> PeersResult:
    config = PeersConfig(workloads=(workload,), routers=("infergate-default", "sglang-cache-aware", "oracle"),
                         duration=duration, time_scale=0.25, seed=seed, epp_args=("--no-flow-control",))
    runs = []
    for phase in ("open", "closed"):
        runs += _runs(f"{workload}/{phase}", {"infergate-default": _summary(0.2 * scale),
                                              "sglang-cache-aware": _summary(0.4 * scale), "oracle": _summary(0.25)})
    runs.append(RunOutcome(workload, "open", "vllm-router-cache-aware", None, error="RuntimeError: boom"))
    return PeersResult(config, runs, {"envoy-round-robin": "not asked"}, {workload: f"{workload} traffic"})


def test_a_stored_run_reads_back_to_the_same_report() -> None:
    result = _stream("shared-prefix", 1.0)
    back = stored.from_details(json.loads(json.dumps(details(result))))
    assert back.config == result.config
    assert markdown(back) == markdown(result)


def test_streams_merge_into_one_report_and_different_measurements_do_not() -> None:
    merged = stored.merge([_stream("shared-prefix", 1.0), _stream("bursty", 2.0)])
    assert merged.config.workloads == ("shared-prefix", "bursty")
    assert len(merged.runs) == 14 and set(merged.descriptions) == {"shared-prefix", "bursty"}
    text = markdown(merged)
    assert "## shared-prefix/open" in text and "## bursty/closed" in text
    assert text.count("0.50x met") == 4  # each phase of both streams: 0.2s / 0.4s
    # a run that failed to run (the peer did not start) is replaced by another stream's run of it
    failed = _stream("heterogeneous", 1.0)  # vllm-router failed to run in its open phase
    again = _stream("heterogeneous", 1.0)
    again.runs = [RunOutcome("heterogeneous", "open", "vllm-router-cache-aware", _summary(0.3))]
    replaced = stored.merge([failed, again])
    [vllm] = [r for r in replaced.runs if r.router == "vllm-router-cache-aware"]
    assert vllm.summary is not None and vllm.error is None and len(replaced.runs) == 7
    closed_only = _stream("lora-mix", 1.0)
    closed_only.config = dataclasses.replace(closed_only.config, phases=("closed",))
    closed_only.runs = [r for r in closed_only.runs if r.phase == "closed"]
    assert stored.merge([closed_only, _stream("bursty", 2.0)]).config.phases == ("open", "closed")  # a phase split
    with pytest.raises(stored.StoredRunError, match=re.escape("duration 120.0 vs 60.0")):
        stored.merge([_stream("shared-prefix", 1.0), _stream("bursty", 1.0, duration=60.0)])
    with pytest.raises(stored.StoredRunError, match=re.escape("shared-prefix/open infergate-default (seed 1) is in more than")):
        stored.merge([_stream("shared-prefix", 1.0), _stream("shared-prefix", 1.0)])


def test_a_run_stored_before_the_closed_loop_window_reads_back_as_rated_until_drained() -> None:
    """details.json written before closed loops were rated within their window has no
    closed_loop_rates: it reads back as the old method, says so, and neither merges nor compares
    with a run of the new one."""
    new = _stream("shared-prefix", 1.0)
    assert new.config.closed_loop_rates == "window"
    assert "count what arrived within the phase's 120 s" in markdown(new)
    data = json.loads(json.dumps(details(_stream("bursty", 1.0))))
    del data["config"]["closed_loop_rates"]
    old = stored.from_details(data)
    assert old.config.closed_loop_rates == "until-drained"
    assert "rated over the time until the phase's last turn ended" in markdown(old)
    with pytest.raises(stored.StoredRunError, match=re.escape("closed_loop_rates 'window' vs 'until-drained'")):
        stored.merge([new, old])
    with pytest.raises(ValueError, match="closed_loop_rates: 'later' is not one of window, until-drained"):
        dataclasses.replace(new.config, closed_loop_rates="later")


def test_a_file_that_is_not_a_details_json_is_named_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "details.json").write_text(json.dumps({"config": {"workloads": []}}))
    with pytest.raises(stored.StoredRunError, match=re.escape("details.json: not a peer benchmark's details.json")):
        stored.load(tmp_path)
    with pytest.raises(stored.StoredRunError, match="not found"):
        stored.load(tmp_path / "nowhere")


def test_peers_report_merges_run_directories_with_their_plots(tmp_path: Path) -> None:
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "merged"
    write_outputs(_stream("shared-prefix", 1.0), a, plots=[])
    write_outputs(_stream("bursty", 2.0), b, plots=[])
    (b / "ttft_cdf_bursty_open.png").write_bytes(b"\x89PNG fake")
    result = CliRunner().invoke(bench_command, ["peers-report", str(a), str(b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "results.md").read_text()
    assert "## shared-prefix/closed" in text and "## bursty/open" in text
    assert "![ttft_cdf_bursty_open.png](ttft_cdf_bursty_open.png)" in text
    assert (out / "ttft_cdf_bursty_open.png").read_bytes() == b"\x89PNG fake"
    assert set(json.loads((out / "results.json").read_text())) == {
        "shared-prefix/open", "shared-prefix/closed", "bursty/open", "bursty/closed"}
    # a workload/phase whose routers two streams split: both have its plot, neither is whole
    split = tmp_path / "split"
    part = _stream("lora-mix", 1.0)
    write_outputs(part, split, plots=[])
    other = tmp_path / "other"
    rest = _stream("lora-mix", 1.0)
    rest.runs = [dataclasses.replace(r, router="envoy-round-robin") for r in rest.runs if r.router == "oracle"]
    write_outputs(rest, other, plots=[])
    for d in (split, other):
        (d / "ttft_cdf_lora-mix_open.png").write_bytes(b"\x89PNG part")
    merged = CliRunner().invoke(bench_command, ["peers-report", str(split), str(other), "--out", str(tmp_path / "m")])
    assert merged.exit_code == 0, merged.output
    assert "ttft_cdf_lora-mix_open.png: in 2 runs, each with part of the routers: left out" in merged.output
    assert not (tmp_path / "m" / "ttft_cdf_lora-mix_open.png").exists()
    assert "ttft_cdf_lora-mix_open.png" not in (tmp_path / "m" / "results.md").read_text()
    longer = tmp_path / "longer"
    write_outputs(_stream("lora-mix", 1.0, duration=60.0), longer, plots=[])
    refused = CliRunner().invoke(bench_command, ["peers-report", str(a), str(longer), "--out", str(tmp_path / "x")])
    assert refused.exit_code == 1 and "not measured the same way: duration 120.0 vs 60.0" in refused.output
