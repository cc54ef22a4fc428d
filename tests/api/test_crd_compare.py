"""The generated CRDs against upstream's (``../shared/reference/**/crd/*.yaml``), field by field.

Compared: metadata (name, annotations), group, names (kind, listKind, plural, singular,
shortNames, categories), scope, versions (name, served, storage, subresources, printer
columns) and the whole OpenAPI schema tree (types, required, properties, items, enums,
defaults, bounds, patterns, formats, list/map markers, oneOf/anyOf/not, CEL rules with
their messages, in order). Any difference fails unless ``ALLOWED`` lists it with a reason;
an allow-list entry that no longer matches anything fails too.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infergate.api import crds, registry

# (reference file glob, difference path glob, reason)
ALLOWED: list[tuple[str, str, str]] = [
    (
        "*",
        "*.description",
        "descriptions are documentation, not validation: infergate does not generate them "
        "(every other schema keyword is compared)",
    ),
    (
        "*",
        "metadata.creationTimestamp",
        "controller-gen writes creationTimestamp: null into its output; it is not part of a CRD's definition",
    ),
    (
        "*",
        "status.*",
        "the status stanza (acceptedNames, conditions, storedVersions) of a CRD file is written by the API "
        "server, not by the author",
    ),
    (
        "gie-v1.6.0/inference.networking.x-k8s.io_inferencepoolimports.yaml",
        "*",
        "InferencePoolImport (multi-cluster, x-k8s.io v1alpha1) is not served by infergate (docs/api.md); "
        "its reference file is only checked to exist",
    ),
    (
        "gie-v0.3.0/*",
        "metadata.annotations.controller-gen.kubebuilder.io/version",
        "names the tool that generated upstream's file (controller-gen v0.16.1); infergate generates its own",
    ),
]

_SCHEMA_NODE_MAPS = ("properties",)
_SCHEMA_NODE_LISTS = ("oneOf", "anyOf", "allOf")
_SCHEMA_NODE_ONE = ("items", "additionalProperties", "not")


def _diff(gen: Any, ref: Any, path: str, out: list[tuple[str, str]]) -> None:
    if isinstance(gen, dict) and isinstance(ref, dict):
        for key in sorted(set(gen) | set(ref), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in gen and isinstance(ref[key], dict) and ref[key]:
                _diff({}, ref[key], sub, out)
            elif key not in ref and isinstance(gen[key], dict) and gen[key]:
                _diff(gen[key], {}, sub, out)
            elif key not in gen:
                out.append((sub, f"missing in generated (reference: {json.dumps(ref[key])[:120]})"))
            elif key not in ref:
                out.append((sub, f"not in reference (generated: {json.dumps(gen[key])[:120]})"))
            else:
                _diff(gen[key], ref[key], sub, out)
    elif isinstance(gen, list) and isinstance(ref, list) and len(gen) == len(ref):
        for i, (g, r) in enumerate(zip(gen, ref, strict=True)):
            _diff(g, r, f"{path}[{i}]", out)
    elif gen != ref or type(gen) is not type(ref):
        out.append((path, f"generated {json.dumps(gen)[:200]} != reference {json.dumps(ref)[:200]}"))


def _versions_by_name(crd: dict[str, Any]) -> dict[str, Any]:
    return {v["name"]: v for v in crd.get("spec", {}).get("versions", [])}


def crd_differences(gen: dict[str, Any], ref: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, what) for every difference between two CRDs; versions are matched by name."""
    out: list[tuple[str, str]] = []
    g = {k: v for k, v in gen.items() if k != "spec"}
    r = {k: v for k, v in ref.items() if k != "spec"}
    _diff(g, r, "", out)
    gs = {k: v for k, v in gen["spec"].items() if k != "versions"}
    rs = {k: v for k, v in ref["spec"].items() if k != "versions"}
    _diff(gs, rs, "spec", out)
    gv, rv = _versions_by_name(gen), _versions_by_name(ref)
    if list(gv) != list(rv):
        out.append(("spec.versions", f"generated versions {list(gv)} != reference {list(rv)}"))
    for name in rv:
        if name in gv:
            _diff(gv[name], rv[name], f"spec.versions[{name}]", out)
    return out


# The releases whose CRDs infergate generates (every reference folder with a crd/).
SERVED_RELEASES = (
    "gateway-api-v1.3.0",
    "gie-v0.3.0",
    "gie-v1.0.0",
    "gie-v1.5.0",
    "gie-v1.6.0",
    "llm-d-router-v0.10.0",
)
UNSERVED = {"gie-v1.6.0/inference.networking.x-k8s.io_inferencepoolimports.yaml"}
_FOLDER_RELEASE = {
    "gie-v0.3.0": registry.RELEASE_GIE_V0_3,
    "gie-v1.0.0": registry.RELEASE_GIE_V1_0,
    "gie-v1.5.0": registry.RELEASE_GIE_V1_5,
    "gie-v1.6.0": registry.RELEASE_GIE_V1_6,
    "llm-d-router-v0.10.0": registry.RELEASE_LLMD_ROUTER,
}


