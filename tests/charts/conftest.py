"""Fixtures of the chart tests (helpers in chartkit.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infergate.api.validation import apply_schema_defaults, find_unknown_fields, validate_tree

from .chartkit import POOL_CRDS, Helm


@pytest.fixture(scope="session")
def helm(helm_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_bin, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def upstream_pool_schemas(reference_dir: Path) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """(file, openAPIV3Schema) of every upstream CRD an InferencePool of each apiVersion must pass."""
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for api_version, files in POOL_CRDS.items():
        version = api_version.rpartition("/")[2]
        for rel in files:
            crd = yaml.safe_load((reference_dir / rel).read_text())
            (schema,) = [v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version]
            out.setdefault(api_version, []).append((rel, schema))
    return out


@pytest.fixture(scope="session")
def upstream_pool_check(
    upstream_pool_schemas: dict[str, list[tuple[str, dict[str, Any]]]],
) -> Callable[[dict[str, Any]], list[str]]:
    """Problems the API server would report for a pool under upstream's CRDs (empty = valid):
    unknown fields, OpenAPI validation after defaulting, CEL rules."""

    def check(pool: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        for rel, schema in upstream_pool_schemas[pool["apiVersion"]]:
            unknown = find_unknown_fields(pool, schema)
            problems += [f"{rel}: unknown field {p!r}" for p in unknown]
            problems += [f"{rel}: {e}" for e in validate_tree(apply_schema_defaults(pool, schema), schema)]
        return problems

    return check


@pytest.fixture
def notes(helm: Helm, tmp_path: Path) -> Callable[..., str]:
    """Render a chart's NOTES.txt (helm template does not): a copy of the chart turns it into
    a named template and a ConfigMap carrying its text."""

    def render(chart: Path, values: dict[str, Any] | None = None, **kwargs: Any) -> str:
        copy = tmp_path / f"notes-{chart.name}"
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(chart, copy)
        text = (copy / "templates" / "NOTES.txt").read_text()
        (copy / "templates" / "NOTES.txt").unlink()
        (copy / "templates" / "_notes_harness.tpl").write_text(
            '{{- define "harness.notes" -}}\n' + text + "\n{{- end -}}\n")
        (copy / "templates" / "notes-harness.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-harness\n"
            'data:\n  notes: {{ include "harness.notes" . | quote }}\n')
        objects = helm.template(copy, values, extra=["--show-only", "templates/notes-harness.yaml"], **kwargs)
        return str(objects[0]["data"]["notes"])

    return render
