"""The ``Director``: admission, scheduling and per-request accounting for one pool.

Implements ``infergate.epp.contract.Director`` on top of the datastore, the metrics store,
the scheduler, the saturation detector and flow control. Single event loop (see
datastore.py). Per request (gie.md §3.4):

1. pool not known yet -> ``PoolNotReady`` (not a ``Rejection``: the transport answers with
   a gRPC error so the proxy applies its failure mode, as upstream);
2. headers-only requests -> a uniformly random available endpoint, no scheduling;
3. body checks (400), then the objective and priority: header ``x-gateway-inference-objective``
   names an InferenceObjective (unknown/unset -> 0); preview pools: the InferenceModel for
   the body's model (none -> 404 ``BadConfiguration``, as v0.3.0), its criticality -> priority
   and its ``targetModels`` -> weighted target model (the body's model is rewritten);
   GA pools: ``x-gateway-model-name-rewrite`` -> rewrite (already applied to ``request.model``);
   preview pools ignore that header, as v0.3.0 does;
4. admission (flow control; off = upstream: priority < 0 while saturated -> 429); saturation
   reads this EPP's pick-time load too when the profile accounts picks (saturation.py);
5. candidates = available endpoints (not failing), narrowed by the subset hint
   (present-but-empty or no match -> 503);
6. schedule (failure -> 429); with pick-time saturation, a sheddable request whose picked
   endpoint has no room, or (priority holdback) already has
   ``sheddable_max_inflight_per_endpoint`` requests in flight while the pool has as many per
   endpoint on average, is shed (429) rather than sent there or moved off its prefix
   (``SaturationDetector.shed_reason``; with the latency holdback also while the pool's recent
   mean TTFT or inter-token latency is over its objective's threshold); PreRequest plugins
   (prefix indexer), in-flight += 1.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from infergate.epp.contract import Decision, InferenceRequest, Rejection
from infergate.epp.datastore import Datastore, Endpoint, InferenceModelInfo
from infergate.epp.flowcontrol import FlowControlConfig, FlowController
from infergate.epp.flowcontrol.placement import placement_candidates
from infergate.epp.flowcontrol.unseen import RecentSends
from infergate.epp.metrics import EppMetrics, PoolSnapshot
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.saturation import UNMEASURED_HEADROOM, SaturationConfig, SaturationDetector
from infergate.epp.scheduling.framework import Candidate, Scheduler, SchedulingError, SchedulingRequest
from infergate.epp.scheduling.plugins.inflight import InflightLoadProducer, pick_time_producer
from infergate.epp.scheduling.plugins.precise_prefix import DatastoreAware
from infergate.epp.scheduling.plugins.prefix import PrefixCacheScorer

log = logging.getLogger(__name__)

DEFAULT_CRITICALITY_PRIORITY: Mapping[str, int] = {"Critical": 1, "Standard": 0, "Sheddable": -1}


class PoolNotReady(RuntimeError):
    """The pool is not known yet; transports answer with an error so the proxy's failure mode applies."""


@dataclass(frozen=True)
class DirectorConfig:
    flow_control: FlowControlConfig = field(default_factory=FlowControlConfig)
    saturation: SaturationConfig = field(default_factory=SaturationConfig)
    # preview InferenceModel criticality -> priority (unset = Standard). v0.3.0 also shed
    # Standard under saturation: {"Critical": 1, "Standard": -1, "Sheddable": -1} reproduces that.
    criticality_priority: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_CRITICALITY_PRIORITY))
    seed: int | None = None
    response_buffer_limit: int = 1 << 20  # non-streaming bodies buffered for usage, at most


@dataclass
class _RequestState:
    model: str
    target_model: str
    hostport: str
    started: float
    streaming: bool = False
    status: int = 0
    response_size: int = 0
    buffer: bytearray | None = None
    tail: bytes = b""
    usage: dict[str, Any] | None = None
    counted: bool = True  # in the request metrics (headers-only requests are not)
    overflow: bool = False  # non-streaming body too large to buffer for usage
    finished: bool = False  # response end of stream seen


