"""InferenceModelRewrite as the EPP applies it: the body's ``model`` rewritten by weighted targets.

Upstream semantics (GIE v1.2 - v1.5 ``inference.networking.x-k8s.io/v1alpha2``, llm-d router
``llm-d.ai/v1alpha2``):

- a rewrite applies to the pool its ``spec.poolRef`` names (group default
  ``inference.networking.k8s.io``, same namespace);
- a rule matches a request when one of its ``matches[].model`` equals the body's model
  (``Exact``, the only type); a rule without ``matches`` is generic: it matches every model;
- precedence: an exact match beats a generic one; among rules of equal kind, the oldest
  resource (``metadata.creationTimestamp``; ties by namespace/name) wins, then the first rule
  in that resource;
- the winning rule's ``targets`` are chosen by weight (``weight / sum``; no weights: equally);
- when both groups are installed only ``llm-d.ai`` is used, as in the llm-d router (PR #1449):
  :meth:`RewriteTable.set_installed` tells the table which groups exist.

:class:`RewriteTable` is what the sources feed and the director asks (:meth:`RewriteTable.pick`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LLMD_GROUP",
    "XK8S_GROUP",
    "ModelRewrite",
    "RewriteRule",
    "RewriteTable",
    "RewriteTarget",
    "rewrite_from_object",
]

LLMD_GROUP = "llm-d.ai"
XK8S_GROUP = "inference.networking.x-k8s.io"
DEFAULT_POOL_GROUP = "inference.networking.k8s.io"
KIND = "InferenceModelRewrite"


@dataclass(frozen=True)
class RewriteTarget:
    model: str
    weight: int = 1


@dataclass(frozen=True)
class RewriteRule:
    models: frozenset[str]  # empty: a generic rule (matches every model)
    targets: tuple[RewriteTarget, ...]

    @property
    def generic(self) -> bool:
        return not self.models


@dataclass(frozen=True)
class ModelRewrite:
    """One InferenceModelRewrite object, reduced to what matching needs."""

    group: str
    namespace: str
    name: str
    created: str  # RFC 3339 (sorts by time); "" when unknown (then oldest)
    rules: tuple[RewriteRule, ...]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.namespace, self.name)

    @property
    def age_order(self) -> tuple[str, str, str]:
        return (self.created, self.namespace, self.name)


def _group_of(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def rewrite_from_object(obj: Mapping[str, Any], pool_name: str, pool_group: str = DEFAULT_POOL_GROUP) -> ModelRewrite | None:
    """The rewrite of a Kubernetes object, or None when it names another pool (or is malformed:
    the API server validated it, so a malformed one is skipped rather than failing the EPP)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    pool_ref = spec.get("poolRef") or {}
    if not isinstance(pool_ref, Mapping) or pool_ref.get("name") != pool_name:
        return None
    if (pool_ref.get("group") or DEFAULT_POOL_GROUP) != pool_group:
        return None
    rules: list[RewriteRule] = []
    for raw in spec.get("rules") or []:
        if not isinstance(raw, Mapping):
            return None
        models = frozenset(
            str(m["model"]["value"])
            for m in raw.get("matches") or []
            if isinstance(m, Mapping) and isinstance(m.get("model"), Mapping) and m["model"].get("value")
        )
        targets = tuple(
            RewriteTarget(str(t["modelRewrite"]), int(t.get("weight") or 1))
            for t in raw.get("targets") or []
            if isinstance(t, Mapping) and t.get("modelRewrite")
        )
        if targets:
            rules.append(RewriteRule(models, targets))
    return ModelRewrite(
        group=_group_of(str(obj.get("apiVersion") or "")),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        created=str(meta.get("creationTimestamp") or ""),
        rules=tuple(rules),
    )


class RewriteTable:
    """The rewrites of one pool, from either group; answers which model a request is sent as."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str], ModelRewrite] = {}
        self._installed: set[str] = set()
        self._ordered: list[ModelRewrite] | None = None

    # -- fed by the sources -------------------------------------------------------------
    def set_installed(self, group: str, installed: bool = True) -> None:
        """Whether a group's InferenceModelRewrite CRD exists (``llm-d.ai`` wins over x-k8s.io)."""
        if installed:
            self._installed.add(group)
        else:
            self._installed.discard(group)
        self._ordered = None

    def upsert(self, rewrite: ModelRewrite) -> None:
        self._by_key[rewrite.key] = rewrite
        self._ordered = None

    def delete(self, group: str, namespace: str, name: str) -> None:
        if self._by_key.pop((group, namespace, name), None) is not None:
            self._ordered = None

    def replace_group(self, group: str, rewrites: list[ModelRewrite]) -> None:
        """A full list of one group (after a list or re-list)."""
        for key in [k for k in self._by_key if k[0] == group]:
            del self._by_key[key]
        for r in rewrites:
            self._by_key[r.key] = r
        self._ordered = None

    # -- asked by the director ----------------------------------------------------------
    @property
    def active_group(self) -> str | None:
        """The group whose rewrites apply: ``llm-d.ai`` when installed (or when only it has
        objects), else the x-k8s.io group."""
        groups = self._installed | {k[0] for k in self._by_key}
        if LLMD_GROUP in groups:
            return LLMD_GROUP
        return XK8S_GROUP if XK8S_GROUP in groups else None

    def _active(self) -> list[ModelRewrite]:
        if self._ordered is None:
            group = self.active_group
            self._ordered = sorted((r for r in self._by_key.values() if r.group == group), key=lambda r: r.age_order)
        return self._ordered

    def __len__(self) -> int:
        return len(self._active())

    def rule_for(self, model: str) -> RewriteRule | None:
        """The rule that applies to a model: exact before generic, oldest resource, first rule."""
        generic: RewriteRule | None = None
        for rewrite in self._active():
            for rule in rewrite.rules:
                if model in rule.models:
                    return rule
                if generic is None and rule.generic:
                    generic = rule
        return generic

    def pick(self, model: str, rng: random.Random) -> str | None:
        """The model to send the request as, or None when no rule applies."""
        if not self._by_key:
            return None
        rule = self.rule_for(model)
        if rule is None:
            return None
        targets = rule.targets
        if len(targets) == 1:
            return targets[0].model
        total = sum(t.weight for t in targets)
        point = rng.random() * total
        for t in targets:
            point -= t.weight
            if point < 0:
                return t.model
        return targets[-1].model
