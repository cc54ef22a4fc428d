"""The ``helm`` binary, as the migration uses it: list releases, read manifests, uninstall, install.

Helm stores releases in Secrets; reading them through ``helm`` (not by decoding the Secrets)
keeps the migration independent of Helm's storage format.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from infergate.api import yamlload
from infergate.migrate.cluster import ClusterTarget
from infergate.migrate.resources import Obj
from infergate.util.clitool import find_tool

# The source document's chart: `helm install NAME --set ... --version RELEASE oci://.../inferencepool`.
OCI_CHART = "oci://registry.k8s.io/gateway-api-inference-extension/charts/inferencepool"
GA_CHART_VERSION = "v1.0.0"


class HelmError(Exception):
    """A helm command failed; the message holds its stderr."""


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    chart: str  # "inferencepool-v0.3.0"
    app_version: str
    status: str
    revision: int


@dataclass(frozen=True)
class ChartInstall:
    """One ``helm install`` of the inferencepool chart for a GA pool."""

    release: str
    namespace: str
    chart: str
    version: str | None
    sets: tuple[tuple[str, str], ...]

    def argv(self, verb: str = "install") -> list[str]:
        args = [verb, self.release, self.chart, "--namespace", self.namespace]
        for key, value in self.sets:
            args += ["--set", f"{key}={value}"]
        if self.version:
            args += ["--version", self.version]
        return args

    def command(self) -> str:
        """The command line an operator would type (for plans and reports)."""
        return " ".join(["helm", *(_quote(a) for a in self.argv())])


def find_helm(explicit: str | None = None) -> str | None:
    """The helm binary: ``explicit``, $INFERGATE_HELM, the repository's .tools/bin, then $PATH."""
    if explicit:
        return explicit
    env = os.environ.get("INFERGATE_HELM")
    if env:
        return env
    return find_tool("helm")


class Helm:
    def __init__(self, binary: str, target: ClusterTarget, *, timeout_s: float = 120.0) -> None:
        self.binary = binary
        self.target = target
        self.timeout_s = timeout_s

    def _run(self, args: Sequence[str]) -> str:
        argv = [self.binary, *args]
        if self.target.kubeconfig:
            argv += ["--kubeconfig", self.target.kubeconfig]
        if self.target.context:
            argv += ["--kube-context", self.target.context]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HelmError(f"helm {' '.join(args)}: {exc}") from exc
        if proc.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def releases(self, namespace: str | None = None) -> list[Release]:
        """Deployed releases (``helm list``) of one namespace, or of all (None)."""
        scope = ["--all-namespaces"] if namespace is None else ["--namespace", namespace]
        out = self._run(["list", *scope, "--output", "json"])
        rows = json.loads(out or "[]")
        return [Release(str(r.get("name")), str(r.get("namespace")), str(r.get("chart", "")),
                        str(r.get("app_version", "")), str(r.get("status", "")), int(r.get("revision") or 0))
                for r in rows]

    def manifest(self, release: str, namespace: str) -> list[Obj]:
        out = self._run(["get", "manifest", release, "--namespace", namespace])
        return [d for d in yamlload.load_all(out) if isinstance(d, dict)]

    def values(self, release: str, namespace: str) -> dict[str, object]:
        """The values a release was installed with (``helm get values -o json``)."""
        loaded = json.loads(self._run(["get", "values", release, "--namespace", namespace, "--output", "json"])
                            or "{}")
        return loaded if isinstance(loaded, dict) else {}

    def show_chart(self, chart: str, version: str | None) -> str:
        """The chart's Chart.yaml; fails (HelmError) when the chart or version cannot be pulled."""
        return self._run(["show", "chart", chart, *(["--version", version] if version else [])])

    def uninstall(self, release: str, namespace: str, *, dry_run: bool = False) -> None:
        args = ["uninstall", release, "--namespace", namespace]
        if dry_run:
            args.append("--dry-run")
        self._run(args)

    def upgrade(self, install: ChartInstall, *, dry_run: bool = False) -> None:
        """``helm upgrade`` with the install's chart and values: recreates the objects of the
        release's manifest that were deleted from the cluster."""
        args = install.argv("upgrade")
        if dry_run:
            args.append("--dry-run=server")
        self._run(args)

    def install(self, install: ChartInstall, *, dry_run: bool = False) -> None:
        args = install.argv()
        if dry_run:
            args.append("--dry-run=server")
        self._run(args)


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./:=,@" for c in arg) else "'" + arg.replace("'", "'\\''") + "'"
