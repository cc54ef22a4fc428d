"""One manifest reader: every entry point that reads YAML manifests sees the same JSON values.

An unquoted timestamp stays the string that was written (kubectl sends it so); before the
shared reader, the controller and ``infergate validate`` saw a ``datetime`` and the converter
a re-formatted string.
"""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from infergate.api import yamlload
from infergate.api.conversion.documents import read_documents
from infergate.cli import main
from infergate.controller.manifests import parse_manifests

STAMP = "2026-01-01T00:00:00.5Z"
MANIFEST = f"""\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: pool
  creationTimestamp: {STAMP}
  annotations:
    released: 2026-01-01
    reviewed: 2026-01-02 10:00:00
spec:
  selector: {{matchLabels: {{app: vllm}}}}
  targetPorts: [{{number: 8000}}]
  endpointPickerRef: {{name: epp, port: {{number: 9002}}}}
"""
EXPECTED_METADATA = {
    "name": "pool",
    "creationTimestamp": STAMP,
    "annotations": {"released": "2026-01-01", "reviewed": "2026-01-02 10:00:00"},
}


def test_timestamps_and_dates_stay_the_strings_written() -> None:
    (doc,) = yamlload.load_all(MANIFEST)
    assert doc["metadata"] == EXPECTED_METADATA
    assert yamlload.load("at: !!timestamp 2026-01-01T00:00:00Z") == {"at": "2026-01-01T00:00:00Z"}


def test_values_are_json_values() -> None:
    assert yamlload.load_all("1: a\nenabled: on\nratio: 0.5\n---\n") == [
        {"1": "a", "enabled": True, "ratio": 0.5},
        None,
    ]


def _metadata(obj: Any) -> Any:
    return obj["metadata"]


def test_the_converter_reads_the_timestamp_as_written() -> None:
    (doc,) = read_documents(MANIFEST, "pool.yaml")
    assert _metadata(doc.data) == EXPECTED_METADATA


def test_the_controller_reads_the_timestamp_as_written() -> None:
    (obj,) = parse_manifests(MANIFEST, "pool.yaml")
    assert _metadata(obj) == EXPECTED_METADATA


def test_validate_accepts_an_unquoted_creation_timestamp() -> None:
    result = CliRunner().invoke(main, ["validate", "-f", "-"], input=MANIFEST)
    assert result.exit_code == 0, result.stdout
    assert 'InferencePool.inference.networking.k8s.io "pool" valid' in result.stdout


def test_one_line_gives_where_and_what_of_a_parse_error() -> None:
    cases = {
        "a: [unclosed\n": "line 2, column 1: while parsing a flow sequence, expected ',' or ']', but got '<stream end>'",
        "a: *x\n": "line 1, column 4: found undefined alias 'x'",
        "a: !!float ''\n": "cannot construct a value: IndexError: string index out of range",
    }
    for text, expected in cases.items():
        try:
            yamlload.load_all(text)
        except yamlload.YAMLError as exc:
            assert yamlload.one_line(exc) == expected, text
        else:
            raise AssertionError(f"{text!r} loaded")
