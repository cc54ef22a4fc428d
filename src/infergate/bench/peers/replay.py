"""Decision replay: a peer-benchmark workload against in-process simulated engines, on virtual time.

The same engines as ``infergate sim`` (``infergate.sim.engine``: step times, chunked prefill, the
prefix cache; ``heterogeneous``'s slower replicas with the benchmark's ``SLOW_PROFILE_SETTINGS``) and the same EPP scheduler plugins, but no processes, no HTTP and no wall clock: an
event loop whose clock jumps to the next timer (``VirtualTimeLoop``), so a 15-model-second
workload replays in a few seconds, the same way every time, whatever else the machine runs. What
it leaves out: Envoy and the network (a few ms of wall time), the scrape's transport (the
metrics are read straight from the engines every 50 ms of model time, at a random phase per
engine, as the EPP's scraper does), and the load generator's own delays. LoRA adapters are modelled (``lora-mix``). The EPP gets no
first-bytes signals unless asked (``--first-byte``), like the production data plane. Use it to
compare scheduling configs and the oracle's choice on the same state; confirm with ``bench peers``.

Objectives (``priority-mix``): each request carries its objective's priority; an EPP policy
sheds sheddable requests with the EPP's own ``SaturationDetector`` on the replay's scrapes and
the profile's pick-time accounting: upstream's pool-saturation check before scheduling (flow
control off), then ``shed_reason`` on the picked endpoint, the one the Director asks (pick-time
limits, the priority holdback and the latency holdback, which reads the scrapes' TTFT and
inter-token latency ``_sum``/``_count`` from the engines' histograms). The oracle, like the peers, sheds nothing. The closed loop
follows the driver: each user keeps one objective and waits ``SHED_BACKOFF_S`` after a shed.
Latency and goodput (TTFT <= 0.5 s and mean ITL <= 50 ms, per model second) are then the
critical requests', as in the benchmark's report.

Flow control (as the EPP's: by default on for a profile with pick-time accounting, off for
upstream's presets; ``--flow-control`` / ``--no-flow-control``, ``replay(..., flow_control=True)``):
an EPP policy admits each request through the production
``FlowController`` with the Director's capacity (the endpoints' ``admission_headroom``, less the
requests sent that their last scrape cannot show yet: ``RecentSends``, the Director's own
bookkeeping), woken when the Director wakes it (each scrape, each request's end, with ``--first-byte``
each response's first bytes), and schedules it
where its placement says (the EPP's default ``scheduler``: wherever the profile picks). A request that waits longer than the
flow control's ``max_wait`` is a 429 (``ReplayResult.flow_control_429``, among ``shed``); the time
a served request waited is ``TurnOutcome.held``. The idle pool's scrape is taken half a scrape
interval before t = 0, with the TTFT histogram's count (0), as the EPP reads a vLLM or simulator
page before the first request.

``python -m infergate.bench.peers.replay --workload shared-prefix-zipf --policy default
--policy oracle --policy my-config.yaml [--duration 15] [--seed 1] [--seeds 3] [--closed]
[--sd-sheddable-max-inflight-per-endpoint N] [--sd-sheddable-ttft-objective S --sd-sheddable-itl-objective S]
[--sd-sheddable-max-pending-prefill-tokens T] [--sd-sheddable-max-prefill-busy-fraction F] [--load X]
[--flow-control|--no-flow-control [--flow-control-max-wait S] [--flow-control-placement scheduler|headroom]
[--sd-max-pending-prefill-tokens T] [--sd-queue-depth-threshold N]]``
(``--load``: ``priority-mix`` at X times its calibrated capacity instead of 1.5x)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import random
import selectors
import uuid
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infergate.bench.peers.driver import SHED_BACKOFF_S
from infergate.bench.peers.oracle import choose
from infergate.bench.peers.summary import SLO_ITL_S, SLO_TTFT_S, WARMUP_FRACTION
from infergate.bench.peers.workloads import (
    CRITICAL,
    PoolSpec,
    Session,
    Workload,
    make,
    slow_profile_overrides,
)
from infergate.bench.stats import percentile
from infergate.epp.contract import Rejection
from infergate.epp.datastore import Endpoint
from infergate.epp.flowcontrol import PLACEMENTS, FlowControlConfig, FlowController
from infergate.epp.flowcontrol.placement import placement_candidates
from infergate.epp.flowcontrol.unseen import RecentSends
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.saturation import SaturationConfig, SaturationDetector
from infergate.epp.scheduling import Candidate, Scheduler, SchedulingRequest, load_config_text
from infergate.epp.scheduling.config import PRESETS
from infergate.epp.scheduling.plugins.inflight import InflightLoadProducer, pick_time_producer
from infergate.sim import tokenizer
from infergate.sim.config import SimConfig
from infergate.sim.engine import Engine, Sequence
from infergate.sim.peer_endpoints import cached_prefix_tokens, engine_state

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SCRAPE_INTERVAL_S = 0.05  # model seconds, the EPP's default refresh


class _InstantSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Never waits: ``select(timeout)`` moves the loop's clock forward by ``timeout`` instead."""

    def __init__(self, loop_clock: list[float]) -> None:
        super().__init__()
        self.clock = loop_clock

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise RuntimeError("replay deadlock: every task waits and no timer is scheduled")
        if timeout > 0:
            self.clock[0] += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a virtual clock (no I/O: nothing here uses sockets)."""

    def __init__(self) -> None:
        self._clock = [0.0]
        super().__init__(selector=_InstantSelector(self._clock))

    def time(self) -> float:
        return self._clock[0]


@dataclass
class TurnOutcome:
    ttft: float
    prompt_tokens: int
    cached_tokens: int
    replica: int
    group: int
    objective: str | None = None
    itl: float = 0.0  # mean inter-token latency (model seconds)
    start: float = 0.0  # model seconds from the replay's start to the request's pick
    request_id: str = ""
    held: float = 0.0  # model seconds the request waited in the EPP's flow control before its pick
    end: float = math.inf  # model seconds from the replay's start to its last token

    @property
    def meets_slo(self) -> bool:
        return self.ttft <= SLO_TTFT_S and self.itl <= SLO_ITL_S


@dataclass
class ReplayResult:
    """``outcomes`` are the served turns; ``shed`` the objectives of the turns shed (429).
    With objectives (``priority``), the latency and goodput figures are the critical
    requests' (as the benchmark's summary); else every request's."""

    policy: str
    outcomes: list[TurnOutcome] = field(default_factory=list)
    model_time: float = 0.0
    output_tokens: int = 0
    shed: list[str | None] = field(default_factory=list)
    priority: bool = False
    flow_control_429: int = 0  # of ``shed``: requests flow control rejected (waited too long, queue full, sheddable)
    # a closed loop's window (model seconds): model_time and output_tokens are then the window's, and
    # goodput counts the requests that ended within it (as the benchmark's summary.summarize)
    window: float | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.model_time if self.model_time else float("nan")

    @property
    def measured(self) -> list[TurnOutcome]:
        if not self.priority:
            return self.outcomes
        return [o for o in self.outcomes if o.objective in (None, CRITICAL)]

    def ttft(self, q: float) -> float:
        return percentile([o.ttft for o in self.measured], q)

    def ttft_after_warmup(self, q: float) -> float:
        """As ``ttft`` for the turns sent after the phase's first ``WARMUP_FRACTION`` (the benchmark's
        "after warm-up" figure)."""
        warmup = WARMUP_FRACTION * self.model_time
        return percentile([o.ttft for o in self.measured if o.start >= warmup], q)

    @property
    def goodput(self) -> float:
        """Measured requests within the SLO (TTFT and mean ITL) per model second."""
        good = sum(1 for o in self.measured if o.meets_slo and (self.window is None or o.end <= self.window))
        return good / self.model_time if self.model_time else float("nan")

    @property
    def prefix_hit(self) -> float:
        total = sum(o.prompt_tokens for o in self.outcomes)
        return sum(o.cached_tokens for o in self.outcomes) / total if total else float("nan")

    @property
    def max_share(self) -> float:
        counts: dict[int, int] = {}
        for o in self.outcomes:
            counts[o.replica] = counts.get(o.replica, 0) + 1
        return max(counts.values()) / len(self.outcomes) if self.outcomes else float("nan")

    @property
    def replicas_per_group(self) -> float:
        groups: dict[int, set[int]] = {}
        for o in self.outcomes:
            groups.setdefault(o.group, set()).add(o.replica)
        return sum(len(v) for v in groups.values()) / len(groups) if groups else float("nan")


