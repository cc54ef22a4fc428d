"""Gateway and GatewayClass statuses in fleet mode, as pure functions.

- A Gateway's ``status.addresses`` come from its Envoy Service: the load balancer's ingress
  (``ip`` or ``hostname``), else the Service's clusterIP.
- ``Programmed`` (as the translator computed it) stays True only once the Service has an
  address and at least one Envoy of the Gateway ACKed the current configuration; until then
  it is False with reason ``Pending`` (or ``AddressNotAssigned``), and ``Invalid`` when the
  GatewayClass's parameters are not usable or its Envoys rejected the configuration (the reason
  in the message).
- A GatewayClass whose ``parametersRef`` is not usable is ``Accepted=False`` with reason
  ``InvalidParameters`` and a message naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infergate.controller import conditions as c


def service_addresses(service: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """The Gateway addresses an Envoy Service gives: LB ingress ip/hostname, else its clusterIP."""
    if not service:
        return []
    out: list[dict[str, str]] = []
    for ingress in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ():
        if ingress.get("ip"):
            out.append({"type": "IPAddress", "value": str(ingress["ip"])})
        elif ingress.get("hostname"):
            out.append({"type": "Hostname", "value": str(ingress["hostname"])})
    if out:
        return out
    cluster_ip = (service.get("spec") or {}).get("clusterIP")
    if cluster_ip and cluster_ip != "None":
        return [{"type": "IPAddress", "value": str(cluster_ip)}]
    return []


def _replace_condition(status: Mapping[str, Any], cond: dict[str, Any]) -> dict[str, Any]:
    conditions = [cond if existing.get("type") == cond["type"] else existing
                  for existing in status.get("conditions") or ()]
    if not any(existing.get("type") == cond["type"] for existing in conditions):
        conditions.append(cond)
    return {**status, "conditions": conditions}


def fleet_gateway_status(status: Mapping[str, Any], *, addresses: list[dict[str, str]], synced: bool,
                         params_error: str | None, generation: int, now: str, nack: str | None = None
                         ) -> dict[str, Any]:
    """The translator's Gateway ``status`` with fleet addresses and ACK-based ``Programmed``."""
    out = {k: v for k, v in status.items() if k != "addresses"}
    programmed = c.find(status.get("conditions") or (), c.PROGRAMMED)
    if programmed is None or programmed.get("status") != c.TRUE:
        return out  # not accepted, or no address: the translator's reason stands
    if params_error is not None:
        cond = c.condition(c.PROGRAMMED, c.FALSE, c.REASON_INVALID,
                           f"The GatewayClass's parameters are invalid: {params_error}", generation, now)
    elif not addresses:
        cond = c.condition(c.PROGRAMMED, c.FALSE, c.REASON_ADDRESS_NOT_ASSIGNED,
                           "Waiting for the Envoy Service's address", generation, now)
    elif not synced and nack is not None:
        cond = c.condition(c.PROGRAMMED, c.FALSE, c.REASON_INVALID,
                           f"Envoy rejected the configuration: {nack}", generation, now)
    elif not synced:
        cond = c.condition(c.PROGRAMMED, c.FALSE, c.REASON_PENDING,
                           "Waiting for an Envoy of this Gateway to ACK the configuration", generation, now)
    else:
        cond = c.condition(c.PROGRAMMED, c.TRUE, c.REASON_PROGRAMMED,
                           f"Envoy serves the configuration at {addresses[0]['value']}", generation, now)
    if addresses and params_error is None:
        out = {"addresses": addresses, **out}
    return _replace_condition(out, cond)


def invalid_parameters_status(status: Mapping[str, Any], message: str, generation: int, now: str
                              ) -> dict[str, Any]:
    """A GatewayClass status with ``Accepted=False``, reason ``InvalidParameters``."""
    return _replace_condition(status, c.condition(c.ACCEPTED, c.FALSE, c.REASON_INVALID_PARAMETERS, message,
                                                  generation, now))
