"""What one EPP knows about its InferencePool: the pool, its endpoints, objectives and models.

Concurrency model: **single event loop**. Every mutation and read happens on the asyncio
loop that runs the EPP; sources whose client libraries block (the Kubernetes watch) run in
threads and hand their events to the loop with ``loop.call_soon_threadsafe``. Listeners are
called synchronously after each change, on the loop, and must not block.

Endpoints are derived, never stored: ready pods that match the pool's selector, times the
pool's target ports (a pod with several target ports is several endpoints). Reads return
immutable snapshots (tuples of frozen dataclasses), recomputed only after a change, so the
per-request path does no allocation here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from infergate.epp.rewrite import RewriteTable

GA_GROUP = "inference.networking.k8s.io"
PREVIEW_GROUP = "inference.networking.x-k8s.io"
POOL_GROUPS = (GA_GROUP, PREVIEW_GROUP)

Generation = Literal["ga", "preview"]
Criticality = Literal["Critical", "Standard", "Sheddable"]


@dataclass(frozen=True)
class PoolInfo:
    """The InferencePool this EPP serves (either API generation, in one shape)."""

    name: str
    namespace: str = "default"
    group: str = GA_GROUP
    # matchLabels (v1) / selector map (v1alpha2); None = every pod (static files only)
    selector: Mapping[str, str] | None = field(default_factory=dict)
    target_ports: tuple[int, ...] = (8000,)
    resource_version: str = ""

    @property
    def generation(self) -> Generation:
        return "preview" if self.group == PREVIEW_GROUP else "ga"

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Service-style selector: every pair must match; an empty selector selects nothing."""
        if self.selector is None:
            return True
        if not self.selector:
            return False
        return all(labels.get(key) == value for key, value in self.selector.items())


@dataclass(frozen=True)
class PodInfo:
    name: str
    address: str  # status.podIP
    labels: Mapping[str, str] = field(default_factory=dict)
    ready: bool = True  # PodReady=True and not being deleted
    ports: tuple[int, ...] | None = None  # static files only: these ports instead of the pool's targetPorts


@dataclass(frozen=True)
class Endpoint:
    """One schedulable target: a ready pod's address and one of the pool's target ports."""

    pod_name: str
    address: str
    port: int
    labels: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    # ``ip:port`` as upstream writes it (IPv6 in brackets, like Go's JoinHostPort); derived
    hostport: str = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        address = f"[{self.address}]" if ":" in self.address else self.address
        object.__setattr__(self, "hostport", f"{address}:{self.port}")


@dataclass(frozen=True)
class Objective:
    """A GA InferenceObjective (keyed by metadata.name; the request header names it)."""

    name: str
    priority: int | None = None


@dataclass(frozen=True)
class TargetModel:
    name: str
    weight: int | None = None


@dataclass(frozen=True)
class InferenceModelInfo:
    """A preview InferenceModel (v1alpha2): model name, criticality, weighted target models."""

    name: str  # metadata.name
    model_name: str  # spec.modelName (the body "model" it serves)
    criticality: Criticality | None = None
    target_models: tuple[TargetModel, ...] = ()
    creation_timestamp: str = ""  # RFC 3339; the oldest wins a modelName conflict


Listener = Callable[[], None]


