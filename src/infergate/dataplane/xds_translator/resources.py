"""The translator's output: Envoy v3 resources in JSON form, by xDS type."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from infergate.dataplane.xds_translator.type_urls import (
    T_CLUSTER,
    T_CLUSTER_LOAD_ASSIGNMENT,
    T_LISTENER,
    T_ROUTE_CONFIGURATION,
    T_SECRET,
)


@dataclass(frozen=True)
class EnvoyResources:
    """Envoy v3 resources in JSON form, by xDS type; each list sorted by resource name."""

    listeners: tuple[dict[str, Any], ...] = ()
    route_configurations: tuple[dict[str, Any], ...] = ()
    clusters: tuple[dict[str, Any], ...] = ()
    cluster_load_assignments: tuple[dict[str, Any], ...] = ()
    secrets: tuple[dict[str, Any], ...] = ()  # TLS certificates, served over SDS (ADS)
    warnings: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "listeners": list(self.listeners),
            "route_configurations": list(self.route_configurations),
            "clusters": list(self.clusters),
            "cluster_load_assignments": list(self.cluster_load_assignments),
            **({"secrets": list(self.secrets)} if self.secrets else {}),
            **({"warnings": list(self.warnings)} if self.warnings else {}),
        }

    def by_type_url(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{type_url: {resource name: resource}}, what the xDS server serves."""
        return {
            T_LISTENER: {r["name"]: r for r in self.listeners},
            T_ROUTE_CONFIGURATION: {r["name"]: r for r in self.route_configurations},
            T_CLUSTER: {r["name"]: r for r in self.clusters},
            T_CLUSTER_LOAD_ASSIGNMENT: {r["cluster_name"]: r for r in self.cluster_load_assignments},
            T_SECRET: {r["name"]: r for r in self.secrets},
        }

    def static_resources(self) -> dict[str, list[dict[str, Any]]]:
        """The same configuration as a bootstrap's ``static_resources`` (no xDS server needed).

        Route configurations are inlined into their listeners (RDS -> ``route_config``) and
        EDS clusters become STATIC ones with their load assignment. The invalid-backend
        internal listeners need the bootstrap extension ``envoy.bootstrap.internal_listener``
        (as in ``infergate.dataplane.envoy.bootstrap``). Certificates become static secrets,
        which the TLS filter chains name without an SDS source.
        """
        routes = {r["name"]: r for r in self.route_configurations}
        assignments = {a["cluster_name"]: a for a in self.cluster_load_assignments}
        listeners = []
        for listener in self.listeners:
            listener = copy.deepcopy(listener)
            for chain in listener.get("filter_chains", []):
                for network_filter in chain.get("filters", []):
                    hcm = network_filter.get("typed_config", {})
                    rds = hcm.pop("rds", None)
                    if rds is not None:
                        hcm["route_config"] = copy.deepcopy(routes[rds["route_config_name"]])
                tls = chain.get("transport_socket", {}).get("typed_config", {}).get("common_tls_context", {})
                for sds in tls.get("tls_certificate_sds_secret_configs", []):
                    sds.pop("sds_config", None)
            listeners.append(listener)
        clusters = []
        for cluster in self.clusters:
            cluster = copy.deepcopy(cluster)
            if cluster.get("type") == "EDS":
                del cluster["eds_cluster_config"]
                cluster["type"] = "STATIC"
                cluster["load_assignment"] = copy.deepcopy(assignments[cluster["name"]])
            clusters.append(cluster)
        out: dict[str, list[dict[str, Any]]] = {"listeners": listeners, "clusters": clusters}
        if self.secrets:
            out["secrets"] = [copy.deepcopy(s) for s in self.secrets]
        return out
