"""Pick sharing between EPP replicas active-active (epp/pick_sharing.py): the wire format and its
bounds, applying a peer's pick to the prefix index, the hook in prefix-cache-scorer, peers that
resolve to changing addresses, and two replicas' indexes converging over real ZMQ sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from prometheus_client import CollectorRegistry

from infergate.epp.build import build_epp
from infergate.epp.datastore import Endpoint
from infergate.epp.options import EPPOptions
from infergate.epp.pick_sharing import (
    MAX_HASHES,
    TOPIC,
    Pick,
    PickSharing,
    PickSharingError,
    decode,
    encode,
    parse_peer,
)
from infergate.epp.scheduling.framework import (
    Candidate,
    CycleState,
    ProfileResult,
    SchedulingRequest,
    SchedulingResult,
)
from infergate.epp.scheduling.plugins.prefix import PrefixCacheScorer
from infergate.util.net import free_port

PROMPT = "You are a careful reviewer of restaurant food; answer briefly and kindly. " * 20


def _pick(**changes: Any) -> Pick:
    fields: dict[str, Any] = {"sender": b"peer-one", "plugin": "prefix-cache-scorer", "block_size": 64,
                              "endpoint": "10.0.0.2:8000", "hashes": [11, 22, 33], "prompt_chars": 4000}
    return Pick(**{**fields, **changes})


def _with_pool(parts: Any, *ips: str) -> None:
    """A pool whose pods are ``ips`` (port 8000) in a built EPP's datastore."""
    from infergate.epp.datastore import PodInfo, PoolInfo

    parts.datastore.set_pool(PoolInfo("pool", selector={"app": "vllm"}, target_ports=(8000,)))
    parts.datastore.replace_pods([PodInfo(f"pod-{i}", ip, {"app": "vllm"}) for i, ip in enumerate(ips)])


def test_a_pick_round_trips_and_malformed_messages_are_refused() -> None:
    pick = _pick()
    assert decode(encode(pick)) == pick
    body = encode(pick)[1]
    assert decode([b"other.topic", body]) is None
    assert decode([TOPIC]) is None
    assert decode([TOPIC, b"\xc1not msgpack"]) is None
    assert decode([TOPIC, msgpack.packb([b"s", "p", 64, "e", [1], 10])]) == Pick(b"s", "p", 64, "e", [1], 10)
    for bad in ([b"s", "p", 64, "e", [1]], [b"s", "p", 64, "e", [1, True], 10], [b"s", "p", 0, "e", [1], 10],
                [b"s", 7, 64, "e", [1], 10], [b"s", "p", 64, "e" * 300, [1], 10], [b"s", "p", 64, "e", [1.5], 10],
                [b"s", "p", 64, "e", [1], -1], [b"s", "p", 64, "e", [1], "10"], {"sender": b"s"}):
        assert decode([TOPIC, msgpack.packb(bad)]) is None, bad
    assert decode(encode(_pick(hashes=list(range(MAX_HASHES))))) is not None
    assert decode(encode(_pick(hashes=list(range(MAX_HASHES + 1))))) is None


def test_peer_entries_are_host_and_port() -> None:
    assert parse_peer("epp-peers.ns.svc:5559") == ("epp-peers.ns.svc", 5559)
    assert parse_peer("[::1]:5559") == ("::1", 5559)
    for bad in ("no-port", ":5559", "host:0", "host:99999", "host:port"):
        with pytest.raises(PickSharingError, match="is not HOST:PORT"):
            parse_peer(bad)


def _sharing(scorer: PrefixCacheScorer, **kwargs: Any) -> PickSharing:
    return PickSharing({"prefix-cache-scorer": scorer}, bind_host="127.0.0.1", port=free_port(),
                       registry=CollectorRegistry(), **kwargs)


