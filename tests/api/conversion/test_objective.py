"""InferenceModel -> InferenceObjective (+ InferenceModelRewrite): priorities, pool names, targetModels, oldest wins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from infergate import api
from infergate.api.conversion import (
    ConversionError,
    PriorityMap,
    ga_pool_name,
    model_to_objective,
    select_oldest,
)

Check = Callable[[dict[str, Any]], list[str]]


def inference_model(name: str = "food-review", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"modelName": name, "poolRef": {"name": "vllm-llama3-8b-instruct-preview"}}
    body.update(spec)
    return {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": body,
    }


@pytest.mark.parametrize(
    ("criticality", "priority", "warned"),
    [("Critical", 2, False), ("Standard", 1, True), ("Sheddable", -1, False), (None, 1, True)],
)
def test_priority_from_criticality(
    criticality: str | None, priority: int, warned: bool, upstream_check: Check
) -> None:
    model = inference_model(**({"criticality": criticality} if criticality else {}))
    assert api.validate(model) == []
    result = model_to_objective(model)
    (objective,) = result.objects
    assert objective == {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceObjective",
        "metadata": {"name": "food-review", "namespace": "default"},
        "spec": {
            "priority": priority,
            "poolRef": {"group": "inference.networking.k8s.io", "name": "vllm-llama3-8b-instruct-ga"},
        },
    }
    assert api.validate(objective) == []
    assert upstream_check(objective) == []
    criticality_warnings = [w for w in result.warnings if w.field == "spec.criticality"]
    assert bool(criticality_warnings) == warned
    if criticality is None:
        assert "treated as Standard" in criticality_warnings[0].message
    if warned:
        assert "no longer shed" in criticality_warnings[0].message


def test_priorities_keep_the_order_and_only_sheddable_is_negative() -> None:
    default = PriorityMap()
    assert default.critical > default.standard > default.sheddable
    assert default.sheddable < 0 <= default.standard
    assert PriorityMap.parse("Critical=10, sheddable=-5") == PriorityMap(
        critical=10, standard=1, sheddable=-5
    )
    for bad in (
        "Critical=1,Standard=1",
        "Sheddable=0",
        "Critical=-1,Standard=-2,Sheddable=-3",
        "Urgent=3",
        "Critical=x",
    ):
        with pytest.raises(ValueError):
            PriorityMap.parse(bad)


def test_custom_priorities_are_used() -> None:
    result = model_to_objective(
        inference_model(criticality="Critical"),
        priorities=PriorityMap(critical=100, standard=0, sheddable=-100),
    )
    assert result.objects[0]["spec"]["priority"] == 100


@pytest.mark.parametrize(
    ("pool", "suffix", "expected"),
    [
        ("vllm-llama3-8b-instruct-preview", "-ga", "vllm-llama3-8b-instruct-ga"),
        ("vllm-llama3-8b-instruct", "-ga", "vllm-llama3-8b-instruct-ga"),
        ("vllm-preview", "-v1", "vllm-v1"),
        ("vllm-preview", "", "vllm-preview"),
    ],
)
def test_pool_names(pool: str, suffix: str, expected: str) -> None:
    assert ga_pool_name(pool, suffix) == expected
    model = inference_model(poolRef={"name": pool})
    result = model_to_objective(model, pool_name_suffix=suffix)
    assert result.objects[0]["spec"]["poolRef"] == {"group": "inference.networking.k8s.io", "name": expected}
    assert result.route.ga_pool == expected


def test_server_fields_and_last_applied_are_not_copied_finalizers_are_reported() -> None:
    model = inference_model(criticality="Critical")
    model["metadata"].update(
        uid="u",
        resourceVersion="5",
        generation=2,
        creationTimestamp="2025-01-01T00:00:00Z",
        managedFields=[{"manager": "kubectl"}],
        labels={"team": "a"},
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}", "owner": "ml"},
        finalizers=["example.com/keep"],
    )
    result = model_to_objective(model)
    assert result.objects[0]["metadata"] == {
        "name": "food-review",
        "namespace": "default",
        "labels": {"team": "a"},
        "annotations": {"owner": "ml"},
    }
    assert [w.field for w in result.warnings] == ["metadata.finalizers"]


def test_a_pool_ref_with_another_group_is_taken_by_name_with_a_warning() -> None:
    model = inference_model(criticality="Critical", poolRef={"group": "example.com", "name": "vllm-preview"})
    result = model_to_objective(model)
    assert result.objects[0]["spec"]["poolRef"]["name"] == "vllm-ga"
    assert [w.field for w in result.warnings] == ["spec.poolRef"]


def test_required_fields_missing_is_an_error() -> None:
    model = inference_model()
    del model["spec"]["modelName"]
    model["spec"]["poolRef"] = {}
    with pytest.raises(ConversionError) as info:
        model_to_objective(model)
    assert [p.field for p in info.value.problems] == ["spec.modelName", "spec.poolRef.name"]


# --- targetModels --------------------------------------------------------------------------


def test_no_target_models_means_no_rewrite() -> None:
    result = model_to_objective(inference_model(criticality="Critical"))
    assert result.route.rewrite_to is None
    assert len(result.objects) == 1


def test_one_target_with_the_same_name_needs_nothing() -> None:
    result = model_to_objective(
        inference_model(criticality="Critical", targetModels=[{"name": "food-review", "weight": 100}])
    )
    assert result.route.rewrite_to is None
    assert len(result.objects) == 1
    assert result.warnings == ()


def test_one_other_target_is_a_rewrite_header_exactly() -> None:
    model = inference_model(
        "movie-critique", criticality="Critical", targetModels=[{"name": "movie-critique-v1"}]
    )
    result = model_to_objective(model)
    assert result.route.rewrite_to == "movie-critique-v1"
    assert len(result.objects) == 1
    assert result.warnings == ()


def test_a_weighted_split_becomes_an_inference_model_rewrite(upstream_check: Check) -> None:
    model = inference_model(
        criticality="Critical",
        targetModels=[{"name": "food-review-1", "weight": 90}, {"name": "food-review-2", "weight": 10}],
    )
    result = model_to_objective(model, target_models="rewrite-resource")
    objective, rewrite = result.objects
    assert objective["kind"] == "InferenceObjective"
    assert rewrite == {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceModelRewrite",
        "metadata": {"name": "food-review", "namespace": "default"},
        "spec": {
            "poolRef": {"group": "inference.networking.k8s.io", "name": "vllm-llama3-8b-instruct-ga"},
            "rules": [
                {
                    "matches": [{"model": {"type": "Exact", "value": "food-review"}}],
                    "targets": [
                        {"modelRewrite": "food-review-1", "weight": 90},
                        {"modelRewrite": "food-review-2", "weight": 10},
                    ],
                }
            ],
        },
    }
    assert upstream_check(rewrite) == []
    assert result.route.rewrite_to is None
    (warning,) = result.warnings
    assert warning.field == "spec.targetModels"
    assert "InferenceModelRewrite" in warning.message and "heaviest" in warning.message
    assert result.route.targets == ()


def test_a_weighted_split_becomes_backend_refs_by_default() -> None:
    model = inference_model(
        criticality="Critical",
        targetModels=[{"name": "food-review-1", "weight": 90}, {"name": "food-review-2", "weight": 10}],
    )
    result = model_to_objective(model)
    assert [o["kind"] for o in result.objects] == ["InferenceObjective"]  # v1.0.0 kinds only
    assert result.route.targets == (("food-review-1", 90), ("food-review-2", 10))
    assert result.route.rewrite_to is None
    (warning,) = result.warnings
    assert warning.field == "spec.targetModels"
    assert "backendRef" in warning.message and "--target-models=rewrite-resource" in warning.message


def test_an_unknown_target_models_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="backend-refs, rewrite-resource, heaviest"):
        model_to_objective(inference_model(), target_models="rewrite")  # type: ignore[arg-type]


def test_unweighted_and_repeated_targets_keep_their_proportions() -> None:
    model = inference_model(
        criticality="Critical", targetModels=[{"name": "a"}, {"name": "b"}, {"name": "a"}]
    )
    assert model_to_objective(model).route.targets == (("a", 2), ("b", 1))
    rewrite = model_to_objective(model, target_models="rewrite-resource").objects[1]
    assert rewrite["spec"]["rules"][0]["targets"] == [
        {"modelRewrite": "a", "weight": 2},
        {"modelRewrite": "b", "weight": 1},
    ]


def test_weights_above_the_rewrite_maximum_are_reduced_exactly_when_possible() -> None:
    targets = [
        {"name": "a", "weight": 1_000_000},
        {"name": "a", "weight": 1_000_000},
        {"name": "b", "weight": 1_000_000},
    ]
    result = model_to_objective(
        inference_model(criticality="Critical", targetModels=targets), target_models="rewrite-resource"
    )
    assert result.objects[1]["spec"]["rules"][0]["targets"] == [
        {"modelRewrite": "a", "weight": 2},
        {"modelRewrite": "b", "weight": 1},
    ]


def test_heaviest_mode_keeps_only_v1_kinds_and_reports_the_lost_share() -> None:
    model = inference_model(
        criticality="Critical",
        targetModels=[{"name": "food-review-1", "weight": 90}, {"name": "food-review-2", "weight": 10}],
    )
    result = model_to_objective(model, target_models="heaviest")
    assert [o["kind"] for o in result.objects] == ["InferenceObjective"]
    assert result.route.rewrite_to == "food-review-1"
    (warning,) = result.warnings
    assert "food-review-2 10%" in warning.message and "was 90%" in warning.message


def test_heaviest_target_equal_to_the_model_name_needs_no_rewrite() -> None:
    model = inference_model(
        criticality="Critical",
        targetModels=[{"name": "food-review", "weight": 3}, {"name": "x", "weight": 1}],
    )
    assert model_to_objective(model, target_models="heaviest").route.rewrite_to is None


# --- duplicate modelName: the oldest wins ---------------------------------------------------


def _stamped(
    name: str, model_name: str, stamp: str | None, pool: str = "p", namespace: str = "default"
) -> dict[str, Any]:
    model = inference_model(model_name, poolRef={"name": pool})
    model["metadata"] = {"name": name, "namespace": namespace}
    if stamp:
        model["metadata"]["creationTimestamp"] = stamp
    return model


def test_oldest_creation_timestamp_wins() -> None:
    models = [
        _stamped("newer", "m", "2025-02-01T00:00:00Z"),
        _stamped("older", "m", "2025-01-01T00:00:00Z"),
        _stamped("other-model", "n", "2025-03-01T00:00:00Z"),
    ]
    verdicts = select_oldest(models)
    assert [v is None for v in verdicts] == [False, True, True]
    assert verdicts[0] is not None
    assert verdicts[0].field == "spec.modelName" and "InferenceModel default/older" in verdicts[0].message


def test_equal_age_is_decided_by_name_and_unstamped_objects_count_as_newest() -> None:
    same = [_stamped("b", "m", "2025-01-01T00:00:00Z"), _stamped("a", "m", "2025-01-01T00:00:00Z")]
    assert [v is None for v in select_oldest(same)] == [False, True]
    unstamped = [_stamped("a", "m", None), _stamped("z", "m", "2025-01-01T00:00:00+01:00")]
    assert [v is None for v in select_oldest(unstamped)] == [False, True]
    neither = [_stamped("z", "m", None), _stamped("a", "m", None)]
    assert [v is None for v in select_oldest(neither)] == [False, True]


def test_same_model_name_on_other_pools_or_namespaces_is_no_conflict() -> None:
    models = [
        _stamped("a", "m", None, pool="p1"),
        _stamped("b", "m", None, pool="p2"),
        _stamped("c", "m", None, namespace="x"),
    ]
    assert select_oldest(models) == [None, None, None]


def test_weights_that_cannot_be_reduced_are_scaled_with_a_warning() -> None:
    targets = [{"name": "a", "weight": 1_000_000}, {"name": "a", "weight": 1}, {"name": "b", "weight": 1}]
    result = model_to_objective(
        inference_model(criticality="Critical", targetModels=targets), target_models="rewrite-resource"
    )
    weights = {t["modelRewrite"]: t["weight"] for t in result.objects[1]["spec"]["rules"][0]["targets"]}
    assert weights == {"a": 1_000_000, "b": 1}
    assert any("scaled" in w.message for w in result.warnings)


def test_the_rewrite_schema_rejects_invalid_rewrites() -> None:
    from infergate.api.conversion.rewrite_schema import validate_model_rewrite

    model = inference_model(
        criticality="Critical", targetModels=[{"name": "a", "weight": 1}, {"name": "b", "weight": 2}]
    )
    rewrite = model_to_objective(model, target_models="rewrite-resource").objects[1]
    assert validate_model_rewrite(rewrite) == []
    rewrite["spec"]["rules"][0]["targets"][0]["weight"] = 0
    errors = validate_model_rewrite(rewrite)
    assert len(errors) == 1 and errors[0].startswith("spec.rules[0].targets[0].weight: Invalid value: 0")
    rewrite["spec"]["extra"] = True
    assert validate_model_rewrite(rewrite) == ['unknown field "spec.extra"']
