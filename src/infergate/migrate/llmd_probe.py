"""Does the EPP serve the llm-d.ai copies? A probe through the gateway and the EPP's metrics.

For each moved InferenceObjective, ``probes`` completions are sent through the gateway with
the header ``x-gateway-inference-objective: <name>``; the EPP counts each scheduled request in
``infergate_epp_request_priority_total{objective, priority}``, with ``objective`` empty when it
does not know the objective. So the objective is served when that series, for its name and its
spec's priority, grew by the number of probes (summed over the EPPs' metrics URLs) and every
probe was answered 200. Run while both the x-k8s objects and their copies exist: an EPP with the
llm-d.ai CRDs reads only the copies, so a pass means the copies are what it serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx
from prometheus_client.parser import text_string_to_metric_families

from infergate.api.headers import INFERENCE_OBJECTIVE
from infergate.migrate.llmd import EppVerifier, LlmdPlan

SERIES = "infergate_epp_request_priority_total"


def objective_count(text: str, objective: str, priority: int) -> float:
    """The EPP's admitted-request count for one objective at one priority (0 when absent)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == SERIES and sample.labels.get("objective") == objective \
                    and sample.labels.get("priority") == str(priority):
                total += sample.value
    return total


def _scrape(client: httpx.Client, urls: Sequence[str]) -> list[str]:
    return [client.get(url).text for url in urls]


def objective_probe(gateway_url: str, metrics_urls: Sequence[str], model: str, *, probes: int = 3,
                    timeout_s: float = 30.0) -> EppVerifier:
    """An :data:`EppVerifier`: ``gateway_url`` is the gateway's base URL (``/v1/completions`` is appended)."""

    def verify(plan: LlmdPlan) -> list[str]:
        problems: list[str] = []
        objectives: Mapping[str, int] = {m.name: int(m.spec.get("priority") or 0) for m in plan.moves
                                         if m.kind == "InferenceObjective"}
        with httpx.Client(timeout=timeout_s) as client:
            for name, priority in objectives.items():
                try:
                    before = sum(objective_count(t, name, priority) for t in _scrape(client, metrics_urls))
                    codes = [client.post(f"{gateway_url.rstrip('/')}/v1/completions",
                                         headers={INFERENCE_OBJECTIVE: name},
                                         json={"model": model, "prompt": "migration probe", "max_tokens": 1}
                                         ).status_code for _ in range(probes)]
                    after = sum(objective_count(t, name, priority) for t in _scrape(client, metrics_urls))
                except httpx.HTTPError as exc:
                    problems.append(f"objective {name}: {exc!r}")
                    continue
                if codes != [200] * probes:
                    problems.append(f"objective {name}: probe answers {codes}")
                elif after - before < probes:
                    problems.append(f"objective {name}: the EPP admitted {after - before:g} of {probes} probes "
                                    f"with objective {name!r} at priority {priority} (it does not serve the copy)")
        return problems

    return verify
