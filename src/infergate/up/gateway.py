"""The gateway controller of `infergate up`: ``infergate gateway --kubeconfig`` as a supervised child.

It runs in its own process group (Envoy with it), is restarted with backoff if it exits, and
is stopped with SIGTERM (SIGKILL to the group after a grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from infergate.apiserver.runtime.process import ENTRYPOINT
from infergate.util.procs import spawn_logged, terminate
from infergate.util.wait import WaitTimeout, async_wait_until

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayProcessOptions:
    kubeconfig: Path
    work_dir: Path
    log_path: Path
    admin_port: int
    controller_name: str
    gateway_classes: tuple[str, ...] = ()
    address_pool: str = "127.0.2.0/24"
    envoy_log_level: str = "warning"


class GatewayProcess:
    def __init__(self, options: GatewayProcessOptions, python: str = sys.executable) -> None:
        self.options = options
        self.python = python
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.options.admin_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def argv(self) -> list[str]:
        o = self.options
        argv = [self.python, *ENTRYPOINT, "gateway", "--kubeconfig", str(o.kubeconfig),
                "--controller-name", o.controller_name, "--address-pool", o.address_pool,
                "--admin-port", str(o.admin_port), "--work-dir", str(o.work_dir),
                "--envoy-log-level", o.envoy_log_level, "-v"]
        for name in o.gateway_classes:
            argv += ["--gateway-class", name]
        return argv

    async def start(self, timeout: float = 60.0) -> None:
        """Start and wait until the gateway's /readyz answers 200 (its first configuration ACKed)."""
        task = self._task = asyncio.create_task(self._supervise(), name="gateway supervisor")
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                if task.done():
                    task.result()  # the supervisor failed: raise its error
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.admin_url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        return r.status == 200
                return False

            try:
                await async_wait_until(ready, timeout, interval=0.2, what="the gateway's /readyz")
            except WaitTimeout:
                raise TimeoutError(
                    f"the gateway was not ready within {timeout:.0f}s; see {self.options.log_path}") from None

    async def _supervise(self) -> None:
        delay = 1.0
        self.options.work_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "INFERGATE_PARENT_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        env.pop("KUBECONFIG", None)
        while not self._stopping.is_set():
            started = time.monotonic()
            self._proc = await spawn_logged(self.argv(), self.options.log_path, env=env)
            code = await self._proc.wait()
            if self._stopping.is_set():
                return
            delay = 1.0 if time.monotonic() - started > 30 else min(delay * 2, 30.0)
            self.restarts += 1
            log.warning("the gateway exited with %s; restarting in %.0fs (log: %s)", code, delay,
                        self.options.log_path)
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that comes with
            # the stop, and the loop then outlived its cancel
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()

    async def stop(self, grace: float = 15.0) -> None:
        self._stopping.set()
        if self._proc is not None:
            await terminate(self._proc, grace, name="the gateway")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

