"""`infergate gateway`: the gateway controller, xDS server and Envoy in one process.

Imports stay light: the controller and data plane are imported when the command runs.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import click

# the stop's bound beyond Envoy's drain: the controller, the provider and Envoy's own exit
STOP_GRACE_S = 15.0

EPILOG = """\b
Examples:
  infergate gateway -f ./manifests                       # standalone, manifests watched
  infergate gateway --kubeconfig ~/.infergate/kubeconfig # against an API server
  infergate gateway -f ./m --gateway-class gke-l7-regional-external-managed

Gateways of a GatewayClass whose spec.controllerName is --controller-name are served,
plus those of every --gateway-class. Each Gateway gets its own loopback address from
--address-pool (stable per Gateway, reported in status.addresses); with
--address-mode cluster listeners bind 0.0.0.0 and --external-address is reported.
Once the first configuration is live, one line is printed on stdout:
"ready NS/GATEWAY=http://ADDRESS:PORT ...".
EPPs run as their own processes (`infergate epp`): a pool's endpointPickerRef Service
resolves to its ready pods, its EndpointSlices, or (no selector) its clusterIP.

\b
Data planes (--data-plane):
  process      one Envoy, this process's child, serves every Gateway (default)
  deployments  no local Envoy: the xDS server listens on --xds-address and each Gateway
               gets an Envoy Deployment, Service and PodDisruptionBudget (owned by the
               Gateway) running `infergate envoy` from --envoy-image against the clusterIP
               of --xds-service. Knobs: the GatewayClass's parametersRef ConfigMap
               (replicas, serviceType, serviceAnnotations, resources, logLevel,
               extProcTimeout, responseBodyMode); see docs/gateway.md.
  infergate gateway --in-cluster --data-plane deployments \\
      --xds-service infergate-system/infergate-xds:18000
