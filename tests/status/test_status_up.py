"""`infergate status` against `infergate up`: the demo's Gateway, the 50/50 HTTPRoute between a
preview and a GA pool (each with its EPP pod), simulator pods, objectives and InferenceModels,
with traffic flowing; asserts on `infergate status -o json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.up_demo import GA, PREVIEW, up_with_demo_traffic
from tests.up.conftest import processes_mentioning

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("up-status")]


def status(kubeconfig: str, *args: str) -> dict[str, object]:
    result = subprocess.run([sys.executable, "-m", "infergate", "status", "--kubeconfig", kubeconfig, "-o", "json",
                             *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_status_of_infergate_up_with_the_demo_objects(tmp_path: Path, kubectl_bin: str, repo_root: Path) -> None:
    with up_with_demo_traffic(tmp_path, kubectl_bin, repo_root, "status") as demo:
        data = status(demo.kubeconfig, "--interval", "3s")
    state, pods, gateways, codes = demo.state, demo.pods, demo.gateways, demo.codes
    assert not processes_mentioning(str(state), f"POD_IP={pods.rsplit('.', 1)[0]}.")
    assert codes and set(codes) == {200}

    assert str(data["source"]).startswith("Kubernetes API https://")
    (gw,) = data["gateways"]  # type: ignore[misc]
    assert gw["name"] == "inference-gateway" and gw["programmed"] is True
    assert gw["addresses"][0].startswith(gateways.rsplit(".", 1)[0] + ".")
    (route,) = data["routes"]  # type: ignore[misc]
    assert route["name"] == "llm-route" and route["accepted"] is True and route["resolved_refs"] is True
    shares = {(b["name"], b["weight"], b["share"]) for b in route["rules"][0]["backends"]}
    assert shares == {(GA, 50, 0.5), (PREVIEW, 50, 0.5)}

    pools = {p["name"]: p for p in data["pools"]}  # type: ignore[attr-defined]
    assert set(pools) == {GA, PREVIEW}
    ga, preview = pools[GA], pools[PREVIEW]
    assert (ga["generation"], preview["generation"]) == ("GA", "preview")
    assert ga["epp"] == f"{GA}-epp:9002" and ga["failure_mode"] == "FailClose"
    assert {(o["name"], o["priority"]) for o in ga["objectives"]} == {("food-review", 2), ("base-model", 2)}
    assert preview["models"] and all(m["model_name"] for m in preview["models"])
    total = 0.0
    for pool in (ga, preview):
        assert pool["accepted"] is True and pool["epp_reachable"] is True, pool
        assert len(pool["endpoints"]) == 2  # the same two simulator pods serve both pools
        for endpoint in pool["endpoints"]:
            assert endpoint["reachable"] and endpoint["address"].startswith(pods.rsplit(".", 1)[0] + ".")
            assert endpoint["kv_cache"] is not None and endpoint["queue"] is not None
        traffic = pool["traffic"]
        assert traffic is not None and traffic["errors"] == 0
        total += traffic["requests"]
    assert total > 0
    busy = max((ga, preview), key=lambda p: p["traffic"]["requests"])
    assert busy["traffic"]["latency_p50_s"] is not None and busy["traffic"]["ttft_p50_s"] is not None
    # per endpoint, from each pool's EPP: what it sent there over the same window as the pool's count
    for pool in (ga, preview):
        traffic = pool["traffic"]
        assert {e["requests_source"] for e in pool["endpoints"]} == {"epp"}
        assert all(e["errors_per_s"] == 0 for e in pool["endpoints"])
        sent = sum(e["requests_per_s"] for e in pool["endpoints"]) * traffic["window_s"]
        assert sent == pytest.approx(traffic["requests"], abs=0.01 * traffic["requests"] + 1e-6), pool
    assert sum(e["requests_per_s"] for e in busy["endpoints"]) > 0
