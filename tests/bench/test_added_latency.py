"""The added-latency benchmark's analysis and client, without starting the gateway: quantiles of
both paths over the same requests, the EPP's capacity from its CPU, the request plan and its
blocks, the SSE client against a small server, and the report's verdicts and caveats."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from aiohttp import web

from infergate.bench.added_latency import (
    Planned,
    _Connections,
    _first_text,
    added_latency,
    cut_blocks,
    epp_capacity,
    pin_epp_apart,
    poisson_plan,
    prompt_bodies,
    send,
)
from infergate.bench.added_latency_report import caveats, markdown, write
from infergate.bench.topology import ManagedProcess


def test_added_latency_compares_the_same_quantile_of_both_paths_over_the_requests_that_succeeded_on_both() -> None:
    direct = [0.010 + i * 0.0001 for i in range(101)]  # 10.0 .. 20.0 ms
    gateway = [d + 0.0005 for d in direct]  # 0.5 ms more each
    gateway[100] = 0.030  # the slowest one: 10 ms more
    result = added_latency(gateway, direct)
    assert result.pairs == 101 and result.failed_gateway == result.failed_direct == 0
    assert result.added["p50"] == pytest.approx(0.0005)
    assert result.added["p99"] == pytest.approx(0.0005)  # p99 interpolates below the one outlier
    assert result.paired["p50"] == pytest.approx(0.0005)
    assert result.meets_targets

    failed = added_latency([None, 0.012, 0.020, 0.014], [0.001, 0.011, None, 0.010])
    assert (failed.pairs, failed.failed_gateway, failed.failed_direct) == (2, 1, 1)
    assert failed.gateway["p50"] == pytest.approx(0.013) and failed.direct["p50"] == pytest.approx(0.0105)
    assert failed.added["p50"] == pytest.approx(0.0025) and not failed.meets_targets

    with pytest.raises(ValueError, match="not the same requests"):
        added_latency([0.1], [0.1, 0.2])
    assert math.isnan(added_latency([None], [0.1]).added["p50"])


def test_the_epps_capacity_is_one_over_its_cpu_per_request_after_its_idle_cost() -> None:
    # 1,000 requests in 2 s took 0.8 s of CPU; idle it used 0.05 s in 1 s: 0.1 s of it was scrapes
    capacity = epp_capacity(1000, 2.0, 0.8, 0.05, 1.0)
    assert capacity.cpu_per_request_s == pytest.approx(0.0007)
    assert capacity.requests_per_s == pytest.approx(1 / 0.0007)
    assert capacity.closed_loop_requests_per_s == 500
    assert capacity.epp_idle_cores == pytest.approx(0.05)
    assert math.isnan(epp_capacity(0, 1.0, 0.0, 0.0, 1.0).requests_per_s)


def test_the_plan_is_seeded_poisson_and_its_blocks_keep_order_and_times() -> None:
    bodies = [b"a", b"b", b"c"]
    plan = poisson_plan(200.0, 10.0, bodies, random.Random(3))
    assert plan == poisson_plan(200.0, 10.0, bodies, random.Random(3))
    assert 1800 < len(plan) < 2200 and all(0 <= p.at < 10 for p in plan)
    assert [p.at for p in plan] == sorted(p.at for p in plan)
    blocks = cut_blocks(plan, 2.0)
    assert len(blocks) == 5 and sum(map(len, blocks)) == len(plan)
    assert all(0 <= p.at < 2.0 for block in blocks for p in block)
    assert blocks[1][0].at == pytest.approx(next(p.at for p in plan if p.at >= 2.0) - 2.0)
    assert cut_blocks([Planned(0.5, b"x"), Planned(4.5, b"y")], 2.0) == [[Planned(0.5, b"x")], [], [Planned(0.5, b"y")]]
    assert cut_blocks([], 1.0) == []


def test_prompt_bodies_are_streamed_completions_of_about_the_asked_length() -> None:
    bodies = prompt_bodies(1000, 2, 20, random.Random(1))
    first = json.loads(bodies[0])
    assert first["stream"] is True and first["max_tokens"] == 2 and first["model"]
    assert 3500 < len(first["prompt"]) < 4500
    assert len(set(bodies)) == 20 and first["prompt"][:2000] == json.loads(bodies[16])["prompt"][:2000]


def test_an_event_with_text_is_the_first_token() -> None:
    assert _first_text(b'data: {"choices": [{"text": "Hi", "index": 0}]}')
    assert not _first_text(b'data: {"choices": [{"text": "", "index": 0}]}')
    assert not _first_text(b"data: [DONE]") and not _first_text(b": comment") and not _first_text(b"data: {oops")
    assert not _first_text(b'data: {"choices": null, "usage": {}}')


async def test_the_client_times_the_first_token_of_a_chunked_stream_over_a_kept_alive_connection() -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-inference-pod": "sim-1"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"text": ""}]}\n\n')
        await response.write(b'data: {"choices": [{"text": "' + body["prompt"].encode() + b'"}]}\n\ndata: [DONE]\n\n')
        await response.write_eof()
        return response

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "no"}, status=503)

    app = web.Application()
    app.router.add_post("/v1/completions", stream)
    app.router.add_post("/bad/v1/completions", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    connections = _Connections()
    try:
        first = await send(connections, "127.0.0.1", port, json.dumps({"prompt": "hello"}).encode())
        second = await send(connections, "127.0.0.1", port, json.dumps({"prompt": "again"}).encode())
        for timed in (first, second):
            assert timed.status == 200 and timed.error is None and timed.pod == "sim-1"
            assert timed.ttft is not None and 0 < timed.ttft < 5
        assert sum(len(idle) for idle in connections._idle.values()) == 1  # the same connection, reused
        down = await send(connections, "127.0.0.1", 1, b"{}")
        assert down.ttft is None and down.error and "Error" in down.error
    finally:
        connections.close()
        await runner.cleanup()


def _result(added_p50: float, added_p99: float, *, busy: float = 0.5, rate: float = 100.0) -> dict[str, object]:
    q = {"p50": 0.002, "p90": 0.003, "p99": 0.004}
    added = {"pairs": 10, "failed_gateway": 0, "failed_direct": 0, "gateway": q, "direct": q,
             "added": {"p50": added_p50, "p90": added_p99, "p99": added_p99}, "paired": q,
             "meets_targets": added_p50 <= 0.001 and added_p99 <= 0.003}
    return {
        "config": {"block_seconds": 2.0, "replicas": 4, "prompt_tokens": 1000, "max_tokens": 2, "duration": 5.0,
                   "capacity_concurrency": 8, "capacity_seconds": 3.0},
        "machine": {"cpus": 2, "loadavg_start": [1.0, 1.0, 1.0], "loadavg_end": [1.0, 1.0, 1.0]},
        "capacity": {"requests": 1000, "cpu_per_request_ms": 0.7, "epp_idle_cores": 0.02, "requests_per_s": 1428.6,
                     "closed_loop_requests_per_s": 400.0},
        "targets": {"p50_ms": 1.0, "p99_ms": 3.0},
        "levels": [{"level": 0.1, "target_rate": rate, "gateway_rate": rate, "direct_rate": rate, "lag_p99_s": 0.001,
                    "requests": 10, "cores": {"epp": 0.1, "machine_busy": busy}, "added": added, "errors": {}}],
    }


def test_the_report_states_the_verdict_and_why_numbers_are_the_machines(tmp_path: Path) -> None:
    met = markdown(_result(0.0004, 0.002))
    assert "| met |" in met and "1,429 requests/s" in met and "No level was above" in met
    assert "Where the added time goes" not in met  # a run without the Envoy-alone path
    split = _result(0.0004, 0.002)
    level = split["levels"][0]  # type: ignore[index]
    level["envoy_only"] = {"gateway": {"p50": 0.0021, "p99": 0.0031}, "added": {"p50": 0.0001, "p99": 0.0002}}
    level["epp_share"] = {"p50": 0.0003, "p99": 0.0009}
    assert "| 10% | 2.10 / 3.10 | 0.10 / 0.20 | 0.30 / 0.90 |" in markdown(split)
    missed = markdown(_result(0.0015, 0.005, busy=0.97, rate=1000.0), note="Other benchmarks ran at the same time.")
    assert "missed: p50 by 0.50 ms, p99 by 2.00 ms" in missed and "Other benchmarks ran" in missed
    notes = caveats(_result(0.0015, 0.005, busy=0.97, rate=1000.0))
    assert any("above what the whole setup reached" in n for n in notes)
    assert any("97% busy" in n for n in notes)
    write(_result(0.0004, 0.002), tmp_path)  # type: ignore[arg-type]
    assert json.loads((tmp_path / "results.json").read_text())["levels"][0]["added"]["meets_targets"]
    assert (tmp_path / "report.md").is_file() and (tmp_path / "added_latency.png").stat().st_size > 1000


def test_pinning_gives_the_epp_the_last_cpu_and_the_others_the_rest() -> None:
    epp, envoy = ManagedProcess(["epp"], "epp"), ManagedProcess(["envoy", "-c", "x"], "envoy")
    assert pin_epp_apart(epp, [envoy], [0, 1, 2, 3]) == (3, "0,1,2")
    assert epp.argv == ["taskset", "-c", "3", "epp"] and envoy.argv == ["taskset", "-c", "0,1,2", "envoy", "-c", "x"]
    with pytest.raises(ValueError, match="at least 2 CPUs"):
        pin_epp_apart(epp, [envoy], [0])


def test_the_envoy_alone_listener_is_the_gateways_without_ext_proc() -> None:
    from infergate.bench.added_latency import add_envoy_only_listener
    from infergate.bench.topology import Lane, envoy_bootstrap

    lane = Lane("l", 18080, 19002, ("127.0.0.2:8000", "127.0.0.3:8000"))
    bootstrap = add_envoy_only_listener(envoy_bootstrap([lane], 19901), 18081)
    gateway, alone = bootstrap["static_resources"]["listeners"]
    assert alone["address"]["socket_address"]["port_value"] == 18081
    names = [[f["name"] for f in listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]]
             for listener in (gateway, alone)]
    assert "envoy.filters.http.ext_proc" in names[0] and names[1] == [n for n in names[0] if n != "envoy.filters.http.ext_proc"]
    route = alone["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
    assert route == gateway["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
