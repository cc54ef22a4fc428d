"""Admission fails closed, and every custom resource is validated by ``infergate.api.validation``.

A validator or defaulter that raises is an internal error (500 ``Status``), never an
accepted object; unknown metadata fields do not skip validation; a third-party CRD's
schema is enforced with the same validator as infergate's own kinds (OpenAPI values,
RE2 patterns, list types, CEL rules), after pruning and defaulting.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infergate import api
from infergate.api import crds, registry
from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer
from infergate.apiserver.validation import Admission, FieldCause, api_validator, check_schema

POOLS = "/apis/inference.networking.k8s.io/v1/namespaces/default/inferencepools"
GADGETS = "/apis/example.infergate.io/v1/namespaces/default/gadgets"
CM = "/api/v1/namespaces/default/configmaps"
HOST = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

GADGET_SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["host"],
    "properties": {
        "host": {"type": "string", "pattern": HOST},
        "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
        "min": {"type": "integer"},
        "max": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "owner": {"type": "string",
                  "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "owner is immutable"}]},
    },
    "x-kubernetes-validations": [{"rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                                  "message": "min must not exceed max"}],
}
GADGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.infergate.io"},
    "spec": {"group": "example.infergate.io", "scope": "Namespaced",
             "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": GADGET_SPEC_SCHEMA}}}}]},
}


def _client(handle: ThreadedAPIServer) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(handle.ca_path))
    return httpx.Client(base_url=handle.url, verify=context, timeout=10.0,
                        headers={"Authorization": f"Bearer {handle.token}"})


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    handle = EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("validation-state"))
    try:
        with _client(handle) as client:
            pool_type = registry.by_gvk("inference.networking.k8s.io/v1", "InferencePool")
            assert pool_type is not None
            for crd in (crds.crd_for(pool_type), GADGET_CRD):
                created = client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
                assert created.status_code == 201, created.text
            yield client
    finally:
        handle.stop()


def pool(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": "vllm"}}, "targetPorts": [{"number": 8000}],
                     "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}, **spec}}


def gadget(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.infergate.io/v1", "kind": "Gadget", "metadata": {"name": name},
            "spec": {"host": "example.com", **spec}}


def _is_internal_error(response: httpx.Response) -> None:
    assert response.status_code == 500, response.text
    status = response.json()
    assert (status["kind"], status["status"], status["reason"], status["code"]) == (
        "Status", "Failure", "InternalError", 500)
    assert status["message"].startswith("Internal error occurred: ")


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("validator bug")


def test_a_validator_that_raises_is_a_500_and_nothing_is_stored(http: httpx.Client,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "validate", _boom)
    _is_internal_error(http.post(POOLS, json=pool("raising")))
    assert http.get(f"{POOLS}/raising").status_code == 404


def test_an_update_whose_validator_raises_is_a_500_and_the_object_is_unchanged(
        http: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    created = http.post(POOLS, json=pool("kept"))
    assert created.status_code == 201, created.text
    monkeypatch.setattr(api, "validate_update", _boom)
    changed = created.json()
    changed["spec"]["targetPorts"] = [{"number": 9000}]
    _is_internal_error(http.put(f"{POOLS}/kept", json=changed))
    assert http.get(f"{POOLS}/kept").json()["spec"]["targetPorts"] == [{"number": 8000}]


def test_a_defaulter_that_raises_is_a_500_and_nothing_is_stored(http: httpx.Client,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "apply_defaults", _boom)
    _is_internal_error(http.post(POOLS, json=pool("undefaulted")))
    assert http.get(f"{POOLS}/undefaulted").status_code == 404


def test_a_pluggable_validator_that_raises_is_a_500(tmp_path: Path) -> None:
    admission = Admission(use_api_package=False)

    def raising(obj: dict[str, Any], old: dict[str, Any] | None, crd: dict[str, Any] | None) -> list[FieldCause]:
        raise KeyError("mode")

    admission.add_validator("", "ConfigMap", raising)
    handle = EmbeddedAPIServer.run_in_thread(tmp_path, admission=admission)
    try:
        with _client(handle) as client:
            response = client.post(CM, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
            _is_internal_error(response)
            assert 'ConfigMap "c"' in response.json()["message"]
            assert client.get(f"{CM}/c").status_code == 404
    finally:
        handle.stop()


def test_an_unknown_metadata_field_does_not_skip_validation(http: httpx.Client) -> None:
    bad = pool("sneaky", targetPorts=[{"number": 0}])
    bad["metadata"]["surprise"] = "x"
    response = http.post(POOLS, json=bad)
    assert response.status_code == 422, response.text
    assert [c["field"] for c in response.json()["details"]["causes"]] == ["spec.targetPorts[0].number"]


def test_a_third_party_crd_is_pruned_defaulted_and_valid(http: httpx.Client) -> None:
    response = http.post(GADGETS, json=gadget("ok", colour="red", tags=["a", "b"]))
    assert response.status_code == 201, response.text
    assert response.json()["spec"] == {"host": "example.com", "mode": "fast", "tags": ["a", "b"]}
    strict = http.post(GADGETS, json=gadget("strict", colour="red"), params={"fieldValidation": "Strict"})
    assert strict.status_code == 400 and 'unknown field "spec.colour"' in strict.json()["message"]


SKIPPED_RULES = ("<nil>", "FieldValueInvalid", 'Invalid value: "null": some validation rules were not checked '
                 "because the object was invalid; correct the existing errors to complete validation")


@pytest.mark.parametrize(("spec", "causes"), [
    ({"host": "example.com\n"},  # RE2: '$' does not match before a trailing newline
     [("spec.host", "FieldValueInvalid", f"Invalid value: \"example.com\\n\": must match '{HOST}'")]),
    ({"min": 3, "max": 1}, [("spec", "FieldValueInvalid", 'Invalid value: "object": min must not exceed max')]),
    ({"tags": ["a", "a"]}, [("spec.tags[1]", "FieldValueDuplicate", 'Duplicate value: "a"')]),
    ({"mode": "warp"}, [("spec.mode", "FieldValueNotSupported",
                         'Unsupported value: "warp": supported values: "fast", "slow"'), SKIPPED_RULES]),
    ({"min": "3"}, [("spec.min", "FieldValueInvalid", 'Invalid value: "string": must be of type integer'),
                    SKIPPED_RULES]),
])
def test_a_third_party_crd_is_validated_by_api_validation(http: httpx.Client, spec: dict[str, Any],
                                                          causes: list[tuple[str, str, str]]) -> None:
    response = http.post(GADGETS, json=gadget("bad", **spec))
    assert response.status_code == 422, response.text
    got = [(c["field"], c["reason"], c["message"]) for c in response.json()["details"]["causes"]]
    assert got == causes
    assert http.get(f"{GADGETS}/bad").status_code == 404


def test_a_third_party_crd_requires_its_required_fields(http: httpx.Client) -> None:
    response = http.post(GADGETS, json={**gadget("nohost"), "spec": {}})
    assert response.status_code == 422
    causes = response.json()["details"]["causes"]
    assert [(c["field"], c["reason"]) for c in causes] == [("spec.host", "FieldValueRequired"), SKIPPED_RULES[:2]]


def test_an_unknown_field_with_a_dot_is_pruned_or_refused(http: httpx.Client) -> None:
    dotted = pool("dotted")
    dotted["spec"]["a.b"] = 1  # reported as spec.a.b, which path-based pruning cannot find
    strict = http.post(POOLS, json=dotted, params={"fieldValidation": "Strict"})
    assert strict.status_code == 400 and 'unknown field "spec.a.b"' in strict.json()["message"]
    created = http.post(POOLS, json=dotted)
    assert created.status_code == 201, created.text
    assert "a.b" not in created.json()["spec"]


def test_an_unknown_field_no_pruning_removes_is_an_error() -> None:
    obj = pool("p")
    obj["metadata"]["a.b"] = 1  # metadata is not pruned by schema, and the path has a dot
    assert api_validator(obj, None, None) == [FieldCause("metadata.a.b", "unknown field")]
    obj["metadata"] = {"name": "p", "surprise": 1}  # prunable: the rest is validated, and valid
    assert api_validator(obj, None, None) == []


def test_nulls_of_fields_that_are_not_nullable_are_pruned_before_defaulting(http: httpx.Client) -> None:
    response = http.post(GADGETS, json=gadget("nulls", mode=None, min=None, tags=None))
    assert response.status_code == 201, response.text
    assert response.json()["spec"] == {"host": "example.com", "mode": "fast"}


def test_check_schema_runs_transition_rules_when_given_the_old_object() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"class": {
        "type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]}}}}}
    new = {"metadata": {"name": "g"}, "spec": {"class": "b"}}
    assert check_schema(new, schema) == ([], [])  # a create: no old value, the rule does not run
    errors, _ = check_schema(new, schema, {"metadata": {"name": "g"}, "spec": {"class": "a"}})
    assert errors == [FieldCause("spec.class", 'Invalid value: "string": immutable')]


def test_a_third_party_crd_transition_rule_runs_on_update(http: httpx.Client) -> None:
    created = http.post(GADGETS, json=gadget("owned", owner="team-a"))
    assert created.status_code == 201, created.text
    body = created.json()
    body["spec"]["owner"] = "team-b"
    refused = http.put(f"{GADGETS}/owned", json=body)
    assert refused.status_code == 422, refused.text
    assert "owner is immutable" in refused.text
    assert http.get(f"{GADGETS}/owned").json()["spec"]["owner"] == "team-a"
    body["spec"]["owner"] = "team-a"
    body["spec"]["mode"] = "slow"
    assert http.put(f"{GADGETS}/owned", json=body).status_code == 200


def test_a_built_in_kind_name_with_a_trailing_newline_is_refused(http: httpx.Client) -> None:
    refused = http.post(CM, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm\n"}})
    assert refused.status_code == 422, refused.text
    assert "metadata.name" in refused.text