class _Pool:
    def __init__(self, workload: Workload, seed: int, declared_slow_factor: float | None = None) -> None:
        pool = workload.pool
        config = SimConfig(model=MODEL, profile=pool.profile, num_gpu_blocks=pool.num_gpu_blocks,
                           mean_output_tokens=0, seed=seed, **_lora_config(pool))
        # the last ``slow_replicas`` as the benchmark starts them (``--set`` SLOW_PROFILE_SETTINGS)
        slow_config = dataclasses.replace(config, profile_overrides=slow_profile_overrides())
        fast = pool.replicas - pool.slow_replicas
        self.engines = [Engine(c, c.latency_profile(), seed=seed + i)
                        for i, c in enumerate([config] * fast + [slow_config] * pool.slow_replicas)]
        # ``declared_slow_factor``: the slow replicas' pods carry the speed-factor label (what an
        # operator who knows the pool's hardware declares; docs/epp.md, "Speed factor")
        labels = pool.declared_labels(declared_slow_factor)
        self.endpoints = [Endpoint(f"sim-{i}", f"10.0.0.{i + 1}", 8000, labels=labels[i] if labels else {})
                          for i in range(pool.replicas)]
        self.metrics: list[EndpointMetrics | None] = [None] * pool.replicas
        self.store = MetricsStore()  # the same scrapes, as the EPP's saturation detector reads them
        # the EPP has scraped the idle pool before the first request (a scrape interval before t = 0:
        # at t = 0 the burst's picks would read as picked before it, admitted by the server); the
        # page has the TTFT and inter-token histograms from the start, with counts 0
        idle = EndpointMetrics(update_time=-SCRAPE_INTERVAL_S / 2, ttft_sum=0.0, ttft_count=0.0, itl_sum=0.0,
                               itl_count=0.0)
        for e in self.endpoints:
            self.store.update(e.hostport, idle)
        self.rng = random.Random(seed)
        self.priorities = dict(workload.objectives)  # objective name -> priority

    async def scrape(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.rng.uniform(0, SCRAPE_INTERVAL_S))
        engine = self.engines[i]
        while True:
            stats = engine.stats
            metrics = EndpointMetrics(waiting_queue=len(engine.waiting), running=len(engine.running),
                                      kv_cache_usage=engine.kv.usage, update_time=loop.time(),
                                      ttft_sum=stats.ttft.sum, ttft_count=stats.ttft.count,
                                      itl_sum=stats.itl.sum, itl_count=stats.itl.count,
                                      **_lora_metrics(engine, self.metrics[i]))
            self.metrics[i] = metrics
            self.store.update(self.endpoints[i].hostport, metrics)
            await asyncio.sleep(SCRAPE_INTERVAL_S * self.rng.uniform(0.9, 1.1))


