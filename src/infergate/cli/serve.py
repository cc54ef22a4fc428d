"""``infergate serve``: a smart gateway in one command, without Kubernetes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from infergate.cli.options import DURATION, configure_logging


def _dns_label(value: str, longest: int) -> str:
    """The pool's objects are named after it (HTTPRoute serve-NAME): a name the API would refuse is
    refused here, before anything starts (the gateway otherwise rejected the objects and every request got 404)."""
    from infergate.api.conversion.names import is_dns_label

    if not is_dns_label(value, longest):
        raise click.BadParameter(f"{value!r}: must be a lowercase RFC 1123 label of at most {longest} characters "
                                 "(a-z, 0-9 and '-', starting and ending with a letter or digit)")
    return value


@click.command("serve", epilog="See docs/serve.md. `infergate status --serve` shows what it is doing.")
@click.option("--endpoint", "endpoints", multiple=True, metavar="URL",
              help="A model server's base URL, http://HOST:PORT (vLLM, SGLang or any OpenAI-compatible "
                   "server that serves /metrics); repeat for several. They form one pool.")
@click.option("--pool", "pool_files", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              metavar="FILE", help="A pool in the EPP's static format (docs/epp.md), re-read on change; repeat "
                                   "for several pools (each then lists its models: requests go by the body's model).")
@click.option("--sim", type=click.IntRange(0, 250), default=0, show_default=True,
              help="Start this many simulator replicas (infergate sim) as a pool, for a try-out.")
@click.option("--model", default=None,
              help="The model the --endpoint/--sim pool serves (shown, and the simulators' model).")
@click.option("--pool-name", default="serve", show_default=True, callback=lambda c, p, v: _dns_label(v, 53),
              help="Name of the --endpoint/--sim pool.")
@click.option("--pool-namespace", default="default", show_default=True, callback=lambda c, p, v: _dns_label(v, 63),
              help="Namespace of the --endpoint/--sim pool.")
@click.option("--profile", default="default", show_default=True,
              help="The EPP's scheduling preset (default: queue + KV cache + prefix cache scorers; "
                   "round-robin, random, ...).")
@click.option("--config-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The EPP's EndpointPickerConfig file (instead of --profile).")
@click.option("--config-text", default=None, help="The EPP's EndpointPickerConfig, inline (instead of --profile).")
@click.option("--refresh-metrics-interval", default="50ms", show_default=True,
              help="How often the EPP reads each endpoint's /metrics.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the gateway listens on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port the gateway listens on (0: any free port).")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port of the live dashboard (/dashboard/, on --host; 0: any free port). See docs/dashboard.md.")
@click.option("--no-dashboard", is_flag=True, help="Do not serve the live dashboard.")
@click.option("--failure-mode", type=click.Choice(["FailClose", "FailOpen"]), default="FailClose", show_default=True,
              help="What the gateway does when an EPP does not answer.")
@click.option("--epp-arg", "epp_args", multiple=True, metavar="FLAG",
              help="Another `infergate epp` flag for every EPP (e.g. --epp-arg=--no-flow-control).")
@click.option("--sim-time-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="--sim: run the simulated model this many times faster than real time.")
@click.option("--state-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where `infergate status --serve` finds this gateway "
                   "[default: $XDG_STATE_HOME/infergate/serve.json].")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep manifests, statuses and logs here (default: a temporary directory, removed at stop).")
@click.option("--startup-timeout", type=DURATION, default="60s", show_default=True,
              help="Longest wait for each process to be ready.")
@click.option("--v", "verbosity", type=int, default=1, show_default=True, help="Log verbosity (as the EPP's --v).")
def command(**options: Any) -> None:
    """Run a smart inference gateway on this machine: real Envoy, one endpoint picker per pool.

    \b
      infergate serve --sim 2
      infergate serve --endpoint http://10.0.0.5:8000 --endpoint http://10.0.0.6:8000 --model llama
      infergate serve --pool chat.yaml --pool code.yaml

    Prints the OpenAI base URL once ready; Ctrl-C stops everything it started.
    """
    if options["config_file"] and options["config_text"]:
        raise click.UsageError("--config-file and --config-text are mutually exclusive")
    if not (options["endpoints"] or options["pool_files"] or options["sim"]):
        raise click.UsageError("nothing to serve: give --endpoint URL, --pool FILE or --sim N")
    # imported when the command runs, so that `infergate --help` stays light
    from infergate.epp.scheduling.config import PRESETS
    from infergate.serve.spec import SpecError, parse_endpoint_url
    from infergate.serve.state import default_state_path

    if options["profile"] not in PRESETS:
        raise click.BadParameter(f"{options['profile']!r}: known presets are {', '.join(PRESETS)}",
                                 param_hint="--profile")
    for i, url in enumerate(options["endpoints"]):
        try:
            parse_endpoint_url(url, i)
        except SpecError as exc:
            raise click.BadParameter(str(exc).removeprefix("--endpoint "), param_hint="--endpoint") from None
    configure_logging(options["verbosity"])
    if options["verbosity"] < 4:  # the data plane's admin polls are not news
        import logging

        logging.getLogger("httpx").setLevel(logging.WARNING)

    import uvloop

    from infergate.serve.runner import ServeConfig, run_serve

    config = ServeConfig(
        endpoints=tuple(options["endpoints"]), pool_files=tuple(options["pool_files"]), sim=options["sim"],
        model=options["model"], pool_name=options["pool_name"], pool_namespace=options["pool_namespace"],
        profile=options["profile"], config_file=options["config_file"], config_text=options["config_text"],
        refresh_metrics_interval=options["refresh_metrics_interval"], host=options["host"], port=options["port"],
        failure_mode=options["failure_mode"], epp_args=tuple(options["epp_args"]),
        sim_time_scale=options["sim_time_scale"], state_file=options["state_file"] or default_state_path(),
        work_dir=options["work_dir"], start_timeout=options["startup_timeout"],
        dashboard_port=None if options["no_dashboard"] else options["dashboard_port"],
    )

    def out(text: str) -> None:
        click.echo(text)
        sys.stdout.flush()

    from infergate.util.signals import Stopped, run_until_stopped

    # run_serve stops its children on SIGINT/SIGTERM itself (and says so); the helper keeps blocked
    # worker threads from delaying the exit
    try:
        code = run_until_stopped(run_serve(config, out), loop_factory=uvloop.new_event_loop)
    except Stopped as stop:  # a second Ctrl-C while stopping
        out(f"infergate serve: {stop}")
        sys.exit(stop.exit_code)
    sys.exit(code)
