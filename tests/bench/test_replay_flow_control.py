"""The decision replay with the EPP's flow control (``replay(..., flow_control=True)``, ``--flow-control``)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from infergate.bench.peers.replay import EppPolicy, VirtualTimeLoop, _Pool, _replay, main, replay
from infergate.bench.peers.workloads import PoolSpec, Session, Turn, Workload, make
from infergate.epp.flowcontrol import FlowControlConfig, FlowController
from infergate.epp.scheduling.config import PRESETS
from infergate.sim import tokenizer


def _cold_burst(users: int, replicas: int = 2, slow: int = 1, groups: int | None = None) -> Workload:
    """``users`` requests at t = 0, each with its own ~3,000-token system prompt (cold caches)."""
    groups = users if groups is None else groups
    prefixes = [f"system prompt {g}: " + " ".join(f"rule{g}x{i}" for i in range(1500)) for g in range(groups)]
    sessions = tuple(Session(0.0, prefixes[u % groups], (Turn(f" question {u}?", 16),), group=u % groups)
                     for u in range(users))
    return Workload("cold-burst", "a cold burst", sessions, users, pool=PoolSpec(replicas=replicas, slow_replicas=slow))


def test_the_idle_pool_scrape_precedes_the_first_pick_so_a_t0_burst_counts_its_pending_prefill() -> None:
    """The EPP scraped the idle pool before the first request, and a vLLM (or the simulator) page has
    the TTFT histogram's count (0) from the start. The replay's idle scrape was taken at t = 0, the
    time of the burst's picks, without that count: the pick-time accounting then read every pick at
    t = 0 as admitted by the server (``pending_after_scrape``) and the burst's prefill as done."""
    workload = _cold_burst(1)
    pool = _Pool(workload, 1)
    loop = VirtualTimeLoop()
    try:
        policy = EppPolicy("default", PRESETS["default"], 1, loop.time)
        prompt = workload.sessions[0].prompt("", 0)

        async def pick() -> int | None:
            return policy.pick(pool, "r1", prompt)

        index = loop.run_until_complete(pick())
    finally:
        loop.close()
    assert index is not None and loop.time() == 0.0
    hostport = pool.endpoints[index].hostport
    detector = policy._detector(pool)
    assert detector.load is not None
    _, pending = detector.load(hostport, pool.store.fresh(hostport, 0.0))
    assert pending > 0.9 * tokenizer.count_tokens(prompt)


def test_flow_control_holds_a_cold_burst_and_the_fast_replica_takes_more_of_it() -> None:
    """16 cold ~3,900-token prompts at t = 0 on a fast and a slow replica (twice the step time).
    Without flow control the burst is placed at once, evenly; with it an endpoint whose pending
    prefill is over the pick-time limit (2,048 tokens) has no headroom, so after one prompt each the
    rest wait in the EPP and are released as the scrapes show the endpoints' prefills done: the
    fast replica, done first, takes more."""
    workload = _cold_burst(16)
    off = replay(workload, "default", 1, flow_control=False)
    on = replay(workload, "default", 1, flow_control=True)
    assert on.policy == "default+flow-control" and off.policy == "default+no-flow-control"
    default = replay(workload, "default", 1)  # the EPP's default for this profile: flow control on
    assert default.policy == "default" and [o.held for o in default.outcomes] == [o.held for o in on.outcomes]
    assert all(o.held == 0 for o in off.outcomes)
    held = [o for o in on.outcomes if o.held > 0]
    assert len(held) >= len(on.outcomes) // 2  # most of the burst waited
    assert sorted(Counter(o.replica for o in on.outcomes[:2]).values()) == [1, 1]  # one each at once
    fast_off = sum(1 for o in off.outcomes if o.replica == 0)
    fast_on = sum(1 for o in on.outcomes if o.replica == 0)
    assert fast_on > fast_off
    assert sum(1 for o in held if o.replica == 0) > sum(1 for o in held if o.replica == 1)
    # every request is served (nothing waits 30 s here), and the same way for the seed
    assert len(on.outcomes) == workload.requests and not on.shed and on.flow_control_429 == 0
    again = replay(workload, "default", 1, flow_control=True)
    assert [(o.ttft, o.replica, o.held) for o in again.outcomes] == [(o.ttft, o.replica, o.held) for o in on.outcomes]


