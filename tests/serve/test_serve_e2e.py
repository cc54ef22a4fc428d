"""`infergate serve` as a user runs it, with the official `openai` client: simulators it starts
(--sim), model servers given by --endpoint, pool files of two models re-read on change, and
Ctrl-C stopping every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from infergate.util.net import free_port

from .support import Serve, Sim, alive, descendants, poll

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("serve")]
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def test_sim_pool_serves_openai_client_streaming_and_not_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    serve = Serve(["--sim", "2", "--sim-time-scale", "20"], tmp_path)
    try:
        text = serve.text()
        assert text.count("healthy   http://") == 2, text  # one clear line per endpoint
        client = openai.OpenAI(base_url=serve.url, api_key="unused", timeout=30, max_retries=0)
        completion = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=8)
        assert completion.choices[0].message.content
        assert completion.usage is not None and completion.usage.completion_tokens > 0

        chunks = list(client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Stream please"}], max_tokens=8, stream=True))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(chunks) > 1 and streamed

        legacy = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=4)
        assert legacy.choices[0].text

        started = descendants(serve.proc.pid)
        assert len(started) >= 3, started  # simulator, EPP, Envoy (and their helpers)
        state = serve.state()
        assert state["url"] + "/v1" == serve.url and len(state["pools"][0]["endpoints"]) == 2
    finally:
        rest = serve.stop(signal.SIGINT)
    assert serve.proc.returncode == 0, rest
    assert "received SIGINT: stopping" in rest
    assert "stopped everything infergate serve started: Envoy, simulator, EPP default/serve" in rest
    assert not alive(started), f"left behind: {alive(started)}"
    assert not serve.state_file.exists()


def test_two_endpoints_both_get_traffic_and_sigterm_stops(tmp_path: Path) -> None:
    sims = [Sim(free_port(), "m", f"pod-{i}") for i in range(2)]
    try:
        serve = Serve([*(a for s in sims for a in ("--endpoint", s.url)), "--model", "m",
                       "--profile", "round-robin"], tmp_path)
        try:
            client = openai.OpenAI(base_url=serve.url, api_key="unused", timeout=30, max_retries=0)
            pods = set()
            for _ in range(12):
                raw = client.completions.with_raw_response.create(model="m", prompt="hi", max_tokens=2)
                pods.add(raw.headers["x-inference-pod"])
            assert pods == {"pod-0", "pod-1"}
            started = descendants(serve.proc.pid)
        finally:
            rest = serve.stop(signal.SIGTERM)
        assert "received SIGTERM: stopping" in rest
        assert not alive(started)
        assert all(s.proc.poll() is None for s in sims)  # not serve's to stop
    finally:
        for sim in sims:
            sim.stop()


def _pool_file(path: Path, name: str, model: str, sims: list[Sim]) -> None:
    path.write_text(yaml.safe_dump({
        "pool": {"name": name, "targetPorts": [sims[0].port]},
        "models": [{"name": model, "modelName": model}],
        "endpoints": [{"name": f"{name}-{i}", "address": "127.0.0.1", "port": s.port} for i, s in enumerate(sims)],
    }))


def test_pool_files_of_two_models_route_by_model_and_are_reread(tmp_path: Path) -> None:
    chat = [Sim(free_port(), "chat", "chat-0"), Sim(free_port(), "chat", "chat-1")]
    code = Sim(free_port(), "code", "code-0")
    try:
        chat_file, code_file = tmp_path / "chat.yaml", tmp_path / "code.yaml"
        _pool_file(chat_file, "chat", "chat", chat[:1])
        _pool_file(code_file, "code", "code", [code])
        serve = Serve(["--pool", str(chat_file), "--pool", str(code_file), "--profile", "round-robin"], tmp_path)
        try:
            client = openai.OpenAI(base_url=serve.url, api_key="unused", timeout=30, max_retries=0)

            def pods(model: str, n: int = 8) -> set[str]:
                return {client.completions.with_raw_response.create(model=model, prompt="x", max_tokens=2)
                        .headers["x-inference-pod"] for _ in range(n)}

            assert pods("chat") == {"chat-0"}
            assert pods("code") == {"code-0"}
            with pytest.raises(openai.NotFoundError):  # no route for a model no pool serves
                client.completions.create(model="other", prompt="x", max_tokens=2)

            _pool_file(chat_file, "chat", "chat", chat)  # a second chat endpoint
            poll(lambda: "chat-1" in pods("chat", 6), 30, "the new endpoint to get traffic")
            assert pods("code") == {"code-0"}
            assert f"pool default/chat re-read from {chat_file}" in serve.text()
            assert f"healthy   {chat[1].url}" in serve.text()  # the added endpoint's health line
            assert poll(lambda: len(serve.state()["pools"][0]["endpoints"]) == 2, 10, "the state file to follow")
        finally:
            serve.stop()
        assert serve.proc.returncode == 0
    finally:
        for sim in [*chat, code]:
            sim.stop()


def test_health_line_for_an_endpoint_that_is_down(tmp_path: Path) -> None:
    sim = Sim(free_port(), "m", "up-0")
    down = f"http://127.0.0.1:{free_port()}"
    try:
        serve = Serve(["--endpoint", sim.url, "--endpoint", down, "--model", "m"], tmp_path)
        try:
            text = serve.text()
            assert f"healthy   {sim.url}" in text
            assert f"UNHEALTHY {down}" in text and "not reachable" in text
            response = httpx.post(serve.url + "/completions", json={"model": "m", "prompt": "x", "max_tokens": 2},
                                  timeout=30)
            assert response.status_code == 200 and response.headers["x-inference-pod"] == "up-0"
        finally:
            serve.stop()
    finally:
        sim.stop()


def test_a_child_that_dies_stops_serve_with_its_log(tmp_path: Path) -> None:
    serve = Serve(["--sim", "1", "--sim-time-scale", "20"], tmp_path)
    try:
        started = descendants(serve.proc.pid)
        (epp,) = [pid for pid in started if " epp " in Path(f"/proc/{pid}/cmdline").read_bytes()
                  .replace(b"\0", b" ").decode()]
        os.kill(epp, signal.SIGKILL)
        rest = serve.wait_exit(40)
    finally:
        if serve.proc.poll() is None:
            serve.stop()
    assert serve.proc.returncode == 1
    assert "EPP default/serve" in rest and "exited with code -9" in rest
    assert "stopped everything infergate serve started" in rest
    assert not alive(started)


def test_ctrl_c_while_starting_stops_what_was_started(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "infergate", "serve", "--sim", "2", "--port", "0",
         "--state-file", str(tmp_path / "s.json")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert proc.stdout is not None
    seen: list[str] = []
    started: set[int] = set()
    try:
        for line in proc.stdout:  # the EPP is up, the gateway is being started
            seen.append(line)
            started |= descendants(proc.pid)
            if line.startswith("pool default/serve:"):
                break
        started |= descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    assert proc.returncode == 0, "".join(seen) + rest
    assert "received SIGINT: stopping" in rest and "simulator" in rest and "EPP default/serve" in rest
    assert len(started) >= 2 and not alive(started)
    assert not (tmp_path / "s.json").exists()
