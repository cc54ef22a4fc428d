"""InferencePool v1alpha2 (v0.3.0) <-> v1: every mapping, every lossy case, and a lossless round trip."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infergate import api
from infergate.api.conversion import ConversionError, pool_to_v1, pool_to_v1alpha2
from infergate.api.conversion.constants import ROUND_TRIP_ANNOTATION

PREVIEW = "inference.networking.x-k8s.io/v1alpha2"
GA = "inference.networking.k8s.io/v1"


def preview_pool(**spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"app": "vllm-llama3-8b-instruct"},
        "targetPortNumber": 8000,
        "extensionRef": {"name": "vllm-epp", "portNumber": 9002},
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": PREVIEW,
        "kind": "InferencePool",
        "metadata": {"name": "vllm", "namespace": "default"},
        "spec": spec,
    }


def condition(type_: str, status: str, reason: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": "m",
        "lastTransitionTime": "2025-01-02T03:04:05Z",
    }


# --- spec mapping -------------------------------------------------------------------------


def test_spec_fields_map_to_v1() -> None:
    pool = preview_pool(
        extensionRef={
            "group": "",
            "kind": "Service",
            "name": "vllm-epp",
            "portNumber": 9003,
            "failureMode": "FailOpen",
        }
    )
    result = pool_to_v1(pool, keep_round_trip_data=False)
    assert result.obj == {
        "apiVersion": GA,
        "kind": "InferencePool",
        "metadata": {"name": "vllm", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "vllm-llama3-8b-instruct"}},
            "targetPorts": [{"number": 8000}],
            "endpointPickerRef": {
                "group": "",
                "kind": "Service",
                "name": "vllm-epp",
                "port": {"number": 9003},
                "failureMode": "FailOpen",
            },
        },
    }
    assert result.warnings == ()
    assert api.validate(result.obj) == []


def test_missing_epp_port_becomes_9002_never_the_model_server_port() -> None:
    pool = preview_pool(extensionRef={"name": "vllm-epp"}, targetPortNumber=8000)
    result = pool_to_v1(pool, keep_round_trip_data=False)
    epp = result.obj["spec"]["endpointPickerRef"]
    assert epp == {"name": "vllm-epp", "port": {"number": 9002}}
    assert [(w.field, "9002" in w.message) for w in result.warnings] == [
        ("spec.extensionRef.portNumber", True)
    ]
    assert api.validate(result.obj) == []
    # Upstream's mapping (port left nil) is what the v1 CEL rule rejects:
    upstream_like = copy.deepcopy(result.obj)
    del upstream_like["spec"]["endpointPickerRef"]["port"]
    assert any("port is required" in str(e) for e in api.validate(upstream_like))


def test_missing_port_for_a_non_service_kind_stays_missing() -> None:
    pool = preview_pool(extensionRef={"group": "epp.example.com", "kind": "Picker", "name": "p"})
    result = pool_to_v1(pool, keep_round_trip_data=False)
    assert "port" not in result.obj["spec"]["endpointPickerRef"]
    assert result.warnings == ()
    assert api.validate(result.obj) == []


def test_absent_kind_and_failure_mode_stay_absent_instead_of_empty_strings() -> None:
    result = pool_to_v1(
        preview_pool(extensionRef={"name": "e", "portNumber": 9002}), keep_round_trip_data=False
    )
    assert result.obj["spec"]["endpointPickerRef"] == {"name": "e", "port": {"number": 9002}}


def test_spec_fields_map_back_to_v1alpha2() -> None:
    v1 = {
        "apiVersion": GA,
        "kind": "InferencePool",
        "metadata": {"name": "p"},
        "spec": {
            "selector": {"matchLabels": {"app": "x"}},
            "targetPorts": [{"number": 8080}],
            "endpointPickerRef": {
                "kind": "Service",
                "name": "p-epp",
                "port": {"number": 9002},
                "failureMode": "FailClose",
            },
        },
    }
    result = pool_to_v1alpha2(v1)
    assert result.obj["apiVersion"] == PREVIEW
    assert result.obj["spec"] == {
        "selector": {"app": "x"},
        "targetPortNumber": 8080,
        "extensionRef": {"kind": "Service", "name": "p-epp", "portNumber": 9002, "failureMode": "FailClose"},
    }
    assert api.validate(result.obj) == []


@pytest.mark.parametrize(
    ("targets", "message"),
    [([{"number": 1}, {"number": 2}], "Too many: 2"), ([], "Required value")],
)
def test_v1_pools_that_v1alpha2_cannot_hold_are_errors(targets: list[Any], message: str) -> None:
    v1 = pool_to_v1(preview_pool()).obj
    v1["spec"]["targetPorts"] = targets
    with pytest.raises(ConversionError) as info:
        pool_to_v1alpha2(v1)
    assert info.value.problems[0].field == "spec.targetPorts"
    assert message in info.value.problems[0].message


def test_wrong_kind_or_version_is_an_error() -> None:
    with pytest.raises(ConversionError) as info:
        pool_to_v1({**preview_pool(), "apiVersion": GA})
    assert [p.field for p in info.value.problems] == ["apiVersion"]
    with pytest.raises(ConversionError):
        pool_to_v1alpha2(preview_pool())


# --- status mapping -----------------------------------------------------------------------


def test_status_parents_and_reasons_map_to_v1() -> None:
    pool = preview_pool()
    pool["status"] = {
        "parent": [
            {
                "parentRef": {
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "Gateway",
                    "name": "gw",
                    "namespace": "default",
                },
                "conditions": [
                    condition("Accepted", "False", "NotSupportedByGateway"),
                    condition("ResolvedRefs", "True", "ResolvedRefs"),
                ],
            }
        ]
    }
    result = pool_to_v1(pool, keep_round_trip_data=False)
    assert result.obj["status"] == {
        "parents": [
            {
                "parentRef": {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": "gw",
                    "namespace": "default",
                },
                "conditions": [
                    condition("Accepted", "False", "NotSupportedByParent"),
                    condition("ResolvedRefs", "True", "ResolvedRefs"),
                ],
            }
        ]
    }
    assert result.warnings == ()
    back = pool_to_v1alpha2(result.obj).obj
    assert back["status"] == pool["status"]


def test_status_placeholders_and_unrepresentable_parents_are_dropped_with_warnings() -> None:
    pool = preview_pool()
    pool["status"] = {
        "parent": [
            {
                "parentRef": {"kind": "Status", "name": "default"},
                "conditions": [condition("Accepted", "Unknown", "Pending")],
            },
            {"parentRef": {"kind": "Gateway"}},  # no name: v1 requires one
            {
                "parentRef": {
                    "apiVersion": "gateway.networking.k8s.io/v1beta1",
                    "kind": "Gateway",
                    "name": "gw",
                    "namespace": "Not_A_Label",
                    "uid": "1234",
                    "fieldPath": "spec",
                    "resourceVersion": "7",
                },
                "conditions": [condition("Accepted", "Unknown", "Pending")],
            },
        ]
    }
    result = pool_to_v1(pool, keep_round_trip_data=False)
    assert result.obj["status"] == {
        "parents": [{"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}}]
    }
    fields = [w.field for w in result.warnings]
    assert fields == [
        "status.parent[0]",
        "status.parent[1].parentRef.name",
        "status.parent[2].parentRef.apiVersion",
        "status.parent[2].parentRef.namespace",
        "status.parent[2].parentRef.fieldPath",
        "status.parent[2].parentRef.resourceVersion",
        "status.parent[2].parentRef.uid",
        "status.parent[2].conditions[0]",
    ]
    assert api.validate(result.obj) == []


# --- round trip ---------------------------------------------------------------------------


def test_round_trip_data_restores_what_v1_cannot_hold() -> None:
    pool = preview_pool(extensionRef={"name": "vllm-epp"})
    pool["status"] = {"parent": [{"parentRef": {"kind": "Status", "name": "default"}}]}
    v1 = pool_to_v1(pool).obj
    stored = json.loads(v1["metadata"]["annotations"][ROUND_TRIP_ANNOTATION])
    assert stored == {"spec": pool["spec"], "status": pool["status"], "noAnnotations": True}
    assert api.validate(v1) == []
    back = pool_to_v1alpha2(v1)
    assert back.obj == pool
    assert back.warnings == ()


def test_an_edited_v1_object_converts_by_the_mapping_not_the_stale_data() -> None:
    v1 = pool_to_v1(preview_pool(extensionRef={"name": "vllm-epp"})).obj
    v1["spec"]["targetPorts"] = [{"number": 8001}]
    back = pool_to_v1alpha2(v1)
    assert back.obj["spec"]["targetPortNumber"] == 8001
    assert back.obj["spec"]["extensionRef"]["portNumber"] == 9002
    assert "annotations" not in back.obj["metadata"]
    assert [w.field for w in back.warnings] == [f"metadata.annotations[{ROUND_TRIP_ANNOTATION}]"]


def test_an_existing_annotation_with_the_same_key_survives_the_round_trip() -> None:
    pool = preview_pool()
    pool["metadata"]["annotations"] = {ROUND_TRIP_ANNOTATION: "not json", "other": "x"}
    v1 = pool_to_v1(pool).obj
    assert pool_to_v1alpha2(v1).obj == pool


def test_without_round_trip_data_no_annotation_is_written() -> None:
    v1 = pool_to_v1(preview_pool(extensionRef={"name": "e"}), keep_round_trip_data=False).obj
    assert "annotations" not in v1["metadata"]


# --- property: every valid v1alpha2 pool round-trips losslessly -----------------------------

_dns_label = st.from_regex(r"\A[a-z]([-a-z0-9]{0,12}[a-z0-9])?\Z")
_label_key = st.one_of(_dns_label, st.builds(lambda p, n: f"{p}.example.com/{n}", _dns_label, _dns_label))
_label_value = st.from_regex(r"\A(([A-Za-z0-9][-A-Za-z0-9_.]{0,12})?[A-Za-z0-9])?\Z")
_port = st.integers(1, 65535)
_time = st.sampled_from(["2025-01-02T03:04:05Z", "1970-01-01T00:00:00Z"])
_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


def _optional(d: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts holding any subset of the given strategies' keys."""
    return st.fixed_dictionaries({}, optional=d)


