"""The `infergate` command line.

Each subcommand lives in its own module under ``infergate.cli`` and is imported only
when it is run, so that ``infergate sim`` or ``infergate epp`` start fast. A module
provides a click command named ``command``.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from infergate import __version__

# name -> (module, one-line help). The help is repeated here so that `infergate --help`
# does not have to import every subcommand.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "up": ("infergate.cli.up", "Run the embedded control plane, gateway and local runtime."),
    "demo": ("infergate.cli.demo", "Bring up a demo installation and send requests through it."),
    "apiserver": ("infergate.cli.apiserver", "Run the embedded Kubernetes-compatible API server."),
    "gateway": ("infergate.cli.gateway", "Run the gateway controller, xDS server and Envoy."),
    "envoy": ("infergate.cli.envoy", "Run one Envoy of a Gateway's fleet (configured by the controller)."),
    "epp": ("infergate.cli.epp", "Run an endpoint picker (ext_proc server) for one InferencePool."),
    "bbr": ("infergate.cli.bbr", "Run the body-based routing ext_proc server."),
    "sim": ("infergate.cli.sim", "Run vLLM-compatible model-server simulator replicas."),
    "convert": ("infergate.cli.convert", "Convert preview (v1alpha2) manifests to the GA (v1) API."),
    "crds": ("infergate.cli.crds", "Print or write the CRDs generated from infergate's types."),
    "validate": ("infergate.cli.validate", "Validate manifests as the API server would."),
    "migrate": ("infergate.cli.migrate", "Migrate a live installation from the preview API to GA."),
    "bench": ("infergate.cli.bench", "Run benchmarks."),
    "serve": ("infergate.cli.serve", "Run a local gateway in front of model servers (no Kubernetes)."),
    "status": ("infergate.cli.status", "Show what the gateway is doing: routes, pools, endpoints, traffic."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (module, _) in SUBCOMMANDS.items() if _module_exists(module))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = SUBCOMMANDS.get(cmd_name)
        if entry is None or not _module_exists(entry[0]):
            return None
        module = importlib.import_module(entry[0])
        command = module.command
        if not isinstance(command, click.Command):
            raise TypeError(f"{entry[0]}.command is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [
            (name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="infergate")
def main() -> None:
    """infergate: an inference gateway for OpenAI-compatible model servers on Kubernetes.

    Routes /v1/completions and /v1/chat/completions by model name and priority to
    InferencePools (preview inference.networking.x-k8s.io/v1alpha2 and GA
    inference.networking.k8s.io/v1), picks the best pod per request from live
    model-server metrics, and migrates installations from the preview API to GA.
    """
