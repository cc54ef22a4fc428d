"""An InferencePool on the embedded API server for EPP tests: the GA CRDs installed, a namespace
with the pool and Ready pods at given loopback addresses, and `infergate epp` processes on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infergate.apiserver import ThreadedAPIServer
from infergate.epp.extproc import health
from infergate.util.net import free_port

GA = "inference.networking.k8s.io"


def install_crds(handle: ThreadedAPIServer, reference_dir: Path) -> None:
    handle.apply_files(*sorted((reference_dir / "gie-v1.0.0" / "crd").glob("*.yaml")))


def create_pool(handle: ThreadedAPIServer, port: int, addresses: list[str], *, name: str = "pool") -> str:
    """A fresh namespace with the pool ``name`` (targetPort ``port``) and one Ready pod per address."""
    ns = f"epp-{uuid.uuid4().hex[:6]}"
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": f"{GA}/v1", "kind": "InferencePool", "metadata": {"name": name, "namespace": ns},
         "spec": {"selector": {"matchLabels": {"app": "sim"}}, "targetPorts": [{"number": port}],
                  "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}},
    ]
    for i, address in enumerate(addresses):
        objects.append({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": f"sim-{i}", "namespace": ns, "labels": {"app": "sim"}},
                        "spec": {"containers": [{"name": "sim", "image": "sim"}]},
                        "status": {"podIP": address, "phase": "Running",
                                   "conditions": [{"type": "Ready", "status": "True"}]}})
    handle.apply(objects)
    return ns


@dataclass
class EppProcess:
    """One `infergate epp` subprocess with fixed ports."""

    process: subprocess.Popen[str]
    grpc_port: int
    health_port: int
    log_path: Path
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def health_target(self) -> str:
        return f"127.0.0.1:{self.health_port}"

    async def status(self, service: str = "readiness") -> int | None:
        """The health answer for ``service``; None while the port does not answer."""
        try:
            return await health.check(self.health_target, service, timeout=1.0)
        except Exception:
            return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(15)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_epp(kubeconfig: Path, namespace: str, log_dir: Path, name: str, *args: str,
              pool: str = "pool") -> EppProcess:
    grpc_port, health_port, metrics_port = free_port(), free_port(), free_port()
    log_path = log_dir / f"{name}.log"
    command = [sys.executable, "-m", "infergate", "epp", "--pool-name", pool, "--pool-namespace", namespace,
               "--kubeconfig", str(kubeconfig), "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
               "--grpc-health-port", str(health_port), "--metrics-port", str(metrics_port), *args]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True, env=dict(os.environ))
    return EppProcess(process, grpc_port, health_port, log_path, name)
