"""`infergate up`: run the embedded control plane, the gateway and the local runtime.

Imports stay light: the API server, runtime and gateway are imported when the command runs.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from infergate.cli.options import cannot_start
from infergate.util.procs import signal_group, spawn_logged_sync
from infergate.util.signals import Stopped, run_until_stopped
from infergate.util.wait import WaitTimeout, wait_until

EPILOG = """\b
Examples:
  infergate up                                   # foreground; Ctrl-C stops everything
  infergate up --gateway-class gke-l7-regional-external-managed
  infergate up --background && export KUBECONFIG=$PWD/.infergate/kubeconfig
  kill $(cat .infergate/up.pid)                  # stop a background run
  infergate up --no-gateway --background         # the control plane alone, then:
  helm install infergate charts/infergate        #   the controller as local pods

\b
What runs: the API server (SQLite under --state-dir, HTTPS on loopback, token in the
kubeconfig) with the Gateway API CRDs; the GatewayClass `infergate` and one per
--gateway-class, served by `infergate gateway` (Envoy); the local runtime, which runs
Deployments of infergate's own image (the simulator, the EPP) as local processes, one
per replica, each on its own loopback pod IP from --pod-cidr. Install the inference
CRDs yourself (kubectl apply -f ...), as on a managed cluster, or add
--with-inference-crds. Logs: STATE_DIR/logs/ (gateway.log) and STATE_DIR/runtime/logs/.

