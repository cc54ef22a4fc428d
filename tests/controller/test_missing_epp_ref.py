"""GIE v1.6.0 conformance InferencePoolMissingEPPRef on the translator: a pool without
``endpointPickerRef`` (optional since v1.6.0). Upstream accepts the HTTPRoute and either
``Accepted=True`` or ``Accepted=False`` with reason ``EndpointPickerRefMissing`` on the pool;
infergate balances such a pool itself (round robin over its ready endpoints, no ext_proc), so
it reports the former (traffic: test_conformance_e2e.test_inferencepool_missing_epp_ref)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infergate.controller.manifests import parse_manifests
from infergate.controller.resources import ObjectRef
from infergate.controller.snapshot import Snapshot
from infergate.controller.translator import TranslatorOptions, translate
from infergate.controller.translator.addresses import LoopbackAllocator
from infergate.dataplane.xds_translator import translate as translate_xds
from infergate.dataplane.xds_translator.filters import ext_proc

from .support import GATEWAY_CLASS, gateway_class, pods_for_deployments

V1 = "inference.networking.k8s.io"
APP = "inference-conformance-app-backend"


def objects(reference_dir: Path, manifest: str) -> list[dict[str, Any]]:
    folder = reference_dir / "gie-v1.6.0" / "conformance"
    out: list[dict[str, Any]] = [gateway_class()]
    for name in ("base.yaml", manifest):
        out.extend(parse_manifests((folder / name).read_text().replace("{GATEWAY_CLASS_NAME}", GATEWAY_CLASS), name))
    return out + pods_for_deployments(out)


def conditions(status: dict[str, Any], parent: str) -> dict[str, tuple[str, str]]:
    (entry,) = [p for p in status["parents"] if p["parentRef"]["name"] == parent]
    return {c["type"]: (c["status"], c["reason"]) for c in entry["conditions"]}


def test_pool_without_endpoint_picker_ref(reference_dir: Path) -> None:
    result = translate(Snapshot.of(objects(reference_dir, "inferencepool_missing_epp_ref.yaml")),
                       TranslatorOptions(addresses=LoopbackAllocator("127.0.2.0/24")))
    route = result.statuses[ObjectRef("gateway.networking.k8s.io", "HTTPRoute", APP, "httproute-for-missing-epp-ref-pool")]
    assert conditions(route, "conformance-primary")["Accepted"] == ("True", "Accepted")
    pool = result.statuses[ObjectRef(V1, "InferencePool", APP, "pool-with-missing-epp-ref")]
    assert conditions(pool, "conformance-primary") == {"Accepted": ("True", "Accepted"),
                                                       "ResolvedRefs": ("True", "ResolvedRefs")}
    (ir_pool,) = [p for p in result.ir.pools if p.name == "pool-with-missing-epp-ref"]
    assert ir_pool.picker is None and len(ir_pool.endpoints) == 3  # the gateway balances it


def test_pool_without_endpoint_picker_has_no_ext_proc(reference_dir: Path) -> None:
    result = translate(Snapshot.of(objects(reference_dir, "inferencepool_missing_epp_ref.yaml")),
                       TranslatorOptions(addresses=LoopbackAllocator("127.0.2.0/24")))
    resources = translate_xds(result.ir)
    (ir_pool,) = [p for p in result.ir.pools if p.name == "pool-with-missing-epp-ref"]
    routes = [r for rc in resources.route_configurations for vh in rc["virtual_hosts"] for r in vh["routes"]
              if "/missing-epp-ref-test" in r["match"].values()]
    assert routes, "no route for the pool"
    for route in routes:
        clusters = route["route"].get("weighted_clusters", {}).get("clusters") or [route["route"]]
        for cluster in clusters:
            config = cluster.get("typed_per_filter_config") or route.get("typed_per_filter_config")
            assert config[ext_proc.NAME]["disabled"] is True
    assert ir_pool.key in {c["name"] for c in resources.clusters}
    assert not [c for c in resources.clusters if c["name"].startswith("epp//")]
