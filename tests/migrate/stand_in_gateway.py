"""Parts of the stand-in gateways that the migrate runner's tests probe (no Envoy, no EPP):
a smooth weighted round robin over the route's weights, a streamed completion, and each pool
EPP's metrics page with the requests it "scheduled"."""

from __future__ import annotations

import json

from aiohttp import web

from infergate.epp.metrics import EppMetrics


def smooth_weighted_pick(sent: dict[str, dict[str, int]], weights: dict[str, int]) -> str:
    """The pool the next request goes to under ``weights`` (pool -> weight), as a smooth weighted
    round robin; ``sent`` keeps, per set of weights, the requests sent to each pool so far."""
    key = json.dumps(sorted(weights.items()))
    counts = sent.setdefault(key, {})
    total = sum(counts.values()) + 1
    pool = max(weights, key=lambda p: weights[p] * total / max(sum(weights.values()), 1) - counts.get(p, 0))
    counts[pool] = counts.get(pool, 0) + 1
    return pool


async def streamed_completion(epp: dict[str, EppMetrics], pool: str, request: web.Request) -> web.StreamResponse:
    """One streamed completion served by ``pool``, counted by that pool's EPP."""
    epp.setdefault(pool, EppMetrics()).request_total.labels("m", "m").inc()
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b'data: {"choices": [{"index": 0, "text": "ok"}]}\n\ndata: [DONE]\n\n')
    return response


def epp_metrics_page(epp: dict[str, EppMetrics], request: web.Request) -> web.Response:
    """``/epp/{pool}/metrics``: that pool's EPP metrics."""
    page = epp.setdefault(request.match_info["pool"], EppMetrics())
    return web.Response(body=page.render(), content_type="text/plain")
