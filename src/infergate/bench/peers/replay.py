"""Decision replay: a peer-benchmark workload against in-process simulated engines, on virtual time.

The same engines as ``infergate sim`` (``infergate.sim.engine``: step times, chunked prefill, the
prefix cache) and the same EPP scheduler plugins, but no processes, no HTTP and no wall clock: an
event loop whose clock jumps to the next timer (``VirtualTimeLoop``), so a 15-model-second
workload replays in a few seconds, the same way every time, whatever else the machine runs. What
it leaves out: Envoy and the network (a few ms of wall time), the scrape's transport (the
metrics are read straight from the engines every 50 ms of model time, at a random phase per
engine, as the EPP's scraper does), and the load generator's own delays; also slower replicas (``heterogeneous`` is refused) and
objectives (``priority-mix`` replays as plain traffic). The
EPP gets no first-bytes signals unless asked (``--first-byte``), like the production data
plane. Use it to compare scheduling configs and the oracle's choice on the same state;
confirm with ``bench peers``.

``python -m infergate.bench.peers.replay --workload shared-prefix-zipf --policy default
--policy oracle --policy my-config.yaml [--duration 15] [--seed 1] [--seeds 3]``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import selectors
import uuid
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infergate.bench.peers.oracle import choose
from infergate.bench.peers.workloads import PoolSpec, Session, Workload, make
from infergate.bench.stats import percentile
from infergate.epp.datastore import Endpoint
from infergate.epp.metrics_scraper import EndpointMetrics
from infergate.epp.scheduling import Candidate, Scheduler, SchedulingRequest, load_config_text
from infergate.epp.scheduling.config import PRESETS
from infergate.epp.scheduling.plugins.inflight import InflightLoadProducer
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


@dataclass
class ReplayResult:
    policy: str
    outcomes: list[TurnOutcome] = field(default_factory=list)
    model_time: float = 0.0
    output_tokens: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.model_time if self.model_time else float("nan")

    def ttft(self, q: float) -> float:
        return percentile([o.ttft for o in self.outcomes], q)

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
    def __init__(self, workload: Workload, seed: int) -> None:
        pool = workload.pool
        if pool.slow_replicas:
            raise ValueError(f"the replay does not model slower replicas ({workload.name})")
        config = SimConfig(model=MODEL, profile=pool.profile, num_gpu_blocks=pool.num_gpu_blocks,
                           mean_output_tokens=0, seed=seed, **_lora_config(pool))
        profile = config.latency_profile()
        self.engines = [Engine(config, profile, seed=seed + i) for i in range(pool.replicas)]
        self.endpoints = [Endpoint(f"sim-{i}", f"10.0.0.{i + 1}", 8000) for i in range(pool.replicas)]
        self.metrics: list[EndpointMetrics | None] = [None] * pool.replicas
        self.rng = random.Random(seed)

    async def scrape(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.rng.uniform(0, SCRAPE_INTERVAL_S))
        engine = self.engines[i]
        while True:
            self.metrics[i] = EndpointMetrics(waiting_queue=len(engine.waiting), running=len(engine.running),
                                              kv_cache_usage=engine.kv.usage, update_time=loop.time(),
                                              **_lora_metrics(engine, self.metrics[i]))
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

    def pick(self, pool: _Pool, rid: str, prompt: str, lora: str | None = None) -> int:
        raise NotImplementedError

    def started(self, rid: str) -> None:
        pass

    def done(self, rid: str) -> None:
        pass


class EppPolicy(_Policy):
    def __init__(self, name: str, text: str, seed: int, clock: Callable[[], float], first_byte: bool = False) -> None:
        self.name = name
        # the production data plane does not send response bodies to the EPP (ext_proc
        # response_body_mode NONE): no first-byte signal, only the end of the request
        self.first_byte = first_byte
        self.scheduler: Scheduler = load_config_text(text, seed=seed)
        for plugin in self.scheduler.plugins.values():  # pick and end times on the scrapes' clock
            if isinstance(plugin, InflightLoadProducer):
                plugin.load.clock = clock

    def pick(self, pool: _Pool, rid: str, prompt: str, lora: str | None = None) -> int:
        cands = [Candidate(e, m) for e, m in zip(pool.endpoints, pool.metrics, strict=True)]
        request = SchedulingRequest(rid, lora or MODEL, prompt)  # the request's model: the adapter's name
        result, state = self.scheduler.schedule(request, cands)
        self.scheduler.pre_request(state, request, result)
        chosen = result.primary.targets[0].hostport
        return next(i for i, e in enumerate(pool.endpoints) if f"{e.address}:{e.port}" == chosen)

    def started(self, rid: str) -> None:
        if self.first_byte:
            self.scheduler.response_started(rid)

    def done(self, rid: str) -> None:
        self.scheduler.request_done(rid, True)


class OraclePolicy(_Policy):
    """The benchmark oracle's choice (``oracle.choose``) on the engines' true state."""

    name = "oracle"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, pool: _Pool, rid: str, prompt: str, lora: str | None = None) -> int:
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


async def _turn(pool: _Pool, policy: _Policy, prompt: str, max_tokens: int, group: int,
                out: list[TurnOutcome], lora: str | None = None) -> str:
    loop = asyncio.get_running_loop()
    rid = uuid.uuid4().hex
    start = loop.time()
    index = policy.pick(pool, rid, prompt, lora)
    engine = pool.engines[index]
    tokens = tokenizer.count_tokens(prompt)
    namespace = lora or MODEL  # as the simulator's server: an adapter's blocks are its own
    seq = Sequence(rid, tokens, tokenizer.block_hashes(prompt, engine.kv.block_size, namespace), max_tokens,
                   "length", lora, tokenizer.prompt_fingerprint((prompt[:4096], str(len(prompt)))) % 997,
                   prompt_text=prompt, namespace=namespace)
    engine.submit(seq)
    await seq.wait(0)
    out.append(TurnOutcome(loop.time() - start, tokens, seq.cached_tokens, index, group))
    policy.started(rid)
    while not seq.done:
        await seq.wait(seq.generated)
    policy.done(rid)
    return tokenizer.output_text(seq.text_start, 0, seq.generated)


async def _session(pool: _Pool, policy: _Policy, session: Session, out: list[TurnOutcome]) -> None:
    await asyncio.sleep(session.at)
    history = ""
    for i, turn in enumerate(session.turns):
        if i and turn.think_s:
            await asyncio.sleep(turn.think_s)
        prompt = session.prompt(history, i)
        history = prompt + await _turn(pool, policy, prompt, turn.max_tokens, session.group, out, session.model)


async def _closed(pool: _Pool, policy: _Policy, workload: Workload, duration: float,
                  out: list[TurnOutcome]) -> None:
    """``workload.concurrency`` users take the sessions in order until ``duration`` model seconds."""
    loop = asyncio.get_running_loop()
    queue = list(reversed(workload.sessions))
    deadline = loop.time() + duration

    async def user() -> None:
        while queue and loop.time() < deadline:
            session = queue.pop()
            history = ""
            for i, turn in enumerate(session.turns):
                if i and turn.think_s:
                    await asyncio.sleep(turn.think_s)
                if loop.time() >= deadline:
                    break
                prompt = session.prompt(history, i)
                history = prompt + await _turn(pool, policy, prompt, turn.max_tokens, session.group, out,
                                               session.model)

    await asyncio.gather(*(user() for _ in range(workload.concurrency)))


async def _replay(workload: Workload, policy: _Policy, seed: int, closed_s: float | None = None) -> ReplayResult:
    pool = _Pool(workload, seed)
    for engine in pool.engines:
        engine.start()
    scrapers = [asyncio.create_task(pool.scrape(i)) for i in range(len(pool.engines))]
    result = ReplayResult(policy.name)
    start = asyncio.get_running_loop().time()
    if closed_s is None:
        await asyncio.gather(*(_session(pool, policy, s, result.outcomes) for s in workload.sessions))
    else:
        await _closed(pool, policy, workload, closed_s, result.outcomes)
    result.model_time = asyncio.get_running_loop().time() - start
    result.output_tokens = sum(e.stats.generation_tokens for e in pool.engines)
    for task in scrapers:
        task.cancel()
    for engine in pool.engines:
        await engine.stop()
    return result


def replay(workload: Workload, policy_spec: str, seed: int = 1, closed_s: float | None = None, *,
           first_byte: bool = False) -> ReplayResult:
    """One policy (an EPP preset name, a config file, or ``oracle``) on ``workload``: its open-loop
    arrivals, or with ``closed_s`` its closed loop for that many model seconds."""
    loop = VirtualTimeLoop()
    try:
        policy: _Policy
        if policy_spec == "oracle":
            policy = OraclePolicy(seed)
        else:
            text = PRESETS[policy_spec] if policy_spec in PRESETS else Path(policy_spec).read_text()
            policy = EppPolicy(policy_spec if policy_spec in PRESETS else Path(policy_spec).stem, text, seed,
                               loop.time, first_byte)
        return loop.run_until_complete(_replay(workload, policy, seed, closed_s))
    finally:
        loop.close()


def main(argv: Seq[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infergate.bench.peers.replay",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--workload", default="shared-prefix-zipf")
    parser.add_argument("--policy", action="append", required=True,
                        help="an EPP preset name, an EndpointPickerConfig file, or 'oracle' (repeatable)")
    parser.add_argument("--duration", type=float, default=15.0, help="model seconds of arrivals")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="workload seeds seed..seed+N-1, each replayed")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--closed", action="store_true", help="the closed loop (fixed users) instead of arrivals")
    parser.add_argument("--first-byte", action="store_true",
                        help="tell the EPP about each response's first bytes (Envoy's ext_proc response_body_mode "
                             "STREAMED; the production default, NONE, sends only headers and the end)")
    args = parser.parse_args(argv)
    print("| seed | policy | TTFT p50 | TTFT p90 | TTFT p99 | prefix hit | replicas/group | max share | out tok/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in range(args.seed, args.seed + args.seeds):
        workload = make(args.workload, args.duration, seed, args.replicas, closed=args.closed)
        for spec in args.policy:
            r = replay(workload, spec, seed, args.duration if args.closed else None, first_byte=args.first_byte)
            print(f"| {seed} | {r.policy} | {r.ttft(50):.3f} | {r.ttft(90):.3f} | {r.ttft(99):.3f} | "
                  f"{r.prefix_hit:.0%} | {r.replicas_per_group:.1f} | {r.max_share:.0%} | {r.tokens_per_s:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
