"""The EPP-cost benchmark's pieces that run without processes: its metrics page, its prompts
and its report (the benchmark itself runs in `make bench`)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from infergate.bench.epp_cost import CHARS_PER_TOKEN, POOL_SIZES, PROMPT_TOKENS, loopback_addresses, prompts
from infergate.bench.epp_cost_metrics_server import metrics_page
from infergate.bench.epp_cost_report import render, write_report
from infergate.epp.metrics_scraper import parse_metrics


def test_the_static_page_is_a_complete_vllm_page() -> None:
    page = metrics_page()
    metrics = parse_metrics(page.decode())
    # present (nothing missing), and 0: nothing waits on the static page (flow control would hold forever)
    assert metrics.missing == () and metrics.waiting_queue == 0 and metrics.kv_cache_usage == 0.42
    assert metrics.active_models == {"lora-a", "lora-b"} and len(page) > 20_000


def test_the_static_page_answers_name_filters_as_vllm_does() -> None:
    from infergate.epp.model_server_protocol import VLLM

    full, restricted = metrics_page(), metrics_page(frozenset(VLLM.metric_names()))
    assert parse_metrics(restricted.decode(), now=1.0) == parse_metrics(full.decode(), now=1.0)
    assert len(restricted) < len(full) / 20
    assert metrics_page(frozenset({"process_open_fds"})).decode().endswith("\nprocess_open_fds 120.0\n")


def test_prompts_have_the_asked_length_and_share_prefixes() -> None:
    texts = prompts(3000, 50, random.Random(1))
    assert all(abs(len(t) - 3000 * CHARS_PER_TOKEN) < 100 for t in texts)
    assert len({t[:1000] for t in texts}) <= 16


def test_loopback_addresses_are_distinct_past_250() -> None:
    addresses = loopback_addresses(256, random.Random(1))
    assert len(set(addresses)) == 256 and all(a.startswith("127.") for a in addresses)


def _result(scale: float) -> dict[str, Any]:
    rows = [{"prompt_tokens": t, "body_bytes": 4.0 * t, "requests": 10, "wall_s": 1.0, "idle_cores": 0.01,
             "cpu_ms_per_request": scale * (0.3 + t / 40_000), "cpu_ms_per_request_net_of_idle": scale * (0.3 + t / 40_000)}
            for t in PROMPT_TOKENS]
    return {
        "label": "x", "machine": {"cpus": 2, "load_average": [1.0, 1.0, 1.0]},
        "settings": {"requests": 10, "concurrency": 8, "response_chunks": 16, "idle_seconds": 1.0},
        "per_request": rows, "per_request_streamed": [{**r, "cpu_ms_per_request_net_of_idle": 3 * scale} for r in rows],
        "idle": [{"endpoints": n, "seconds": 4.0, "epp_cores": scale * n / 1000, "scrapes_per_s": n * 20.0,
                  "scrapes_per_s_expected": n * 20.0, "epp_ms_per_scrape": scale * 0.05,
                  "epp_cores_at_full_rate": scale * n / 1000, "metrics_server_cores": 0.01} for n in POOL_SIZES],
        "handler": [{"prompt_tokens": t, "cpu_ms_per_request": scale * 0.1} for t in PROMPT_TOKENS],
        "grpc_floor": [{"response_body": "NONE", "requests": 10, "wall_s": 1.0, "cpu_ms_per_request": 0.3},
                       {"response_body": "STREAMED", "requests": 10, "wall_s": 1.0, "cpu_ms_per_request": 1.0}],
        "scheduling_256": {"endpoints": 256, "requests": 10, "mean_ms": 0.2, "p50_ms": 0.2, "p99_ms": 0.3},
        "datastore": {"requests": 10, "empty_ms": 0.1, "empty_spread_ms": 0.001, "objectives_10000_ms": 0.1,
                      "models_1_ms": 0.1, "models_1000_ms": 0.1},
    }


def test_report_gives_ratios_and_a_verdict_per_target(tmp_path: Path) -> None:
    text = render(_result(1.0), _result(2.0))
    assert "| 3,000 | 12,000 | NONE | 0.750 | 0.375 | 0.50x |" in text
    assert "**Per request, 3,000-token prompts, at most 0.4 ms**: **met**" in text
    assert "**256 endpoints at 50 ms within 0.25 of a core**: **missed** by 0.006" in text
    assert "**Throughput ceiling of one process**" in text and "Added latency" in text
    assert "| 3,000 | 0.200 | 0.100 | 0.50x |" in text  # the EPP's own work, in process
    assert "0.300 ms of it is the transport's floor" in text
    (tmp_path / "baseline.json").write_text(json.dumps(_result(2.0)))
    (tmp_path / "after.json").write_text(json.dumps(_result(1.0)))
    write_report(tmp_path)
    assert (tmp_path / "report.md").read_text() == text
    assert (tmp_path / "cpu_per_request.png").stat().st_size > 1000
    assert (tmp_path / "idle_scrape.png").stat().st_size > 1000


def test_idle_ab_summary_and_report() -> None:
    from infergate.bench.epp_cost_idle_ab import render as render_ab
    from infergate.bench.epp_cost_idle_ab import summarise

    def rows(ms: float) -> list[dict[str, float]]:
        return [{"endpoints": n, "epp_ms_per_scrape": ms * (1 + i)} for i in range(2) for n in POOL_SIZES]

    summary = summarise({"baseline": rows(0.1), "after": rows(0.05)})
    assert [r["endpoints"] for r in summary] == list(POOL_SIZES)
    assert all(abs(r["ratio"] - 0.5) < 1e-9 for r in summary)
    last = summary[-1]
    assert abs(last["after_cores_at_full_rate"] - 0.075 * POOL_SIZES[-1] * 20 / 1000) < 1e-9
    text = render_ab("abc123", summary, (1.0, 2.0, 3.0), 2)
    assert "against abc123" in text and f"| {POOL_SIZES[-1]:,} | 0.150 | 0.075 | 0.50x |" in text


def test_sim_scrape_cost_report() -> None:
    from infergate.bench.sim_scrape_cost import render as render_sim

    rows = [{"name_filter": 0.0, "seconds": 5.0, "scrapes_per_s": 320.0, "sim_cores": 0.2, "sim_ms_per_scrape": 0.625},
            {"name_filter": 1.0, "seconds": 5.0, "scrapes_per_s": 320.0, "sim_cores": 0.05, "sim_ms_per_scrape": 0.15625}]
    text = render_sim(rows, 16, (0.5, 0.5, 0.5))
    assert "| whole page (upstream's EPP, infergate before) | 320 | 0.200 | 0.625 |" in text
    assert "| `name[]` (infergate's EPP) | 320 | 0.050 | 0.156 |" in text and "**0.25x**" in text
