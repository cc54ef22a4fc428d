"""The scheduling decisions on a recorded request sequence are those of the EPP before the speed work.

The recording (tests/epp/testdata/decisions.json, made by tests/epp/decision_replay.py on commit
55bf8ad, before issue 12's changes to body parsing, prefix hashing and the Director) holds
300 requests (completions and chat, prompts up to ~20,000 characters with multi-byte
characters, so prefix hashing crosses its 256-block limit and cuts inside characters), the
endpoint metrics set every 5 requests, and the requests that finish. No intended difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
