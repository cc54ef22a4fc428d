"""The simulator's /metrics answers ``name[]`` as vLLM's (prometheus_client's exposition) does."""

from __future__ import annotations

import httpx


async def test_name_filters_restrict_the_page(make_cluster, http: httpx.AsyncClient) -> None:
    cluster = await make_cluster()
    url = f"{cluster.replicas[0].url}/metrics"
    full = (await http.get(url)).text
    wanted = ["vllm:num_requests_waiting", "vllm:request_success_total"]
    restricted = (await http.get(url, params=[("name[]", name) for name in wanted])).text
    samples = {line.split("{", 1)[0].split(" ", 1)[0] for line in restricted.splitlines() if not line.startswith("#")}
    assert samples == set(wanted)
    assert len(restricted) < len(full) / 5
    assert (await http.get(url, params={"name[]": "no_such_series"})).text == ""
