"""The scheduler micro-benchmark runs (a smoke test of the tool, not a timing assertion)."""

from __future__ import annotations

import json

import pytest

from infergate.epp.bench_scheduler import main


@pytest.mark.parametrize("extra", [[], ["--director"], ["--preset", "round-robin"]])
def test_bench_runs_and_reports(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--endpoints", "8", "--requests", "30", "--json", *extra]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["endpoints"] == 8 and report["requests"] == 30
    assert report["path"] == ("director" if "--director" in extra else "scheduler")
    assert 0 < report["p50_us"] <= report["p99_us"] <= report["max_us"]


@pytest.mark.e2e
def test_quality_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from infergate.epp.bench_quality import main as quality_main

    args = ["--profiles", "default,round-robin", "--replicas", "2", "--duration", "1.5", "--rate", "6",
            "--groups", "2", "--system-tokens", "200", "--max-tokens", "4", "--sim-profile", "llama-3.1-8b-h100",
            "--json"]
    assert quality_main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"default", "round-robin"}
    for row in report.values():
        assert row["requests"] > 0 and row["failed"] == 0
        assert 0 < row["ttft_p50"] <= row["ttft_p90"] <= row["e2e_p90"]
