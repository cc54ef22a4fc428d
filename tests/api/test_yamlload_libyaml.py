"""The manifest reader on libyaml's C parser reads what the pure-Python parser read.

``yamlload`` parses with libyaml when PyYAML has it (about 10x faster on the CRD bundles) and
leaves to the pure-Python parser what libyaml refuses (its reports quote the line) and what
nests too deep for libyaml's recursive composer (which crashes the process on the C stack).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from infergate.api import yamlload
from infergate.apiserver.decoding import DecodeError, decode_yaml

BASES = [yamlload.JsonValueLoader, yamlload.PythonJsonValueLoader]


def test_the_c_parser_is_used_when_pyyaml_has_libyaml() -> None:
    assert yaml.__with_libyaml__, "the pinned PyYAML wheel ships libyaml: manifests parse ~10x slower without it"
    assert yamlload.WITH_LIBYAML
    assert issubclass(yamlload.JsonValueLoader, yaml.CSafeLoader)
    assert not issubclass(yamlload.PythonJsonValueLoader, yaml.CSafeLoader)


def test_the_api_server_decodes_with_the_same_loader() -> None:
    from infergate.apiserver import decoding  # the private loader: one base choice for all of infergate

    assert issubclass(decoding._Loader, yamlload.JsonValueLoader)


TRICKY = {
    "timestamps and dates": (
        "created: 2026-01-01T00:00:00.5Z\nday: 2026-01-02\nspaced: 2026-01-02 10:00:00 +01:00\n"
        "tagged: !!timestamp 2026-01-01T00:00:00Z\nquoted: '2026-01-01'\n",
        [{"created": "2026-01-01T00:00:00.5Z", "day": "2026-01-02", "spaced": "2026-01-02 10:00:00 +01:00",
          "tagged": "2026-01-01T00:00:00Z", "quoted": "2026-01-01"}],
    ),
    "YAML 1.1 scalars": (
        "big: 123456789012345678901234567890\nneg: -0x1F\noctal: 017\nsep: 1_000\nsexa: 1:30\n"
        "b1: on\nb2: no\nn: ~\ninf: .inf\nexp: 1e3\nfloat: 6.8523015e+5\nstr: 1e3x\n",
        [{"big": 123456789012345678901234567890, "neg": -31, "octal": 15, "sep": 1000, "sexa": 90,
          "b1": True, "b2": False, "n": None, "inf": float("inf"), "exp": "1e3",
          "float": 685230.15, "str": "1e3x"}],
    ),
    "non-string keys": ("1: a\n2.5: b\n~: c\non: d\n", None),
    "multi-document stream": (
        "a: 1\n---\n---\n# only a comment\n--- |\n  text\n...\n---\n- x\n",
        [{"a": 1}, None, None, "text\n", ["x"]],
    ),
    "anchors, aliases and merge keys": (
        "base: &b {x: 1, y: [1, 2]}\nmerged:\n  <<: *b\n  y: 3\nsame: *b\n",
        [{"base": {"x": 1, "y": [1, 2]}, "merged": {"x": 1, "y": 3}, "same": {"x": 1, "y": [1, 2]}}],
    ),
    "strings and escapes": (
        "u: \"\\u00e9\\U0001F600\\x41\"\nfolded: >\n  a\n  b\n\n  c\nkeep: |+\n  x\n\nstrip: |-\n  y\n"
        "crlf: [a,\r\n  b]\r\nnel: a\x85  b\n",
        [{"u": "\u00e9\U0001F600A", "folded": "a b\nc\n", "keep": "x\n\n", "strip": "y",
          "crlf": ["a", "b"], "nel": "a b"}],
    ),
    "binary and sets": ("b: !!binary aGk=\ns: !!set {a, b}\no: !!omap [{a: 1}]\n", None),
}


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_both_parsers_give_the_same_values(name: str) -> None:
    text, expected = TRICKY[name]
    c_values, py_values = (list(yaml.load_all(text, Loader=base)) for base in BASES)
    assert c_values == py_values
    if expected is not None:
        assert yamlload.load_all(text) == expected


@pytest.mark.parametrize("text", ["a: !!float ''\n", "a: !!int ''\n", "a: !!bool x\n"])
def test_an_unbuildable_tagged_scalar_is_a_bad_scalar(text: str) -> None:
    with pytest.raises(yamlload.BadScalar, match="cannot construct a value"):
        yamlload.load(text)
    with pytest.raises(yamlload.BadScalar):
        yamlload.load_all("ok: 1\n---\n" + text)


def _error(call: Any, *args: Any) -> str:
    with pytest.raises(yaml.YAMLError) as info:
        call(*args)
    return str(info.value)


@pytest.mark.parametrize("text, where, detail", [
    ("a: b\n  c: d\n", "line 2, column 4:\n      c: d\n       ^", "mapping values are not allowed here"),
    ("a: [1, 2\n", "line 2, column 1:", "expected ',' or ']', but got '<stream end>'"),
    ("a: *missing\n", "line 1, column 4:\n    a: *missing\n       ^", "found undefined alias 'missing'"),
    ("a: b\n- c\n", "line 2, column 1:\n    - c\n    ^", "expected <block end>, but found '-'"),
    ("a: 1\n---\nb: 2\n", "line 2, column 1:\n    ---\n    ^", "expected a single document in the stream"),
])
def test_errors_are_the_pure_python_reports_with_the_line_quoted(text: str, where: str, detail: str) -> None:
    message = _error(yamlload.load, text)
    assert message == _error(yaml.load, text, yamlload.PythonJsonValueLoader)
    assert where in message and detail in message
    # libyaml's own report of the same error has neither the quoted line nor the same words
    assert _error(yaml.load, text, yamlload.JsonValueLoader) != message


def test_a_lone_surrogate_is_a_reader_error_as_before() -> None:
    # libyaml cannot even be given the text (UnicodeEncodeError); not a "bad scalar"
    with pytest.raises(yaml.reader.ReaderError, match="unacceptable character #xd800"):
        yamlload.load_all("a: '\ud800'\n")


def test_what_only_libyaml_refuses_loads_as_before() -> None:
    text = "k: [a:]\n"  # libyaml: "found unexpected ':'"
    with pytest.raises(yaml.YAMLError):
        yaml.load(text, Loader=yamlload.JsonValueLoader)
    assert yamlload.load(text) == {"k": [{"a": None}]}
    py_events = [(type(e), _index(e)) for e in yaml.parse(text, Loader=yamlload.PythonJsonValueLoader)]
    assert [(type(e), _index(e)) for e in yamlload.events(text)] == py_events


def _index(event: yaml.Event) -> int:
    assert event.start_mark is not None
    return int(event.start_mark.index)


@pytest.mark.parametrize("text, value", [
    ("name: llm-ro\tute\n", {"name": "llm-ro\tute"}),
    ("names: {singular: gadg?t}\n", {"names": {"singular": "gadg?t"}}),
])
def test_what_only_the_pure_python_scanner_refused_now_loads_as_kubectl_reads_it(text: str, value: Any) -> None:
    # a tab or '?' inside a plain scalar is valid YAML (go-yaml reads it); PyYAML's scanner refused it
    with pytest.raises(yaml.YAMLError):
        yaml.load(text, Loader=yamlload.PythonJsonValueLoader)
    assert yamlload.load(text) == value


def test_event_marks_count_characters_as_the_pure_python_parser_does() -> None:
    text = "a: \U0001F600x\r\n---\r\nb: \u00e9\u2028 c\n...\n# c\n--- |\n  t\x85\n"
    def marks(events: Any) -> list[tuple[str, int, int, int, int]]:
        return [(type(e).__name__, e.start_mark.index, e.end_mark.index, e.start_mark.line, e.start_mark.column)
                for e in events]
    assert marks(yamlload.events(text)) == marks(yaml.parse(text, Loader=yamlload.PythonJsonValueLoader))


DEEP = 40_000  # libyaml's composer overflows an 8 MiB C stack near 30,000 levels (SIGSEGV)


@pytest.mark.parametrize("text", [
    "[" * 4000 + "]" * 4000,
    "- " * DEEP + "x\n",
    "".join(" " * i + "-\r" for i in range(1200)) + " " * 1200 + "x",  # "\r" alone is a YAML line break
    "a:\x85" + "".join(" " * i + "- &a" + str(i) + " !!seq\x85" for i in range(1, 1200)) + " " * 1200 + "x",
])
def test_too_deep_for_the_c_composer_is_measured_without_recursion(text: str) -> None:
    assert yamlload.nesting_exceeds(text, yamlload.MAX_C_DEPTH)
    with pytest.raises(RecursionError):  # from the pure-Python composer, as before (not a crash)
        yamlload.load(text)


def test_the_api_server_refuses_a_body_too_deep_for_the_c_composer() -> None:
    # a 80 KB body crashed the API server process (libyaml's recursive composer, SIGSEGV)
    with pytest.raises(DecodeError, match="exceeded max depth of 100"):
        decode_yaml(b"[" * DEEP + b"]" * DEEP)
    with pytest.raises(DecodeError, match="exceeded max depth of 100"):
        decode_yaml(b"- " * DEEP + b"x\n")


@pytest.mark.parametrize("text, depth", [
    ("a: 1\n", 1), ("[[[1]]]\n", 3), ("- - - x\n", 3), ("a:\n- b:\n  - [c, {d: e}]\n", 6),
    ("a:\r- b:\r  - [c]\r", 5), ("? - a\n: - b\n", 2),
])
def test_nesting_is_measured_exactly_past_the_cheap_bound(text: str, depth: int) -> None:
    assert yamlload._depth_bound(text) >= depth
    assert not yamlload.nesting_exceeds(text, depth)
    if depth > 1:
        # past the cheap bound (limit 1 or 2): the events tell
        assert yamlload.nesting_exceeds(text, depth - 1)


# Every YAML read goes through yamlload: a tagged scalar PyYAML cannot build is each reader's
# own error. With yaml.safe_load these raised IndexError (a traceback, a failed reconcile).
BAD_SCALAR = "a: !!float ''\n"


def test_a_bad_scalar_in_chart_values_is_a_clean_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from infergate.cli import main

    values = tmp_path / "values.yaml"
    values.write_text(BAD_SCALAR)
    result = CliRunner().invoke(main, ["migrate", "chart-values", "-f", str(values)])
    assert result.exit_code == 1 and not isinstance(result.exception, IndexError), result.exception
    assert "cannot construct a value" in result.output


def test_a_bad_scalar_in_a_kubeconfig_is_invalid(tmp_path: Path) -> None:
    from infergate.kube.kubeconfig_file import Invalid, read_kubeconfig, read_namespace

    config = tmp_path / "config"
    config.write_text(BAD_SCALAR)
    with pytest.raises(Invalid, match="not YAML: cannot construct a value"):
        read_kubeconfig(config)
    with pytest.raises(Invalid, match="cannot construct a value"):
        read_namespace(config)


def test_a_bad_scalar_in_fleet_params_names_the_key() -> None:
    from infergate.controller.fleet.params import ParamsError, parse_params

    with pytest.raises(ParamsError, match="serviceAnnotations: invalid YAML: cannot construct a value"):
        parse_params({"serviceAnnotations": BAD_SCALAR})


def test_a_bad_scalar_in_a_pod_envoy_bootstrap_is_a_value_error(tmp_path: Path) -> None:
    from infergate.apiserver.runtime.envoy_sidecar import pod_envoy_argv

    bootstrap = tmp_path / "envoy.yaml"
    bootstrap.write_text(BAD_SCALAR)
    with pytest.raises(ValueError, match="not YAML \\(cannot construct a value"):
        pod_envoy_argv(["envoy", "-c", str(bootstrap)], "127.0.0.2", tmp_path, "envoy")


_NODES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    children = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else None
    return 0 if children is None else 1 + max(map(_depth, children), default=0)


@settings(max_examples=150, deadline=None)
@given(value=_NODES, flow=st.sampled_from([True, False, None]), indent=st.integers(2, 9),
       break_=st.sampled_from(["\n", "\r", "\r\n"]))
def test_the_cheap_bound_is_never_below_the_nesting(value: Any, flow: bool | None, indent: int, break_: str) -> None:
    # the bound decides whether libyaml's recursive composer may see the text: it must never be low
    text = yaml.safe_dump(value, default_flow_style=flow, indent=indent, line_break=break_)
    assert yamlload._depth_bound(text) >= _depth(value)
    assert yamlload.load(text) == value


def test_non_string_keys_become_the_json_text_kubectl_gives_them() -> None:
    # sigs.k8s.io/yaml (kubectl, and infergate's API server decoder): true/false/null, the number
    assert yamlload.load("on: 1\nfalse: 2\n~: 3\n7: 4\n1.5: 5\n") == {
        "true": 1, "false": 2, "null": 3, "7": 4, "1.5": 5}
