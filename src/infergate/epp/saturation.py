"""Saturation detector: upstream v1.0's (gie.md §3.6), plus infergate's pick-time state.

Upstream: an endpoint has capacity when its metrics are no older than
``metrics_staleness_threshold`` (200 ms), its waiting queue is <= ``queue_depth_threshold``
(5) and its KV cache utilization <= ``kv_cache_util_threshold`` (0.8); the pool is saturated
when no endpoint has capacity (no endpoints = saturated). Upstream reads the thresholds from
``SD_QUEUE_DEPTH_THRESHOLD``, ``SD_KV_CACHE_UTIL_THRESHOLD`` and
``SD_METRICS_STALENESS_THRESHOLD``; ``from_env`` does too (the staleness threshold is a Go
duration or seconds; other text raises ``SaturationConfigError``).

Pick-time state (infergate, issue 16): scraped metrics lag the EPP's own picks by up to one
refresh interval, and a model server's waiting queue and KV use stay low while its running
batch grows until every stream is slow (a batch of hundreds of cached-prefix requests queues
nothing and fills no KV, but its inter-token latency is several times the SLO). The EPP knows
its load at once: ``PickTimeLoad`` gives, per endpoint, the requests in flight and the uncached
prompt tokens waiting to be prefilled there (this EPP's picks, reconciled with the scraped
running + waiting counts, which include other routers' requests). An endpoint then also needs

* requests in flight < ``max_inflight_per_endpoint``, and
* pending prefill tokens <= ``max_pending_prefill_tokens`` (the predicted wait before a new
  request's prefill starts, in tokens: a model server prefills its queue in order).

0 turns a limit off; ``None`` is "auto": the EPP's wiring turns it on with the defaults below
when the scheduling profile accounts picks (an ``inflight-load-producer``: infergate's default
``predicted-latency``), and off otherwise (``upstream-v1.0`` behaves as upstream).

Priority holdback (infergate, issue 16): the limits above say when an endpoint is full for
everyone; a sheddable request (priority < 0) that fills an endpoint up to them takes the
capacity a critical request arriving next needs (its prefill runs first, the critical one
queues behind it and joins a larger batch). ``sheddable_max_inflight_per_endpoint`` (N)
reserves capacity for priority >= 0: a sheddable request is shed (429) when the endpoint it was
picked for already has N requests in flight (the same pick-time count as above) *and* the pool
has N or more per endpoint on average; a lightly loaded pool takes sheddable traffic wherever
prefix affinity sends it, a loaded one only in a replica's quiet moments. Requests of priority
>= 0 are never shed by it. Off unless set (None and 0 are off): N counts requests, so it
depends on the hardware and the work per request (3 on the peer benchmark's priority-mix, where
a replica holds ~4.5 requests at its latency objective; a replica that serves 60 requests at its
objective would shed almost all sheddable traffic with 3), so no default suits every pool.
Prefill holdback (infergate, issue 16; on by default with pick-time accounting):
``sheddable_max_pending_prefill_tokens`` (T, "auto" 512) sheds a sheddable request when the
endpoint it was picked for has more than T prompt tokens of other requests waiting to be
prefilled and the pool has more than T per endpoint on average: a prefill queue, unlike a request
count, means the same on any hardware (the next request waits for it), so it has a default.
The same holdback reads the prefill queue over time too: ``sheddable_max_prefill_busy_fraction``
(F, "auto" 0.5) sheds a sheddable request when the endpoint it was picked for had prompt tokens
waiting to be prefilled during more than F of the recent time (``PrefillDuty``: a sample per
scrape, time constant ``prefill_duty_time_constant``: 40 refresh intervals) and the pool's endpoints more than F on
average. The queue's utilization, a fraction, not a count: in a closed loop (users who send their
next request when the last one ends) the queue is often empty at the moment a sheddable request
comes, yet busy most of the time, and the sheddable requests admitted in its quiet moments fill
the running batch that critical requests then share (docs/epp.md, "Prefill holdback").
Latency holdback (infergate, issue 16; opt-in): the same protection without a request count. A
sheddable request is shed while the pool's recent mean time to first token or inter-token latency
(the model servers' own ``vllm:time_to_first_token_seconds`` and
``vllm:inter_token_latency_seconds`` histograms, ``_sum``/``_count`` deltas over the last
``LATENCY_WINDOW_S``, pooled over the available endpoints: ``LatencyWindow``) is over
``LATENCY_ENTER`` x its objective (``sheddable_ttft_objective``, ``sheddable_itl_objective``,
seconds); once shedding, it goes on until both are under ``LATENCY_EXIT`` x their objectives
(hysteresis: the signal lags the picks by a window, so a single threshold flips on and off with
every burst). Objectives are user-facing latency targets, not a per-hardware count; the rule is
off unless an objective is set (None and 0 are off): on the peer benchmark's priority mix it
protects critical requests as well as the holdback at 3, but that pool misses its objective at
0.7x of its capacity too, and there the rule sheds about half the sheddable traffic
(docs/epp.md, "Latency holdback").
``shed_reason`` is the one decision the Director (and the decision replay) asks after scheduling.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from infergate.epp.latency_window import LatencyWindow
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.prefill_duty import PrefillDuty
from infergate.util.durations import DurationError, parse_seconds

# "auto" limits when the profile accounts picks: a running batch of 64 keeps an 8B model's
# inter-token latency near 50 ms on an A100 at ~3,000-token contexts; 2,048 prompt tokens queued
# ahead are ~0.3 s of its prefill, which leaves a new request's own prefill within a 0.5 s TTFT
DEFAULT_MAX_INFLIGHT_PER_ENDPOINT = 64
DEFAULT_MAX_PENDING_PREFILL_TOKENS = 2048
# the sheddable prefill holdback's "auto" limit (on with pick-time accounting): a sheddable request
# does not queue behind more than this many tokens of other prompts' prefill while the pool has as
# many pending per endpoint on average; 512 is a sixteenth of a step's token budget (vLLM's
# --max-num-batched-tokens 8,192), so "the endpoint is busy prefilling" whatever the hardware
# (decision replay on issue 16's priority-mix: docs/epp.md, "Prefill holdback")
DEFAULT_SHEDDABLE_MAX_PENDING_PREFILL_TOKENS = 512
# its reading over time ("auto", on with pick-time accounting): a sheddable request is not sent
# where prompts waited to be prefilled more than half of the recent time while the pool was as busy
# (more often than not, a request sent there next queues behind another's prefill); each scrape
# samples the endpoint, and the mean forgets with a time constant of PREFILL_DUTY_SCRAPES refresh
# intervals (2 s at the EPP's default 50 ms: longer than a request's prefill and decode, ~1.5 s on
# issue 16's priority-mix, so that one cold prompt does not flip it; 1 s shed 4 more of 216
# sheddable requests at 0.3x load and held the closed loop less). In refresh intervals, so that a
# benchmark that slows the model servers down (and the refresh with them) slows it down too.
DEFAULT_SHEDDABLE_MAX_PREFILL_BUSY_FRACTION = 0.5
PREFILL_DUTY_SCRAPES = 40
PREFILL_DUTY_TIME_CONSTANT_S = 2.0  # PREFILL_DUTY_SCRAPES x the default refresh interval (0.05 s)
# priority holdback (off unless set): the value calibrated on the peer benchmark's priority-mix
# (8B on an A100, ~4,000-token prompts with ~1,000 uncached): a replica holds ~4.5 requests at its
# capacity (2.5 req/s); with 3 the decision replay's critical goodput is within 2% of shedding at 1
# or 2, and at a quarter of the capacity 5% of the sheddable requests are shed (docs/epp.md)
PRIORITY_MIX_SHEDDABLE_MAX_INFLIGHT_PER_ENDPOINT = 3
# latency holdback (off unless an objective is set): the window of the pool's mean latency, and the
# fractions of the objective that start and stop shedding (chosen with the decision replay's
# priority-mix: docs/epp.md, "Latency holdback")
LATENCY_WINDOW_S = 1.0
LATENCY_ENTER = 0.7
LATENCY_EXIT = 0.4

# flow control's headroom on an endpoint it cannot measure (no fresh metrics) and no pick-time limit
# bounds: no limit (``SaturationDetector.admission_headroom``: fail open)
UNMEASURED_HEADROOM = 1 << 30
# (hostport, its fresh scraped metrics or None) -> (requests in flight, pending prefill tokens)
PickTimeLoad = Callable[[str, EndpointMetrics | None], tuple[int, float]]


class SaturationConfigError(ValueError):
    """An SD_* environment variable holds text that is not a value of its kind."""


@dataclass(frozen=True)
class SaturationConfig:
    queue_depth_threshold: int = 5
    kv_cache_util_threshold: float = 0.8
    metrics_staleness_threshold: float = 0.2  # seconds
    # pick-time limits (infergate): 0 = off, None = auto (on when the profile accounts picks)
    max_inflight_per_endpoint: int | None = None
    max_pending_prefill_tokens: int | None = None
    # priority holdback (infergate): sheddable requests shed at this many in flight (endpoint and pool
    # mean); 0 and None off
    sheddable_max_inflight_per_endpoint: int | None = None
    # prefill holdback (infergate): sheddable requests shed over this many pending prefill tokens
    # (endpoint and pool mean); 0 = off, None = auto (on when the profile accounts picks)
    sheddable_max_pending_prefill_tokens: int | None = None
    # its reading over time: sheddable requests shed over this fraction of recent time with prefill pending
    # (endpoint and pool mean); 0 = off, None = auto (0.5 when the profile accounts picks)
    sheddable_max_prefill_busy_fraction: float | None = None
    # ... over a mean with this time constant (seconds; ``build_epp``: PREFILL_DUTY_SCRAPES x the refresh interval)
    prefill_duty_time_constant: float = PREFILL_DUTY_TIME_CONSTANT_S
    # latency holdback (infergate): sheddable requests shed while the pool's recent mean TTFT / inter-token
    # latency is over LATENCY_ENTER x these objectives (seconds), until under LATENCY_EXIT x; 0 and None off
    sheddable_ttft_objective: float | None = None
    sheddable_itl_objective: float | None = None

    @property
    def latency_holdback(self) -> bool:
        """Whether the latency holdback is on (an objective is set)."""
        return bool(self.sheddable_ttft_objective) or bool(self.sheddable_itl_objective)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SaturationConfig:
        env = os.environ if env is None else env
        config = cls()
        queue, kv, stale = config.queue_depth_threshold, config.kv_cache_util_threshold, config.metrics_staleness_threshold
        try:
            queue = int(env.get("SD_QUEUE_DEPTH_THRESHOLD", queue))
        except ValueError:
            pass
        try:
            value = float(env.get("SD_KV_CACHE_UTIL_THRESHOLD", kv))
            if 0 < value < 1:  # upstream: outside (0, 1) keeps the default
                kv = value
        except ValueError:
            pass
        raw = env.get("SD_METRICS_STALENESS_THRESHOLD")
        if raw:
            try:
                stale = parse_seconds(raw)
            except DurationError:
                raise SaturationConfigError(
                    f"SD_METRICS_STALENESS_THRESHOLD={raw!r} is not a duration (examples: 200ms, 1s, 1m30s)"
                ) from None
        return cls(queue, kv, stale)

    def resolved(self, accounts_picks: bool) -> SaturationConfig:
        """The pick-time limits with "auto" (None) decided: the defaults when the scheduling
        profile accounts picks, else off."""
        def pick(value: int | None, default: int) -> int:
            if value is not None:
                return value
            return default if accounts_picks else 0

        return replace(self, max_inflight_per_endpoint=pick(self.max_inflight_per_endpoint,
                                                            DEFAULT_MAX_INFLIGHT_PER_ENDPOINT),
                       max_pending_prefill_tokens=pick(self.max_pending_prefill_tokens,
                                                       DEFAULT_MAX_PENDING_PREFILL_TOKENS),
                       sheddable_max_inflight_per_endpoint=self.sheddable_max_inflight_per_endpoint or 0,
                       sheddable_max_pending_prefill_tokens=pick(self.sheddable_max_pending_prefill_tokens,
                                                                 DEFAULT_SHEDDABLE_MAX_PENDING_PREFILL_TOKENS),
                       sheddable_max_prefill_busy_fraction=(
                           self.sheddable_max_prefill_busy_fraction if self.sheddable_max_prefill_busy_fraction is not None
                           else DEFAULT_SHEDDABLE_MAX_PREFILL_BUSY_FRACTION if accounts_picks else 0.0))

    @property
    def pick_time(self) -> bool:
        """Whether a pick-time limit is on (after ``resolved``)."""
        return bool(self.max_inflight_per_endpoint) or bool(self.max_pending_prefill_tokens)


class SaturationDetector:
    """``config`` is kept as given; ``limits`` is it with "auto" decided by ``accounts_picks``
    (whether ``load`` reads a profile's pick-time accounting)."""

    def __init__(self, store: MetricsStore, config: SaturationConfig | None = None, *,
                 load: PickTimeLoad | None = None, accounts_picks: bool = False) -> None:
        self.store = store
        self.config = config or SaturationConfig()
        self.limits = self.config.resolved(accounts_picks)
        self.load = load
        self.latency = LatencyWindow(LATENCY_WINDOW_S)
        self._latency_shedding = False
        if self.config.latency_holdback:
            store.subscribe(self._on_scrape)
        self.prefill_duty = PrefillDuty(self.config.prefill_duty_time_constant)
        if load is not None and self.limits.sheddable_max_prefill_busy_fraction:
            store.subscribe(self._sample_prefill)

    def _on_scrape(self, hostport: str) -> None:
        self.latency.observe(hostport, self.store.raw(hostport))

    def _sample_prefill(self, hostport: str) -> None:
        """A scrape of ``hostport`` samples its prefill duty: busy when the pick-time accounting has
        prompt tokens pending there (as of the scrapes before this one: the Director applies this
        scrape's first-token count after the detector's listener, so a prompt counts as pending
        until the first scrape after the one that reported it prefilled)."""
        metrics = self.store.raw(hostport)
        if metrics is None or self.load is None:
            return
        self.prefill_duty.observe(hostport, metrics.update_time, self.load(hostport, metrics)[1] > 0)

    @property
    def pick_time(self) -> bool:
        return self.load is not None and self.limits.pick_time

    def endpoint_headroom(self, hostport: str, now: float, unseen: int = 0) -> int:
        """Requests ``hostport`` can still take: 0 without fresh metrics or over the KV threshold;
        else the room under the queue threshold (its scraped queue plus ``unseen`` requests
        sent that the scrape cannot show yet) and, with pick-time limits, under the in-flight
        limit; 0 when the pending prefill is over its limit."""
        m = self.store.fresh(hostport, now, self.limits.metrics_staleness_threshold)
        return 0 if m is None else self._measured_room(hostport, m, unseen)

    def admission_headroom(self, hostport: str, now: float, unseen: int = 0) -> int:
        """Flow control's headroom on ``hostport``: ``endpoint_headroom`` when its metrics are fresh.
        Without fresh metrics (never scraped yet, or its scrapes late) flow control fails open: it
        counts only what this EPP knows itself, the pick-time limits on its own requests there, and
        ``UNMEASURED_HEADROOM`` (no limit) without pick-time limits. Flow control holds a request for
        a measured lack of room, never for a lack of information."""
        m = self.store.fresh(hostport, now, self.limits.metrics_staleness_threshold)
        if m is None:
            return self._pick_time_room(hostport, None, UNMEASURED_HEADROOM)
        return self._measured_room(hostport, m, unseen)

    def _measured_room(self, hostport: str, m: EndpointMetrics, unseen: int) -> int:
        """``endpoint_headroom`` from ``hostport``'s fresh metrics ``m``."""
        c = self.limits
        if m.kv_cache_usage > c.kv_cache_util_threshold:
            return 0
        return self._pick_time_room(hostport, m, max(0, c.queue_depth_threshold + 1 - m.waiting_queue - unseen))

    def _pick_time_room(self, hostport: str, m: EndpointMetrics | None, room: int) -> int:
        """``room`` under the pick-time limits (this EPP's accounting, reconciled with ``m`` when
        given): 0 when the pending prefill is over its limit, at most the in-flight limit's room."""
        c = self.limits
        if room and self.load is not None and (c.max_inflight_per_endpoint or c.max_pending_prefill_tokens):
            requests, pending = self.load(hostport, m)
            if c.max_pending_prefill_tokens and pending > c.max_pending_prefill_tokens:
                return 0
            if c.max_inflight_per_endpoint:
                room = min(room, max(0, c.max_inflight_per_endpoint - requests))
        return room

    def shed_reason(self, priority: int, hostport: str, now: float, pool: Sequence[str] = ()) -> str | None:
        """Why a request of ``priority`` that the scheduler picked ``hostport`` for is shed (429)
        rather than sent there (moving it elsewhere would cost a prefill there, and the prefix, at
        the expense of the requests already running), or None to send it. Never for priority >= 0.

        A sheddable request is shed when, with pick-time limits, ``hostport`` has no headroom,
        or, with the prefill holdback (T = ``sheddable_max_pending_prefill_tokens``), ``hostport``
        has more than T prefill tokens pending and the endpoints of ``pool`` (the pool's available
        endpoints; empty: not checked) have more than T on average, or, with its reading over time
        (F = ``sheddable_max_prefill_busy_fraction``), ``hostport`` had prefill tokens pending during
        more than F of the recent time and the endpoints of ``pool`` more than F on average (each
        endpoint's ``PrefillDuty``, sampled at its scrapes), or, with the priority holdback
        (N = ``sheddable_max_inflight_per_endpoint``), ``hostport`` has N requests in flight and
        the endpoints of ``pool`` have N or more on average (this EPP's picks reconciled with the
        scrape, as the pick-time limits)."""
        if priority >= 0:
            return None
        slow = self.latency_reason(pool or (hostport,), now)
        if slow is not None:
            return slow
        if self.load is None:
            return None
        if self.limits.pick_time and self.endpoint_headroom(hostport, now) <= 0:
            return "system saturated, sheddable request dropped"
        load, store, stale = self.load, self.store, self.limits.metrics_staleness_threshold

        def over(index: int, limit: float, strictly: bool) -> float | None:
            """``hostport``'s load (0: requests, 1: pending prefill tokens) when it and the pool's
            mean are over ``limit`` (at it, unless ``strictly``), else None."""
            def value(h: str) -> float:
                return load(h, store.fresh(h, now, stale))[index]

            mine = value(hostport)
            if mine < limit or (strictly and mine == limit):
                return None
            if pool:
                mean = sum(value(h) for h in pool) / len(pool)
                if mean < limit or (strictly and mean == limit):
                    return None
            return mine

        prefill = self.limits.sheddable_max_pending_prefill_tokens
        if prefill:
            pending = over(1, prefill, strictly=True)
            if pending is not None:
                return (f"sheddable request held back: {pending:.0f} prompt tokens wait to be prefilled on its "
                        f"endpoint and the pool is as busy (prefill holdback over {prefill})")
        busy = self.limits.sheddable_max_prefill_busy_fraction
        if busy:
            duty = self.prefill_duty.fraction
            mine = duty(hostport)
            if mine > busy and (not pool or sum(duty(h) for h in pool) / len(pool) > busy):
                return (f"sheddable request held back: prompts waited to be prefilled on its endpoint {mine:.0%} "
                        f"of the recent time and the pool is as busy (prefill holdback over {busy:.0%})")
        holdback = self.limits.sheddable_max_inflight_per_endpoint
        if holdback:
            requests = over(0, holdback, strictly=False)
            if requests is not None:
                return (f"sheddable request held back: its endpoint has {requests:.0f} requests in flight "
                        f"(priority holdback at {holdback})")
        return None

    def latency_reason(self, hostports: Sequence[str], now: float) -> str | None:
        """Why the latency holdback sheds a sheddable request now (None: it does not): the recent
        mean TTFT or inter-token latency of ``hostports`` is over ``LATENCY_ENTER`` x its objective,
        or, while shedding, not yet under ``LATENCY_EXIT`` x both."""
        c = self.config
        if not c.latency_holdback:
            return None
        mean = self.latency.mean(hostports, now)
        fraction = LATENCY_EXIT if self._latency_shedding else LATENCY_ENTER
        reason = None
        for name, value, objective in (("time to first token", mean.ttft, c.sheddable_ttft_objective),
                                       ("inter-token latency", mean.itl, c.sheddable_itl_objective)):
            if objective and value is not None and value > fraction * objective:
                reason = (f"sheddable request held back: the pool's mean {name} over the last "
                          f"{LATENCY_WINDOW_S:g} s is {value * 1000:.0f} ms (objective {objective * 1000:.0f} ms, "
                          f"latency holdback at {fraction:.0%} of it)")
                break
        self._latency_shedding = reason is not None
        return reason

    def has_capacity(self, hostport: str, now: float) -> bool:
        return self.endpoint_headroom(hostport, now) > 0

    def is_saturated(self, hostports: Iterable[str], now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return not any(self.has_capacity(h, now) for h in hostports)

    def headroom(self, hostports: Iterable[str], now: float | None = None) -> int:
        """Requests the pool can still take before every endpoint is over a threshold,
        from the last fresh metrics (and the pick-time state when on)."""
        now = time.monotonic() if now is None else now
        return sum(self.endpoint_headroom(h, now) for h in hostports)
