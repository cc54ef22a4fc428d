"""`infergate epp`: the endpoint picker for one InferencePool, as an Envoy ext_proc server.

Flags follow upstream's v1.0 EPP (``cmd/epp/runner``); Go-style single-dash spellings
(``-pool-name x``, ``-v=4``) are accepted as well. Imports stay light: the runner is
imported only when the command runs.
"""

from __future__ import annotations

from typing import Any

import click

from infergate.cli.options import DURATION, GoStyleCommand, configure_logging


@click.command(cls=GoStyleCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--pool-name", required=True, help="Name of the InferencePool this EPP serves (required).")
@click.option("--pool-namespace", default="default", show_default=True, help="Namespace of the pool.")
@click.option("--pool-group", default="inference.networking.k8s.io", show_default=True,
              type=click.Choice(["inference.networking.k8s.io", "inference.networking.x-k8s.io"]),
              help="API group of the pool: GA (inference.networking.k8s.io) or preview (inference.networking.x-k8s.io).")
@click.option("--grpc-port", type=int, default=9002, show_default=True, help="ext_proc gRPC port.")
@click.option("--grpc-health-port", type=int, default=9003, show_default=True, help="grpc.health.v1 port.")
@click.option("--metrics-port", type=int, default=9090, show_default=True, help="Prometheus /metrics port.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address every port listens on.")
@click.option("--config-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="EndpointPickerConfig YAML (scheduling profiles and plugins). Default: upstream v1.0's "
                   "default (queue, kv-cache and prefix-cache scorers, max-score picker).")
@click.option("--config-text", default=None, help="EndpointPickerConfig YAML given inline (exclusive with --config-file).")
@click.option("--refresh-metrics-interval", type=DURATION, default="50ms", show_default=True,
              help="How often each endpoint's /metrics is scraped.")
@click.option("--refresh-prometheus-metrics-interval", type=DURATION, default="5s", show_default=True,
              help="How often the pool-level gauges (inference_pool_*) are recomputed.")
@click.option("--metrics-staleness-threshold", type=DURATION, default="2s", show_default=True,
              help="Endpoint metrics older than this are treated as unknown.")
@click.option("--static-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Read the pool, objectives and endpoints from this YAML file (re-read on change) "
                   "instead of the Kubernetes API.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None,
              help="kubeconfig for the Kubernetes API source (default: in-cluster, then ~/.kube/config).")
@click.option("--model-server-protocol", type=click.Choice(["vllm", "sglang", "triton-tensorrt-llm"]),
              default="vllm", show_default=True,
              help="Metric names of the model servers (Model Server Protocol mapping).")
@click.option("--total-queued-requests-metric", default=None,
              help="Metric spec (name or name{label=value,...}) of the waiting queue; default from "
                   "--model-server-protocol (vllm:num_requests_waiting).")
@click.option("--kv-cache-usage-percentage-metric", default=None,
              help="Metric spec of the KV-cache use (0..1); default from --model-server-protocol.")
@click.option("--lora-info-metric", default=None,
              help="Metric spec of the LoRA adapters gauge (vllm:lora_requests_info); \"\" disables LoRA scraping.")
@click.option("--model-server-metrics-port", type=int, default=0, show_default=True,
              help="Port of the model servers' /metrics (0: the pool's target port).")
@click.option("--model-server-metrics-path", default="/metrics", show_default=True)
@click.option("--model-server-metrics-scheme", type=click.Choice(["http", "https"]), default="http",
              show_default=True, help="https scrapes skip certificate verification (upstream's default).")
@click.option("--zap-encoder", type=click.Choice(["console", "json"]), default="console", show_default=True,
              help="Log line format (upstream's chart passes json).")
@click.option("--enable-pprof/--no-enable-pprof", default=True, show_default=True,
              help="Accepted for compatibility with upstream's flags; infergate has no pprof endpoint.")
@click.option("--sd-max-inflight-per-endpoint", type=click.IntRange(min=0), default=None,
              help="Pick-time saturation: an endpoint with this many requests in flight (this EPP's picks, "
                   "or its scraped running + waiting if higher) has no capacity left. 0 = off; unset = 64 when "
                   "the scheduling profile has an inflight-load-producer (the default profile), else off. "
                   "See docs/epp.md.")
@click.option("--sd-max-pending-prefill-tokens", type=click.IntRange(min=0), default=None,
              help="Pick-time saturation: an endpoint with more uncached prompt tokens waiting to be prefilled "
                   "has no capacity left. 0 = off; unset = 2048 when the scheduling profile has an "
                   "inflight-load-producer, else off.")
@click.option("--sd-sheddable-max-pending-prefill-tokens", type=click.IntRange(min=0), default=None,
              help="Prefill holdback: a sheddable request (priority < 0) is shed (429) when the endpoint it was "
                   "picked for has more uncached prompt tokens of other requests waiting to be prefilled and the "
                   "pool has as many per endpoint on average (the pool is prefill-bound), so that prefill "
                   "capacity stays for priority >= 0 (never shed by it). 0 = off; unset = 512 when the "
                   "scheduling profile has an inflight-load-producer (the default profile), else off.")
@click.option("--sd-sheddable-max-prefill-busy-fraction", type=click.FloatRange(min=0, max=1), default=None,
              help="Prefill holdback over time: a sheddable request (priority < 0) is shed (429) when the endpoint "
                   "it was picked for had prompt tokens waiting to be prefilled during more than this fraction of "
                   "the recent time (a mean over the last seconds, sampled at each scrape) and the pool's endpoints as "
                   "much on average. 0 = off; unset = 0.5 when the scheduling profile has an "
                   "inflight-load-producer (the default profile), else off. See docs/epp.md.")
@click.option("--sd-sheddable-max-inflight-per-endpoint", type=click.IntRange(min=0), default=None,
              help="Priority holdback: a sheddable request (priority < 0) is shed (429) when the endpoint it "
                   "was picked for already has this many requests in flight and the pool has as many per "
                   "endpoint on average, so that capacity stays reserved for priority >= 0 (never shed by it). "
                   "Off unless set (0 = off): it counts requests, so set it to about a replica's requests in "
                   "flight at its latency objective (3 on the peer benchmark's priority mix). Needs a profile "
                   "with an inflight-load-producer (the default). See docs/epp.md.")
@click.option("--sd-sheddable-ttft-objective", type=DURATION, default=None,
              help="Latency holdback: shed sheddable requests (priority < 0; 429) while the pool's mean time to "
                   "first token over the last second (the model servers' vllm:time_to_first_token_seconds "
                   "_sum/_count) is over 0.7x this objective, until it is under 0.4x. A latency target (e.g. "
                   "500ms), not a per-hardware count; priority >= 0 is never shed by it. Off unless set (0 = "
                   "off); vLLM servers only. See docs/epp.md, \"Latency holdback\".")
@click.option("--sd-sheddable-itl-objective", type=DURATION, default=None,
              help="Latency holdback on the pool's mean inter-token latency (vllm:inter_token_latency_seconds), "
                   "as --sd-sheddable-ttft-objective (e.g. 50ms). Off unless set.")
@click.option("--flow-control/--no-flow-control", default=None,
              help="infergate's flow control: while the pool has no room, requests of priority >= 0 wait in "
                   "the EPP by priority and go to the endpoints that drain first (late binding); priority < 0 "
                   "is shed with 429 as upstream. Default: on with a profile that accounts its picks "
                   "(infergate's default, predicted-latency), off with upstream's presets (upstream v1.0's "
                   "behaviour: admit priority >= 0 at once). An endpoint without fresh metrics never holds a "
                   "request (fail open: only the pick-time limits on the EPP's own requests apply there). See "
                   "docs/epp.md, \"Flow control\".")
@click.option("--flow-control-max-queued", type=int, default=1024, show_default=True,
              help="Requests held by flow control at most (beyond: 429).")
@click.option("--flow-control-max-wait", type=DURATION, default="30s", show_default=True,
              help="Longest a request waits in flow control before a 429. A queued request tells the proxy to "
                   "wait this long + 1 s for it (ext_proc override_message_timeout; Envoy honours it up to "
                   "the filter's max_message_timeout, 300 s in infergate's gateway).")
# the choices are infergate.epp.flowcontrol.PLACEMENTS (not imported here: the CLI loads the EPP only when it runs)
@click.option("--flow-control-placement", type=click.Choice(["scheduler", "headroom"]), default="scheduler",
              show_default=True,
              help="Where flow control sends a request it admits: 'scheduler', wherever the scheduling profile "
                   "picks (flow control only decides when: a cold burst waits in the EPP and goes to the "
                   "endpoints that drain first, and prefix affinity is kept); 'headroom', only to the endpoints "
                   "with headroom (every one when none has; it moves requests off their prefix's replica and "
                   "lost on 7 of 16 benchmark workloads). See docs/epp.md, 'Flow control placement'.")
@click.option("--error-body", type=click.Choice(["json", "text"]), default="json", show_default=True,
              help="Body of rejections: an OpenAI-style JSON error, or upstream's text "
                   "'inference gateway: <Code> - <Msg>'. Both carry the same status code.")
@click.option("--health-checking/--no-health-checking", default=False, show_default=True,
              help="Also serve grpc.health.v1 on the ext_proc port.")
@click.option("--secure-serving/--no-secure-serving", default=False, show_default=True,
              help="TLS on the ext_proc port: tls.crt/tls.key from --cert-path, else a self-signed "
                   "certificate (as upstream). Upstream defaults to true; infergate defaults to plaintext "
                   "(use TLS or a mesh when the network between Envoy and the EPP is not trusted).")
@click.option("--cert-path", type=click.Path(file_okay=False), default=None, help="Directory with tls.crt and tls.key.")
@click.option("--ha-enable-leader-election/--no-ha-enable-leader-election", default=False, show_default=True,
              help="High availability: the EPPs of one pool elect a leader on a Lease in the pool's namespace "
                   "(epp-<namespace>-<pool>.gateway-api-inference-extension.sigs.k8s.io); only the leader is "
                   "ready, the others keep their datastore warm and take over when it stops. Needs RBAC on "
                   "coordination.k8s.io leases.")
@click.option("--ha-lease-duration", type=DURATION, default="15s", show_default=True,
              help="How long a leader's Lease is honoured without renewal before another replica takes it "
                   "(a replica that stops cleanly gives it back at once).")
@click.option("--ha-renew-deadline", type=DURATION, default="10s", show_default=True,
              help="A leader that could not renew for this long stops leading (shorter than --ha-lease-duration).")
@click.option("--ha-retry-period", type=DURATION, default="2s", show_default=True,
              help="How often candidates try to take the Lease and the leader renews it.")
@click.option("--pick-sharing-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="EPP replicas active-active: publish every pick's prefix blocks on this port (ZMQ PUB, on "
                   "--host) for the other replicas; 0 = off. Without it each replica's prefix index sees only "
                   "its own picks (docs/epp.md, \"Pick sharing\").")
@click.option("--pick-sharing-peers", default="", metavar="HOST:PORT,...",
              help="The other replicas' pick-sharing addresses, comma-separated; a DNS name may stand for several "
                   "(a headless Service over the EPP's pods: resolved again every 10 s). This EPP's own address "
                   "may be listed (its own picks are recognised). Needs --pick-sharing-port.")
@click.option("--pick-sharing-peer-pods", default=None, metavar="LABEL=VALUE,...",
              help="The other replicas: the pods of the pool's namespace with these labels (the EPP Deployment's "
                   "pod labels), from the EPP's pod watch, at --pick-sharing-port; needs the Kubernetes API "
                   "(not --static-file). This EPP's own pod may match.")
@click.option("--seed", type=int, default=None, help="Seed for the scheduler's random choices (reproducible runs).")
@click.option("--v", "verbosity", type=int, default=2, show_default=True,
              help="Log verbosity: 2 info, 3 verbose, 4 debug, 5 trace.")
def command(**options: Any) -> None:
    """Run the endpoint picker (EPP) of one InferencePool as an Envoy ext_proc server.

    For every request Envoy sends (headers + buffered JSON body), the EPP picks a pod from
    live model-server metrics and answers with the header and dynamic metadata
    x-gateway-destination-endpoint, or rejects it with an immediate response (429 when a
    sheddable request meets a saturated pool, 503 when no pod is ready, 400 for a bad
    body). Prints "ready grpc=PORT health=PORT metrics=PORT" on stdout once serving.

    \b
    Sources: --static-file FILE (standalone, tests), or the Kubernetes API (--kubeconfig).
    Envoy processing mode: request headers SEND + body BUFFERED (recommended) or upstream's
    FULL_DUPLEX_STREAMED; see docs/extproc.md.
    """
    if options["config_file"] and options["config_text"]:
        raise click.UsageError("--config-file and --config-text are mutually exclusive")
    if options["ha_enable_leader_election"]:
        if options["static_file"]:
            raise click.UsageError("--ha-enable-leader-election needs the Kubernetes API (a Lease); "
                                   "it cannot be used with --static-file")
        if not 0 < options["ha_retry_period"] < options["ha_renew_deadline"] < options["ha_lease_duration"]:
            raise click.UsageError("leader election needs --ha-retry-period < --ha-renew-deadline < "
                                   "--ha-lease-duration")
    # imported when the command runs, so that `infergate --help` stays light
    from infergate.epp.model_server_protocol import MetricSpecError, parse_metric_spec
    from infergate.epp.pick_sharing import PickSharingError, parse_peer, parse_selector

    peers = tuple(p.strip() for p in options["pick_sharing_peers"].split(",") if p.strip())
    try:
        for peer in peers:
            parse_peer(peer)
    except PickSharingError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[1], param_hint="--pick-sharing-peers") from None
    if options["pick_sharing_peer_pods"] is not None:
        try:
            parse_selector(options["pick_sharing_peer_pods"])
        except PickSharingError as exc:
            raise click.BadParameter(str(exc).split(": ", 1)[1], param_hint="--pick-sharing-peer-pods") from None
        if options["static_file"]:
            raise click.UsageError("--pick-sharing-peer-pods finds the peers in the Kubernetes API; with "
                                   "--static-file give them with --pick-sharing-peers HOST:PORT,...")
    if (peers or options["pick_sharing_peer_pods"]) and not options["pick_sharing_port"]:
        raise click.UsageError("--pick-sharing-peers/--pick-sharing-peer-pods need --pick-sharing-port (the port "
                               "this EPP publishes its picks on)")
    options["pick_sharing_peers"] = peers

    for flag in ("total_queued_requests_metric", "kv_cache_usage_percentage_metric", "lora_info_metric"):
        if options[flag]:
            try:
                parse_metric_spec(options[flag])
            except MetricSpecError as exc:
                raise click.BadParameter(str(exc), param_hint="--" + flag.replace("_", "-")) from None
    from infergate.epp.saturation import SaturationConfig, SaturationConfigError

    try:
        SaturationConfig.from_env()
    except SaturationConfigError as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(options["verbosity"], options["zap_encoder"])

    import uvloop

    from infergate.epp.options import EPPOptions
    from infergate.epp.runner import SourceFailed, run_epp
    from infergate.epp.scheduling.framework import ConfigError
    from infergate.kube.errors import ConfigError as KubeConfigError
    from infergate.util.listening import CannotListen

    try:
        uvloop.run(run_epp(EPPOptions.from_cli(options), ready=lambda text: click.echo(text)))
    except (KubeConfigError, SourceFailed, CannotListen) as exc:  # "cannot load kubeconfig PATH: why"...
        raise click.ClickException(str(exc)) from None
    except ConfigError as exc:  # raised while building, before anything listens
        source = ("--config-file " + options["config_file"] if options["config_file"]
                  else "--config-text" if options["config_text"] else "the preset")
        raise click.ClickException(f"the scheduling config ({source}): {exc}") from None
    except PickSharingError as exc:
        raise click.ClickException(str(exc)) from None