def _lora_config(pool: PoolSpec) -> dict[str, Any]:
    """The engines' adapters and slots, as ``infergate sim --lora-adapters --max-loras`` set them."""
    return {"lora_adapters": pool.lora_adapters, "max_loras": pool.max_loras} if pool.lora_adapters else {}


def _lora_metrics(engine: Engine, previous: EndpointMetrics | None) -> dict[str, Any]:
    """EndpointMetrics' adapter fields as the EPP's scraper reads them from the simulator's
    ``vllm:lora_requests_info`` (running and waiting adapters, ``max_lora``): a page with neither
    list is skipped (upstream's rule), so the previous scrape's values stay."""
    if not engine.running_loras and not engine.waiting_loras:
        if previous is None:
            return {}
        return {"active_models": previous.active_models, "waiting_models": previous.waiting_models,
                "max_active_models": previous.max_active_models}
    return {"active_models": frozenset(engine.running_loras), "waiting_models": frozenset(engine.waiting_loras),
            "max_active_models": engine.max_loras}


class _Policy:
    name: str

    async def admit(self, pool: _Pool, rid: str, priority: int = 0) -> bool:
        """Whether the request may be scheduled (it may wait here); False: rejected (429)."""
        return True

    def pick(self, pool: _Pool, rid: str, prompt: str, priority: int = 0, lora: str | None = None) -> int | None:
        """The replica for the request, or None when it is shed (429)."""
        raise NotImplementedError

    def started(self, rid: str) -> None:
        pass

    def done(self, rid: str) -> None:
        pass


