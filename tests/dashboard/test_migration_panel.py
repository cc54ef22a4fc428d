"""The migration panel: events from `infergate.migrate.events` -> MigrationView -> the page (Chromium) and the terminal."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
from rich.console import Console
from tests.dashboard.browser import Browser, chromium_path
from tests.dashboard.test_dashboard_serve import screenshot_path

from infergate.dashboard.app import DashboardApp, DashboardServer
from infergate.dashboard.migration import MigrationView
from infergate.dashboard.terminal import TerminalSink
from infergate.migrate.events import FanOut

GATES_AT_50 = [
    {"gate": "success-rate", "verdict": "pass", "detail": "99.0% >= 95.0% (198/200 probes)"},
    {"gate": "p99-ttft", "verdict": "fail", "detail": "p99 TTFT 2.10 s > 1.5 x baseline 0.80 s"},
]


def feed_until_rollback(sink: FanOut | MigrationView) -> None:
    sink.step_started("shift-10", "shift 10% of the traffic to GA")
    sink.weights_set(90, 10)
    sink.step_finished("shift-10", "pass", "90% preview / 10% GA", 0.4)
    sink.step_started("analyse-10", "analyse at 10% GA")
    sink.gates_measured(10, [{"gate": "success-rate", "verdict": "pass", "detail": "100.0% >= 95.0%"}])
    sink.step_finished("analyse-10", "pass", "success-rate pass", 3.0)
    sink.step_started("shift-50", "shift 50% of the traffic to GA")
    sink.weights_set(50, 50)
    sink.step_finished("shift-50", "pass", "50% preview / 50% GA", 0.3)
    sink.step_started("analyse-50", "analyse at 50% GA")
    sink.gates_measured(50, GATES_AT_50)


def test_the_view_keeps_step_split_gates_and_decision() -> None:
    view = MigrationView(route="HTTPRoute default/chat")
    feed_until_rollback(view)
    data = view.to_dict()
    assert data["active"] and data["current_step"] == "analyse-50"
    assert (data["preview_weight"], data["ga_weight"]) == (50, 50)
    assert [w["ga"] for w in data["weights"]] == [10, 50]
    assert data["decision"] == "advance"  # analyse-10 passed
    assert data["gates_at_weight"] == 50 and [g["verdict"] for g in data["gates"]] == ["pass", "fail"]
    view.step_finished("analyse-50", "fail", "p99-ttft fail", 6.0)
    assert view.decision == "fail"
    view.decided("roll back", "p99-ttft fail")
    assert view.to_dict()["decision"] == "roll back" and not view.active
    assert [s["status"] for s in view.to_dict()["steps"]] == ["pass", "pass", "pass", "fail"]
    paused = MigrationView()
    paused.step_started("analyse-10", "analyse")
    paused.step_finished("analyse-10", "paused", "no gateway address", 0.1)
    assert paused.decision == "pause"


def test_the_terminal_draws_the_split_the_gates_and_the_decision() -> None:
    buffer = io.StringIO()
    sink = TerminalSink(Console(file=buffer, width=120, force_terminal=False, color_system=None))
    feed_until_rollback(FanOut(sink))
    sink.decided("roll back", "p99-ttft fail")
    text = buffer.getvalue()
    assert "preview  50%" in text and " 50% GA" in text and "preview  90%" in text
    assert "gates at 50% GA" in text and "p99 TTFT 2.10 s > 1.5 x baseline 0.80 s" in text
    assert "decision: advance" in text and "decision: roll back (p99-ttft fail)" in text


async def test_the_page_shows_the_migration_as_events_arrive(tmp_path: Path) -> None:
    chromium_path()
    view = MigrationView(route="HTTPRoute default/chat")
    server = DashboardServer(DashboardApp(None, migration=view), "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(server.url + "api/migration")).json()["steps"] == []
            assert (await client.get(server.url + "api/status")).status_code == 404
        async with Browser(tmp_path / "chromium") as browser:
            await browser.goto(server.url + "?poll=0.2")  # the page's poll: every 0.2 s instead of 2 s
            await browser.wait_for("document.body.dataset.polls >= 1", what="a first poll")
            assert await browser.evaluate("document.getElementById('migration').hidden") is True
            hidden = await browser.evaluate("[...document.querySelectorAll('.status-only')].map(s => s.hidden)")
            assert hidden and all(hidden)  # a migration-only dashboard has no status to show
            feed_until_rollback(view)
            await browser.wait_for("document.getElementById('migration-step').textContent === 'analyse-50'",
                                   what="the current step")
            assert not await browser.evaluate("document.getElementById('migration').hidden")
            assert await browser.evaluate("document.getElementById('split-ga').style.width") == "50%"
            assert await browser.evaluate("document.getElementById('ga-weight').textContent") == "50"
            gates = await browser.evaluate(
                "[...document.querySelectorAll('#gates tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
            assert gates == [[g["gate"], g["verdict"], g["detail"]] for g in GATES_AT_50]
            assert await browser.evaluate("document.getElementById('gates-weight').textContent") == "at 50% GA"
            assert await browser.evaluate("document.getElementById('migration-decision').textContent") == "advance"
            view.step_finished("analyse-50", "fail", "p99-ttft fail", 6.0)
            view.decided("roll back", "p99-ttft fail")
            view.weights_set(100, 0)
            await browser.wait_for("document.getElementById('migration-decision').textContent === 'roll back'",
                                   what="the roll-back decision")
            assert await browser.evaluate("document.getElementById('split-preview').style.width") == "100%"
            steps = await browser.evaluate(
                "[...document.querySelectorAll('#migration-steps li')].map(l => l.dataset.step + ' ' + l.className)")
            assert steps == ["shift-10 pass", "analyse-10 pass", "shift-50 pass", "analyse-50 fail"]
            await browser.screenshot(screenshot_path(tmp_path, "migration-panel.png"))
    finally:
        await server.stop()
    assert json.dumps(view.to_dict())  # JSON-serialisable as the API returns it
