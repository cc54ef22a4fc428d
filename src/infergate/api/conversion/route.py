"""HTTPRoute and ReferenceGrant: point them at the GA pools and give every model its objective.

For each HTTPRoute rule with a backendRef to a preview pool (group ``inference.networking.x-k8s.io``,
kind ``InferencePool``):

* the backendRef is rewritten to the GA pool (group ``inference.networking.k8s.io``, new name);
  backendRefs that become identical are merged (weights added);
* for each InferenceModel of the pool (a :class:`ModelRoute`), a rule is emitted with the rule's
  matches plus the header match ``X-Gateway-Model-Name: <modelName>`` and a
  ``RequestHeaderModifier`` that sets ``x-gateway-inference-objective: <objective>`` (and
  ``x-gateway-model-name-rewrite`` when all of the model's traffic goes to one other model);
* a model with a weighted split (:attr:`ModelRoute.targets`): in its rule, each backendRef to
  that GA pool becomes one backendRef per target model, weight ``backendRef weight x target
  weight`` (the rule's other backendRefs scaled so every share is kept exactly), each with a
  backendRef ``RequestHeaderModifier`` setting ``x-gateway-model-name-rewrite: <target>``;
* the original rule stays as the catch-all for model names without an InferenceModel
  (``unknown_models="serve"``: the v1.0 EPP serves them at priority 0, where the v0.3.0 EPP
  answered 404), or is dropped (``"reject"``: such requests match no rule and the gateway answers
  404, as before; note that this also rejects requests without ``X-Gateway-Model-Name``).

Matches that already pin ``X-Gateway-Model-Name`` to one value are given that model's
objective instead of being expanded. A route that would exceed Gateway API's limits (16 rules,
128 matches) is continued in routes named ``<name>-2``, ``<name>-3``, ... with the same parents
and hostnames. Rules without a preview pool are left exactly as they are, so converting
converted output again changes nothing.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from infergate.api.conversion.constants import (
    GA_GROUP,
    MAX_BACKEND_REFS,
    MAX_BACKEND_WEIGHT,
    MAX_MATCHES_PER_ROUTE,
    MAX_RULES_PER_ROUTE,
    MAX_SET_HEADERS,
    MODEL_NAME_HEADER,
    POOL_KIND,
    PREVIEW_GROUP,
)
from infergate.api.conversion.issues import ConversionError, ConversionWarning, FieldProblem, ObjectRef
from infergate.api.conversion.meta import new_object_metadata
from infergate.api.conversion.names import is_dns_subdomain
from infergate.api.conversion.objective import ModelRoute
from infergate.api.headers import INFERENCE_OBJECTIVE, MODEL_NAME_REWRITE

Obj = dict[str, Any]
UnknownModels = Literal["serve", "reject"]
UNKNOWN_MODELS_MODES: tuple[UnknownModels, ...] = ("serve", "reject")
PoolKey = tuple[str, str]  # (namespace, GA pool name)


@dataclass(frozen=True)
class RouteConversion:
    objects: tuple[Obj, ...]  # the route (changed or not), then any continuation routes
    changed: bool
    warnings: tuple[ConversionWarning, ...] = ()
    pools: frozenset[PoolKey] = frozenset()  # GA pools of the converted rules


def convert_route(
    route: Mapping[str, Any],
    *,
    pool_name: Callable[[str], str],
    model_routes: Mapping[PoolKey, Sequence[ModelRoute]],
    unknown_models: UnknownModels = "serve",
) -> RouteConversion:
    """Rewrite one HTTPRoute's rules that send traffic to preview pools (see the module docs)."""
    ref = ObjectRef.of(route)
    warnings: list[ConversionWarning] = []
    spec = route.get("spec")
    rules = spec.get("rules") if isinstance(spec, Mapping) else None
    if not isinstance(rules, list):
        return RouteConversion((dict(route),), False)
    namespace = ref.namespace
    new_rules: list[Any] = []
    changed = False
    pools: set[PoolKey] = set()
    for index, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            new_rules.append(rule)
            continue
        converted = _RuleConverter(
            ref, index, rule, namespace, pool_name, model_routes, unknown_models, warnings
        )
        out = converted.run()
        changed = changed or out is not None
        pools.update(converted.pools)
        new_rules.extend([rule] if out is None else out)
    if not changed:
        return RouteConversion((dict(route),), False)

    chunks = _chunk_rules(new_rules)
    assert isinstance(spec, Mapping)
    main_spec = copy.deepcopy(dict(spec))
    main_spec["rules"] = chunks[0]
    main = _with_spec(route, main_spec)
    objects = [main]
    for number, chunk in enumerate(chunks[1:], start=2):
        name = f"{ref.name}-{number}"
        if not is_dns_subdomain(name):
            raise ConversionError(
                [FieldProblem(ref, "metadata.name", f"continuation route name {name!r} is invalid")]
            )
        extra_spec = copy.deepcopy(dict(spec)) if isinstance(spec, Mapping) else {}
        extra_spec["rules"] = chunk
        extra: Obj = {
            "apiVersion": route.get("apiVersion"),
            "kind": route.get("kind"),
            "metadata": new_object_metadata(route.get("metadata"), name=name, warn=lambda f, m: None),
            "spec": extra_spec,
        }
        objects.append(extra)
    if len(objects) > 1:
        warnings.append(
            ConversionWarning(
                ref,
                "spec.rules",
                f"{len(new_rules)} rules exceed one HTTPRoute ({MAX_RULES_PER_ROUTE} rules, "
                f"{MAX_MATCHES_PER_ROUTE} matches): continued in "
                + ", ".join(f"HTTPRoute {o['metadata']['name']}" for o in objects[1:]),
            )
        )
    return RouteConversion(tuple(objects), True, tuple(warnings), frozenset(pools))


