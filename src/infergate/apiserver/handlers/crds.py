"""CRD lifecycle: a CustomResourceDefinition's own validation, its status (NamesAccepted,
Established, acceptedNames, storedVersions) and the registration of the kind it defines."""

from __future__ import annotations

from typing import Any

from infergate.apiserver.handlers.common import meta
from infergate.apiserver.resources import CRD_GROUP_RESOURCE, ResourceRegistry, served_resource_from_crd
from infergate.apiserver.validation import FieldCause
from infergate.util.clock import utc_now


def is_crd(group: str, resource: str) -> bool:
    return (group, resource) == CRD_GROUP_RESOURCE


def crd_causes(crd: dict[str, Any]) -> list[FieldCause]:
    """What makes a CRD invalid beyond its schema (names, scope, storage version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    causes = []
    if not spec.get("group"):
        causes.append(FieldCause("spec.group", "Required value", "FieldValueRequired"))
    for field in ("plural", "kind"):
        if not names.get(field):
            causes.append(FieldCause(f"spec.names.{field}", "Required value", "FieldValueRequired"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(FieldCause("spec.scope", f'Unsupported value: "{spec.get("scope")}": supported values: '
                                 '"Cluster", "Namespaced"', "FieldValueNotSupported"))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(FieldCause("spec.versions", "Invalid value: null: must have exactly one version marked as "
                                 "storage version", "FieldValueInvalid"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(FieldCause("spec.versions", "Invalid value: must have exactly one version marked as "
                                 "storage version"))
    expected = f"{names.get('plural')}.{spec.get('group')}"
    name = meta(crd).get("name")
    if names.get("plural") and spec.get("group") and name != expected:
        causes.append(FieldCause("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    return causes


def set_crd_status(registry: ResourceRegistry, crd: dict[str, Any]) -> None:
    """Set NamesAccepted/Established, acceptedNames and storedVersions on a CRD."""
    rtype = served_resource_from_crd(crd)
    problem = registry.check_names(rtype)
    now = utc_now()
    names = dict((crd.get("spec") or {}).get("names") or {})
    names.setdefault("singular", rtype.singular)
    names.setdefault("listKind", f"{rtype.kind}List")
    status = crd.setdefault("status", {})
    stored = list(status.get("storedVersions") or [])
    for version in (crd.get("spec") or {}).get("versions") or []:
        if version.get("storage") and version.get("name") not in stored:
            stored.append(version["name"])
    previous = {c.get("type"): c for c in status.get("conditions") or []}

    def condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        old = previous.get(kind)
        value = "True" if ok else "False"
        stamp = old["lastTransitionTime"] if old and old.get("status") == value else now
        return {"type": kind, "status": value, "lastTransitionTime": stamp, "reason": reason, "message": message}

    status["conditions"] = [
        condition("NamesAccepted", problem is None, "NoConflicts" if problem is None else "NameConflict",
                  "no conflicts found" if problem is None else problem),
        condition("Established", problem is None, "InitialNamesAccepted" if problem is None else "NotAccepted",
                  "the initial names have been accepted" if problem is None else "not all names are accepted"),
    ]
    status["acceptedNames"] = names if problem is None else {"plural": "", "kind": ""}
    status["storedVersions"] = stored


def register_crd(registry: ResourceRegistry, crd: dict[str, Any]) -> None:
    """Serve the kind a stored CRD defines, or stop serving it (no versions, names taken)."""
    rtype = served_resource_from_crd(crd)
    if rtype.versions and registry.check_names(rtype) is None:
        registry.register(rtype)
    else:
        registry.unregister(rtype.crd_name or "")
