"""The gateway's own admin endpoint (loopback): health, the current IR and statuses.

    GET /healthz    200 once the process runs
    GET /readyz     200 after a configuration was applied and Envoy ACKed it, else 503
    GET /ir         the current IR (JSON; certificates' private keys redacted)
    GET /statuses   the statuses written by the last reconcile (JSON)
    GET /envoy      Envoy's admin address
    GET /dashboard/ the live dashboard (``infergate.dashboard``), sampled while the admin port runs
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from infergate.controller.render import ir_without_secrets, result_to_plain
from infergate.dashboard.app import DashboardApp
from infergate.dashboard.readers import GatewayViewReader
from infergate.dashboard.series import Sampler

if TYPE_CHECKING:
    from infergate.controller.runner import Reconciler


IDLE_AFTER_S = 120.0


class AdminServer:
    def __init__(self, reconciler: Reconciler, dataplane: Any, host: str, port: int) -> None:
        self.reconciler = reconciler
        self.dataplane = dataplane
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None
        reader = GatewayViewReader(reconciler.provider.snapshot, self._last_statuses, "infergate gateway")
        # sampled from the first page request while a page watches (and IDLE_AFTER_S after), not
        # for every gateway all the time
        self.dashboard = DashboardApp(Sampler.for_reader(reader, idle_after=IDLE_AFTER_S), title="infergate gateway")

    def _last_statuses(self) -> dict[Any, Any]:
        result = self.reconciler.stats.last_result
        return dict(result.statuses) if result else {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/ir", self._ir)
        app.router.add_get("/statuses", self._statuses)
        app.router.add_get("/envoy", self._envoy)
        self.dashboard.mount(app)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        stats = self.reconciler.stats
        if stats.applied and stats.last_error is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {stats.last_error or 'no configuration applied yet'}\n")

    async def _ir(self, request: web.Request) -> web.Response:
        return web.json_response(ir_without_secrets(self.reconciler.stats.last_ir) if self.reconciler.stats.last_ir else {})

    async def _statuses(self, request: web.Request) -> web.Response:
        result = self.reconciler.stats.last_result
        return web.json_response(result_to_plain(result)["statuses"] if result else {})

    async def _envoy(self, request: web.Request) -> web.Response:
        host, port = self.dataplane.admin_address
        return web.json_response({"admin": f"http://{host}:{port}"})

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        assert self.dashboard.sampler is not None
        self.dashboard.sampler.start(on_first_page=True)

    async def stop(self) -> None:
        if self.dashboard.sampler is not None:
            await self.dashboard.sampler.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
