"""Read one namespace's preview objects from the cluster and plan their migration."""

from __future__ import annotations

from infergate.migrate.census import preview_epp_pool
from infergate.migrate.cluster import Cluster
from infergate.migrate.plan import Plan, PlanError, PlanOptions, build_plan, select_route
from infergate.migrate.resources import (
    CRDS,
    DEPLOYMENTS,
    GA_CRD_NAMES,
    GA_POOLS,
    HTTPROUTES,
    OBJECTIVES,
    PREVIEW_MODELS,
    PREVIEW_POOLS,
    name_of,
)


def plan_from_cluster(cluster: Cluster, namespace: str, route: str | None, options: PlanOptions) -> Plan:
    if not cluster.served(HTTPROUTES):
        raise PlanError(f"the cluster does not serve {HTTPROUTES.qualified}: install the Gateway API CRDs")
    routes = cluster.list(HTTPROUTES, namespace)
    chosen = select_route(routes, route)
    epps = {}
    for deployment in cluster.list(DEPLOYMENTS, namespace):
        pool = preview_epp_pool(deployment)
        if pool is not None:
            epps[pool] = name_of(deployment)
    missing = tuple(n for n in GA_CRD_NAMES if cluster.get(CRDS, None, n) is None)
    return build_plan(
        namespace=namespace,
        route=chosen,
        preview_pools=cluster.list(PREVIEW_POOLS, namespace),
        preview_models=cluster.list(PREVIEW_MODELS, namespace),
        existing_ga_pools=cluster.list(GA_POOLS, namespace),
        existing_objectives=cluster.list(OBJECTIVES, namespace),
        epp_deployments=epps,
        ga_crds_missing=missing,
        options=options,
    )
