"""The scheduling framework, shaped like upstream's (gie.md §3.5).

``Scheduler.schedule`` loops over the profile handler's picks; each picked profile runs
its filters in order (stopping with an error when none is left), then every scorer
(score clamped to [0, 1] times the scorer's integer weight, summed per candidate, every
candidate starting at 0), then its picker. The profile handler turns the per-profile
results into a ``SchedulingResult`` with a primary profile.

Per-request work is O(candidates) per plugin with small constants: candidates are a list,
scores a parallel list of floats (no per-candidate dicts), and plugins get the shared
per-cycle ``CycleState`` dict for anything they want to pass on (the prefix scorer stores
its block hashes there for its PreRequest step).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from infergate.epp.datastore import Endpoint
from infergate.epp.metrics_scraper import EndpointMetrics

CycleState = dict[str, Any]


class Candidate:
    """One endpoint as the scheduler sees it for one request."""

    __slots__ = ("endpoint", "hostport", "inflight", "metrics")

    def __init__(self, endpoint: Endpoint, metrics: EndpointMetrics | None = None, inflight: int = 0) -> None:
        self.endpoint = endpoint
        self.hostport = endpoint.hostport
        self.metrics = metrics  # None = unknown (stale or never scraped); never read as idle
        self.inflight = inflight  # requests this EPP sent there that have not finished

    def __repr__(self) -> str:
        return f"Candidate({self.hostport})"


@dataclass
class SchedulingRequest:
    request_id: str
    target_model: str
    prompt: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None  # the parsed request body, for plugins that re-render the prompt


@dataclass
class ProfileResult:
    targets: list[Candidate]


@dataclass
class SchedulingResult:
    profile_results: dict[str, ProfileResult | None]
    primary_profile_name: str

    @property
    def primary(self) -> ProfileResult:
        result = self.profile_results.get(self.primary_profile_name)
        if result is None or not result.targets:
            raise SchedulingError("empty scheduling result")
        return result


class SchedulingError(Exception):
    """No endpoint for this request (upstream maps it to 429 InferencePoolResourceExhausted)."""


class ConfigError(ValueError):
    """Invalid EndpointPickerConfig; the message names the field path and the reason."""


@dataclass
class PluginHandle:
    """What plugins may share: a seeded random source, and the config's plugins by name
    (filled by the loader once all are created; plugins that use another one look it up in
    their ``resolve`` step)."""

    rng: random.Random = field(default_factory=random.Random)
    plugins: dict[str, Any] = field(default_factory=dict)


class Plugin:
    type_name: ClassVar[str] = ""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


@runtime_checkable
class Filter(Protocol):
    name: str

    def filter(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[Candidate]: ...


@runtime_checkable
class Scorer(Protocol):
    name: str

    def score(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> Sequence[float]:
        """One score per candidate, same order; the framework clamps to [0, 1]."""
        ...


@runtime_checkable
class Picker(Protocol):
    name: str

    def pick(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate],
             scores: list[float]) -> list[Candidate]: ...


@runtime_checkable
class PreRequest(Protocol):
    name: str

    def pre_request(self, state: CycleState, request: SchedulingRequest, result: SchedulingResult) -> None: ...


@runtime_checkable
class ResponseObserver(Protocol):
    """Follows a scheduled request to its end (infergate's pick-time accounting): the first
    response body bytes (the prompt has been prefilled) and the end of the request, completed
    or not (error, client abort, stream reset). Called once each, in that order; ``request_done``
    may come without ``response_started``."""

    name: str

    def response_started(self, request_id: str) -> None: ...

    def request_done(self, request_id: str, completed: bool) -> None: ...


@runtime_checkable
class ResponseHeaders(Protocol):
    """Adds headers to the client's response (upstream's ResponseReceived extension point),
    given the ``ip:port`` the gateway reports as having served it (None when not reported)."""

    name: str

    def response_headers(self, served_endpoint: str | None) -> Mapping[str, str]: ...


@dataclass
class WeightedScorer:
    scorer: Scorer
    weight: int


# (extension point, plugin, seconds): upstream's inference_extension_plugin_duration_seconds
PluginTimer = Callable[[str, Any, float], None]


@dataclass
class SchedulerProfile:
    name: str
    filters: list[Filter] = field(default_factory=list)
    scorers: list[WeightedScorer] = field(default_factory=list)
    picker: Picker | None = None
    timer: PluginTimer | None = None

    def run(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> ProfileResult:
        timer = self.timer
        clock = time.perf_counter
        for flt in self.filters:
            started = clock()
            candidates = flt.filter(state, request, candidates)
            if timer is not None:
                timer("Filter", flt, clock() - started)
            if not candidates:
                raise SchedulingError(f"no pods available for the given request (after filter {flt.name})")
        n = len(candidates)
        totals = [0.0] * n
        for weighted in self.scorers:
            weight = weighted.weight
            started = clock()
            scores = weighted.scorer.score(state, request, candidates)
            if timer is not None:
                timer("Scorer", weighted.scorer, clock() - started)
            if len(scores) < n:
                raise IndexError(f"scorer {weighted.scorer.name} returned {len(scores)} scores for {n} candidates")
            # clamp to [0, 1] (NaN and <= 0 add nothing) and add, in one C-level pass
            full = 1.0 * weight
            totals = [t if not s > 0.0 else (t + full if s > 1.0 else t + s * weight)
                      for t, s in zip(totals, scores, strict=False)]
        if self.picker is None:
            raise SchedulingError(f"profile {self.name} has no picker")
        started = clock()
        targets = self.picker.pick(state, request, candidates, totals)
        if timer is not None:
            timer("Picker", self.picker, clock() - started)
        if not targets:
            raise SchedulingError("no pods available for the given request (picker chose none)")
        return ProfileResult(targets)


@runtime_checkable
class ProfileHandler(Protocol):
    name: str

    def pick_profiles(self, state: CycleState, request: SchedulingRequest, profiles: Mapping[str, SchedulerProfile],
                      results: Mapping[str, ProfileResult | None]) -> Mapping[str, SchedulerProfile]: ...

    def process_results(self, state: CycleState, request: SchedulingRequest,
                        results: dict[str, ProfileResult | None]) -> SchedulingResult: ...


class Scheduler:
    """Profile handler + profiles + PreRequest plugins, from an ``EndpointPickerConfig``."""

    MAX_PROFILE_ROUNDS = 16  # bounds a misbehaving profile handler

    def __init__(self, profile_handler: ProfileHandler, profiles: Mapping[str, SchedulerProfile],
                 pre_request: Sequence[PreRequest] = (), plugins: Mapping[str, Any] | None = None,
                 on_duration: Callable[[float], None] | None = None) -> None:
        self.profile_handler = profile_handler
        self.profiles = dict(profiles)
        self.pre_request_plugins = list(pre_request)
        self.plugins = dict(plugins or {})
        self.observers = [p for p in self.plugins.values() if isinstance(p, ResponseObserver)]
        self.response_header_plugins = [p for p in self.plugins.values() if isinstance(p, ResponseHeaders)]
        self.on_duration = on_duration
        self.timer: PluginTimer | None = None

    def schedule(self, request: SchedulingRequest, candidates: list[Candidate],
                 state: CycleState | None = None) -> tuple[SchedulingResult, CycleState]:
        started = time.perf_counter()
        state = {} if state is None else state
        results: dict[str, ProfileResult | None] = {}
        last_error: SchedulingError | None = None
        try:
            for _ in range(self.MAX_PROFILE_ROUNDS):
                picked = self.profile_handler.pick_profiles(state, request, self.profiles, results)
                if not picked:
                    break
                for name, profile in picked.items():
                    try:
                        results[name] = profile.run(state, request, list(candidates))
                    except SchedulingError as exc:
                        last_error = exc
                        results[name] = None
            try:
                result = self.profile_handler.process_results(state, request, results)
            except SchedulingError as exc:
                raise (last_error or exc) from None
            result.primary  # noqa: B018 - raises SchedulingError when empty
            return result, state
        finally:
            if self.on_duration is not None:
                self.on_duration(time.perf_counter() - started)

    def instrument(self, timer: PluginTimer) -> None:
        """Report every plugin call's duration (extension points Filter, Scorer, Picker, PreRequest)."""
        self.timer = timer
        for profile in self.profiles.values():
            profile.timer = timer

    def response_started(self, request_id: str) -> None:
        for plugin in self.observers:
            plugin.response_started(request_id)

    def request_done(self, request_id: str, completed: bool) -> None:
        for plugin in self.observers:
            plugin.request_done(request_id, completed)

    def response_headers(self, served_endpoint: str | None) -> dict[str, str]:
        """The headers the ``ResponseHeaders`` plugins add to a response (usually none)."""
        added: dict[str, str] = {}
        for plugin in self.response_header_plugins:
            added.update(plugin.response_headers(served_endpoint))
        return added

    def pre_request(self, state: CycleState, request: SchedulingRequest, result: SchedulingResult) -> None:
        timer = self.timer
        for plugin in self.pre_request_plugins:
            if timer is None:
                plugin.pre_request(state, request, result)
            else:
                started = time.perf_counter()
                plugin.pre_request(state, request, result)
                timer("PreRequest", plugin, time.perf_counter() - started)
