"""The ``envoy.service.ext_proc.v3.ExternalProcessor`` servicer: one gRPC stream per HTTP request.

Two request-body modes are supported, detected from ``ProcessingRequest.protocol_config``
(Envoy sends it on the first message):

* ``BUFFERED`` (infergate's recommended mode, fewest messages): the headers message is
  answered at once with an empty ``HeadersResponse``; Envoy holds the request headers until
  the buffered body is answered, so the ``BodyResponse`` carries the endpoint header,
  ``clear_route_cache`` and, only if the model name changed, the new body and Content-Length.
* ``FULL_DUPLEX_STREAMED`` (upstream's mode, also assumed when ``protocol_config`` is absent):
  the headers reply is deferred until the body's end of stream, then a ``HeadersResponse``
  with the routing mutation is sent, followed by the body in chunks of at most 62,000 bytes.

The response side is followed in whatever mode the filter sends it: response headers go to
``Director.on_response_headers``, body chunks to ``Director.on_response_body`` (echoed back
as ``streamed_response`` only in ``FULL_DUPLEX_STREAMED``, where Envoy requires it).
``Director.on_request_done`` is called exactly once for every request that reached
``Director.handle_request`` (also rejected ones), when the gRPC stream ends or breaks, with
``completed=True`` only if the response was seen to finish (its end of stream, or its headers
when the response body is not sent to the EPP). The EPP therefore needs the response headers
(``response_header_mode: SEND``, as the gateway and upstream's configuration send them).

Held requests: with ``hold_timeout`` set (the EPP's flow control is on), a request that flow
control makes wait gets a ``ProcessingResponse`` carrying only ``override_message_timeout``
(``hold_timeout`` seconds) as soon as it is queued, so that the proxy waits for the EPP's
decision (or its own 429 at the queue's max wait) instead of answering 504 at its per-message
timeout. Envoy honours the override up to the filter's ``max_message_timeout`` (infergate's
translator sets 300 s); a longer one is ignored. That takes running the Director in a task of its
own (the stream must answer while the Director waits); ``may_hold`` (the Director's
``may_hold``: flow control is on and has no room now, or requests wait) spares it for a request
that will be admitted at once, the common case: the check and the admission run in one
synchronous stretch, so the answer cannot change in between.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from google.protobuf import duration_pb2

from infergate.api import headers as gie
from infergate.epp.contract import Decision, Director, InferenceRequest, Rejection
from infergate.epp.extproc import messages

log = logging.getLogger(__name__)

_Replies = Sequence[pb.ProcessingResponse]
ResponseHeadersHook = Callable[[str | None], Mapping[str, str]]

_FULL_DUPLEX = processing_mode_pb2.ProcessingMode.FULL_DUPLEX_STREAMED
_NONE = processing_mode_pb2.ProcessingMode.NONE
_EMPTY_HEADERS = pb.ProcessingResponse(request_headers=pb.HeadersResponse())
_EMPTY_REQUEST_BODY = pb.ProcessingResponse(request_body=pb.BodyResponse())
_EMPTY_RESPONSE_BODY = pb.ProcessingResponse(response_body=pb.BodyResponse())
_EMPTY_REQUEST_TRAILERS = pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
_EMPTY_RESPONSE_TRAILERS = pb.ProcessingResponse(response_trailers=pb.TrailersResponse())
_ROUTING_REPLY_CACHE = 4096  # endpoint lists remembered (cleared when full)
_RESPONSE_HEADERS_REPLY = pb.ProcessingResponse(  # upstream marks responses it has seen
    response_headers=pb.HeadersResponse(
        response=pb.CommonResponse(
            header_mutation=pb.HeaderMutation(set_headers=[messages.set_header("x-went-into-resp-headers", "true")])
        )
    )
)


class _Exchange:
    """Per-stream state (one HTTP request)."""

    __slots__ = (
        "body",
        "completed",
        "duplex_request",
        "duplex_response",
        "follows_response_body",
        "headers",
        "on_hold",
        "request_id",
        "response_done",
        "response_headers_seen",
        "scheduled",
        "subset",
    )

    def __init__(self) -> None:
        self.duplex_request = True  # upstream's default assumption
        self.duplex_response = False
        self.follows_response_body = False  # the filter sends response body chunks
        self.response_headers_seen = False
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.request_id = ""
        self.subset: list[str] | None = None
        self.scheduled = False  # handle_request was called: on_request_done is owed
        self.on_hold: Callable[[], None] | None = None  # flow control queued the request
        self.response_done = False
        self.completed = False


    def finished_as_far_as_seen(self) -> bool:
        """Whether the response is known to be complete, even if the stream is then reset.

        Envoy resets the ext_proc stream when the HTTP stream is destroyed, also after a
        successful response. With the response body not sent to us (mode NONE) the response
        headers are the last thing we see, so they count as the end of the request.
        """
        return self.response_done or (self.response_headers_seen and not self.follows_response_body)


_Handler = Callable[[_Exchange, pb.ProcessingRequest], Awaitable[_Replies]]


class ExtProcServicer(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """Routes each request with ``director`` and reports its response back to it."""

    def __init__(self, director: Director, *, json_errors: bool = True,
                 response_headers: ResponseHeadersHook | None = None, hold_timeout: float | None = None,
                 may_hold: Callable[[], bool] | None = None) -> None:
        self._director = director
        self._may_hold = may_hold
        # flow control on: the reply that extends the proxy's per-message timeout for a held request
        self._hold_reply: pb.ProcessingResponse | None = None
        if hold_timeout is not None:
            timeout = duration_pb2.Duration()
            timeout.FromNanoseconds(round(hold_timeout * 1e9))
            self._hold_reply = pb.ProcessingResponse(override_message_timeout=timeout)
        # headers added to each response from the served endpoint (conformance test plugin)
        self._response_headers = response_headers
        self._json_errors = json_errors
        # endpoint header value -> the buffered-mode BodyResponse routing there (read-only:
        # gRPC serializes a message per send, so one object serves every stream)
        self._routing_replies: dict[str, pb.ProcessingResponse] = {}
        # ProcessingRequest's "request" oneof -> its handler (other kinds get no reply)
        self._handlers: dict[str | None, _Handler] = {
            "request_headers": self._on_request_headers,
            "request_body": self._on_request_body,
            "request_trailers": self._on_request_trailers,
            "response_headers": self._on_response_headers,
            "response_body": self._on_response_body,
            "response_trailers": self._on_response_trailers,
        }

    async def Process(  # gRPC method name
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ProcessingResponse]:
        state = _Exchange()
        handlers = self._handlers
        hold_reply = self._hold_reply
        try:
            async for request in request_iterator:
                kind = request.WhichOneof("request")
                handler = handlers.get(kind)
                if handler is None:
                    continue
                if hold_reply is None or not _may_route(kind, request) or (
                        self._may_hold is not None and not self._may_hold()):
                    responses = await handler(state, request)
                else:  # flow control may hold it: tell the proxy to wait as soon as it does
                    # one future woken by whichever comes first, the hold or the replies (cheaper than
                    # asyncio.wait, which this path paid on every routable message)
                    wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    state.on_hold = functools.partial(_set_once, wake)
                    replies = asyncio.ensure_future(handler(state, request))
                    replies.add_done_callback(functools.partial(_wake_on_done, wake))
                    try:
                        await wake
                        if not replies.done():
                            yield hold_reply
                        responses = await replies
                    finally:
                        state.on_hold = None
                        replies.cancel()  # the stream ended while held: leave the queue
                for response in responses:
                    yield response
                if responses and responses[0].HasField("immediate_response"):
                    return  # a rejection ends the exchange
            # The request iterator ended. A half-close and a cancelled call both end it
            # normally (gRPC does not reliably tell this task which one it was, and Envoy
            # half-closes and then resets when it destroys the filter), so the stream's end
            # says nothing about the request: only a response seen to finish counts as done.
            state.completed = state.finished_as_far_as_seen()
        except (asyncio.CancelledError, GeneratorExit):
            state.completed = state.finished_as_far_as_seen()
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            # Not a Rejection (e.g. the pool is not synced yet): fail the stream with a gRPC
            # error so that the proxy applies its failure mode, as upstream does (code Unknown).
            log.warning("ext_proc stream for %s failed: %s", state.request_id or "?", exc)
            await context.abort(grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}")
        finally:
            log.debug("stream end %s duplex=%s/%s headers_seen=%s response_done=%s completed=%s",
                      state.request_id, state.duplex_request, state.follows_response_body,
                      state.response_headers_seen, state.response_done, state.completed)
            if state.scheduled:
                try:
                    self._director.on_request_done(state.request_id, completed=state.completed)
                except Exception:  # never let accounting errors mask the stream's outcome
                    log.exception("on_request_done failed for %s", state.request_id)

    # ---- one handler per message kind: the replies to send, in order --------------------
    async def _on_request_headers(self, state: _Exchange, request: pb.ProcessingRequest) -> _Replies:
        if request.HasField("protocol_config"):
            config = request.protocol_config
            state.duplex_request = config.request_body_mode == _FULL_DUPLEX
            state.duplex_response = config.response_body_mode == _FULL_DUPLEX
            state.follows_response_body = config.response_body_mode != _NONE
        state.subset = messages.subset_hint(request)
        headers = messages.header_map(request.request_headers)
        state.headers = headers
        request_id = headers.get(gie.REQUEST_ID)
        extra: list[tuple[str, str]] = []
        if not request_id:
            request_id = str(uuid.uuid4())
            extra.append((gie.REQUEST_ID, request_id))
        state.request_id = request_id
        if request.request_headers.end_of_stream:
            return (await self._route_headers_only(state, extra),)
        if state.duplex_request:
            # FULL_DUPLEX_STREAMED: the headers are answered after the body's end of stream,
            # together with the routing mutation (see _route_body).
            return ()
        if not extra:
            return (_EMPTY_HEADERS,)
        return (pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=pb.CommonResponse(
            header_mutation=pb.HeaderMutation(set_headers=[messages.set_header(*extra[0])])))),)

    async def _on_request_body(self, state: _Exchange, request: pb.ProcessingRequest) -> _Replies:
        chunk = request.request_body
        state.body += chunk.body
        if chunk.end_of_stream:
            return await self._route_body(state, end_of_stream=True)
        return () if state.duplex_request else (_EMPTY_REQUEST_BODY,)

    async def _on_request_trailers(self, state: _Exchange, request: pb.ProcessingRequest) -> _Replies:
        if state.duplex_request and not state.scheduled:
            responses = await self._route_body(state, end_of_stream=False)
            if responses and responses[0].HasField("immediate_response"):
                return responses
            return (*responses, _EMPTY_REQUEST_TRAILERS)
        return (_EMPTY_REQUEST_TRAILERS,)

    async def _on_response_headers(self, state: _Exchange, request: pb.ProcessingRequest) -> _Replies:
        headers = messages.header_map(request.response_headers)
        state.response_headers_seen = True
        if state.scheduled:
            self._director.on_response_headers(state.request_id, _status(headers), headers)
        if request.response_headers.end_of_stream:
            state.response_done = True
        added = self._response_headers(messages.served_endpoint(request)) if self._response_headers else None
        if added:
            return (pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=pb.CommonResponse(
                header_mutation=pb.HeaderMutation(set_headers=[
                    messages.set_header("x-went-into-resp-headers", "true"),
                    *(messages.set_header(k, v) for k, v in added.items())])))),)
        return (_RESPONSE_HEADERS_REPLY,)

    async def _on_response_body(self, state: _Exchange, request: pb.ProcessingRequest) -> _Replies:
        chunk = request.response_body
        state.follows_response_body = True
        if state.scheduled:
            self._director.on_response_body(state.request_id, chunk.body, chunk.end_of_stream)
        if chunk.end_of_stream:
            state.response_done = True
        if not state.duplex_response:
            return (_EMPTY_RESPONSE_BODY,)
        return (pb.ProcessingResponse(response_body=pb.BodyResponse(response=pb.CommonResponse(
            body_mutation=pb.BodyMutation(streamed_response=pb.StreamedBodyResponse(
                body=chunk.body, end_of_stream=chunk.end_of_stream))))),)

    async def _on_response_trailers(self, state: _Exchange, request: pb.ProcessingRequest) -> _Replies:
        state.response_done = True
        return (_EMPTY_RESPONSE_TRAILERS,)

    async def _decide(self, state: _Exchange, request: InferenceRequest) -> Decision:
        state.scheduled = True
        if state.on_hold is None:
            return await self._director.handle_request(request)
        return await self._director.handle_request(request, state.on_hold)

    async def _route_headers_only(
        self, state: _Exchange, extra: list[tuple[str, str]]
    ) -> pb.ProcessingResponse:
        request = InferenceRequest(
            request_id=state.request_id,
            headers=state.headers,
            body={},
            model=state.headers.get(gie.MODEL_NAME_REWRITE, ""),
            objective=state.headers.get(gie.INFERENCE_OBJECTIVE),
            prompt="",
            subset_hint=state.subset,
            headers_only=True,
        )
        try:
            decision = await self._decide(state, request)
        except Rejection as rejection:
            return messages.immediate(rejection, json_body=self._json_errors)
        endpoints = messages.endpoint_value(decision)
        response = pb.ProcessingResponse(
            request_headers=pb.HeadersResponse(response=messages.routing_common(endpoints, extra))
        )
        messages.add_lb_metadata(response, endpoints)
        return response

    async def _route_body(self, state: _Exchange, *, end_of_stream: bool) -> list[pb.ProcessingResponse]:
        raw = bytes(state.body)
        state.body = bytearray()
        headers = state.headers
        try:
            parsed = messages.parse_body(raw, headers)
            request = InferenceRequest(
                request_id=state.request_id,
                headers=headers,
                body=parsed.body,
                model=parsed.model,
                objective=headers.get(gie.INFERENCE_OBJECTIVE),
                prompt=parsed.prompt,
                streaming=parsed.streaming,
                subset_hint=state.subset,
                body_size=len(raw),
            )
            decision = await self._decide(state, request)
        except Rejection as rejection:
            return [messages.immediate(rejection, json_body=self._json_errors)]
        endpoints = messages.endpoint_value(decision)
        new_body = messages.rewritten_body(parsed, decision)
        extra: list[tuple[str, str]] = []
        if state.duplex_request:
            if gie.REQUEST_ID not in headers:
                extra.append((gie.REQUEST_ID, state.request_id))
            body = raw if new_body is None else new_body
            if body:
                extra.append(("content-length", str(len(body))))
            first = pb.ProcessingResponse(
                request_headers=pb.HeadersResponse(response=messages.routing_common(endpoints, extra))
            )
            messages.add_lb_metadata(first, endpoints)
            chunks = messages.body_chunks(body)
            if not end_of_stream:
                last = chunks[-1].request_body.response.body_mutation.streamed_response
                last.end_of_stream = False
            return [first, *chunks]
        if new_body is None:
            # the common case: the same immutable reply for every request to these endpoints
            cached = self._routing_replies.get(endpoints)
            if cached is None:
                if len(self._routing_replies) >= _ROUTING_REPLY_CACHE:
                    self._routing_replies.clear()
                cached = self._routing_replies[endpoints] = messages.body_routing_reply(endpoints)
            return [cached]
        extra.append(("content-length", str(len(new_body))))
        common = messages.routing_common(endpoints, extra)
        common.body_mutation.body = new_body
        response = pb.ProcessingResponse(request_body=pb.BodyResponse(response=common))
        messages.add_lb_metadata(response, endpoints)
        return [response]


def _may_route(kind: str | None, request: pb.ProcessingRequest) -> bool:
    """Whether this message can be the one a request is routed (so held) on: headers or a body
    chunk that ends the request, or trailers (duplex mode routes on them)."""
    if kind == "request_headers":
        return bool(request.request_headers.end_of_stream)
    if kind == "request_body":
        return bool(request.request_body.end_of_stream)
    return kind == "request_trailers"


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _wake_on_done(future: asyncio.Future[None], _done: object) -> None:
    """A done callback that wakes ``future`` (once)."""
    _set_once(future)


def _status(headers: dict[str, str]) -> int:
    value = headers.get(":status") or headers.get("status") or "0"
    try:
        return int(value)
    except ValueError:
        return 0
