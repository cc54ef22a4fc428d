"""The translator's output: Envoy v3 resources in JSON form, by xDS type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infergate.dataplane.xds_translator.types import (
    T_CLUSTER,
    T_CLUSTER_LOAD_ASSIGNMENT,
    T_LISTENER,
    T_ROUTE_CONFIGURATION,
)


@dataclass(frozen=True)
class EnvoyResources:
    """Envoy v3 resources in JSON form, by xDS type; each list sorted by resource name."""

    listeners: tuple[dict[str, Any], ...] = ()
    route_configurations: tuple[dict[str, Any], ...] = ()
    clusters: tuple[dict[str, Any], ...] = ()
    cluster_load_assignments: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "listeners": list(self.listeners),
            "route_configurations": list(self.route_configurations),
            "clusters": list(self.clusters),
            "cluster_load_assignments": list(self.cluster_load_assignments),
            **({"warnings": list(self.warnings)} if self.warnings else {}),
        }

    def by_type_url(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{type_url: {resource name: resource}}, what the xDS server serves."""
        return {
            T_LISTENER: {r["name"]: r for r in self.listeners},
            T_ROUTE_CONFIGURATION: {r["name"]: r for r in self.route_configurations},
            T_CLUSTER: {r["name"]: r for r in self.clusters},
            T_CLUSTER_LOAD_ASSIGNMENT: {r["cluster_name"]: r for r in self.cluster_load_assignments},
        }
