"""Gateway API route features on real Envoy: matches, filters, Service backends, listeners."""

from __future__ import annotations

import httpx
import pytest

from infergate.dataplane import Dataplane
from infergate.ir import (
    Backend,
    DataplaneConfig,
    EndpointPicker,
    HeaderMatch,
    HeaderModifier,
    HeaderValue,
    Listener,
    Pool,
    QueryParamMatch,
    Redirect,
    Route,
    RouteMatch,
    Service,
    URLRewrite,
    VirtualHost,
)
from infergate.util.net import free_port

from .support import EchoServers, post_reading_early_response, running

pytestmark = pytest.mark.e2e


async def test_matches_filters_redirects_and_rewrites(dataplane: Dataplane) -> None:
    pods = EchoServers(1)
    port = free_port()
    async with running(pods):
        svc = Service("service/d/echo/80", "d", "echo", 80, pods.endpoints)
        to_svc = (Backend("service", 1, svc.key),)
        routes = (
            Route(
                "exact",
                RouteMatch(
                    path_type="Exact",
                    path="/exact",
                    method="POST",
                    headers=(HeaderMatch("x-tier", "gold"),),
                    query_params=(QueryParamMatch("debug", "1"),),
                ),
                to_svc,
                request_headers=HeaderModifier(set=(HeaderValue("x-epp-name", "set-by-route"),)),
                response_headers=HeaderModifier(add=(HeaderValue("x-served-by", "infergate"),)),
            ),
            Route("regex", RouteMatch(path_type="RegularExpression", path="/models/[a-z]+"), to_svc,
                  url_rewrite=URLRewrite(path="/replaced")),
            Route("prefix", RouteMatch(path="/api/"), to_svc, url_rewrite=URLRewrite(prefix_path="/")),
            Route("redirect", RouteMatch(path="/old"), (), redirect=Redirect(hostname="new.example.com", prefix_path="/new", status_code=301)),
            Route("catch-all", RouteMatch(path="/"), (), direct_status=418),
        )  # fmt: skip
        listener = Listener("gw/a", "d", "a", "127.0.0.1", port, (VirtualHost("v", ("*",), routes),))
        await dataplane.apply(DataplaneConfig(listeners=(listener,), services=(svc,)))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            exact = await client.post("/exact?debug=1", headers={"x-tier": "gold"}, json={})
            wrong_method = await client.get("/exact?debug=1", headers={"x-tier": "gold"})
            wrong_query = await client.post("/exact?debug=2", headers={"x-tier": "gold"}, json={})
            regex = await client.get("/models/llama")
            regex_miss = await client.get("/models/L1")
            prefix = await client.get("/api/v1/x")
            not_prefix = await client.get("/apixyz")
            redirect = await client.get("/old/page")
    assert exact.status_code == 200
    assert exact.json()["epp"] == "set-by-route"  # request header set by the route
    assert exact.headers["x-served-by"] == "infergate"
    assert (wrong_method.status_code, wrong_query.status_code) == (418, 418)
    assert (regex.status_code, regex.json()["path"]) == (200, "/replaced")
    assert regex_miss.status_code == 418
    assert (prefix.status_code, prefix.json()["path"]) == (200, "/v1/x")
    assert not_prefix.status_code == 418  # /api/ is a path-segment prefix, not a string prefix
    assert redirect.status_code == 301
    assert redirect.headers["location"] == "http://new.example.com/new/page"


async def test_two_listeners_empty_pool_unresolved_epp_and_body_limit(dataplane: Dataplane) -> None:
    pods = EchoServers(2)
    first, second, third = free_port(), free_port(), free_port()
    async with running(pods):
        empty = Pool("pool/empty", "g", "d", "empty", (80,), (), EndpointPicker("epp/e", (), "FailOpen"))
        unresolved_open = Pool(
            "pool/uo", "g", "d", "uo", (pods.port,), pods.endpoints, EndpointPicker("epp/u", (), "FailOpen")
        )
        unresolved_close = Pool(
            "pool/uc", "g", "d", "uc", (pods.port,), pods.endpoints, EndpointPicker("epp/u", (), "FailClose")
        )
        a_routes = (
            Route("empty", RouteMatch(path="/empty"), (Backend("pool", 1, "pool/empty"),)),
            Route("open", RouteMatch(path="/open"), (Backend("pool", 1, "pool/uo"),)),
            Route("close", RouteMatch(path="/close"), (Backend("pool", 1, "pool/uc"),)),
        )
        b_routes = (Route("b", RouteMatch(), (Backend("pool", 1, "pool/uo"),)),)
        listeners = (
            Listener("gw/a", "d", "a", "127.0.0.1", first, (VirtualHost("a", ("*",), a_routes),)),
            Listener(
                "gw/b", "d", "b", "127.0.0.1", second, (VirtualHost("b", ("b.example.com",), b_routes),)
            ),
            Listener("gw/c", "d", "c", "127.0.0.1", third, ()),  # a Gateway without routes yet
        )
        await dataplane.apply(
            DataplaneConfig(listeners=listeners, pools=(empty, unresolved_open, unresolved_close))
        )
        async with httpx.AsyncClient(timeout=10) as client:
            a = f"http://127.0.0.1:{first}"
            no_pods = await client.post(f"{a}/empty", json={"model": "m"})
            opened = await client.post(f"{a}/open", json={"model": "m"})
            closed = await client.post(f"{a}/close", json={"model": "m"})
            too_big, _ = await post_reading_early_response(
                first, "/open", b"x" * (9 * 1024 * 1024), {"content-type": "application/json"}
            )
            b_host = await client.get(f"http://127.0.0.1:{second}/", headers={"host": "b.example.com"})
            b_other = await client.get(f"http://127.0.0.1:{second}/", headers={"host": "a.example.com"})
            no_routes = await client.get(f"http://127.0.0.1:{third}/v1/models")
            b_with_port = await client.get(
                f"http://127.0.0.1:{second}/", headers={"host": f"b.example.com:{second}"}
            )
    assert no_pods.status_code == 503
    assert opened.status_code == 200
    assert closed.status_code == 500  # an unresolved EPP is a dead EPP: Envoy's default, as upstream
    assert too_big == 413
    assert no_routes.status_code == 404
    assert (b_host.status_code, b_other.status_code, b_with_port.status_code) == (200, 404, 200)
