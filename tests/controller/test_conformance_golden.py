"""Golden files of the translator for GIE v1.6.0's conformance scenarios (v1.6.0's ``base.yaml``
+ each manifest -> ``testdata/conformance/<case>.out.yaml``), beside ``test_golden.py``'s v1.0.0
ones. Regenerate with ``INFERGATE_UPDATE_GOLDEN=1 pytest tests/controller -k golden``. Each
case also asserts what upstream's test needs of the translation, so a regenerated golden file
cannot silently accept a wrong one; traffic is in ``test_conformance_e2e.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infergate.controller.render import result_to_plain
from infergate.controller.resources import ObjectRef
from infergate.ir import Pool

from .test_golden import run
from .test_missing_epp_ref import objects

GW = "gateway.networking.k8s.io"
V1 = "inference.networking.k8s.io"
APP = "inference-conformance-app-backend"
SCENARIOS = {  # manifest -> its HTTPRoutes
    "gateway_destination_endpoint_served": ("httproute-for-destination-endpoint-served",),
    "gateway_following_epp_routing_dp": ("httproute-for-primary-gw-dp",),
    "gateway_weighted_two_pools": ("httproute-weighted-two-pools",),
    "inferencepool_appprotocol": tuple(f"httproute-for-inferencepool-appprotocol-{k}" for k in ("h2c", "http", "default")),
    "inferencepool_missing_epp_ref": ("httproute-for-missing-epp-ref-pool",),
}


def _pools(result: Any) -> dict[str, Pool]:
    return {p.name: p for p in result.ir.pools}


@pytest.mark.parametrize("case", sorted(SCENARIOS))
def test_golden_conformance_v1_6(case: str, reference_dir: Path, golden: Any) -> None:
    result = run(objects(reference_dir, f"{case}.yaml"))
    golden(f"conformance/{case}", result_to_plain(result))
    for route in SCENARIOS[case]:
        (parent,) = result.statuses[ObjectRef(GW, "HTTPRoute", APP, route)]["parents"]
        assert {c["type"]: c["status"] for c in parent["conditions"]} == {"Accepted": "True", "ResolvedRefs": "True"}
    pools = _pools(result)
    assert pools, "the scenario's pools reach the IR"
    for pool in pools.values():  # each pool has its EPP's endpoints, or none at all (missing ref)
        assert pool.endpoints and (pool.picker is None or pool.picker.endpoints), pool.name
    if case == "inferencepool_missing_epp_ref":  # the gateway balances it itself
        assert pools["pool-with-missing-epp-ref"].picker is None
    if "dp-inference-pool" in pools:  # data parallelism: every targetPort of every ready pod is an endpoint
        dp = pools["dp-inference-pool"]
        assert dp.target_ports == (3000, 3002, 3004)
        assert len(dp.endpoints) == 9 and {e.port for e in dp.endpoints} == {3000, 3002, 3004}
    if case == "inferencepool_appprotocol":
        assert pools["appprotocol-h2c-inference-pool"].app_protocol == "kubernetes.io/h2c"
        assert pools["appprotocol-h2c-inference-pool"].target_ports == (3001,)

def test_weighted_two_pools_keeps_the_weights(reference_dir: Path) -> None:
    result = run(objects(reference_dir, "gateway_weighted_two_pools.yaml"))
    (listener,) = [lst for lst in result.ir.listeners if lst.gateway_name == "conformance-primary"]
    routes = [r for vh in listener.virtual_hosts for r in vh.routes if r.match.path == "/weighted-two-pools-test"]
    assert routes
    pools = _pools(result)
    for route in routes:
        weights = {b.target: b.weight for b in route.backends}
        assert weights == {pools["primary-inference-pool"].key: 70, pools["secondary-inference-pool"].key: 30}
