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
    SERVICES,
    Obj,
    name_of,
)
from infergate.migrate.targets import resolve as resolve_targets


def plan_from_cluster(cluster: Cluster, namespace: str, route: str | None, options: PlanOptions) -> Plan:
    if not cluster.served(HTTPROUTES):
        raise PlanError(f"the cluster does not serve {HTTPROUTES.qualified}: install the Gateway API CRDs")
    routes = cluster.list(HTTPROUTES, namespace)
    chosen = select_route(routes, route)
    epps: dict[str, str] = {}
    epp_objects: dict[str, tuple[Obj, Obj]] = {}
    pools = cluster.list(PREVIEW_POOLS, namespace)
    for deployment in cluster.list(DEPLOYMENTS, namespace):
        pool_name = preview_epp_pool(deployment)
        if pool_name is None:
            continue
        epps[pool_name] = name_of(deployment)
        pool = next((p for p in pools if name_of(p) == pool_name), None)
        service_name = ((pool or {}).get("spec") or {}).get("extensionRef", {}).get("name")
        service = cluster.get(SERVICES, namespace, str(service_name)) if service_name else None
        if service is not None:
            epp_objects[pool_name] = (deployment, service)
    missing = tuple(n for n in GA_CRD_NAMES if cluster.get(CRDS, None, n) is None)
    options = resolve_targets(cluster, options)
    return build_plan(
        namespace=namespace,
        route=chosen,
        preview_pools=pools,
        preview_models=cluster.list(PREVIEW_MODELS, namespace),
        existing_ga_pools=cluster.list(GA_POOLS, namespace),
        existing_objectives=cluster.list(OBJECTIVES, namespace),
        epp_deployments=epps,
        epp_objects=epp_objects,
        ga_crds_missing=missing,
        options=options,
    )
