"""``EndpointPickerConfig`` (``inference.networking.x-k8s.io/v1alpha1``) -> ``Scheduler``.

Decoded strictly (unknown fields are errors) and completed with upstream v1.0's loading
rules (gie.md §2.4): plugin name defaults to its type, names unique, types registered;
no profiles -> one profile ``default`` with every filter/scorer/picker; one profile and no
profile handler -> ``single-profile-handler``; no picker -> ``max-score-picker``, and
each profile without a picker gets the first one; scorer weight defaults to 1; exactly
one profile handler; at most one picker per profile.

Presets (``preset_text(name)``): ``default`` and ``predicted-latency`` (infergate's default:
pick-time accounting, prefix affinity until saturated, predicted-TTFT scoring; docs/epp.md
says why, with the benchmark's numbers), ``upstream-v1.0`` (upstream v1.0's shipped config,
infergate's default before issue 16),
``round-robin`` and ``random`` (baselines), ``v0.3.0`` (the pre-plugin decision tree with a
random pick), ``prefix-load`` (llm-d's weights 2/2/3 with the in-flight-aware queue scorer).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infergate.api import yamlload
from infergate.epp.scheduling.framework import (
    ConfigError,
    Filter,
    Picker,
    Plugin,
    PluginHandle,
    PreRequest,
    ProfileHandler,
    Scheduler,
    SchedulerProfile,
    Scorer,
    WeightedScorer,
)
from infergate.epp.scheduling.plugins import create_plugin

API_VERSION = "inference.networking.x-k8s.io/v1alpha1"
KIND = "EndpointPickerConfig"
DEFAULT_SCORER_WEIGHT = 1

UPSTREAM_V1_DEFAULT = f"""\
apiVersion: {API_VERSION}
kind: {KIND}
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: queue-scorer
  - pluginRef: kv-cache-utilization-scorer
  - pluginRef: prefix-cache-scorer
"""

# pick-time accounting + affinity until saturated + predicted TTFT (docs/epp.md, "Scheduling v2")
PREDICTED_LATENCY = f"""\
apiVersion: {API_VERSION}
kind: {KIND}
plugins:
- type: prefix-cache-scorer
- type: inflight-load-producer
- type: prefix-cache-affinity-filter
- type: predicted-ttft-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-affinity-filter
  - {{pluginRef: prefix-cache-scorer, weight: 0}}
  - pluginRef: predicted-ttft-scorer
"""

DEFAULT_PRESET = PREDICTED_LATENCY  # what `infergate epp` and the chart load without a config

PRESETS: dict[str, str] = {
    "default": DEFAULT_PRESET,
    "predicted-latency": PREDICTED_LATENCY,
    "upstream-v1.0": UPSTREAM_V1_DEFAULT,
    "round-robin": f"""\
apiVersion: {API_VERSION}
kind: {KIND}
plugins:
- type: round-robin-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: round-robin-picker
""",
    "random": f"""\
apiVersion: {API_VERSION}
kind: {KIND}
plugins:
- type: random-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: random-picker
""",
    "v0.3.0": f"""\
apiVersion: {API_VERSION}
kind: {KIND}
plugins:
- type: low-latency-filter
- type: random-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: low-latency-filter
  - pluginRef: random-picker
""",
    "prefix-load": f"""\
apiVersion: {API_VERSION}
kind: {KIND}
plugins:
- type: queue-scorer
  parameters: {{includeInflight: true}}
- type: kv-cache-utilization-scorer
- type: prefix-cache-scorer
schedulingProfiles:
- name: default
  plugins:
  - {{pluginRef: queue-scorer, weight: 2}}
  - {{pluginRef: kv-cache-utilization-scorer, weight: 2}}
  - {{pluginRef: prefix-cache-scorer, weight: 3}}
