"""Translation between Envoy ext_proc protobuf messages and the EPP contract.

Parsing (what Envoy sends -> ``InferenceRequest``) and building (``Decision`` /
``Rejection`` -> ``ProcessingResponse``) are plain functions here, so the gRPC handler in
``servicer.py`` stays a small state machine and every rule can be unit-tested with real
protobuf messages and no server.

Behaviour follows the upstream v1.0 EPP (``pkg/epp/handlers``, ``requestcontrol/director.go``):
request validation, the chat-template prompt used for prefix hashing, the endpoint header
and ``envoy.lb`` dynamic metadata, 62,000-byte body chunks and the error codes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from envoy.config.core.v3 import base_pb2 as core_pb
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2

from infergate.api import headers as gie
from infergate.epp.contract import Decision, Rejection

BODY_CHUNK_LIMIT = 62_000  # upstream's bodyByteLimit
# JSON arrays/objects nested deeper than this are refused with 400 (the standard library
# would raise RecursionError near 1,000; orjson refuses beyond 1,024; re-serializing a
# rewritten body must stay well inside Python's recursion limit)
MAX_BODY_DEPTH = 512

_OVERWRITE = core_pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def bad_request(message: str) -> Rejection:
    return Rejection(400, "BadRequest", message)


def header_map(headers: pb.HttpHeaders) -> dict[str, str]:
    """Envoy's header list as a dict with lower-case names (``raw_value`` preferred)."""
    result: dict[str, str] = {}
    for entry in headers.headers.headers:
        raw = entry.raw_value
        result[entry.key.lower()] = raw.decode("utf-8", "replace") if raw else entry.value
    return result


def served_endpoint(request: pb.ProcessingRequest) -> str | None:
    """The gateway's ``envoy.lb`` / ``x-gateway-destination-endpoint-served`` (``ip:port``) on a
    response message, or None when the gateway did not report it."""
    if not request.HasField("metadata_context"):
        return None
    struct = request.metadata_context.filter_metadata.get(gie.LB_METADATA_NAMESPACE)
    if struct is None or gie.DESTINATION_ENDPOINT_SERVED not in struct.fields:
        return None
    return struct.fields[gie.DESTINATION_ENDPOINT_SERVED].string_value or None


def subset_hint(request: pb.ProcessingRequest) -> list[str] | None:
    """The gateway's ``envoy.lb.subset_hint`` endpoint list, or None when absent.

    A present-but-empty list is returned as ``[]`` (the Director answers 503 for it, as
    upstream does).
    """
    if not request.HasField("metadata_context"):
        return None
    namespaces = request.metadata_context.filter_metadata
    if gie.SUBSET_HINT_METADATA_NAMESPACE not in namespaces:
        return None
    struct = namespaces[gie.SUBSET_HINT_METADATA_NAMESPACE]
    if gie.DESTINATION_ENDPOINT_SUBSET not in struct.fields:
        return None
    value = struct.fields[gie.DESTINATION_ENDPOINT_SUBSET]
    if value.WhichOneof("kind") != "list_value":
        return []
    return [item.string_value for item in value.list_value.values if item.string_value]


def chat_prompt(messages: Any) -> str:
    """Upstream's prompt for chat requests: ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list")
    parts: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role, content = message.get("role"), message.get("content")
        if isinstance(role, str) and isinstance(content, str):
            parts.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
    return "".join(parts)


@dataclass(frozen=True)
class ParsedBody:
    body: dict[str, Any]
    model: str  # after the rewrite header
    original_model: str
    prompt: str
    streaming: bool


def _too_deep() -> Rejection:
    return bad_request(f"Error unmarshaling request body: nested deeper than {MAX_BODY_DEPTH} levels")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def decode_json(raw: bytes) -> Any:
    """The body as JSON, accepted and refused exactly as ``json.loads`` does, but with orjson's
    speed for the documents it accepts (orjson is stricter: NaN, lone surrogates, a BOM or
    UTF-16 fall back to ``json.loads``); nesting deeper than ``MAX_BODY_DEPTH`` -> 400."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise _too_deep() from None
        try:
            value = json.loads(raw)
        except RecursionError:
            raise _too_deep() from None
        except ValueError as std_exc:
            raise bad_request(f"Error unmarshaling request body: {std_exc}") from None
    # a document nested MAX_BODY_DEPTH deep holds at least that many brackets: count them (C
    # speed) before walking the parsed value
    if isinstance(value, (dict, list)) and raw.count(b"[") + raw.count(b"{") > MAX_BODY_DEPTH \
            and _depth_exceeds(value, MAX_BODY_DEPTH):
        raise _too_deep()
    return value


