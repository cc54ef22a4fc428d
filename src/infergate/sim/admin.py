"""The simulator's fault-injection API, served only on its own admin port (``--admin-port``).

It is never on a replica's serving port: whatever can reach the serving port (the gateway,
and through it any client) must not be able to crash, stall or slow a replica. The admin
port is off by default and binds 127.0.0.1 unless told otherwise.

    GET  /admin/replicas                         every replica's state
    GET  /admin/replicas/<index|name>            one replica's state
    GET  /admin/replicas/<index|name>/faults     its faults
    POST /admin/replicas/<index|name>/faults     {error_rate, error_status, added_latency_s, stalled}
    POST /admin/replicas/<index|name>/crash      {restart_after_s: s|null, startup_delay_s: d}
    POST /admin/replicas/<index|name>/restart    {startup_delay_s: d}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from infergate.sim import params
from infergate.sim.replica import Replica

Lookup = Callable[[str], Replica]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def lifecycle_args(body: dict[str, Any]) -> tuple[float | None, float]:
    """``restart_after_s`` (a number >= 0 or null) and ``startup_delay_s`` (a number >= 0)."""
    restart_after = body.get("restart_after_s")
    startup = body.get("startup_delay_s", 0.0)
    if restart_after is not None and (isinstance(restart_after, bool) or not isinstance(restart_after, int | float)
                                      or not 0 <= restart_after < float("inf")):
        raise _Refused(400, "restart_after_s: must be a number >= 0 or null")
    if isinstance(startup, bool) or not isinstance(startup, int | float) or not 0 <= startup < float("inf"):
        raise _Refused(400, "startup_delay_s: must be a number >= 0")
    return (float(restart_after) if restart_after is not None else None), float(startup)


def build_app(replicas: Sequence[Replica], lookup: Lookup) -> web.Application:
    """The admin application over ``replicas``; ``lookup`` finds one by index or name (KeyError)."""

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except _Refused as exc:
            return _json({"detail": exc.detail}, exc.status)

    def find(request: web.Request) -> Replica:
        try:
            return lookup(request.match_info["key"])
        except KeyError as exc:
            raise _Refused(404, str(exc.args[0] if exc.args else exc)) from None

    async def body_of(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = params.decode_body(raw)
        except params.ParamError as exc:
            raise _Refused(400, exc.message) from None
        if not isinstance(body, dict):
            raise _Refused(400, "expected a JSON object")
        return body

    async def list_all(request: web.Request) -> web.Response:
        return _json([r.describe() for r in replicas])

    async def get_one(request: web.Request) -> web.Response:
        return _json(find(request).describe())

    async def faults(request: web.Request) -> web.Response:
        replica = find(request)
        if request.method == "POST":
            try:
                replica.set_faults(**await body_of(request))
            except (ValueError, TypeError) as exc:
                raise _Refused(400, str(exc)) from None
        return _json(dataclasses.asdict(replica.faults))

    async def crash(request: web.Request) -> web.Response:
        replica = find(request)
        restart_after, startup = lifecycle_args(await body_of(request))
        try:
            await replica.crash(restart_after, startup)
        except RuntimeError as exc:
            raise _Refused(409, str(exc)) from None
        return _json(replica.describe())

    async def restart(request: web.Request) -> web.Response:
        replica = find(request)
        _, startup = lifecycle_args(await body_of(request))
        await replica.restart(startup)
        return _json(replica.describe())

    app = web.Application(middlewares=[errors])
    r = app.router
    r.add_get("/admin/replicas", list_all)
    r.add_get("/admin/replicas/{key}", get_one)
    r.add_get("/admin/replicas/{key}/faults", faults)
    r.add_post("/admin/replicas/{key}/faults", faults)
    r.add_post("/admin/replicas/{key}/crash", crash)
    r.add_post("/admin/replicas/{key}/restart", restart)
    return app
