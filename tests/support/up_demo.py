"""`infergate up` with the demo's objects and traffic flowing: a Gateway, an HTTPRoute split
50/50 between a preview and a GA pool (each with its EPP pod), two simulator pods, objectives
and InferenceModels. Shared by the `status` and dashboard tests against `infergate up`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from tests.up.conftest import private_cidr

from infergate.util.net import free_port
from infergate.util.wait import WaitTimeout, wait_until

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
GA, PREVIEW = "vllm-llama3-8b-instruct-ga", "vllm-llama3-8b-instruct-preview"


def kubectl(kubectl_bin: str, kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([kubectl_bin, *args], input=stdin, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "KUBECONFIG": kubeconfig})
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def demo_objects(examples: Path, port: int) -> list[dict[str, object]]:
    gateway = yaml.safe_load((examples / "demo" / "gateway.yaml").read_text())
    gateway["spec"]["listeners"][0]["port"] = port
    sim = yaml.safe_load((examples / "sim-deployment.yaml").read_text())
    sim["spec"]["replicas"] = 2
    sim["spec"]["template"]["spec"]["containers"][0]["args"].append("--time-scale=20")
    documents = [gateway, sim]
    for name in ("ga/pool.yaml", "ga/objectives.yaml", "preview/pool.yaml", "preview/models.yaml", "routes/split.yaml"):
        documents.extend(d for d in yaml.safe_load_all((examples / "demo" / name).read_text()) if d)
    return documents


@dataclass
class UpDemo:
    state: Path
    pods: str  # the pod CIDR
    gateways: str  # the gateway address pool
    kubeconfig: str = ""
    admin: str | None = None  # the gateway's admin URL, from up.json
    url: str = ""  # /v1/completions through the Gateway
    codes: list[int] = field(default_factory=list)  # statuses of the background traffic
    paused: threading.Event = field(default_factory=threading.Event)  # set: the background traffic waits


def _serving(kubectl_bin: str, kubeconfig: str, port: int) -> str | None:
    address = kubectl(kubectl_bin, kubeconfig, "get", "gateway/inference-gateway", "-o",
                      "jsonpath={.status.addresses[0].value}")
    if not address:
        return None
    url = f"http://{address}:{port}/v1/completions"
    try:
        ok = [httpx.post(url, json={"model": MODEL, "prompt": "hi", "max_tokens": 2}, timeout=10).status_code
              for _ in range(4)]
    except httpx.HTTPError:
        return None
    return url if ok == [200] * 4 else None


@contextmanager
def up_with_demo_traffic(tmp_path: Path, kubectl_bin: str, repo_root: Path, prompt: str) -> Iterator[UpDemo]:
    """Start `infergate up`, apply the demo's objects, wait until the Gateway answers 200 through
    both pools, and send completions (``prompt``) in a thread while the block runs; then stop the
    traffic and `up` (SIGINT, bounded)."""
    demo = UpDemo(state=tmp_path / "state", pods=private_cidr(8000), gateways=private_cidr(80))
    up = subprocess.Popen(
        [sys.executable, "-m", "infergate", "up", "--state-dir", str(demo.state), "--port", "0", "--pod-cidr",
         demo.pods, "--address-pool", demo.gateways, "--with-inference-crds", "both"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert up.stdout is not None
    line = up.stdout.readline()
    stop = threading.Event()
    try:
        assert line.startswith("export KUBECONFIG="), line
        demo.kubeconfig = line.strip().split("=", 1)[1]
        ready = demo.state / "up.json"
        demo.admin = json.loads(ready.read_text())["gateway_admin"] if ready.exists() else None
        port = free_port()
        kubectl(kubectl_bin, demo.kubeconfig, "apply", "-f", "-",
                stdin=yaml.safe_dump_all(demo_objects(repo_root / "examples", port)))
        try:
            demo.url = wait_until(lambda: _serving(kubectl_bin, demo.kubeconfig, port), 120, interval=0.5,
                                  what="the gateway to answer 200 through both pools")
        except WaitTimeout as exc:
            raise AssertionError(str(exc)) from None

        def send() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    if demo.paused.is_set():
                        stop.wait(0.05)
                        continue
                    demo.codes.append(client.post(demo.url, json={"model": MODEL, "prompt": prompt,
                                                                  "max_tokens": 4}).status_code)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        yield demo
        stop.set()
        sender.join(30)
    finally:
        stop.set()
        up.send_signal(signal.SIGINT)
        try:
            up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.communicate(timeout=10)
