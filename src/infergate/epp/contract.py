"""The boundary between the EPP's request handling (``Director``) and its transports.

The ext_proc server (``infergate.epp.extproc``) parses what Envoy sends into an
``InferenceRequest``, asks the ``Director`` for a ``Decision``, and turns a ``Rejection``
into an immediate response. Keeping this boundary small lets the scheduling side be tested
without gRPC and the gRPC side be tested with real protobuf messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class InferenceRequest:
    request_id: str
    headers: Mapping[str, str]  # lower-case names
    body: dict[str, Any]  # the parsed JSON body ({} for headers-only requests)
    model: str  # body "model" (after x-gateway-model-name-rewrite, if any)
    objective: str | None  # x-gateway-inference-objective header
    prompt: str  # "prompt", or the concatenated "messages" contents, for prefix hashing
    streaming: bool = False
    subset_hint: list[str] | None = None  # envoy.lb.subset_hint endpoints ("ip:port"), if any
    headers_only: bool = False  # no body (e.g. GET): pick any ready endpoint, no scheduling
    body_size: int = 0  # bytes of the request body as received (inference_model_request_sizes)


@dataclass
class Decision:
    endpoint: str  # "ip:port" of the chosen pod
    fallbacks: list[str] = field(default_factory=list)  # further "ip:port", in order
    target_model: str | None = None  # when set, the body's "model" is rewritten to this
    priority: int = 0


class Rejection(Exception):
    """The request is answered by the EPP itself (an ext_proc immediate response)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code  # upstream error code name, e.g. "InferencePoolResourceExhausted"
        self.message = message

    @property
    def body(self) -> str:
        """Upstream's body text: ``inference gateway: <Code> - <Msg>``."""
        return f"inference gateway: {self.code} - {self.message}"


class Director(Protocol):
    """What the ext_proc server needs from the scheduling side."""

    async def handle_request(self, request: InferenceRequest, on_hold: Callable[[], None] | None = None) -> Decision:
        """Admit (flow control), schedule and return the endpoint, or raise ``Rejection``.
        ``on_hold`` is called when flow control makes the request wait (a director that never
        holds requests may ignore it)."""
        ...

    def on_response_headers(self, request_id: str, status: int, headers: Mapping[str, str]) -> None: ...

    def on_response_body(self, request_id: str, chunk: bytes, end_of_stream: bool) -> None: ...

    def on_request_done(self, request_id: str, *, completed: bool) -> None:
        """Release per-request state; called exactly once per request, also when the stream breaks."""
        ...
