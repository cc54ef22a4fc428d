"""Fuzzing the API server's request decoding (JSON, YAML, protobuf) and the three patch types.

Every input is either decoded into a value that is valid JSON (finite numbers, string keys)
and within the nesting bound, or refused with a 4xx Status; never another exception, and
never slower than the bound.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infergate.apiserver import protobuf
from infergate.apiserver.errors import APIError
from infergate.apiserver.handlers.common import PROTOBUF, Target, decode_body
from infergate.apiserver.handlers.patching import JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, patched
from infergate.apiserver.limits import check_depth
from infergate.apiserver.resources import ResourceRegistry

from ._profiles import fuzz_settings
from .apiserver_strategies import JSON_PATCHES, JSON_TEXT, VALUES, YAML_TEXT

pytestmark = pytest.mark.fuzz
BOUND_S = 2.0  # one decode or patch, at most


def _valid(value: Any) -> None:
    json.dumps(value, allow_nan=False)  # raises on NaN/Infinity and on non-string keys it cannot write
    check_depth(value)


def _decodes_or_refuses(content_type: str, raw: bytes) -> None:
    started = time.monotonic()
    try:
        decoded = decode_body(content_type, raw)
    except APIError as exc:
        assert 400 <= exc.code < 500, exc.status()
        return
    finally:
        assert time.monotonic() - started < BOUND_S, raw[:200]
    _valid(decoded.value)


@fuzz_settings(600)
@given(JSON_TEXT)
def test_json_bodies(text: str) -> None:
    _decodes_or_refuses("application/json", text.encode())


@fuzz_settings(300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(raw: bytes) -> None:
    for content_type in ("application/json", "application/yaml", PROTOBUF):
        _decodes_or_refuses(content_type, raw)


@fuzz_settings(600)
@given(YAML_TEXT)
def test_yaml_bodies(text: str) -> None:
    _decodes_or_refuses("application/yaml", text.encode())


def _framed(kind: str, payload: bytes) -> bytes:
    type_meta = protobuf.encode_field(1, b"v1") + protobuf.encode_field(2, kind.encode())
    return protobuf.MAGIC + protobuf.encode_field(1, type_meta) + protobuf.encode_field(2, payload)


@fuzz_settings(400)
@given(st.sampled_from(["Secret", "ConfigMap", "Namespace", "Deployment", "Service", "DeleteOptions", "Pod", ""]),
       st.binary(max_size=300))
def test_protobuf_bodies(kind: str, payload: bytes) -> None:
    _decodes_or_refuses(PROTOBUF, _framed(kind, payload))


CONFIGMAP = Target(ResourceRegistry().lookup("", "v1", "configmaps"), "v1", "default", "x", None)  # type: ignore[arg-type]


def _patches_or_refuses(content_type: str, current: Any, patch: Any) -> None:
    started = time.monotonic()
    try:
        result = patched(content_type, CONFIGMAP, current, patch)
    except APIError as exc:
        assert 400 <= exc.code < 500, exc.status()
        return
    finally:
        assert time.monotonic() - started < BOUND_S
    json.dumps(result, allow_nan=True)  # the patched value is a JSON value (its numbers come from the inputs)


@fuzz_settings(400)
@given(st.dictionaries(st.text(max_size=4), VALUES, max_size=5), JSON_PATCHES)
def test_json_patches(current: dict[str, Any], patch: Any) -> None:
    _patches_or_refuses(JSON_PATCH, current, patch)


@fuzz_settings(300)
@given(st.dictionaries(st.text(max_size=4), VALUES, max_size=5), VALUES)
def test_merge_patches(current: dict[str, Any], patch: Any) -> None:
    _patches_or_refuses(MERGE_PATCH, current, patch)


@fuzz_settings(300)
@given(st.dictionaries(st.text(max_size=4), VALUES, max_size=5), VALUES)
def test_strategic_merge_patches(current: dict[str, Any], patch: Any) -> None:
    _patches_or_refuses(STRATEGIC_MERGE_PATCH, current, patch)
