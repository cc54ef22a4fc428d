"""In-tree scheduling plugins, registered by upstream's type names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from infergate.epp.scheduling.framework import ConfigError, Plugin, PluginHandle
from infergate.epp.scheduling.plugins.filters import (
    HeaderBasedTestingFilter,
    LeastKvCacheFilter,
    LeastQueueFilter,
    LoraAffinityFilter,
    LowLatencyFilter,
    LowQueueFilter,
)
from infergate.epp.scheduling.plugins.inflight import InflightLoadProducer
from infergate.epp.scheduling.plugins.pickers import (
    MaxScorePicker,
    RandomPicker,
    RoundRobinPicker,
    WeightedRandomPicker,
)
from infergate.epp.scheduling.plugins.precise_prefix import PrecisePrefixCacheScorer
from infergate.epp.scheduling.plugins.predicted_latency import (
    PredictedTtftScorer,
    PrefixCacheAffinityFilter,
    TokenLoadScorer,
)
from infergate.epp.scheduling.plugins.prefix import PrefixCacheScorer
from infergate.epp.scheduling.plugins.profile_handlers import SingleProfileHandler
from infergate.epp.scheduling.plugins.scorers import (
    ActiveRequestScorer,
    KvCacheUtilizationScorer,
    LoraAffinityScorer,
    QueueScorer,
)
from infergate.epp.scheduling.plugins.served_endpoint import DestinationEndpointServedVerifier

Factory = Callable[[str, Mapping[str, Any], PluginHandle], Plugin]

PLUGIN_TYPES: dict[str, type[Any]] = {
    cls.type_name: cls
    for cls in (
        QueueScorer,
        KvCacheUtilizationScorer,
        LoraAffinityScorer,
        ActiveRequestScorer,
        PrefixCacheScorer,
        PrecisePrefixCacheScorer,
        LeastQueueFilter,
        LeastKvCacheFilter,
        LoraAffinityFilter,
        LowQueueFilter,
        LowLatencyFilter,
        HeaderBasedTestingFilter,
        DestinationEndpointServedVerifier,
        MaxScorePicker,
        RandomPicker,
        WeightedRandomPicker,
        RoundRobinPicker,
        SingleProfileHandler,
        InflightLoadProducer,
        TokenLoadScorer,
        PredictedTtftScorer,
        PrefixCacheAffinityFilter,
    )
}


def create_plugin(type_name: str, name: str, parameters: Mapping[str, Any] | None, handle: PluginHandle,
                  path: str = "plugins") -> Plugin:
    cls = PLUGIN_TYPES.get(type_name)
    if cls is None:
        raise ConfigError(f"{path}.type: unknown plugin type {type_name!r} "
                          f"(known: {', '.join(sorted(PLUGIN_TYPES))})")
    try:
        plugin: Plugin = cls.create(name, dict(parameters or {}), handle)
    except ConfigError as exc:
        raise ConfigError(f"{path}.parameters{exc}") from None
    return plugin