class EppPolicy(_Policy):
    """An EPP profile as the Director runs it: its saturation detector on the replay's scrapes and,
    with ``flow_control`` enabled, the production ``FlowController`` with the Director's capacity
    (the endpoints' headroom minus the requests sent that their last scrape cannot show yet),
    woken on the events the Director wakes it on (each scrape, each request's end, first bytes), and its
    placement (``placement_candidates``). ``flow_control`` None: the EPP's default, on when the profile
    accounts its picks."""

    def __init__(self, name: str, text: str, seed: int, clock: Callable[[], float], first_byte: bool = False,
                 saturation: SaturationConfig | None = None, flow_control: FlowControlConfig | None = None) -> None:
        self.name = name
        # the production data plane does not send response bodies to the EPP (ext_proc
        # response_body_mode NONE): no first-byte signal, only the end of the request
        self.first_byte = first_byte
        self.clock = clock
        self.scheduler: Scheduler = load_config_text(text, seed=seed)
        # every pick-time accounting of the profile (the Director's scrape learners); the first one
        # is the one the saturation detector and flow control read
        self.producers = [p for p in self.scheduler.plugins.values() if isinstance(p, InflightLoadProducer)]
        for plugin in self.producers:  # pick and end times on the scrapes' clock
            plugin.load.clock = clock
        self.producer: InflightLoadProducer | None = self.producers[0] if self.producers else None
        self.saturation_config = saturation or SaturationConfig()
        self.saturation: SaturationDetector | None = None
        self.flow_config = flow_control or FlowControlConfig(enabled=self.producer is not None)
        self.flow: FlowController | None = None
        # the Director's flow-control bookkeeping: requests in flight per endpoint, their sends
        self.inflight: dict[str, int] = {}
        self.sends = RecentSends()
        self.picked: dict[str, str] = {}  # request id -> endpoint, until done

    def _flow(self, pool: _Pool) -> FlowController:
        if self.flow is None:
            self._detector(pool)
            self.flow = FlowController(self.flow_config, lambda: self._capacity(pool))
        return self.flow

    def _unseen(self, pool: _Pool, hostport: str) -> int:
        return self.sends.unseen(hostport, self.inflight.get(hostport, 0), pool.store.raw(hostport))

    def _capacity(self, pool: _Pool) -> int:
        """The Director's ``_capacity`` with flow control on: the available endpoints' headroom
        (every replayed endpoint is available: no scrape fails)."""
        detector, now = self._detector(pool), self.clock()
        return sum(detector.admission_headroom(e.hostport, now, self._unseen(pool, e.hostport)) for e in pool.endpoints)

    async def admit(self, pool: _Pool, rid: str, priority: int = 0) -> bool:
        if not self.flow_config.enabled:
            return True
        try:
            await self._flow(pool).admit(rid, priority)
        except Rejection:
            return False
        return True

    def _detector(self, pool: _Pool) -> SaturationDetector:
        """The EPP's saturation detector on the pool's scrapes and this profile's pick-time
        accounting (as the Director wires it; the replay keeps no other in-flight count)."""
        if self.saturation is None:
            endpoints = {e.hostport: e for e in pool.endpoints}
            producer = self.producer

            def load(hostport: str, metrics: EndpointMetrics | None) -> tuple[int, float]:
                if producer is None:
                    return (0 if metrics is None else metrics.running + metrics.waiting_queue), 0.0
                return producer.view(Candidate(endpoints[hostport], metrics))

            self.saturation = SaturationDetector(pool.store, self.saturation_config, load=load,
                                                 accounts_picks=producer is not None)
            self._feed_scrapes(pool.store)
            for plugin in self.producers:  # the pods' declared speed factors, as the Director
                plugin.endpoints_changed(pool.endpoints)
        return self.saturation

    def _feed_scrapes(self, store: MetricsStore) -> None:
        """The producers learn from each scrape (LoRA adapters, first-token counts), as the Director feeds them."""
        producers = self.producers

        def scraped(hostport: str) -> None:
            metrics = store.raw(hostport)
            if metrics is not None:
                for producer in producers:
                    producer.scraped(hostport, metrics)
                self.sends.scraped(hostport, metrics)
            if self.flow is not None:  # the Director's _on_scrape: capacity may have changed
                self.flow.notify()

        for hostport in store.by_endpoint:
            scraped(hostport)
        store.subscribe(scraped)

    def pick(self, pool: _Pool, rid: str, prompt: str, priority: int = 0, lora: str | None = None) -> int | None:
        if not self.flow_config.enabled:
            return self._pick(pool, rid, prompt, priority, lora)
        try:
            return self._pick(pool, rid, prompt, priority, lora)
        finally:
            self._flow(pool).scheduled()

    def _placement(self, pool: _Pool, cands: list[Candidate], now: float) -> list[Candidate]:
        """The Director's placement with flow control on (``placement_candidates``)."""
        detector = self._detector(pool)
        return placement_candidates(self.flow_config, cands,
                                    lambda c: detector.admission_headroom(c.hostport, now, self._unseen(pool, c.hostport)))

    def _pick(self, pool: _Pool, rid: str, prompt: str, priority: int, lora: str | None) -> int | None:
        detector = self._detector(pool)
        now = self.clock()
        hostports = [e.hostport for e in pool.endpoints]
        flow = self.flow_config.enabled
        if not flow and priority < 0 and detector.is_saturated(hostports, now):  # flow control off: upstream's check
            return None
        cands = [Candidate(e, m) for e, m in zip(pool.endpoints, pool.metrics, strict=True)]
        if flow:
            cands = self._placement(pool, cands, now)
        request = SchedulingRequest(rid, lora or MODEL, prompt)  # the request's model: the adapter's name
        result, state = self.scheduler.schedule(request, cands)
        chosen = result.primary.targets[0].hostport
        if detector.shed_reason(priority, chosen, now, hostports) is not None:  # the Director's post-pick check
            return None
        self.scheduler.pre_request(state, request, result)
        if flow:  # the Director's _track
            self.inflight[chosen] = self.inflight.get(chosen, 0) + 1
            self.sends.sent(chosen, now)
            self.picked[rid] = chosen
        return hostports.index(chosen)

    def started(self, rid: str) -> None:
        if self.first_byte:
            self.scheduler.response_started(rid)
            if self.flow is not None:  # the Director's first response bytes: pending prefill ended
                self.flow.notify()

    def done(self, rid: str) -> None:
        self.scheduler.request_done(rid, True)
        chosen = self.picked.pop(rid, None)
        if chosen is not None:  # the Director's on_request_done
            count = self.inflight.get(chosen, 0) - 1
            if count > 0:
                self.inflight[chosen] = count
            else:
                self.inflight.pop(chosen, None)
        if self.flow is not None:
            self.flow.notify()