def convert_reference_grant(grant: Mapping[str, Any], *, pool_name: Callable[[str], str]) -> RouteConversion:
    """Let a ReferenceGrant that allows references to preview pools allow the GA pools instead."""
    spec = grant.get("spec")
    targets = spec.get("to") if isinstance(spec, Mapping) else None
    if not isinstance(targets, list):
        return RouteConversion((dict(grant),), False)
    new_targets: list[Any] = []
    changed = False
    for target in targets:
        if (
            isinstance(target, Mapping)
            and target.get("group") == PREVIEW_GROUP
            and target.get("kind") == POOL_KIND
        ):
            new = copy.deepcopy(dict(target))
            new["group"] = GA_GROUP
            if isinstance(target.get("name"), str):
                new["name"] = pool_name(target["name"])
            new_targets.append(new)
            changed = True
        else:
            new_targets.append(copy.deepcopy(target))
    if not changed:
        return RouteConversion((dict(grant),), False)
    assert isinstance(spec, Mapping)
    new_spec = {key: (new_targets if key == "to" else copy.deepcopy(value)) for key, value in spec.items()}
    return RouteConversion((_with_spec(grant, new_spec),), True)


class _RuleConverter:
    def __init__(
        self,
        ref: ObjectRef,
        index: int,
        rule: Mapping[str, Any],
        namespace: str,
        pool_name: Callable[[str], str],
        model_routes: Mapping[PoolKey, Sequence[ModelRoute]],
        unknown_models: UnknownModels,
        warnings: list[ConversionWarning],
    ) -> None:
        self.ref = ref
        self.field = f"spec.rules[{index}]"
        self.rule = rule
        self.namespace = namespace
        self.pool_name = pool_name
        self.model_routes = model_routes
        self.unknown_models = unknown_models
        self.warnings = warnings
        self.pools: list[PoolKey] = []

    def warn(self, field: str, message: str) -> None:
        self.warnings.append(ConversionWarning(self.ref, field, message))

    def run(self) -> list[Obj] | None:
        backend_refs, pools, converted = self._backend_refs()
        if not converted:
            return None
        self.pools = pools
        base = {key: copy.deepcopy(value) for key, value in self.rule.items()}
        base["backendRefs"] = backend_refs
        actions = self._actions(pools)
        if not actions:
            names = ", ".join(name for _, name in pools)
            self.warn(
                self.field,
                f"no InferenceModel in the input for pool(s) {names}: rule not expanded, so every model is "
                f"served at priority 0 (the v0.3.0 EPP answered 404 for models without an InferenceModel); "
                f"convert the InferenceModels together with this route",
            )
            return [base]

        raw_matches = self.rule.get("matches")
        free: list[Mapping[str, Any] | None] = []
        pinned: dict[str, list[Mapping[str, Any]]] = {}
        unexpandable: list[Mapping[str, Any]] = []
        if not raw_matches:
            free.append(None)
        for i, match in enumerate(raw_matches or []):
            match = match if isinstance(match, Mapping) else {}
            headers = match.get("headers") or []
            pins = [h for h in headers if str(h.get("name", "")).lower() == MODEL_NAME_HEADER.lower()]
            if not pins:
                free.append(match)
            elif pins[0].get("type", "Exact") == "Exact" and isinstance(pins[0].get("value"), str):
                pinned.setdefault(pins[0]["value"], []).append(match)
            else:
                unexpandable.append(match)
                self.warn(
                    f"{self.field}.matches[{i}].headers",
                    f"matches {MODEL_NAME_HEADER} by {pins[0].get('type')}: cannot tell which models it selects, "
                    f"so it sets no objective (requests get priority 0)",
                )

        out: list[Obj] = []
        for number, action in enumerate(actions.values()):
            matches = [_with_model_header(m, action.model_name, self.ref, self.field) for m in free]
            matches += [copy.deepcopy(dict(m)) for m in pinned.pop(action.model_name, [])]
            if not matches:
                continue
            rule = copy.deepcopy(base)
            if isinstance(base.get("name"), str):
                rule["name"] = f"{base['name']}-{number + 1}"
            rule["matches"] = matches
            sets = [(INFERENCE_OBJECTIVE, action.objective)]
            if action.rewrite_to is not None:
                sets.append((MODEL_NAME_REWRITE, action.rewrite_to))
            rule["filters"] = self._with_header_sets(base.get("filters"), sets, f"{self.field}.filters")
            rule["backendRefs"] = self._split_backend_refs(base["backendRefs"], action.model_name)
            out.append(_ordered_rule(rule))

        leftovers = [m for ms in pinned.values() for m in ms]
        rest: list[Mapping[str, Any] | None] = list(unexpandable)
        if not free and not leftovers:
            pass  # every match is pinned to a model that has an InferenceModel: no catch-all
        elif self.unknown_models == "serve":
            rest = free + leftovers + rest
            self.warn(
                self.field,
                "kept as the catch-all for model names without an InferenceModel: the v0.3.0 EPP answered 404 "
                "for them, the GA pool serves them at priority 0 (convert with --unknown-models=reject to keep 404)",
            )
        else:
            self.warn(
                self.field,
                "catch-all dropped (--unknown-models=reject): requests for model names without an InferenceModel, "
                f"and requests without {MODEL_NAME_HEADER} (no body-based routing), match no rule: the gateway "
                "answers 404",
            )
        if rest:
            fallback = copy.deepcopy(base)
            if raw_matches or rest != [None]:
                fallback["matches"] = [copy.deepcopy(dict(m)) for m in rest if m is not None]
            out.append(fallback)
        return out

    def _backend_refs(self) -> tuple[list[Any], list[PoolKey], bool]:
        refs = self.rule.get("backendRefs") or []
        out: list[Any] = []
        pools: list[PoolKey] = []
        converted = False
        for br in refs:
            if not isinstance(br, Mapping):
                out.append(copy.deepcopy(br))
                continue
            group, kind = br.get("group", ""), br.get("kind", "Service")
            new = copy.deepcopy(dict(br))
            if kind == POOL_KIND and group in (PREVIEW_GROUP, GA_GROUP) and isinstance(br.get("name"), str):
                if group == PREVIEW_GROUP:
                    new["group"] = GA_GROUP
                    new["name"] = self.pool_name(br["name"])
                    converted = True
                key = (str(br.get("namespace") or self.namespace), new["name"])
                if key not in pools:
                    pools.append(key)
            out.append(new)
        return (_merge_backend_refs(out) if converted else out), pools, converted

    def _actions(self, pools: list[PoolKey]) -> dict[str, ModelRoute]:
        actions: dict[str, ModelRoute] = {}
        for pool in pools:
            for action in self.model_routes.get(pool, ()):
                first = actions.setdefault(action.model_name, action)
                if first is not action and (first.objective, first.rewrite_to) != (
                    action.objective,
                    action.rewrite_to,
                ):
                    self.warn(
                        f"{self.field}.backendRefs",
                        f"model {action.model_name!r}: pools {first.ga_pool} and {action.ga_pool} of this rule need "
                        f"different headers (objective {first.objective!r} vs {action.objective!r}); a rule sets "
                        f"one value for all its backends, so {first.source}'s is used",
                    )
        if len(pools) > 1:
            for name in actions:
                missing = [
                    pool_name
                    for pool_ns, pool_name in pools
                    if not any(m.model_name == name for m in self.model_routes.get((pool_ns, pool_name), ()))
                ]
                if missing:
                    self.warn(
                        f"{self.field}.backendRefs",
                        f"model {name!r} has no InferenceModel for pool(s) {', '.join(missing)}: the v0.3.0 EPP "
                        f"answered 404 for the share of its requests sent there, the GA pools serve them",
                    )
        return actions

    def _split_backend_refs(self, refs: list[Any], model_name: str) -> list[Any]:
        """The rule's backendRefs for one model: each backendRef to a GA pool whose InferenceModel
        splits ``model_name`` over several targets becomes one backendRef per target (weights
        multiplied), with a RequestHeaderModifier setting ``x-gateway-model-name-rewrite``."""
        plan: list[tuple[Any, int, tuple[tuple[str, int], ...]]] = []  # (ref, weight, targets)
        for ref in refs:
            weight = int(ref.get("weight", 1)) if isinstance(ref, Mapping) else 1
            targets: tuple[tuple[str, int], ...] = ()
            if isinstance(ref, Mapping) and ref.get("kind") == POOL_KIND and ref.get("group") == GA_GROUP:
                key = (str(ref.get("namespace") or self.namespace), str(ref.get("name")))
                route = next((m for m in self.model_routes.get(key, ()) if m.model_name == model_name), None)
                targets = route.targets if route is not None else ()
            plan.append((ref, weight, targets))
        if not any(targets for _, _, targets in plan):
            return copy.deepcopy(refs)
        # Integer weights keeping every share exactly: multiply by the lcm of the split totals.
        scale = math.lcm(*(sum(w for _, w in targets) for _, _, targets in plan if targets))
        weighted: list[tuple[Any, int, str | None]] = []  # (ref, weight, rewrite target)
        for ref, weight, targets in plan:
            if not targets:
                weighted.append((ref, weight * scale, None))
                continue
            if weight == 0:  # no traffic: nothing to split
                weighted.append((ref, 0, None))
                continue
            total = sum(w for _, w in targets)
            weighted.extend((ref, weight * w * (scale // total), name) for name, w in targets)
        field = f"{self.field}.backendRefs"
        if len(weighted) > MAX_BACKEND_REFS:
            raise ConversionError(
                [
                    FieldProblem(
                        self.ref,
                        field,
                        f"Too many: model {model_name!r} needs {len(weighted)} backendRefs (one per target model) "
                        f"in one rule, more than {MAX_BACKEND_REFS}: convert with --target-models=rewrite-resource",
                    )
                ]
            )
        weights = _fit_weights([w for _, w, _ in weighted])
        if weights != [w for _, w, _ in weighted]:
            self.warn(
                field,
                f"model {model_name!r}: weights scaled to at most {MAX_BACKEND_WEIGHT} (proportions within 1e-6)",
            )
        out: list[Any] = []
        for (ref, _, target), weight in zip(weighted, weights, strict=True):
            new = copy.deepcopy(ref)
            if isinstance(new, dict):
                new["weight"] = weight
                if target is not None and target != model_name:
                    index = len(out)
                    new["filters"] = self._with_header_sets(
                        new.get("filters"), [(MODEL_NAME_REWRITE, target)], f"{field}[{index}].filters"
                    )
                    new = {k: new[k] for k in _BACKEND_REF_ORDER if k in new} | {
                        k: v for k, v in new.items() if k not in _BACKEND_REF_ORDER
                    }
            out.append(new)
        return out

    def _with_header_sets(self, filters: Any, sets: list[tuple[str, str]], field: str) -> list[Any]:
        out = copy.deepcopy(list(filters)) if isinstance(filters, list) else []
        modifier = next(
            (f for f in out if isinstance(f, dict) and f.get("type") == "RequestHeaderModifier"),
            None,
        )
        if modifier is None:
            out.append(
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"set": [{"name": n, "value": v} for n, v in sets]},
                }
            )
            return out
        body = modifier.setdefault("requestHeaderModifier", {})
        ours = {n.lower() for n, _ in sets}
        kept = []
        for entry in body.get("set") or []:
            if str(entry.get("name", "")).lower() in ours:
                self.warn(
                    field,
                    f"RequestHeaderModifier already set {entry.get('name')}: replaced by the converted value",
                )
            else:
                kept.append(entry)
        body["set"] = kept + [{"name": n, "value": v} for n, v in sets]
        for key in ("add", "remove"):
            entries = body.get(key) or []
            names = [e if key == "remove" else e.get("name", "") for e in entries]
            if any(str(n).lower() in ours for n in names):
                self.warn(
                    field,
                    f"RequestHeaderModifier.{key} touches a header the conversion sets",
                )
        if len(body["set"]) > MAX_SET_HEADERS:
            raise ConversionError(
                [
                    FieldProblem(
                        self.ref,
                        field,
                        f"Too many: more than {MAX_SET_HEADERS} headers to set",
                    )
                ]
            )
        return out


def _with_model_header(match: Mapping[str, Any] | None, model_name: str, ref: ObjectRef, field: str) -> Obj:
    header = {"type": "Exact", "name": MODEL_NAME_HEADER, "value": model_name}
    if match is None:
        return {"path": {"type": "PathPrefix", "value": "/"}, "headers": [header]}
    out = copy.deepcopy(dict(match))
    headers = list(out.get("headers") or [])
    if len(headers) >= 16:
        raise ConversionError(
            [FieldProblem(ref, f"{field}.matches", "Too many: no room for a 17th header match")]
        )
    out["headers"] = [*headers, header]
    return out


_BACKEND_REF_ORDER = ("group", "kind", "name", "namespace", "port", "weight", "filters")


def _fit_weights(weights: list[int]) -> list[int]:
    """Weights within Gateway API's maximum (1,000,000): exact when a common divisor allows it."""
    if max(weights, default=0) <= MAX_BACKEND_WEIGHT:
        return weights
    divisor = math.gcd(*weights)
    reduced = [w // divisor for w in weights]
    if max(reduced) <= MAX_BACKEND_WEIGHT:
        return reduced
    factor = MAX_BACKEND_WEIGHT / max(reduced)
    return [max(1, round(w * factor)) if w else 0 for w in reduced]


def _merge_backend_refs(refs: list[Any]) -> list[Any]:
    """Merge backendRefs that point at the same backend with no filters (weights add up, default 1)."""
    out: list[Any] = []
    index: dict[str, int] = {}
    for br in refs:
        if not isinstance(br, dict) or br.get("filters"):
            out.append(br)
            continue
        key = repr(sorted((k, repr(v)) for k, v in br.items() if k != "weight"))
        if key in index:
            first = out[index[key]]
            first["weight"] = int(first.get("weight", 1)) + int(br.get("weight", 1))
        else:
            index[key] = len(out)
            out.append(br)
    return out


def _ordered_rule(rule: Obj) -> Obj:
    order = ["name", "matches", "filters", "backendRefs"]
    return {key: rule[key] for key in order if key in rule} | {
        k: v for k, v in rule.items() if k not in order
    }


def _chunk_rules(rules: list[Any]) -> list[list[Any]]:
    chunks: list[list[Any]] = [[]]
    matches = 0
    for rule in rules:
        count = (len(rule.get("matches") or []) or 1) if isinstance(rule, Mapping) else 1
        if chunks[-1] and (len(chunks[-1]) >= MAX_RULES_PER_ROUTE or matches + count > MAX_MATCHES_PER_ROUTE):
            chunks.append([])
            matches = 0
        chunks[-1].append(rule)
        matches += count
    return chunks


def _with_spec(obj: Mapping[str, Any], spec: Obj) -> Obj:
    return {key: (spec if key == "spec" else copy.deepcopy(value)) for key, value in obj.items()}
