"""Helpers of the chart tests: the real helm binary rendering charts/, the values of the
source document, and what the kubelet would hand the rendered containers."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHARTS = REPO_ROOT / "charts"
POOL_CHART = CHARTS / "inferencepool"
BBR_CHART = CHARTS / "body-based-routing"

GA = "inference.networking.k8s.io/v1"
PREVIEW = "inference.networking.x-k8s.io/v1alpha2"

# Upstream InferencePool CRDs (under ../shared/reference) each rendered pool must satisfy.
POOL_CRDS = {
    GA: ["gie-v1.0.0/crd/inference.networking.k8s.io_inferencepools.yaml"],
    PREVIEW: [
        "gie-v0.3.0/crd/inference.networking.x-k8s.io_inferencepools.yaml",
        "gie-v1.0.0/crd/inference.networking.x-k8s.io_inferencepools.yaml",
    ],
}

# Capabilities a cluster with the provider's CRDs announces (helm template --api-versions).
PROVIDER_APIS = {
    "none": [],
    "gke": ["networking.gke.io/v1/HealthCheckPolicy", "networking.gke.io/v1/GCPBackendPolicy",
            "networking.gke.io/v1/GCPRoutingExtension", "monitoring.googleapis.com/v1/PodMonitoring"],
    "istio": ["networking.istio.io/v1beta1/DestinationRule", "networking.istio.io/v1alpha3/EnvoyFilter"],
}


class RenderFailed(AssertionError):
    def __init__(self, stderr: str) -> None:
        super().__init__(stderr)
        self.stderr = stderr


@dataclass
class Helm:
    """The real helm binary with its own HOME, rendering a chart with a values dict."""

    binary: str
    home: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"HOME": str(self.home), "HELM_CACHE_HOME": str(self.home / "cache"),
               "HELM_CONFIG_HOME": str(self.home / "config"), "HELM_DATA_HOME": str(self.home / "data"),
               "PATH": "/usr/bin:/bin"}
        proc = subprocess.run([self.binary, *args], capture_output=True, text=True, env=env, timeout=60)
        if check and proc.returncode != 0:
            raise RenderFailed(proc.stderr)
        return proc

    def values_file(self, values: dict[str, Any]) -> str:
        path = self.home / f"values-{uuid.uuid4().hex}.yaml"
        path.write_text(yaml.safe_dump(values))
        return str(path)

    def template(self, chart: Path | str, values: dict[str, Any] | None = None, *, release: str = "pool",
                 namespace: str = "default", api_versions: Sequence[str] = (), kube_version: str | None = None,
                 extra: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The objects `helm template` renders (in helm's install order)."""
        args = ["template", release, str(chart), "--namespace", namespace]
        if values:
            args += ["-f", self.values_file(values)]
        for api in api_versions:
            args += ["--api-versions", api]
        if kube_version:
            args += ["--kube-version", kube_version]
        out = self.run(*args, *extra).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


def pool_values(api_version: str = GA, provider: str = "none", **extension: Any) -> dict[str, Any]:
    """The source document's values: the model servers' app label and a provider."""
    values: dict[str, Any] = {
        "inferencePool": {"apiVersion": api_version, "modelServers": {"matchLabels": {"app": "vllm-llama3-8b-instruct"}}},
        "provider": {"name": provider},
    }
    if extension:
        values["inferenceExtension"] = extension
    return values


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        out.setdefault(obj["kind"], []).append(obj)
    return out


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def materialize(deployment: dict[str, Any], objects: list[dict[str, Any]], root: Path,
                pod_ip: str = "127.0.0.1") -> list[str]:
    """What the kubelet would hand the container: its args with $(VAR) from the downward
    API expanded and its ConfigMap volumes written under ``root`` (mount paths re-rooted)."""
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    mounts: dict[str, Path] = {}
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
            target = root / mount["mountPath"].lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            for key, text in config_maps[volume["configMap"]["name"]]["data"].items():
                (target / key).write_text(text)
            mounts[mount["mountPath"]] = target
    env = {"POD_IP": pod_ip, "POD_NAME": "pod-0", "POD_NAMESPACE": deployment["metadata"]["namespace"]}
    args: list[str] = []
    for arg in container.get("args", []):
        for name, value in env.items():
            arg = arg.replace(f"$({name})", value)
        for mount_path, target in mounts.items():
            arg = arg.replace(f"={mount_path}/", f"={target}/")
        args.append(arg)
    return args


def parse_cli(command: click.Command, args: list[str]) -> dict[str, Any]:
    """The options the real click command parses from ``args`` (it does not run)."""
    with command.make_context(command.name or "cmd", list(args)) as ctx:
        return dict(ctx.params)



def live_processes() -> Iterator[tuple[int, str, list[bytes]]]:
    """(pid, command line, environment entries) of every live (not zombie) process this user can read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            yield int(entry.name), cmdline, environ
