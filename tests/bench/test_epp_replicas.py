"""The EPP-replicas benchmark's analysis: the knee of a load run and the prefix-affinity
measure (pure functions, no processes)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from infergate.bench.epp_replicas_analysis import (
    Step,
    affinity_loss,
    find_knee,
    follows,
    percentile,
    session_sequence,
    simulated_cache_hits,
)
from infergate.bench.epp_replicas_report import report_text, with_knees


def _step(offered: float, achieved: float, p50: float = 1.0, p99: float = 5.0) -> Step:
    return Step(offered, offered, achieved, p50, p99)


# ---- percentile ------------------------------------------------------------------------------------

def test_percentile_nearest_rank() -> None:
    samples = [float(x) for x in range(1, 101)]  # 1..100
    assert percentile(samples, 0.5) == 50.0
    assert percentile(samples, 0.99) == 99.0
    assert percentile(samples, 1.0) == 100.0
    assert percentile(list(reversed(samples)), 0.5) == 50.0  # order does not matter
    assert percentile([], 0.5) == 0.0
    assert percentile([7.0], 0.99) == 7.0


# ---- the knee ------------------------------------------------------------------------------------

def test_knee_is_the_last_step_before_the_rate_stops_following() -> None:
    steps = [_step(200, 200), _step(400, 398), _step(600, 590), _step(800, 650), _step(1000, 660)]
    knee = find_knee(steps)
    assert knee.index == 2
    assert knee.achieved == 590
    assert knee.ceiling == 660  # the most answered at any step, past the knee
    assert "800" in knee.reason and "650" in knee.reason


def test_knee_when_the_median_latency_explodes_before_the_rate_drops() -> None:
    steps = [_step(200, 200, p50=0.8), _step(400, 400, p50=1.2), _step(600, 600, p50=3.9), _step(800, 790, p50=45.0)]
    knee = find_knee(steps)
    assert knee.index == 2
    assert "p50 45.0 ms" in knee.reason


def test_p99_jitter_alone_is_not_saturation() -> None:
    # a shared machine: the p99 jumps at a low rate, the median and the rate hold
    steps = [_step(200, 200, p50=0.8, p99=2.0), _step(400, 400, p50=0.9, p99=60.0), _step(600, 600, p50=1.0, p99=9.0)]
    assert find_knee(steps).index == 2
    assert find_knee(steps).reason == ""


def test_latency_floor_keeps_small_absolute_rises_from_counting() -> None:
    # 0.5 ms -> 4 ms is 8x but under the 5 ms floor: still following
    assert follows(_step(400, 400, p50=4.0), reference_p50_ms=0.5) == ""
    assert follows(_step(400, 400, p50=6.0), reference_p50_ms=0.5) != ""
    # a slow unloaded reference raises the limit to 5x it
    assert follows(_step(400, 400, p50=12.0), reference_p50_ms=3.0) == ""
    assert follows(_step(400, 400, p50=16.0), reference_p50_ms=3.0) != ""


def test_a_lucky_step_after_the_first_failure_does_not_move_the_knee() -> None:
    steps = [_step(200, 200), _step(400, 300), _step(600, 600)]
    knee = find_knee(steps)
    assert knee.index == 0
    assert knee.ceiling == 600


def test_knee_edge_cases() -> None:
    assert find_knee([]).index == -1
    first_fails = find_knee([_step(200, 100), _step(400, 120)])
    assert first_fails.index == -1 and first_fails.achieved == 0.0 and first_fails.ceiling == 120
    all_follow = find_knee([_step(200, 200), _step(400, 399)])
    assert all_follow.index == 1 and all_follow.reason == ""
    with pytest.raises(ValueError, match="increasing"):
        find_knee([_step(400, 400), _step(200, 200)])


# ---- prefix affinity ------------------------------------------------------------------------------

def test_one_sticky_picker_hits_every_possible_request() -> None:
    prefixes = [0, 1, 0, 2, 1, 0, 2]
    picks = ["a", "b", "a", "c", "b", "a", "c"]
    affinity = simulated_cache_hits(prefixes, picks)
    assert (affinity.requests, affinity.hits, affinity.possible) == (7, 4, 4)
    assert affinity.hit_rate == pytest.approx(4 / 7)
    assert affinity.hit_rate_of_possible == 1.0
    assert affinity.copies == 1.0


def test_replicas_placing_a_prefix_apart_lose_hits_and_copy_it() -> None:
    # round robin over two replicas, each sticky to its own endpoint: every prefix is
    # placed twice, the second replica's first request of a prefix misses
    prefixes = [0, 0, 0, 0, 1, 1, 1, 1]
    picks = ["a", "b", "a", "b", "a", "b", "a", "b"]
    affinity = simulated_cache_hits(prefixes, picks)
    assert affinity.possible == 6
    assert affinity.hits == 4
    assert affinity.copies == 2.0
    single = simulated_cache_hits(prefixes, ["a"] * 8)
    assert single.hits == 6
    assert affinity_loss(single, affinity) == pytest.approx(1 - 4 / 6)


def test_a_hit_needs_the_same_prefix_on_the_same_endpoint() -> None:
    # the endpoint holds another prefix: a miss; the same prefix elsewhere: a miss
    affinity = simulated_cache_hits([0, 1, 1], ["a", "a", "b"])
    assert affinity.hits == 0
    assert affinity.possible == 1


def test_affinity_loss_edge_cases() -> None:
    none = simulated_cache_hits([0, 1], ["a", "b"])
    assert none.hits == 0
    assert affinity_loss(none, none) == 0.0  # nothing to lose
    empty = simulated_cache_hits([], [])
    assert (empty.hit_rate, empty.hit_rate_of_possible, empty.copies) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="2 prefixes but 1 picks"):
        simulated_cache_hits([0, 1], ["a"])


def test_session_sequence_has_each_prefix_turns_times() -> None:
    sequence = session_sequence(25, 4, random.Random(3))
    assert len(sequence) == 100
    assert all(sequence.count(p) == 4 for p in range(25))
    assert sequence != sorted(sequence)  # interleaved
    assert sequence == session_sequence(25, 4, random.Random(3))  # reproducible


# ---- the report -----------------------------------------------------------------------------------

def _results() -> dict[str, object]:
    def steps(cores: list[float]) -> list[dict[str, object]]:
        return [{"offered": o, "sent": o, "achieved": a, "p50_ms": p50, "p99_ms": 3 * p50, "epp_cores": cores,
                 "client_cores": 0.5, "errors": 0} for o, a, p50 in ((200, 200, 1.0), (400, 400, 1.5), (600, 450, 30.0))]

    def affinity(replicas: int, hits: int) -> dict[str, object]:
        return {"replicas": replicas, "requests": 8, "prefixes": 2, "hits": hits, "possible": 6,
                "hit_rate": hits / 8, "hit_rate_of_possible": hits / 6, "copies_per_prefix": float(replicas),
                "loss_vs_one": 1 - hits / 6}

    return {
        "machine": {"cpus": 2, "load_average_start": [1.0, 1.0, 1.0], "load_average_end": [2.0, 2.0, 2.0]},
        "settings": {"endpoints": 8, "step_seconds": 3, "turns": 4},
        "replicas": [{"replicas": n, "steps": steps([0.6 / n] * n), "knee": {}, "scrapes_per_s": 160.0 * n,
                      "scrapes_per_s_per_model_server": 20.0 * n, "scrapes_per_s_expected": 160.0 * n,
                      "idle_metrics_server_cores": 0.01, "idle_epp_cores": [0.02] * n} for n in (1, 2)],
        "affinity": {"sessions": [affinity(1, 6), affinity(2, 4)]},
    }


def test_report_states_the_knee_per_replica_count_and_the_losses() -> None:
    text = report_text(with_knees(_results()))  # type: ignore[arg-type]
    assert "| 1 | 400 | 400 | 1.50 | 4.50 | 0.60 | 0.50 | 667 | 450 |" in text
    assert "| 2 | 400 | 400 | 1.50 | 4.50 | 0.30/0.30 |" in text
    assert "at 600 req/s: answered 450 of 600 req/s offered" in text
    assert "| sessions (a prefix per conversation, 4 requests each) | 2 |" in text
    assert "| 33% |" in text  # 1 - 4/6
    assert "| 2 | 320 | 40.0 | 40 |" in text  # scrapes: twice one replica's
    assert "Active-passive" in text and "--ha-enable-leader-election" in text
    assert "one EPP process answered 400 req/s at its knee" in text
    assert "about 667 req/s per core of EPP CPU" in text


# ---- the pick read back from the EPP's reply ----------------------------------------------------------

def test_picked_endpoint_reads_the_epps_body_reply() -> None:
    from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

    from infergate.bench.epp_replicas import picked_endpoint
    from infergate.epp.extproc.messages import body_routing_reply

    assert picked_endpoint(body_routing_reply("10.0.0.7:8000")) == "10.0.0.7:8000"
    # fallbacks after the primary: the primary is the pick
    assert picked_endpoint(body_routing_reply("10.0.0.7:8000,10.0.0.8:8000")) == "10.0.0.7:8000"
    with pytest.raises(RuntimeError, match="names no endpoint"):
        picked_endpoint(pb.ProcessingResponse(request_body=pb.BodyResponse()))


# ---- pick sharing ----------------------------------------------------------------------------------

def test_each_replica_shares_with_every_other_one() -> None:
    from infergate.bench.epp_replicas import pick_sharing_flags, sharing_variants

    assert pick_sharing_flags([7001, 7002, 7003]) == [
        ["--pick-sharing-port", "7001", "--pick-sharing-peers", "127.0.0.1:7002,127.0.0.1:7003"],
        ["--pick-sharing-port", "7002", "--pick-sharing-peers", "127.0.0.1:7001,127.0.0.1:7003"],
        ["--pick-sharing-port", "7003", "--pick-sharing-peers", "127.0.0.1:7001,127.0.0.1:7002"]]
    assert sharing_variants(1, "both") == [False]  # one replica has no one to share with
    assert sharing_variants(1, "on") == [False]
    assert sharing_variants(2, "both") == [False, True]
    assert sharing_variants(3, "off") == [False] and sharing_variants(3, "on") == [True]


def test_report_sets_pick_sharing_against_the_same_replicas_without_it() -> None:
    results = _results()
    runs = results["replicas"]
    assert isinstance(runs, list)
    shared = {**runs[1], "pick_sharing": True}
    shared["steps"] = [{**s, "achieved": s["offered"] if s["offered"] < 600 else 420} for s in runs[1]["steps"]]
    runs.append(shared)
    affinity = results["affinity"]
    assert isinstance(affinity, dict)
    affinity["sessions"].append({**affinity["sessions"][1], "pick_sharing": True, "hits": 6, "hit_rate": 6 / 8,
                                 "hit_rate_of_possible": 1.0, "copies_per_prefix": 1.0, "loss_vs_one": 0.0})
    text = report_text(with_knees(results))  # type: ignore[arg-type]
    assert "| 2, picks shared | 400 | 400 | 1.50 | 4.50 | 0.30/0.30 |" in text  # its knee row
    assert "| sessions (a prefix per conversation, 4 requests each) | 2, picks shared | 8 | 2 | 6 |" in text
    assert "| 2 | 320 | 40.0 | 40 |" in text and "| 2, picks shared | 320 | 40.0 | 40 |" in text
    assert ("- 2 replicas: sessions: loss 33% -> 0%, copies per prefix 2.00 -> 1.00; ceiling 450 -> 420 req/s"
            in text)


@pytest.mark.e2e
@pytest.mark.timeout(90)
async def test_two_replicas_sharing_picks_follow_each_others_prefixes(tmp_path: Path) -> None:
    """The benchmark's sessions workload on two real EPPs sharing their picks: a conversation's
    turns alternate between the replicas, and each turn follows the prefix the other replica
    placed. 60 ms between requests, more than a scrape interval: a peer's pick then counts as the
    endpoint's load no longer (the static pool's scrapes never show it), so what is measured is the
    shared index alone (back to back, the pending prefill of several peer picks on one endpoint
    can make the affinity filter spread a prefix, as it should under load). Without sharing, the
    same sequence got 8 misses of 24-36 possible (78%): each replica places a conversation on
    its own endpoint."""
    import random

    from infergate.bench.epp_cost import MetricsServer, _start_epp, loopback_addresses
    from infergate.bench.epp_replicas import affinity_workloads, pick_sharing_flags, picks_for
    from infergate.bench.topology import PortPool

    ports = PortPool()
    rng = random.Random(5)
    server = MetricsServer(loopback_addresses(4, rng), ports(), tmp_path)
    await server.start()
    epps = []
    try:
        flags = pick_sharing_flags([ports(), ports()])
        for i in range(2):
            epps.append(await _start_epp(tmp_path, ports, server, 4, f"epp-{i}", extra=flags[i]))
        await asyncio.sleep(1.5)  # scraped, and the subscriptions joined (ZMQ's slow joiner)
        sequence, bodies = affinity_workloads(32, 4, seed=5)["sessions"]
        picks = await picks_for(epps, bodies, first_id=1, gap_s=0.06)
    finally:
        for epp in epps:
            await epp.stop()
        await server.process.stop()
    affinity = simulated_cache_hits(sequence, picks)
    assert affinity.possible == 24
    assert affinity.hit_rate_of_possible >= 0.95, (affinity, picks)
    assert affinity.copies < 1.1, affinity