class OraclePolicy(_Policy):
    """The benchmark oracle's choice (``oracle.choose``) on the engines' true state."""

    name = "oracle"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, pool: _Pool, rid: str, prompt: str, priority: int = 0, lora: str | None = None) -> int | None:
        states = []
        for engine in pool.engines:
            state = engine_state(engine)
            hashes = tokenizer.block_hashes(prompt, engine.kv.block_size, lora or MODEL)
            tokens = tokenizer.count_tokens(prompt)
            state["request"] = {"prompt_tokens": tokens, "lora": lora,
                                "cached_tokens": cached_prefix_tokens(engine, hashes, tokens)}
            states.append(state)
        index, _ = choose(states, [[] for _ in states], prompt, self.rng)
        return index


CACHE_AWARE = "sglang-cache-aware"
CACHE_AWARE_CHARS = 16  # the emulated radix tree's granularity (characters per node)


class CacheAwarePolicy(_Policy):
    """An emulation of sglang-router's (and vllm-router's) ``cache_aware`` policy with their defaults
    (``../shared/notes/peers.md``): when the router's in-flight counts are imbalanced
    (max - min > ``balance_abs`` and max > min x ``balance_rel``) the least-loaded worker; else the
    worker whose tree (every prompt routed there, by characters) matches the longest prefix, if it
    matches more than ``cache_threshold`` of the prompt; else the worker with the smallest tree. The
    tree is approximated by chained hashes of ``CACHE_AWARE_CHARS``-character chunks, never evicted
    (the routers evict every 120 s down to 2^26 nodes: nothing in a replay). A replay aid, not the
    peer itself: ``bench peers`` runs the real router."""

    name = CACHE_AWARE

    def __init__(self, cache_threshold: float = 0.3, balance_abs: int = 64, balance_rel: float = 1.5) -> None:
        self.cache_threshold = cache_threshold
        self.balance_abs = balance_abs
        self.balance_rel = balance_rel
        self.trees: list[set[int]] = []
        self.loads: list[int] = []
        self.picked: dict[str, int] = {}

    def pick(self, pool: _Pool, rid: str, prompt: str, priority: int = 0, lora: str | None = None) -> int | None:
        if not self.trees:
            self.trees = [set() for _ in pool.engines]
            self.loads = [0] * len(pool.engines)
        chunks: list[int] = []
        previous = hash(lora)
        for i in range(len(prompt) // CACHE_AWARE_CHARS):  # chained: a node stands for its whole prefix
            previous = hash((previous, prompt[i * CACHE_AWARE_CHARS : (i + 1) * CACHE_AWARE_CHARS]))
            chunks.append(previous)
        low, high = min(self.loads), max(self.loads)
        if high - low > self.balance_abs and high > low * self.balance_rel:
            index = self.loads.index(low)
        else:
            matched = [0] * len(self.trees)
            for i, tree in enumerate(self.trees):
                n = 0
                for h in chunks:
                    if h not in tree:
                        break
                    n += 1
                matched[i] = n
            best = max(matched)
            if prompt and best * CACHE_AWARE_CHARS / len(prompt) > self.cache_threshold:
                index = matched.index(best)
            else:
                sizes = [len(t) for t in self.trees]
                index = sizes.index(min(sizes))
        self.trees[index].update(chunks)
        self.loads[index] += 1
        self.picked[rid] = index
        return index

    def done(self, rid: str) -> None:
        index = self.picked.pop(rid, None)
        if index is not None:
            self.loads[index] -= 1


async def _turn(pool: _Pool, policy: _Policy, prompt: str, max_tokens: int, session: Session,
                result: ReplayResult) -> str | None:
    """One request; its answer, or None when it was shed."""
    loop = asyncio.get_running_loop()
    rid = uuid.uuid4().hex
    start = loop.time()
    priority = pool.priorities.get(session.objective, 0) if session.objective else 0
    lora = session.model
    if not await policy.admit(pool, rid, priority):  # flow control's 429
        result.shed.append(session.objective)
        result.flow_control_429 += 1
        return None
    picked = loop.time()
    index = policy.pick(pool, rid, prompt, priority, lora)
    if index is None:
        result.shed.append(session.objective)
        return None
    engine = pool.engines[index]
    tokens = tokenizer.count_tokens(prompt)
    namespace = lora or MODEL  # as the simulator's server: an adapter's blocks are its own
    seq = Sequence(rid, tokens, tokenizer.block_hashes(prompt, engine.kv.block_size, namespace), max_tokens,
                   "length", lora, tokenizer.prompt_fingerprint((prompt[:4096], str(len(prompt)))) % 997,
                   prompt_text=prompt, namespace=namespace)
    engine.submit(seq)
    await seq.wait(0)
    first = loop.time()
    outcome = TurnOutcome(first - start, tokens, seq.cached_tokens, index, session.group, session.objective,
                          start=start, request_id=rid, held=picked - start)
    result.outcomes.append(outcome)
    policy.started(rid)
    while not seq.done:
        await seq.wait(seq.generated)
    if seq.generated > 1:
        outcome.itl = (loop.time() - first) / (seq.generated - 1)
    outcome.end = loop.time()
    policy.done(rid)
    return tokenizer.output_text(seq.text_start, 0, seq.generated)


async def _run_session(pool: _Pool, policy: _Policy, session: Session, result: ReplayResult,
                       deadline: float | None = None) -> bool:
    """The session's turns in order; False when a turn was shed (the session ends there)."""
    loop = asyncio.get_running_loop()
    history = ""
    for i, turn in enumerate(session.turns):
        if i and turn.think_s:  # as the driver: a user thinking at the deadline does not hold the phase open
            await asyncio.sleep(turn.think_s if deadline is None else min(turn.think_s, max(0.0, deadline - loop.time())))
        if deadline is not None and loop.time() >= deadline:
            break
        prompt = session.prompt(history, i)
        answer = await _turn(pool, policy, prompt, turn.max_tokens, session, result)
        if answer is None:
            return False
        history = prompt + answer
    return True


async def _session(pool: _Pool, policy: _Policy, session: Session, result: ReplayResult) -> None:
    await asyncio.sleep(session.at)
    await _run_session(pool, policy, session, result)


async def _closed(pool: _Pool, policy: _Policy, workload: Workload, duration: float,
                  result: ReplayResult) -> None:
    """``workload.concurrency`` users take the sessions in order until ``duration`` model seconds,
    as the benchmark's driver (``driver.run_closed``): with objectives each user keeps one (user
    k that of session k) and takes the next session of it, and waits ``SHED_BACKOFF_S`` after a
    shed request."""
    loop = asyncio.get_running_loop()
    queues: dict[str | None, list[Session]] = {}
    for s in reversed(workload.sessions):
        queues.setdefault(s.objective if workload.objectives else None, []).append(s)
    classes = [s.objective if workload.objectives else None for s in workload.sessions[: workload.concurrency]]
    deadline = loop.time() + duration

    async def user(objective: str | None) -> None:
        queue = queues[objective]
        while queue and loop.time() < deadline:
            if not await _run_session(pool, policy, queue.pop(), result, deadline):
                await asyncio.sleep(SHED_BACKOFF_S)

    await asyncio.gather(*(user(c) for c in classes))


async def _replay(workload: Workload, policy: _Policy, seed: int, closed_s: float | None = None,
                  declared_slow_factor: float | None = None) -> ReplayResult:
    pool = _Pool(workload, seed, declared_slow_factor)
    for engine in pool.engines:
        engine.start()
    scrapers = [asyncio.create_task(pool.scrape(i)) for i in range(len(pool.engines))]
    result = ReplayResult(policy.name, priority=bool(workload.objectives))
    start = asyncio.get_running_loop().time()
    if closed_s is None:
        await asyncio.gather(*(_session(pool, policy, s, result) for s in workload.sessions))
        result.model_time = asyncio.get_running_loop().time() - start
        result.output_tokens = sum(e.stats.generation_tokens for e in pool.engines)
    else:  # the window's tokens, counted at its end (the benchmark's closed-loop rates)
        window_tokens: list[int] = []
        asyncio.get_running_loop().call_later(
            closed_s, lambda: window_tokens.append(sum(e.stats.generation_tokens for e in pool.engines)))
        await _closed(pool, policy, workload, closed_s, result)
        result.window = result.model_time = closed_s
        result.output_tokens = window_tokens[0] if window_tokens else sum(e.stats.generation_tokens for e in pool.engines)
    for task in scrapers:
        task.cancel()
    for engine in pool.engines:
        await engine.stop()
    return result


def replay(workload: Workload, policy_spec: str, seed: int = 1, closed_s: float | None = None, *,
           first_byte: bool = False, saturation: SaturationConfig | None = None,
           flow_control: FlowControlConfig | bool | None = None,
           declared_slow_factor: float | None = None) -> ReplayResult:
    """One policy (an EPP preset name, a config file, or ``oracle``) on ``workload``: its open-loop
    arrivals, or with ``closed_s`` its closed loop for that many model seconds. An EPP policy
    sheds sheddable requests as the EPP does with ``saturation`` (default: the EPP's defaults)
    and, with flow control (``flow_control`` None: the EPP's default, on for a profile with pick-time
    accounting; True: the EPP's ``--flow-control`` with its default queue and wait), admits requests through the EPP's flow control (a request that waits too long there
    is a 429: ``ReplayResult.flow_control_429``); the oracle and the cache-aware emulation, like
    the peers, shed and hold nothing."""
    suffix = {None: "", True: "+flow-control", False: "+no-flow-control"}.get(
        flow_control if not isinstance(flow_control, FlowControlConfig) else flow_control.enabled, "")
    if isinstance(flow_control, bool):
        flow_control = FlowControlConfig(enabled=flow_control)
    loop = VirtualTimeLoop()
    try:
        policy: _Policy
        if policy_spec == "oracle":
            policy = OraclePolicy(seed)
        elif policy_spec == CACHE_AWARE:
            policy = CacheAwarePolicy()
        else:
            text = PRESETS[policy_spec] if policy_spec in PRESETS else Path(policy_spec).read_text()
            name = policy_spec if policy_spec in PRESETS else Path(policy_spec).stem
            policy = EppPolicy(name + suffix, text, seed,
                               loop.time, first_byte, saturation, flow_control)
        return loop.run_until_complete(_replay(workload, policy, seed, closed_s, declared_slow_factor))
    finally:
        loop.close()


def main(argv: Seq[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infergate.bench.peers.replay",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--workload", default="shared-prefix-zipf")
    parser.add_argument("--policy", action="append", required=True,
                        help="an EPP preset name, an EndpointPickerConfig file, 'oracle', or 'sglang-cache-aware' "
                             "(an emulation of sglang-router's cache_aware policy with its defaults) (repeatable)")
    parser.add_argument("--duration", type=float, default=15.0, help="model seconds of arrivals")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="workload seeds seed..seed+N-1, each replayed")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--closed", action="store_true", help="the closed loop (fixed users) instead of arrivals")
    parser.add_argument("--declare-slow-speed-factor", type=float, default=None, metavar="X",
                        help="heterogeneous: the slow replicas' pods carry the label infergate.io/speed-factor=X "
                             "(default: no label)")
    parser.add_argument("--first-byte", action="store_true",
                        help="tell the EPP about each response's first bytes (Envoy's ext_proc response_body_mode "
                             "STREAMED; the production default, NONE, sends only headers and the end)")
    parser.add_argument("--sd-sheddable-max-inflight-per-endpoint", type=int, default=None, metavar="N",
                        help="the EPP's priority holdback (default: off, as the EPP's; 3 suits priority-mix)")
    parser.add_argument("--sd-sheddable-max-pending-prefill-tokens", type=int, default=None, metavar="T",
                        help="the EPP's prefill holdback (default: the EPP's, 512; 0 off)")
    parser.add_argument("--sd-sheddable-max-prefill-busy-fraction", type=float, default=None, metavar="F",
                        help="the EPP's prefill holdback over time (default: the EPP's, 0.5; 0 off)")
    parser.add_argument("--load", type=float, default=None, metavar="X",
                        help="priority-mix only: X times its calibrated capacity (default 1.5)")
    parser.add_argument("--sd-sheddable-ttft-objective", type=float, default=None, metavar="SECONDS",
                        help="the EPP's latency holdback on the pool's mean time to first token (default: off)")
    parser.add_argument("--sd-sheddable-itl-objective", type=float, default=None, metavar="SECONDS",
                        help="the EPP's latency holdback on the pool's mean inter-token latency (default: off)")
    parser.add_argument("--flow-control", action=argparse.BooleanOptionalAction, default=None,
                        help="the EPP's flow control (infergate epp --flow-control): requests wait in the EPP while "
                             "the pool has no headroom and are released as scrapes show it (default: the EPP's, on "
                             "for a profile with pick-time accounting, off for upstream's presets)")
    parser.add_argument("--flow-control-max-wait", type=float, default=FlowControlConfig.max_wait, metavar="SECONDS",
                        help="with --flow-control, the longest a request waits before its 429 (default: %(default)s)")
    parser.add_argument("--flow-control-placement", choices=PLACEMENTS, default=FlowControlConfig.placement,
                        help="with --flow-control, where an admitted request may go (infergate epp "
                             "--flow-control-placement; default: %(default)s)")
    parser.add_argument("--sd-max-pending-prefill-tokens", type=int, default=None, metavar="T",
                        help="the pick-time limit on an endpoint's pending prefill tokens (default: the EPP's, "
                             "2048 with pick-time accounting; 0 off): flow control's headroom")
    parser.add_argument("--sd-max-inflight-per-endpoint", type=int, default=None, metavar="N",
                        help="the pick-time limit on an endpoint's requests in flight (default: the EPP's, 64 with "
                             "pick-time accounting; 0 off)")
    parser.add_argument("--sd-queue-depth-threshold", type=int, default=SaturationConfig.queue_depth_threshold,
                        metavar="N", help="the saturation detector's waiting-queue threshold (default: %(default)s)")
    args = parser.parse_args(argv)

    def flow_control(spec: str) -> FlowControlConfig | bool | None:
        """The flags' flow control for ``spec``; unset: the EPP's default (on with pick-time accounting)."""
        if args.flow_control is None and args.flow_control_max_wait == FlowControlConfig.max_wait \
                and args.flow_control_placement == FlowControlConfig.placement:
            return None
        enabled = args.flow_control
        if enabled is None:  # a flow-control setting without --[no-]flow-control: the EPP's default for the profile
            enabled = spec not in ("oracle", CACHE_AWARE) and pick_time_producer(load_config_text(
                PRESETS[spec] if spec in PRESETS else Path(spec).read_text())) is not None
        return FlowControlConfig(enabled=enabled, max_wait=args.flow_control_max_wait,
                                 placement=args.flow_control_placement)

    saturation = SaturationConfig(queue_depth_threshold=args.sd_queue_depth_threshold,
                                  max_pending_prefill_tokens=args.sd_max_pending_prefill_tokens,
                                  max_inflight_per_endpoint=args.sd_max_inflight_per_endpoint,
                                  sheddable_max_inflight_per_endpoint=args.sd_sheddable_max_inflight_per_endpoint,
                                  sheddable_ttft_objective=args.sd_sheddable_ttft_objective,
                                  sheddable_itl_objective=args.sd_sheddable_itl_objective,
                                  sheddable_max_pending_prefill_tokens=args.sd_sheddable_max_pending_prefill_tokens,
                                  sheddable_max_prefill_busy_fraction=args.sd_sheddable_max_prefill_busy_fraction)
    if args.load is not None and args.workload != "priority-mix":
        parser.error("--load applies to --workload priority-mix only")
    print("| seed | policy | TTFT p50 | TTFT p90 | TTFT p99 | p90 after warm-up | goodput | served | shed | prefix hit | "
          "replicas/group | max share | out tok/s | flow-control 429 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for seed in range(args.seed, args.seed + args.seeds):
        workload = make(args.workload, args.duration, seed, args.replicas, closed=args.closed, load=args.load)
        for spec in args.policy:
            r = replay(workload, spec, seed, args.duration if args.closed else None, first_byte=args.first_byte,
                       saturation=saturation, flow_control=flow_control(spec),
                       declared_slow_factor=args.declare_slow_speed_factor)
            print(f"| {seed} | {r.policy} | {r.ttft(50):.3f} | {r.ttft(90):.3f} | {r.ttft(99):.3f} | "
                  f"{r.ttft_after_warmup(90):.3f} | {r.goodput:.2f} | {len(r.measured)} | {len(r.shed)} | {r.prefix_hit:.0%} | "
                  f"{r.replicas_per_group:.1f} | {r.max_share:.0%} | {r.tokens_per_s:.0f} | {r.flow_control_429} |", flush=True)


if __name__ == "__main__":
    main()
