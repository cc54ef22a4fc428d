"""One Envoy of a Gateway's fleet (``infergate envoy``): its bootstrap and its life in a pod.

The bootstrap points Envoy at the controller's xDS server (ADS, reconnecting with back-off
when the controller is away: Envoy keeps serving its last configuration meanwhile), names the
node ``NS/GATEWAY`` and puts the Gateway and the pod IP in the node metadata, so the xDS
server sends only that Gateway's listeners, bound to the pod IP (``xds_server.node_listeners``).
The admin API listens on the pod IP at a fixed port: the readiness probe reads ``/ready``
(200 LIVE once the first configuration is in, 503 once draining).

On SIGTERM (``run_pod_envoy``): fail readiness (``/healthcheck/fail``), drain the listeners
gracefully (``/drain_listeners?graceful``: for the drain time the listeners still accept, and
every answer says ``connection: close``), wait until no request is active and no downstream
connection is in use, then stop Envoy; at most the drain time in all. Envoy (1.40) leaves an
idle HTTP/1 keep-alive connection open while it drains (it closes one only after answering a
request on it), and a request in flight when the drain began had its headers sent without
``connection: close``, so its connection stays open once it ends. Such a connection still in use
(requests keep arriving on it: the service proxy or a client pool pinned it to this pod) gets
its ``connection: close`` answer before Envoy stops; once no request has started for
``idle_close_seconds`` and none is active, what remains is idle and closes with Envoy: waiting
for its client to close it would hold the pod for the whole drain time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from infergate.dataplane.binary import envoy_binary
from infergate.dataplane.envoy import XDS_CLUSTER, EnvoyOptions, _parent_death_wrapper, bootstrap
from infergate.util.procs import terminate
from infergate.util.tls import default_verify_context
from infergate.util.wait import WaitTimeout, async_wait_until

log = logging.getLogger(__name__)

__all__ = ["PodEnvoyOptions", "pod_bootstrap", "run_pod_envoy"]


@dataclass(frozen=True)
class PodEnvoyOptions:
    xds_host: str
    xds_port: int
    node_id: str  # "NS/GATEWAY": the Gateway whose listeners this Envoy serves
    pod_ip: str | None = None  # listeners and the admin API bind here (None: 0.0.0.0)
    admin_port: int = 19001
    log_level: str = "warning"
    drain_seconds: float = 15.0
    # the drain ends once no request has started for this long (open connections are then idle)
    idle_close_seconds: float = 1.0
    concurrency: int = 2
    envoy_bin: str | None = None
    xds_backoff_s: tuple[float, float] = (0.25, 5.0)  # first and largest delay between reconnects

    @property
    def gateway(self) -> str | None:
        return self.node_id if self.node_id.count("/") == 1 else None

    @property
    def admin_host(self) -> str:
        return self.pod_ip or "0.0.0.0"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def pod_bootstrap(options: PodEnvoyOptions) -> dict[str, Any]:
    """The bootstrap of a fleet Envoy (a pure function of ``options``)."""
    base = bootstrap(EnvoyOptions(work_dir=Path("."), xds_address=(options.xds_host, options.xds_port),
                                  node_id=options.node_id, admin_host=options.admin_host))
    metadata: dict[str, str] = {}
    if options.gateway:
        metadata["gateway"] = options.gateway
    if options.pod_ip:
        metadata["pod_ip"] = options.pod_ip
    base["node"] = {"id": options.node_id, "cluster": "infergate", "metadata": metadata}
    base["admin"] = {"address": {"socket_address": {"address": options.admin_host,
                                                    "port_value": options.admin_port}}}
    first, largest = options.xds_backoff_s
    grpc_service = base["dynamic_resources"]["ads_config"]["grpc_services"][0]
    grpc_service["envoy_grpc"]["retry_policy"] = {
        "retry_back_off": {"base_interval": _duration(first), "max_interval": _duration(largest)}}
    cluster = base["static_resources"]["clusters"][0]
    assert cluster["name"] == XDS_CLUSTER
    if not _is_ip(options.xds_host):  # a Service's DNS name on a real cluster
        cluster["type"] = "STRICT_DNS"
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    # The controller may be away for a while (all replicas restarting): keep the TCP connection
    # honest so a dead controller is noticed and another replica is tried.
    cluster["upstream_connection_options"] = {"tcp_keepalive": {"keepalive_time": 10, "keepalive_interval": 5}}
    return base


def envoy_argv(options: PodEnvoyOptions, bootstrap_path: Path) -> list[str]:
    return [
        *_parent_death_wrapper(),
        options.envoy_bin or envoy_binary(),
        "--config-path", str(bootstrap_path),
        "--use-dynamic-base-id",  # several Envoys on one machine (the local runtime's pods)
        "--concurrency", str(options.concurrency),
        "--log-level", options.log_level,
        "--drain-time-s", str(max(1, round(options.drain_seconds))),
        "--drain-strategy", "immediate",
        "--parent-shutdown-time-s", str(max(2, round(options.drain_seconds)) + 1),
    ]


async def _admin_post(client: httpx.AsyncClient, url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        await client.post(url)


@dataclass(frozen=True)
class Downstream:
    """What Envoy's listeners serve now, the admin API's own left out (the drain's polling is
    one of them)."""

    connections: int  # open on the listeners
    active_requests: int
    requests_total: int  # requests started since Envoy started (a counter)


def open_downstream(stats: str) -> Downstream:
    """The :class:`Downstream` of Envoy's ``/stats`` text."""
    connections = active = total = 0
    for line in stats.splitlines():
        name, _, value = line.partition(": ")
        if not value.strip().isdigit() or name.startswith(("listener.admin.", "http.admin.")):
            continue
        if name.startswith("listener.") and name.endswith(".downstream_cx_active") \
                and ".worker_" not in name:  # each worker's share
            connections += int(value)
        elif name.startswith("http.") and name.endswith(".downstream_rq_active"):
            active += int(value)
        elif name.startswith("http.") and name.endswith(".downstream_rq_total"):
            total += int(value)
    return Downstream(connections, active, total)


