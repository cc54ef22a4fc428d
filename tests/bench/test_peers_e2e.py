"""`infergate bench peers` end to end, on 2 replicas: Envoy alone and infergate's default profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infergate.bench.peers.summary import JSON_FIELDS


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tiny_peer_benchmark(envoy_bin: str, tmp_path: Path) -> None:
    env = {**os.environ, "INFERGATE_BENCH_VENVS": str(tmp_path / "no-venvs")}
    proc = subprocess.run(
        [sys.executable, "-m", "infergate", "bench", "peers", "--routers",
         "envoy-round-robin,infergate-default,sglang-cache-aware", "--duration", "1", "--replicas", "2",
         # a fast model: in-flight requests drain sooner (the test is mostly waiting); 1 s of wall time
         # per phase is 4 s of model time, ~17 open arrivals and 16 closed-loop users per router (3 s at
         # --time-scale 2 took 33 s for this test, this 17 s, for the same assertions)
         "--time-scale", "4",
         "--epp-args", "--sd-max-inflight-per-endpoint 32",
         "--json", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=280, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert list(data) == ["shared-prefix/open", "shared-prefix/closed"]
    for phase in data.values():
        assert list(phase) == ["envoy-round-robin", "infergate-default"]  # the uninstalled peer is skipped
        for numbers in phase.values():
            assert list(numbers) == list(JSON_FIELDS)
            assert numbers["requests"] > 0 and numbers["failed"] == 0 and numbers["shed"] == 0
            assert numbers["ttft_p90"] > 0 and numbers["output_tokens_per_s"] > 0
            assert 0 <= numbers["prefix_hit"] <= 1
    assert "skipped sglang-cache-aware: not installed" in proc.stderr
    report = (tmp_path / "out" / "results.md").read_text()
    assert "sglang-cache-aware: not installed" in report and "## shared-prefix/closed" in report
    assert "- infergate's EPPs ran with `--sd-max-inflight-per-endpoint 32`" in report
    details = json.loads((tmp_path / "out" / "details.json").read_text())
    assert details["config"]["epp_args"] == ["--sd-max-inflight-per-endpoint", "32"]
