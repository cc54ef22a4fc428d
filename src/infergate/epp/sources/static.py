"""A pool described by a YAML file, re-read when it changes (standalone use and tests).

File shape (see docs/epp.md)::

    pool:                     # short form, or a full InferencePool manifest of either generation
      name: my-pool
      namespace: default
      group: inference.networking.k8s.io   # inference.networking.x-k8s.io = preview
      selector: {app: vllm}   # optional here: omitted = every listed endpoint
      targetPorts: [8000]
    objectives:               # InferenceObjectives (name, priority) or full manifests
      - {name: critical, priority: 2}
    models:                   # preview InferenceModels (short form or manifests)
      - {name: food-review, modelName: food-review, criticality: Standard,
         targetModels: [{name: food-review-1, weight: 100}]}
    rewrites:                 # InferenceModelRewrites (short form = llm-d.ai) or full manifests of
      - name: food-review     # either group (llm-d.ai wins when both are given; epp/rewrite.py)
        rules:
        - matches: [{model: {value: food-review}}]
          targets: [{modelRewrite: food-review-v1, weight: 90}, {modelRewrite: food-review-v2, weight: 10}]
    endpoints:                # pods
      - {name: pod-a, address: 127.0.0.1, labels: {app: vllm}, ready: true, port: 8001}

``port``/``ports`` on an endpoint overrides the pool's target ports for that pod (several
simulators on one address). Invalid content keeps the previous state and is logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infergate import api
from infergate.api import yamlload
from infergate.epp.datastore import GA_GROUP, PREVIEW_GROUP, InferenceModelInfo, Objective, PodInfo, PoolInfo
from infergate.epp.rewrite import LLMD_GROUP, XK8S_GROUP, ModelRewrite, rewrite_from_object
from infergate.epp.sources.base import SourceError
from infergate.epp.sources.convert import model_from_object, objective_from_object, pool_from_object

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaticPool:
    pool: PoolInfo
    pods: tuple[PodInfo, ...]
    objectives: tuple[Objective, ...]
    models: tuple[InferenceModelInfo, ...]
    rewrites: tuple[ModelRewrite, ...] = field(default=())


def _short_pool(raw: Mapping[str, Any]) -> PoolInfo:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SourceError("pool.name: required")
    group = raw.get("group", GA_GROUP)
    if group not in (GA_GROUP, PREVIEW_GROUP):
        raise SourceError(f"pool.group: must be {GA_GROUP} or {PREVIEW_GROUP}, got {group!r}")
    selector = raw.get("selector")
    if selector is not None and not isinstance(selector, Mapping):
        raise SourceError("pool.selector: must be a map of labels")
    ports_raw = raw.get("targetPorts", [raw.get("targetPortNumber", 8000)])
    if not isinstance(ports_raw, list) or not ports_raw:
        raise SourceError("pool.targetPorts: must be a non-empty list of ports")
    ports = tuple(_port(p.get("number") if isinstance(p, Mapping) else p, f"pool.targetPorts[{i}]")
                  for i, p in enumerate(ports_raw))
    return PoolInfo(
        name=name,
        namespace=str(raw.get("namespace", "default")),
        group=group,
        selector=None if selector is None else {str(k): str(v) for k, v in selector.items()},
        target_ports=ports,
    )


def _port(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise SourceError(f"{path}: must be a port number 1..65535, got {value!r}")
    return value


def _as_manifest(raw: Mapping[str, Any], kind_spec_keys: tuple[str, ...]) -> dict[str, Any]:
    """Short form {name, ...spec fields} -> {metadata: {name}, spec: {...}}; manifests pass through."""
    if "spec" in raw or "metadata" in raw:
        return dict(raw)
    spec = {key: raw[key] for key in kind_spec_keys if key in raw}
    return {"metadata": {"name": raw.get("name", ""), "creationTimestamp": raw.get("creationTimestamp", "")},
            "spec": spec}


def parse_static(data: Any) -> StaticPool:
    """Validate a parsed YAML document; raises ``SourceError`` naming the field."""
    if not isinstance(data, Mapping):
        raise SourceError("(root): must be a map with pool, endpoints, objectives, models, rewrites")
    unknown = set(data) - {"pool", "endpoints", "objectives", "models", "rewrites"}
    if unknown:
        raise SourceError(f"(root): unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    raw_pool = data.get("pool")
    if not isinstance(raw_pool, Mapping):
        raise SourceError("pool: required, a map")
    pool = pool_from_object(raw_pool) if "apiVersion" in raw_pool else _short_pool(raw_pool)

    pods: list[PodInfo] = []
    for i, item in enumerate(data.get("endpoints") or []):
        path = f"endpoints[{i}]"
        if not isinstance(item, Mapping):
            raise SourceError(f"{path}: must be a map")
        address = item.get("address")
        if not isinstance(address, str) or not address:
            raise SourceError(f"{path}.address: required")
        ports: tuple[int, ...] | None = None
        if "port" in item:
            ports = (_port(item["port"], f"{path}.port"),)
        elif "ports" in item:
            ports = tuple(_port(p, f"{path}.ports[{j}]") for j, p in enumerate(item["ports"] or []))
        labels = item.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise SourceError(f"{path}.labels: must be a map")
        pods.append(PodInfo(
            name=str(item.get("name") or f"{address}-{i}"),
            address=address,
            labels={str(k): str(v) for k, v in labels.items()},
            ready=bool(item.get("ready", True)),
            ports=ports,
        ))
    if len({p.name for p in pods}) != len(pods):
        raise SourceError("endpoints: names must be unique")

    objectives: list[Objective] = []
    for i, item in enumerate(data.get("objectives") or []):
        if not isinstance(item, Mapping):
            raise SourceError(f"objectives[{i}]: must be a map")
        manifest = _as_manifest(item, ("priority",))
        manifest.setdefault("spec", {}).setdefault("poolRef", {"name": pool.name, "group": pool.group})
        try:
            objective = objective_from_object(manifest, pool.name, pool.group)
        except SourceError as exc:
            raise SourceError(f"objectives[{i}].{exc}") from None
        if objective is not None:
            objectives.append(objective)

    models: list[InferenceModelInfo] = []
    for i, item in enumerate(data.get("models") or []):
        if not isinstance(item, Mapping):
            raise SourceError(f"models[{i}]: must be a map")
        manifest = _as_manifest(item, ("modelName", "criticality", "targetModels"))
        manifest.setdefault("spec", {}).setdefault("poolRef", {"name": pool.name})
        try:
            model = model_from_object(manifest, pool.name)
        except SourceError as exc:
            raise SourceError(f"models[{i}].{exc}") from None
        if model is not None:
            models.append(model)
    return StaticPool(pool, tuple(pods), tuple(objectives), tuple(models), _rewrites(data, pool))


def _rewrites(data: Mapping[str, Any], pool: PoolInfo) -> tuple[ModelRewrite, ...]:
    """``rewrites:`` validated as the API server would (field paths), reduced for the EPP."""
    out: list[ModelRewrite] = []
    for i, item in enumerate(data.get("rewrites") or []):
        if not isinstance(item, Mapping):
            raise SourceError(f"rewrites[{i}]: must be a map")
        manifest = _as_manifest(item, ("rules",))
        manifest.setdefault("apiVersion", f"{LLMD_GROUP}/v1alpha2")
        manifest.setdefault("kind", "InferenceModelRewrite")
        meta = manifest.setdefault("metadata", {})
        if not meta.get("creationTimestamp"):
            meta.pop("creationTimestamp", None)
        meta.setdefault("namespace", pool.namespace)
        manifest.setdefault("spec", {}).setdefault("poolRef", {"name": pool.name, "group": pool.group})
        group = str(manifest["apiVersion"]).split("/", 1)[0]
        if group not in (LLMD_GROUP, XK8S_GROUP):
            raise SourceError(f"rewrites[{i}].apiVersion: must be {LLMD_GROUP}/v1alpha2 or {XK8S_GROUP}/v1alpha2")
        errors = api.validate(manifest)
        if errors:
            raise SourceError(f"rewrites[{i}].{errors[0]}")
        rewrite = rewrite_from_object(manifest, pool.name, pool.group)
        if rewrite is not None:
            out.append(rewrite)
    return tuple(out)


def load_static(path: str | os.PathLike[str]) -> StaticPool:
    text = Path(path).read_text()
    try:
        data = yamlload.load(text)
    except yamlload.YAMLError as exc:
        raise SourceError(f"{path}: invalid YAML: {exc}") from None
    try:
        return parse_static(data)
    except SourceError as exc:
        raise SourceError(f"{path}: {exc}") from None


class StaticFileSource:
    """``PoolSource`` from a YAML file; polls its mtime/size and applies changes in place."""

    def __init__(self, path: str | os.PathLike[str], *, poll_interval: float = 0.5) -> None:
        self.path = Path(path)
        self.poll_interval = poll_interval
        self.last_error: str | None = None
        self.loads = 0
        self._stamp: tuple[int, int] | None = None

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def apply_once(self, datastore: Any) -> bool:
        """Read the file if it changed and apply it; True when something was applied."""
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            static = load_static(self.path)
        except (OSError, SourceError) as exc:
            self.last_error = str(exc)
            log.error("static pool file not applied (keeping the previous state): %s", exc)
            return False
        self.last_error = None
        self.loads += 1
        pool = datastore.pool
        if pool is not None and (pool.name, pool.namespace, pool.group) != (
            static.pool.name, static.pool.namespace, static.pool.group):
            datastore.clear()
        datastore.set_pool(static.pool)
        datastore.replace_pods(static.pods)
        datastore.replace_objectives(static.objectives)
        datastore.replace_models(static.models)
        for group in (XK8S_GROUP, LLMD_GROUP):
            of_group = [r for r in static.rewrites if r.group == group]
            datastore.rewrites.set_installed(group, bool(of_group))
            datastore.rewrites.replace_group(group, of_group)
        return True

    async def run(self, datastore: Any) -> None:
        if self._stat() is None:
            raise SourceError(f"{self.path}: static pool file not found")
        while True:
            self.apply_once(datastore)
            await asyncio.sleep(self.poll_interval)
