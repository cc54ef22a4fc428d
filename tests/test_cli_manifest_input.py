"""Issue 13 item 10: the manifest loaders (``validate``, ``convert``, ``migrate check -f``) answer
bad input with a clear error and exit status 1 or 2 (3 for migrate's "migration needed"),
never a traceback: non-UTF-8 files and stdin, binary YAML keys, a non-string kind."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from infergate.cli import main

LATIN1 = "kind: Caf\xe9\n".encode("latin-1")

COMMANDS = {
    "validate": ["validate", "-f"],
    "convert": ["convert", "-f"],
    "migrate": ["migrate", "check", "--no-cluster", "--no-helm", "-f"],
}


def run(args: list[str], stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(main, args, input=stdin)


def assert_clean(result: Result, allowed: tuple[int, ...]) -> None:
    """Exited with one of ``allowed`` through ``sys.exit`` / click, not through an exception."""
    crash = result.exception if not isinstance(result.exception, SystemExit) else None
    assert crash is None, f"{type(crash).__name__}: {crash}\n{result.output}"
    assert result.exit_code in allowed, result.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_non_utf8_file_is_an_error_naming_the_byte(tmp_path: Path, command: str) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(LATIN1)
    result = run([*COMMANDS[command], str(path)])
    assert_clean(result, (1, 2))
    assert "not UTF-8 text: byte 0xe9 at offset 9" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_non_utf8_stdin_is_an_error(command: str) -> None:
    result = run([*COMMANDS[command], "-"], stdin=LATIN1)
    assert_clean(result, (1, 2))
    assert "not UTF-8 text" in result.output


def test_validate_reports_the_bad_file_and_checks_the_others(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(LATIN1)
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    result = run(["validate", "-f", str(tmp_path)])
    assert_clean(result, (1,))
    assert f"error reading {tmp_path / 'a.yaml'}: not UTF-8 text" in result.output
    assert "0 object(s) checked, 1 invalid, 1 skipped" in result.output


POOL = "apiVersion: {api}\nkind: InferencePool\nmetadata: {{name: p}}\nspec:\n{spec}"
SPECS = {
    "binary key": "  !!binary aGVsbG8=: 1\n  selector: {{matchLabels: {{a: b}}}}\n",
    "binary key, nested": "  selector:\n    matchLabels: {{!!binary aGk=: b}}\n  targetPortNumber: 8000\n",
    "binary value": "  selector: {{a: !!binary aGk=}}\n  targetPortNumber: 8000\n  extensionRef: {{name: e}}\n",
    "int and null keys": "  1: 2\n  ? null\n  : 3\n  targetPortNumber: 8000\n",
    "mapping key": "  ? {{a: 1}}\n  : 1\n",
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("api", ["inference.networking.k8s.io/v1", "inference.networking.x-k8s.io/v1alpha2"])
@pytest.mark.parametrize("spec", sorted(SPECS))
def test_odd_yaml_keys_under_spec_are_errors_not_tracebacks(tmp_path: Path, command: str, api: str,
                                                            spec: str) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(POOL.format(api=api, spec=SPECS[spec].format()))
    assert_clean(run([*COMMANDS[command], str(path)]), (0, 1, 2, 3))


@pytest.mark.parametrize("kind", ["5", "[List]", "{a: 1}", "null"])
def test_migrate_check_survives_a_kind_that_is_not_a_string(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(f"apiVersion: v1\nkind: {kind}\nitems: [{{kind: InferencePool}}]\n")
    assert_clean(run([*COMMANDS["migrate"], str(path)]), (0, 1, 3))


def alias_bomb(levels: int = 8) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n" + "".join(f"  {line}\n" for line in lines)


DEEP = {
    "alias bomb": (alias_bomb(), "excessive aliasing"),
    "deep YAML": ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: " + "[" * 3000 + "]" * 3000 + "\n",
                  "nested more than 100 levels deep"),
    "deep JSON": ('{"apiVersion": "v1", "kind": "X", "data": ' + "[" * 3000 + "]" * 3000 + "}",
                  "nested more than 100 levels deep"),
    "deep spec": ("apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: p}\nspec: "
                  + '{"a": ' * 2000 + "1" + "}" * 2000 + "\n", "nested more than 100 levels deep"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(DEEP))
def test_alias_bombs_and_deep_nesting_are_refused_quickly(tmp_path: Path, command: str, case: str) -> None:
    import time

    text, message = DEEP[case]
    path = tmp_path / "m.yaml"
    path.write_text(text)
    started = time.monotonic()
    result = run([*COMMANDS[command], str(path)])
    assert time.monotonic() - started < 10, "refused before expanding or recursing"
    assert_clean(result, (1, 2))
    assert message in result.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_nesting_up_to_the_limit_is_read(tmp_path: Path, command: str) -> None:
    path = tmp_path / "m.yaml"
    depth = 98  # + the document's own mapping and spec: 100 levels
    path.write_text("apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: p}\n"
                    "spec: " + "[" * depth + "]" * depth + "\n")
    result = run([*COMMANDS[command], str(path)])
    assert_clean(result, (0, 1, 2, 3))
    assert "nested more than" not in result.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("text", ['{"apiVersion": "v1", "kind": "\\ud800"}',
                                  'apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\n'
                                  'metadata: {name: "\\udfff"}\nspec: {}\n'])
def test_lone_surrogates_are_echoed_escaped(command: str, text: str) -> None:
    """Found by the fuzz suite: echoing a kind or name holding a lone surrogate raised
    UnicodeEncodeError."""
    result = run([*COMMANDS[command], "-"], stdin=text.encode())
    assert_clean(result, (0, 1, 2, 3))


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(("text", "message"), [
    ("kind: &a {x: *a}\n", "recursive document"),  # RecursionError before
    ("apiVersion: v1\nkind: !!float\n", "cannot construct a value"),  # IndexError inside PyYAML before
    ("apiVersion: v1\nkind: !!int ''\n", "cannot construct a value"),
])
def test_yaml_the_loader_cannot_build_is_an_error(command: str, text: str, message: str) -> None:
    """Found by the fuzz suite."""
    result = run([*COMMANDS[command], "-"], stdin=text.encode())
    assert_clean(result, (1, 2))
    assert message in result.output


@pytest.mark.parametrize("text", [
    "apiVersion: apps/v1\nkind: Deployment\nspec: true\n",
    "apiVersion: apps/v1\nkind: Deployment\nspec: {template: {spec: {containers: [5, {args: 7}]}}}\n",
    "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModel\nmetadata: {name: m}\nspec: 5\n",
    "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModel\nmetadata: {name: m,"
    " finalizers: 5}\nspec: {poolRef: x}\n",
    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nspec: {rules: [x, {backendRefs: [1]}]}\n",
])
def test_migrate_check_survives_malformed_objects(text: str) -> None:
    """Found by the fuzz suite: a Deployment whose spec is not an object raised AttributeError."""
    assert_clean(run([*COMMANDS["migrate"], "-"], stdin=text.encode()), (0, 1, 3))
