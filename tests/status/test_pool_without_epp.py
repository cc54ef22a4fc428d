"""A GA pool without ``endpointPickerRef`` (GIE v1.6: the gateway balances it itself) is shown as
having no EPP, not as an EPP named "" on port 0 whose metrics are unreachable."""

from __future__ import annotations

from rich.console import Console

from infergate.status.collect import Objects, _pool_status, plan_pool
from infergate.status.model import StatusSnapshot
from infergate.status.render import render

POOL = {
    "apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
    "metadata": {"namespace": "default", "name": "plain"},
    "spec": {"selector": {"matchLabels": {"app": "vllm"}}, "targetPorts": [{"number": 8000}]},
}


def test_a_pool_without_an_epp_is_shown_as_balanced_by_the_gateway() -> None:
    objects = Objects(gateways=[], routes=[], pools=[POOL], objectives=[], models=[], services=[], pods=[])
    plan = plan_pool(objects, POOL)
    status = _pool_status(objects, plan, {}, {}, 2.0)
    assert status.epp == "" and status.epp_reachable and status.epp_error is None
    assert status.failure_mode == "-"
    console = Console(width=220, record=True)
    console.print(render(StatusSnapshot("test", "2026-01-01T00:00:00Z", 2.0, [], [], [status])))
    text = console.export_text()
    row = next(line for line in text.splitlines() if "default/plain" in line)
    assert "none (gateway)" in row and ":0" not in row and "unreachable" not in row
