"""The generated CRDs are acceptable to a real API server: structural schemas (the checks of
``apiextensions-apiserver``'s CRD validation), compiling CEL rules, valid defaults, and an
install with the real kubectl into the embedded API server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infergate.api import cel, crds
from infergate.api.validation import validate_tree

_VALUE_VALIDATION_FORBIDDEN = {
    "description",
    "type",
    "default",
    "additionalProperties",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
}
_TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def _value_validation_problems(node: dict[str, Any], structural: dict[str, Any], path: str) -> Iterator[str]:
    for key in node:
        if key in _VALUE_VALIDATION_FORBIDDEN:
            yield f"{path}: {key} is not allowed inside a value validation (oneOf/anyOf/allOf/not)"
    for name, sub in (node.get("properties") or {}).items():
        target = (structural.get("properties") or {}).get(name)
        if target is None:
            yield f"{path}.properties.{name}: not specified in the structural part of the schema"
        else:
            yield from _value_validation_problems(sub, target, f"{path}.properties.{name}")
    for combinator in ("oneOf", "anyOf", "allOf"):
        for i, branch in enumerate(node.get(combinator, [])):
            yield from _value_validation_problems(branch, structural, f"{path}.{combinator}[{i}]")
    if isinstance(node.get("not"), dict):
        yield from _value_validation_problems(node["not"], structural, f"{path}.not")
    if isinstance(node.get("items"), dict):
        yield from _value_validation_problems(node["items"], structural.get("items") or {}, f"{path}.items")


def structural_problems(node: dict[str, Any], path: str = "") -> Iterator[str]:
    """What the API server's structural-schema check would reject."""
    t = node.get("type")
    loose = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    if t is None and not loose:
        yield f"{path}: type must not be empty"
    if t is not None and t not in _TYPES:
        yield f"{path}: unknown type {t!r}"
    if "properties" in node and "additionalProperties" in node:
        yield f"{path}: properties and additionalProperties are mutually exclusive"
    if ("properties" in node or "additionalProperties" in node) and t != "object":
        yield f"{path}: properties need type object"
    if "items" in node and t != "array":
        yield f"{path}: items need type array"
    if t == "array" and "items" not in node:
        yield f"{path}: items must be specified for arrays"
    for req in node.get("required", []):
        if req not in (node.get("properties") or {}):
            yield f"{path}: required property {req!r} is not a property"
    for value in node.get("enum", []):
        if t == "string" and not isinstance(value, str):
            yield f"{path}: enum value {value!r} is not a string"
        if t == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
            yield f"{path}: enum value {value!r} is not an integer"
    list_type = node.get("x-kubernetes-list-type")
    if list_type is not None:
        if t != "array":
            yield f"{path}: x-kubernetes-list-type needs type array"
        if list_type == "map":
            items = node.get("items") or {}
            if items.get("type") != "object":
                yield f"{path}: list-type map needs object items"
            for key in node.get("x-kubernetes-list-map-keys", []):
                prop = (items.get("properties") or {}).get(key)
                if prop is None:
                    yield f"{path}: list-map key {key!r} is not a property of the items"
                elif key not in items.get("required", []) and "default" not in prop:
                    yield f"{path}: list-map key {key!r} must be required or have a default"
                elif prop.get("type") not in ("string", "integer", "number", "boolean"):
                    yield f"{path}: list-map key {key!r} must be a scalar"
        elif "x-kubernetes-list-map-keys" in node:
            yield f"{path}: x-kubernetes-list-map-keys needs x-kubernetes-list-type map"
    if "x-kubernetes-map-type" in node and t != "object":
        yield f"{path}: x-kubernetes-map-type needs type object"
    for rule in node.get("x-kubernetes-validations", []):
        try:
            cel.compile_rule(rule["rule"])
        except cel.CelError as e:
            yield f"{path}: rule {rule['rule']!r} does not compile: {e}"
        if not rule.get("message") and not rule.get("messageExpression"):
            pass  # allowed: the server reports "failed rule: <rule>"
    if "default" in node:
        errors = validate_tree(node["default"], node, path)
        if errors:
            yield f"{path}: default is invalid: {[str(e) for e in errors]}"
    for combinator in ("oneOf", "anyOf", "allOf"):
        for i, branch in enumerate(node.get(combinator, [])):
            yield from _value_validation_problems(branch, node, f"{path}.{combinator}[{i}]")
    if isinstance(node.get("not"), dict):
        yield from _value_validation_problems(node["not"], node, f"{path}.not")
    for name, sub in (node.get("properties") or {}).items():
        yield from structural_problems(sub, f"{path}.properties.{name}")
    if isinstance(node.get("items"), dict):
        yield from structural_problems(node["items"], f"{path}.items")
    if isinstance(node.get("additionalProperties"), dict):
        yield from structural_problems(node["additionalProperties"], f"{path}.additionalProperties")