_condition = st.builds(
    lambda t, s, r, m, time, extra: (
        {"type": t, "status": s, "reason": r, "message": m, "lastTransitionTime": time} | extra
    ),
    st.sampled_from(["Accepted", "ResolvedRefs", "Ready"]),
    st.sampled_from(["True", "False", "Unknown"]),
    st.sampled_from(
        [
            "Accepted",
            "NotSupportedByGateway",
            "NotSupportedByParent",
            "Pending",
            "HTTPRouteNotAccepted",
            "InvalidExtensionRef",
        ]
    ),
    _text,
    _time,
    _optional({"observedGeneration": st.integers(0, 10)}),
)
_parent_ref = _optional(
    {
        "apiVersion": st.sampled_from(
            [
                "gateway.networking.k8s.io/v1",
                "gateway.networking.k8s.io/v1beta1",
                "v1",
                "example.com/v2",
                "",
                "Bad_Group/v1",
            ]
        ),
        "kind": st.sampled_from(["Gateway", "Status", "", "not a kind"]),
        "name": st.sampled_from(["gw", "default", "", "x" * 254]),
        "namespace": st.sampled_from(["default", "", "Not_A_Label"]),
        "fieldPath": _text,
        "resourceVersion": st.sampled_from(["1", "42"]),
        "uid": st.uuids().map(str),
    }
)
_parent = st.builds(
    lambda ref, conds: {"parentRef": ref} | ({"conditions": conds} if conds is not None else {}),
    _parent_ref,
    st.one_of(st.none(), st.lists(_condition, max_size=3, unique_by=lambda c: c["type"])),
)
_extension_ref = st.builds(
    lambda name, extra: {"name": name} | extra,
    _dns_label,
    _optional(
        {
            "group": st.sampled_from(["", "epp.example.com"]),
            "kind": st.sampled_from(["Service", "Picker"]),
            "portNumber": _port,
            "failureMode": st.sampled_from(["FailOpen", "FailClose"]),
        }
    ),
)
_metadata = st.builds(
    lambda name, extra: {"name": name} | extra,
    _dns_label,
    _optional(
        {
            "namespace": _dns_label,
            "labels": st.dictionaries(_label_key, _label_value, max_size=3),
            "annotations": st.dictionaries(
                st.sampled_from(["a.example.com/x", "team", ROUND_TRIP_ANNOTATION]), _text
            ),
            "creationTimestamp": _time,
            "uid": st.uuids().map(str),
            "resourceVersion": st.sampled_from(["1", "99"]),
        }
    ),
)
valid_preview_pools = st.builds(
    lambda meta, selector, port, ext, status: (
        {
            "apiVersion": PREVIEW,
            "kind": "InferencePool",
            "metadata": meta,
            "spec": {"selector": selector, "targetPortNumber": port, "extensionRef": ext},
        }
        | ({"status": status} if status is not None else {})
    ),
    _metadata,
    st.dictionaries(_label_key, _label_value, min_size=1, max_size=4),
    _port,
    _extension_ref,
    st.one_of(st.none(), st.just({}), st.builds(lambda ps: {"parent": ps}, st.lists(_parent, max_size=4))),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool=valid_preview_pools)
