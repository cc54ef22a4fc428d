"""`infergate migrate chart-values`: inferencepool chart values v1.0 -> v1.5 (golden in/out files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from infergate.cli.migrate import command
from infergate.migrate.chart_values import ChartValuesError, convert_values, v1_markers

DATA = Path(__file__).resolve().parent / "testdata" / "chart-values"


@pytest.fixture
def v15_values(reference_dir: Path) -> dict:
    """Upstream's inferencepool chart values at v1.5.0 (../shared/reference; the conftest fixture
    says so clearly when it is absent)."""
    return yaml.safe_load((reference_dir / "gie-v1.5.0" / "charts" / "inferencepool-values.yaml").read_text())


@pytest.mark.parametrize("name", ["v1.0-full", "v1.0-minimal"])
def test_golden(name: str) -> None:
    values = yaml.safe_load((DATA / f"{name}.in.yaml").read_text())
    expected = yaml.safe_load((DATA / f"{name}.out.yaml").read_text())
    result = convert_values(values)
    assert result.changed
    assert result.values == expected
    assert v1_markers(result.values) == []  # the output is v1.5 layout through and through


def test_converted_keys_exist_in_the_v15_chart(v15_values: dict) -> None:
    """Every key the converter writes under inferenceExtension / inferencePool is one the v1.5
    chart's values.yaml knows (the layout, not only the names we made up)."""
    upstream = v15_values
    out = yaml.safe_load((DATA / "v1.0-full.out.yaml").read_text())
    for section in ("inferenceExtension", "inferencePool", "provider"):
        assert set(out[section]) - {"modelServers"} <= set(upstream[section]), section
    assert set(out["inferenceExtension"]["image"]) <= set(upstream["inferenceExtension"]["image"])
    assert isinstance(upstream["inferenceExtension"]["flags"], dict)
    assert set(out["provider"]["istio"]) <= set(upstream["provider"]["istio"])


def test_v15_values_come_back_unchanged(v15_values: dict) -> None:
    upstream = v15_values
    result = convert_values(upstream)
    assert not result.changed
    assert result.values == upstream


def test_failure_mode_of_v10_is_kept_explicitly() -> None:
    """v1.0 defaulted to FailClose, v1.5 to FailOpen: unset means FailClose, written out."""
    result = convert_values({"inferenceExtension": {"flags": [{"name": "v", "value": 2}]}})
    assert result.values["inferenceExtension"] == {"flags": {"v": 2}, "failureMode": "FailClose"}
    assert any("FailOpen" in n for n in result.notes)


def test_a_release_whose_chart_defaulted_to_fail_open_stays_fail_open(tmp_path: Path) -> None:
    """infergate's charts/inferencepool (and upstream's since v1.4) default to FailOpen: an unset
    failureMode must not become FailClose in the v1.5 values (the upgrade would flip the pool)."""
    values = {"inferenceExtension": {"flags": [{"name": "v", "value": 2}]}}
    result = convert_values(values, unset_failure_mode="FailOpen")
    assert result.values["inferenceExtension"] == {"flags": {"v": 2}}
    assert any("stays unset" in n for n in result.notes)
    explicit = convert_values({"inferenceExtension": {**values["inferenceExtension"], "failureMode": "FailClose"}},
                              unset_failure_mode="FailOpen")
    assert explicit.values["inferenceExtension"]["failureMode"] == "FailClose"  # what the user set is kept
    source = tmp_path / "v10.yaml"
    source.write_text(yaml.safe_dump(values))
    cli = CliRunner().invoke(command, ["chart-values", "-f", str(source), "--unset-failure-mode", "FailOpen"])
    assert cli.exit_code == 0, cli.output
    assert yaml.safe_load(cli.stdout) == {"inferenceExtension": {"flags": {"v": 2}}}
    default = CliRunner().invoke(command, ["chart-values", "-f", str(source)])
    assert yaml.safe_load(default.stdout)["inferenceExtension"]["failureMode"] == "FailClose"
    assert "--unset-failure-mode FailOpen" in default.stderr
    wrong = CliRunner().invoke(command, ["chart-values", "-f", str(source), "--unset-failure-mode", "Open"])
    assert wrong.exit_code == 2 and "'Open' is not one of 'FailClose', 'FailOpen'" in wrong.output
    with pytest.raises(ValueError, match="unset_failure_mode"):
        convert_values(values, unset_failure_mode="open")


