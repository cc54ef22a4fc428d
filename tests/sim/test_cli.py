"""``infergate sim`` as a subprocess: the ready-line contract, replicas on consecutive addresses, admin port."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

import httpx
import pytest

from infergate.util.net import free_port, random_loopback_block

pytestmark = pytest.mark.e2e


def _read_ready(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)  # a hung child fails here, not at pytest's timeout
    if not readable:
        raise AssertionError(f"no ready line within {timeout:g}s (exit {proc.poll()})")
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"no ready line (exit {proc.poll()}): {proc.stderr.read() if proc.stderr else ''}")
    return line.strip()


def test_cli_serves_replicas_and_stops_on_sigterm() -> None:
    port, admin_port = free_port(), free_port()
    first = random_loopback_block(3, port)[0]
    env = {**os.environ, "POD_NAME": "pool-pod"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "infergate", "sim", "--replicas", "3", "--address", first, "--port", str(port),
         "--time-scale", "20", "--model", "m", "--lora", "a,b", "--admin-port", str(admin_port),
         "--unknown-model-status", "400"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready = _read_ready(proc)
        prefix = first.rsplit(".", 1)[0]
        expected = [f"{prefix}.{int(first.rsplit('.', 1)[1]) + i}:{port}" for i in range(3)]
        assert ready == "ready " + " ".join(expected)
        with httpx.Client(timeout=10) as client:
            for i, endpoint in enumerate(expected):
                r = client.post(f"http://{endpoint}/v1/completions", json={"model": "b", "prompt": "hi", "max_tokens": 2})
                assert r.status_code == 200
                assert r.headers["x-inference-pod"] == f"pool-pod-{i}"
                assert r.headers["x-inference-port"] == str(port)
            unknown = client.post(f"http://{expected[0]}/v1/completions", json={"model": "c", "prompt": "hi"})
            assert unknown.status_code == 400 and unknown.json()["error"]["type"] == "BadRequestError"
            models = client.get(f"http://{expected[0]}/v1/models").json()
            assert [m["id"] for m in models["data"]] == ["m", "a", "b"]
            listing = client.get(f"http://127.0.0.1:{admin_port}/admin/replicas").json()
            assert [r["name"] for r in listing] == ["pool-pod-0", "pool-pod-1", "pool-pod-2"]
            crashed = client.post(f"http://127.0.0.1:{admin_port}/admin/replicas/1/crash", json={})
            assert crashed.status_code == 200 and crashed.json()["state"] == "crashed"
            with pytest.raises(httpx.ConnectError):
                client.get(f"http://{expected[1]}/health")
            restarted = client.post(f"http://127.0.0.1:{admin_port}/admin/replicas/pool-pod-1/restart", json={})
            assert restarted.status_code == 200
            assert client.get(f"http://{expected[1]}/health").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_rejects_bad_options() -> None:
    result = subprocess.run([sys.executable, "-m", "infergate", "sim", "--set", "nonsense=1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "profile_overrides.nonsense: unknown profile parameter" in result.stderr
