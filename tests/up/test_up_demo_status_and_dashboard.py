"""`infergate status` and the dashboard on the gateway's admin port, against one `infergate up`
with the demo's objects: a Gateway, an HTTPRoute split 50/50 between a preview and a GA pool
(each with its EPP pod), two simulator pods, objectives and InferenceModels, with traffic flowing.

The two tests share the module's `infergate up` (starting it, applying the objects and waiting
until the Gateway serves both pools took ~6 s of each test when each had its own): the status
test only reads, and the dashboard test lets the traffic flow again after it paused it. Once
`up` stopped, the fixture checks that every request was answered 200 and no pod was left running.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.dashboard.browser import Browser, chromium_path
from tests.dashboard.test_dashboard_serve import screenshot_path
from tests.support.up_demo import GA, PREVIEW, UpDemo, up_with_demo_traffic
from tests.up.conftest import processes_mentioning

from infergate.dashboard.series import SAMPLE_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("up-demo-views")]
# the gateway (a child of `infergate up`, which passes its environment on) samples over 0.5 s, and the
# page polls as often: a change shows in about a second instead of the default window's ~3 s plus a
# 2 s poll (the default saw 20 s per run of the dashboard test for its five waits on the numbers)
SAMPLE_S = "0.5"

# each endpoint row's rates as drawn (pool, source from the API: the cell's text has no source)
ENDPOINT_RATES = (
    "fetch('api/status').then(r => r.json()).then(s => [...document.querySelectorAll('[data-pool] tr[data-endpoint]')]"
    ".map(row => { const pool = row.closest('[data-pool]').dataset.pool;"
    " const p = s.pools.find(q => `${q.namespace}/${q.name}` === pool);"
    " const e = p && p.endpoints.find(x => x.name === row.dataset.endpoint);"
    " const num = (c) => { const v = parseFloat(row.querySelector(c).textContent); return isNaN(v) ? null : v; };"
    " return {pool, endpoint: row.dataset.endpoint, rps: num('.endpoint-rps'), eps: num('.endpoint-eps'),"
    " source: e ? e.requests_source : null}; }))")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, kubectl_bin: str, repo_root: Path) -> Iterator[UpDemo]:
    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as env:  # for `up` (its gateway samples the dashboard's series)
            env.setenv(SAMPLE_ENV, SAMPLE_S)
            started = stack.enter_context(up_with_demo_traffic(tmp_path_factory.mktemp("up-demo-views"), kubectl_bin,
                                                               repo_root, "status and dashboard"))
        yield started
    # `up` stopped: nothing of it left, and every request of the whole module answered 200
    assert not processes_mentioning(str(started.state), f"POD_IP={started.pods.rsplit('.', 1)[0]}.")
    assert started.codes and set(started.codes) == {200}


def status(kubeconfig: str, *args: str) -> dict[str, object]:
    result = subprocess.run([sys.executable, "-m", "infergate", "status", "--kubeconfig", kubeconfig, "-o", "json",
                             *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Unclosed" not in result.stderr, result.stderr  # the client's session is closed (aiohttp said so at exit)
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_status_of_infergate_up_with_the_demo_objects(demo: UpDemo) -> None:
    data = status(demo.kubeconfig, "--interval", "3s")
    pods, gateways, codes = demo.pods, demo.gateways, list(demo.codes)
    assert codes and set(codes) == {200}  # (all of them again once `up` stopped: the fixture's end)

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


async def test_the_gateway_admin_port_serves_the_dashboard_of_infergate_up(demo: UpDemo, tmp_path: Path) -> None:
    chromium_path()
    admin = demo.admin
    assert admin, list(demo.state.iterdir())
    async with Browser(tmp_path / "chromium") as browser:
        await browser.goto(f"{admin}/dashboard/")
        pools = await browser.wait_for(
            "(() => { const p = [...document.querySelectorAll('[data-pool]')].map(n => n.dataset.pool);"
            " return p.length === 2 ? p : null; })()", timeout=90, what="two pools")
        assert sorted(pools) == [f"default/{GA}", f"default/{PREVIEW}"]
        for pool in (GA, PREVIEW):
            rows = await browser.wait_for(
                f"document.querySelectorAll('[data-pool=\"default/{pool}\"] tr[data-endpoint]').length",
                what=f"{pool}'s endpoints")
            assert rows == 2
        weights = await browser.evaluate(
            "[...document.querySelectorAll('#routes .backend')].map(b => b.dataset.backend + '=' + b.dataset.weight)")
        assert sorted(weights) == [f"{GA}=50", f"{PREVIEW}=50"]
        total = await browser.wait_for(
            "(() => { const v = [...document.querySelectorAll('[data-pool] .rps')]"
            ".map(n => parseFloat(n.textContent) || 0).reduce((a, b) => a + b, 0); return v > 0 ? v : null; })()",
            timeout=90, what="a positive request rate")
        assert total > 0
        await browser.wait_for(
            "document.querySelectorAll('#chart-weights path[data-series]').length === 2"
            " && document.querySelector('#chart-rps path').getAttribute('d').includes('L')",
            what="the weights and rate charts")

        # per endpoint: the requests each pool's EPP sent to each endpoint, as a rate that
        # follows the traffic (positive while it flows, zero when it stops, back when it resumes)
        rates = await browser.wait_for(f"{ENDPOINT_RATES}.then(r => r.length === 4 && r.every(e => e.rps !== null)"
                                       " && r.some(e => e.rps > 0) ? r : null)",
                                       timeout=60, what="per-endpoint request rates")
        assert {(e["pool"], e["source"]) for e in rates} == {(f"default/{GA}", "epp"), (f"default/{PREVIEW}", "epp")}
        assert all(e["eps"] == 0 for e in rates), rates  # every request answered 200
        await browser.wait_for(
            "document.querySelectorAll('#chart-endpoint-rps path[data-series]').length === 4"
            " && [...document.querySelectorAll('#chart-endpoint-rps path')].some(p => p.getAttribute('d').includes('L'))",
            what="the per-endpoint rate chart")
        demo.paused.set()
        await browser.wait_for(f"{ENDPOINT_RATES}.then(r => r.length === 4 && r.every(e => e.rps === 0))",
                               timeout=45, what="per-endpoint rates of zero once the traffic stops")
        demo.paused.clear()
        await browser.wait_for(f"{ENDPOINT_RATES}.then(r => r.some(e => e.rps > 0))",
                               timeout=45, what="per-endpoint rates back when the traffic resumes")
        await browser.screenshot(screenshot_path(tmp_path, "dashboard.png"))
    codes = list(demo.codes)
    assert codes and set(codes) == {200}  # (all of them again once `up` stopped: the fixture's end)