\b
--no-gateway: no GatewayClass and no gateway process; the service proxy makes Service
cluster IPs answer and gives type: LoadBalancer Services an address of
--load-balancer-pool, so the infergate chart (charts/infergate) runs the controller and
its per-Gateway Envoy Deployments as local pods, as on a real cluster (docs/cluster.md).
"""


def _options(state_dir: str, host: str, port: int, gateway_classes: tuple[str, ...], with_inference_crds: str | None,
             pod_cidr: str, address_pool: str, image_prefixes: tuple[str, ...],
             authorization_mode: str = "AlwaysAllow", gateway: bool = True, service_proxy: bool | None = None,
             load_balancer_pool: str = "127.0.4.0/24") -> Any:
    from infergate.apiserver.runtime import DEFAULT_IMAGE_PREFIXES
    from infergate.up import UpOptions

    return UpOptions(state_dir=Path(state_dir), host=host, port=port, gateway_classes=gateway_classes,
                     with_inference_crds=with_inference_crds, pod_cidr=pod_cidr, address_pool=address_pool,
                     image_prefixes=image_prefixes or DEFAULT_IMAGE_PREFIXES, authorization_mode=authorization_mode,
                     gateway=gateway, service_proxy=service_proxy, load_balancer_pool=load_balancer_pool)


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", default=".infergate", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the API server's state.db, token, certificate and kubeconfig, logs, pod IPs.")
@click.option("--host", default="127.0.0.1", show_default=True, help="API server listen address.")
@click.option("--port", type=int, default=6443, show_default=True, help="API server port (0: a free one).")
@click.option("--gateway-class", "gateway_classes", multiple=True, metavar="NAME",
              help="Also create and serve a GatewayClass of this name, e.g. gke-l7-regional-external-managed "
                   "(repeatable).")
@click.option("--with-inference-crds", type=click.Choice(["preview", "ga", "both", "current"]), default=None,
              help="Also install infergate's inference CRDs: preview (v0.3.0), ga (v1.0.0), both, or current "
                   "(GIE v1.6.0's InferencePool and the llm-d router's InferenceObjective/InferenceModelRewrite).")
@click.option("--pod-cidr", default="127.3.0.0/16", show_default=True,
              help="Loopback network pod IPs are taken from.")
@click.option("--address-pool", default="127.0.2.0/24", show_default=True,
              help="Loopback network Gateway addresses are taken from.")
@click.option("--image-prefix", "image_prefixes", multiple=True, metavar="IMAGE",
              help="Images run as local processes (repeatable) [default: ghcr.io/infergate/infergate]; "
                   "containers whose command is `infergate ...` run locally whatever their image.")
@click.option("--authorization-mode", type=click.Choice(["AlwaysAllow", "RBAC"]), default="AlwaysAllow",
              show_default=True, help="RBAC: the API server enforces Roles/ClusterRoles and their bindings, and each "
              "local pod gets a token of its own ServiceAccount instead of the admin token.")
@click.option("--gateway/--no-gateway", default=True, show_default=True,
              help="Run the built-in gateway (`infergate gateway` with Envoy) and create its GatewayClasses; "
                   "--no-gateway starts the control plane alone (API server, local runtime, service proxy) for "
                   "`helm install infergate charts/infergate`.")
@click.option("--service-proxy/--no-service-proxy", default=None,
              help="Make Service cluster IPs answer and give LoadBalancer Services a loopback address "
                   "[default: on with --no-gateway, off otherwise].")
@click.option("--load-balancer-pool", default="127.0.4.0/24", show_default=True, metavar="CIDR",
              help="Loopback network the service proxy takes LoadBalancer addresses from.")
@click.option("--foreground/--background", default=True, show_default=True,
              help="Stay attached until Ctrl-C (default), or start in the background, print the KUBECONFIG "
                   "line once ready and return (stop it with: kill $(cat STATE_DIR/up.pid)).")
@click.option("-v", "--verbose", count=True, help="More logging on stderr.")
def command(state_dir: str, host: str, port: int, gateway_classes: tuple[str, ...], with_inference_crds: str | None,
            pod_cidr: str, address_pool: str, image_prefixes: tuple[str, ...], authorization_mode: str,
            gateway: bool, service_proxy: bool | None, load_balancer_pool: str, foreground: bool, verbose: int) -> None:
    """Run the embedded control plane, the gateway and the local pod runtime on this machine."""
    if not gateway and gateway_classes:
        raise click.UsageError("--gateway-class: with --no-gateway infergate up creates no GatewayClass; the chart "
                               "does (helm install infergate charts/infergate --set 'gatewayClasses[0].name=NAME')")
    if not foreground:
        args = ["up", "--state-dir", state_dir, "--host", host, "--port", str(port), "--pod-cidr", pod_cidr,
                "--address-pool", address_pool, "--authorization-mode", authorization_mode,
                "--load-balancer-pool", load_balancer_pool, "--gateway" if gateway else "--no-gateway",
                *(["-" + "v" * verbose] if verbose else [])]
        if service_proxy is not None:
            args.append("--service-proxy" if service_proxy else "--no-service-proxy")
        args += [x for name in gateway_classes for x in ("--gateway-class", name)]
        args += [x for image in image_prefixes for x in ("--image-prefix", image)]
        args += ["--with-inference-crds", with_inference_crds] if with_inference_crds else []
        _background(args, Path(state_dir))
        return
    import logging

    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        options = _options(state_dir, host, port, gateway_classes, with_inference_crds, pod_cidr, address_pool,
                           image_prefixes, authorization_mode, gateway, service_proxy, load_balancer_pool)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:  # _run stops everything on SIGINT/SIGTERM/SIGHUP and says so; blocked worker threads do not delay the exit
        run_until_stopped(_run(options))
    except Stopped as stop:
        click.echo(f"infergate up: {stop}", err=True)
        sys.exit(stop.exit_code)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


async def _run(options: Any) -> None:
    from rich.console import Console

    from infergate.up import AlreadyRunning, LocalCluster

    console = Console(stderr=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    cluster = LocalCluster(options)
    try:
        what = "gateway and local runtime" if options.gateway else "local runtime and service proxy"
        with console.status(f"starting the API server, CRDs, {what}..."):
            start = asyncio.create_task(cluster.start())
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if start not in done:
                start.cancel()
                await asyncio.gather(start, return_exceptions=True)
                await cluster.stop()
                return
            waiter.cancel()
            start.result()
    except AlreadyRunning as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise cannot_start(exc, options.port) from exc
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        console.print(f"[green]✓[/] API server {cluster.api_url}  (state: {cluster.state_dir})")
        if options.gateway:
            console.print(f"[green]✓[/] GatewayClasses: {', '.join(cluster.gateway_class_names)}  "
                          f"(controller {options.controller_name})")
            console.print(f"[green]✓[/] gateway: Envoy, Gateway addresses from {options.address_pool}; "
                          f"local runtime: pod IPs from {options.pod_cidr}")
        else:
            console.print(f"[green]✓[/] no built-in gateway: install the controller with "
                          f"`helm install infergate charts/infergate`; local runtime: pod IPs from {options.pod_cidr}")
        if options.proxy_enabled:
            console.print(f"[green]✓[/] service proxy: cluster IPs answer; LoadBalancer addresses from "
                          f"{options.load_balancer_pool}")
        console.print(f"  logs: {cluster.state_dir / 'logs'}, {cluster.state_dir / 'runtime' / 'logs'}")
        click.echo(f"export KUBECONFIG={cluster.kubeconfig_path}")
        sys.stdout.flush()
        console.print("Ready. Press Ctrl-C to stop.")
        await stop.wait()
    finally:
        with console.status("stopping..."):
            await cluster.stop()
        console.print("stopped: no process left running")


def _background(args: list[str], state_dir: Path) -> None:
    """Start ``infergate up --foreground`` detached; return once it is ready."""
    from infergate.up.cluster import READY_FILE

    argv = [*args, "--foreground"]
    state_dir.mkdir(parents=True, exist_ok=True)
    ready = state_dir / READY_FILE
    log_path = state_dir / "logs" / "up.log"
    proc = spawn_logged_sync([sys.executable, "-m", "infergate", *argv], log_path)

    def started() -> dict[str, Any] | None:
        """Its ready file, once it names this process; fails at once if the process exited."""
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise click.ClickException("infergate up exited during start:\n" + "\n".join(tail))
        try:
            info = json.loads(ready.read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) and info.get("pid") == proc.pid else None

    try:
        info = wait_until(started, 120, interval=0.2, what="infergate up")
    except WaitTimeout:
        signal_group(proc.pid, signal.SIGTERM)
        raise click.ClickException(f"infergate up was not ready within 120 s; see {log_path}") from None
    click.echo(f"infergate up is running in the background (pid {proc.pid}); stop it with: kill {proc.pid}", err=True)
    click.echo(f"export KUBECONFIG={info['kubeconfig']}")
