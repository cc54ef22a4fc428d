"""The Grafana dashboards under config/grafana/ query only metrics that infergate exports.

Each panel's PromQL is scanned for metric selectors; every selected series must appear in what
the EPP serves on /metrics (rendered from a real EppMetrics with one sample of every labelled
metric and a pool snapshot, then parsed with prometheus_client's parser).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from infergate.epp.metrics import EppMetrics, PoolSnapshot

DASHBOARDS = Path(__file__).resolve().parents[2] / "config" / "grafana"
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def _targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def _exported_epp_series() -> set[str]:
    metrics = EppMetrics()
    for value in vars(metrics).values():
        if isinstance(value, Counter | Gauge | Histogram) and value._labelnames:
            child = value.labels(*["x"] * len(value._labelnames))
            if isinstance(value, Histogram):
                child.observe(1.0)
            elif isinstance(value, Counter):
                child.inc()
            else:
                child.set(1)
    metrics.set_pool_snapshot(lambda: PoolSnapshot("pool", [("pod-a", 2, 0.5)]))
    text = metrics.render().decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def _dashboards() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def test_there_is_an_epp_dashboard() -> None:
    assert (DASHBOARDS / "infergate-epp.json").is_file()


@pytest.mark.parametrize("path", _dashboards(), ids=lambda p: p.name)
def test_dashboard_is_valid_grafana_json(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for title, expr in _targets(dashboard):
        assert SELECTOR.search(expr), f"{title}: no metric selector in {expr!r}"
        assert expr.count("(") == expr.count(")"), f"{title}: unbalanced parentheses in {expr!r}"


def test_every_epp_panel_queries_an_exported_metric() -> None:
    exported = _exported_epp_series()
    dashboard = json.loads((DASHBOARDS / "infergate-epp.json").read_text())
    missing = []
    for title, expr in _targets(dashboard):
        for name in SELECTOR.findall(expr):
            if name not in PROMQL_WORDS and name not in exported:
                missing.append(f"{title}: {name}")
    assert not missing, f"metrics queried but not exported: {missing}"


def test_the_check_catches_an_unknown_metric() -> None:
    exported = _exported_epp_series()
    assert "inference_model_request_total" in exported
    assert "inference_model_requests_total" not in exported  # a typo a panel could make
