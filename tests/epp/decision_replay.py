"""Record and replay the scheduling decisions on a fixed request sequence.

``tests/epp/testdata/decisions.json`` was first recorded with the EPP as it was before the speed
work of issue 12 (commit 55bf8ad), for the presets ``default`` (then upstream v1.0's config) and
``prefix-load``, by::

    PYTHONPATH=src python tests/epp/decision_replay.py --write tests/epp/testdata/decisions.json

and re-recorded the same way when issue 16 made ``predicted-latency`` the ``default`` preset:
the ``upstream-v1.0`` and ``prefix-load`` picks of the re-recording are identical to the
``default`` and ``prefix-load`` picks of 55bf8ad (checked when re-recording), and ``default``
now holds the new default's picks (see test_decision_replay.py for the difference).

The file holds the inputs (endpoint metrics per step, request bodies, which requests finish)
and the endpoint each request was sent to. ``test_decision_replay.py`` replays the inputs
through today's body parser and Director and requires the same picks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from pathlib import Path
from typing import Any

from infergate.epp.contract import InferenceRequest, Rejection
from infergate.epp.datastore import Datastore, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.extproc import messages
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.scheduling.config import load_preset
from infergate.epp.scheduling.plugins.inflight import InflightLoadProducer

PRESETS = ("upstream-v1.0", "prefix-load", "default")
ENDPOINTS = 8
REQUESTS = 300
WORDS = ("alpha", "beta", "gamma", "delta", "ünïcødé", "日本語", "emoji🙂", "token", "cache", "prefix")


def generate(seed: int = 12) -> dict[str, Any]:
    """The inputs: system prompts, and per step the metrics to set, the body and what finishes."""
    rng = random.Random(seed)
    # system prompts from 100 to 20,000 characters (past the 256 x 64-byte hashing limit)
    systems = [" ".join(rng.choice(WORDS) for _ in range(rng.choice((20, 200, 800, 3000)))) for _ in range(10)]
    steps: list[dict[str, Any]] = []
    open_ids: list[str] = []
    for i in range(REQUESTS):
        metrics = None
        if i % 5 == 0:  # a scrape round every 5 requests
            metrics = {f"pod-{e}": {"waiting_queue": rng.randint(0, 6), "kv_cache_usage": round(rng.random(), 3),
                                    "running": rng.randint(0, 20)} for e in range(ENDPOINTS)}
        system = rng.randrange(len(systems))
        question = f" Q{i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40)))
        if rng.random() < 0.5:
            body: dict[str, Any] = {"model": "m", "prompt": systems[system] + question, "max_tokens": 16}
            prompt_ref: dict[str, Any] = {"system": system, "question": question}
        else:
            body = {"model": "m", "messages": [{"role": "system", "content": systems[system]},
                                              {"role": "user", "content": question}]}
            prompt_ref = {"system": system, "question": question, "chat": True}
        done = []
        while open_ids and rng.random() < 0.6:
            done.append(open_ids.pop(rng.randrange(len(open_ids))))
        open_ids.append(f"r{i}")
        steps.append({"metrics": metrics, "request": prompt_ref, "done": done, "stream": body.get("max_tokens") is None})
    return {"seed": seed, "systems": systems, "steps": steps}


def _body(systems: list[str], ref: dict[str, Any], stream: bool) -> bytes:
    if ref.get("chat"):
        body: dict[str, Any] = {"model": "m", "messages": [{"role": "system", "content": systems[ref["system"]]},
                                                          {"role": "user", "content": ref["question"]}]}
    else:
        body = {"model": "m", "prompt": systems[ref["system"]] + ref["question"], "max_tokens": 16}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


async def _replay_preset(inputs: dict[str, Any], preset: str) -> list[str]:
    datastore = Datastore()
    datastore.set_pool(PoolInfo("pool", selector=None, target_ports=(8000,)))
    datastore.replace_pods(PodInfo(f"pod-{e}", f"10.1.0.{e + 1}") for e in range(ENDPOINTS))
    address = {f"pod-{e}": f"10.1.0.{e + 1}:8000" for e in range(ENDPOINTS)}
    store = MetricsStore(staleness_threshold=1e9)
    scheduler = load_preset(preset, seed=inputs["seed"])
    # the steps are the clock: metrics of step i are stamped i, its picks and ends i + 0.5
    clock = [0.0]
    for plugin in scheduler.plugins.values():
        if isinstance(plugin, InflightLoadProducer):
            plugin.load.clock = lambda: clock[0]
    director = EppDirector(datastore, scheduler, store, config=DirectorConfig(seed=inputs["seed"]))
    picks: list[str] = []
    for i, step in enumerate(inputs["steps"]):
        clock[0] = i + 0.5
        for request_id in step["done"]:
            director.on_request_done(request_id, completed=True)
        if step["metrics"] is not None:
            for pod, m in step["metrics"].items():
                store.update(address[pod], EndpointMetrics(m["waiting_queue"], m["kv_cache_usage"], m["running"],
                                                           update_time=float(i)))
        raw = _body(inputs["systems"], step["request"], step["stream"])
        parsed = messages.parse_body(raw, {})
        request = InferenceRequest(f"r{i}", {}, parsed.body, parsed.model, None, parsed.prompt,
                                   streaming=parsed.streaming, body_size=len(raw))
        try:
            decision = await director.handle_request(request)
        except Rejection as rejection:
            picks.append(f"rejected {rejection.status}")
            continue
        picks.append(decision.endpoint)
    return picks


def replay(inputs: dict[str, Any]) -> dict[str, list[str]]:
    """The endpoint picked for each step, per preset."""
    return {preset: asyncio.run(_replay_preset(inputs, preset)) for preset in PRESETS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, required=True)
    args = parser.parse_args()
    inputs = generate()
    recording = {**inputs, "picks": replay(inputs)}
    args.write.write_text(json.dumps(recording, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
