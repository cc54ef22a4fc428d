"""Is a GA pool's EPP ready to pick endpoints? (``wait-ready``, and the repair on ``--retry``)

Ready means what ``kubectl rollout status deployment/<epp>`` and the gateway both need:

* the EPP Deployment exists, its status is for its current generation and it is Available
  (``availableReplicas`` >= 1, no ``Available=False`` condition);
* the EPP Service exists and has at least one ready endpoint: the ready endpoints of its
  EndpointSlices (``kubernetes.io/service-name``), or, where nothing writes EndpointSlices (the
  ``infergate up`` runtime), the Ready pods its selector matches, as the endpoints controller
  would count them.

A Service without a Deployment (the Deployment deleted, a half-installed release) is not ready.
"""

from __future__ import annotations

from typing import Final

from infergate.kube.kinds import ENDPOINT_SLICES
from infergate.migrate.cluster import Cluster
from infergate.migrate.resources import DEPLOYMENTS, PODS, SERVICES, Obj, meta

SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"


def deployment_unavailable(dep: Obj) -> str | None:
    """Why the Deployment is not Available (None: it is)."""
    status = dep.get("status") or {}
    name = f"{meta(dep).get('namespace')}/{meta(dep).get('name')}"
    observed = status.get("observedGeneration")
    generation = meta(dep).get("generation")
    if observed is not None and generation is not None and int(observed) < int(generation):
        return f"EPP Deployment {name}: generation {generation} not rolled out yet (observed {observed})"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Available" and condition.get("status") == "False":
            return f"EPP Deployment {name} not Available ({condition.get('reason') or 'no reason'})"
    if int(status.get("availableReplicas") or status.get("readyReplicas") or 0) < 1:
        return f"EPP Deployment {name} has no available replica"
    return None


def ready_endpoints(cluster: Cluster, namespace: str, service: Obj) -> int:
    """The Service's ready endpoints (EndpointSlices, else the Ready pods its selector matches)."""
    name = meta(service).get("name")
    slices = [s for s in cluster.list(ENDPOINT_SLICES, namespace)
              if (meta(s).get("labels") or {}).get(SERVICE_NAME_LABEL) == name]
    if slices:
        return sum(1 for s in slices for e in s.get("endpoints") or []
                   if (e.get("conditions") or {}).get("ready") is not False)
    selector = (service.get("spec") or {}).get("selector") or {}
    if not selector:
        return 0
    count = 0
    for pod in cluster.list(PODS, namespace):
        labels = meta(pod).get("labels") or {}
        if any(labels.get(k) != v for k, v in selector.items()) or meta(pod).get("deletionTimestamp"):
            continue
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            count += 1
    return count


def epp_not_ready(cluster: Cluster, namespace: str, epp: str) -> list[str]:
    """What keeps the EPP ``epp`` (its Deployment and Service share the name) from serving."""
    pending: list[str] = []
    dep = cluster.get(DEPLOYMENTS, namespace, epp)
    if dep is None:
        pending.append(f"EPP Deployment {namespace}/{epp} missing")
    else:
        reason = deployment_unavailable(dep)
        if reason:
            pending.append(reason)
    svc = cluster.get(SERVICES, namespace, epp)
    if svc is None:
        pending.append(f"EPP Service {namespace}/{epp} missing")
    elif ready_endpoints(cluster, namespace, svc) < 1:
        pending.append(f"EPP Service {namespace}/{epp} has no ready endpoint")
    return pending