def test_a_peers_pick_is_added_to_the_index_and_others_are_counted_apart() -> None:
    scorer = PrefixCacheScorer("prefix-cache-scorer")
    sharing = _sharing(scorer)
    assert sharing.apply(encode(_pick(block_size=scorer.block_size))) == "applied"
    assert scorer.indexer.match_longest_prefix([11, 22, 33, 44]) == {"10.0.0.2:8000": 3}
    assert sharing.apply(encode(_pick(sender=sharing.sender, endpoint="10.0.0.9:8000"))) == "own"
    assert sharing.apply(encode(_pick(plugin="other", endpoint="10.0.0.9:8000"))) == "mismatch"
    assert sharing.apply(encode(_pick(block_size=scorer.block_size * 2, endpoint="10.0.0.9:8000"))) == "mismatch"
    assert sharing.apply([TOPIC, b"junk"]) == "malformed"
    assert scorer.indexer.match_longest_prefix([11]) == {"10.0.0.2:8000": 1}  # none of the others applied
    assert sharing.received.labels("applied")._value.get() == 1
    assert sharing.received.labels("mismatch")._value.get() == 2
    # an endpoint that is not in this EPP's pool: dropped (the index only holds endpoints it can pick)
    sharing.known_endpoint = lambda hostport: hostport == "10.0.0.2:8000"
    assert sharing.apply(encode(_pick(block_size=scorer.block_size, endpoint="10.9.9.9:8000"))) == "unknown_endpoint"
    assert "10.9.9.9:8000" not in scorer.indexer.match_longest_prefix([11])


def test_prefix_cache_scorer_tells_its_hook_what_it_indexed() -> None:
    scorer = PrefixCacheScorer("prefix-cache-scorer")
    told: list[tuple[list[int], str, int]] = []
    scorer.on_indexed = lambda hashes, endpoint, chars: told.append((hashes, endpoint, chars))
    target = Candidate(Endpoint("pod-1", "10.0.0.5", 8000))
    request = SchedulingRequest("r", "m", PROMPT, {}, {"model": "m", "prompt": PROMPT})
    scorer.pre_request(CycleState(), request, SchedulingResult({"default": ProfileResult([target])}, "default"))
    [(hashes, endpoint, chars)] = told
    assert endpoint == "10.0.0.5:8000" and len(hashes) > 10 and chars == len(PROMPT)
    assert scorer.indexer.match_longest_prefix(hashes) == {endpoint: len(hashes)}


