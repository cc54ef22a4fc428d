"""`infergate bbr`: the body-based routing ext_proc server (upstream's BBR)."""

from __future__ import annotations

import click

from infergate.cli.options import GoStyleCommand, configure_logging
from infergate.util.signals import run_until_signal


@click.command(cls=GoStyleCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--grpc-port", type=int, default=9004, show_default=True, help="ext_proc gRPC port.")
@click.option("--grpc-health-port", type=int, default=9005, show_default=True, help="grpc.health.v1 port.")
@click.option("--metrics-port", type=int, default=9090, show_default=True,
              help="Prometheus /metrics port (bbr_success_total, bbr_model_not_in_body_total, "
                   "bbr_model_not_parsed_total).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--streaming/--no-streaming", default=False, show_default=True,
              help="Expect Envoy's FULL_DUPLEX_STREAMED request body mode (upstream's chart passes "
                   "--streaming). A protocol_config sent by Envoy overrides this.")
@click.option("--secure-serving/--no-secure-serving", default=False, show_default=True,
              help="TLS on the ext_proc port: tls.crt/tls.key from --cert-path, else self-signed (upstream "
                   "always serves TLS; infergate defaults to plaintext on trusted networks).")
@click.option("--cert-path", type=click.Path(file_okay=False), default=None, help="Directory with tls.crt and tls.key.")
@click.option("--v", "verbosity", type=int, default=2, show_default=True, help="Log verbosity (2 info, 4+ debug).")
def command(grpc_port: int, grpc_health_port: int, metrics_port: int, host: str, streaming: bool,
            secure_serving: bool, cert_path: str | None, verbosity: int) -> None:
    """Copy the request body's "model" into the request header X-Gateway-Model-Name.

    Put it before routing (an ext_proc filter ahead of the router, request headers SEND,
    request body BUFFERED or FULL_DUPLEX_STREAMED) so that HTTPRoute header matches on
    X-Gateway-Model-Name select the InferencePool. The route cache is cleared when the
    header is set. Single-dash Go-style flags (-grpc-port 9004) are accepted too.
    """
    configure_logging(verbosity)

    async def main() -> None:
        # imported when the command runs, so that `infergate --help` does not load grpc and the protos
        from pathlib import Path

        from infergate.bbr import BBRServer, BBRServicer
        from infergate.epp.extproc import HealthServer, HealthService
        from infergate.epp.extproc.metrics_http import MetricsHTTPServer
        from infergate.epp.extproc.server import self_signed_credentials, server_credentials
        from infergate.util.listening import CannotListen, listen

        credentials = None
        if secure_serving:
            if cert_path is None:  # upstream: self-signed
                credentials, _ = self_signed_credentials(host)
            else:
                credentials = server_credentials(Path(cert_path))
        servicer = BBRServicer(streaming=streaming)
        health = HealthService(lambda: True)
        servers = (
            BBRServer(servicer, host=host, port=grpc_port, credentials=credentials,
                      extra_handlers=(health.handler(),)),
            HealthServer(health, host=host, port=grpc_health_port),
            MetricsHTTPServer(servicer.metrics.registry, host=host, port=metrics_port),
        )
        grpc_server, health_server, metrics_server = servers
        try:
            await listen("--grpc-port", grpc_port, grpc_server.start)
            await listen("--grpc-health-port", grpc_health_port, health_server.start)
            await listen("--metrics-port", metrics_port, metrics_server.start)
        except CannotListen as exc:
            await grpc_server.stop()  # each stop is a no-op for a server that did not start
            await health_server.stop()
            raise click.ClickException(str(exc)) from None
        click.echo(f"ready bbr grpc={grpc_server.port} health={health_server.port} "
                   f"metrics={metrics_server.port}", err=True)
        try:
            await run_until_signal()
        finally:
            await grpc_server.stop()
            await health_server.stop()
            await metrics_server.stop()

    import uvloop

    uvloop.run(main())
