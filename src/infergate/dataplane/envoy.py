"""Envoy supervisor: bootstrap, child process, restart with backoff, drain and stop, readiness.

The supervisor stays Envoy's parent for Envoy's whole life (an Envoy whose short-lived
parent exits gets SIGTERM, envoy-extproc.md "Launch quirk"), and asks the kernel to kill
Envoy if the supervising process dies (``setpriv --pdeathsig``), so no orphan keeps a port.
The admin API listens on loopback only, on a port Envoy picks itself
(``--admin-address-path``), so concurrent gateways never race for a port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from infergate.dataplane.binary import envoy_binary
from infergate.util.procs import spawn_logged, terminate
from infergate.util.tls import default_verify_context
from infergate.util.wait import WaitTimeout, async_wait_until

log = logging.getLogger(__name__)

XDS_CLUSTER = "infergate-xds"


@dataclass(frozen=True)
class EnvoyOptions:
    work_dir: Path  # bootstrap, admin address file and Envoy's log go here
    xds_address: tuple[str, int]
    node_id: str = "infergate"
    envoy_bin: str | None = None
    admin_host: str = "127.0.0.1"
    concurrency: int = 1
    max_downstream_connections: int = 50_000
    log_level: str = "warning"
    drain_time_s: float = 5.0  # how long stop() waits for in-flight requests to finish
    # How long a changed or removed listener's old connections may finish (Envoy --drain-time-s);
    # long, because generations stream for minutes and a listener change must not cut them.
    listener_drain_time_s: float = 600.0
    start_timeout_s: float = 20.0
    restart_backoff_s: tuple[float, float] = (0.2, 5.0)  # first and maximum delay between restarts
    stable_after_s: float = 10.0  # a run this long resets the backoff


def bootstrap(options: EnvoyOptions) -> dict[str, Any]:
    """Envoy's bootstrap: everything dynamic over one ADS stream to our xDS server."""
    host, port = options.xds_address
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": options.node_id, "cluster": "infergate"},
        "admin": {"address": {"socket_address": {"address": options.admin_host, "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                "set_node_on_first_message_only": True,
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {"address": host, "port_value": port}
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
        # A bound on downstream connections (Envoy warns without one).
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": options.max_downstream_connections,
                    },
                }
            ]
        },
        # Internal listeners answer the share of a split that goes to an invalid backend.
        "bootstrap_extensions": [
            {
                "name": "envoy.bootstrap.internal_listener",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"
                },
            }
        ],
    }


class EnvoyError(RuntimeError):
    pass


