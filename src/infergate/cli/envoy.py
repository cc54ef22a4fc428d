"""`infergate envoy`: one Envoy of a Gateway's fleet (what the controller's Envoy Deployments run)."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path

import click

EPILOG = """\b
Examples:
  infergate envoy --xds-server 10.96.0.12:18000 --node-id default/inference-gateway
  infergate envoy --xds-server infergate-xds.infergate-system:18000 --node-id prod/gw --log-level info

Envoy gets its configuration from the controller (`infergate gateway --data-plane deployments`)
over ADS and keeps serving the last one while the controller is away (it reconnects with
back-off). The node id names the Gateway (NAMESPACE/NAME): only that Gateway's listeners are
sent, bound to the pod IP ($INFERGATE_POD_IP, else --host), so several Envoys on one machine do
not collide. The admin API (readiness: GET /ready) listens on the pod IP at --admin-port.
SIGTERM: readiness fails, listeners drain gracefully (every answer says `connection: close`),
in-flight requests finish and connections still in use get their last answer, for up to
--drain-seconds; once no request has started for --idle-close-seconds (and none is active),
the connections left are idle keep-alive ones and Envoy exits with them.
"""


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--xds-server", required=True, metavar="HOST:PORT",
              help="The controller's xDS (ADS gRPC) address: its Service's clusterIP or DNS name and port.")
@click.option("--node-id", required=True, metavar="NAMESPACE/GATEWAY",
              help="Envoy's node id: the Gateway whose listeners this Envoy serves.")
@click.option("--host", default=None, metavar="IP",
              help="The pod IP listeners and the admin API bind [default: $INFERGATE_POD_IP, else 0.0.0.0].")
@click.option("--admin-port", type=click.IntRange(1, 65535), default=19001, show_default=True,
              help="Envoy's admin port (the readiness probe reads /ready there).")
@click.option("--log-level", type=click.Choice(["trace", "debug", "info", "warning", "error", "critical", "off"]),
              default="warning", show_default=True, help="Envoy's log level.")
@click.option("--drain-seconds", type=click.FloatRange(0, 3600), default=15.0, show_default=True,
              help="On SIGTERM: how long in-flight requests may finish before Envoy exits.")
@click.option("--idle-close-seconds", type=click.FloatRange(0, 3600), default=1.0, show_default=True,
              help="On SIGTERM: once no request has started for this long (none active), exit with "
                   "the idle keep-alive connections still open.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=2, show_default=True,
              help="Envoy worker threads.")
@click.option("--work-dir", type=click.Path(file_okay=False),
              help="Where the bootstrap is written (a temporary directory by default).")
def command(xds_server: str, node_id: str, host: str | None, admin_port: int, log_level: str,
            drain_seconds: float, idle_close_seconds: float, concurrency: int, work_dir: str | None) -> None:
    """Run one Envoy of a Gateway's fleet, configured by the controller over xDS."""
    xds_host, xds_port = _host_port(xds_server)
    if node_id.count("/") != 1 or not all(node_id.split("/")):
        raise click.BadParameter(f"{node_id!r}: expected NAMESPACE/GATEWAY", param_hint="--node-id")
    pod_ip = os.environ.get("INFERGATE_POD_IP") or host or None
    if pod_ip in ("0.0.0.0", "::"):
        pod_ip = None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from infergate.dataplane.envoy_pod import PodEnvoyOptions

    options = PodEnvoyOptions(xds_host=xds_host, xds_port=xds_port, node_id=node_id, pod_ip=pod_ip,
                              admin_port=admin_port, log_level=log_level, drain_seconds=drain_seconds,
                              idle_close_seconds=idle_close_seconds, concurrency=concurrency)
    raise SystemExit(asyncio.run(_main(options, work_dir)))


async def _main(options: object, work_dir: str | None) -> int:
    from infergate.dataplane.envoy_pod import PodEnvoyOptions, run_pod_envoy
    from infergate.util.signals import run_until_signal

    assert isinstance(options, PodEnvoyOptions)
    stop = asyncio.Event()

    async def on_signal() -> None:
        await run_until_signal()
        stop.set()

    watcher = asyncio.create_task(on_signal())
    try:
        if work_dir:
            return await run_pod_envoy(options, Path(work_dir), stop)
        with tempfile.TemporaryDirectory(prefix="infergate-envoy-pod-") as tmp:
            return await run_pod_envoy(options, Path(tmp), stop)
    finally:
        watcher.cancel()