"""


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--manifests", "manifests_dir", type=click.Path(file_okay=False, exists=True),
              help="Read resources from this directory of YAML/JSON manifests (watched for changes).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, exists=True),
              help="Read resources from the Kubernetes API server of this kubeconfig (list+watch) "
                   "and write statuses there.")
@click.option("--context", "kube_context", help="kubeconfig context to use.")
@click.option("--in-cluster", is_flag=True, help="Use the in-cluster service account config.")
@click.option("--gateway-class", "gateway_classes", multiple=True, metavar="NAME",
              help="Also serve Gateways of this GatewayClass, whatever its controllerName (repeatable).")
@click.option("--controller-name", default="infergate.io/gateway-controller", show_default=True,
              help="GatewayClass spec.controllerName this gateway implements.")
@click.option("--address-mode", type=click.Choice(["loopback", "cluster"]), default="loopback", show_default=True,
              help="loopback: one address per Gateway from --address-pool; cluster: bind 0.0.0.0.")
@click.option("--address-pool", default="127.0.2.0/24", show_default=True,
              help="Loopback network Gateway addresses are taken from (loopback mode).")
@click.option("--external-address", default=lambda: os.environ.get("POD_IP"),
              help="Address reported in Gateway status.addresses in cluster mode [default: $POD_IP].")
@click.option("--status-file", type=click.Path(dir_okay=False),
              help="With -f: also write the computed statuses to this YAML file.")
@click.option("--poll-interval", type=float, default=0.5, show_default=True,
              help="With -f: seconds between scans of the manifest directory.")
@click.option("--admin-port", type=int, default=None,
              help="Serve the gateway admin endpoint (/healthz, /readyz, /ir, /statuses, /envoy) on this "
                   "loopback port.")
@click.option("--admin-host", default="127.0.0.1", show_default=True, help="Address of the admin endpoint.")
@click.option("--work-dir", type=click.Path(file_okay=False),
              help="Directory for Envoy's bootstrap and log (a temporary one by default).")
@click.option("--envoy-concurrency", type=int, default=1, show_default=True, help="Envoy worker threads.")
@click.option("--envoy-log-level", default="warning", show_default=True, help="Envoy's log level.")
@click.option("--data-plane", type=click.Choice(["process", "deployments"]), default="process", show_default=True,
              help="process: one local Envoy child; deployments: an Envoy Deployment per Gateway, configured "
                   "over xDS from here (needs an API server).")
@click.option("--xds-address", default="0.0.0.0:18000", show_default=True, metavar="HOST:PORT",
              help="deployments: where the xDS (ADS gRPC) server listens (0.0.0.0 is the pod IP in a pod).")
@click.option("--xds-service", default=None, metavar="NAMESPACE/NAME:PORT",
              help="deployments: the Service in front of the xDS server; Envoy pods dial its clusterIP and PORT "
                   "[default: the --xds-address host, or this pod's IP].")
@click.option("--envoy-image", default=None, metavar="IMAGE",
              help="deployments: the image of the Envoy pods (it runs `infergate envoy`) "
                   "[default: ghcr.io/infergate/infergate:VERSION].")
@click.option("--envoy-drain-seconds", type=click.FloatRange(0, 3600), default=15.0, show_default=True,
              help="deployments: how long a stopping Envoy pod lets requests finish.")
@click.option("--leader-elect", is_flag=True,
              help="deployments: only the holder of the Lease infergate-gateway-controller writes statuses and "
                   "Envoy objects (run several replicas; every replica serves xDS).")
@click.option("--leader-election-namespace", default=lambda: os.environ.get("POD_NAMESPACE") or "default",
              help="Namespace of the leader-election Lease [default: $POD_NAMESPACE, else default].")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def command(manifests_dir: str | None, kubeconfig: str | None, kube_context: str | None, in_cluster: bool,
            gateway_classes: tuple[str, ...], controller_name: str, address_mode: str, address_pool: str,
            external_address: str | None, status_file: str | None, poll_interval: float,
            admin_port: int | None, admin_host: str, work_dir: str | None, envoy_concurrency: int,
            envoy_log_level: str, data_plane: str, xds_address: str, xds_service: str | None,
            envoy_image: str | None, envoy_drain_seconds: float, leader_elect: bool,
            leader_election_namespace: str, verbose: int) -> None:
    """Run the gateway controller, xDS server and Envoy for Gateway API + InferencePool resources."""
    sources = [bool(manifests_dir), bool(kubeconfig or kube_context), in_cluster]
    if sum(sources) != 1:
        raise click.UsageError("give exactly one source: -f DIR, --kubeconfig PATH (or --context), or --in-cluster")
    if status_file and not manifests_dir:
        raise click.UsageError("--status-file: only with -f (with an API server, statuses are written there)")
    if leader_elect and data_plane != "deployments":
        raise click.UsageError("--leader-elect: only with --data-plane deployments")
    if data_plane == "deployments" and manifests_dir:
        raise click.UsageError("--data-plane deployments: needs an API server (--kubeconfig or --in-cluster), not -f")
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("infergate.controller.runner").setLevel(min(level, logging.INFO))

    from infergate.gateway import (
        DEFAULT_ENVOY_IMAGE,
        GatewayConfig,
        run_gateway,
        split_host_port,
        split_service,
    )
    from infergate.util.listening import CannotListen
    from infergate.util.signals import Stopped, run_until_stopped

    try:
        split_host_port(xds_address, "--xds-address")
        if xds_service:
            split_service(xds_service)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    config = GatewayConfig(
        manifests_dir=manifests_dir, kubeconfig=kubeconfig, kube_context=kube_context, in_cluster=in_cluster,
        gateway_classes=gateway_classes, controller_name=controller_name, address_mode=address_mode,
        address_pool=address_pool, external_address=external_address, status_file=status_file,
        poll_interval=poll_interval, admin_host=admin_host, admin_port=admin_port, work_dir=work_dir,
        envoy_concurrency=envoy_concurrency, envoy_log_level=envoy_log_level, data_plane=data_plane,
        xds_address=xds_address, xds_service=xds_service, envoy_image=envoy_image or DEFAULT_ENVOY_IMAGE,
        envoy_drain_seconds=envoy_drain_seconds, leader_elect=leader_elect,
        leader_election_namespace=leader_election_namespace,
    )
    def say(sig: signal.Signals) -> None:
        click.echo(f"received {sig.name}: stopping the gateway (Envoy, the controller)", err=True)

    try:  # SIGTERM and Ctrl-C stop it, Envoy included; a stop is a normal end (exit 0)
        run_until_stopped(run_gateway(config, on_reconciled=_announce), on_signal=say,
                          grace=envoy_drain_seconds + STOP_GRACE_S)
    except Stopped as stop:
        if not stop.finished:
            click.echo(f"infergate gateway: {stop}", err=True)
            raise SystemExit(stop.exit_code) from None
    except ValueError as exc:  # e.g. an address pool outside 127.0.0.0/8
        raise click.UsageError(str(exc)) from exc
    except CannotListen as exc:  # "cannot start (--admin-port N): why"
        raise click.ClickException(str(exc)) from None


def _announce(result: Any, dataplane: Any) -> None:
    if hasattr(dataplane, "synced_gateways"):  # deployments: the Envoys are pods, not this process's child
        host, port = dataplane.xds_address
        gateways = sorted({f"{lst.gateway_namespace}/{lst.gateway_name}" for lst in result.ir.listeners})
        click.echo(f"xDS server on {host}:{port}; Gateways: {', '.join(gateways) or 'none yet'}", err=True)
        click.echo(f"ready xds={host}:{port}")
        return
    for listener in result.ir.listeners:
        click.echo(f"gateway {listener.gateway_namespace}/{listener.gateway_name}: "
                   f"listening on http://{listener.address}:{listener.port}", err=True)
    if not result.ir.listeners:
        click.echo("no Gateway to serve yet (waiting for resources)", err=True)
    host, port = dataplane.admin_address
    click.echo(f"envoy admin: http://{host}:{port}", err=True)
    # One machine-readable line on stdout once the first configuration is live (for supervisors/scripts).
    urls = " ".join(f"{lst.gateway_namespace}/{lst.gateway_name}=http://{lst.address}:{lst.port}"
                    for lst in result.ir.listeners)
    click.echo(f"ready {urls}".rstrip())
