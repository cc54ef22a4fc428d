"""The EPP's request-body parser: fast path (orjson), the standard library's acceptance and
messages kept, and over-deep bodies answered 400 (issue 13 item 7)."""

from __future__ import annotations

import json

import pytest

from infergate.epp.contract import Rejection
from infergate.epp.extproc import messages


def _nested(depth: int) -> bytes:
    return b'{"model":"m","prompt":"p","x":' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [600, 1_100, 2_000, 100_000])
def test_over_deep_body_is_a_bad_request(depth: int) -> None:
    with pytest.raises(Rejection) as caught:
        messages.parse_body(_nested(depth), {})
    assert caught.value.status == 400
    assert f"nested deeper than {messages.MAX_BODY_DEPTH} levels" in caught.value.body


def test_body_at_the_depth_limit_is_parsed() -> None:
    parsed = messages.parse_body(_nested(messages.MAX_BODY_DEPTH - 1), {})
    assert parsed.model == "m" and parsed.prompt == "p"


@pytest.mark.parametrize("raw", [
    b'{"model":"m","prompt":"p","t":NaN}',  # the standard library's extensions stay accepted
    b'{"model":"m","prompt":"\\ud800"}',  # a lone surrogate
    b'\xef\xbb\xbf{"model":"m","prompt":"p"}',  # a UTF-8 byte order mark
    '{"model":"m","prompt":"p"}'.encode("utf-16"),
    b'{"model":"m","prompt":"p","model":"n"}',  # the last duplicate wins
    b'{"model":"m","prompt":"' + b"{[" * 2000 + b'"}',  # brackets inside a string
])
def test_accepts_what_the_standard_library_accepts(raw: bytes) -> None:
    parsed = messages.parse_body(raw, {})
    expected = json.loads(raw)
    assert parsed.original_model == expected["model"] and parsed.prompt == expected["prompt"]


@pytest.mark.parametrize("raw", [b"{", b'{"model":"m"} x', b"\xff", b"[1,]", b""])
def test_errors_keep_the_standard_librarys_messages(raw: bytes) -> None:
    try:
        json.loads(raw)
    except ValueError as exc:
        expected = f"Error unmarshaling request body: {exc}"
    else:  # pragma: no cover
        raise AssertionError("not an error")
    if not raw:
        expected = "Error unmarshaling request body: not a JSON object"
    with pytest.raises(Rejection) as caught:
        messages.parse_body(raw, {})
    assert caught.value.status == 400 and caught.value.body.endswith(expected)