def parse_body(raw: bytes, headers: Mapping[str, str]) -> ParsedBody:
    """Parse and validate an OpenAI request body the way upstream's director does."""
    body = decode_json(raw) if raw else None
    if not isinstance(body, dict):
        raise bad_request("Error unmarshaling request body: not a JSON object")
    model = body.get("model")
    if not isinstance(model, str):
        raise bad_request("model not found in request body")
    target = headers.get(gie.MODEL_NAME_REWRITE) or model
    if "messages" in body:
        prompt = chat_prompt(body["messages"])
    else:
        prompt_value = body.get("prompt")
        if not isinstance(prompt_value, str):
            raise bad_request("prompt not found in request body")
        prompt = prompt_value
    return ParsedBody(body, target, model, prompt, body.get("stream") is True)


def rewritten_body(parsed: ParsedBody, decision: Decision) -> bytes | None:
    """The re-serialized body when the model name changes, else None (send the original)."""
    target = decision.target_model or parsed.model
    if target == parsed.original_model:
        return None
    body = dict(parsed.body)
    body["model"] = target
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def endpoint_value(decision: Decision) -> str:
    return ",".join([decision.endpoint, *decision.fallbacks])


def set_header(name: str, value: str) -> core_pb.HeaderValueOption:
    return core_pb.HeaderValueOption(
        header=core_pb.HeaderValue(key=name, raw_value=value.encode()), append_action=_OVERWRITE
    )


def routing_common(endpoints: str, extra_headers: Iterable[tuple[str, str]] = ()) -> pb.CommonResponse:
    """A ``CommonResponse`` that pins the endpoint and makes Envoy re-resolve the route."""
    mutation = pb.HeaderMutation(
        set_headers=[set_header(gie.DESTINATION_ENDPOINT, endpoints), *(set_header(k, v) for k, v in extra_headers)]
    )
    return pb.CommonResponse(header_mutation=mutation, clear_route_cache=True)


def add_lb_metadata(response: pb.ProcessingResponse, endpoints: str) -> None:
    """``dynamic_metadata = {"envoy.lb": {"x-gateway-destination-endpoint": endpoints}}``."""
    inner = struct_pb2.Struct()
    inner.fields[gie.DESTINATION_ENDPOINT].string_value = endpoints
    response.dynamic_metadata.fields[gie.LB_METADATA_NAMESPACE].struct_value.CopyFrom(inner)


def body_routing_reply(endpoints: str) -> pb.ProcessingResponse:
    """Buffered mode's reply to the body when the body is sent unchanged: the endpoint
    header, ``clear_route_cache`` and the ``envoy.lb`` metadata."""
    response = pb.ProcessingResponse(request_body=pb.BodyResponse(response=routing_common(endpoints)))
    add_lb_metadata(response, endpoints)
    return response


def body_chunks(body: bytes) -> list[pb.ProcessingResponse]:
    """The body re-sent as streamed chunks of at most 62,000 bytes, EoS on the last."""
    if not body:
        pieces = [b""]
    else:
        pieces = [body[i : i + BODY_CHUNK_LIMIT] for i in range(0, len(body), BODY_CHUNK_LIMIT)]
    last = len(pieces) - 1
    return [
        pb.ProcessingResponse(
            request_body=pb.BodyResponse(
                response=pb.CommonResponse(
                    body_mutation=pb.BodyMutation(
                        streamed_response=pb.StreamedBodyResponse(body=piece, end_of_stream=index == last)
                    )
                )
            )
        )
        for index, piece in enumerate(pieces)
    ]


def immediate(rejection: Rejection, *, json_body: bool) -> pb.ProcessingResponse:
    """A rejection as an ext_proc immediate response.

    ``json_body`` gives an OpenAI-style JSON error; otherwise the body is upstream's text
    ``inference gateway: <Code> - <Msg>``.
    """
    if json_body:
        payload = {
            "error": {
                "message": rejection.body,
                "type": rejection.code,
                "code": rejection.status,
            }
        }
        body = json.dumps(payload).encode()
        content_type = "application/json"
    else:
        body = rejection.body.encode()
        content_type = "text/plain; charset=utf-8"
    return pb.ProcessingResponse(
        immediate_response=pb.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=rejection.status),
            headers=pb.HeaderMutation(set_headers=[set_header("content-type", content_type)]),
            body=body,
            details=f"epp_{rejection.status}_{rejection.code}",
        )
    )