async def test_peers_are_resolved_again_and_followed() -> None:
    answers = {"epp-peers": ["127.0.0.1"]}

    async def resolver(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError("no such host")
        return answers[host]

    sharing = _sharing(PrefixCacheScorer("prefix-cache-scorer"), peers=["epp-peers:5601", "later:5602"],
                       resolver=resolver, resolve_interval_s=3600)
    await sharing.start()
    try:
        assert sharing.connected == {"tcp://127.0.0.1:5601"}  # "later" does not resolve yet
        answers["epp-peers"] = ["127.0.0.2", "127.0.0.3"]  # a pod replaced, one added
        answers["later"] = ["127.0.0.4"]
        await sharing.refresh_peers()
        assert sharing.connected == {"tcp://127.0.0.2:5601", "tcp://127.0.0.3:5601", "tcp://127.0.0.4:5602"}
        del answers["epp-peers"]  # DNS trouble: keep the last addresses
        await sharing.refresh_peers()
        assert "tcp://127.0.0.2:5601" in sharing.connected
    finally:
        await sharing.stop()


async def _two_replicas(peers: Callable[[int, int], tuple[str, ...]]) -> tuple[list[PickSharing],
                                                                               list[PrefixCacheScorer], list[Any]]:
    """Two EPPs' pick sharing on free ports (started), with the peers ``peers(own port, other
    port)``, both pools holding 10.0.0.3; their prefix scorers and built parts."""
    port_a, port_b = free_port(), free_port()
    replicas = [build_epp(EPPOptions("pool", host="127.0.0.1", pick_sharing_port=port,
                                     pick_sharing_peers=peers(port, other)))
                for port, other in ((port_a, port_b), (port_b, port_a))]
    for parts in replicas:
        _with_pool(parts, "10.0.0.3")
    sharing = [next(b for b in parts.background if isinstance(b, PickSharing)) for parts in replicas]
    for s in sharing:
        await s.start()
    return sharing, [s.scorers["prefix-cache-scorer"] for s in sharing], replicas


async def test_two_replicas_learn_each_others_picks_over_zmq() -> None:
    # the same list for both, own address included
    sharing, scorers, _ = await _two_replicas(lambda own, other: tuple(f"127.0.0.1:{p}" for p in sorted((own, other))))
    try:
        request = SchedulingRequest("r", "m", PROMPT, {}, {"model": "m", "prompt": PROMPT})
        target = Candidate(Endpoint("pod-3", "10.0.0.3", 8000))
        state = CycleState()
        hashes, _ = scorers[0].match(state, request)
        # ZMQ subscriptions take a moment to reach the publisher ("slow joiner"): repeat the pick, bounded
        for _ in range(200):
            scorers[0].pre_request(state, request, SchedulingResult({"default": ProfileResult([target])}, "default"))
            await asyncio.sleep(0.01)
            if scorers[1].indexer.match_longest_prefix(hashes):
                break
        assert scorers[1].indexer.match_longest_prefix(hashes) == {"10.0.0.3:8000": len(hashes)}
        assert sharing[1].received.labels("applied")._value.get() >= 1
        assert sharing[0].received.labels("own")._value.get() >= 1  # its own address is in the list
        assert sharing[0].received.labels("applied")._value.get() == 0  # nothing came from the other way
    finally:
        for s in sharing:
            await s.stop()
    assert scorers[0].on_indexed is None  # unhooked on stop


TARGET = Candidate(Endpoint("pod-3", "10.0.0.3", 8000))


async def _first_pick_through(sharing: list[PickSharing], scorers: list[PrefixCacheScorer]) -> None:
    """Replica A picks until one pick has reached B (ZMQ's slow joiner), bounded; then waits until
    B's receive task (every 50 ms) has drained the picks still in flight."""
    for attempt in range(200):
        request = SchedulingRequest("r", "m", f"{attempt} {PROMPT}", {}, {"model": "m", "prompt": PROMPT})
        scorers[0].pre_request(CycleState(), request, SchedulingResult({"default": ProfileResult([TARGET])},
                                                                       "default"))
        await asyncio.sleep(0.01)
        if sharing[1].received.labels("applied")._value.get():
            break
    await asyncio.sleep(0.3)
    assert sharing[1].received.labels("applied")._value.get() >= 1


async def test_a_peers_pick_that_arrived_while_the_loop_was_busy_is_applied_before_the_next_match() -> None:
    """The peer's message is on the socket, but the event loop has not turned to it (this replica was
    busy): the next match applies it first (``drain``), so a request right after the other
    replica's pick follows it."""
    sharing, scorers, _ = await _two_replicas(lambda own, other: (f"127.0.0.1:{other}",))
    try:
        await _first_pick_through(sharing, scorers)
        before = sharing[1].received.labels("applied")._value.get()
        fresh = SchedulingRequest("s", "m", "fresh " + PROMPT, {}, {"model": "m", "prompt": "fresh " + PROMPT})
        scorers[0].pre_request(CycleState(), fresh, SchedulingResult({"default": ProfileResult([TARGET])},
                                                                     "default"))
        time.sleep(0.2)  # blocking: the message reaches B's socket, B's receive task cannot run
        hashes, matched = scorers[1].match(CycleState(), fresh)  # no await since the pick
        assert matched == {"10.0.0.3:8000": len(hashes)}
        assert sharing[1].received.labels("applied")._value.get() == before + 1
        assert sharing[1].drain() == 0  # nothing left queued
    finally:
        for s in sharing:
            await s.stop()
    assert scorers[1].before_read is None  # unhooked on stop


async def test_admission_applies_the_peers_queued_picks_before_it_reads_the_load() -> None:
    """Flow control's admission reads the pick-time load, peer picks included: a pick queued on the
    socket while this replica was busy is applied by the admission check itself, before any match."""
    sharing, scorers, replicas = await _two_replicas(lambda own, other: (f"127.0.0.1:{other}",))
    try:
        director = replicas[1].director
        assert director.config.flow_control.enabled  # the default profile's flow control ("auto": on)
        await _first_pick_through(sharing, scorers)
        before = sharing[1].received.labels("applied")._value.get()
        fresh = SchedulingRequest("s", "m", "admitted " + PROMPT, {}, {"model": "m", "prompt": PROMPT})
        scorers[0].pre_request(CycleState(), fresh, SchedulingResult({"default": ProfileResult([TARGET])},
                                                                     "default"))
        time.sleep(0.2)  # blocking: on B's socket, not applied by its receive task
        director.may_hold()  # the admission check a request arriving now gets
        assert sharing[1].received.labels("applied")._value.get() == before + 1
        assert sharing[1].drain() == 0
    finally:
        for s in sharing:
            await s.stop()


def test_pick_sharing_needs_a_prefix_index_and_a_port() -> None:
    no_prefix = ("apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
                 "- type: queue-scorer\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: queue-scorer\n")
    with pytest.raises(PickSharingError, match="no prefix-cache scorer"):
        build_epp(EPPOptions("pool", config_text=no_prefix, pick_sharing_port=free_port()))
    with pytest.raises(PickSharingError, match="need --pick-sharing-port"):
        build_epp(EPPOptions("pool", pick_sharing_peers=("127.0.0.1:5600",)))
    assert not any(isinstance(b, PickSharing) for b in build_epp(EPPOptions("pool")).background)  # off by default


def test_the_cli_refuses_bad_pick_sharing_flags_and_names_a_bad_config(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from infergate.cli.epp import command as epp_command

    pool = tmp_path / "pool.yaml"
    pool.write_text("pool: {name: pool, targetPorts: [8000]}\nendpoints: []\n")

    def run(*args: str) -> Any:  # each fails before the EPP serves (else it would run until a signal)
        return CliRunner().invoke(epp_command, ["--pool-name", "pool", "--static-file", str(pool),
                                                "--host", "127.0.0.1", "--grpc-port", "0", "--grpc-health-port", "0",
                                                "--metrics-port", "0", *args])

    bad = run("--pick-sharing-peers", "epp-peers")
    assert bad.exit_code == 2 and "Invalid value for --pick-sharing-peers: 'epp-peers' is not HOST:PORT" in bad.output
    alone = run("--pick-sharing-peers", "epp-peers:9004")
    assert alone.exit_code == 2 and "--pick-sharing-peer-pods need --pick-sharing-port" in alone.output
    static = run("--pick-sharing-port", "9004", "--pick-sharing-peer-pods", "app=epp")
    assert static.exit_code == 2 and "--pick-sharing-peer-pods finds the peers in the Kubernetes API" in static.output
    selector = run("--pick-sharing-port", "9004", "--pick-sharing-peer-pods", "app")
    assert selector.exit_code == 2 and "'app' is not LABEL=VALUE" in selector.output
    # a config error surfaces as a one-line error naming its source, not a traceback (before: a traceback)
    config = run("--config-text", "kind: Nope")
    assert config.exit_code == 1, config.output
    assert "Error: the scheduling config (--config-text): apiVersion: must be" in config.output
    queue_only = ("apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\nplugins:\n"
                  "- type: queue-scorer\nschedulingProfiles:\n- name: default\n  plugins:\n  - pluginRef: queue-scorer\n")
    no_index = run("--pick-sharing-port", str(free_port()), "--config-text", queue_only)
    assert no_index.exit_code == 1 and "Error: --pick-sharing-port: the scheduling config has no prefix-cache scorer" \
        in no_index.output, no_index.output


def test_a_peers_pick_counts_as_load_until_a_scrape_shows_it() -> None:
    """Two replicas picking at the same moment (a closed loop's cold burst) see each other's picks
    as load at once, not a scrape interval later; a scrape taken after the pick shows it instead."""
    from infergate.epp.metrics_scraper import EndpointMetrics
    from infergate.epp.scheduling.plugins.inflight import pick_time_producer

    parts = build_epp(EPPOptions("pool", host="127.0.0.1", pick_sharing_port=free_port()))
    _with_pool(parts, "10.0.0.7")
    sharing = next(b for b in parts.background if isinstance(b, PickSharing))
    producer = pick_time_producer(parts.scheduler)
    assert producer is not None and sharing.producers == {"prefix-cache-scorer": producer}
    scorer = sharing.scorers["prefix-cache-scorer"]
    request = SchedulingRequest("r", "m", PROMPT, {}, {"model": "m", "prompt": PROMPT})
    hashes, _ = scorer.match(CycleState(), request)
    endpoint = "10.0.0.7:8000"
    scraped = EndpointMetrics(update_time=producer.load.clock() - 0.01)  # an idle endpoint, just before
    assert producer.load.view(endpoint, 0, scraped) == (0, 0.0)
    tokens = round(len(PROMPT) / producer.chars_per_token)
    assert sharing.apply(encode(_pick(block_size=scorer.block_size, endpoint=endpoint, hashes=hashes,
                                      prompt_chars=len(PROMPT)))) == "applied"
    assert producer.load.view(endpoint, 0, scraped) == (1, float(tokens))  # one request, all of it uncached
    # the same prompt again: the endpoint now holds it (the index learned the first pick)
    sharing.apply(encode(_pick(block_size=scorer.block_size, endpoint=endpoint, hashes=hashes,
                               prompt_chars=len(PROMPT))))
    requests, pending = producer.load.view(endpoint, 0, scraped)
    assert requests == 2 and tokens < pending < tokens + 0.1 * tokens  # the second: only its last partial block
    later = EndpointMetrics(running=2, update_time=producer.load.clock())  # a scrape that shows them
    assert producer.load.view(endpoint, 0, later) == (2, 0.0)  # counted once, as the scrape's


def _pod(name: str, ip: str | None, labels: dict[str, str], deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    return {"metadata": meta, "status": {"podIP": ip} if ip else {}}


def test_peer_pods_come_from_the_pod_watch() -> None:
    from infergate.epp.datastore import Datastore
    from infergate.epp.pick_sharing import PodPeers, parse_selector
    from infergate.epp.sources.kubernetes import KubernetesEventHandler

    port = free_port()
    sharing = _sharing(PrefixCacheScorer("prefix-cache-scorer"))
    sharing.port = port
    told: list[set[str]] = []
    sharing.set_pod_peers = lambda addresses: told.append(set(addresses))  # type: ignore[method-assign]
    peers = PodPeers(parse_selector("inferencepool=pool-epp"), sharing)
    handler = KubernetesEventHandler(Datastore(), "pool", peer_pods=peers)
    epp = {"inferencepool": "pool-epp"}
    handler.pod_list([_pod("epp-a", "10.1.0.1", epp), _pod("epp-b", None, epp), _pod("vllm-0", "10.1.0.9", {"app": "vllm"})])
    assert told[-1] == {"10.1.0.1"}  # the one with an address; not the model server
    handler.pod_event("MODIFIED", _pod("epp-b", "10.1.0.2", epp))  # scheduled, not ready yet: a peer already
    assert told[-1] == {"10.1.0.1", "10.1.0.2"}
    calls = len(told)
    handler.pod_event("MODIFIED", _pod("vllm-0", "10.1.0.9", {"app": "vllm"}))
    assert len(told) == calls  # nothing changed for the peers: no reconnect
    handler.pod_event("MODIFIED", _pod("epp-a", "10.1.0.1", epp, deleting=True))
    assert told[-1] == {"10.1.0.2"}
    handler.pod_event("DELETED", _pod("epp-b", "10.1.0.2", epp))
    assert told[-1] == set()
    for bad in ("", "app", "app!=x", "=x"):
        with pytest.raises(PickSharingError, match="--pick-sharing-peer-pods"):
            parse_selector(bad)
    assert parse_selector("a=1, b=2") == {"a": "1", "b": "2"}


async def test_pod_peers_are_connected_and_dropped() -> None:
    sharing = _sharing(PrefixCacheScorer("prefix-cache-scorer"))
    await sharing.start()
    try:
        sharing.set_pod_peers(["127.0.0.5", "127.0.0.6"])
        assert sharing.connected == {f"tcp://127.0.0.5:{sharing.port}", f"tcp://127.0.0.6:{sharing.port}"}
        sharing.set_pod_peers(["127.0.0.6"])
        assert sharing.connected == {f"tcp://127.0.0.6:{sharing.port}"}
    finally:
        await sharing.stop()