def _all_crds() -> list[Any]:
    out = []
    for bundle in crds.BUNDLE_FILES:
        for crd in crds.generate(bundle):
            out.append(pytest.param(crd, id=f"{bundle}:{crd['metadata']['name']}"))
    return out


@pytest.mark.parametrize("crd", _all_crds())
def test_crd_is_structural(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{crd['spec']['group']}"
    storage = [v for v in crd["spec"]["versions"] if v["storage"]]
    assert len(storage) == 1
    problems: list[str] = []
    for version in crd["spec"]["versions"]:
        root = version["schema"]["openAPIV3Schema"]
        assert root["type"] == "object"
        assert root["properties"]["metadata"] == {"type": "object"}
        assert root["properties"]["apiVersion"] == {"type": "string"}
        assert root["properties"]["kind"] == {"type": "string"}
        problems.extend(structural_problems(root, version["name"]))
        for column in version.get("additionalPrinterColumns", []):
            assert column["type"] in ("string", "integer", "number", "boolean", "date")
            assert column["jsonPath"].startswith(".")
    assert not problems, problems


def test_structural_check_is_not_vacuous() -> None:
    bad = {
        "type": "object",
        "properties": {
            "a": {"properties": {"b": {"type": "string"}}},
            "l": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["k"],
                "items": {"type": "object", "properties": {"k": {"type": "string"}}},
            },
            "d": {"type": "integer", "minimum": 1, "default": 0},
            "o": {"type": "object", "oneOf": [{"type": "object"}]},
        },
    }
    problems = list(structural_problems(bad))
    assert any("type must not be empty" in p for p in problems)
    assert any("must be required or have a default" in p for p in problems)
    assert any("default is invalid" in p for p in problems)
    assert any("not allowed inside a value validation" in p for p in problems)


@pytest.mark.e2e
@pytest.mark.xdist_group("api-crd-install")
def test_generated_crds_install_with_real_kubectl(kubectl_bin: str, repo_root: Path, tmp_path: Path) -> None:
    from infergate.apiserver import EmbeddedAPIServer

    handle = EmbeddedAPIServer.run_in_thread(tmp_path / "state")
    try:
        env = {
            "KUBECONFIG": str(handle.kubeconfig_path),
            "HOME": str(tmp_path / "home"),
            "PATH": "/usr/bin:/bin",
        }

        def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [kubectl_bin, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
            )

        files = [repo_root / "config" / "crd" / name for name in ("gateway-api.yaml", "ga.yaml")]
        result = kubectl("apply", *(a for f in files for a in ("-f", str(f))))
        assert result.returncode == 0, result.stderr
        for crd in [*crds.generate("gateway-api"), *crds.generate("ga")]:
            assert (
                f"customresourcedefinition.apiextensions.k8s.io/{crd['metadata']['name']} created"
                in result.stdout
            )
        resources = kubectl("api-resources", "--api-group=inference.networking.k8s.io")
        assert resources.returncode == 0 and "infpool" in resources.stdout, (
            resources.stdout + resources.stderr
        )
        pool = yaml.safe_dump(
            {
                "apiVersion": "inference.networking.k8s.io/v1",
                "kind": "InferencePool",
                "metadata": {"name": "pool", "namespace": "default"},
                "spec": {
                    "selector": {"matchLabels": {"app": "vllm"}},
                    "targetPorts": [{"number": 8000}],
                    "endpointPickerRef": {"name": "epp", "port": {"number": 9002}},
                },
            }
        )
        created = kubectl("apply", "-f", "-", stdin=pool)
        assert created.returncode == 0, created.stderr
        got = kubectl(
            "get", "infpool", "pool", "-n", "default", "-o", "jsonpath={.spec.endpointPickerRef.failureMode}"
        )
        assert got.returncode == 0 and got.stdout == "FailClose", got.stdout + got.stderr
    finally:
        handle.stop()
