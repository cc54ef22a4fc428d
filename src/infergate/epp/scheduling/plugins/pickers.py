"""Pickers (param ``maxNumOfEndpoints``, default 1, <= 0 -> 1, as upstream)."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from infergate.epp.scheduling.framework import Candidate, CycleState, Plugin, PluginHandle, SchedulingRequest
from infergate.epp.scheduling.plugins.params import check_keys, int_param


class _Picker(Plugin):
    def __init__(self, name: str, rng: random.Random, max_endpoints: int = 1) -> None:
        super().__init__(name)
        self.rng = rng
        self.max_endpoints = max_endpoints

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> Any:
        check_keys(params, ("maxNumOfEndpoints",))
        return cls(name, handle.rng, int_param(params, "maxNumOfEndpoints", 1, nonpositive_default=True))


class MaxScorePicker(_Picker):
    """Highest total score; ties broken uniformly at random (upstream: shuffle, stable sort)."""

    type_name = "max-score-picker"

    def pick(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate],
             scores: list[float]) -> list[Candidate]:
        if not candidates:
            return []
        if self.max_endpoints == 1:
            best = max(scores)
            ties = [c for c, s in zip(candidates, scores, strict=True) if s == best]
            return [ties[0] if len(ties) == 1 else ties[self.rng.randrange(len(ties))]]
        order = list(range(len(candidates)))
        self.rng.shuffle(order)
        order.sort(key=lambda i: -scores[i])
        return [candidates[i] for i in order[: self.max_endpoints]]


class RandomPicker(_Picker):
    type_name = "random-picker"

    def pick(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate],
             scores: list[float]) -> list[Candidate]:
        k = min(self.max_endpoints, len(candidates))
        return self.rng.sample(candidates, k)


class WeightedRandomPicker(_Picker):
    """A-Res weighted sampling without replacement: key ``u ** (1 / score)``, top k; all scores
    <= 0 -> uniform random."""

    type_name = "weighted-random-picker"

    def pick(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate],
             scores: list[float]) -> list[Candidate]:
        if not candidates:
            return []
        if all(s <= 0 for s in scores):
            return self.rng.sample(candidates, min(self.max_endpoints, len(candidates)))
        rand = self.rng.random
        keys = []
        for i, s in enumerate(scores):
            if s <= 0:
                keys.append((0.0, i))
            else:
                u = rand() or 1e-300
                keys.append((math.exp(math.log(u) / s), i))
        keys.sort(reverse=True)
        return [candidates[i] for _, i in keys[: self.max_endpoints]]


class RoundRobinPicker(_Picker):
    """Baseline: the next endpoint in ``ip:port`` order after the last one picked (ignores scores)."""

    type_name = "round-robin-picker"

    def __init__(self, name: str, rng: random.Random, max_endpoints: int = 1) -> None:
        super().__init__(name, rng, max_endpoints)
        self._next = 0

    def pick(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate],
             scores: list[float]) -> list[Candidate]:
        if not candidates:
            return []
        ordered = sorted(candidates, key=lambda c: c.hostport)
        n = len(ordered)
        start = self._next % n
        self._next = start + 1
        return [ordered[(start + i) % n] for i in range(min(self.max_endpoints, n))]
