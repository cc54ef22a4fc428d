"""Fuzzing the manifest loaders: ``infergate validate``, ``infergate convert`` and
``infergate migrate check -f`` (through click's CliRunner, on stdin and on files).

Inputs: random bytes; generated manifests of infergate's kinds with random field trees, odd
YAML (binary, null and numeric keys, tags, anchors and aliases, duplicate keys, deep nesting);
and byte-level mutations of the repository's example manifests. Property: every command ends
through its exit status (validate and convert 0-2, migrate 0, 1 or 3), never a traceback, and
within the hang bound.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from infergate.api import registry
from infergate.cli import main

from ._profiles import fuzz_settings

pytestmark = pytest.mark.fuzz

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").rglob("*.yaml"))

COMMANDS = {
    "validate": (["validate", "-f"], (0, 1, 2)),
    "convert": (["convert", "-f"], (0, 1, 2)),
    "migrate": (["migrate", "check", "--no-cluster", "--no-helm", "-f"], (0, 1, 3)),
}

API_VERSIONS = sorted({f"{t.group}/{t.version}" if t.group else t.version for t in registry.all_types()}
                      | {"v1", "apps/v1", "bogus/v9"})
KINDS = sorted({t.kind for t in registry.all_types()} | {"List", "ConfigMap", "Deployment"})
WORDS = ["selector", "matchLabels", "targetPorts", "number", "endpointPickerRef", "extensionRef", "failureMode",
         "targetPortNumber", "modelName", "criticality", "poolRef", "targetModels", "weight", "priority",
         "parentRefs", "rules", "backendRefs", "name", "namespace", "group", "kind", "port", "portNumber",
         "matches", "path", "headers", "value", "type", "items", "spec", "status", "FailOpen", "FailClose"]

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from(WORDS) | st.text(max_size=10))
keys = st.sampled_from(WORDS) | st.text(max_size=8)
trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                     max_leaves=25)
objects = st.fixed_dictionaries(
    {"apiVersion": st.sampled_from(API_VERSIONS) | scalars, "kind": st.sampled_from(KINDS) | scalars},
    optional={"metadata": st.fixed_dictionaries({}, optional={"name": st.sampled_from(["p", "a-b"]) | scalars,
                                                              "namespace": scalars, "labels": trees}),
              "spec": trees, "items": st.lists(trees, max_size=3), "status": trees},
)
ODD_YAML = [
    "spec:\n  !!binary aGVsbG8=: 1\n", "spec:\n  ? null\n  : 1\n  1: 2\n  1.5: 3\n  true: 4\n",
    "spec: !!python/object:os.system x\n", "spec: &a {x: *a}\n", "spec: *undefined\n",
    "spec:\n  x: 1\n  x: 2\n", "spec: !!set {a, b}\n", "spec: !!omap [a: 1]\n", "spec: 2026-01-01\n",
    "spec: {? [a, b] : 1}\n", "spec: [" * 120 + "]" * 120 + "\n", "spec: !!float x\n", "spec: !!int 0x\n",
    "spec: '\\ud800'\n", "---\n...\n---\n", "%YAML 1.1\n---\nspec: 1\n", "spec: !custom 1\n",
    "spec:\n\t- tab\n", "spec: {a: 1, b: [1, {c: &x 2}], d: *x}\n",
]


def rendered(obj: object, style: str) -> str:
    if style == "json":
        return json.dumps(obj)
    return yaml.safe_dump(obj, sort_keys=False)


manifests = st.one_of(
    st.builds(rendered, objects, st.sampled_from(["yaml", "json"])),
    st.builds(lambda obj, odd: rendered(obj, "yaml") + odd, objects, st.sampled_from(ODD_YAML)),
    st.lists(st.builds(rendered, objects, st.just("yaml")), min_size=1, max_size=3).map("---\n".join),
)


@st.composite
def mutated_example(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(EXAMPLES)).read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        span = draw(st.integers(1, 40))
        if op == "delete":
            del data[at:at + span]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from(
                [b"\n", b": ", b"- ", b"&a ", b"*a", b"!!binary ", b"{", b"[", b"---\n", b"\t", b"\xff"]))
        elif op == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = data[at:at + span]
    return bytes(data)


inputs = st.one_of(st.binary(max_size=400), manifests.map(str.encode), mutated_example())


def assert_clean_exit(command: str, data: bytes, *, as_file: bool) -> None:
    args, allowed = COMMANDS[command]
    if as_file:
        with tempfile.TemporaryDirectory(prefix="infergate-fuzz-") as tmp:
            path = Path(tmp) / "manifest.yaml"
            path.write_bytes(data)
            result = CliRunner().invoke(main, [*args, str(path)])
    else:
        result = CliRunner().invoke(main, [*args, "-"], input=data)
    crash = result.exception if not isinstance(result.exception, SystemExit) else None
    assert crash is None, f"{command}: {type(crash).__name__}: {crash}\n{result.output[-2000:]}"
    assert result.exit_code in allowed, (command, result.exit_code, result.output[-2000:])


@fuzz_settings(examples=250)
@given(data=inputs, command=st.sampled_from(sorted(COMMANDS)))
def test_loaders_on_stdin_exit_cleanly(data: bytes, command: str) -> None:
    assert_clean_exit(command, data, as_file=False)


@fuzz_settings(examples=80)
@given(data=manifests.map(str.encode) | mutated_example(), command=st.sampled_from(sorted(COMMANDS)))
def test_loaders_on_files_exit_cleanly(data: bytes, command: str) -> None:
    assert_clean_exit(command, data, as_file=True)
