"""``infergate status``: what the gateway is doing, from the Kubernetes API or a running ``infergate serve``."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import click

from infergate.cli.options import DURATION

WATCH_STOP_GRACE_S = 2.0  # --watch holds nothing to clean up: the terminal is restored at once


@click.command("status", epilog="See docs/status.md.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None,
              help="Read the Kubernetes API with this kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster).")
@click.option("--context", default=None, help="The kubeconfig context.")
@click.option("-n", "--namespace", default=None, help="Only this namespace (default: all).")
@click.option("--serve", "serve", is_flag=True,
              help="Read a running `infergate serve` (its state file) instead of the Kubernetes API.")
@click.option("--state-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The state file of `infergate serve --state-file` (implies --serve) "
                   "[default: $XDG_STATE_HOME/infergate/serve.json].")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--watch", "-w", is_flag=True, help="Redraw live until Ctrl-C.")
@click.option("--interval", type=DURATION, default="2s", show_default=True,
              help="Time between the two metrics samples that rates and quantiles are computed over "
                   "(and between redraws with --watch).")
@click.option("--timeout", type=DURATION, default="3s", show_default=True, help="Per /metrics request.")
def command(**options: Any) -> None:
    """Show what the gateway is doing: Gateways (address, Programmed), HTTPRoutes and their
    weights, InferencePools (API generation, EPP, failure mode), endpoints with live metrics
    (queue, running, KV cache, prefix-cache hits, LoRA adapters), objectives and priorities,
    and each pool's recent requests (rate, errors, latency and TTFT p50/p90).

    \b
      infergate status                  # the cluster of $KUBECONFIG (also `infergate up`);
                                        # without any kubeconfig: a running `infergate serve`
      infergate status --serve          # a running `infergate serve`
      infergate status -o json | jq '.pools[].traffic'
    """
    reader = _reader(options)
    try:
        _show(reader, options)
    finally:
        reader.close()  # the Kubernetes client's session: unclosed, aiohttp complained on stderr at exit


def _show(reader: Any, options: dict[str, Any]) -> None:
    # imported when the command runs, so that `infergate --help` stays light
    import uvloop

    from infergate.status.collect import collect_status
    from infergate.status.sources import ReaderError

    async def once() -> Any:
        try:
            return await collect_status(reader, sample_interval=options["interval"], timeout=options["timeout"])
        except ReaderError as exc:
            raise click.ClickException(str(exc)) from None

    if options["output"] == "json" and not options["watch"]:
        snapshot = uvloop.run(once())
        click.echo(json.dumps(snapshot.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.live import Live

    from infergate.status.render import render

    console = Console()
    if not options["watch"]:
        console.print(render(uvloop.run(once())))
        return

    async def watch() -> None:
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                snapshot = await once()
                if options["output"] == "json":
                    console.print_json(json.dumps(snapshot.to_dict()))
                else:
                    live.update(render(snapshot), refresh=True)

    from infergate.util.signals import Stopped, run_until_stopped

    with contextlib.suppress(Stopped):  # Ctrl-C (or SIGTERM) ends --watch, at once: a snapshot in flight is dropped
        run_until_stopped(watch(), grace=WATCH_STOP_GRACE_S, loop_factory=uvloop.new_event_loop)


def _reader(options: dict[str, Any]) -> Any:
    # the chosen source's modules only (the Kubernetes client is slow to import)
    from infergate.serve.state import StateFileError, default_state_path, read_state
    from infergate.status.sources import ServeReader

    if options["serve"] or options["state_file"] or _only_serve(options, default_state_path()):
        path = options["state_file"] or default_state_path()
        try:
            return ServeReader(read_state(path), path, options["namespace"])
        except StateFileError as exc:
            raise click.ClickException(str(exc)) from None
    from infergate.status.kubeapi import KubeReader
    from infergate.status.sources import ReaderError

    try:
        return KubeReader(options["kubeconfig"] or os.environ.get("KUBECONFIG") or None, options["context"],
                          options["namespace"], timeout=options["timeout"] + 7)
    except ReaderError as exc:  # "cannot load kubeconfig PATH: why"
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # the client library's configuration errors are of several types
        raise click.ClickException(f"cannot read the Kubernetes API configuration: {exc}") from None


def _only_serve(options: dict[str, Any], state: Path) -> bool:
    """No Kubernetes configuration anywhere, but a running ``infergate serve``: read that."""
    kube = (options["kubeconfig"] or options["context"] or os.environ.get("KUBECONFIG")
            or os.environ.get("KUBERNETES_SERVICE_HOST") or (Path.home() / ".kube" / "config").exists())
    return not kube and state.exists()