def _parent_death_wrapper() -> list[str]:
    """``setpriv --pdeathsig KILL`` when available: Envoy dies with its supervisor.

    Not a ``preexec_fn``: running Python between fork and exec in a process with gRPC
    threads (the xDS server) can abort the child; ``setpriv`` keeps the spawn a plain
    fork+exec (vfork) and sets the signal in the exec'd program.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL"] if setpriv else []


class EnvoySupervisor:
    """Runs one Envoy; ``await start()`` returns when its admin API answers."""

    def __init__(self, options: EnvoyOptions) -> None:
        self.options = options
        self._proc: asyncio.subprocess.Process | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self._admin: tuple[str, int] | None = None
        self.restarts = 0
        self.exits: list[int] = []  # exit codes of Envoy processes that ended unexpectedly
        options.work_dir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_path = options.work_dir / "envoy-bootstrap.json"
        self.admin_path = options.work_dir / "envoy-admin-address"
        self.log_path = options.work_dir / "envoy.log"

    # ---------------------------------------------------------------- properties

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    @property
    def admin_address(self) -> tuple[str, int]:
        if self._admin is None:
            raise EnvoyError("Envoy has not started")
        return self._admin

    @property
    def admin_url(self) -> str:
        host, port = self.admin_address
        return f"http://{host}:{port}"

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.bootstrap_path.write_text(json.dumps(bootstrap(self.options), indent=2))
        await self._spawn()
        self._monitor = asyncio.create_task(self._watch(), name="envoy-supervisor")

    async def _spawn(self) -> None:
        opts = self.options
        with contextlib.suppress(FileNotFoundError):
            self.admin_path.unlink()
        args = [
            *_parent_death_wrapper(),
            opts.envoy_bin or envoy_binary(),
            "--config-path",
            str(self.bootstrap_path),
            "--use-dynamic-base-id",
            "--admin-address-path",
            str(self.admin_path),
            "--concurrency",
            str(opts.concurrency),
            "--log-level",
            opts.log_level,
            "--drain-time-s",
            str(max(1, round(opts.listener_drain_time_s))),
            "--drain-strategy",
            "immediate",  # idle old connections close at once; in-flight ones get the drain time
            "--file-flush-interval-msec",
            "1000",  # access log lines reach the log within a second (default 10 s)
            "--parent-shutdown-time-s",
            str(max(2, round(opts.listener_drain_time_s)) + 1),
        ]
        # Envoy stays in its supervisor's process group: whoever stops the supervisor's group
        # (``infergate up``, a test's ManagedProcess) stops Envoy with it.
        self._proc = await spawn_logged(args, self.log_path, new_session=False)
        self._admin = None
        await self._wait_admin(self._proc)

    async def _wait_admin(self, proc: asyncio.subprocess.Process) -> None:
        async def admin_live() -> bool:
            if proc.returncode is not None:
                raise EnvoyError(
                    f"Envoy exited with {proc.returncode} during start-up; see {self.log_path}:\n{self.log_tail()}"
                )
            text = self.admin_path.read_text().strip() if self.admin_path.exists() else ""
            if text and ":" in text:
                host, _, port = text.rpartition(":")
                self._admin = (host, int(port))
                return await self.live()
            return False

        try:
            await async_wait_until(admin_live, self.options.start_timeout_s, what="Envoy's admin API")
        except WaitTimeout:
            raise EnvoyError(
                f"Envoy's admin API did not answer within {self.options.start_timeout_s:g}s; see {self.log_path}"
            ) from None

    async def _watch(self) -> None:
        opts = self.options
        delay = opts.restart_backoff_s[0]
        while not self._stopping:
            proc = self._proc
            assert proc is not None
            started = time.monotonic()
            code = await proc.wait()
            if self._stopping:
                return
            self.exits.append(code)
            if time.monotonic() - started >= opts.stable_after_s:
                delay = opts.restart_backoff_s[0]
            log.error("Envoy (pid %s) exited with %s; restarting in %.1fs", proc.pid, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, opts.restart_backoff_s[1])
            if self._stopping:
                return
            try:
                await self._spawn()
                self.restarts += 1
            except EnvoyError as exc:
                log.error("Envoy restart failed: %s", exc)

    async def stop(self, *, drain: bool = True, timeout: float = 10.0) -> None:
        """Drain listeners (in-flight requests finish, new connections are refused), then exit."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if drain and self._admin is not None:
                with contextlib.suppress(httpx.HTTPError):
                    async with httpx.AsyncClient(verify=default_verify_context(), timeout=1.0) as client:
                        await client.post(f"{self.admin_url}/drain_listeners?graceful")
                await self._wait_idle(min(self.options.drain_time_s, timeout))
            await terminate(proc, timeout, name="Envoy")
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor

    async def _wait_idle(self, timeout: float) -> None:
        """Until no downstream request is active, at most ``timeout`` seconds (then go on anyway)."""

        async def idle() -> bool:
            stats = await self.stats("downstream_rq_active")
            active = sum(
                v
                for k, v in stats.items()
                if k.startswith("http.")
                and not k.startswith("http.admin.")
                and k.endswith("downstream_rq_active")
            )
            return active == 0

        with contextlib.suppress(WaitTimeout):
            await async_wait_until(idle, timeout, interval=0.1, what="in-flight requests to finish")

    async def __aenter__(self) -> EnvoySupervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- admin API

    async def live(self) -> bool:
        """True when Envoy's admin ``/ready`` says LIVE (initial xDS fetch done)."""
        if self._admin is None:
            return False
        try:
            async with httpx.AsyncClient(verify=default_verify_context(), timeout=1.0) as client:
                response = await client.get(f"{self.admin_url}/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.text.strip() == "LIVE"

    async def wait_live(self, timeout: float = 10.0) -> None:
        try:
            await async_wait_until(self.live, timeout, what="Envoy to be LIVE")
        except WaitTimeout:
            raise EnvoyError(f"Envoy not LIVE within {timeout:g}s") from None

    async def stats(self, contains: str = "") -> dict[str, int]:
        """Counters and gauges whose name contains ``contains`` (``/stats?filter=``)."""
        try:
            async with httpx.AsyncClient(verify=default_verify_context(), timeout=2.0) as client:
                response = await client.get(
                    f"{self.admin_url}/stats", params={"filter": contains} if contains else None
                )
        except (httpx.HTTPError, EnvoyError):
            return {}
        out: dict[str, int] = {}
        for line in response.text.splitlines():
            name, _, value = line.partition(": ")
            with contextlib.suppress(ValueError):
                out[name] = int(value)
        return out

    async def in_flight_by_cluster(self) -> dict[str, int]:
        """Active plus pending upstream requests per cluster (``/clusters?format=json``)."""
        async with httpx.AsyncClient(verify=default_verify_context(), timeout=2.0) as client:
            response = await client.get(f"{self.admin_url}/clusters", params={"format": "json"})
        response.raise_for_status()
        out: dict[str, int] = {}
        for cluster in response.json().get("cluster_statuses", []):
            total = 0
            for host in cluster.get("host_statuses", []):
                for stat in host.get("stats", []):
                    if stat.get("name") in ("rq_active", "rq_pending_active"):
                        total += int(stat.get("value", 0))
            out[cluster["name"]] = total
        return out

    async def idle_clusters(self, names: set[str]) -> set[str]:
        """The clusters among ``names`` with no request in flight (absent ones count as idle)."""
        in_flight = await self.in_flight_by_cluster()
        return {name for name in names if in_flight.get(name, 0) == 0}

    async def wait_clusters_warm(self, timeout: float) -> None:
        """Until ``cluster_manager.warming_clusters`` is 0 (raises ``EnvoyError`` on timeout)."""

        async def warm() -> bool:
            stats = await self.stats("cluster_manager.warming_clusters")
            return stats.get("cluster_manager.warming_clusters", 0) == 0

        try:
            await async_wait_until(warm, timeout, interval=0.02, what="clusters to warm")
        except WaitTimeout:
            raise EnvoyError(f"clusters still warming after {timeout:g}s") from None

    async def config_dump(self) -> dict[str, Any]:
        async with httpx.AsyncClient(verify=default_verify_context(), timeout=5.0) as client:
            response = await client.get(f"{self.admin_url}/config_dump", params={"include_eds": ""})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

