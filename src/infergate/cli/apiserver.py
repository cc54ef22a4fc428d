"""`infergate apiserver`: run the embedded Kubernetes-compatible API server."""

from __future__ import annotations

from pathlib import Path

import click

from infergate.cli.options import cannot_start


@click.command("apiserver")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".infergate"),
              show_default=True, help="Directory for state.db (SQLite), the token and the kubeconfig.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Loopback by default; anything else exposes the API to the network.")
@click.option("--port", type=int, default=6443, show_default=True, help="Port to listen on (0: pick a free one).")
@click.option("--authorization-mode", type=click.Choice(["AlwaysAllow", "RBAC"]), default="AlwaysAllow",
              show_default=True, help="AlwaysAllow: every authenticated request is allowed. RBAC: enforce the "
              "stored Roles/ClusterRoles and their bindings (the admin token is system:masters and bypasses them).")
def command(state_dir: Path, host: str, port: int, authorization_mode: str) -> None:
    """Run the embedded Kubernetes-compatible API server.

    Objects live in STATE_DIR/state.db and survive restarts. Writes
    STATE_DIR/kubeconfig (server URL and bearer token) for kubectl and helm, and prints
    the `export KUBECONFIG=...` line. Requests without the token (or a ServiceAccount token
    from `kubectl create token`) get 401.
    """
    import asyncio
    import ipaddress
    import signal

    from infergate.apiserver import EmbeddedAPIServer

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        click.echo(f"warning: listening on {host}, not loopback: anyone who can reach it and has the token "
                   "can change the stored objects", err=True)

    async def serve() -> None:
        server = EmbeddedAPIServer(state_dir, host, port, authorization_mode=authorization_mode)
        try:
            await server.start()
        except OSError as exc:  # the port is taken, the address is not this machine's...
            await server.stop()
            raise cannot_start(exc, port) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        click.echo(f"infergate apiserver listening on {server.url} (state in {state_dir.resolve()}, "
                   f"authorization mode {authorization_mode})", err=True)
        click.echo(f"export KUBECONFIG={server.kubeconfig_path.resolve()}")
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(serve())
