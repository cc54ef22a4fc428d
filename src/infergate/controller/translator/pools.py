"""InferencePools of both API generations -> IR pools with their endpoint picker.

| field | v1 (inference.networking.k8s.io) | v1alpha2 (inference.networking.x-k8s.io) |
|---|---|---|
| selector | ``selector.matchLabels`` | ``selector`` (map) |
| target ports | ``targetPorts[].number`` | ``targetPortNumber`` |
| picker | ``endpointPickerRef{group,kind,name,port.number,failureMode}`` | ``extensionRef{group,kind,name,portNumber,failureMode}`` |
| picker port default | none (required for a Service) | 9002 |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infergate.controller.resources import INFERENCE_GROUP, ObservedObject
from infergate.controller.snapshot import Snapshot
from infergate.controller.translator.endpoints import pod_endpoints, resolve_service
from infergate.ir import EndpointPicker, FailureMode, Pool

DEFAULT_EPP_PORT = 9002


@dataclass(frozen=True)
class ResolvedPool:
    pool: Pool
    picker_error: str | None  # why the endpoint picker reference is invalid (ResolvedRefs=False)


def pool_key(group: str, namespace: str, name: str) -> str:
    return f"pool/{group}/{namespace}/{name}"


def pool_selector(pool: ObservedObject) -> Mapping[str, Any]:
    selector = pool.spec.get("selector") or {}
    if pool.group == INFERENCE_GROUP:
        return selector.get("matchLabels") or {}
    return selector


def pool_target_ports(pool: ObservedObject) -> tuple[int, ...]:
    if pool.group == INFERENCE_GROUP:
        ports = [p.get("number") for p in pool.spec.get("targetPorts") or ()]
    else:
        ports = [pool.spec.get("targetPortNumber")]
    return tuple(int(p) for p in ports if isinstance(p, int) and 1 <= p <= 65535)


def picker_ref(pool: ObservedObject) -> tuple[str, Mapping[str, Any], int | None]:
    """(field path, reference, port) of the pool's endpoint picker."""
    if pool.group == INFERENCE_GROUP:
        ref = pool.spec.get("endpointPickerRef") or {}
        number = (ref.get("port") or {}).get("number")
        return "spec.endpointPickerRef", ref, number if isinstance(number, int) else None
    ref = pool.spec.get("extensionRef") or {}
    number = ref.get("portNumber")
    return "spec.extensionRef", ref, number if isinstance(number, int) else DEFAULT_EPP_PORT


def has_picker(pool: ObservedObject) -> bool:
    """False for a GA pool without ``endpointPickerRef`` (optional since GIE v1.6.0): the
    gateway then balances the pool's endpoints itself."""
    return pool.group != INFERENCE_GROUP or bool(pool.spec.get("endpointPickerRef"))


def resolve_pool(snapshot: Snapshot, pool: ObservedObject) -> ResolvedPool:
    path, ref, port = picker_ref(pool)
    failure_mode: FailureMode = "FailOpen" if ref.get("failureMode") == "FailOpen" else "FailClose"
    group = ref.get("group") or ""
    kind = ref.get("kind") or "Service"
    name = str(ref.get("name") or "")
    error: str | None = None
    endpoints: tuple[Any, ...] = ()
    if not name:
        error = f"{path}.name: Required value"
    elif group != "" or kind != "Service":
        error = f"{path}: unsupported kind {kind!r} in group {group!r} (only core Services are supported)"
    elif port is None:
        error = f"{path}.port.number: Required value: port is required when kind is 'Service'"
    else:
        lookup = resolve_service(snapshot, pool.namespace, name, port)
        if lookup.error is not None:
            error = f"{path}: {lookup.error}"
        endpoints = lookup.endpoints
    target_ports = pool_target_ports(pool)
    pool_endpoints = pod_endpoints(snapshot, pool.namespace, pool_selector(pool), target_ports)
    shared = sorted({f"{e.address}:{e.port}" for e in endpoints} & {f"{e.address}:{e.port}" for e in pool_endpoints})
    if shared:  # opendatahub-io/kserve #1097: ext_proc (gRPC) would go to the model servers
        error = (f"{path}: Service {name!r} port {port} reaches the pool's own model servers ({', '.join(shared[:3])}"
                 f"{', ...' if len(shared) > 3 else ''}), not an endpoint picker: point it at the EPP's "
                 "Service and ext_proc port (9002 by default)")
        endpoints = ()  # no ext_proc to a model server: the pool's failure mode applies
    picker: EndpointPicker | None = EndpointPicker(
        key=f"epp/{pool.namespace}/{name}/{port if port is not None else 0}",
        endpoints=endpoints,
        failure_mode=failure_mode,
    )
    if not has_picker(pool):
        picker, error = None, None
    ir_pool = Pool(
        key=pool_key(pool.group, pool.namespace, pool.name),
        group=pool.group,
        namespace=pool.namespace,
        name=pool.name,
        target_ports=target_ports,
        endpoints=pool_endpoints,
        picker=picker,
        app_protocol="kubernetes.io/h2c" if pool.spec.get("appProtocol") == "kubernetes.io/h2c" else "http",
    )
    return ResolvedPool(ir_pool, error)
