"""Pick-time load accounting: what this EPP has sent to each endpoint and not yet seen finish.

Scraped metrics are up to one refresh interval old (50 ms of model time), so picks made
between two scrapes all see the same snapshot and herd onto the endpoint that looked idle.
``inflight-load-producer`` (upstream's name) counts each pick at once, in its PreRequest
step: one request and its prompt tokens, and its *uncached* prompt tokens on the chosen
endpoint (the prompt minus the prefix the approximate index says that endpoint holds) as
prefill work pending there. The pending prefill is released when the first response bytes
arrive (the prompt has been computed), and everything when the request ends, completed or
not (error, abort, reset). First bytes reach the EPP only when the data plane sends it
response bodies; the production translator does not (ext_proc ``response_body_mode: NONE``),
so the scrape tells instead: a server admits its queue in order, so of this EPP's picks made
before a scrape only the newest ``waiting`` of them are still queued there; the rest have been
admitted, and their prefill no longer counts (``pending_after_scrape``). Without that, every
request's prefill stayed pending through its whole decode (issue 16's Zipf workload: 1.45x
the oracle's TTFT p90 in the decision replay, 1.07x with it).

``view`` reconciles this with the scraped metrics, for endpoints other routers (or other
EPP replicas) also send to. A scrape is a snapshot of the moment it was taken: the requests
this EPP has sent there since are not in it, and the ones that ended since still are. So the
requests the scrape saw that this EPP does not account for are scraped running + waiting minus
this EPP's in flight *at the scrape's time* (in flight now, minus the picks since, plus the
ends since); requests = local in flight + those, and pending prefill tokens = local pending +
those of them that were waiting (at most the scraped waiting queue) x the mean uncached tokens
of recent picks. Counting against today's in-flight count instead read every request that ended
since the last scrape (up to 50 ms of model time) as another router's waiting request, at the
mean uncached tokens (~3,000 on issue 16's Zipf workload): phantom work on exactly the busy
replicas, which pushed picks away from a prefix's holders. The waiting requests this EPP sent
are already in its pending prefill with their exact uncached tokens: counting them again at the
mean (mostly cache misses' 3,000 tokens while the pool warms up) made a prefix's holder look
saturated and gave its prefix away (issue 16's closed loop).
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infergate.epp.datastore import Endpoint
from infergate.epp.metrics_scraper import EndpointMetrics
from infergate.epp.scheduling.framework import (
    Candidate,
    ConfigError,
    CycleState,
    Plugin,
    PluginHandle,
    Scheduler,
    SchedulingRequest,
    SchedulingResult,
)
from infergate.epp.scheduling.plugins.params import check_keys, float_param, int_param, str_param
from infergate.epp.scheduling.plugins.prefill_rate import (
    DEFAULT_PREFILL_RATE_MIN_TOKENS,
    PrefillRate,
    bounded_factor,
)
from infergate.epp.scheduling.plugins.prefix import PrefixCacheScorer

log = logging.getLogger(__name__)

DEFAULT_CHARS_PER_TOKEN = 4.0
MEAN_UNCACHED_DECAY = 0.1  # weight of the newest pick in the running mean of uncached tokens
DEFAULT_PREFILL_CHUNK_TOKENS = 8192  # vLLM's --max-num-batched-tokens: prompt tokens prefilled per step
MAX_IDLE_ENDPOINTS = 1024  # endpoints with nothing in flight kept for their recent events
MAX_EVENTS = 4096  # picks and ends kept per endpoint (scrapes are far younger than the oldest)
MAX_KNOWN_ADAPTERS = 4096  # LoRA adapter names remembered from scrapes
MAX_PEER_PICKS = 4096  # other EPP replicas' picks kept per endpoint (those a scrape has not shown yet)
PEER_PICK_TTL_S = 2.0  # without metrics, how long a peer's pick counts
# the endpoint speed factor (``EndpointSpeed``): weight of the newest request's duration in an
# endpoint's running mean, the completed requests it needs before its factor moves off 1 (0: the
# factor is off, the default; 16 is the value measured in docs/epp.md), the smallest ratio taken as
# a slower replica (below it: 1), the bound
DEFAULT_SPEED_DECAY = 0.05
DEFAULT_SPEED_MIN_SAMPLES = 0
DEFAULT_SPEED_FACTOR_THRESHOLD = 1.5  # a homogeneous pool's endpoints drift up to ~1.4x apart
DEFAULT_SPEED_FACTOR_MAX = 4.0
# a pod label declaring the endpoint's speed factor (its steps' time over the pool's fastest: "2" on a
# replica twice as slow): the prior of a heterogeneous pool, known before any request ends
DEFAULT_SPEED_FACTOR_LABEL = "infergate.io/speed-factor"
MAX_LABEL_SPEED_FACTOR = 100.0
MAX_WARNED_LABEL_VALUES = 64  # bad label values warned about once each (then no more warnings)
MAX_SPEED_ENDPOINTS = 1024  # endpoints whose durations are remembered (the pool's, plus departed ones)


class EndpointSpeed:
    """A per-endpoint speed factor learned online, with no per-model calibration: how long this
    EPP's completed requests took on an endpoint (pick to end, as the Director reports them)
    relative to the fastest endpoint's. Each endpoint keeps a running mean of its durations
    (weight ``decay`` for the newest); its ratio is that mean over the smallest mean of the
    endpoints with at least ``min_samples`` completed requests. The factor is that ratio, at most
    ``high``, when it is at least ``threshold``; else 1.0 (no change), as for an endpoint with
    fewer samples, or while fewer than two endpoints have enough. A replica whose steps take twice
    as long holds every request about twice as long (ratio ~2): its predicted TTFT in prefill
    tokens counts double. On a homogeneous pool the ratios stay below ``threshold`` (load and
    cache misses move them up to ~1.4 in issue 16's decision replay), so nothing changes there.
    ``min_samples`` 0 (the default) turns the factor off (always 1): on issue 16's decision replay
    it changes nothing measurable yet (docs/epp.md, "Speed factor")."""

    def __init__(self, decay: float = DEFAULT_SPEED_DECAY, min_samples: int = DEFAULT_SPEED_MIN_SAMPLES,
                 threshold: float = DEFAULT_SPEED_FACTOR_THRESHOLD, high: float = DEFAULT_SPEED_FACTOR_MAX) -> None:
        self.decay = decay
        self.min_samples = min_samples
        self.threshold = threshold
        self.high = high
        self._mean: dict[str, float] = {}  # running mean duration (seconds) per endpoint
        self._samples: dict[str, int] = {}
        self._fastest: tuple[int, float] | None = None  # (endpoints ready, smallest mean), until the next observe

    @property
    def enabled(self) -> bool:
        """Whether the factor can move off 1 (``min_samples`` > 0)."""
        return self.min_samples > 0

    def observe(self, hostport: str, seconds: float) -> None:
        """One completed request's duration on ``hostport`` (pick to end)."""
        if self.min_samples <= 0 or seconds < 0:
            return
        mean = self._mean.get(hostport)
        if mean is None:
            if len(self._mean) >= MAX_SPEED_ENDPOINTS:
                self._mean.clear()
                self._samples.clear()
            self._mean[hostport] = seconds
        else:
            self._mean[hostport] = mean + self.decay * (seconds - mean)
        self._samples[hostport] = self._samples.get(hostport, 0) + 1
        self._fastest = None

    def factor(self, hostport: str) -> float:
        """``hostport``'s speed factor, 1.0 or in [``threshold``, ``high``] (see the class doc)."""
        if self.min_samples <= 0 or self._samples.get(hostport, 0) < self.min_samples:
            return 1.0
        if self._fastest is None:  # once per observation, not per candidate and pick
            ready = [m for h, m in self._mean.items() if self._samples[h] >= self.min_samples]
            self._fastest = (len(ready), min(ready))
        count, fastest = self._fastest
        if count < 2 or fastest <= 0:
            return 1.0
        return bounded_factor(self._mean[hostport] / fastest, self.threshold, self.high)


@dataclass
class _Tracked:
    hostport: str
    prompt_tokens: int
    uncached_tokens: int
    picked_at: float = 0.0
    prefilling: bool = True  # no first response bytes seen yet
    long: bool = False  # more uncached tokens than one prefill step's budget
    model: str = ""  # the request's model (a LoRA adapter's name for adapter requests)


@dataclass
class EndpointLoad:
    requests: int = 0
    prompt_tokens: int = 0  # of every request in flight
    pending_prefill_tokens: int = 0  # uncached tokens of requests whose first bytes have not come back
    long_pending_tokens: int = 0  # the part of those of ``long`` requests
    # pick (+1) and end (-1) times, oldest first, with the running sum of the changes: to tell
    # what a scrape saw (binary search on the times; at most MAX_EVENTS kept)
    event_times: list[float] = field(default_factory=list)
    event_sums: list[int] = field(default_factory=list)
    event_base: int = 0  # the running sum before the first kept event
    tracked: dict[str, _Tracked] = field(default_factory=dict)  # in flight here, in pick order
    # the requests picked here, oldest first, that may still be prefilling (the ones that ended or
    # were prefilled are dropped when they reach the front), for the scrapes' first-token counts
    prefill_order: deque[_Tracked] = field(default_factory=deque)
    counts_first_tokens: bool = False  # the endpoint's scrapes count first tokens: the flags are exact
    models: dict[str, int] = field(default_factory=dict)  # requests in flight here per model

    def count_model(self, model: str, change: int) -> None:
        n = self.models.get(model, 0) + change
        if n > 0:
            self.models[model] = n
        else:
            self.models.pop(model, None)

    def note(self, now: float, change: int) -> None:
        times, sums = self.event_times, self.event_sums
        times.append(now)
        sums.append((sums[-1] if sums else self.event_base) + change)
        if len(times) > MAX_EVENTS:
            half = len(times) // 2
            self.event_base = sums[half - 1]
            del times[:half], sums[:half]

    def change_since(self, since: float) -> int:
        """Picks minus ends noted after ``since`` (of the kept events)."""
        times, sums = self.event_times, self.event_sums
        i = bisect_right(times, since)
        if i == len(times):
            return 0
        return sums[-1] - (sums[i - 1] if i else self.event_base)


@dataclass
class PeerPicks:
    """Other EPP replicas' picks on one endpoint (pick sharing, ``epp.pick_sharing``), each
    (local receive time, uncached prompt tokens), oldest first: the ones after a scrape are load
    that scrape cannot show yet; the older ones it shows (as other routers' requests)."""

    times: deque[float] = field(default_factory=deque)
    tokens: deque[int] = field(default_factory=deque)
    total_tokens: int = 0

    def add(self, now: float, tokens: int) -> None:
        self.times.append(now)
        self.tokens.append(tokens)
        self.total_tokens += tokens
        if len(self.times) > MAX_PEER_PICKS:
            self._drop()

    def since(self, when: float) -> tuple[int, int]:
        """(picks, their uncached tokens) after ``when``; the older ones are dropped."""
        times = self.times
        while times and times[0] <= when:
            self._drop()
        return len(times), self.total_tokens

    def _drop(self) -> None:
        self.times.popleft()
        self.total_tokens -= self.tokens.popleft()


class InflightLoad:
    """Per-endpoint in-flight requests and tokens, keyed by request id."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 prefill_chunk_tokens: int = DEFAULT_PREFILL_CHUNK_TOKENS, speed: EndpointSpeed | None = None,
                 prefill_rate: PrefillRate | None = None) -> None:
        self.clock = clock  # the scrapes' clock (EndpointMetrics.update_time)
        self.speed = EndpointSpeed() if speed is None else speed
        # the speed factor from prefill progress (first-token counts), off by default (prefill_rate.py)
        self.prefill_rate = PrefillRate(saturated_tokens=prefill_chunk_tokens) if prefill_rate is None else prefill_rate
        self.prefill_chunk_tokens = prefill_chunk_tokens
        self.first_bytes_seen = False  # a first-bytes signal ever came: the data plane sends bodies
        self._requests: dict[str, _Tracked] = {}
        self._endpoints: dict[str, EndpointLoad] = {}
        self.mean_uncached_tokens = 0.0
        # models some scrape listed as a running or waiting LoRA adapter: learned once per scrape,
        # from the scrapes every caller feeds (``note_scrape``: the Director's scrape hook, the
        # decision replay, the benchmarks and tests), never at pick time
        self.adapters: set[str] = set()
        self.adapter_notes = 0  # adapter lists merged into ``adapters`` (the per-scrape learning's work)
        # per endpoint whose scrapes count first tokens: (the newest scrape's time, its count)
        self._first_tokens: dict[str, tuple[float, float]] = {}
        # endpoint -> other replicas' recent picks there (pick sharing; InflightLoadProducer.view
        # reads whether there are any, to skip the sums per candidate)
        self.peer_picks: dict[str, PeerPicks] = {}
        # endpoint -> its declared speed factor (a pod label), only those not 1: empty on most pools
        self._label_factors: dict[str, float] = {}

    def set_label_factors(self, factors: Mapping[str, float]) -> None:
        """The endpoints' declared speed factors (``InflightLoadProducer.endpoints_changed``)."""
        self._label_factors = {h: f for h, f in factors.items() if f != 1.0}

    def note_peer_pick(self, hostport: str, uncached_tokens: int, now: float | None = None) -> None:
        """Another EPP replica sent a request with ``uncached_tokens`` to ``hostport`` (pick sharing):
        it counts there, as a request and as pending prefill, until a scrape taken after it."""
        picks = self.peer_picks.get(hostport)
        if picks is None:
            if len(self.peer_picks) >= MAX_IDLE_ENDPOINTS:  # endpoints gone from the pool: start over
                self.peer_picks.clear()
            picks = self.peer_picks[hostport] = PeerPicks()
        picks.add(self.clock() if now is None else now, max(0, uncached_tokens))

    def _peer_load(self, hostport: str, metrics: EndpointMetrics | None) -> tuple[int, int]:
        picks = self.peer_picks.get(hostport)
        if picks is None:
            return 0, 0
        return picks.since(metrics.update_time if metrics is not None else self.clock() - PEER_PICK_TTL_S)

    @property
    def speed_enabled(self) -> bool:
        """Whether a speed factor can move off 1: an endpoint declares one (a pod label), or a learned
        signal is on (both are off by default)."""
        return bool(self._label_factors) or self.speed.enabled or self.prefill_rate.enabled

    def speed_factor(self, hostport: str) -> float:
        """``hostport``'s predicted-TTFT multiplier: its declared factor (pod label), or the larger of
        the learned ones when they are on and larger (1.0 when none applies)."""
        factor = self._label_factors.get(hostport, 1.0)
        if self.speed.enabled:
            factor = max(factor, self.speed.factor(hostport))
        if self.prefill_rate.enabled:
            factor = max(factor, self.prefill_rate.factor(hostport))
        return factor

    def note_adapters(self, names: frozenset[str]) -> None:
        """Remember adapter names from a scrape (an adapter idle everywhere now is still one)."""
        self.adapter_notes += 1
        if names <= self.adapters:
            return
        if len(self.adapters) + len(names) > MAX_KNOWN_ADAPTERS:
            self.adapters.clear()  # the next scrapes relearn the adapters in use
        self.adapters |= names

    def note_scrape(self, active: frozenset[str], waiting: frozenset[str]) -> None:
        """One scrape's running and waiting adapters (``vllm:lora_requests_info``): the only way
        adapters become known, so a pick does no per-candidate work for this."""
        if active or waiting:  # most pools serve no adapter: no set is built for them
            self.note_adapters(active | waiting)

    def get(self, hostport: str) -> EndpointLoad:
        return self._endpoints.get(hostport) or EndpointLoad()

    def add(self, request_id: str, hostport: str, prompt_tokens: int, uncached_tokens: int,
            now: float | None = None, model: str = "") -> None:
        now = self.clock() if now is None else now
        if request_id in self._requests:  # a reused request id: the old one's accounting ends here
            self.release(request_id, now)
        tracked = self._requests[request_id] = _Tracked(hostport, prompt_tokens, uncached_tokens, now,
                                                        long=uncached_tokens > self.prefill_chunk_tokens,
                                                        model=model)
        load = self._endpoints.get(hostport)
        if load is None:
            load = self._endpoints[hostport] = EndpointLoad(counts_first_tokens=hostport in self._first_tokens)
        load.tracked[request_id] = tracked
        order = load.prefill_order
        while order and not order[0].prefilling:  # prefilled or ended: bounded by the requests in flight
            order.popleft()
        order.append(tracked)
        load.count_model(model, 1)
        if tracked.long:
            load.long_pending_tokens += uncached_tokens
        load.requests += 1
        load.note(now, 1)
        load.prompt_tokens += prompt_tokens
        load.pending_prefill_tokens += uncached_tokens
        if self.mean_uncached_tokens == 0.0:
            self.mean_uncached_tokens = float(uncached_tokens)
        else:
            self.mean_uncached_tokens += MEAN_UNCACHED_DECAY * (uncached_tokens - self.mean_uncached_tokens)

    def prefilled(self, request_id: str) -> None:
        """The request's first response bytes came back (the data plane sends response bodies)."""
        tracked = self._requests.get(request_id)
        if tracked is None or not tracked.prefilling:
            return
        self.first_bytes_seen = True
        self._end_prefill(tracked, self._endpoints[tracked.hostport])

    @staticmethod
    def _end_prefill(tracked: _Tracked, load: EndpointLoad) -> None:
        tracked.prefilling = False
        load.pending_prefill_tokens -= tracked.uncached_tokens
        if tracked.long:
            load.long_pending_tokens -= tracked.uncached_tokens

    def observe_first_tokens(self, hostport: str, when: float, total: float) -> None:
        """A scrape of ``hostport`` taken at ``when`` counted ``total`` first tokens so far (the
        server's TTFT histogram's count: vLLM and SGLang observe it when a request's prefill
        completes). The requests whose prefill completed since the previous scrape are taken to be
        this EPP's oldest still prefilling there, picked before ``when``: a server prefills its
        admitted requests in order (chunked prefill gives each step's token budget to the oldest
        first). Their pending prefill ends now, as with first response bytes. A scrape seen
        before (the same ``when``) changes nothing."""
        seen = self._first_tokens.get(hostport)
        if seen is not None and seen[0] == when:
            return
        if seen is None and len(self._first_tokens) >= MAX_IDLE_ENDPOINTS * 4:
            self._first_tokens.clear()
        self._first_tokens[hostport] = (when, total)
        load = self._endpoints.get(hostport)
        if load is not None:
            load.counts_first_tokens = True
        if seen is None or load is None:
            if self.prefill_rate.enabled:
                self.prefill_rate.observe(hostport, when, 0.0, 0.0 if load is None else load.pending_prefill_tokens)
            return  # the first count is the baseline; the picks after it are ordered from now on
        done = int(total - seen[1])  # < 0: the server restarted (counters start again)
        order = load.prefill_order
        released = 0
        while done > 0 and order:
            tracked = order[0]
            if tracked.picked_at > when:
                break  # picked after the scrape: not in its count
            order.popleft()
            if tracked.prefilling:  # not prefilled by first bytes, not ended (release clears it)
                self._end_prefill(tracked, load)
                released += tracked.uncached_tokens
                done -= 1
        if self.prefill_rate.enabled:
            self.prefill_rate.observe(hostport, when, released, load.pending_prefill_tokens)

    def release(self, request_id: str, now: float | None = None, completed: bool = False) -> None:
        """The request ended; a ``completed`` one's duration (pick to now) feeds the speed factor."""
        tracked = self._requests.pop(request_id, None)
        if tracked is None:
            return
        now = self.clock() if now is None else now
        if completed:
            self.speed.observe(tracked.hostport, now - tracked.picked_at)
        load = self._endpoints[tracked.hostport]
        load.tracked.pop(request_id, None)
        load.count_model(tracked.model, -1)
        load.requests -= 1
        load.note(now, -1)
        load.prompt_tokens -= tracked.prompt_tokens
        if tracked.prefilling:
            self._end_prefill(tracked, load)
        if load.requests <= 0 and len(self._endpoints) > MAX_IDLE_ENDPOINTS:
            self._forget_idle()

    def _forget_idle(self) -> None:
        for hostport in [h for h, load in self._endpoints.items() if load.requests <= 0]:
            del self._endpoints[hostport]

    def in_flight_at(self, hostport: str, when: float) -> int:
        """This EPP's requests in flight on ``hostport`` at ``when`` (a recent time.monotonic())."""
        load = self._endpoints.get(hostport)
        return 0 if load is None else load.requests - load.change_since(when)

    def pending_after_scrape(self, hostport: str, when: float, waiting: int) -> tuple[float, int]:
        """(pending prefill tokens, requests counted as waiting) of this EPP's requests on ``hostport``,
        given a scrape taken at ``when`` that showed ``waiting`` requests in the server's queue.

        Picks since the scrape are not in it: pending unless their first bytes came back. Of the
        picks before it, the server (FIFO) had admitted all but the newest ``waiting``: only those
        still count (a data plane that does not send response bodies to the EPP gives no first
        bytes, so without this every request's prefill stayed pending until its end)."""
        load = self._endpoints.get(hostport)
        if load is None:
            return 0.0, 0
        return self._pending_after(load, when, waiting)

    def _pending_after(self, load: EndpointLoad, when: float, waiting: int) -> tuple[float, int]:
        if self.first_bytes_seen or load.counts_first_tokens:  # the flags are exact (first bytes or counts)
            return float(load.pending_prefill_tokens), 0
        # newest first: the picks since the scrape, then the newest ``waiting`` before it; of the
        # older ones (admitted) only the long prompts, still prefilling over several steps (a
        # 16k-token one takes ~2 s), count, and nothing says when they are done: until their end
        pending = 0.0
        windows_long = 0
        left = waiting
        for tracked in reversed(load.tracked.values()):
            if tracked.picked_at <= when:
                if left <= 0:
                    break
                left -= 1
            if tracked.prefilling:
                pending += tracked.uncached_tokens
                if tracked.long:
                    windows_long += tracked.uncached_tokens
        return pending + load.long_pending_tokens - windows_long, waiting - left

    def view(self, hostport: str, inflight: int, metrics: EndpointMetrics | None) -> tuple[int, float]:
        """(requests, pending prefill tokens) on ``hostport``: this EPP's accounting (at least
        ``inflight``, the Director's count) reconciled with the endpoint's scraped ``metrics``
        (see ``InflightLoadProducer.view``), plus other EPP replicas' picks there since the scrape
        (pick sharing)."""
        requests, pending = self.own_view(hostport, inflight, metrics)
        if not self.peer_picks:
            return requests, pending
        peers, peer_tokens = self._peer_load(hostport, metrics)
        return requests + peers, pending + peer_tokens

    def own_view(self, hostport: str, inflight: int, metrics: EndpointMetrics | None) -> tuple[int, float]:
        """``view`` without other replicas' picks. One lookup of the endpoint's load; an endpoint
        this EPP has nothing on builds no empty load."""
        load = self._endpoints.get(hostport)
        m = metrics
        if load is None:  # nothing of this EPP's there: every scraped request is someone else's
            # (the common case on a large pool; conditionals instead of max/min calls)
            requests = inflight if inflight > 0 else 0
            if m is None:
                return requests, 0.0
            waiting = m.waiting_queue
            unknown = m.running + waiting
            if unknown < 0:
                unknown = 0
            return requests + unknown, 0.0 + (waiting if waiting < unknown else unknown) * self.mean_uncached_tokens
        requests = max(load.requests, inflight)
        if m is None:
            return requests, float(load.pending_prefill_tokens)
        # what the scrape saw beyond this EPP's own requests at that moment: other routers' traffic
        unknown = max(0, m.running + m.waiting_queue - (load.requests - load.change_since(m.update_time)))
        # those are assumed waiting first (the cautious reading), at the mean uncached tokens
        unknown_waiting = min(m.waiting_queue, unknown)
        pending, _ = self._pending_after(load, m.update_time, m.waiting_queue - unknown_waiting)
        return requests + unknown, pending + unknown_waiting * self.mean_uncached_tokens

    def models_picked_since(self, hostport: str, when: float) -> list[str]:
        """The models of this EPP's requests in flight on ``hostport`` picked after ``when`` (a
        scrape's time: the ones that scrape cannot show), oldest first."""
        load = self._endpoints.get(hostport)
        if load is None:
            return []
        models: list[str] = []
        for tracked in reversed(load.tracked.values()):
            if tracked.picked_at <= when:
                break
            models.append(tracked.model)
        return models[::-1]

    def __len__(self) -> int:
        return len(self._requests)


class InflightLoadProducer(Plugin):
    """``inflight-load-producer``: counts each pick at once (see the module doc).

    Parameters: ``prefixScorer`` (the prefix-cache-scorer whose index tells the cached
    part of a prompt; default ``prefix-cache-scorer``, and without one every prompt token
    counts as uncached), ``charsPerToken`` (4: prompt characters per token),
    ``prefillChunkTokens`` (8192, the model servers' ``--max-num-batched-tokens``: without
    first-bytes signals, an admitted request with more uncached tokens than this is taken to
    be still prefilling until it ends); the endpoint speed factor (``EndpointSpeed``):
    ``speedFactorMinSamples`` (completed requests per endpoint before its factor moves off
    1; 0, the default, turns the factor off; 16 is the measured value, docs/epp.md), ``speedFactorDecay`` (0.05: the newest duration's weight in an
    endpoint's running mean), ``speedFactorThreshold`` (1.5: a smaller ratio to the fastest
    endpoint counts as 1) and ``speedFactorMax`` (4: the factor's bound); ``prefillRateMinTokens`` (0, the
    default, off) turns on the factor from prefill progress (``PrefillRate``: each endpoint's prompt tokens
    prefilled per second while saturated, from the scrapes' first-token counts, against the fastest; it
    needs that many tokens seen per endpoint) with the same threshold and bound."""

    type_name = "inflight-load-producer"

    def __init__(self, name: str, prefix_scorer: str = PrefixCacheScorer.type_name,
                 chars_per_token: float = DEFAULT_CHARS_PER_TOKEN,
                 prefill_chunk_tokens: int = DEFAULT_PREFILL_CHUNK_TOKENS, speed: EndpointSpeed | None = None,
                 prefill_rate: PrefillRate | None = None, speed_label: str = DEFAULT_SPEED_FACTOR_LABEL) -> None:
        super().__init__(name)
        self.speed_label = speed_label  # "" : no declared factors
        self._bad_labels: set[str] = set()  # label values already warned about
        self.prefix_scorer_name = prefix_scorer
        self.chars_per_token = chars_per_token
        self.prefix: PrefixCacheScorer | None = None
        self.load = InflightLoad(prefill_chunk_tokens=prefill_chunk_tokens, speed=speed, prefill_rate=prefill_rate)

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> InflightLoadProducer:
        check_keys(params, ("prefixScorer", "charsPerToken", "prefillChunkTokens", "speedFactorMinSamples",
                            "speedFactorDecay", "speedFactorThreshold", "speedFactorMax", "prefillRateMinTokens",
                            "speedFactorLabel"))
        threshold = float_param(params, "speedFactorThreshold", DEFAULT_SPEED_FACTOR_THRESHOLD, low=1.0, high=100.0)
        high = float_param(params, "speedFactorMax", DEFAULT_SPEED_FACTOR_MAX, low=1.0, high=100.0)
        speed = EndpointSpeed(float_param(params, "speedFactorDecay", DEFAULT_SPEED_DECAY, low=0.001, high=1.0),
                              int_param(params, "speedFactorMinSamples", DEFAULT_SPEED_MIN_SAMPLES, minimum=0),
                              threshold, max(threshold, high))
        chunk = int_param(params, "prefillChunkTokens", DEFAULT_PREFILL_CHUNK_TOKENS, minimum=1)
        rate = PrefillRate(int_param(params, "prefillRateMinTokens", DEFAULT_PREFILL_RATE_MIN_TOKENS, minimum=0),
                           chunk, threshold, max(threshold, high))
        return cls(name, str_param(params, "prefixScorer", PrefixCacheScorer.type_name),
                   float_param(params, "charsPerToken", DEFAULT_CHARS_PER_TOKEN, low=0.1, high=100.0),
                   chunk, speed, rate, str_param(params, "speedFactorLabel", DEFAULT_SPEED_FACTOR_LABEL))

    def endpoints_changed(self, endpoints: Iterable[Endpoint]) -> None:
        """The pool's endpoints (the Director's datastore hook): their declared speed factors, from
        the ``speedFactorLabel`` pod label (a number in (0, 100]; another value is ignored, with
        one warning per value)."""
        factors: dict[str, float] = {}
        if self.speed_label:
            for endpoint in endpoints:
                value = endpoint.labels.get(self.speed_label)
                if value is None:
                    continue
                try:
                    factor = float(value)
                except ValueError:
                    factor = float("nan")
                if not 0.0 < factor <= MAX_LABEL_SPEED_FACTOR:  # NaN too
                    if value not in self._bad_labels and len(self._bad_labels) < MAX_WARNED_LABEL_VALUES:
                        self._bad_labels.add(value)
                        log.warning("pod %s: label %s=%r ignored: not a number in (0, %g]", endpoint.pod_name,
                                    self.speed_label, value, MAX_LABEL_SPEED_FACTOR)
                    continue
                factors[endpoint.hostport] = factor
        self.load.set_label_factors(factors)

    def resolve(self, handle: PluginHandle) -> None:
        plugin = handle.plugins.get(self.prefix_scorer_name)
        if plugin is not None and not isinstance(plugin, PrefixCacheScorer):
            raise ConfigError(f".parameters.prefixScorer: plugin {self.prefix_scorer_name!r} "
                              "is not a prefix-cache-scorer")
        self.prefix = plugin

    def prompt_tokens(self, request: SchedulingRequest) -> int:
        return max(1, round(len(request.prompt) / self.chars_per_token))

    def uncached_tokens(self, state: CycleState, request: SchedulingRequest) -> dict[str, int] | int:
        """Uncached prompt tokens per endpoint that holds part of the prompt; an int (the whole
        prompt) for every other endpoint is the second half of the answer (see ``uncached_for``)."""
        total = self.prompt_tokens(request)
        if self.prefix is None:
            return total
        hashes, matched = self.prefix.match(state, request)
        if not hashes or not matched:
            return total
        # hashes[0] is the model's seed (every holder has it); each further hash is one block
        block_tokens = self.prefix.block_size / self.chars_per_token
        return {h: max(0, total - round((n - 1) * block_tokens)) for h, n in matched.items()}

    def uncached_for(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[int]:
        per = self.uncached_tokens(state, request)
        total = self.prompt_tokens(request)
        if isinstance(per, int):
            return [per] * len(candidates)
        return [per.get(c.hostport, total) for c in candidates]

    def pre_request(self, state: CycleState, request: SchedulingRequest, result: SchedulingResult) -> None:
        target = result.primary.targets[0].hostport
        per = self.uncached_tokens(state, request)
        total = self.prompt_tokens(request)
        uncached = per if isinstance(per, int) else per.get(target, total)
        self.load.add(request.request_id, target, total, uncached, model=request.target_model)

    def note_peer_pick(self, hostport: str, prompt_chars: int, held_blocks: int) -> None:
        """Another EPP replica sent a prompt of ``prompt_chars`` characters to ``hostport``, which
        held its first ``held_blocks`` hashes (the model's seed included) in this EPP's index:
        counted as load there until a scrape shows it (``InflightLoad.note_peer_pick``)."""
        total = max(1, round(prompt_chars / self.chars_per_token))
        cached = round((held_blocks - 1) * self.prefix.block_size / self.chars_per_token) \
            if self.prefix is not None and held_blocks > 1 else 0
        self.load.note_peer_pick(hostport, max(0, total - cached))

    def scraped(self, hostport: str, metrics: EndpointMetrics) -> None:
        """A new scrape of ``hostport`` (the Director's scrape hook): its LoRA adapters become known,
        and its first-token count ends the pending prefill of the requests it says have their first
        token (unless the data plane sends first bytes, which are exact)."""
        self.load.note_scrape(metrics.active_models, metrics.waiting_models)
        if metrics.ttft_count is not None and not self.load.first_bytes_seen:
            self.load.observe_first_tokens(hostport, metrics.update_time, metrics.ttft_count)

    def response_started(self, request_id: str) -> None:
        self.load.prefilled(request_id)

    def request_done(self, request_id: str, completed: bool) -> None:
        self.load.release(request_id, completed=completed)

    def speed_factor(self, candidate: Candidate) -> float:
        """``candidate``'s speed factor (``EndpointSpeed``, ``PrefillRate``): its predicted TTFT's multiplier."""
        return self.load.speed_factor(candidate.hostport)

    def view(self, candidate: Candidate) -> tuple[int, float]:
        """(requests, pending prefill tokens) on ``candidate``, reconciled with its scraped metrics:
        requests = this EPP's in flight (at least the candidate's count) + what the scrape saw
        beyond this EPP's own requests at its time (other routers' traffic); pending = this EPP's
        pending prefill as of the scrape (``pending_after_scrape``) + those unknown requests,
        assumed waiting first (the cautious reading, at most the scraped queue), at the mean
        uncached tokens; + other EPP replicas' picks since the scrape (``InflightLoad.view``).

        Called per candidate by the scorer and the affinity filter, so without pick sharing it
        goes straight to ``own_view``: the shared-pick sums on every call cost 5% of a
        256-endpoint pick (``epp_cost_sched_ab``, session 21)."""
        load = self.load
        if load.peer_picks:
            return load.view(candidate.hostport, candidate.inflight, candidate.metrics)
        return load.own_view(candidate.hostport, candidate.inflight, candidate.metrics)


def find_producer(handle: PluginHandle, name: str, owner: str) -> InflightLoadProducer:
    plugin = handle.plugins.get(name)
    if not isinstance(plugin, InflightLoadProducer):
        raise ConfigError(f".parameters.loadProducer: {owner} needs an inflight-load-producer plugin named "
                          f"{name!r} in plugins")
    return plugin


def pick_time_producer(scheduler: Scheduler) -> InflightLoadProducer | None:
    """The profile's pick-time accounting (``inflight-load-producer``), if it has one: what turns
    the "auto" limits on (pick-time saturation, flow control)."""
    return next((p for p in scheduler.plugins.values() if isinstance(p, InflightLoadProducer)), None)