def test_round_trip_is_lossless_and_v1_is_valid(
    pool: dict[str, Any], upstream_check: Callable[[dict[str, Any]], list[str]]
) -> None:
    assert api.validate(pool) == [], "the generator must produce valid v0.3.0 pools"
    original = copy.deepcopy(pool)

    converted = pool_to_v1(pool)
    v1 = converted.obj
    assert pool == original, "the input is not modified"
    assert api.validate(v1) == []
    assert upstream_check(v1) == [], "valid against the upstream v1.0.0 CRD"
    assert upstream_check(pool_to_v1(pool, keep_round_trip_data=False).obj) == []

    back = pool_to_v1alpha2(v1)
    assert back.obj == original
    assert back.warnings == ()

    # The typed models agree on what the pool means.
    preview_model = api.load(pool)
    ga_model = api.load(v1)
    spec, ga_spec = preview_model.spec, ga_model.spec  # type: ignore[attr-defined]
    assert ga_spec.selector.match_labels == spec.selector
    assert [p.number for p in ga_spec.target_ports] == [spec.target_port_number]
    ext, epp = spec.extension_ref, ga_spec.endpoint_picker_ref
    assert (epp.group, epp.kind, epp.name, epp.failure_mode) == (
        ext.group,
        ext.kind,
        ext.name,
        ext.failure_mode,
    )
    expected_port = (
        ext.port_number if ext.port_number is not None else (9002 if ext.kind == "Service" else None)
    )
    assert (epp.port.number if epp.port else None) == expected_port


