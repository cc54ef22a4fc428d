"""Scheduling: framework (profiles of filters, weighted scorers, a picker), plugins, config loader."""

from infergate.epp.scheduling.config import (
    PRESETS,
    build_scheduler,
    load_config_file,
    load_config_text,
    load_preset,
    parse_config,
    preset_text,
)
from infergate.epp.scheduling.framework import (
    Candidate,
    ConfigError,
    Scheduler,
    SchedulingError,
    SchedulingRequest,
    SchedulingResult,
)

__all__ = [
    "PRESETS",
    "Candidate",
    "ConfigError",
    "Scheduler",
    "SchedulingError",
    "SchedulingRequest",
    "SchedulingResult",
    "build_scheduler",
    "load_config_file",
    "load_config_text",
    "load_preset",
    "parse_config",
    "preset_text",
]
