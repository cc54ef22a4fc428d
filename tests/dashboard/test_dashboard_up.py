"""The dashboard on the gateway's admin port, against `infergate up` with the demo's objects:
a Gateway, an HTTPRoute split 50/50 between a preview and a GA pool, simulator pods, traffic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from tests.dashboard.browser import Browser, chromium_path
from tests.dashboard.test_dashboard_serve import screenshot_path
from tests.up.conftest import private_cidr

from infergate.util.net import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("up-dashboard")]
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


async def test_the_gateway_admin_port_serves_the_dashboard_of_infergate_up(tmp_path: Path, kubectl_bin: str,
                                                                           repo_root: Path) -> None:
    chromium_path()
    state = tmp_path / "state"
    up = subprocess.Popen(
        [sys.executable, "-m", "infergate", "up", "--state-dir", str(state), "--port", "0", "--pod-cidr",
         private_cidr(8000), "--address-pool", private_cidr(80), "--with-inference-crds", "both"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert up.stdout is not None
    line = up.stdout.readline()
    stop, codes = threading.Event(), []
    try:
        assert line.startswith("export KUBECONFIG="), line
        kubeconfig = line.strip().split("=", 1)[1]
        ready = state / "up.json"
        admin = json.loads(ready.read_text())["gateway_admin"] if ready.exists() else None
        assert admin, list(state.iterdir())
        port = free_port()
        kubectl(kubectl_bin, kubeconfig, "apply", "-f", "-",
                stdin=yaml.safe_dump_all(demo_objects(repo_root / "examples", port)))

        deadline = time.monotonic() + 120
        url = ""
        while time.monotonic() < deadline and not url:
            address = kubectl(kubectl_bin, kubeconfig, "get", "gateway/inference-gateway", "-o",
                              "jsonpath={.status.addresses[0].value}")
            if address:
                candidate = f"http://{address}:{port}/v1/completions"
                try:
                    ok = [httpx.post(candidate, json={"model": MODEL, "prompt": "hi", "max_tokens": 2},
                                     timeout=10).status_code for _ in range(4)]
                except httpx.HTTPError:
                    ok = []
                url = candidate if ok == [200] * 4 else ""
            if not url:
                time.sleep(0.5)
        assert url, "the gateway did not answer 200 through both pools"

        def send() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    codes.append(client.post(url, json={"model": MODEL, "prompt": "dashboard", "max_tokens": 4})
                                 .status_code)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        async with Browser(tmp_path / "chromium") as browser:
            await browser.goto(f"{admin}/dashboard/")
            pools = await browser.wait_for(
                "(() => { const p = [...document.querySelectorAll('[data-pool]')].map(n => n.dataset.pool);"
                " return p.length === 2 ? p : null; })()", timeout=90, what="two pools")
            assert sorted(pools) == [f"default/{GA}", f"default/{PREVIEW}"]
            for pool in (GA, PREVIEW):
                rows = await browser.wait_for(
                    f"document.querySelectorAll('[data-pool=\"default/{pool}\"] tr[data-endpoint]').length",
                    what=f"{pool}'s endpoints")
                assert rows == 2
            weights = await browser.evaluate(
                "[...document.querySelectorAll('#routes .backend')].map(b => b.dataset.backend + '=' + b.dataset.weight)")
            assert sorted(weights) == [f"{GA}=50", f"{PREVIEW}=50"]
            total = await browser.wait_for(
                "(() => { const v = [...document.querySelectorAll('[data-pool] .rps')]"
                ".map(n => parseFloat(n.textContent) || 0).reduce((a, b) => a + b, 0); return v > 0 ? v : null; })()",
                timeout=90, what="a positive request rate")
            assert total > 0
            await browser.wait_for(
                "document.querySelectorAll('#chart-weights path[data-series]').length === 2"
                " && document.querySelector('#chart-rps path').getAttribute('d').includes('L')",
                what="the weights and rate charts")
            await browser.screenshot(screenshot_path(tmp_path, "dashboard.png"))
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
    assert codes and set(codes) == {200}
