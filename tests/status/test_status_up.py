"""`infergate status` against `infergate up`: the demo's Gateway, the 50/50 HTTPRoute between a
preview and a GA pool (each with its EPP pod), simulator pods, objectives and InferenceModels,
with traffic flowing; asserts on `infergate status -o json`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import yaml
from tests.up.conftest import private_cidr, processes_mentioning

from infergate.util.net import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("up-status")]
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
GA, PREVIEW = "vllm-llama3-8b-instruct-ga", "vllm-llama3-8b-instruct-preview"


def kubectl(kubectl_bin: str, kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([kubectl_bin, *args], input=stdin, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "KUBECONFIG": kubeconfig})
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def status(kubeconfig: str, *args: str) -> dict[str, object]:
    result = subprocess.run([sys.executable, "-m", "infergate", "status", "--kubeconfig", kubeconfig, "-o", "json",
                             *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def wait_for(check: object, timeout: float, what: str) -> object:
    import time

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()  # type: ignore[operator]
        except (AssertionError, httpx.HTTPError, KeyError, IndexError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def test_status_of_infergate_up_with_the_demo_objects(tmp_path: Path, kubectl_bin: str, repo_root: Path) -> None:
    state = tmp_path / "state"
    pods, gateways = private_cidr(8000), private_cidr(80)
    up = subprocess.Popen(
        [sys.executable, "-m", "infergate", "up", "--state-dir", str(state), "--port", "0", "--pod-cidr", pods,
         "--address-pool", gateways, "--with-inference-crds", "both"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert up.stdout is not None
    line = up.stdout.readline()
    stop, codes = threading.Event(), []
    try:
        assert line.startswith("export KUBECONFIG="), line
        kubeconfig = line.strip().split("=", 1)[1]
        examples = repo_root / "examples"
        port = free_port()
        gateway = yaml.safe_load((examples / "demo" / "gateway.yaml").read_text())
        gateway["spec"]["listeners"][0]["port"] = port
        sim = yaml.safe_load((examples / "sim-deployment.yaml").read_text())
        sim["spec"]["replicas"] = 2
        sim["spec"]["template"]["spec"]["containers"][0]["args"].append("--time-scale=20")
        documents = [gateway, sim]
        for name in ("ga/pool.yaml", "ga/objectives.yaml", "preview/pool.yaml", "preview/models.yaml",
                     "routes/split.yaml"):
            documents.extend(d for d in yaml.safe_load_all((examples / "demo" / name).read_text()) if d)
        kubectl(kubectl_bin, kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))

        def serving() -> str | None:
            address = kubectl(kubectl_bin, kubeconfig, "get", "gateway/inference-gateway", "-o",
                              "jsonpath={.status.addresses[0].value}")
            if not address:
                return None
            url = f"http://{address}:{port}/v1/completions"
            ok = [httpx.post(url, json={"model": MODEL, "prompt": "hi", "max_tokens": 2}, timeout=10).status_code
                  for _ in range(4)]
            return url if ok == [200] * 4 else None

        url = str(wait_for(serving, 120, "the gateway to answer 200 through both pools"))

        def send() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    codes.append(client.post(url, json={"model": MODEL, "prompt": "status", "max_tokens": 4})
                                 .status_code)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        data = status(kubeconfig, "--interval", "3s")
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
    assert not processes_mentioning(str(state), f"POD_IP={pods.rsplit('.', 1)[0]}.")
    assert codes and set(codes) == {200}

    assert str(data["source"]).startswith("Kubernetes API https://")
    (gw,) = data["gateways"]  # type: ignore[misc]
    assert gw["name"] == "inference-gateway" and gw["programmed"] is True
    assert gw["addresses"][0].startswith(gateways.rsplit(".", 1)[0] + ".")
    (route,) = data["routes"]  # type: ignore[misc]
    assert route["name"] == "llm-route" and route["accepted"] is True and route["resolved_refs"] is True
    shares = {(b["name"], b["weight"], b["share"]) for b in route["rules"][0]["backends"]}
    assert shares == {(GA, 50, 0.5), (PREVIEW, 50, 0.5)}

    pools = {p["name"]: p for p in data["pools"]}  # type: ignore[attr-defined]
    assert set(pools) == {GA, PREVIEW}
    ga, preview = pools[GA], pools[PREVIEW]
    assert (ga["generation"], preview["generation"]) == ("GA", "preview")
    assert ga["epp"] == f"{GA}-epp:9002" and ga["failure_mode"] == "FailClose"
    assert {(o["name"], o["priority"]) for o in ga["objectives"]} == {("food-review", 2), ("base-model", 2)}
    assert preview["models"] and all(m["model_name"] for m in preview["models"])
    total = 0.0
    for pool in (ga, preview):
        assert pool["accepted"] is True and pool["epp_reachable"] is True, pool
        assert len(pool["endpoints"]) == 2  # the same two simulator pods serve both pools
        for endpoint in pool["endpoints"]:
            assert endpoint["reachable"] and endpoint["address"].startswith(pods.rsplit(".", 1)[0] + ".")
            assert endpoint["kv_cache"] is not None and endpoint["queue"] is not None
        traffic = pool["traffic"]
        assert traffic is not None and traffic["errors"] == 0
        total += traffic["requests"]
    assert total > 0
    busy = max((ga, preview), key=lambda p: p["traffic"]["requests"])
    assert busy["traffic"]["latency_p50_s"] is not None and busy["traffic"]["ttft_p50_s"] is not None
