"""The dashboard of one ``infergate migrate run``: the migration panel, the cluster's status beside it.

``MigrationDashboard.events`` is the sink the runner reports to (the page's ``MigrationView``,
and the terminal's rich rendering when the output is a table); ``around(run)`` serves the page
on 127.0.0.1 while the run lasts and prints its URL on stderr.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TextIO

from infergate.dashboard.app import DashboardApp, DashboardServer
from infergate.dashboard.migration import MigrationView
from infergate.dashboard.series import Sampler
from infergate.dashboard.terminal import TerminalSink
from infergate.migrate.events import EventSink, FanOut
from infergate.migrate.runner import RunResult
from infergate.status.kubeapi import KubeReader


class MigrationDashboard:
    def __init__(self, port: int | None, kubeconfig: str | None, context: str | None, namespace: str,
                 route: str | None, *, terminal: bool = True, out: TextIO | None = None) -> None:
        self.port = port
        self.kubeconfig, self.context, self.namespace = kubeconfig, context, namespace
        self.view = MigrationView(route=f"HTTPRoute {namespace}/{route}" if route else f"namespace {namespace}")
        self.out = out or sys.stderr
        sinks: list[EventSink] = [self.view]
        if terminal:
            sinks.append(TerminalSink())
        self.events = FanOut(*sinks)
        self.server: DashboardServer | None = None

    async def around(self, run: Awaitable[RunResult]) -> RunResult:
        reader: KubeReader | None = None
        if self.port is not None:
            reader = KubeReader(self.kubeconfig, self.context, namespace=self.namespace)
            app = DashboardApp(Sampler.for_reader(reader), migration=self.view, title="infergate migrate")
            self.server = DashboardServer(app, "127.0.0.1", self.port)
            await self.server.start()
            print(f"dashboard: {self.server.url}", file=self.out, flush=True)
        try:
            result = await run
            if result.phase == "done":
                self.events.decided("done", result.message)
            return result
        finally:
            if self.server is not None:
                await self.server.stop()
            if reader is not None:  # its client's loop thread and HTTP session
                await asyncio.to_thread(reader.close)
