"""`infergate demo`: bring up a demo installation and send requests through it (`make demo`)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

EPILOG = """\b
Examples:
  infergate demo                  # preview (v1alpha2) pool + InferenceModels + EPP
  infergate demo --stack ga       # the GA (v1) pool + InferenceObjectives
  infergate demo --stack split    # both, HTTPRoute split 50/50 (the migration's stage 2)
  infergate demo --authorization-mode RBAC --install-with manifests
                                  # RBAC enforced; each EPP runs as its own ServiceAccount

\b
Runs on a fresh state directory (removed first): `infergate up` with the inference CRDs,
the simulator Deployment (3 replicas), the stack (helm and charts/inferencepool when
present, else the manifests in examples/demo/), Gateway inference-gateway (port 80) and
HTTPRoute llm-route; sends completions for two models, non-streaming and streaming, and
shows which pod served each; prints the kubectl/curl lines to try yourself; keeps running
until Ctrl-C, then stops every process it started.
"""


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--stack", type=click.Choice(["preview", "ga", "split"]), default="preview", show_default=True,
              help="Which API generation serves the requests; split: both, 50/50.")
@click.option("--state-dir", default=".infergate/demo", show_default=True, type=click.Path(file_okay=False),
              help="State directory (recreated on every run).")
@click.option("--exit-after-requests", is_flag=True, help="Stop after the requests instead of waiting for Ctrl-C.")
@click.option("--gateway-port", type=click.IntRange(0, 65535), default=None,
              help="Gateway listener port [default: 80, or 8080 when 80 cannot be bound].")
@click.option("--address-pool", default="127.0.2.0/24", show_default=True, help="Loopback network of Gateway addresses.")
@click.option("--pod-cidr", default="127.3.0.0/16", show_default=True, help="Loopback network of pod IPs.")
@click.option("--sim-time-scale", type=click.FloatRange(min=0.0, min_open=True), default=None,
              help="Run the simulators this many times faster than real time.")
@click.option("--install-with", type=click.Choice(["auto", "helm", "manifests"]), default="auto", show_default=True,
              help="How to install each pool and its EPP: helm with charts/inferencepool, or the manifests in "
                   "examples/demo/ (auto: helm when the chart exists).")
@click.option("--authorization-mode", type=click.Choice(["AlwaysAllow", "RBAC"]), default="AlwaysAllow",
              show_default=True, help="Passed to `infergate up`. RBAC: the API server enforces Roles and their "
              "bindings, and each EPP reads the API as its own ServiceAccount (the chart and the manifests give it "
              "a least-privilege Role).")
@click.option("--json-result", type=click.Path(dir_okay=False), default=None,
              help="Also write the result (gateway address, requests and the pods that served them) as JSON.")
def command(stack: str, state_dir: str, exit_after_requests: bool, gateway_port: int | None, address_pool: str,
            pod_cidr: str, sim_time_scale: float | None, install_with: str, authorization_mode: str,
            json_result: str | None) -> None:
    """Bring up a demo installation on this machine and send requests through the gateway."""
    from infergate.demo import DemoError, DemoOptions
    from infergate.up import UpOptions

    try:  # the networks as `infergate up` checks them, before anything starts
        UpOptions(state_dir=Path(state_dir), pod_cidr=pod_cidr, address_pool=address_pool)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    options = DemoOptions(stack=stack, state_dir=Path(state_dir), exit_after_requests=exit_after_requests,
                          gateway_port=gateway_port, address_pool=address_pool, pod_cidr=pod_cidr,
                          sim_time_scale=sim_time_scale, install_with=install_with,
                          authorization_mode=authorization_mode)
    from infergate.util.signals import Stopped, run_until_stopped

    try:  # _run stops the demo on SIGINT/SIGTERM/SIGHUP and says so; blocked worker threads do not delay the exit
        result = run_until_stopped(_run(options))
    except Stopped as stop:
        click.echo(f"infergate demo: {stop}", err=True)
        sys.exit(stop.exit_code)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from exc
    if json_result and result is not None:
        from dataclasses import asdict

        Path(json_result).write_text(json.dumps(asdict(result), indent=1) + "\n")


async def _run(options: Any) -> Any:
    from infergate.demo import Demo

    demo = Demo(options)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        start = asyncio.create_task(demo.start())
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if start not in done:
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
            return None
        waiter.cancel()
        result = start.result()
        if not options.exit_after_requests:
            demo.console.print("\nRunning. Press Ctrl-C to stop.")
            await stop.wait()
        return result
    finally:
        await demo.stop()
