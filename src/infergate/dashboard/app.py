"""The dashboard's HTTP routes, mounted on any aiohttp application, and a standalone server.

    GET /dashboard/                  the page (static, bundled: no CDN)
    GET /dashboard/static/NAME       its script and style sheet
    GET /dashboard/api/status        the newest status snapshot (``infergate status -o json``)
    GET /dashboard/api/series        the sampled time series (oldest first, bounded)
    GET /dashboard/api/migration     the migration in progress (``null`` when there is none)
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from infergate.dashboard.migration import MigrationView
from infergate.dashboard.series import Sampler

STATIC_FILES = {"index.html": "text/html", "dashboard.js": "text/javascript", "dashboard.css": "text/css"}
PREFIX = "/dashboard"


def _static(name: str) -> bytes:
    return resources.files("infergate.dashboard").joinpath("static", name).read_bytes()


@dataclass
class DashboardApp:
    sampler: Sampler | None = None  # None: no status (a migration alone)
    migration: MigrationView | None = None
    title: str = "infergate"

    def mount(self, app: web.Application) -> None:
        app.router.add_get(PREFIX, self._redirect)
        app.router.add_get(PREFIX + "/", self._index)
        app.router.add_get(PREFIX + "/static/{name}", self._file)
        app.router.add_get(PREFIX + "/api/status", self._status)
        app.router.add_get(PREFIX + "/api/series", self._series)
        app.router.add_get(PREFIX + "/api/migration", self._migration)

    async def _redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(PREFIX + "/")

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=_static("index.html"), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound(text=f"no dashboard file {name!r}\n")
        return web.Response(body=_static(name), content_type=STATIC_FILES[name], charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def _status(self, request: web.Request) -> web.Response:
        if self.sampler is not None:
            self.sampler.touch()
        if self.sampler is None:
            return web.json_response({"error": "this dashboard shows a migration only"}, status=404)
        if self.sampler.latest is None:
            return web.json_response({"error": self.sampler.last_error or "no sample yet"}, status=503)
        data: dict[str, Any] = self.sampler.latest.to_dict()
        data["title"] = self.title
        data["sampler_error"] = self.sampler.last_error
        return web.json_response(data)

    async def _series(self, request: web.Request) -> web.Response:
        if self.sampler is not None:
            self.sampler.touch()
        samples = self.sampler.series() if self.sampler is not None else []
        capacity = self.sampler.samples.maxlen if self.sampler is not None else 0
        return web.json_response({"capacity": capacity, "samples": samples})

    async def _migration(self, request: web.Request) -> web.Response:
        return web.json_response(self.migration.to_dict() if self.migration is not None else None)


class DashboardServer:
    """The dashboard alone on its own port (``infergate serve``, ``infergate migrate run``)."""

    def __init__(self, dashboard: DashboardApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.dashboard = dashboard
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}{PREFIX}/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._root)
        self.dashboard.mount(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])
        if self.dashboard.sampler is not None:
            self.dashboard.sampler.start()

    async def _root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(PREFIX + "/")

    async def stop(self) -> None:
        if self.dashboard.sampler is not None:
            await self.dashboard.sampler.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
