"""Object metadata for the new objects a conversion creates."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

Obj = dict[str, Any]

# Written by the API server for an object that exists; a new object must not carry them.
SERVER_FIELDS = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def new_object_metadata(meta: Any, *, name: str | None = None, warn: Callable[[str, str], None]) -> Obj:
    """Metadata for a new object derived from ``meta``: name (possibly new), namespace, labels, annotations.

    Server-populated fields and kubectl's last-applied annotation (which describes the old
    object) are left out; finalizers are left out with a warning, because no controller of the
    new kind is known to remove them.
    """
    source: Mapping[str, Any] = meta if isinstance(meta, Mapping) else {}
    out: Obj = {}
    for key, value in source.items():
        if key in SERVER_FIELDS:
            continue
        if key == "name" and name is not None:
            out["name"] = name
        elif key == "annotations" and isinstance(value, Mapping):
            kept = {k: copy.deepcopy(v) for k, v in value.items() if k != LAST_APPLIED}
            if kept:
                out["annotations"] = kept
        elif key == "finalizers":
            if value:
                warn("metadata.finalizers", f"{list(value)} not copied to the new object")
        else:
            out[key] = copy.deepcopy(value)
    if "name" not in out and name is not None:
        out = {"name": name, **out}
    return out
