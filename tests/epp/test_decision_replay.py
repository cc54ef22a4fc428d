"""The scheduling decisions on a recorded request sequence are those of the EPP before the speed work.

The recording (tests/epp/testdata/decisions.json, made by tests/epp/decision_replay.py on commit
55bf8ad, before issue 12's changes to body parsing, prefix hashing and the Director) holds
300 requests (completions and chat, prompts up to ~20,000 characters with multi-byte
characters, so prefix hashing crosses its 256-block limit and cuts inside characters), the
endpoint metrics set every 5 requests, and the requests that finish. No intended difference from
the speed work: ``upstream-v1.0`` (the ``default`` of 55bf8ad) and ``prefix-load`` make the picks
recorded on 55bf8ad.

One intended difference, from issue 16: the ``default`` preset is now ``predicted-latency``
(pick-time accounting, prefix affinity until saturated, predicted TTFT; docs/epp.md). On this
sequence it makes 198 of the 300 picks differently from ``upstream-v1.0``: the scraped queues,
set at random here, no longer push a request away from the endpoints holding its system prompt,
so each system prompt is served by fewer endpoints (``test_new_default_differs_as_intended``).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from decision_replay import generate, replay

RECORDING = Path(__file__).parent / "testdata" / "decisions.json"


def test_inputs_are_the_recorded_ones() -> None:
    recording = json.loads(RECORDING.read_text())
    inputs = generate(recording["seed"])
    assert inputs["systems"] == recording["systems"]
    assert inputs["steps"] == recording["steps"]


def test_same_picks_as_recorded() -> None:
    recording = json.loads(RECORDING.read_text())
    picks = replay(recording)
    for preset, expected in recording["picks"].items():
        mismatches = [i for i, (a, b) in enumerate(zip(picks[preset], expected, strict=True)) if a != b]
        assert not mismatches, f"{preset}: {len(mismatches)} picks differ, first at step {mismatches[0]}"


def endpoints_per_system_prompt(recording: dict[str, Any], picks: list[str]) -> float:
    holders: defaultdict[int, set[str]] = defaultdict(set)
    for step, endpoint in zip(recording["steps"], picks, strict=True):
        holders[step["request"]["system"]].add(endpoint)
    return sum(len(h) for h in holders.values()) / len(holders)


def test_new_default_differs_as_intended() -> None:
    recording = json.loads(RECORDING.read_text())
    picks = recording["picks"]
    differ = sum(a != b for a, b in zip(picks["default"], picks["upstream-v1.0"], strict=True))
    assert differ == 198
    assert endpoints_per_system_prompt(recording, picks["upstream-v1.0"]) == pytest.approx(5.6)
    assert endpoints_per_system_prompt(recording, picks["default"]) == pytest.approx(3.5)
    assert not any(p.startswith("rejected") for p in picks["default"])
