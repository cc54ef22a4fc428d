"""``verify``: the source document's checks, made strict.

* Gateway ``Programmed=True`` (for every Gateway the routes attach to);
* HTTPRoute ``Accepted=True`` and ``ResolvedRefs=True`` for every parent (a gateway that
  rejects one group shows ``ResolvedRefs=False`` while its Gateway stays ``Programmed``);
* every InferencePool the routes use: parent status ``Accepted=True``;
* N requests to ``/v1/completions``: 200s, served by each pool in the expected share
  (from the EPPs' request counters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infergate.api.conversion.constants import PREVIEW_GROUP
from infergate.migrate.cluster import Cluster
from infergate.migrate.gates import attribution_tolerance
from infergate.migrate.probe import measure
from infergate.migrate.resources import (
    GA_POOLS,
    GATEWAYS,
    HTTPROUTES,
    PODS,
    PREVIEW_POOLS,
    SERVICES,
    Obj,
    name_of,
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


def condition(conditions: Sequence[Mapping[str, Any]] | None, kind: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == kind), None)


def _cond_text(c: Mapping[str, Any] | None) -> str:
    if c is None:
        return "absent"
    return f"{c.get('status')} ({c.get('reason', '')}{': ' + str(c['message']) if c.get('message') else ''})"


def route_backend_pools(route: Obj) -> list[tuple[str, str]]:
    """(group, name) of the InferencePools the route's rules use."""
    out: list[tuple[str, str]] = []
    for rule in (route.get("spec") or {}).get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            if ref.get("kind") == "InferencePool" and (ref.get("group"), ref.get("name")) not in out:
                out.append((str(ref.get("group")), str(ref.get("name"))))
    return out


def status_checks(cluster: Cluster, namespace: str, route_names: Sequence[str]) -> list[Check]:
    checks: list[Check] = []
    gateways: list[tuple[str, str]] = []
    pools: list[tuple[str, str]] = []
    for route_name in route_names:
        route = cluster.get(HTTPROUTES, namespace, route_name)
        if route is None:
            checks.append(Check(f"HTTPRoute {route_name}", False, "not found"))
            continue
        parents = (route.get("status") or {}).get("parents") or []
        for ref in (route.get("spec") or {}).get("parentRefs") or []:
            gw_ns = str(ref.get("namespace") or namespace)
            if (gw_ns, ref["name"]) not in gateways:
                gateways.append((gw_ns, str(ref["name"])))
            entry = next((p for p in parents if (p.get("parentRef") or {}).get("name") == ref.get("name")
                          and (p.get("parentRef") or {}).get("namespace", namespace) == gw_ns), None)
            conds = (entry or {}).get("conditions")
            for kind in ("Accepted", "ResolvedRefs"):
                c = condition(conds, kind)
                checks.append(Check(f"HTTPRoute {route_name} {kind} (parent {ref['name']})",
                                    c is not None and c.get("status") == "True", _cond_text(c)))
        for pool in route_backend_pools(route):
            if pool not in pools:
                pools.append(pool)
    for gw_ns, gw_name in gateways:
        gw = cluster.get(GATEWAYS, gw_ns, gw_name)
        c = condition(((gw or {}).get("status") or {}).get("conditions"), "Programmed")
        checks.append(Check(f"Gateway {gw_ns}/{gw_name} Programmed", c is not None and c.get("status") == "True",
                            "not found" if gw is None else _cond_text(c)))
    for group, name in pools:
        resource = PREVIEW_POOLS if group == PREVIEW_GROUP else GA_POOLS
        pool_obj = cluster.get(resource, namespace, name)
        if pool_obj is None:
            checks.append(Check(f"InferencePool {resource.qualified}/{name} Accepted", False, "not found"))
            continue
        status = pool_obj.get("status") or {}
        parents = status.get("parent") if resource is PREVIEW_POOLS else status.get("parents")
        real = [p for p in parents or [] if (p.get("parentRef") or {}).get("kind") != "Status"]
        accepted = [condition(p.get("conditions"), "Accepted") for p in real]
        ok = bool(accepted) and all(c is not None and c.get("status") == "True" for c in accepted)
        checks.append(Check(f"InferencePool {resource.qualified}/{name} Accepted", ok,
                            ", ".join(_cond_text(c) for c in accepted) or "no parent status"))
        resolved = [condition(p.get("conditions"), "ResolvedRefs") for p in real]
        if any(c is not None for c in resolved):  # the EPP reference (written by gateways that check it)
            checks.append(Check(f"InferencePool {resource.qualified}/{name} ResolvedRefs",
                                all(c is not None and c.get("status") == "True" for c in resolved),
                                ", ".join(_cond_text(c) for c in resolved)))
    return checks


