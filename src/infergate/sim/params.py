"""Request-body decoding and sampling-parameter checks, answered as vLLM answers them.

vLLM's OpenAI server rejects a request in two places, both with a 400 ``BadRequestError``:
pydantic (wrong types: "Input should be a valid number", ...) and ``SamplingParams._verify_args``
(ranges: "top_p must be in (0, 1], got 2.0."). The messages here are vLLM's wording, prefixed
with the field name for the type errors as pydantic's ``loc`` would say it. Non-finite numbers
(``NaN``, ``Infinity``) are not JSON and are refused at decoding, as is a body nested deeper
than the decoder's recursion limit or an integer longer than Python's 4,300-digit limit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

# Llama 3's vocabulary (the simulator's default model): token ids are in [0, VOCAB_SIZE).
VOCAB_SIZE = 128_256
_INT64 = (-(2**63), 2**63 - 1)


class ParamError(ValueError):
    """A rejected field: ``message`` as vLLM words it, ``param`` the field name."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_body(raw: bytes) -> Any:
    """The JSON value of ``raw``; ``ParamError`` for anything that is not strict, finite JSON."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise ParamError("Invalid JSON body: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the int-digits limit, NaN
        raise ParamError(f"Invalid JSON body: {exc}") from None


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ParamError(f"{name}: Input should be a valid number", name)
    if isinstance(value, str):  # pydantic's lax mode parses numeric strings
        try:
            value = float(value)
        except ValueError:
            raise ParamError(f"{name}: Input should be a valid number, unable to parse string as a number",
                             name) from None
    try:
        number = float(value)
    except OverflowError:
        raise ParamError(f"{name}: Input should be a finite number", name) from None
    if not math.isfinite(number):
        raise ParamError(f"{name}: Input should be a finite number", name)
    return number


def integer(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str):
            raise ParamError(f"{name}: Input should be a valid integer, unable to parse string as an integer", name)
        raise ParamError(f"{name}: Input should be a valid integer", name)
    return value


def check_sampling(body: Mapping[str, Any], *, chat: bool) -> None:
    """Raise ``ParamError`` for the first sampling parameter vLLM would refuse."""
    temperature = _number(body, "temperature")
    if temperature is not None and temperature < 0:
        raise ParamError(f"temperature must be non-negative, got {temperature}.", "temperature")
    top_p = _number(body, "top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise ParamError(f"top_p must be in (0, 1], got {top_p}.", "top_p")
    top_k = integer(body, "top_k")
    if top_k is not None and top_k < -1:  # vLLM quietly accepts -1 as "disabled"
        raise ParamError(f"top_k must be 0 (disable), or at least 1, got {top_k}.", "top_k")
    min_p = _number(body, "min_p")
    if min_p is not None and not 0 <= min_p <= 1:
        raise ParamError(f"min_p must be in [0, 1], got {min_p}.", "min_p")
    for name in ("presence_penalty", "frequency_penalty"):
        penalty = _number(body, name)
        if penalty is not None and not -2 <= penalty <= 2:
            raise ParamError(f"{name} must be in [-2, 2], got {penalty}.", name)
    repetition = _number(body, "repetition_penalty")
    if repetition is not None and repetition <= 0:
        raise ParamError(f"repetition_penalty must be greater than zero, got {repetition}.", "repetition_penalty")
    seed = integer(body, "seed")
    if seed is not None and not _INT64[0] <= seed <= _INT64[1]:
        bound = "greater than or equal to" if seed < 0 else "less than or equal to"
        raise ParamError(f"seed: Input should be {bound} {_INT64[0] if seed < 0 else _INT64[1]}", "seed")
    _check_stop(body)
    _check_logprobs(body, chat=chat)
    ignore_eos = body.get("ignore_eos")
    if ignore_eos is not None and not isinstance(ignore_eos, bool):
        raise ParamError("ignore_eos: Input should be a valid boolean", "ignore_eos")


def _check_stop(body: Mapping[str, Any]) -> None:
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
        isinstance(stop, list) and all(isinstance(s, str) for s in stop)
    ):
        raise ParamError("stop: Input should be a valid string or a list of strings", "stop")
    ids = body.get("stop_token_ids")
    if ids is not None and not (isinstance(ids, list) and all(_is_int(t) for t in ids)):
        raise ParamError("stop_token_ids: Input should be a valid list of integers", "stop_token_ids")


def _check_logprobs(body: Mapping[str, Any], *, chat: bool) -> None:
    if chat:
        logprobs = body.get("logprobs")
        if logprobs is not None and not isinstance(logprobs, bool):
            raise ParamError("logprobs: Input should be a valid boolean", "logprobs")
        top = integer(body, "top_logprobs")
        if top is not None:
            if top < 0:
                raise ParamError("`top_logprobs` must be a positive value.", "top_logprobs")
            if top > 0 and not logprobs:
                raise ParamError("when using `top_logprobs`, `logprobs` must be set to true.", "top_logprobs")
        return
    logprobs_n = integer(body, "logprobs")
    if logprobs_n is not None and logprobs_n < 0:
        raise ParamError("`logprobs` must be a positive value.", "logprobs")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_token_ids(ids: list[int]) -> None:
    """vLLM's processor refuses prompt token ids outside the vocabulary."""
    for token in ids:
        if not 0 <= token < VOCAB_SIZE:
            raise ParamError(f"Token id {token} is out of vocabulary", "prompt")


def check_messages(messages: list[Any]) -> None:
    """Each message is an object with a string role and string, null or list-of-parts content."""
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise ParamError(f"messages.{i}: each message needs a role", "messages")
        if not isinstance(message["role"], str):
            raise ParamError(f"messages.{i}.role: Input should be a valid string", "messages")
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list) or not all(  # parts other than objects are skipped
            isinstance(part.get("text", ""), str) for part in content if isinstance(part, dict)
        ):
            raise ParamError(f"messages.{i}.content: Input should be a valid string or a list of content parts",
                             "messages")
