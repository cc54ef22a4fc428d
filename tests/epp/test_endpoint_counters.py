"""The EPP counts, per endpoint, the requests it picked that endpoint for and the responses with
an HTTP status >= 400 (``infergate_epp_endpoint_{requests,errors}_total``): what `infergate status`
and the dashboard turn into per-endpoint rates."""

from __future__ import annotations

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families
from tests.epp.test_director import idle, make, req


def _by_endpoint(text: str, name: str) -> dict[str, float]:
    return {s.labels["endpoint"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


async def test_each_pick_and_each_error_is_counted_for_its_endpoint() -> None:
    director, _, store = make()
    idle(store)
    picks: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for i in range(12):
        decision = await director.handle_request(req(f"r{i}", prompt=f"prompt {i} " * 20))
        picks[decision.endpoint] += 1
        director.on_response_headers(f"r{i}", 503 if i % 4 == 0 else 200, {"content-type": "application/json"})
        failed[decision.endpoint] += i % 4 == 0
        director.on_request_done(f"r{i}", completed=True)
    headers_only = await director.handle_request(req("h", headers_only=True))
    picks[headers_only.endpoint] += 1  # a request sent without a body is still sent to an endpoint
    director.on_request_done("h", completed=True)

    text = director.metrics.render().decode()
    assert _by_endpoint(text, "infergate_epp_endpoint_requests_total") == {k: float(v) for k, v in picks.items()}
    errors = _by_endpoint(text, "infergate_epp_endpoint_errors_total")
    assert errors == {k: float(v) for k, v in failed.items() if v} and sum(errors.values()) == 3