def test_requests_that_wait_too_long_are_429s_and_none_is_lost() -> None:
    workload = _cold_burst(16)
    result = replay(workload, "default", 1, flow_control=FlowControlConfig(enabled=True, max_wait=0.3))
    assert result.flow_control_429 > 0
    assert len(result.shed) == result.flow_control_429  # nothing else sheds here (no sheddable objective)
    assert len(result.outcomes) + len(result.shed) == workload.requests
    assert all(o.held <= 0.3 for o in result.outcomes)


def test_held_requests_are_released_when_the_director_would_wake_flow_control(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production FlowController, notified on each scrape (the Director's ``_on_scrape``) and each
    request's end (``on_request_done``): a held request is picked at a moment one of those released
    it, and none is left waiting or accounted when the replay ends."""
    workload = _cold_burst(12)
    releases: list[float] = []
    notify = FlowController.notify

    def recording(self: FlowController) -> None:
        before = self.queue_size
        notify(self)
        if self.queue_size < before:
            releases.append(asyncio.get_running_loop().time())

    monkeypatch.setattr(FlowController, "notify", recording)
    loop = VirtualTimeLoop()
    try:
        policy = EppPolicy("default", PRESETS["default"], 1, loop.time, flow_control=FlowControlConfig(enabled=True))
        result = loop.run_until_complete(_replay(workload, policy, 1))
    finally:
        loop.close()
    held = [o for o in result.outcomes if o.held > 0]
    assert held and releases
    assert all(any(abs(o.start + o.held - t) < 1e-9 for t in releases) for o in held)
    assert policy.flow is not None and policy.flow.queue_size == 0 and policy.flow.admitted == workload.requests
    assert not policy.inflight and not policy.picked  # every pick's accounting ended
    assert len(result.outcomes) == workload.requests


def test_the_oracle_and_the_cache_aware_emulation_ignore_flow_control() -> None:
    workload = make("heterogeneous", 2.0, 1, 4, closed=True)
    for spec in ("oracle", "sglang-cache-aware"):
        off = replay(workload, spec, 1, 2.0)
        on = replay(workload, spec, 1, 2.0, flow_control=True)
        assert [(o.ttft, o.replica) for o in on.outcomes] == [(o.ttft, o.replica) for o in off.outcomes]
        assert all(o.held == 0 for o in on.outcomes)


def test_the_cli_replays_with_flow_control(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--workload", "heterogeneous", "--duration", "1", "--policy", "default", "--flow-control",
          "--sd-max-pending-prefill-tokens", "4096"])
    out = capsys.readouterr().out
    assert "| 1 | default+flow-control |" in out and "flow-control 429" in out


def test_scheduler_placement_keeps_prefix_affinity_that_headroom_placement_breaks() -> None:
    """``--flow-control-placement scheduler``: the hold without the placement rule. On the
    heterogeneous closed loop the headroom rule sends turns away from their prefix's replica; the
    scheduler placement keeps them (more prefix hits) and the same requests are served."""
    workload = make("heterogeneous", 6.0, 11, 4, closed=True)
    results = {placement: replay(workload, "default", 11, 6.0,
                                 flow_control=FlowControlConfig(enabled=True, placement=placement))
               for placement in ("headroom", "scheduler")}
    headroom, scheduler = results["headroom"], results["scheduler"]
    assert not headroom.shed and not scheduler.shed
    assert scheduler.prefix_hit > headroom.prefix_hit + 0.02, (scheduler.prefix_hit, headroom.prefix_hit)
