"""Compile and evaluate speed of the two CEL engines on the rule samples of ``test_cel_rules``.

Run from the repository root: ``PYTHONPATH=src .venv/bin/python tests/api/bench_cel.py``.
Prints the time per rule to compile (cache cold) and per sample to evaluate, for the
hand-written interpreter (:mod:`infergate.api.cel`) and Google's runtime (cel-expr-python),
the latter with and without converting the value to Kubernetes' escaped property names.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.api import google_cel
from tests.api.test_cel_rules import SAMPLES, _params

from infergate.api import cel
from infergate.api.validation import apply_schema_defaults

Case = tuple[str, dict[str, Any], Any]


def cases() -> list[Case]:
    out: list[Case] = []
    for param in _params():
        node, rule, _ = param.values
        for sample in SAMPLES[rule["message"]]:
            out.append((rule["rule"], node, apply_schema_defaults(sample, node)))
    return out


def per_call(fn: Callable[[], None], calls: int, repeat: int = 5) -> float:
    """The best of ``repeat`` runs, in microseconds per call."""
    best = min(_timed(fn) for _ in range(repeat))
    return best / calls * 1e6


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    samples = cases()
    sources = sorted({source for source, _, _ in samples})
    env = google_cel.environment()

    def compile_hand() -> None:
        cel.compile_rule.cache_clear()
        for source in sources:
            cel.compile_rule(source)

    def compile_google() -> None:
        for source in sources:
            env.compile(source)

    hand = {source: cel.compile_rule(source) for source in sources}
    google = {source: env.compile(source) for source in sources}
    converted = [(source, google_cel.to_cel(value, node)) for source, node, value in samples]

    def eval_hand() -> None:
        for source, _, value in samples:
            try:
                hand[source].eval({"self": value})
            except cel.CelError:
                pass

    def eval_google() -> None:
        for source, node, value in samples:
            google[source].eval(data={"self": google_cel.to_cel(value, node)})

    def eval_google_preconverted() -> None:
        for source, value in converted:
            google[source].eval(data={"self": value})

    print(f"{len(sources)} rules, {len(samples)} samples")
    print(f"compile, per rule:  hand-written {per_call(compile_hand, len(sources)):7.1f} us   "
          f"cel-expr-python {per_call(compile_google, len(sources)):7.1f} us")
    print(f"evaluate, per case: hand-written {per_call(eval_hand, len(samples)):7.1f} us   "
          f"cel-expr-python {per_call(eval_google, len(samples)):7.1f} us "
          f"({per_call(eval_google_preconverted, len(samples)):.1f} us without the conversion)")


if __name__ == "__main__":
    main()