def _reference_files(reference_dir: Path) -> list[Path]:
    return sorted(p for release in SERVED_RELEASES for p in (reference_dir / release).glob("crd/*.yaml"))


def _release_of(path: Path) -> str:
    return _FOLDER_RELEASE.get(path.parent.parent.name, registry.RELEASE_GATEWAY_API)


def _generated_for(ref: dict[str, Any], release: str) -> dict[str, Any]:
    t = registry.by_plural(ref["spec"]["group"], ref["spec"]["names"]["plural"], release)
    assert t is not None and t.release == release, f"no {release} type for {ref['metadata']['name']}"
    return crds.crd_for(t)


def _allowed(rel: str, path: str) -> tuple[str, str, str] | None:
    for entry in ALLOWED:
        file_glob, path_glob, _ = entry
        if fnmatch.fnmatch(rel, file_glob) and fnmatch.fnmatch(path, path_glob):
            return entry
    return None


def test_reference_crds_are_present(reference_dir: Path) -> None:
    names = {p.parent.parent.name + "/" + p.name for p in _reference_files(reference_dir)}
    assert len(names) == 15, names
    assert names >= UNSERVED


def test_generated_crds_match_reference(reference_dir: Path) -> None:
    unexplained: list[str] = []
    used: set[tuple[str, str, str]] = set()
    compared = 0
    for path in _reference_files(reference_dir):
        rel = f"{path.parent.parent.name}/{path.name}"
        if rel in UNSERVED:
            used.add(_allowed(rel, "*") or ("", "", ""))
            continue
        ref = yaml.safe_load(path.read_text())
        gen = _generated_for(ref, _release_of(path))
        for diff_path, what in crd_differences(gen, ref):
            entry = _allowed(rel, diff_path)
            if entry is None:
                unexplained.append(f"{rel}: {diff_path}: {what}")
            else:
                used.add(entry)
        compared += 1
    assert compared == 14
    assert not unexplained, "differences not in the allow-list:\n" + "\n".join(unexplained[:60])
    stale = [e for e in ALLOWED if e not in used]
    assert not stale, f"allow-list entries that match nothing: {stale}"


def test_every_bundle_matches_reference_release(reference_dir: Path) -> None:
    """The bundles hold exactly the CRDs of the upstream releases (names and versions)."""
    expected = {
        "preview": sorted(p for p in (reference_dir / "gie-v0.3.0" / "crd").glob("*.yaml")),
        "ga": sorted(p for p in (reference_dir / "gie-v1.0.0" / "crd").glob("*.yaml")),
        "gateway-api": sorted(p for p in (reference_dir / "gateway-api-v1.3.0" / "crd").glob("*.yaml")),
        "gie-v1.5": sorted(p for p in (reference_dir / "gie-v1.5.0" / "crd").glob("*.yaml")),
        "gie-v1.6": sorted(
            p for p in (reference_dir / "gie-v1.6.0" / "crd").glob("*.yaml") if "inferencepoolimports" not in p.name
        ),
        "llm-d": sorted(p for p in (reference_dir / "llm-d-router-v0.10.0" / "crd").glob("*.yaml")),
    }
    for bundle, files in expected.items():
        ref_names = sorted(yaml.safe_load(f.read_text())["metadata"]["name"] for f in files)
        gen_names = sorted(c["metadata"]["name"] for c in crds.generate(bundle))
        assert gen_names == ref_names, bundle


def test_differ_sees_a_changed_bound() -> None:
    """The comparison itself is not vacuous."""
    t = registry.by_gvk("inference.networking.k8s.io/v1", "InferencePool")
    assert t is not None
    a = crds.crd_for(t)
    b = json.loads(json.dumps(a))
    spec = b["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["targetPorts"]["maxItems"] = 2
    spec["properties"]["endpointPickerRef"]["x-kubernetes-validations"][0]["rule"] = "true"
    paths = [p for p, _ in crd_differences(a, b)]
    assert any(p.endswith("targetPorts.maxItems") for p in paths)
    assert any(p.endswith("x-kubernetes-validations[0].rule") for p in paths)


@pytest.mark.parametrize("bundle", list(crds.BUNDLE_FILES))
def test_committed_bundles_are_up_to_date(repo_root: Path, bundle: str) -> None:
    from infergate.cli.crds import render

    committed = (repo_root / "config" / "crd" / crds.BUNDLE_FILES[bundle]).read_text()
    assert committed == render(bundle), f"config/crd/{crds.BUNDLE_FILES[bundle]} is stale: run `make crds`"