class _SeriesCache:
    """The label children of the per-request metrics, looked up once per label set.

    ``Metric.labels()`` takes a lock and builds a tuple key on every call; a request touches
    about ten series. Bounded like the metrics' own label sets (cleared past ``limit``)."""

    def __init__(self, metrics: EppMetrics, limit: int = 10_000) -> None:
        self._metrics = metrics
        self._limit = limit
        self._children: dict[tuple[Any, ...], Any] = {}

    def get(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= self._limit:
                self._children.clear()
            child = self._children[key] = metric.labels(*labels)
        return child


class EppDirector:
    def __init__(self, datastore: Datastore, scheduler: Scheduler, store: MetricsStore, *,
                 config: DirectorConfig | None = None, metrics: EppMetrics | None = None) -> None:
        self.datastore = datastore
        self.scheduler = scheduler
        self.store = store
        self.config = config or DirectorConfig()
        self.metrics = metrics or EppMetrics()
        self._series = _SeriesCache(self.metrics)
        self.rng = random.Random(self.config.seed)
        producers = [p for p in scheduler.plugins.values() if isinstance(p, InflightLoadProducer)]
        self._producer = pick_time_producer(scheduler)  # the first of them
        self.saturation = SaturationDetector(store, self.config.saturation, load=self._pick_time_load,
                                             accounts_picks=self._producer is not None)
        self.flow = FlowController(self.config.flow_control, self._capacity,
                                   on_queue_size=self.metrics.flow_control_queue_size.set,
                                   capacity_over=self._capacity_over)
        self._requests: dict[str, _RequestState] = {}
        self._inflight: dict[str, int] = {}
        # when requests were sent to each endpoint, until a scrape started after them (their
        # load is then in the scraped queue); flow control counts the rest as extra queue
        self._recent_sends = RecentSends()
        self._prefix_plugins = [p for p in scheduler.plugins.values() if isinstance(p, PrefixCacheScorer)]
        for plugin in scheduler.plugins.values():  # plugins that follow the pool (KV-event subscriptions)
            if isinstance(plugin, DatastoreAware):
                plugin.attach_datastore(datastore)
        self._known_endpoints: set[str] = set()
        if scheduler.on_duration is None:
            scheduler.on_duration = self.metrics.scheduler_e2e.observe
        if scheduler.timer is None:
            scheduler.instrument(self.metrics.plugin_timer())
        # the pick-time accounting learns from each scrape (not per pick): LoRA adapter names and
        # first-token counts; the scrapes so far, then each new one
        self._scrape_learners = producers
        for hostport, scraped in store.by_endpoint.items():
            self._feed_scrape(hostport, scraped)
        store.subscribe(self._on_scrape)
        datastore.subscribe(self._on_datastore_change)
        self._on_datastore_change()
        self.metrics.set_pool_snapshot(self.pool_snapshot)
        self.metrics.prefix_indexer_size.set_function(
            lambda: float(sum(p.indexer.size() for p in self._prefix_plugins)))

    # ---- observation hooks -----------------------------------------------------------
    def _feed_scrape(self, hostport: str, metrics: EndpointMetrics) -> None:
        for producer in self._scrape_learners:
            producer.scraped(hostport, metrics)

    def _on_scrape(self, hostport: str) -> None:
        metrics = self.store.raw(hostport)
        if metrics is not None:
            self._feed_scrape(hostport, metrics)
            self._recent_sends.scraped(hostport, metrics)
        self.flow.notify()

    def _unseen(self, hostport: str) -> int:
        """Requests sent to ``hostport`` that its last scrape may not show yet (``RecentSends.unseen``)."""
        return self._recent_sends.unseen(hostport, self._inflight.get(hostport, 0), self.store.raw(hostport))

    def _pick_time_load(self, hostport: str, metrics: EndpointMetrics | None) -> tuple[int, float]:
        """(requests in flight, pending prefill tokens) on ``hostport``: the profile's pick-time
        accounting reconciled with ``metrics`` (``inflight-load-producer``'s view), at least the
        requests this EPP has in flight there."""
        local = self._inflight.get(hostport, 0)
        endpoint = self.datastore.endpoint(hostport)
        if self._producer is None or endpoint is None:
            scraped = 0 if metrics is None else metrics.running + metrics.waiting_queue
            return max(local, scraped), 0.0
        requests, pending = self._producer.view(Candidate(endpoint, metrics, local))
        return max(local, requests), pending

    def _on_datastore_change(self) -> None:
        endpoints = self.datastore.endpoints()
        for producer in self._scrape_learners:  # their declared speed factors (pod labels)
            producer.endpoints_changed(endpoints)
        current = {e.hostport for e in endpoints}
        for gone in self._known_endpoints - current:
            for plugin in self._prefix_plugins:
                plugin.indexer.remove_server(gone)
            self._recent_sends.forget(gone)
        self._known_endpoints = current
        self.flow.notify()

    def _capacity(self) -> int:
        """Admission capacity in requests. Flow control off: 1 if not saturated else 0
        (upstream's detector, with the pick-time limits when on). On: headroom from fresh
        metrics minus the requests sent that the last scrape of each endpoint cannot show yet
        (and under the pick-time limits when on)."""
        self._apply_peer_picks()
        if not self.config.flow_control.enabled:
            return 0 if self.saturation.is_saturated(h for h in self._known_endpoints if not self.store.failing(h)) else 1
        return sum(self._admission_headrooms())

    def _apply_peer_picks(self) -> None:
        """Pick sharing's peer picks queued on its socket, applied before admission reads the
        pick-time load, as each match applies them before it reads the prefix index (the prefix
        plugins' ``before_read``; nothing without pick sharing)."""
        for plugin in self._prefix_plugins:
            hook = plugin.before_read
            if hook is not None:
                hook()

    def may_hold(self) -> bool:
        """Whether flow control could make a request arriving now wait (``FlowController.may_wait``;
        O(1) on a pool with room): the ext_proc server runs the request in a task only then."""
        return self.flow.may_wait()

    def _capacity_over(self, taken: int) -> bool:
        """``_capacity() > taken``, counting endpoints only until it is: flow control asks this for
        every request, and the first endpoint with room usually answers it."""
        if not self.config.flow_control.enabled:
            return self._capacity() > taken
        self._apply_peer_picks()
        total = 0
        for headroom in self._admission_headrooms():
            total += headroom
            if total > taken:
                return True
        return False

    def _admission_headrooms(self) -> Iterator[int]:
        """Flow control's headroom on each endpoint that is not failing its scrapes (failing open
        where there are no fresh metrics: ``admission_headroom``); with none, one unbounded value:
        nothing to wait for, so the request is admitted and scheduling answers 503 at once, as
        with flow control off."""
        now, failing, headroom = time.monotonic(), self.store.failing, self.saturation.admission_headroom
        candidates = 0
        for h in self._known_endpoints:
            if not failing(h):
                candidates += 1
                yield headroom(h, now, self._unseen(h))
        if not candidates:
            yield UNMEASURED_HEADROOM

    # ---- helpers -----------------------------------------------------------------------
    def available_endpoints(self) -> list[Endpoint]:
        """Endpoints that are not failing their scrapes (an endpoint never scraped is available)."""
        failing = self.store.failing
        return [e for e in self.datastore.endpoints() if not failing(e.hostport)]

    def inflight(self, hostport: str) -> int:
        return self._inflight.get(hostport, 0)

    def pool_snapshot(self) -> PoolSnapshot | None:
        pool = self.datastore.pool
        if pool is None:
            return None
        now = time.monotonic()
        rows = []
        for e in self.datastore.endpoints():
            m = self.store.fresh(e.hostport, now)
            if m is not None:
                rows.append((e.pod_name, m.waiting_queue, m.kv_cache_usage))
        return PoolSnapshot(pool.name, rows)

    def _reject(self, model: str, target: str, rejection: Rejection) -> Rejection:
        self.metrics.request_error_total.labels(model, target, rejection.code).inc()
        return rejection

    def _pick_target(self, info: InferenceModelInfo) -> str:
        targets = info.target_models
        if not targets:
            return info.model_name
        if all(t.weight is None for t in targets):
            return targets[self.rng.randrange(len(targets))].name
        total = sum(t.weight or 0 for t in targets)
        draw = self.rng.randrange(total)
        for t in targets:
            draw -= t.weight or 0
            if draw < 0:
                return t.name
        return targets[-1].name

    def _track(
        self, request_id: str, model: str, target: str, hostport: str, *, counted: bool = True, body_size: int = 0,
        objective: str = "", priority: int = 0,
    ) -> None:
        if request_id in self._requests:
            # a client reused an x-request-id while the first request is open: release the
            # first one's accounting now, so that in-flight counts cannot leak
            log.warning("request id %s is already in flight; accounting restarted", request_id)
            self.on_request_done(request_id, completed=False)
        self._inflight[hostport] = self._inflight.get(hostport, 0) + 1
        self._series.get(self.metrics.endpoint_requests_total, hostport).inc()
        if self.config.flow_control.enabled:
            self._recent_sends.sent(hostport, time.monotonic())
        self._requests[request_id] = _RequestState(model, target, hostport, time.monotonic(), counted=counted)
        if counted:  # upstream counts only requests with a body (scheduled ones)
            series, m = self._series.get, self.metrics
            series(m.request_total, model, target).inc()
            series(m.request_sizes, model, target).observe(body_size)
            series(m.request_priority_total, model, target, objective, str(priority)).inc()
            series(m.running_requests, model).inc()

    # ---- Director protocol -------------------------------------------------------------
    async def handle_request(self, request: InferenceRequest, on_hold: Callable[[], None] | None = None) -> Decision:
        pool = self.datastore.pool
        if pool is None:
            raise PoolNotReady("the InferencePool is not synced yet")
        if request.headers_only:
            endpoints = self.available_endpoints()
            if not endpoints:
                raise self._reject("", "", Rejection(500, "Internal", "no pods available in datastore"))
            chosen = endpoints[self.rng.randrange(len(endpoints))]
            self._track(request.request_id, request.model, request.model, chosen.hostport, counted=False)
            return Decision(endpoint=chosen.hostport)

        body = request.body
        body_model = body.get("model")
        if not isinstance(body_model, str) or not request.model:
            raise self._reject("", "", Rejection(400, "BadRequest", "model not found in request body"))
        if "messages" in body:
            if not isinstance(body["messages"], list) or not body["messages"]:
                raise self._reject(body_model, request.model,
                                   Rejection(400, "BadRequest", "messages must be a non-empty list"))
        elif not isinstance(body.get("prompt"), str):
            raise self._reject(body_model, request.model, Rejection(400, "BadRequest", "prompt not found in request"))

        target = request.model  # after x-gateway-model-name-rewrite
        if target == body_model and pool.generation != "preview":  # no header rewrite: InferenceModelRewrites
            target = self.datastore.rewrites.pick(body_model, self.rng) or target
        priority = 0
        objective = self.datastore.objective(request.objective) if request.objective else None
        if pool.generation == "preview":
            # v0.3.0 knows no x-gateway-model-name-rewrite: the InferenceModel is found by the
            # body's own model. During a zero-downtime migration one HTTPRoute rule may send
            # traffic with that header (set for the GA pool's share) to a preview pool too.
            info = self.datastore.model(body_model)
            if info is None:
                raise self._reject(body_model, target, Rejection(
                    404, "BadConfiguration",
                    f"error finding a model object in InferenceModel for input model {body_model}"))
            target = self._pick_target(info)
            priority = self.config.criticality_priority.get(info.criticality or "Standard", 0)
        if objective is not None:
            priority = objective.priority or 0

        try:
            await self.flow.admit(request.request_id, priority, on_hold)
        except Rejection as rejection:
            raise self._reject(body_model, target, rejection) from None
        try:
            return self._schedule(request, body_model, target, priority,
                                  objective.name if objective is not None else "")
        finally:
            self.flow.scheduled()

    def _schedule(
        self, request: InferenceRequest, body_model: str, target: str, priority: int, objective: str = ""
    ) -> Decision:
        wanted = None if request.subset_hint is None else {_host_of(entry) for entry in request.subset_hint}
        # one pass: available (not failing), in the subset hint, metrics fresh or unknown
        store = self.store
        metrics, failures = store.by_endpoint, store.failures_by_endpoint
        max_age, fail_limit = store.staleness_threshold, store.failure_threshold
        inflight = self._inflight
        now = time.monotonic()
        candidates: list[Candidate] = []
        for e in self.datastore.endpoints():
            h = e.hostport
            if failures.get(h, 0) >= fail_limit or (wanted is not None and e.address not in wanted):
                continue
            m = metrics.get(h)
            if m is not None and now - m.update_time > max_age:
                m = None
            candidates.append(Candidate(e, m, inflight.get(h, 0)))
        if not candidates:
            raise self._reject(body_model, target, Rejection(
                503, "ServiceUnavailable", "failed to find candidate pods for serving the request"))
        if self.config.flow_control.enabled:
            # headroom: fresh metrics, KV under the threshold, queue + sent since the scrape under the threshold
            unseen, headroom = self._unseen, self.saturation.admission_headroom
            candidates = placement_candidates(self.config.flow_control, candidates,
                                              lambda cand: headroom(cand.hostport, now, unseen(cand.hostport)))
        sreq = SchedulingRequest(request.request_id, target, request.prompt, request.headers, request.body)
        try:
            result, state = self.scheduler.schedule(sreq, candidates)
        except SchedulingError as exc:
            raise self._reject(body_model, target, Rejection(
                429, "InferencePoolResourceExhausted", f"failed to find target pod: {exc}")) from None
        shed = self.saturation.shed_reason(priority, result.primary.targets[0].hostport, now,
                                           [e.hostport for e in self.available_endpoints()] if priority < 0 else ())
        if shed is not None:  # a sheddable request: its endpoint is full, or held back to keep room for priority >= 0
            raise self._reject(body_model, target, Rejection(429, "InferencePoolResourceExhausted", shed))
        self.scheduler.pre_request(state, sreq, result)
        for plugin in self._prefix_plugins:
            self.metrics.prefix_hit_ratio.observe(plugin.last_hit_ratio)
            self.metrics.prefix_hit_bytes.observe(plugin.last_hit_bytes)
        targets = result.primary.targets
        chosen = targets[0].hostport
        self._track(request.request_id, body_model, target, chosen, body_size=request.body_size,
                    objective=objective, priority=priority)
        return Decision(
            endpoint=chosen,
            fallbacks=[t.hostport for t in targets[1:]],
            target_model=target if target != body_model else None,
            priority=priority,
        )

    def on_response_headers(self, request_id: str, status: int, headers: Mapping[str, str]) -> None:
        state = self._requests.get(request_id)
        if state is None:
            return
        state.status = status
        content_type = headers.get("content-type", "")
        state.streaming = "text/event-stream" in content_type
        if status >= 400:
            self._series.get(self.metrics.endpoint_errors_total, state.hostport).inc()
        if status >= 400 and state.counted:
            self.metrics.request_error_total.labels(state.model, state.target_model, "ModelServerError").inc()

    def on_response_body(self, request_id: str, chunk: bytes, end_of_stream: bool) -> None:
        state = self._requests.get(request_id)
        if state is None:
            return
        if chunk and not state.response_size:  # first bytes back: the prompt is prefilled
            self.scheduler.response_started(request_id)
            self.flow.notify()  # its pending prefill no longer counts: capacity may have freed
        state.response_size += len(chunk)
        if state.streaming:
            # SSE: complete lines only (an event may span chunks); the last "usage" wins
            data = state.tail + chunk if state.tail else chunk
            cut = data.rfind(b"\n")
            complete, state.tail = (b"", data[-65536:]) if cut < 0 else (data[: cut + 1], data[cut + 1 :][-65536:])
            if b'"usage"' in complete:
                for line in complete.split(b"\n"):
                    if line.startswith(b"data:") and b'"usage"' in line:
                        usage = _usage_of(line[5:].strip().decode("utf-8", errors="replace"))
                        if usage is not None:
                            state.usage = usage
        elif chunk and not state.overflow:
            if state.buffer is None:
                state.buffer = bytearray()
            if len(state.buffer) + len(chunk) <= self.config.response_buffer_limit:
                state.buffer += chunk
            else:
                state.buffer = None  # too large to parse for usage
                state.overflow = True
        if end_of_stream and not state.finished and state.counted:
            state.finished = True
            if not state.streaming and state.buffer:
                state.usage = _usage_of(bytes(state.buffer).decode("utf-8", errors="replace"))
                state.buffer = None
            self._record_response(state)

    def _record_response(self, state: _RequestState) -> None:
        labels = (state.model, state.target_model)
        series, m = self._series.get, self.metrics
        series(m.request_duration, *labels).observe(time.monotonic() - state.started)
        series(m.response_sizes, *labels).observe(state.response_size)
        usage = state.usage or {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        if isinstance(prompt_tokens, int) and prompt_tokens > 0:
            series(m.input_tokens, *labels).observe(prompt_tokens)
        if isinstance(completion_tokens, int) and completion_tokens > 0:
            series(m.output_tokens, *labels).observe(completion_tokens)

    def on_request_done(self, request_id: str, *, completed: bool) -> None:
        state = self._requests.pop(request_id, None)
        if state is None:
            return
        self.scheduler.request_done(request_id, completed)  # pick-time accounting ends
        count = self._inflight.get(state.hostport, 0) - 1
        if count > 0:
            self._inflight[state.hostport] = count
        else:
            self._inflight.pop(state.hostport, None)
        if state.counted:
            self._series.get(self.metrics.running_requests, state.model).dec()
            if completed and not state.finished:
                state.finished = True
                self._record_response(state)
        self.flow.notify()

    def request_usage(self, request_id: str) -> dict[str, Any] | None:
        """The usage seen so far for an open request (tests, logging)."""
        state = self._requests.get(request_id)
        return None if state is None else state.usage


def _host_of(entry: str) -> str:
    entry = entry.strip()
    if entry.startswith("["):
        return entry[1 : entry.find("]")] if "]" in entry else entry[1:]
    return entry.split(":", 1)[0]


def _usage_of(text: str) -> dict[str, Any] | None:
    if not text or text == "[DONE]":
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    usage = obj.get("usage") if isinstance(obj, dict) else None
    return usage if isinstance(usage, dict) else None
