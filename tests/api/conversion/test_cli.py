"""``infergate convert``: inputs (files, directories, stdin), formats, warnings, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from infergate.api.conversion import OUTPUT_VERSIONS, TARGET_MODELS_MODES
from infergate.cli import convert
from infergate.cli import main as infergate

EXAMPLE_DIR = Path(__file__).resolve().parents[3] / "examples" / "preview"


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(infergate, ["convert", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_converts_a_directory_and_reports_warnings_on_stderr() -> None:
    code, out, err = run("-f", str(EXAMPLE_DIR))
    assert code == 0, err
    objects = docs(out)
    assert [o["kind"] for o in objects] == [
        "GatewayClass",
        "Gateway",
        "InferencePool",
        "InferenceObjective",
        "InferenceObjective",
        "InferenceObjective",
        "HTTPRoute",
    ]
    assert "Warning:" not in out
    assert (
        "Warning: InferencePool default/vllm-llama3-8b-instruct-preview: spec.extensionRef.portNumber: unset;"
        in err
    )
    assert "Warning: InferenceModel default/food-review: spec.targetModels:" in err
    assert "# the only listener" in out


def test_reads_standard_input_and_several_files_together(tmp_path: Path) -> None:
    models = (EXAMPLE_DIR / "03-inferencemodels.yaml").read_text()
    route = (EXAMPLE_DIR / "04-httproute.yaml").read_text()
    (tmp_path / "route.yaml").write_text(route)
    code, out, err = run("-f", "-", "-f", str(tmp_path / "route.yaml"), stdin=models)
    assert code == 0, err
    route_out = docs(out)[-1]
    assert route_out["kind"] == "HTTPRoute"
    assert len(route_out["spec"]["rules"]) == 4, "one rule per InferenceModel from stdin, plus the catch-all"


def test_recursive_directories(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "pool.yaml").write_text((EXAMPLE_DIR / "02-inferencepool.yaml").read_text())
    (tmp_path / "README.md").write_text("not a manifest")
    code, _, err = run("-f", str(tmp_path))
    assert code == 2 and "no .yaml, .yml, .json files" in err
    code, out, err = run("-f", str(tmp_path), "-R")
    assert code == 0, err
    assert [o["metadata"]["name"] for o in docs(out)] == ["vllm-llama3-8b-instruct-ga"]


def test_json_output_is_one_object_or_a_list() -> None:
    code, out, _ = run("-f", str(EXAMPLE_DIR / "02-inferencepool.yaml"), "-o", "json")
    assert code == 0
    pool = json.loads(out)
    assert pool["kind"] == "InferencePool" and pool["spec"]["endpointPickerRef"]["port"] == {"number": 9002}
    code, out, _ = run("-f", str(EXAMPLE_DIR), "-o", "json")
    assert code == 0
    listed = json.loads(out)
    assert listed["kind"] == "List" and len(listed["items"]) == 7


def test_untouched_input_passes_through_byte_for_byte(tmp_path: Path) -> None:
    text = "# settings\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c  # keep\ndata:\n  b: '2'\n  a: \"1\"\n"
    (tmp_path / "cm.yaml").write_text(text)
    code, out, err = run("-f", str(tmp_path / "cm.yaml"))
    assert (code, err) == (0, "")
    assert out == text


def test_options_change_names_priorities_and_rules() -> None:
    code, out, _ = run(
        "-f",
        str(EXAMPLE_DIR),
        "--pool-name-suffix",
        "-v1",
        "--priorities",
        "Critical=10,Standard=0,Sheddable=-10",
        "--target-models",
        "heaviest",
        "--unknown-models",
        "reject",
    )
    assert code == 0
    objects = docs(out)
    pool = next(o for o in objects if o["kind"] == "InferencePool")
    assert pool["metadata"]["name"] == "vllm-llama3-8b-instruct-v1"
    priorities = {
        o["metadata"]["name"]: o["spec"]["priority"] for o in objects if o["kind"] == "InferenceObjective"
    }
    assert priorities == {"base-model": 10, "food-review": 0, "movie-critique": -10}
    assert "InferenceModelRewrite" not in {o["kind"] for o in objects}
    route = next(o for o in objects if o["kind"] == "HTTPRoute")
    assert all(r["matches"][0]["headers"] for r in route["spec"]["rules"]), "no catch-all rule"
    assert all(len(r["backendRefs"]) == 1 for r in route["spec"]["rules"]), "heaviest: no per-target backendRefs"


@pytest.mark.parametrize(
    ("mode", "rewrites", "backend_refs"), [("backend-refs", 0, 2), ("rewrite-resource", 1, 1)]
)
def test_target_models_modes(mode: str, rewrites: int, backend_refs: int) -> None:
    code, out, err = run("-f", str(EXAMPLE_DIR), "--target-models", mode)
    assert code == 0, err
    objects = docs(out)
    assert [o["kind"] for o in objects].count("InferenceModelRewrite") == rewrites
    route = next(o for o in objects if o["kind"] == "HTTPRoute")
    food = next(r for r in route["spec"]["rules"] if r["matches"][0].get("headers", [{}])[0].get("value") == "food-review")
    assert len(food["backendRefs"]) == backend_refs


def test_reverse_output_version() -> None:
    code, out, _ = run("-f", str(EXAMPLE_DIR / "02-inferencepool.yaml"), "--pool-name-suffix", "")
    assert code == 0
    code, back, err = run("-f", "-", "--output-version", "inference.networking.x-k8s.io/v1alpha2", stdin=out)
    assert code == 0, err
    (pool,) = docs(back)
    assert pool["apiVersion"] == "inference.networking.x-k8s.io/v1alpha2"
    assert pool["spec"]["extensionRef"]["portNumber"] == 9002


def test_invalid_input_exits_1_with_api_server_errors() -> None:
    bad = (
        (EXAMPLE_DIR / "02-inferencepool.yaml")
        .read_text()
        .replace("targetPortNumber: 8000", "targetPortNumber: 0")
    )
    code, out, err = run("-f", "-", stdin=bad)
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == (
        'error: <stdin> (document 1): InferencePool.inference.networking.x-k8s.io "vllm-llama3-8b-instruct-preview" '
        "in namespace default is invalid: spec.targetPortNumber: Invalid value: 0: must be greater than or equal to 1"
    )
    assert all(line.startswith("error: <stdin> (document 1): ") for line in lines)


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("a: [1, 2\n", "error: <stdin>: invalid YAML"),
        ("", "error: no objects passed to convert"),
        ("---\n", "no objects"),
    ],
)
def test_unreadable_or_empty_input_exits_1(stdin: str, message: str) -> None:
    code, out, err = run("-f", "-", stdin=stdin)
    assert code == 1 and out == ""
    assert message in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Missing option '-f'"),
        (("-f", "/no/such/file.yaml"), "no such file or directory"),
        (("-f", str(EXAMPLE_DIR), "--output-version", "inference.networking.k8s.io/v2"), "--output-version"),
        (
            ("-f", str(EXAMPLE_DIR), "--priorities", "Critical=1,Standard=5"),
            "Critical > Standard > Sheddable",
        ),
        (("-f", str(EXAMPLE_DIR), "--priorities", "Sheddable=0"), "Sheddable must be negative"),
        (("-f", str(EXAMPLE_DIR), "-o", "wide"), "'-o' / '--output'"),
        (("-f", str(EXAMPLE_DIR), "--target-models", "split"), "--target-models"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    assert message in err


def test_cli_choices_match_the_library() -> None:
    assert convert.OUTPUT_VERSIONS == OUTPUT_VERSIONS
    assert convert.TARGET_MODELS_MODES == TARGET_MODELS_MODES


def test_the_installed_command_runs_and_imports_lightly() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "infergate", "convert", "-f", str(EXAMPLE_DIR), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["kind"] == "List"
    assert proc.stderr.count("Warning: ") == 5
    probe = (
        "import sys, infergate.cli.convert; print(any(m.startswith('infergate.api') for m in sys.modules))"
    )
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60).stdout
        == "False\n"
    )
