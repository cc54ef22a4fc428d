"""Status conditions (metav1.Condition) and the reasons the controller uses.

The translator builds conditions with ``lastTransitionTime`` = the translation time;
``merge_conditions`` keeps the previous time when a condition's status did not change, as
the Kubernetes API conventions require.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Condition = dict[str, Any]

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

# Gateway API condition types and reasons (gateway.networking.k8s.io v1.3).
ACCEPTED = "Accepted"
PROGRAMMED = "Programmed"
RESOLVED_REFS = "ResolvedRefs"
CONFLICTED = "Conflicted"
SUPPORTED_VERSION = "SupportedVersion"

REASON_ACCEPTED = "Accepted"
REASON_PROGRAMMED = "Programmed"
REASON_RESOLVED_REFS = "ResolvedRefs"
REASON_NO_CONFLICTS = "NoConflicts"
REASON_INVALID = "Invalid"
REASON_PENDING = "Pending"
REASON_LISTENERS_NOT_VALID = "ListenersNotValid"
REASON_UNSUPPORTED_ADDRESS = "UnsupportedAddress"
REASON_ADDRESS_NOT_ASSIGNED = "AddressNotAssigned"
REASON_UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
REASON_PORT_UNAVAILABLE = "PortUnavailable"
REASON_INVALID_ROUTE_KINDS = "InvalidRouteKinds"
REASON_HOSTNAME_CONFLICT = "HostnameConflict"
REASON_PROTOCOL_CONFLICT = "ProtocolConflict"
REASON_NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
REASON_NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
REASON_NO_MATCHING_PARENT = "NoMatchingParent"
REASON_UNSUPPORTED_VALUE = "UnsupportedValue"
REASON_REF_NOT_PERMITTED = "RefNotPermitted"
REASON_INVALID_KIND = "InvalidKind"
REASON_BACKEND_NOT_FOUND = "BackendNotFound"
REASON_INVALID_PARAMETERS = "InvalidParameters"
REASON_INVALID_CERTIFICATE_REF = "InvalidCertificateRef"

# InferencePool (GIE v1.0.0) reasons.
REASON_HTTPROUTE_NOT_ACCEPTED = "HTTPRouteNotAccepted"
REASON_INVALID_EXTENSION_REF = "InvalidExtensionRef"
REASON_ENDPOINT_PICKER_REF_MISSING = "EndpointPickerRefMissing"  # GIE v1.6: pool without endpointPickerRef


def condition(
    type_: str, status: str, reason: str, message: str, generation: int, now: str
) -> Condition:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now,
    }


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    for cond in conditions:
        if cond.get("type") == type_:
            return cond
    return None


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None, desired: Sequence[Mapping[str, Any]]
) -> list[Condition]:
    """``desired`` with each condition's lastTransitionTime taken from ``previous`` when the
    condition of that type existed there with the same status."""
    merged: list[Condition] = []
    for cond in desired:
        new = dict(cond)
        old = find(previous or (), str(cond.get("type")))
        if old is not None and old.get("status") == cond.get("status") and old.get("lastTransitionTime"):
            new["lastTransitionTime"] = old["lastTransitionTime"]
        merged.append(new)
    return merged