class Datastore:
    """The pool, its pods, objectives and InferenceModels, with change notification."""

    def __init__(self) -> None:
        self._pool: PoolInfo | None = None
        self._pods: dict[str, PodInfo] = {}
        self._objectives: dict[str, Objective] = {}
        self._models: dict[str, InferenceModelInfo] = {}
        self._by_model_name: dict[str, InferenceModelInfo] = {}
        self._endpoints: tuple[Endpoint, ...] = ()
        self._by_hostport: dict[str, Endpoint] = {}
        self._listeners: list[Listener] = []
        self.version = 0  # bumped on every change
        self.rewrites = RewriteTable()  # InferenceModelRewrites of the pool (epp/rewrite.py)

    # ---- reads -------------------------------------------------------------------------
    @property
    def pool(self) -> PoolInfo | None:
        return self._pool

    @property
    def synced(self) -> bool:
        """True once the pool is known (upstream's PoolHasSynced)."""
        return self._pool is not None

    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    def endpoint(self, hostport: str) -> Endpoint | None:
        return self._by_hostport.get(hostport)

    def pods(self) -> tuple[PodInfo, ...]:
        return tuple(self._pods.values())

    def objective(self, name: str) -> Objective | None:
        return self._objectives.get(name)

    def objectives(self) -> tuple[Objective, ...]:
        return tuple(self._objectives.values())

    def model(self, model_name: str) -> InferenceModelInfo | None:
        """The InferenceModel serving ``model_name`` (oldest creationTimestamp wins a conflict)."""
        return self._by_model_name.get(model_name)

    def models(self) -> tuple[InferenceModelInfo, ...]:
        return tuple(self._models.values())

    # ---- listeners ---------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener()`` after every change; returns an unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _changed(self) -> None:
        self._rebuild()
        self.version += 1
        for listener in list(self._listeners):
            listener()

    def _rebuild(self) -> None:
        pool = self._pool
        endpoints: list[Endpoint] = []
        if pool is not None:
            for pod in sorted(self._pods.values(), key=lambda p: p.name):
                if not pod.ready or not pod.address or not pool.selects(pod.labels):
                    continue
                for port in pod.ports or pool.target_ports:
                    endpoints.append(Endpoint(pod.name, pod.address, port, pod.labels))
        self._endpoints = tuple(endpoints)
        self._by_hostport = {e.hostport: e for e in endpoints}
        by_name: dict[str, InferenceModelInfo] = {}
        for model in sorted(self._models.values(), key=lambda m: (m.creation_timestamp, m.name)):
            by_name.setdefault(model.model_name, model)
        self._by_model_name = by_name

    # ---- writes ------------------------------------------------------------------------
    def set_pool(self, pool: PoolInfo) -> None:
        if pool == self._pool:
            return
        self._pool = pool
        self._changed()

    def remove_pool(self) -> None:
        """The pool was deleted; pods and objectives stay known (their watches keep them current)
        but nothing is schedulable until the pool is back."""
        if self._pool is not None:
            self._pool = None
            self._changed()

    def clear(self) -> None:
        """The pool is gone (NotFound or deleting): drop everything, as upstream's Clear()."""
        self._pool = None
        self._pods.clear()
        self._objectives.clear()
        self._models.clear()
        self._changed()

    def upsert_pod(self, pod: PodInfo) -> None:
        if self._pods.get(pod.name) == pod:
            return
        self._pods[pod.name] = pod
        self._changed()

    def delete_pod(self, name: str) -> None:
        if self._pods.pop(name, None) is not None:
            self._changed()

    def replace_pods(self, pods: Iterable[PodInfo]) -> None:
        new = {pod.name: pod for pod in pods}
        if new != self._pods:
            self._pods = new
            self._changed()

    def upsert_objective(self, objective: Objective) -> None:
        if self._objectives.get(objective.name) == objective:
            return
        self._objectives[objective.name] = objective
        self._changed()

    def delete_objective(self, name: str) -> None:
        if self._objectives.pop(name, None) is not None:
            self._changed()

    def replace_objectives(self, objectives: Iterable[Objective]) -> None:
        new = {o.name: o for o in objectives}
        if new != self._objectives:
            self._objectives = new
            self._changed()

    def upsert_model(self, model: InferenceModelInfo) -> None:
        if self._models.get(model.name) == model:
            return
        self._models[model.name] = model
        self._changed()

    def delete_model(self, name: str) -> None:
        if self._models.pop(name, None) is not None:
            self._changed()

    def replace_models(self, models: Iterable[InferenceModelInfo]) -> None:
        new = {m.name: m for m in models}
        if new != self._models:
            self._models = new
            self._changed()
