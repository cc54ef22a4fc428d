"""``infergate validate`` and ``infergate crds``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from infergate.api import crds
from infergate.cli import main

VALID = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: vllm}
spec:
  selector: {app: vllm}
  targetPortNumber: 8000
  extensionRef: {name: epp}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: vllm}
spec: {}
"""

INVALID = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool}
spec:
  selector: {matchLabels: {app: vllm}}
  targetPorts: [{number: 0}]
  endpointPickerRef: {name: epp, port: {number: 9002}}
"""


def run(args: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args, input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_validate_valid_file(tmp_path: Path) -> None:
    f = tmp_path / "ok.yaml"
    f.write_text(VALID)
    code, out, err = run(["validate", "-f", str(f)])
    assert code == 0, out + err
    assert f'{f}#1: InferencePool.inference.networking.x-k8s.io "vllm" valid' in out
    assert "skipped (kind not modelled by infergate)" in out
    assert "1 object(s) checked, 0 invalid, 1 skipped" in err


def test_validate_invalid_prints_api_server_lines(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(INVALID)
    code, out, _ = run(["validate", "-f", str(f)])
    assert code == 1
    assert out.splitlines() == [
        f'{f}#1: InferencePool.inference.networking.k8s.io "pool" is invalid:',
        "  spec.targetPorts[0].number: Invalid value: 0: must be greater than or equal to 1",
    ]


def test_validate_stdin_and_directory(tmp_path: Path) -> None:
    code, out, _ = run(["validate", "-f", "-"], stdin=INVALID)
    assert code == 1 and "-#1: InferencePool" in out
    (tmp_path / "a.yaml").write_text(VALID)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text(INVALID)
    assert run(["validate", "-f", str(tmp_path)])[0] == 0
    assert run(["validate", "-R", "-f", str(tmp_path)])[0] == 1


def test_validate_unknown_field_and_unknown_kind(tmp_path: Path) -> None:
    doc = yaml.safe_load(INVALID)
    doc["spec"]["targetPorts"] = [{"number": 8000}]
    doc["spec"]["bogus"] = True
    code, out, _ = run(["validate", "-f", "-"], stdin=yaml.safe_dump(doc))
    assert code == 1
    assert '  unknown field "spec.bogus"' in out.splitlines()
    typo = INVALID.replace("kind: InferencePool", "kind: InferencePol")
    code, out, _ = run(["validate", "-f", "-"], stdin=typo)
    assert code == 1
    assert 'no matches for kind "InferencePol" in version "inference.networking.k8s.io/v1"' in out


def test_validate_unparseable_yaml_is_invalid() -> None:
    code, out, _ = run(["validate", "-f", "-"], stdin="a: [unclosed\n")
    assert code == 1 and "error parsing YAML" in out
    # one line per problem, with where it is (not PyYAML's '<unicode string>' and caret lines)
    code, out, _ = run(["validate", "-f", "-"], stdin="a: b\n  c: d\n")
    assert code == 1
    assert out.splitlines()[0] == "-: error parsing YAML: line 2, column 4: mapping values are not allowed here"


@pytest.mark.parametrize("args", [["validate"], ["validate", "-f", "/no/such/file"], ["validate", "--bogus"]])
def test_validate_usage_errors(args: list[str]) -> None:
    assert run(args)[0] == 2


def test_validate_release_option() -> None:
    status = (
        "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferencePool\nmetadata: {name: p}\n"
        "spec: {selector: {app: x}, targetPortNumber: 8000, extensionRef: {name: epp}}\n"
        "status: {parent: [{parentRef: {group: gateway.networking.k8s.io, name: gw}}]}\n"
    )
    # v0.3.0's parentRef is a corev1.ObjectReference (no group); v1.0.0's has one
    assert run(["validate", "--release", "v0.3.0", "-f", "-"], stdin=status)[0] == 1
    assert run(["validate", "--release", "v1.0.0", "-f", "-"], stdin=status)[0] == 0
    # without --release, either release's x-k8s.io InferencePool is accepted
    assert run(["validate", "-f", "-"], stdin=status)[0] == 0


def test_validate_release_option_for_the_v1_pool() -> None:
    pool = (
        "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: p}\n"
        "spec: {selector: {matchLabels: {app: x}}, targetPorts: [{number: 8000}, {number: 8001}],"
        " appProtocol: kubernetes.io/h2c}\n"
    )
    assert run(["validate", "--release", "v1.6.0", "-f", "-"], stdin=pool)[0] == 0
    assert run(["validate", "--release", "v1.0.0", "-f", "-"], stdin=pool)[0] == 1  # one port, EPP required
    assert run(["validate", "-f", "-"], stdin=pool)[0] == 0


def test_validate_reference_conformance_manifests(reference_dir: Path) -> None:
    code, out, err = run(["validate", "-q", "-f", str(reference_dir / "gie-v1.0.0" / "conformance")])
    assert code == 0, out + err


def test_crds_prints_bundle() -> None:
    code, out, _ = run(["crds", "--bundle", "preview"])
    assert code == 0
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [d["metadata"]["name"] for d in docs] == [
        "inferencepools.inference.networking.x-k8s.io",
        "inferencemodels.inference.networking.x-k8s.io",
    ]
    code, out, _ = run(["crds"])
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(out) if d]
    assert len(names) == len(set(names)) == 8
    assert run(["crds", "--bundle", "nope"])[0] == 2


def test_crds_write(tmp_path: Path) -> None:
    code, _, err = run(["crds", "--write", str(tmp_path / "out")])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(crds.BUNDLE_FILES.values())
    assert "wrote" in err
    code, _, _ = run(["crds", "--bundle", "ga", "--write", str(tmp_path / "ga")])
    assert [p.name for p in (tmp_path / "ga").iterdir()] == ["ga.yaml"]
