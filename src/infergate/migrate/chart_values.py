"""Values of the ``inferencepool`` chart: the v1.0 layout -> the v1.5 layout.

GIE v1.5's chart (``../shared/reference/gie-v1.5.0/charts/inferencepool-values.yaml``) renamed
and reshaped keys that v1.0 values set (notes/ecosystem-2026.md, "Helm chart"):

- ``inferenceExtension.image.{hub,name}`` -> ``image.{registry,repository}`` (the hub's first
  path segment is the registry, the rest of it and the name the repository);
- ``inferenceExtension.flags``: a list of ``{name, value}`` -> a map ``name: value``;
- ``inferenceExtension.failureMode``: the default became FailOpen; v1.0 values that did not set
  it meant the v1.0 chart's default, FailClose, so the converted values say FailClose
  explicitly. A release of a chart whose default was already FailOpen (infergate's
  ``charts/inferencepool``, upstream's since v1.4) passes ``unset_failure_mode="FailOpen"``:
  the key stays unset, and the v1.5 default keeps FailOpen;
- ``inferenceExtension.replicas > 1`` turns leader election on in v1.5 (only the leader is
  ready); ``enableLeaderElection`` is gone;
- ``inferencePool.targetPortNumber`` -> ``inferencePool.targetPorts[].number``;
- top-level ``gke`` / ``istio`` -> ``provider.gke`` / ``provider.istio``; ``gke.monitoring.interval``
  -> ``inferenceExtension.monitoring.interval``.

Only the keys the input sets are written (``helm get values`` gives the user's values, not the
chart's defaults), so the chart's own v1.5 defaults apply to the rest; every change that alters
behaviour is reported as a note.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Values = dict[str, Any]

__all__ = ["ChartValuesConversion", "ChartValuesError", "convert_values", "v1_markers"]


class ChartValuesError(ValueError):
    """Values that cannot be converted; each problem names its field path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class ChartValuesConversion:
    values: Values
    notes: list[str] = field(default_factory=list)
    changed: bool = True