def test_the_status_shape_of_the_x_k8s_crd_that_v1_0_0_reships_is_understood() -> None:
    """GIE v1.0.0 re-ships the x-k8s.io pool CRD with ParentGatewayReference parents (upstream's conversion input)."""
    pool = preview_pool()
    pool["status"] = {
        "parent": [
            {"parentRef": {"kind": "Status", "name": "default"}},
            {
                "parentRef": {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": "gw",
                    "namespace": "ns",
                },
                "conditions": [condition("Accepted", "True", "Accepted")],
            },
        ]
    }
    result = pool_to_v1(pool)
    assert result.obj["status"] == {
        "parents": [
            {
                "parentRef": {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": "gw",
                    "namespace": "ns",
                },
                "conditions": [condition("Accepted", "True", "Accepted")],
            }
        ]
    }
    assert [w.field for w in result.warnings] == ["status.parent[0]"]
    assert pool_to_v1alpha2(result.obj).obj == pool


def test_parent_ref_kind_and_group_outside_v1_patterns_are_dropped_with_warnings() -> None:
    pool = preview_pool()
    pool["status"] = {
        "parent": [{"parentRef": {"apiVersion": "Bad_Group/v1", "kind": "not a kind", "name": "gw"}}]
    }
    result = pool_to_v1(pool, keep_round_trip_data=False)
    assert result.obj["status"] == {"parents": [{"parentRef": {"name": "gw"}}]}
    assert [w.field for w in result.warnings] == [
        "status.parent[0].parentRef.apiVersion",
        "status.parent[0].parentRef.kind",
    ]
    assert api.validate(result.obj) == []
