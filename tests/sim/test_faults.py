"""Faults on demand: error rate, added latency, stall, crash/restart, start-up delay."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from infergate.util.wait import async_wait_until

from .support import scrape, stream_completion

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
BODY = {"model": MODEL, "prompt": "hello", "max_tokens": 4, "ignore_eos": True}


async def test_error_rate_through_the_admin_endpoint(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster(seed=3, admin=True)
    url = cluster.replicas[0].url
    faults = f"{cluster.admin_url}/admin/replicas/0/faults"
    set_all = await http.post(faults, json={"error_rate": 1.0, "error_status": 503})
    assert set_all.status_code == 200 and set_all.json()["error_rate"] == 1.0
    failed = await http.post(f"{url}/v1/completions", json=BODY)
    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == 503 and failed.headers["x-inference-pod"] == "sim-0"

    await http.post(faults, json={"error_rate": 0.5, "error_status": 500})
    statuses = [(await http.post(f"{url}/v1/completions", json=BODY)).status_code for _ in range(40)]
    assert 5 <= statuses.count(500) <= 35 and statuses.count(200) == 40 - statuses.count(500)

    await http.post(faults, json={"error_rate": 0})
    assert (await http.post(f"{url}/v1/completions", json=BODY)).status_code == 200
    bad = await http.post(faults, json={"error_rate": 2})
    assert bad.status_code == 400 and "error_rate" in bad.json()["detail"]
    assert (await http.get(faults)).json()["error_rate"] == 0
    unknown = await http.post(faults, json={"explode": True})
    assert unknown.status_code == 400


async def test_x_return_error_header_forces_a_status(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster()
    response = await http.post(f"{cluster.replicas[0].url}/v1/completions", json=BODY,
                               headers={"x-return-error": "429"})
    assert response.status_code == 429 and response.json()["error"]["type"] == "TooManyRequestsError"


async def test_added_latency(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster(time_scale=10.0)
    replica = cluster.replicas[0]
    start = time.perf_counter()
    await http.post(f"{replica.url}/v1/completions", json=BODY)
    baseline = time.perf_counter() - start
    replica.set_faults(added_latency_s=3.0)  # 3 model seconds = 0.3 s wall
    start = time.perf_counter()
    response = await http.post(f"{replica.url}/v1/completions", json=BODY)
    slowed = time.perf_counter() - start
    assert response.status_code == 200
    assert slowed >= 0.29 and slowed > baseline + 0.2


async def test_stall_freezes_progress_until_released(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster(admin=True)
    replica = cluster.replicas[0]
    await http.post(f"{cluster.admin_url}/admin/replicas/{replica.name}/faults", json={"stalled": True})
    task = asyncio.create_task(stream_completion(http, replica.url, BODY))

    async def waiting() -> bool:
        return (await scrape(http, replica.url))["vllm:num_requests_waiting"] == 1

    await async_wait_until(waiting, 5, interval=0.02)
    steps = replica.engine.steps
    await asyncio.sleep(0.3)
    assert not task.done() and replica.engine.steps == steps
    assert (await http.get(f"{replica.url}/health")).status_code == 200, "a stalled engine still answers health"
    await http.post(f"{cluster.admin_url}/admin/replicas/{replica.name}/faults", json={"stalled": False})
    result = await asyncio.wait_for(task, 10)
    assert result.done and result.usage is not None and result.usage["completion_tokens"] == 4


async def test_crash_breaks_streams_and_restart_is_cold(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster(time_scale=5.0)
    replica = cluster.replicas[0]
    url = replica.url
    long_prompt = "cache me please " * 200
    warm = await http.post(f"{url}/v1/completions", json={**BODY, "prompt": long_prompt})
    assert warm.status_code == 200
    stream = asyncio.create_task(stream_completion(http, url, {**BODY, "max_tokens": 2000}))
    await async_wait_until(lambda: _has_running(replica), 5, interval=0.02)
    await replica.crash()
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await asyncio.wait_for(stream, 10)
    with pytest.raises(httpx.ConnectError):
        await http.get(f"{url}/health")

    await replica.restart(startup_delay_s=1.0)  # 0.2 s wall at this scale
    starting = await http.get(f"{url}/health")
    assert starting.status_code == 503
    assert (await http.get(f"{url}/health/ready")).status_code == 503
    assert (await http.post(f"{url}/v1/completions", json=BODY)).status_code == 503

    async def healthy() -> bool:
        return (await http.get(f"{url}/health")).status_code == 200

    await async_wait_until(healthy, 5, interval=0.02)
    m = await scrape(http, url)
    assert m["vllm:prompt_tokens_total"] == 0, "a restarted replica starts from zero"
    again = await http.post(f"{url}/v1/completions", json={**BODY, "prompt": long_prompt})
    assert again.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0, "the prefix cache is cold"


async def _has_running(replica) -> bool:
    return bool(replica.engine.running)


async def test_crash_with_automatic_restart_through_admin(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster(time_scale=10.0, admin=True)
    url = cluster.replicas[0].url
    response = await http.post(f"{cluster.admin_url}/admin/replicas/0/crash",
                               json={"restart_after_s": 3.0, "startup_delay_s": 2.0})
    assert response.status_code == 200 and response.json()["state"] == "crashed"

    async def down() -> bool:
        try:
            await http.get(f"{url}/health")
        except httpx.TransportError:  # refused, or accepted and dropped by the crash
            return True
        return False

    await async_wait_until(down, 5, interval=0.005)

    async def status(code: int) -> bool:
        try:
            return (await http.get(f"{url}/health")).status_code == code
        except httpx.TransportError:
            return False

    await async_wait_until(lambda: status(503), 5, interval=0.01)  # back, but starting
    await async_wait_until(lambda: status(200), 5, interval=0.02)
    assert cluster.replicas[0].restarts == 1


async def test_startup_delay_from_config(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster(startup_delay_s=4.0, time_scale=10.0)
    url = cluster.replicas[0].url
    assert (await http.get(f"{url}/health/ready")).status_code == 503
    assert (await http.get(f"{url}/metrics")).status_code == 200, "metrics are served while starting"

    async def ready() -> bool:
        return (await http.get(f"{url}/health/ready")).status_code == 200

    await async_wait_until(ready, 5, interval=0.02)
    assert (await http.post(f"{url}/v1/completions", json=BODY)).status_code == 200


async def test_client_disconnect_aborts_the_request(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster(time_scale=5.0)
    replica = cluster.replicas[0]
    url = f"{replica.url}/v1/completions"

    async def drained() -> bool:
        m = await scrape(http, replica.url)
        return m["vllm:num_requests_running"] == 0 and m["vllm:kv_cache_usage_perc"] == 0.0

    with pytest.raises(httpx.ReadTimeout):  # non-streaming: the client gives up
        await http.post(url, json={**BODY, "max_tokens": 5000}, timeout=httpx.Timeout(30, read=0.3))
    await async_wait_until(drained, 5, interval=0.02)
    async with http.stream("POST", url, json={**BODY, "max_tokens": 5000, "stream": True}) as response:
        lines = 0
        async for _ in response.aiter_lines():
            lines += 1
            if lines >= 6:
                break  # leaving the block closes the connection mid-stream
    await async_wait_until(drained, 5, interval=0.02)
    m = await scrape(http, replica.url)
    assert m["vllm:request_success_total{finished_reason=abort}"] == 2


async def test_an_engine_error_is_a_500_not_a_hang(make_cluster, http: httpx.AsyncClient, monkeypatch) -> None:
    cluster = await make_cluster()
    replica = cluster.replicas[0]
    engine = replica.engine
    original = engine._commit

    def broken(batch):
        raise RuntimeError("boom")

    monkeypatch.setattr(engine, "_commit", broken)
    failed = await http.post(f"{replica.url}/v1/completions", json=BODY)
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "InternalServerError"
    streamed = await stream_completion(http, replica.url, BODY)
    assert streamed.status == 200 and streamed.done and streamed.text == ""
    monkeypatch.setattr(engine, "_commit", original)
    assert (await http.post(f"{replica.url}/v1/completions", json=BODY)).status_code == 200
