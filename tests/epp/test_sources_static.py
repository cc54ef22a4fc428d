"""Static YAML pool source: parsing (short form and manifests), clear errors, live reload."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from infergate.epp.datastore import PREVIEW_GROUP, Datastore
from infergate.epp.sources.base import SourceError
from infergate.epp.sources.static import StaticFileSource, parse_static

SHORT = """
pool: {name: p, selector: {app: vllm}, targetPorts: [8000]}
objectives:
  - {name: critical, priority: 2}
  - {name: batch, priority: -1}
endpoints:
  - {name: a, address: 127.0.0.1, labels: {app: vllm}}
  - {name: b, address: 127.0.0.2, labels: {app: vllm}, ready: false}
  - {name: c, address: 127.0.0.3, labels: {app: other}}
  - {name: d, address: 127.0.0.4, labels: {app: vllm}, port: 9001}
"""


def test_short_form() -> None:
    import yaml

    static = parse_static(yaml.safe_load(SHORT))
    ds = Datastore()
    ds.set_pool(static.pool)
    ds.replace_pods(static.pods)
    assert [e.hostport for e in ds.endpoints()] == ["127.0.0.1:8000", "127.0.0.4:9001"]
    assert {o.name: o.priority for o in static.objectives} == {"critical": 2, "batch": -1}


def test_manifests_of_both_generations() -> None:
    ga = {
        "pool": {
            "apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"selector": {"matchLabels": {"app": "vllm"}}, "targetPorts": [{"number": 8000}],
                     "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}},
        },
        "objectives": [
            {"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferenceObjective",
             "metadata": {"name": "mine"}, "spec": {"priority": 3, "poolRef": {"name": "p"}}},
            {"metadata": {"name": "other-pool"}, "spec": {"priority": 3, "poolRef": {"name": "q"}}},
            {"metadata": {"name": "other-group"},
             "spec": {"priority": 3, "poolRef": {"name": "p", "group": PREVIEW_GROUP}}},
        ],
    }
    static = parse_static(ga)
    assert static.pool.generation == "ga" and static.pool.namespace == "ns"
    assert static.pool.selector == {"app": "vllm"} and static.pool.target_ports == (8000,)
    assert [o.name for o in static.objectives] == ["mine"]

    preview = {
        "pool": {
            "apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferencePool",
            "metadata": {"name": "p"},
            "spec": {"selector": {"app": "vllm"}, "targetPortNumber": 8000, "extensionRef": {"name": "epp"}},
        },
        "models": [
            {"name": "food", "modelName": "food-review", "criticality": "Standard",
             "targetModels": [{"name": "food-review-1", "weight": 90}, {"name": "food-review-2", "weight": 10}]},
        ],
    }
    static = parse_static(preview)
    assert static.pool.generation == "preview" and static.pool.target_ports == (8000,)
    (model,) = static.models
    assert model.model_name == "food-review" and [t.weight for t in model.target_models] == [90, 10]


@pytest.mark.parametrize(("doc", "message"), [
    ({"pool": {"name": "p"}, "extra": 1}, "(root): unknown field(s) extra"),
    ({}, "pool: required"),
    ({"pool": {"name": "p", "targetPorts": [0]}}, "pool.targetPorts[0]: must be a port number"),
    ({"pool": {"name": "p"}, "endpoints": [{"name": "a"}]}, "endpoints[0].address: required"),
    ({"pool": {"name": "p"}, "objectives": [{"name": "o", "priority": "high"}]},
     "objectives[0].spec.priority: must be an integer"),
    ({"pool": {"name": "p"}, "models": [{"name": "m", "modelName": "x", "criticality": "Urgent"}]},
     "models[0].spec.criticality: must be one of"),
    ({"pool": {"name": "p"}, "models": [{"name": "m", "modelName": "x",
                                        "targetModels": [{"name": "a", "weight": 1}, {"name": "b"}]}]},
     "Weights should be set for all models, or none of the models."),
    ({"pool": {"apiVersion": "inference.networking.k8s.io/v1", "metadata": {"name": "p"},
               "spec": {"selector": {"matchLabels": {"a": "b"}}}}}, "pool.spec.targetPorts: required"),
])
def test_errors_name_the_field(doc: dict[str, object], message: str) -> None:
    with pytest.raises(SourceError) as err:
        parse_static(doc)
    assert message in str(err.value)


async def test_reload_applies_changes_and_keeps_state_on_errors(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(SHORT)
    ds = Datastore()
    source = StaticFileSource(path, poll_interval=0.02)
    task = asyncio.create_task(source.run(ds))
    try:
        async def wait_for(predicate: object, what: str) -> None:
            for _ in range(1000):  # bounded at ~10 s of 20 ms file polls
                if predicate():  # type: ignore[operator]
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"timed out waiting for {what}")

        await wait_for(lambda: len(ds.endpoints()) == 2, "first load")
        path.write_text(SHORT.replace("ready: false", "ready: true") + "  - {name: e, address: 127.0.0.5}\n")
        os.utime(path, ns=(1, 10**18))  # make the change visible whatever the mtime resolution
        await wait_for(lambda: len(ds.endpoints()) == 3, "reload")  # b ready now; e has no labels
        assert {e.pod_name for e in ds.endpoints()} == {"a", "b", "d"}
        path.write_text("pool: [not, a, map]\n")
        os.utime(path, ns=(1, 2 * 10**18))
        await wait_for(lambda: source.last_error is not None, "error")
        assert "pool: required" in (source.last_error or "")
        assert len(ds.endpoints()) == 3  # previous state kept
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        await StaticFileSource(tmp_path / "nope.yaml").run(Datastore())