def gateway_url(cluster: Cluster, namespace: str, route: Obj) -> str | None:
    """http://<address>:<port> of the route's first parent Gateway, from its status and listeners."""
    refs = (route.get("spec") or {}).get("parentRefs") or []
    if not refs:
        return None
    ref = refs[0]
    gw = cluster.get(GATEWAYS, str(ref.get("namespace") or namespace), str(ref["name"]))
    if gw is None:
        return None
    addresses = (gw.get("status") or {}).get("addresses") or []
    listeners = (gw.get("spec") or {}).get("listeners") or []
    if not addresses or not listeners:
        return None
    listener = next((x for x in listeners if x.get("name") == ref.get("sectionName")), listeners[0])
    port = ref.get("port") or listener.get("port")
    scheme = "https" if listener.get("protocol") == "HTTPS" else "http"
    return f"{scheme}://{addresses[0]['value']}:{port}"


def epp_metrics_url(cluster: Cluster, namespace: str, service_name: str) -> str | None:
    """The EPP's /metrics: a Ready pod behind the Service (pod IP + the metrics port's
    targetPort), else the Service's clusterIP. From outside a cluster neither may be reachable:
    pass ``--epp-metrics POOL=URL`` (e.g. through ``kubectl port-forward``)."""
    svc = cluster.get(SERVICES, namespace, service_name)
    if svc is None:
        return None
    spec = svc.get("spec") or {}
    ports = spec.get("ports") or []
    port_spec = next((p for p in ports if p.get("name") in ("http-metrics", "metrics")), None)
    port = (port_spec or {}).get("port", 9090)
    target = (port_spec or {}).get("targetPort", port)
    selector = spec.get("selector") or {}
    if selector:
        for pod in cluster.list(PODS, namespace):
            labels = (pod.get("metadata") or {}).get("labels") or {}
            status = pod.get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            if not (ready and status.get("podIP") and all(labels.get(k) == v for k, v in selector.items())):
                continue
            number = target if isinstance(target, int) else next(
                (cp.get("containerPort") for c in (pod.get("spec") or {}).get("containers") or []
                 for cp in c.get("ports") or [] if cp.get("name") == target), None)
            if number is not None:
                return f"http://{status['podIP']}:{number}/metrics"
    ip = spec.get("clusterIP")
    if not ip or ip == "None":
        return None
    return f"http://{ip}:{port}/metrics"


def pool_epp_service(pool: Obj) -> str | None:
    spec = pool.get("spec") or {}
    ref = spec.get("endpointPickerRef") or spec.get("extensionRef") or {}
    return str(ref["name"]) if ref.get("name") else None


async def traffic_checks(
    base_url: str, models: Sequence[str], count: int, epp_urls: Mapping[str, str],
    expected: Mapping[str, float], floor: float = 0.10,
) -> list[Check]:
    window = await measure(base_url, models, count, epp_urls)
    ok = sum(1 for s in window.samples if s.status == 200)
    checks = [Check(f"{count} requests to /v1/completions answered 200", ok == len(window.samples) and ok > 0,
                    f"{ok}/{len(window.samples)} 200"
                    + "".join(f", {s.model}: {s.status or 'no response'}" for s in window.samples
                              if s.status != 200)[:400])]
    if window.pool_requests is None:
        checks.append(Check("per-pool share", False, "EPP metrics unreachable (pass --epp-metrics POOL=URL)"))
        return checks
    total = sum(window.pool_requests.get(p, 0.0) for p in expected)
    for pool, share in expected.items():
        got = window.pool_requests.get(pool, 0.0)
        observed = got / total if total else 0.0
        tol = attribution_tolerance(share, total, floor)
        checks.append(Check(f"pool {pool} share", total > 0 and abs(observed - share) <= tol,
                            f"{observed:.3f} of {total:.0f} (expected {share:.2f} +/- {tol:.3f})"))
    return checks


def route_names(routes: Sequence[Obj]) -> list[str]:
    return [name_of(r) for r in routes]
