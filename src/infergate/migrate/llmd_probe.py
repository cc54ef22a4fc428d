"""Does the EPP serve the llm-d.ai copies? A probe through the gateway and the EPP's metrics.

For each InferenceObjective given, ``probes`` completions are sent through the gateway with
the header ``x-gateway-inference-objective: <name>``; the EPP counts each scheduled request in
``infergate_epp_request_priority_total{objective, priority}``, with ``objective`` empty when it
does not know the objective. So the objective is served when that series, for its name and its
spec's priority, grew by the number of probes (summed over the EPPs' metrics URLs) and every
probe was answered 200. The copies have the originals' names and priorities, so they pass on an
EPP that still reads the x-k8s objects: the run probes first an objective that exists in
llm-d.ai only (:data:`infergate.migrate.llmd.PROBE_OBJECTIVE`). An EPP learns of new CRDs and
objects a moment after they appear, so a round it admitted without the objective is repeated
(bounded: ``settle_s``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import httpx
from prometheus_client.parser import text_string_to_metric_families

from infergate.api.headers import INFERENCE_OBJECTIVE
from infergate.migrate.llmd import EppVerifier
from infergate.util.tls import default_verify_context

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
                    timeout_s: float = 30.0, settle_s: float = 10.0, retry_s: float = 0.5) -> EppVerifier:
    """An :data:`EppVerifier`: ``gateway_url`` is the gateway's base URL (``/v1/completions`` is appended).

    The copies were applied a moment before: an EPP learns of them through its watch, so an
    objective whose probes it admitted without it is probed again every ``retry_s`` for up to
    ``settle_s`` before it counts as not served. A probe answered other than 200 fails at once.
    """

    def probe_one(client: httpx.Client, name: str, priority: int) -> str | None:
        """None when the EPP admitted every probe with the objective, else why not."""
        deadline = time.monotonic() + settle_s
        while True:
            try:
                before = sum(objective_count(t, name, priority) for t in _scrape(client, metrics_urls))
                codes = [client.post(f"{gateway_url.rstrip('/')}/v1/completions", headers={INFERENCE_OBJECTIVE: name},
                                     json={"model": model, "prompt": "migration probe", "max_tokens": 1}).status_code
                         for _ in range(probes)]
                after = sum(objective_count(t, name, priority) for t in _scrape(client, metrics_urls))
            except httpx.HTTPError as exc:
                return f"objective {name}: {exc!r}"
            if codes != [200] * probes:
                return f"objective {name}: probe answers {codes}"
            if after - before >= probes:
                return None
            if time.monotonic() + retry_s > deadline:
                return (f"objective {name}: the EPP admitted {after - before:g} of {probes} probes with objective "
                        f"{name!r} at priority {priority} (it does not serve the copy; retried for {settle_s:g} s)")
            time.sleep(retry_s)

    def verify(objectives: Mapping[str, int]) -> list[str]:
        with httpx.Client(verify=default_verify_context(), timeout=timeout_s) as client:
            found = [probe_one(client, name, priority) for name, priority in objectives.items()]
        return [problem for problem in found if problem is not None]

    return verify