def test_docker_hub_org_becomes_docker_io() -> None:
    out = convert_values({"inferenceExtension": {"image": {"hub": "myorg", "name": "epp", "tag": "x"}}}).values
    assert out["inferenceExtension"]["image"] == {"registry": "docker.io", "repository": "myorg/epp", "tag": "x"}


@pytest.mark.parametrize(("values", "path"), [
    ({"inferenceExtension": {"flags": [{"name": "v", "value": 1}, {"name": "v", "value": 2}]}},
     "inferenceExtension.flags[1].name: Duplicate value"),
    ({"inferenceExtension": {"flags": [{"value": 1}]}}, "inferenceExtension.flags[0].name: Required value"),
    ({"inferenceExtension": {"image": {"hub": "r.io/x", "name": "epp", "registry": "r.io"}}},
     "inferenceExtension.image: Invalid value: both"),
    ({"inferenceExtension": {"enableLeaderElection": True, "replicas": 1}},
     "inferenceExtension.enableLeaderElection: Invalid value"),
    ({"inferencePool": {"targetPortNumber": 0}}, "inferencePool.targetPortNumber: Invalid value"),
    ({"istio": {"destinationRule": {"host": "a"}}, "provider": {"istio": {"destinationRule": {"host": "b"}}}},
     "istio: Invalid value: both istio and provider.istio"),
])
def test_contradictions_are_errors_with_field_paths(values: dict[str, object], path: str) -> None:
    with pytest.raises(ChartValuesError) as info:
        convert_values(values)
    assert any(p.startswith(path) for p in info.value.problems), info.value.problems


def test_cli_writes_yaml_and_notes(tmp_path: Path) -> None:
    out = tmp_path / "v15.yaml"
    result = CliRunner().invoke(command, ["chart-values", "-f", str(DATA / "v1.0-full.in.yaml"),
                                          "--output-file", str(out)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(out.read_text()) == yaml.safe_load((DATA / "v1.0-full.out.yaml").read_text())
    assert "note: inferenceExtension.failureMode: FailClose" in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("inferenceExtension:\n  flags:\n  - name: v\n  - name: v\n")
    result = CliRunner().invoke(command, ["chart-values", "-f", str(bad)])
    assert result.exit_code == 1
    assert "inferenceExtension.flags[1].name: Duplicate value" in result.stderr


def test_input_and_output_errors_are_one_line_each(tmp_path: Path) -> None:
    """Before: the file's name twice for a non-UTF-8 file, and a traceback for an --output-file
    in a missing directory."""
    binary = tmp_path / "values.yaml"
    binary.write_bytes(b"a\xf9b: c\n")
    result = CliRunner().invoke(command, ["chart-values", "-f", str(binary)])
    assert result.exit_code == 1
    assert result.output == f"Error: {binary}: not UTF-8 text: byte 0xf9 at offset 1 (invalid start byte)\n"
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: b\n  c: d\n")
    result = CliRunner().invoke(command, ["chart-values", "-f", str(broken)])
    assert result.output == f"Error: {broken}: invalid YAML: line 2, column 4: mapping values are not allowed here\n"
    good = tmp_path / "good.yaml"
    good.write_text("inferencePool: {targetPortNumber: 8000}\n")
    missing = tmp_path / "no-such-dir" / "out.yaml"
    result = CliRunner().invoke(command, ["chart-values", "-f", str(good), "--output-file", str(missing)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception  # not a traceback
    assert f"Error: --output-file {missing}: No such file or directory\n" in result.output, result.output
