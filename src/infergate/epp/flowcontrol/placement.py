"""Where flow control lets an admitted request go (``FlowControlConfig.placement``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from infergate.epp.flowcontrol.controller import FlowControlConfig

C = TypeVar("C")


def placement_candidates(config: FlowControlConfig, candidates: Sequence[C], headroom: Callable[[C], int]) -> list[C]:
    """The candidates the scheduler may pick from. Flow control off, or placement "scheduler": every
    one. Placement "headroom": admission counted pool capacity, so the request goes where that
    capacity is, the candidates with ``headroom(c) > 0``; every one when none has (fail open)."""
    if not config.enabled or config.placement == "scheduler":
        return list(candidates)
    roomy = [c for c in candidates if headroom(c) > 0]
    return roomy or list(candidates)
