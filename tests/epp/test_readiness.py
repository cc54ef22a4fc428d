"""When the EPP is ready (issue 17 defect 8, issue 14): after the pool and its pods are listed and
each endpoint's first scrape finished, at that very moment (no fixed delay: the clock is frozen
here), latched against later endpoints; the health service names of the EPP protocol."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from infergate.epp.datastore import Datastore, PodInfo, PoolInfo
from infergate.epp.extproc import HealthService, health
from infergate.epp.extproc.server import HealthServer
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.readiness import EXT_PROC_SERVICE, LIVENESS, READINESS, Readiness, health_names
from infergate.epp.runner import EPPOptions, EPPRunner
from infergate.epp.sources.convert import pod_from_object


def pod(name: str, ip: str) -> PodInfo:
    return pod_from_object({"metadata": {"name": name, "labels": {"app": "sim"}},
                            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}})


def pool() -> PoolInfo:
    return PoolInfo(name="pool", namespace="ns", selector={"app": "sim"}, target_ports=(8000,))


class Frozen:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ready_as_soon_as_the_lists_and_first_scrapes_are_done() -> None:
    datastore, store, clock = Datastore(), MetricsStore(), Frozen()
    listed = {"done": False}
    readiness = Readiness(datastore, store, listed=lambda: listed["done"], clock=clock)
    assert not readiness() and readiness.waiting_for() == ["the pool and its pods to be listed"]
    datastore.set_pool(pool())  # upstream's PoolHasSynced: not enough, the pods are not listed yet
    assert not readiness()
    datastore.replace_pods([pod("a", "10.0.0.1"), pod("b", "10.0.0.2")])
    listed["done"] = True
    assert not readiness()
    assert readiness.waiting_for() == ["the first scrape of 10.0.0.1:8000, 10.0.0.2:8000"]
    store.update("10.0.0.1:8000", EndpointMetrics(update_time=clock.now))
    assert not readiness()
    store.fail("10.0.0.2:8000")  # a failed scrape is a finished one
    assert readiness() and readiness.warm_after == 0.0  # at once: the clock has not moved
    # latched: a new endpoint not yet scraped does not take readiness away
    datastore.upsert_pod(pod("c", "10.0.0.3"))
    assert readiness()
    datastore.remove_pool()  # the pool is gone: not ready
    assert not readiness()


def test_an_endpoint_whose_scrape_hangs_delays_readiness_only_up_to_max_warmup() -> None:
    datastore, store, clock = Datastore(), MetricsStore(), Frozen()
    readiness = Readiness(datastore, store, listed=lambda: True, max_warmup=1.0, clock=clock)
    datastore.set_pool(pool())
    datastore.replace_pods([pod("a", "10.0.0.1")])
    assert not readiness()
    clock.now += 0.5
    assert not readiness()
    clock.now += 0.5
    assert readiness()


def test_without_a_pod_ready_once_listed() -> None:
    datastore = Datastore()
    readiness = Readiness(datastore, MetricsStore(), listed=lambda: True, clock=Frozen())
    datastore.set_pool(pool())
    assert readiness()


def test_leadership_gates_readiness() -> None:
    datastore, leading = Datastore(), {"now": False}
    readiness = Readiness(datastore, MetricsStore(), listed=lambda: True, leader=lambda: leading["now"],
                          clock=Frozen())
    datastore.set_pool(pool())
    assert not readiness() and readiness.waiting_for() == ["leadership"]
    leading["now"] = True
    assert readiness()


async def test_health_service_names_per_the_protocol() -> None:
    ready = {"now": False}
    for leader_election in (False, True):
        known, live = health_names(leader_election)
        server = HealthServer(HealthService(lambda: ready["now"], known=known, live=live), host="127.0.0.1", port=0)
        await server.start()
        target = f"127.0.0.1:{server.port}"
        try:
            ready["now"] = False
            assert await health.check(target, LIVENESS) == health.SERVING  # alive, whatever the sync state
            for name in (READINESS, EXT_PROC_SERVICE, ""):
                assert await health.check(target, name) == health.NOT_SERVING
            ready["now"] = True
            for name in (READINESS, EXT_PROC_SERVICE, "", LIVENESS):
                assert await health.check(target, name) == health.SERVING
            # the v1.0 chart probes "inference-extension" without leader election; with it, unknown
            expected = health.SERVICE_UNKNOWN if leader_election else health.SERVING
            assert await health.check(target, "inference-extension") == expected
        finally:
            await server.stop()


async def test_the_runner_answers_liveness_before_it_is_ready(tmp_path: Path) -> None:
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text(yaml.safe_dump({"pool": {"name": "pool", "targetPorts": [8000]}, "endpoints": []}))
    runner = EPPRunner(EPPOptions(pool_name="pool", host="127.0.0.1", grpc_port=0, grpc_health_port=0,
                                  metrics_port=0, static_file=str(tmp_path / "absent.yaml"), shutdown_grace=0.1))
    await runner.start()
    try:
        assert runner.health_server is not None
        target = f"127.0.0.1:{runner.health_server.port}"
        assert await health.check(target, LIVENESS) == health.SERVING
        assert await health.check(target, READINESS) == health.NOT_SERVING  # no pool file: never synced
    finally:
        await runner.stop()
    runner = EPPRunner(EPPOptions(pool_name="pool", host="127.0.0.1", grpc_port=0, grpc_health_port=0,
                                  metrics_port=0, static_file=str(pool_file), shutdown_grace=0.1))
    await runner.start()
    try:
        for _ in range(500):
            if runner.is_ready():
                break
            await asyncio.sleep(0.01)
        assert runner.is_ready()
        stopping = asyncio.create_task(runner.stop())
        await asyncio.sleep(0)
        assert not runner.is_ready()  # not ready from the moment it starts stopping
        await stopping
    finally:
        await runner.stop()
