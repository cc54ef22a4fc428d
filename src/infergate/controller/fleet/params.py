"""The knobs of a Gateway's Envoy fleet, from the GatewayClass's ``parametersRef`` ConfigMap.

    apiVersion: v1
    kind: ConfigMap
    metadata: {name: infergate-params, namespace: infergate-system}
    data:
      replicas: "2"
      serviceType: LoadBalancer          # LoadBalancer | ClusterIP | NodePort
      serviceAnnotations: |              # a YAML map, copied onto the Envoy Service
        service.beta.kubernetes.io/aws-load-balancer-type: nlb
      resources: |                       # the Envoy container's resources (YAML)
        requests: {cpu: 500m, memory: 256Mi}
      logLevel: info                     # Envoy's log level
      extProcTimeout: 5s                 # ext_proc message timeout (a Go duration)
      responseBodyMode: NONE             # NONE | STREAMED | FULL_DUPLEX_STREAMED

Every key is optional; an unknown key or a bad value is an error naming the key
(:class:`ParamsError`), which the GatewayClass reports as ``Accepted=False`` with reason
``InvalidParameters``. Pure functions of their inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from infergate.api import yamlload
from infergate.util.durations import DurationError, parse_go_duration

SERVICE_TYPES = ("LoadBalancer", "ClusterIP", "NodePort")
LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical", "off")
RESPONSE_BODY_MODES = ("NONE", "STREAMED", "FULL_DUPLEX_STREAMED")
RESOURCE_KEYS = ("limits", "requests", "claims")
MAX_REPLICAS = 1000
KEYS = ("replicas", "serviceType", "serviceAnnotations", "resources", "logLevel", "extProcTimeout",
        "responseBodyMode")


class ParamsError(ValueError):
    """A parametersRef that cannot be used; the message names the key."""


@dataclass(frozen=True)
class FleetParams:
    replicas: int = 1
    service_type: str = "LoadBalancer"
    service_annotations: tuple[tuple[str, str], ...] = ()
    resources: Mapping[str, Any] = field(default_factory=dict, compare=True, hash=False)
    log_level: str = "warning"
    ext_proc_timeout_s: float | None = None  # None: the data plane's default
    response_body_mode: str | None = None  # None: the data plane's default


DEFAULT_PARAMS = FleetParams()


def parameters_ref_error(ref: Mapping[str, Any] | None) -> str | None:
    """Why a GatewayClass's ``spec.parametersRef`` is not one this controller reads (None: it is, or absent)."""
    if not ref:
        return None
    where = "spec.parametersRef"
    if (ref.get("group") or "") != "" or ref.get("kind") != "ConfigMap":
        return f"{where}: only a core ConfigMap is supported (group \"\", kind ConfigMap), not " \
               f"{ref.get('group') or 'core'}/{ref.get('kind')}"
    if not ref.get("namespace"):
        return f"{where}.namespace: Required value"
    if not ref.get("name"):
        return f"{where}.name: Required value"
    return None


def _yaml(key: str, text: str) -> Any:
    try:
        return yamlload.load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{key}: invalid YAML: {str(exc).splitlines()[0]}") from None


def parse_params(data: Mapping[str, Any] | None) -> FleetParams:
    """The fleet knobs of a ConfigMap's ``data``; raises :class:`ParamsError` naming the key."""
    data = data or {}
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ParamsError(f"{unknown[0]}: unknown key (supported: {', '.join(KEYS)})")
    out: dict[str, Any] = {}
    if "replicas" in data:
        text = str(data["replicas"]).strip()
        if not text.isdigit() or not 0 <= int(text) <= MAX_REPLICAS:
            raise ParamsError(f"replicas: Invalid value: {text!r}: must be an integer from 0 to {MAX_REPLICAS}")
        out["replicas"] = int(text)
    if "serviceType" in data:
        out["service_type"] = _choice("serviceType", str(data["serviceType"]).strip(), SERVICE_TYPES)
    if "serviceAnnotations" in data:
        annotations = _yaml("serviceAnnotations", str(data["serviceAnnotations"])) or {}
        if not isinstance(annotations, dict) or not all(isinstance(k, str) for k in annotations):
            raise ParamsError("serviceAnnotations: must be a YAML map of annotation names to values")
        bad = [k for k, v in annotations.items() if not isinstance(v, str | int | float | bool)]
        if bad:
            raise ParamsError(f"serviceAnnotations.{bad[0]}: must be a string")
        out["service_annotations"] = tuple(sorted((k, str(v)) for k, v in annotations.items()))
    if "resources" in data:
        resources = _yaml("resources", str(data["resources"])) or {}
        if not isinstance(resources, dict):
            raise ParamsError("resources: must be a YAML map (limits, requests)")
        extra = sorted(set(resources) - set(RESOURCE_KEYS))
        if extra:
            raise ParamsError(f"resources.{extra[0]}: unknown field (supported: limits, requests)")
        for section in ("limits", "requests"):
            values = resources.get(section)
            if values is not None and (not isinstance(values, dict)
                                       or not all(isinstance(v, str | int | float) for v in values.values())):
                raise ParamsError(f"resources.{section}: must be a map of resource names to quantities")
        out["resources"] = {k: ({n: str(q) for n, q in v.items()} if isinstance(v, dict) else v)
                            for k, v in resources.items()}
    if "logLevel" in data:
        out["log_level"] = _choice("logLevel", str(data["logLevel"]).strip().lower(), LOG_LEVELS,
                                   shown=data["logLevel"])
    if "extProcTimeout" in data:
        text = str(data["extProcTimeout"]).strip()
        try:
            seconds = parse_go_duration(text)
        except DurationError:
            raise ParamsError(f"extProcTimeout: Invalid value: {text!r}: must be a duration such as 5s or 500ms"
                              ) from None
        if seconds <= 0:
            raise ParamsError(f"extProcTimeout: Invalid value: {text!r}: must be positive")
        out["ext_proc_timeout_s"] = seconds
    if "responseBodyMode" in data:
        out["response_body_mode"] = _choice("responseBodyMode", str(data["responseBodyMode"]).strip(),
                                            RESPONSE_BODY_MODES)
    return FleetParams(**out)


def _choice(key: str, value: str, allowed: Sequence[str], *, shown: Any = None) -> str:
    """``value`` if it is one of ``allowed``, else the API server's "Unsupported value" error."""
    if value not in allowed:
        raise ParamsError(f"{key}: Unsupported value: {value if shown is None else shown!r}: supported values: "
                          + ", ".join(allowed))
    return value
