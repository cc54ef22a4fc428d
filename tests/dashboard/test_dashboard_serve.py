"""The dashboard in a real browser (headless Chromium) against `infergate serve --sim 2` with traffic.

Set INFERGATE_SCREENSHOTS=docs/img to refresh the README's screenshot (docs/img/dashboard.png).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import httpx
import pytest
from tests.dashboard.browser import Browser, chromium_path
from tests.serve.support import Serve

from infergate.dashboard.series import SAMPLE_ENV
from infergate.util.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("serve")]
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
DASHBOARD = "  dashboard: "


def traffic(url: str, stop: threading.Event, counts: list[int]) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            response = client.post(url + "/completions", json={"model": MODEL, "prompt": "dashboard please",
                                                               "max_tokens": 8})
            counts.append(response.status_code)


def screenshot_path(tmp_path: Path, name: str) -> Path:
    directory = os.environ.get("INFERGATE_SCREENSHOTS")
    return Path(directory) / name if directory else tmp_path / name


def js(selector: str, tail: str = "") -> str:
    """The value of ``n<tail>`` for the first node ``selector`` matches (no tail: whether there is one)."""
    value = f"n{tail}" if tail else "true"
    return f"(() => {{ const n = document.querySelector({json.dumps(selector)}); return n ? {value} : null; }})()"


async def test_the_page_shows_pools_endpoints_and_numbers_that_move_with_traffic(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chromium_path()  # fails with how to install it, before anything starts
    # samples over 0.5 s (and the page polls as often): the waits for a newer sample, a changing count
    # and a chart line of three samples take ~1 s each instead of ~3 s
    monkeypatch.setenv(SAMPLE_ENV, "0.5")
    serve = Serve(["--sim", "2", "--sim-time-scale", "10", "--dashboard-port", "0"], tmp_path)
    stop = threading.Event()
    counts: list[int] = []
    try:
        wait_until(lambda: any(line.startswith(DASHBOARD) for line in serve.output), timeout=30,
                   what="the dashboard's URL line")
        lines = [line for line in serve.output if line.startswith(DASHBOARD)]
        url = lines[0][len(DASHBOARD):].strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/dashboard/")
        # the JSON the page polls
        status = httpx.get(url + "api/status", timeout=10)
        assert status.status_code in (200, 503)
        workers = [threading.Thread(target=traffic, args=(serve.url, stop, counts), daemon=True) for _ in range(3)]
        for worker in workers:
            worker.start()
        async with Browser(tmp_path / "chromium") as browser:
            await browser.goto(url)
            pool = '[data-pool="default/serve"]'
            await browser.wait_for(js(pool), what="the pool's card")
            title = await browser.evaluate(js(pool + " h3", ".textContent"))
            assert title.startswith("default/serve") and "GA" in title
            names = await browser.wait_for(
                f"[...document.querySelectorAll('{pool} tr[data-endpoint]')].map(r => r.dataset.endpoint)",
                what="two endpoint rows")
            assert sorted(names) == ["serve-0", "serve-1"]
            gateway = await browser.evaluate(js('[data-gateway="default/infergate-serve"]', ".innerText"))
            assert "yes" in gateway  # Programmed
            backend = await browser.evaluate(js('#routes [data-backend="serve"]', ".textContent"))
            assert backend == "InferencePool serve: 1 (100%)"
            # numbers that change as traffic flows: the request rate becomes positive, the count grows
            rps = await browser.wait_for(
                f"(() => {{ const v = parseFloat(document.querySelector('{pool} .rps').textContent);"
                " return v > 0 ? v : null; })()", timeout=90, what="a positive request rate")
            assert rps > 0
            first = await browser.evaluate(js(pool + " .requests", ".textContent"))
            taken = await browser.evaluate(js("#taken-at", ".textContent"))
            await browser.wait_for(f"document.querySelector('#taken-at').textContent !== {json.dumps(taken)}",
                                   what="a newer sample")
            await browser.wait_for(
                f"document.querySelector('{pool} .requests').textContent !== {json.dumps(first)}",
                what="a changing request count")
            ttft = await browser.wait_for(js(pool + " .ttft", ".textContent.includes('ms /') ? n.textContent : null"),
                                          what="TTFT quantiles")
            assert "ms" in ttft
            held = await browser.evaluate(js(pool + " .held", ".textContent"))
            assert held == "0"  # requests waiting in the EPP's flow control (its gauge): none at this load
            # the SVG charts: a line per pool, per endpoint and per route backend, drawn from several samples
            await browser.wait_for(
                "(() => { const p = document.querySelector('#chart-rps path[data-series=\"default/serve\"]');"
                " return p && (p.getAttribute('d').match(/L/g) || []).length >= 2; })()", what="the rate chart's line")
            endpoint_lines = await browser.evaluate(
                "[...document.querySelectorAll('#chart-endpoint-load path')].map(p => p.dataset.series)")
            assert sorted(endpoint_lines) == ["default/serve serve-0", "default/serve serve-1"]
            weights = await browser.evaluate(
                "[...document.querySelectorAll('#chart-weights path')].map(p => p.dataset.series)")
            assert weights == ["default/serve-serve#0 InferencePool serve"]
            assert await browser.evaluate(js("#connection", ".textContent")) == "live"
            assert await browser.evaluate("document.getElementById('migration').hidden") is True
            # no request left the machine: every resource the page loaded is the dashboard's own
            origins = await browser.evaluate(
                "[...new Set(performance.getEntriesByType('resource').map(e => new URL(e.name).origin))]")
            assert origins == [url.rsplit("/dashboard/", 1)[0]]
            shot = screenshot_path(tmp_path, "dashboard.png")
            await browser.screenshot(shot)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        stop.set()
        out = serve.stop()
    assert counts and all(code == 200 for code in counts), counts[-10:]
    assert "stopped everything" in out
