"""OpenAI/vLLM wire format: parsing requests, building responses, chunks and errors."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infergate.sim import params, tokenizer

ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    408: "RequestTimeoutError",
    413: "RequestEntityTooLargeError",
    429: "TooManyRequestsError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}


class ApiError(Exception):
    """An error answered with vLLM's error JSON."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.param)


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """vLLM's ``ErrorResponse``: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "InternalServerError"),
                      "param": param, "code": status}}


@dataclass(frozen=True)
class ParsedRequest:
    chat: bool
    model: str
    prompt_text: str | None  # rendered prompt (None when the prompt is token ids)
    prompt_ids: list[int] | None
    prompt_tokens: int
    max_tokens: int | None
    min_tokens: int
    ignore_eos: bool
    stream: bool
    include_usage: bool


def decode_body(raw: bytes) -> Any:
    """The request's JSON; a 400 ``ApiError`` for invalid, non-finite or over-deep JSON."""
    try:
        return params.decode_body(raw)
    except params.ParamError as exc:
        raise ApiError(400, exc.message, exc.param) from None


def _int_field(body: Mapping[str, Any], name: str, minimum: int) -> int | None:
    value = params.integer(body, name)
    if value is None:
        return None
    if value < minimum:
        raise ApiError(400, f"{name} must be at least {minimum}, got {value}.", name)
    return value


def parse_request(body: Any, *, chat: bool) -> ParsedRequest:
    """The fields the simulator uses; a 400 ``ApiError`` where vLLM would refuse the request."""
    try:
        return _parse(body, chat=chat)
    except params.ParamError as exc:
        raise ApiError(400, exc.message, exc.param) from None


def _parse(body: Any, *, chat: bool) -> ParsedRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model: Field required", "model")
    prompt_text: str | None = None
    prompt_ids: list[int] | None = None
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "messages: Field required (a non-empty list of messages)", "messages")
        params.check_messages(messages)
        prompt_text = tokenizer.render_chat(messages)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
            prompt = prompt[0]
        if isinstance(prompt, str):
            prompt_text = prompt
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            prompt_ids = list(prompt)
            params.check_token_ids(prompt_ids)
        elif isinstance(prompt, list) and len(prompt) > 1:
            raise ApiError(400, "prompt: the simulator serves one prompt per request", "prompt")
        else:
            raise ApiError(400, "prompt: Field required (a string or a list of token ids)", "prompt")
    prompt_tokens = len(prompt_ids) if prompt_ids is not None else tokenizer.count_tokens(prompt_text or "")
    if prompt_tokens == 0:
        raise ApiError(400, "The prompt is empty.", "prompt")
    max_tokens = _int_field(body, "max_completion_tokens", 1) if chat else None
    if max_tokens is None:
        max_tokens = _int_field(body, "max_tokens", 1)
    if max_tokens is None and not chat:
        max_tokens = 16  # the OpenAI/vLLM default for completions
    min_tokens = _int_field(body, "min_tokens", 0) or 0
    if max_tokens is not None and min_tokens > max_tokens:
        raise ApiError(400, f"min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}.",
                       "min_tokens")
    n = _int_field(body, "n", 1)
    if n not in (None, 1):
        raise ApiError(400, "n: the simulator generates one choice per request (n=1)", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ApiError(400, "stream: Input should be a valid boolean", "stream")
    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise ApiError(400, "stream_options: Input should be a valid dictionary", "stream_options")
        if not stream:
            raise ApiError(400, "Stream options can only be defined when `stream=True`.", "stream_options")
        include_usage = bool(stream_options.get("include_usage", False))
    params.check_sampling(body, chat=chat)
    return ParsedRequest(
        chat=chat,
        model=model,
        prompt_text=prompt_text,
        prompt_ids=prompt_ids,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        min_tokens=min_tokens,
        ignore_eos=bool(body.get("ignore_eos", False)),
        stream=bool(stream),
        include_usage=include_usage,
    )


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def full_response(*, chat: bool, request_id: str, model: str, text: str, finish_reason: str,
                  usage_body: dict[str, Any]) -> dict[str, Any]:
    created = int(time.time())
    if chat:
        return {
            "id": request_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "content": text, "tool_calls": []},
                         "logprobs": None, "finish_reason": finish_reason, "stop_reason": None}],
            "usage": usage_body, "prompt_logprobs": None,
        }
    return {
        "id": request_id, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason,
                     "stop_reason": None, "prompt_logprobs": None}],
        "usage": usage_body,
    }


class ChunkTemplates:
    """Pre-rendered SSE chunk bytes with a hole for the text, so a token costs a concatenation."""

    _HOLE = "\x00HOLE\x00"

    def __init__(self, *, chat: bool, request_id: str, model: str) -> None:
        self.chat = chat
        self.request_id = request_id
        self.model = model
        self.created = int(time.time())
        self._text = self._split(None)
        self._final: dict[str, tuple[bytes, bytes]] = {}

    def _chunk(self, text: str | None, finish_reason: str | None) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {"content": text} if text is not None else {"role": "assistant", "content": ""}
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None,
                                      "finish_reason": finish_reason, "stop_reason": None}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason,
                      "stop_reason": None}
            obj = "text_completion"
        return {"id": self.request_id, "object": obj, "created": self.created, "model": self.model,
                "choices": [choice]}

    def _split(self, finish_reason: str | None) -> tuple[bytes, bytes]:
        rendered = "data: " + json.dumps(self._chunk(self._HOLE, finish_reason), separators=(",", ":")) + "\n\n"
        head, tail = rendered.split(json.dumps(self._HOLE)[1:-1])
        return head.encode(), tail.encode()

    def text(self, text: str, finish_reason: str | None = None) -> bytes:
        """A chunk carrying ``text`` (tokenizer output needs no JSON escaping)."""
        if finish_reason is None:
            head, tail = self._text
        else:
            parts = self._final.get(finish_reason)
            if parts is None:
                parts = self._final[finish_reason] = self._split(finish_reason)
            head, tail = parts
        return head + text.encode() + tail

    def role(self) -> bytes:
        return ("data: " + json.dumps(self._chunk(None, None), separators=(",", ":")) + "\n\n").encode()

    def usage(self, usage_body: dict[str, Any]) -> bytes:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        chunk = {"id": self.request_id, "object": obj, "created": self.created, "model": self.model,
                 "choices": [], "usage": usage_body}
        return ("data: " + json.dumps(chunk, separators=(",", ":")) + "\n\n").encode()


DONE = b"data: [DONE]\n\n"
