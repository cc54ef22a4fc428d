"""InferenceModel (v0.3.0) -> InferenceObjective (v1.0.0) + what the HTTPRoute rules must do.

The semantics change, not only the name. A v0.3.0 EPP looked the body's ``model`` up among
the pool's InferenceModels (404 when none matched), took the priority class from
``criticality`` and drew a target model from ``targetModels``. A v1.0 EPP serves any model and
takes the priority from the InferenceObjective named by the request header
``x-gateway-inference-objective``. So one InferenceModel becomes:

* an **InferenceObjective** with the InferenceModel's name, ``priority`` from ``criticality``
  (:class:`PriorityMap`) and ``poolRef`` to the GA pool (group ``inference.networking.k8s.io``);
* a :class:`ModelRoute`: the HTTPRoute rule that matches header ``X-Gateway-Model-Name:
  <modelName>`` (set by body-based routing) must set ``x-gateway-inference-objective``, and,
  when every request is sent to one other model, ``x-gateway-model-name-rewrite``;
* when ``targetModels`` splits traffic over several models, by ``target_models``:

  - ``"backend-refs"`` (default, pure v1.0 Gateway API): :attr:`ModelRoute.targets` carries the
    split, and the model's rule gets one backendRef per target model to the GA pool, each with
    its weight and a backendRef ``RequestHeaderModifier`` setting ``x-gateway-model-name-rewrite``
    (the gateway draws the backendRef by weight, the v1.0 EPP rewrites the body's model). Needs
    a gateway that applies backendRef filters before the EPP (infergate does);
  - ``"rewrite-resource"``: an **InferenceModelRewrite** (``inference.networking.x-k8s.io/v1alpha2``,
    upstream v1.2+) whose rule matches the model name and lists the targets with their weights:
    the EPP draws a target per request and rewrites the body, exactly what the v0.3.0 EPP did;
  - ``"heaviest"``: every request goes to the heaviest target; the lost share is reported.

Two InferenceModels with the same ``modelName`` for the same pool: the oldest wins
(``creationTimestamp``, then name), as in v1alpha2; the others are skipped with a warning.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from infergate.api.conversion.constants import (
    GA_GROUP,
    MODEL_KIND,
    MODEL_REWRITE_API_VERSION,
    MODEL_REWRITE_KIND,
    OBJECTIVE_API_VERSION,
    OBJECTIVE_KIND,
    POOL_KIND,
    PREVIEW_GROUP,
)
from infergate.api.conversion.issues import ConversionError, ConversionWarning, FieldProblem, ObjectRef
from infergate.api.conversion.meta import new_object_metadata
from infergate.api.conversion.names import DEFAULT_POOL_NAME_SUFFIX, ga_pool_name

Obj = dict[str, Any]
TargetModelsMode = Literal["backend-refs", "rewrite-resource", "heaviest"]
TARGET_MODELS_MODES: tuple[TargetModelsMode, ...] = ("backend-refs", "rewrite-resource", "heaviest")
MAX_REWRITE_WEIGHT = 1_000_000


@dataclass(frozen=True)
class PriorityMap:
    """InferenceObjective ``priority`` for each InferenceModel ``criticality``.

    Defaults follow upstream's own samples (v0.3.0 ``food-review`` Standard -> v1.0.0 priority 1,
    ``base-model`` Critical -> 2) and v1.0's shedding rule (only priority < 0 is shed under
    saturation): Critical 2 > Standard 1 > Sheddable -1. An unset criticality is Standard, as
    v0.3.0 documents.
    """

    critical: int = 2
    standard: int = 1
    sheddable: int = -1

    def __post_init__(self) -> None:
        if not self.critical > self.standard > self.sheddable:
            raise ValueError(
                f"priorities must order Critical > Standard > Sheddable, got "
                f"Critical={self.critical} Standard={self.standard} Sheddable={self.sheddable}"
            )
        if self.sheddable >= 0:
            raise ValueError(
                f"Sheddable must be negative (v1.0 sheds only priority < 0), got {self.sheddable}"
            )
        if self.critical < 0:
            raise ValueError(f"Critical must not be negative (it would be shed), got {self.critical}")

    @classmethod
    def parse(cls, text: str) -> PriorityMap:
        """Parse ``Critical=2,Standard=1,Sheddable=-1`` (any subset; the rest keep their defaults)."""
        values: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            field = key.strip().lower()
            if not sep or field not in {"critical", "standard", "sheddable"}:
                raise ValueError(f"{item!r}: expected Critical=N, Standard=N or Sheddable=N")
            try:
                values[field] = int(value)
            except ValueError:
                raise ValueError(f"{item!r}: {value.strip()!r} is not an integer") from None
        return cls(**values)

    def priority(self, criticality: str | None) -> int:
        if criticality == "Critical":
            return self.critical
        if criticality == "Sheddable":
            return self.sheddable
        return self.standard


@dataclass(frozen=True)
class ModelRoute:
    """What the HTTPRoute rule for one model name must do on the GA pool."""

    namespace: str
    ga_pool: str
    model_name: str
    objective: str  # value of x-gateway-inference-objective
    rewrite_to: str | None  # value of x-gateway-model-name-rewrite, when all traffic goes to one other model
    source: ObjectRef
    # target_models="backend-refs": the weighted split (target model, weight), one backendRef each
    targets: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class ModelConversion:
    objects: tuple[Obj, ...]  # the InferenceObjective, then the InferenceModelRewrite if one is needed
    route: ModelRoute
    warnings: tuple[ConversionWarning, ...]


def model_to_objective(
    model: Mapping[str, Any],
    *,
    pool_name_suffix: str = DEFAULT_POOL_NAME_SUFFIX,
    priorities: PriorityMap | None = None,
    target_models: TargetModelsMode = "backend-refs",
) -> ModelConversion:
    """Convert one InferenceModel; see the module documentation for the mapping."""
    priorities = priorities or PriorityMap()
    ref = ObjectRef.of(model)
    warnings: list[ConversionWarning] = []

    def warn(field: str, message: str) -> None:
        warnings.append(ConversionWarning(ref, field, message))

    spec = model.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    model_name, pool_name = _required_strings(model, ref)
    ga_pool = ga_pool_name(pool_name, pool_name_suffix)
    pool_ref = spec.get("poolRef")
    pool_ref = pool_ref if isinstance(pool_ref, Mapping) else {}
    if pool_ref.get("group", PREVIEW_GROUP) != PREVIEW_GROUP or pool_ref.get("kind", POOL_KIND) != POOL_KIND:
        warn(
            "spec.poolRef",
            f"group {pool_ref.get('group')!r} / kind {pool_ref.get('kind')!r}: the v0.3.0 EPP matched "
            f"InferenceModels by poolRef.name only, so this is taken as the preview pool {pool_name!r}",
        )

    criticality = spec.get("criticality")
    priority = priorities.priority(criticality if isinstance(criticality, str) else None)
    if criticality in (None, "Standard"):
        said = "unset (treated as Standard, as v0.3.0 documents)" if criticality is None else "Standard"
        warn(
            "spec.criticality",
            f"{said} -> priority {priority}. Behaviour change: the v0.3.0 EPP shed Standard requests like "
            f"Sheddable ones when the pool was saturated (only Critical bypassed the check); v1.0 sheds "
            f"only priority < 0, so these requests are no longer shed",
        )

    meta = new_object_metadata(model.get("metadata"), warn=warn)
    objective: Obj = {
        "apiVersion": OBJECTIVE_API_VERSION,
        "kind": OBJECTIVE_KIND,
        "metadata": meta,
        "spec": {"priority": priority, "poolRef": {"group": GA_GROUP, "name": ga_pool}},
    }
    objects: list[Obj] = [objective]

    if target_models not in TARGET_MODELS_MODES:
        raise ValueError(f"target_models: {target_models!r} is not one of {', '.join(TARGET_MODELS_MODES)}")
    rewrite_to: str | None = None
    targets: tuple[tuple[str, int], ...] = ()
    split = _target_split(spec.get("targetModels"), ref)
    if len(split) == 1:
        only = next(iter(split))
        rewrite_to = None if only == model_name else only
    elif len(split) > 1:
        if target_models == "backend-refs":
            targets = tuple(split.items())
            warn(
                "spec.targetModels",
                f"weighted split kept in the HTTPRoute: the rule for {model_name!r} gets one backendRef per target "
                f"model to the GA pool {ga_pool!r} ({', '.join(f'{n} {w}' for n, w in targets)}), each setting "
                f"x-gateway-model-name-rewrite with a backendRef RequestHeaderModifier (pure v1.0 Gateway API). "
                f"The gateway must apply backendRef filters before calling the EPP (infergate does); otherwise "
                f"convert with --target-models=rewrite-resource (InferenceModelRewrite, an EPP of upstream v1.2+) "
                f"or --target-models=heaviest",
            )
        elif target_models == "rewrite-resource":
            weights = _rewrite_weights(split, warn)
            objects.append(
                {
                    "apiVersion": MODEL_REWRITE_API_VERSION,
                    "kind": MODEL_REWRITE_KIND,
                    "metadata": copy.deepcopy(meta),
                    "spec": {
                        "poolRef": {"group": GA_GROUP, "name": ga_pool},
                        "rules": [
                            {
                                "matches": [{"model": {"type": "Exact", "value": model_name}}],
                                "targets": [
                                    {"modelRewrite": name, "weight": w} for name, w in weights.items()
                                ],
                            }
                        ],
                    },
                }
            )
            warn(
                "spec.targetModels",
                f"weighted split kept as {MODEL_REWRITE_KIND} {meta.get('name')!r} "
                f"({MODEL_REWRITE_API_VERSION}, upstream v1.2+): not part of the v1.0.0 CRDs, so install its CRD "
                f"and serve the pool with an EPP that applies it (upstream v1.2+), or convert with "
                f"--target-models=backend-refs (the default) or heaviest for v1.0.0 resources only",
            )
        else:
            total = sum(split.values())
            heaviest = max(split, key=lambda name: split[name])  # first of equal weights
            rewrite_to = None if heaviest == model_name else heaviest
            lost = ", ".join(
                f"{name} {100 * w / total:.4g}%" for name, w in split.items() if name != heaviest
            )
            warn(
                "spec.targetModels",
                f"v1.0.0 cannot split one model name by weight: every request now goes to {heaviest!r} "
                f"(was {100 * split[heaviest] / total:.4g}%); lost: {lost}",
            )

    route = ModelRoute(
        namespace=str(meta.get("namespace") or ""),
        ga_pool=ga_pool,
        model_name=model_name,
        objective=str(meta.get("name") or ""),
        rewrite_to=rewrite_to,
        source=ref,
        targets=targets,
    )
    return ModelConversion(tuple(objects), route, tuple(warnings))


def select_oldest(models: Sequence[Mapping[str, Any]]) -> list[ConversionWarning | None]:
    """Which InferenceModels keep their ``modelName``: per (namespace, pool, modelName) the oldest wins.

    Age is ``metadata.creationTimestamp`` (objects without one count as newest, i.e. not yet
    created), ties are broken by name. Returns, per input, ``None`` when it is kept, else the
    warning that says which older InferenceModel wins.
    """
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, model in enumerate(models):
        spec = model.get("spec")
        spec = spec if isinstance(spec, Mapping) else {}
        pool_ref = spec.get("poolRef")
        pool = str(pool_ref.get("name", "")) if isinstance(pool_ref, Mapping) else ""
        ref = ObjectRef.of(model)
        groups.setdefault((ref.namespace, pool, str(spec.get("modelName", ""))), []).append(i)
    verdicts: list[ConversionWarning | None] = [None] * len(models)
    for (_, pool, model_name), members in groups.items():
        if len(members) < 2:
            continue
        ordered = sorted(members, key=lambda i: _age_key(models[i]))
        winner = ObjectRef.of(models[ordered[0]])
        for loser in ordered[1:]:
            verdicts[loser] = ConversionWarning(
                ObjectRef.of(models[loser]),
                "spec.modelName",
                f"{model_name!r} on pool {pool!r} is also claimed by the older {winner}, which wins as in "
                f"v1alpha2: this InferenceModel is not converted",
            )
    return verdicts


def _age_key(model: Mapping[str, Any]) -> tuple[int, float, str]:
    meta = model.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    stamp = meta.get("creationTimestamp")
    parsed: datetime | None = stamp if isinstance(stamp, datetime) else None
    if isinstance(stamp, str):
        try:
            parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
    name = str(meta.get("name", ""))
    if parsed is None:
        return (1, 0.0, name)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (0, parsed.timestamp(), name)


def _required_strings(model: Mapping[str, Any], ref: ObjectRef) -> tuple[str, str]:
    if model.get("kind") != MODEL_KIND:
        raise ConversionError(
            [FieldProblem(ref, "kind", f"Unsupported value: {model.get('kind')!r}: must be {MODEL_KIND}")]
        )
    spec = model.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    pool_ref = spec.get("poolRef")
    pool_ref = pool_ref if isinstance(pool_ref, Mapping) else {}
    problems = []
    model_name = spec.get("modelName")
    if not isinstance(model_name, str) or not model_name:
        problems.append(FieldProblem(ref, "spec.modelName", "Required value"))
    pool_name = pool_ref.get("name")
    if not isinstance(pool_name, str) or not pool_name:
        problems.append(FieldProblem(ref, "spec.poolRef.name", "Required value"))
    if not ref.name:
        problems.append(FieldProblem(ref, "metadata.name", "Required value"))
    if problems:
        raise ConversionError(problems)
    assert isinstance(model_name, str) and isinstance(pool_name, str)
    return model_name, pool_name


def _target_split(value: Any, ref: ObjectRef) -> dict[str, int]:
    """targetModels as {model: weight}; unweighted entries count 1 each, repeated names add up."""
    if not value:
        return {}
    if not isinstance(value, list):
        raise ConversionError([FieldProblem(ref, "spec.targetModels", "Invalid value: must be a list")])
    weighted = any(isinstance(t, Mapping) and t.get("weight") is not None for t in value)
    split: dict[str, int] = {}
    for i, target in enumerate(value):
        name = target.get("name") if isinstance(target, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ConversionError([FieldProblem(ref, f"spec.targetModels[{i}].name", "Required value")])
        weight = target.get("weight") if weighted else 1
        if not isinstance(weight, int) or weight < 1:
            raise ConversionError(
                [
                    FieldProblem(
                        ref,
                        f"spec.targetModels[{i}].weight",
                        "Required value: weights must be set for all models, or none",
                    )
                ]
            )
        split[name] = split.get(name, 0) + weight
    return split


def _rewrite_weights(split: dict[str, int], warn: Callable[[str, str], None]) -> dict[str, int]:
    """Weights for InferenceModelRewrite targets (1..1,000,000), exact when possible."""
    if max(split.values()) <= MAX_REWRITE_WEIGHT:
        return dict(split)
    divisor = math.gcd(*split.values())
    weights = {name: w // divisor for name, w in split.items()}
    if max(weights.values()) <= MAX_REWRITE_WEIGHT:
        return weights
    scale = MAX_REWRITE_WEIGHT / max(weights.values())
    scaled = {name: max(1, round(w * scale)) for name, w in weights.items()}
    warn(
        "spec.targetModels",
        f"merged weights exceed {MAX_REWRITE_WEIGHT}: scaled to {scaled} (proportions within 1e-6)",
    )
    return scaled
