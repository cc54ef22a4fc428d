"""The dashboard on the gateway's admin port, against `infergate up` with the demo's objects:
a Gateway, an HTTPRoute split 50/50 between a preview and a GA pool, simulator pods, traffic."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.dashboard.browser import Browser, chromium_path
from tests.dashboard.test_dashboard_serve import screenshot_path
from tests.support.up_demo import GA, PREVIEW, up_with_demo_traffic

from infergate.dashboard.series import SAMPLE_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("up-dashboard")]
# the gateway (a child of `infergate up`, which passes its environment on) samples over 0.5 s, and the
# page polls as often: a change shows in about a second instead of the default window's ~3 s plus a
# 2 s poll (the default saw 20 s per run of this test for its five waits on the numbers)
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


async def test_the_gateway_admin_port_serves_the_dashboard_of_infergate_up(tmp_path: Path, kubectl_bin: str,
                                                                           repo_root: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    chromium_path()
    monkeypatch.setenv(SAMPLE_ENV, SAMPLE_S)
    with up_with_demo_traffic(tmp_path, kubectl_bin, repo_root, "dashboard") as demo:
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
    assert demo.codes and set(demo.codes) == {200}