""",
}


@dataclass(frozen=True)
class PluginSpec:
    type: str
    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfilePluginRef:
    plugin_ref: str
    weight: int | None = None


@dataclass(frozen=True)
class ProfileSpec:
    name: str
    plugins: tuple[ProfilePluginRef, ...]


@dataclass(frozen=True)
class EndpointPickerConfig:
    plugins: tuple[PluginSpec, ...]
    profiles: tuple[ProfileSpec, ...]


def _strict(obj: Any, path: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{path}: must be an object")
    for key in obj:
        if key not in allowed:
            raise ConfigError(f'{path}: unknown field "{key}"')
    return obj


def parse_config(data: Any) -> EndpointPickerConfig:
    root = _strict(data, "(root)", ("apiVersion", "kind", "plugins", "schedulingProfiles"))
    if root.get("apiVersion") != API_VERSION:
        raise ConfigError(f"apiVersion: must be {API_VERSION}, got {root.get('apiVersion')!r}")
    if root.get("kind") != KIND:
        raise ConfigError(f"kind: must be {KIND}, got {root.get('kind')!r}")
    raw_plugins = root.get("plugins") or []
    if not isinstance(raw_plugins, list):
        raise ConfigError("plugins: must be a list")
    plugins: list[PluginSpec] = []
    for i, raw in enumerate(raw_plugins):
        path = f"plugins[{i}]"
        item = _strict(raw, path, ("name", "type", "parameters"))
        ptype = item.get("type")
        if not isinstance(ptype, str) or not ptype:
            raise ConfigError(f"{path}.type: required")
        name = item.get("name") or ptype
        if not isinstance(name, str):
            raise ConfigError(f"{path}.name: must be a string")
        params = item.get("parameters") or {}
        if not isinstance(params, Mapping):
            raise ConfigError(f"{path}.parameters: must be an object")
        plugins.append(PluginSpec(ptype, name, dict(params)))
    seen: set[str] = set()
    for i, spec in enumerate(plugins):
        if spec.name in seen:
            raise ConfigError(f"plugins[{i}].name: duplicate plugin name {spec.name!r}")
        seen.add(spec.name)
    raw_profiles = root.get("schedulingProfiles") or []
    if not isinstance(raw_profiles, list):
        raise ConfigError("schedulingProfiles: must be a list")
    profiles: list[ProfileSpec] = []
    for i, raw in enumerate(raw_profiles):
        path = f"schedulingProfiles[{i}]"
        item = _strict(raw, path, ("name", "plugins"))
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}.name: required")
        refs: list[ProfilePluginRef] = []
        raw_refs = item.get("plugins") or []
        if not isinstance(raw_refs, list):
            raise ConfigError(f"{path}.plugins: must be a list")
        for j, raw_ref in enumerate(raw_refs):
            rpath = f"{path}.plugins[{j}]"
            ref = _strict(raw_ref, rpath, ("pluginRef", "weight"))
            plugin_ref = ref.get("pluginRef")
            if not isinstance(plugin_ref, str) or not plugin_ref:
                raise ConfigError(f"{rpath}.pluginRef: required")
            if plugin_ref not in seen:
                raise ConfigError(f"{rpath}.pluginRef: plugin {plugin_ref!r} is not defined in plugins")
            weight = ref.get("weight")
            if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int) or weight < 0):
                raise ConfigError(f"{rpath}.weight: must be a non-negative integer, got {weight!r}")
            refs.append(ProfilePluginRef(plugin_ref, weight))
        profiles.append(ProfileSpec(name, tuple(refs)))
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise ConfigError("schedulingProfiles: profile names must be unique")
    return EndpointPickerConfig(tuple(plugins), tuple(profiles))


def _is(plugin: Any, role: type) -> bool:
    return isinstance(plugin, role)


def build_scheduler(config: EndpointPickerConfig, handle: PluginHandle | None = None) -> Scheduler:
    handle = handle or PluginHandle()
    instances: dict[str, Plugin] = {}
    for i, spec in enumerate(config.plugins):
        instances[spec.name] = create_plugin(spec.type, spec.name, spec.parameters, handle, f"plugins[{i}]")
    handle.plugins.update(instances)
    for i, spec in enumerate(config.plugins):
        resolve = getattr(instances[spec.name], "resolve", None)
        if resolve is not None:  # plugins that use another plugin (e.g. the prefix index)
            try:
                resolve(handle)
            except ConfigError as exc:
                raise ConfigError(f"plugins[{i}]{exc}") from None

    profiles = list(config.profiles)
    if not profiles:
        refs = tuple(ProfilePluginRef(name) for name, p in instances.items()
                     if _is(p, Filter) or _is(p, Scorer) or _is(p, Picker))
        profiles = [ProfileSpec("default", refs)]
    handlers = [p for p in instances.values() if _is(p, ProfileHandler)]
    if len(profiles) == 1 and not handlers:
        handler = create_plugin("single-profile-handler", "single-profile-handler", {}, handle)
        instances.setdefault(handler.name, handler)
        handlers = [handler]
    if not handlers:
        raise ConfigError("plugins: no profile handler was specified")
    if len(handlers) > 1:
        raise ConfigError("plugins: only one profile handler is allowed")
    pickers = [p for p in instances.values() if _is(p, Picker)]
    if not pickers:
        picker = create_plugin("max-score-picker", "max-score-picker", {}, handle)
        instances.setdefault(picker.name, picker)
        pickers = [picker]

    built: dict[str, SchedulerProfile] = {}
    for i, profile_spec in enumerate(profiles):
        profile = SchedulerProfile(profile_spec.name)
        for j, ref in enumerate(profile_spec.plugins):
            plugin: Any = instances[ref.plugin_ref]
            path = f"schedulingProfiles[{i}].plugins[{j}]"
            used = False
            if _is(plugin, Filter):
                profile.filters.append(plugin)
                used = True
            if _is(plugin, Scorer):
                weight = DEFAULT_SCORER_WEIGHT if ref.weight is None else ref.weight
                profile.scorers.append(WeightedScorer(plugin, weight))
                used = True
            if _is(plugin, Picker):
                if profile.picker is not None:
                    raise ConfigError(f"{path}.pluginRef: profile {profile_spec.name!r} already has picker "
                                      f"{profile.picker.name!r}; a profile may hold only one picker")
                profile.picker = plugin
                used = True
            if not used:
                raise ConfigError(f"{path}.pluginRef: plugin {ref.plugin_ref!r} is not a filter, scorer or picker")
        if profile.picker is None:
            profile.picker = pickers[0]  # type: ignore[assignment]
        built[profile_spec.name] = profile
    pre_request = [p for p in instances.values() if _is(p, PreRequest)]
    return Scheduler(handlers[0], built, pre_request, instances)  # type: ignore[arg-type]


def load_config_text(text: str, *, seed: int | None = None) -> Scheduler:
    try:
        data = yamlload.load(text)
    except yamlload.YAMLError as exc:
        raise ConfigError(f"(root): invalid YAML: {exc}") from None
    return build_scheduler(parse_config(data), PluginHandle(random.Random(seed)))


def load_config_file(path: str | Path, *, seed: int | None = None) -> Scheduler:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        return load_config_text(text, seed=seed)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def preset_text(name: str) -> str:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown scheduling preset {name!r} (known: {', '.join(PRESETS)})") from None


def load_preset(name: str, *, seed: int | None = None) -> Scheduler:
    return load_config_text(preset_text(name), seed=seed)
