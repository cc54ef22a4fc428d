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
