"""Datastore: endpoints = ready pods matching the selector x target ports; objectives; models; notifications."""

from __future__ import annotations

from infergate.epp.datastore import (
    PREVIEW_GROUP,
    Datastore,
    InferenceModelInfo,
    Objective,
    PodInfo,
    PoolInfo,
)


def pool(**kw: object) -> PoolInfo:
    base: dict[str, object] = {"name": "p", "selector": {"app": "vllm"}, "target_ports": (8000,)}
    base.update(kw)
    return PoolInfo(**base)  # type: ignore[arg-type]


def test_endpoints_are_ready_matching_pods_times_ports() -> None:
    ds = Datastore()
    ds.upsert_pod(PodInfo("a", "10.0.0.1", {"app": "vllm"}))
    ds.upsert_pod(PodInfo("b", "10.0.0.2", {"app": "vllm"}, ready=False))
    ds.upsert_pod(PodInfo("c", "10.0.0.3", {"app": "other"}))
    ds.upsert_pod(PodInfo("d", "", {"app": "vllm"}))  # no IP yet
    assert ds.endpoints() == ()  # no pool yet
    assert not ds.synced
    ds.set_pool(pool(target_ports=(8000, 8001)))
    assert ds.synced
    assert [e.hostport for e in ds.endpoints()] == ["10.0.0.1:8000", "10.0.0.1:8001"]
    assert ds.endpoint("10.0.0.1:8001") is not None
    ds.upsert_pod(PodInfo("b", "10.0.0.2", {"app": "vllm"}, ready=True))
    assert {e.hostport for e in ds.endpoints()} == {"10.0.0.1:8000", "10.0.0.1:8001", "10.0.0.2:8000", "10.0.0.2:8001"}
    ds.delete_pod("a")
    assert {e.pod_name for e in ds.endpoints()} == {"b"}


def test_selector_change_and_empty_selector() -> None:
    ds = Datastore()
    ds.replace_pods([PodInfo("a", "10.0.0.1", {"app": "vllm"}), PodInfo("c", "10.0.0.3", {"app": "other"})])
    ds.set_pool(pool(selector={"app": "other"}))
    assert [e.pod_name for e in ds.endpoints()] == ["c"]
    ds.set_pool(pool(selector={}))
    assert ds.endpoints() == ()  # an empty selector selects nothing
    ds.set_pool(pool(selector=None))  # static files: every pod
    assert len(ds.endpoints()) == 2


def test_ipv6_hostport_has_brackets_and_pod_port_override() -> None:
    ds = Datastore()
    ds.set_pool(pool(selector=None))
    ds.upsert_pod(PodInfo("v6", "fd00::1", {}, ports=(9000,)))
    assert [e.hostport for e in ds.endpoints()] == ["[fd00::1]:9000"]


def test_notifications_only_on_real_change() -> None:
    ds = Datastore()
    calls: list[int] = []
    unsubscribe = ds.subscribe(lambda: calls.append(ds.version))
    ds.set_pool(pool())
    ds.set_pool(pool())  # same: no event
    ds.upsert_pod(PodInfo("a", "10.0.0.1", {"app": "vllm"}))
    ds.upsert_pod(PodInfo("a", "10.0.0.1", {"app": "vllm"}))
    ds.upsert_objective(Objective("critical", 2))
    assert calls == [1, 2, 3]
    unsubscribe()
    ds.delete_pod("a")
    assert calls == [1, 2, 3]


def test_remove_pool_keeps_pods_clear_drops_everything() -> None:
    ds = Datastore()
    ds.set_pool(pool())
    ds.upsert_pod(PodInfo("a", "10.0.0.1", {"app": "vllm"}))
    ds.upsert_objective(Objective("o", 1))
    ds.remove_pool()
    assert not ds.synced and ds.endpoints() == ()
    ds.set_pool(pool())
    assert len(ds.endpoints()) == 1  # pods came back without a relist
    ds.clear()
    assert ds.pods() == () and ds.objectives() == () and not ds.synced


def test_objectives_and_models_lookup_oldest_model_wins() -> None:
    ds = Datastore()
    ds.set_pool(pool(group=PREVIEW_GROUP))
    assert ds.pool is not None and ds.pool.generation == "preview"
    ds.upsert_objective(Objective("critical", 5))
    assert ds.objective("critical") == Objective("critical", 5)
    assert ds.objective("nope") is None
    ds.upsert_model(InferenceModelInfo("new", "food", "Standard", creation_timestamp="2025-02-01T00:00:00Z"))
    ds.upsert_model(InferenceModelInfo("old", "food", "Critical", creation_timestamp="2025-01-01T00:00:00Z"))
    found = ds.model("food")
    assert found is not None and found.name == "old"
    ds.delete_model("old")
    found = ds.model("food")
    assert found is not None and found.name == "new"
    assert ds.model("unknown") is None
    assert PoolInfo("x").generation == "ga"