async def _open_downstream(client: httpx.AsyncClient, admin: str) -> Downstream:
    response = await client.get(f"{admin}/stats", params={"filter": r"downstream_(cx_active|rq_active|rq_total)$"})
    return open_downstream(response.text)


class DrainProgress:
    """When a drain may end, from successive :class:`Downstream` readings: no request active
    and no connection open, or none but idle ones (no request started for ``idle_close_s``)."""

    def __init__(self, idle_close_s: float, now: float) -> None:
        self.idle_close_s = idle_close_s
        self._requests_total: int | None = None
        self._quiet_since = now  # when the last request started (as far as the readings tell)

    def done(self, seen: Downstream, now: float) -> bool:
        if seen.requests_total != self._requests_total:
            if self._requests_total is not None:
                self._quiet_since = now
            self._requests_total = seen.requests_total
        if seen.active_requests:
            return False
        return seen.connections == 0 or now - self._quiet_since >= self.idle_close_s


async def drain(options: PodEnvoyOptions) -> None:
    """Fail readiness, drain the listeners, wait until no request is active and no connection
    in use (at most ``drain_seconds``)."""
    host = options.admin_host if options.admin_host != "0.0.0.0" else "127.0.0.1"
    admin = f"http://{host}:{options.admin_port}"
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(verify=default_verify_context(), timeout=2.0) as client:
        await _admin_post(client, f"{admin}/healthcheck/fail")
        await _admin_post(client, f"{admin}/drain_listeners?graceful")
        progress = DrainProgress(options.idle_close_seconds, loop.time())

        async def idle() -> bool:
            try:
                seen = await _open_downstream(client, admin)
            except httpx.HTTPError:
                return True  # the admin API is gone: nothing left to wait for
            return progress.done(seen, loop.time())

        with contextlib.suppress(WaitTimeout):
            await async_wait_until(idle, options.drain_seconds, interval=0.1,
                                   what="in-flight requests and connections in use to finish")


async def run_pod_envoy(options: PodEnvoyOptions, work_dir: Path, stop: asyncio.Event) -> int:
    """Run Envoy until it exits (its exit code) or ``stop`` is set (drain, then 0)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    bootstrap_path = work_dir / "envoy-bootstrap.json"
    bootstrap_path.write_text(json.dumps(pod_bootstrap(options), indent=2))
    argv = envoy_argv(options, bootstrap_path)
    # Envoy writes to this process's stdout/stderr: the pod's log. With the parent-death signal
    # set, Envoy gets its own process group: a runtime that signals the pod's whole group (the
    # local runtime does) must reach only this process, whose SIGTERM drains; Envoy's own
    # SIGTERM would exit at once, cutting every open stream. It still dies with this process.
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, env=dict(os.environ),
                                                start_new_session=argv[0].endswith("setpriv"))
    exited = asyncio.create_task(proc.wait())
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            code = exited.result()
            log.error("Envoy exited with %s", code)
            return code if code != 0 else 1
        log.info("stopping: draining Envoy for at most %gs", options.drain_seconds)
        await drain(options)
        await terminate(proc, 10.0, name="Envoy")
        return 0
    finally:
        stopping.cancel()
        if proc.returncode is None:
            await terminate(proc, 5.0, name="Envoy")
        with contextlib.suppress(asyncio.CancelledError):
            await exited
