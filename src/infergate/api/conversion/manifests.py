"""Convert a set of manifests from the preview API (v0.3.0) to the GA API (v1.0), as ``infergate convert`` does.

All input objects are converted together, because they refer to each other: InferenceModels
name their pool, HTTPRoutes send traffic to pools and now need one rule per model.

=====================================  ==========================================================
input (preview)                        output (GA)
=====================================  ==========================================================
InferencePool x-k8s.io/v1alpha2        InferencePool ``inference.networking.k8s.io/v1`` renamed by
                                       :func:`~infergate.api.conversion.names.ga_pool_name`
                                       (:mod:`.pool` mapping; status dropped: a new object)
InferenceModel x-k8s.io/v1alpha2       InferenceObjective (:mod:`.objective`); a weighted split:
                                       one backendRef per target model in the HTTPRoute (default),
                                       or an InferenceModelRewrite; duplicate modelName: oldest wins
HTTPRoute                              backendRefs to preview pools -> GA pools, one rule per model
                                       setting ``x-gateway-inference-objective`` (:mod:`.route`)
ReferenceGrant                         ``to`` preview pools -> GA pools
anything else                          unchanged (the original text, comments included)
=====================================  ==========================================================

With ``output_version=inference.networking.x-k8s.io/v1alpha2`` the direction is reversed for
InferencePools only (same names; HTTPRoute backendRefs to them follow).

Inputs are validated first (``infergate.api.validate``); converted objects are validated
against the GA types, so the output is valid where upstream's conversion is not.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infergate.api.conversion.constants import (
    GA_GROUP,
    GA_POOL_API_VERSION,
    GATEWAY_GROUP,
    HTTPROUTE_KIND,
    MODEL_KIND,
    MODEL_REWRITE_KIND,
    OBJECTIVE_KIND,
    POOL_KIND,
    PREVIEW_GROUP,
    PREVIEW_POOL_API_VERSION,
    REFERENCE_GRANT_KIND,
)
from infergate.api.conversion.documents import Document
from infergate.api.conversion.issues import ConversionError, ConversionWarning, FieldProblem, ObjectRef
from infergate.api.conversion.meta import new_object_metadata
from infergate.api.conversion.names import (
    DEFAULT_POOL_NAME_SUFFIX,
    ga_pool_name,
    helm_epp_name,
    is_dns_subdomain,
)
from infergate.api.conversion.objective import (
    ModelRoute,
    PriorityMap,
    TargetModelsMode,
    model_to_objective,
    select_oldest,
)
from infergate.api.conversion.pool import pool_to_v1, pool_to_v1alpha2
from infergate.api.conversion.rewrite_schema import validate_model_rewrite
from infergate.api.conversion.route import PoolKey, UnknownModels, convert_reference_grant, convert_route

Obj = dict[str, Any]
OUTPUT_VERSIONS = (GA_POOL_API_VERSION, PREVIEW_POOL_API_VERSION)
# Returns the validation errors of one object, each "path: reason" (infergate.api.FieldError).
Validator = Callable[[Obj], list[str]]


@dataclass(frozen=True)
class ConvertOptions:
    output_version: str = GA_POOL_API_VERSION
    pool_name_suffix: str = DEFAULT_POOL_NAME_SUFFIX
    priorities: PriorityMap = field(default_factory=PriorityMap)
    target_models: TargetModelsMode = "backend-refs"
    unknown_models: UnknownModels = "serve"

    def __post_init__(self) -> None:
        if self.output_version not in OUTPUT_VERSIONS:
            raise ValueError(
                f"unsupported output version {self.output_version!r}: use one of {', '.join(OUTPUT_VERSIONS)}"
            )


@dataclass(frozen=True)
class Converted:
    """What one input object became: nothing, itself (``changed=False``) or new objects."""

    objects: tuple[Obj, ...]
    changed: bool


@dataclass(frozen=True)
class OutputObject:
    obj: Obj
    text: str | None  # the original text when the object passes through unchanged


@dataclass(frozen=True)
class ManifestConversion:
    objects: tuple[OutputObject, ...]
    warnings: tuple[ConversionWarning, ...]
    errors: tuple[str, ...]  # non-empty: invalid input, nothing should be written

    @property
    def ok(self) -> bool:
        return not self.errors


def api_validator(obj: Obj) -> list[str]:
    """Validate with ``infergate.api.validate`` (imported on first use)."""
    from infergate import api

    return [str(error) for error in api.validate(obj)]


def convert_documents(
    documents: Sequence[Document],
    options: ConvertOptions | None = None,
    *,
    validator: Validator | None = api_validator,
) -> ManifestConversion:
    """Convert parsed manifests; see the module documentation."""
    options = options or ConvertOptions()
    errors: list[str] = []
    # Flatten: (document, position in a List or None, object).
    items: list[tuple[Document, int | None, Obj]] = []
    for doc in documents:
        data = doc.data
        if data is None:
            continue
        if not isinstance(data, dict):
            errors.append(f"{doc.where}: not an object: {type(data).__name__}")
            continue
        if _is_list(data):
            for position, item in enumerate(data.get("items") or []):
                if not isinstance(item, dict):
                    errors.append(f"{doc.where}: items[{position}]: not an object")
                elif not item.get("apiVersion") or not item.get("kind"):
                    errors.append(
                        f"{doc.where}: items[{position}]: Object 'Kind' is missing or 'apiVersion' is missing"
                    )
                else:
                    items.append((doc, position, item))
            continue
        if not data.get("apiVersion") or not data.get("kind"):
            errors.append(f"{doc.where}: Object 'Kind' is missing or 'apiVersion' is missing")
            continue
        items.append((doc, None, data))
    if errors:
        return ManifestConversion((), (), tuple(errors))

    objects = [obj for _, _, obj in items]
    if validator is not None:
        for (doc, pos, obj), lines in zip(items, _validate_inputs(objects, options, validator), strict=True):
            where = doc.where if pos is None else f"{doc.where} items[{pos}]"
            errors.extend(f"{where}: {_invalid(obj)}: {line}" for line in lines)
        if errors:
            return ManifestConversion((), (), tuple(errors))

    results, warnings, problems = convert_objects(objects, options)
    errors.extend(str(p) for p in problems)
    if validator is not None and not errors:
        for result in results:
            if not result.changed:
                continue
            for obj in result.objects:
                # InferenceModelRewrite is an upstream v1.2+ kind that infergate.api (v1.0.0) does not model.
                check = validate_model_rewrite if obj.get("kind") == MODEL_REWRITE_KIND else validator
                errors.extend(f"converted {_invalid(obj)}: {line}" for line in check(obj))
    if errors:
        return ManifestConversion((), tuple(warnings), tuple(errors))

    out: list[OutputObject] = []
    by_doc: dict[int, list[tuple[int | None, Converted]]] = {}
    for (doc, pos, _), result in zip(items, results, strict=True):
        by_doc.setdefault(id(doc), []).append((pos, result))
    for doc in documents:
        entries = by_doc.get(id(doc))
        if not entries:
            continue
        changed = any(result.changed for _, result in entries)
        if not changed:
            out.append(OutputObject(doc.data, doc.text))
        elif entries[0][0] is not None:  # a List
            new_list = {key: copy.deepcopy(value) for key, value in doc.data.items() if key != "items"}
            new_list["items"] = [obj for _, result in entries for obj in result.objects]
            out.append(OutputObject(new_list, None))
        else:
            out.extend(OutputObject(obj, None) for _, result in entries for obj in result.objects)
    return ManifestConversion(tuple(out), tuple(warnings), ())


def convert_objects(
    objects: Sequence[Obj], options: ConvertOptions
) -> tuple[list[Converted], list[ConversionWarning], list[FieldProblem]]:
    """Convert objects that refer to each other; returns one result per input, warnings and problems.

    Two passes: the InferenceModels first (they become InferenceObjectives and tell which model
    routes each pool needs), then every other object (pools, and the HTTPRoutes that get those
    model routes).
    """
    if options.output_version == PREVIEW_POOL_API_VERSION:
        return _convert_to_preview(objects)
    rename = _pool_renamer(options.pool_name_suffix)
    run = _Run(objects)
    model_routes = _convert_models(run, options, rename)
    routed_pools = _convert_others(run, options, rename, model_routes)
    _warn_lost_splits(run, model_routes, routed_pools)
    return run.finish()


@dataclass
class _Run:
    """One conversion of a set of objects: what each input became, by position, and the problems."""

    objects: Sequence[Obj]
    results: dict[int, Converted] = field(default_factory=dict)
    notes: dict[int, list[ConversionWarning]] = field(default_factory=dict)
    problems: list[FieldProblem] = field(default_factory=list)

    @property
    def model_indexes(self) -> list[int]:
        return [i for i, obj in enumerate(self.objects) if _is(obj, PREVIEW_GROUP, "v1alpha2", MODEL_KIND)]

    def finish(self) -> tuple[list[Converted], list[ConversionWarning], list[FieldProblem]]:
        """One result per input (an input that failed converts to nothing), warnings in input order."""
        count = len(self.objects)
        warnings = [w for i in range(count) for w in self.notes.get(i, [])]
        return [self.results.get(i, Converted((), True)) for i in range(count)], warnings, self.problems


def _pool_renamer(suffix: str) -> Callable[[str], str]:
    """The preview -> GA pool name mapping; raises ConversionError when the new name is not a DNS subdomain."""

    def rename(name: str) -> str:
        new = ga_pool_name(name, suffix)
        if not is_dns_subdomain(new):
            raise ConversionError(
                [
                    FieldProblem(
                        ObjectRef(POOL_KIND, "", name),
                        "metadata.name",
                        f"Invalid value: {new!r}: the GA pool name (suffix {suffix!r}) must be a DNS subdomain "
                        "of at most 253 characters: choose another --pool-name-suffix",
                    )
                ]
            )
        return new

    return rename


def _convert_models(
    run: _Run, options: ConvertOptions, rename: Callable[[str], str]
) -> dict[PoolKey, list[ModelRoute]]:
    """First pass: InferenceModels -> InferenceObjectives; returns the model routes each GA pool needs."""
    objects = run.objects
    model_indexes = run.model_indexes
    verdicts = select_oldest([objects[i] for i in model_indexes])
    # GA objects already in the input (a half-migrated installation) are kept, not duplicated.
    existing_objectives = {
        _key(obj) for obj in objects if _is(obj, PREVIEW_GROUP, "v1alpha2", OBJECTIVE_KIND)
    }
    model_routes: dict[PoolKey, list[ModelRoute]] = {}
    for i, verdict in zip(model_indexes, verdicts, strict=True):
        if verdict is not None:  # a duplicate modelName: the oldest InferenceModel wins
            run.notes[i] = [verdict]
            run.results[i] = Converted((), True)
            continue
        try:
            route = _convert_model(run, i, options, rename, existing_objectives)
        except ConversionError as exc:
            run.problems.extend(exc.problems)
            continue
        model_routes.setdefault((route.namespace, route.ga_pool), []).append(route)
    return model_routes


def _convert_model(
    run: _Run,
    i: int,
    options: ConvertOptions,
    rename: Callable[[str], str],
    existing_objectives: set[tuple[str, str]],
) -> ModelRoute:
    """Convert the InferenceModel at position ``i``; returns the route rule its pool needs."""
    model = run.objects[i]
    spec = model.get("spec")
    pool = spec.get("poolRef", {}).get("name") if isinstance(spec, Mapping) else None
    if isinstance(pool, str):
        rename(pool)  # fails early when the GA pool name would be invalid
    conversion = model_to_objective(
        model,
        pool_name_suffix=options.pool_name_suffix,
        priorities=options.priorities,
        target_models=options.target_models,
    )
    notes = run.notes[i] = list(conversion.warnings)
    if "status" in model:
        notes.append(_status_dropped(model))
    route = conversion.route
    new_objects = conversion.objects
    if (route.namespace, route.objective) in existing_objectives:
        new_objects = new_objects[1:]
        notes.append(
            ConversionWarning(
                ObjectRef.of(model),
                "metadata.name",
                f"InferenceObjective {route.objective} is already in the input: it is kept as it is "
                "(its priority and poolRef win over this InferenceModel's)",
            )
        )
    run.results[i] = Converted(new_objects, True)
    return route


def _convert_others(
    run: _Run,
    options: ConvertOptions,
    rename: Callable[[str], str],
    model_routes: Mapping[PoolKey, list[ModelRoute]],
) -> set[PoolKey]:
    """Second pass: every object but the InferenceModels; returns the GA pools an HTTPRoute sends traffic to."""
    objects = run.objects
    existing_pools = {_key(obj) for obj in objects if _is(obj, GA_GROUP, "v1", POOL_KIND)}
    model_set = set(run.model_indexes)
    routed_pools: set[PoolKey] = set()
    for i, obj in enumerate(objects):
        if i in model_set:
            continue
        notes = run.notes.setdefault(i, [])
        try:
            if _is(obj, PREVIEW_GROUP, "v1alpha2", POOL_KIND):
                run.results[i] = _convert_pool(obj, rename, options.pool_name_suffix, existing_pools, notes)
            elif _is(obj, GATEWAY_GROUP, None, HTTPROUTE_KIND):
                route_result = convert_route(
                    obj, pool_name=rename, model_routes=model_routes, unknown_models=options.unknown_models
                )
                notes.extend(route_result.warnings)
                routed_pools.update(route_result.pools)
                run.results[i] = Converted(route_result.objects, route_result.changed)
            elif _is(obj, GATEWAY_GROUP, None, REFERENCE_GRANT_KIND):
                grant = convert_reference_grant(obj, pool_name=rename)
                run.results[i] = Converted(grant.objects, grant.changed)
            else:
                notes.extend(_passthrough_warnings(obj, rename))
                run.results[i] = Converted((obj,), False)
        except ConversionError as exc:
            run.problems.extend(exc.problems)
    return routed_pools


def _convert_pool(
    obj: Obj,
    rename: Callable[[str], str],
    suffix: str,
    existing_pools: set[tuple[str, str]],
    notes: list[ConversionWarning],
) -> Converted:
    """A preview InferencePool -> its GA pool, unless that GA pool is already in the input."""
    ref = ObjectRef.of(obj)
    if (ref.namespace, rename(ref.name)) not in existing_pools:
        return _pool_to_ga(obj, rename, bool(suffix), notes)
    notes.append(
        ConversionWarning(
            ref,
            "metadata.name",
            f"the GA InferencePool {rename(ref.name)} is already in the input: it is kept as it is "
            "and this preview pool is not converted (left out of the output)",
        )
    )
    return Converted((), True)


def _passthrough_warnings(obj: Obj, rename: Callable[[str], str]) -> list[ConversionWarning]:
    """What to tell about an object passed through unchanged: a v0.3.0 EPP, an unconverted preview version."""
    out: list[ConversionWarning] = []
    epp_pool = _preview_epp_pool(obj)
    if epp_pool is not None:
        out.append(
            ConversionWarning(
                ObjectRef.of(obj),
                "spec.template.spec.containers",
                f"a v0.3.0 EPP (-poolName {epp_pool}), passed through unchanged: it serves only the "
                f"preview pool; the GA pool {rename(epp_pool)} needs a v1.0 EPP (--pool-name "
                f"{rename(epp_pool)} --pool-group {GA_GROUP}), e.g. the v1.0.0 inferencepool Helm chart",
            )
        )
    if _group(obj) == PREVIEW_GROUP and obj.get("kind") in (POOL_KIND, MODEL_KIND):
        out.append(
            ConversionWarning(ObjectRef.of(obj), "apiVersion", "only v1alpha2 is converted: passed through")
        )
    return out


def _warn_lost_splits(
    run: _Run, model_routes: Mapping[PoolKey, list[ModelRoute]], routed_pools: set[PoolKey]
) -> None:
    """A weighted split lives in an HTTPRoute rule: warn on the InferenceModels whose pool no route uses."""
    model_indexes = run.model_indexes
    for routes in model_routes.values():
        for route in routes:
            if route.targets and (route.namespace, route.ga_pool) not in routed_pools:
                index = next(i for i in model_indexes if ObjectRef.of(run.objects[i]) == route.source)
                run.notes.setdefault(index, []).append(
                    ConversionWarning(
                        route.source,
                        "spec.targetModels",
                        f"no HTTPRoute in the input sends traffic to pool {route.ga_pool}: the weighted split "
                        f"lives in the HTTPRoute rule for {route.model_name!r}, so it is lost; convert the "
                        f"HTTPRoute together with this InferenceModel, or use --target-models=rewrite-resource",
                    )
                )


def _pool_to_ga(
    obj: Obj, rename: Callable[[str], str], renamed: bool, warnings: list[ConversionWarning]
) -> Converted:
    ref = ObjectRef.of(obj)
    source = {key: value for key, value in obj.items() if key != "status"}
    if "status" in obj:
        warnings.append(_status_dropped(obj))
    conversion = pool_to_v1(source, keep_round_trip_data=False)
    warnings.extend(conversion.warnings)
    out = conversion.obj
    new_name = rename(ref.name)

    def warn(path: str, message: str) -> None:
        warnings.append(ConversionWarning(ref, path, message))

    out["metadata"] = new_object_metadata(out.get("metadata"), name=new_name, warn=warn)
    spec = out.get("spec")
    epp = spec.get("endpointPickerRef") if isinstance(spec, dict) else None
    if isinstance(epp, dict):
        is_service = epp.get("group", "") == "" and epp.get("kind", "Service") == "Service"
        old = epp.get("name")
        if renamed and is_service and old == helm_epp_name(ref.name):
            epp["name"] = helm_epp_name(new_name)
            warn(
                "spec.extensionRef.name",
                f"{old} -> {epp['name']}: the EPP Service that the v1.0 inferencepool Helm chart creates for "
                f"release {new_name}; a v0.3.0 EPP watches only the preview pool and cannot serve this one",
            )
        else:
            warn(
                "spec.extensionRef.name",
                f"{old} kept: it must name a v1.0 EPP started for this pool (--pool-name {new_name} "
                f"--pool-group {GA_GROUP}); a v0.3.0 EPP watches only the preview pool",
            )
    return Converted((out,), True)


def _convert_to_preview(
    objects: Sequence[Obj],
) -> tuple[list[Converted], list[ConversionWarning], list[FieldProblem]]:
    warnings: list[ConversionWarning] = []
    problems: list[FieldProblem] = []
    results: list[Converted] = []
    pools: set[tuple[str, str]] = set()
    for obj in objects:
        if _is(obj, GA_GROUP, "v1", POOL_KIND):
            ref = ObjectRef.of(obj)
            pools.add((ref.namespace, ref.name))
    for obj in objects:
        try:
            if _is(obj, GA_GROUP, "v1", POOL_KIND):
                source = {key: value for key, value in obj.items() if key != "status"}
                if "status" in obj:
                    warnings.append(_status_dropped(obj))
                conversion = pool_to_v1alpha2(source)
                warnings.extend(conversion.warnings)
                results.append(Converted((conversion.obj,), True))
            elif _is(obj, GATEWAY_GROUP, None, HTTPROUTE_KIND):
                results.append(_route_backends_to_preview(obj, pools))
            else:
                results.append(Converted((obj,), False))
        except ConversionError as exc:
            problems.extend(exc.problems)
            results.append(Converted((), True))
    return results, warnings, problems


def _route_backends_to_preview(route: Obj, pools: set[tuple[str, str]]) -> Converted:
    namespace = ObjectRef.of(route).namespace
    new = copy.deepcopy(route)
    changed = False
    spec = new.get("spec")
    for rule in (spec.get("rules") if isinstance(spec, dict) else None) or []:
        for br in (rule.get("backendRefs") if isinstance(rule, dict) else None) or []:
            if (
                isinstance(br, dict)
                and br.get("group") == GA_GROUP
                and br.get("kind") == POOL_KIND
                and (br.get("namespace") or namespace, br.get("name")) in pools
            ):
                br["group"] = PREVIEW_GROUP
                changed = True
    return Converted((new,), True) if changed else Converted((route,), False)


def _validate_inputs(
    objects: Sequence[Obj], options: ConvertOptions, validator: Validator
) -> list[list[str]]:
    """Validation errors of the inputs the conversion reads (other kinds pass through unread)."""
    if options.output_version == PREVIEW_POOL_API_VERSION:
        read = [(GA_GROUP, "v1", POOL_KIND), (GATEWAY_GROUP, None, HTTPROUTE_KIND)]
    else:
        read = [
            (PREVIEW_GROUP, "v1alpha2", POOL_KIND),
            (PREVIEW_GROUP, "v1alpha2", MODEL_KIND),
            (GATEWAY_GROUP, None, HTTPROUTE_KIND),
            (GATEWAY_GROUP, None, REFERENCE_GRANT_KIND),
        ]
    # Status is not converted (it belongs to the old object), so it is not validated either: stored
    # x-k8s.io pools may carry the status shape of the CRD that GIE v1.0.0 re-ships.
    return [
        validator({k: v for k, v in obj.items() if k != "status"})
        if any(_is(obj, *kind) for kind in read)
        else []
        for obj in objects
    ]


def _preview_epp_pool(obj: Obj) -> str | None:
    """The pool a v0.3.0 EPP Deployment serves (its camelCase ``-poolName`` flag), if ``obj`` is one."""
    if obj.get("kind") != "Deployment":
        return None
    spec = obj.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    for container in containers if isinstance(containers, list) else []:
        args = container.get("args") if isinstance(container, dict) else None
        args = [str(a) for a in args] if isinstance(args, list) else []
        for i, arg in enumerate(args):
            flag, _, value = arg.partition("=")
            if flag in ("-poolName", "--poolName"):
                value = value or (args[i + 1] if i + 1 < len(args) else "")
                return value or None
    return None


def _key(obj: Obj) -> tuple[str, str]:
    ref = ObjectRef.of(obj)
    return (ref.namespace, ref.name)


def _status_dropped(obj: Obj) -> ConversionWarning:
    return ConversionWarning(
        ObjectRef.of(obj), "status", "not converted: the new object's status is written by its controller"
    )


def _invalid(obj: Obj) -> str:
    ref = ObjectRef.of(obj)
    group = _group(obj)
    kind = f"{ref.kind}.{group}" if group else ref.kind
    where = f" in namespace {ref.namespace}" if ref.namespace else ""
    return f'{kind} "{ref.name}"{where} is invalid'


def _group(obj: Mapping[str, Any]) -> str:
    api_version = obj.get("apiVersion")
    return api_version.rpartition("/")[0] if isinstance(api_version, str) else ""


def _is(obj: Mapping[str, Any], group: str, version: str | None, kind: str) -> bool:
    api_version = obj.get("apiVersion")
    if not isinstance(api_version, str) or obj.get("kind") != kind:
        return False
    obj_group, _, obj_version = api_version.rpartition("/")
    return obj_group == group and (version is None or obj_version == version)


def _is_list(data: Mapping[str, Any]) -> bool:
    kind = data.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and isinstance(data.get("items"), list)
