"""Profile handlers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infergate.epp.scheduling.framework import (
    CycleState,
    Plugin,
    PluginHandle,
    ProfileResult,
    SchedulerProfile,
    SchedulingError,
    SchedulingRequest,
    SchedulingResult,
)
from infergate.epp.scheduling.plugins.params import check_keys


class SingleProfileHandler(Plugin):
    """Runs every profile once; exactly one result is expected and it is the primary one."""

    type_name = "single-profile-handler"

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> SingleProfileHandler:
        check_keys(params, ())
        return cls(name)

    def pick_profiles(self, state: CycleState, request: SchedulingRequest, profiles: Mapping[str, SchedulerProfile],
                      results: Mapping[str, ProfileResult | None]) -> Mapping[str, SchedulerProfile]:
        if results:
            return {}
        return profiles

    def process_results(self, state: CycleState, request: SchedulingRequest,
                        results: dict[str, ProfileResult | None]) -> SchedulingResult:
        if len(results) != 1:
            raise SchedulingError(f"single profile handler expects exactly one profile result, got {len(results)}")
        name, result = next(iter(results.items()))
        if result is None:
            raise SchedulingError(f"profile {name!r} found no endpoint")
        return SchedulingResult({name: result}, name)