def _section(values: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = values.get(key)
    return value if isinstance(value, dict) else {}


def v1_markers(values: Mapping[str, Any]) -> list[str]:
    """The field paths that show ``values`` use the v1.0 layout (empty: nothing to convert)."""
    ext = _section(values, "inferenceExtension")
    image = _section(ext, "image")
    pool = _section(values, "inferencePool")
    found = [f"inferenceExtension.image.{k}" for k in ("hub", "name") if k in image]
    if isinstance(ext.get("flags"), list):
        found.append("inferenceExtension.flags (a list)")
    if "enableLeaderElection" in ext:
        found.append("inferenceExtension.enableLeaderElection")
    if "targetPortNumber" in pool:
        found.append("inferencePool.targetPortNumber")
    found += [k for k in ("gke", "istio") if k in values]
    return found


FAILURE_MODES = ("FailClose", "FailOpen")


def convert_values(values: Mapping[str, Any], *, unset_failure_mode: str = "FailClose") -> ChartValuesConversion:
    """``values`` (v1.0 layout) in the v1.5 layout, with notes; values already in the v1.5 layout
    come back unchanged (``changed`` False). ``unset_failure_mode``: what an unset
    ``inferenceExtension.failureMode`` meant for the release (its chart's default)."""
    if unset_failure_mode not in FAILURE_MODES:
        raise ValueError(f"unset_failure_mode: must be one of {', '.join(FAILURE_MODES)}")
    if not isinstance(values, Mapping):
        raise ChartValuesError(["(root): Invalid value: values must be a map"])
    out: Values = copy.deepcopy(dict(values))
    notes: list[str] = []
    problems: list[str] = []
    if not v1_markers(values):
        return ChartValuesConversion(out, ["the values use no v1.0-only key: nothing to convert"], changed=False)
    ext = out.get("inferenceExtension")
    if ext is not None and not isinstance(ext, dict):
        raise ChartValuesError(["inferenceExtension: Invalid value: must be a map"])
    ext = ext if isinstance(ext, dict) else {}
    _image(ext, problems, notes)
    _flags(ext, problems)
    _failure_mode(ext, notes, unset_failure_mode)
    _replicas(ext, problems, notes)
    _pool(out, problems)
    _providers(out, ext, problems, notes)
    if problems:
        raise ChartValuesError(problems)
    if ext:
        out["inferenceExtension"] = ext
    if "resources" not in ext:
        notes.append("inferenceExtension.resources unset: the v1.5 chart requests 4 CPU / 8Gi (limit 16Gi) per EPP "
                     "replica by default; set resources to keep a smaller EPP")
    return ChartValuesConversion(out, notes)


def _image(ext: dict[str, Any], problems: list[str], notes: list[str]) -> None:
    image = ext.get("image")
    if image is None:
        return
    if not isinstance(image, dict):
        problems.append("inferenceExtension.image: Invalid value: must be a map")
        return
    if ("hub" in image or "name" in image) and ("registry" in image or "repository" in image):
        problems.append("inferenceExtension.image: Invalid value: both the v1.0 keys (hub, name) and the v1.5 keys "
                        "(registry, repository) are set; keep one layout")
        return
    if "hub" not in image and "name" not in image:
        return
    hub = str(image.pop("hub", "") or "").strip("/")
    name = str(image.pop("name", "") or "").strip("/")
    registry, _, rest = hub.partition("/")
    if hub and "." not in registry and ":" not in registry and registry != "localhost":
        # a Docker Hub organisation ("myorg"): the registry is docker.io, the hub is the repository's prefix
        registry, rest = "docker.io", hub
    if not hub:
        problems.append("inferenceExtension.image.hub: Required value: the v1.5 chart needs image.registry; "
                        "set hub (or registry and repository)")
        return
    if not name:
        problems.append("inferenceExtension.image.name: Required value: the v1.5 chart needs image.repository")
        return
    converted = {"registry": registry, "repository": "/".join(p for p in (rest, name) if p)}
    ext["image"] = {**converted, **image}
    notes.append(f"inferenceExtension.image: hub {hub!r} + name {name!r} -> registry {registry!r}, repository "
                 f"{converted['repository']!r}")


def _flags(ext: dict[str, Any], problems: list[str]) -> None:
    flags = ext.get("flags")
    if not isinstance(flags, list):
        return
    out: dict[str, Any] = {}
    for i, item in enumerate(flags):
        path = f"inferenceExtension.flags[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            problems.append(f"{path}.name: Required value: each flag is {{name, value}}")
            continue
        if item["name"] in out:
            problems.append(f"{path}.name: Duplicate value: {item['name']!r} (a v1.5 flags map holds each flag once)")
            continue
        out[item["name"]] = item.get("value", True)
    ext["flags"] = out


def _failure_mode(ext: dict[str, Any], notes: list[str], unset_means: str) -> None:
    if "failureMode" in ext:
        return
    if unset_means == "FailOpen":
        notes.append("inferenceExtension.failureMode unset: it meant FailOpen for this release and the v1.5 "
                     "default is FailOpen, so it stays unset")
        return
    ext["failureMode"] = "FailClose"
    notes.append("inferenceExtension.failureMode: FailClose written explicitly (the v1.0 chart's default; the "
                 "v1.5 default is FailOpen). For a release of infergate's charts/inferencepool or of upstream's "
                 "chart since v1.4 (default FailOpen), convert with --unset-failure-mode FailOpen")


def _replicas(ext: dict[str, Any], problems: list[str], notes: list[str]) -> None:
    leader = ext.pop("enableLeaderElection", None)
    replicas = ext.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        problems.append(f"inferenceExtension.replicas: Invalid value: {replicas!r}: a non-negative integer")
        return
    if leader is not None:
        notes.append("inferenceExtension.enableLeaderElection removed: the v1.5 chart turns leader election on "
                     "when replicas > 1")
        if leader is True and replicas <= 1:
            problems.append("inferenceExtension.enableLeaderElection: Invalid value: true with replicas "
                            f"{replicas}: v1.5 elects a leader only when replicas > 1; set replicas")
    if replicas > 1:
        notes.append(f"inferenceExtension.replicas {replicas}: v1.5 runs them with leader election (only the "
                     "leader is ready and serves)")


def _pool(out: Values, problems: list[str]) -> None:
    pool = out.get("inferencePool")
    if not isinstance(pool, dict) or "targetPortNumber" not in pool:
        return
    number = pool.pop("targetPortNumber")
    if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
        problems.append(f"inferencePool.targetPortNumber: Invalid value: {number!r}: a port 1-65535")
        return
    pool["targetPorts"] = [{"number": number}]  # in v1.0 targetPortNumber replaced targetPorts: what was in effect


def _providers(out: Values, ext: dict[str, Any], problems: list[str], notes: list[str]) -> None:
    provider = out.get("provider")
    if provider is not None and not isinstance(provider, dict):
        problems.append("provider: Invalid value: must be a map")
        return
    provider = dict(provider or {})
    for key in ("gke", "istio"):
        if key not in out:
            continue
        section = out.pop(key)
        if not isinstance(section, dict):
            problems.append(f"{key}: Invalid value: must be a map")
            continue
        if key == "gke" and isinstance(section.get("monitoring"), dict):
            monitoring = dict(section.pop("monitoring"))
            if "interval" in monitoring:
                ext.setdefault("monitoring", {})["interval"] = monitoring.pop("interval")
                notes.append("gke.monitoring.interval -> inferenceExtension.monitoring.interval")
            if monitoring:
                section["monitoring"] = monitoring
        if key in provider and provider[key] != section:
            problems.append(f"{key}: Invalid value: both {key} and provider.{key} are set; keep provider.{key}")
            continue
        if section:
            provider[key] = section
            notes.append(f"{key} -> provider.{key}")
    if provider:
        out["provider"] = provider
