"""InferencePool ``inference.networking.x-k8s.io/v1alpha2`` (v0.3.0) <-> ``inference.networking.k8s.io/v1``.

The converters work on plain JSON objects (what a conversion webhook or ``kubectl convert``
receives): unknown fields and key order survive, and nothing is defaulted that the input
did not say.

Field mapping (upstream ``apix/v1alpha2/inferencepool_conversion.go`` at v1.0.0):

==============================================  ===============================================
v1alpha2                                        v1
==============================================  ===============================================
``spec.selector`` (map)                         ``spec.selector.matchLabels``
``spec.targetPortNumber``                       ``spec.targetPorts[0].number``
``spec.extensionRef.{group,kind,name}``         ``spec.endpointPickerRef.{group,kind,name}``
``spec.extensionRef.portNumber``                ``spec.endpointPickerRef.port.number``
``spec.extensionRef.failureMode``               ``spec.endpointPickerRef.failureMode``
``status.parent[]``                             ``status.parents[]``
``status.parent[].parentRef`` (ObjectReference) ``status.parents[].parentRef`` {group,kind,name,namespace}
``Accepted`` reason ``NotSupportedByGateway``   ``Accepted`` reason ``NotSupportedByParent``
==============================================  ===============================================

Where infergate differs from upstream, so that the v1 object is valid:

* ``extensionRef.portNumber`` unset (kind ``Service``): the v1 CEL rule requires a port, upstream
  leaves it nil. infergate sets ``port.number: 9002`` (the EPP's ext_proc port that v0.3.0 told
  implementations to infer), never the model server's ``targetPortNumber``.
* group/kind pointers stay absent instead of becoming ``""`` (which v1 rejects for kind).
* parentRef fields v1 cannot hold (ObjectReference ``apiVersion``'s version, ``fieldPath``,
  ``resourceVersion``, ``uid``; values outside v1's patterns) are left out; an entry without a
  name is dropped (v1 requires one), as are upstream's synthetic ``Status/default`` parent and
  the ``Accepted/Unknown/Pending`` placeholder condition.

Lossless round trip: with ``keep_round_trip_data`` (the default), whatever v1 cannot express
is stored in the annotation ``conversion.infergate.io/v1alpha2`` as JSON (the original
``spec`` and/or ``status``), and :func:`pool_to_v1alpha2` restores it as long as the v1 object
still holds exactly what the stored data converts to. So ``v1alpha2 -> v1 -> v1alpha2`` returns
the input unchanged for every valid object; an edited v1 object converts by the mapping.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infergate.api.conversion.constants import (
    DEFAULT_EPP_PORT,
    GA_POOL_API_VERSION,
    POOL_KIND,
    PREVIEW_POOL_API_VERSION,
    ROUND_TRIP_ANNOTATION,
)
from infergate.api.conversion.issues import (
    ConversionError,
    ConversionWarning,
    FieldProblem,
    ObjectRef,
)

Obj = dict[str, Any]

_GROUP_RE = re.compile(r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KIND_RE = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

_REASON_TO_V1 = {"NotSupportedByGateway": "NotSupportedByParent"}
_REASON_TO_V1ALPHA2 = {v: k for k, v in _REASON_TO_V1.items()}


@dataclass(frozen=True)
class PoolConversion:
    """A converted InferencePool and what could not be kept exactly."""

    obj: Obj
    warnings: tuple[ConversionWarning, ...] = ()


class _Notes:
    """Collects warnings for one object."""

    def __init__(self, ref: ObjectRef) -> None:
        self.ref = ref
        self.items: list[ConversionWarning] = []

    def add(self, field: str, message: str) -> None:
        self.items.append(ConversionWarning(self.ref, field, message))


def pool_to_v1(obj: Mapping[str, Any], *, keep_round_trip_data: bool = True) -> PoolConversion:
    """Convert a v1alpha2 InferencePool (v0.3.0 schema) to ``inference.networking.k8s.io/v1``."""
    ref = _ref(obj)
    _expect_kind(obj, ref, PREVIEW_POOL_API_VERSION)
    notes = _Notes(ref)
    spec = obj.get("spec")
    status = obj.get("status")
    out: Obj = {}
    for key, value in obj.items():
        if key == "apiVersion":
            out[key] = GA_POOL_API_VERSION
        elif key == "spec":
            out[key] = _spec_to_v1(_mapping(value, ref, "spec"), notes)
        elif key == "status":
            out[key] = _status_to_v1(_mapping(value, ref, "status"), notes)
        else:
            out[key] = copy.deepcopy(value)
    if "apiVersion" not in out:
        out = {"apiVersion": GA_POOL_API_VERSION, **out}

    if keep_round_trip_data:
        stash: Obj = {}
        if spec is not None and _back_or_none(out["spec"], ref) != spec:
            stash["spec"] = copy.deepcopy(spec)
        if status is not None and _status_to_v1alpha2(out["status"]) != status:
            stash["status"] = copy.deepcopy(status)
        meta = obj.get("metadata")
        annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
        if isinstance(annotations, Mapping) and ROUND_TRIP_ANNOTATION in annotations:
            stash["previousAnnotation"] = annotations[ROUND_TRIP_ANNOTATION]
        if stash:
            _write_stash(out, stash)
    return PoolConversion(out, tuple(notes.items))


def pool_to_v1alpha2(obj: Mapping[str, Any]) -> PoolConversion:
    """Convert a v1 InferencePool to ``inference.networking.x-k8s.io/v1alpha2`` (v0.3.0 schema).

    Restores the fields kept by :func:`pool_to_v1` in the round-trip annotation when the v1
    object has not changed since; otherwise converts by the mapping.
    """
    ref = _ref(obj)
    _expect_kind(obj, ref, GA_POOL_API_VERSION)
    notes = _Notes(ref)
    out: Obj = {}
    for key, value in obj.items():
        if key == "apiVersion":
            out[key] = PREVIEW_POOL_API_VERSION
        elif key == "spec":
            out[key] = _spec_to_v1alpha2(_mapping(value, ref, "spec"), ref)
        elif key == "status":
            out[key] = _status_to_v1alpha2(_mapping(value, ref, "status"))
        else:
            out[key] = copy.deepcopy(value)
    if "apiVersion" not in out:
        out = {"apiVersion": PREVIEW_POOL_API_VERSION, **out}

    stash = _take_stash(out, notes)
    if stash is not None:
        for part, convert in (("spec", _spec_to_v1), ("status", _status_to_v1)):
            if part not in stash:
                continue
            original = stash[part]
            if isinstance(original, dict) and convert(original, _Notes(ref)) == obj.get(part):
                out[part] = copy.deepcopy(original)
            else:
                notes.add(
                    f"metadata.annotations[{ROUND_TRIP_ANNOTATION}]",
                    f"the stored v1alpha2 {part} no longer matches the v1 {part}: converted by the mapping instead",
                )
    return PoolConversion(out, tuple(notes.items))


def _back_or_none(v1_spec: Obj, ref: ObjectRef) -> Obj | None:
    try:
        return _spec_to_v1alpha2(v1_spec, ref)
    except ConversionError:
        return None


# --- spec -----------------------------------------------------------------------------------


def _spec_to_v1(spec: Mapping[str, Any], notes: _Notes) -> Obj:
    out: Obj = {}
    for key, value in spec.items():
        if key == "selector":
            out["selector"] = None if value is None else {"matchLabels": copy.deepcopy(value)}
        elif key == "targetPortNumber":
            out["targetPorts"] = [{"number": value}]
        elif key == "extensionRef":
            out["endpointPickerRef"] = _epp_ref_to_v1(_mapping(value, notes.ref, "spec.extensionRef"), notes)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _epp_ref_to_v1(ext: Mapping[str, Any], notes: _Notes) -> Obj:
    out: Obj = {}
    infer_port = ext.get("portNumber") is None and ext.get("kind", "Service") == "Service"
    for key, value in ext.items():
        if key == "portNumber":
            if value is not None:
                out["port"] = {"number": value}
        else:
            out[key] = copy.deepcopy(value)
            if key == "name" and infer_port:
                out["port"] = {"number": DEFAULT_EPP_PORT}
    if infer_port:
        out.setdefault("port", {"number": DEFAULT_EPP_PORT})
        notes.add(
            "spec.extensionRef.portNumber",
            f"unset; v1 requires endpointPickerRef.port for a Service, so it is set to {DEFAULT_EPP_PORT} "
            "(the EPP's ext_proc port that v0.3.0 implementations inferred), not the model server port",
        )
    return out


def _spec_to_v1alpha2(spec: Mapping[str, Any], ref: ObjectRef) -> Obj:
    out: Obj = {}
    for key, value in spec.items():
        if key == "selector":
            if value is None:
                out["selector"] = None
            else:
                selector = _mapping(value, ref, "spec.selector")
                extra = sorted(set(selector) - {"matchLabels"})
                if extra:
                    raise ConversionError(
                        [
                            FieldProblem(
                                ref,
                                f"spec.selector.{extra[0]}",
                                "Unsupported value: v1alpha2 has only a label map",
                            )
                        ]
                    )
                out["selector"] = copy.deepcopy(selector.get("matchLabels"))
        elif key == "targetPorts":
            ports = value if isinstance(value, list) else None
            if not ports:
                raise ConversionError(
                    [FieldProblem(ref, "spec.targetPorts", "Required value: one port is needed")]
                )
            if len(ports) > 1:
                raise ConversionError(
                    [
                        FieldProblem(
                            ref, "spec.targetPorts", f"Too many: {len(ports)}: v1alpha2 holds one port"
                        )
                    ]
                )
            port = _mapping(ports[0], ref, "spec.targetPorts[0]")
            out["targetPortNumber"] = port.get("number")
        elif key == "endpointPickerRef":
            epp = _mapping(value, ref, "spec.endpointPickerRef")
            ext: Obj = {}
            for ekey, evalue in epp.items():
                if ekey == "port":
                    if evalue is not None:
                        ext["portNumber"] = _mapping(evalue, ref, "spec.endpointPickerRef.port").get("number")
                else:
                    ext[ekey] = copy.deepcopy(evalue)
            out["extensionRef"] = ext
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- status ---------------------------------------------------------------------------------


def _status_to_v1(status: Mapping[str, Any], notes: _Notes) -> Obj:
    out: Obj = {}
    for key, value in status.items():
        if key != "parent":
            out[key] = copy.deepcopy(value)
            continue
        if value is None:
            out["parents"] = None
            continue
        parents: list[Obj] = []
        for i, entry in enumerate(value if isinstance(value, list) else []):
            field = f"status.parent[{i}]"
            converted = _parent_to_v1(entry if isinstance(entry, Mapping) else {}, notes, field)
            if converted is not None:
                parents.append(converted)
        if parents or not value:
            out["parents"] = parents
    return out


def _parent_to_v1(entry: Mapping[str, Any], notes: _Notes, field: str) -> Obj | None:
    ref = entry.get("parentRef")
    ref = ref if isinstance(ref, Mapping) else {}
    if ref.get("kind") == "Status" and ref.get("name") == "default":
        notes.add(
            field, "the placeholder parent Status/default (no gateway yet) has no v1 equivalent: dropped"
        )
        return None
    name = ref.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 253:
        notes.add(f"{field}.parentRef.name", "v1 requires a parent name (1..253 characters): entry dropped")
        return None
    out: Obj = {}
    for key, value in entry.items():
        if key == "parentRef":
            out["parentRef"] = _parent_ref_to_v1(ref, notes, f"{field}.parentRef")
        elif key == "conditions":
            conditions = _conditions(value, _REASON_TO_V1, drop_pending=True, notes=notes, field=field)
            if conditions:
                out["conditions"] = conditions
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parent_ref_to_v1(ref: Mapping[str, Any], notes: _Notes, field: str) -> Obj:
    out: Obj = {}
    api_version = ref.get("apiVersion")
    group = ref.get("group")  # the x-k8s.io pool as v1.0.0 re-ships it has ParentGatewayReference{group,...}
    if group is not None:
        if isinstance(group, str) and _GROUP_RE.match(group) and len(group) <= 253:
            out["group"] = group
        else:
            notes.add(f"{field}.group", f"{group!r} is not a valid v1 group: dropped")
    if isinstance(api_version, str) and api_version and group is None:
        group = api_version.rpartition("/")[0]  # "v1" (core) -> ""
        if _GROUP_RE.match(group) and len(group) <= 253:
            out["group"] = group
            if api_version != (f"{group}/v1" if group else "v1"):
                notes.add(f"{field}.apiVersion", f"v1 keeps only the group {group!r}: the version is dropped")
        else:
            notes.add(f"{field}.apiVersion", f"group {group!r} is not a valid v1 group: dropped")
    elif api_version is not None:
        notes.add(f"{field}.apiVersion", f"{api_version!r} is not kept: dropped")
    kind = ref.get("kind")
    if kind is not None:
        if isinstance(kind, str) and _KIND_RE.match(kind) and len(kind) <= 63:
            out["kind"] = kind
        else:
            notes.add(f"{field}.kind", f"{kind!r} is not a valid v1 kind: dropped")
    out["name"] = ref["name"]
    namespace = ref.get("namespace")
    if namespace is not None:
        if isinstance(namespace, str) and _NAMESPACE_RE.match(namespace) and len(namespace) <= 63:
            out["namespace"] = namespace
        else:
            notes.add(f"{field}.namespace", f"{namespace!r} is not a valid v1 namespace: dropped")
    for key in ("fieldPath", "resourceVersion", "uid"):
        if ref.get(key) is not None:
            notes.add(f"{field}.{key}", "no v1 equivalent: dropped")
    for key in ref:
        if key not in {
            "apiVersion",
            "group",
            "kind",
            "name",
            "namespace",
            "fieldPath",
            "resourceVersion",
            "uid",
        }:
            notes.add(f"{field}.{key}", "unknown field: dropped")
    return out


def _status_to_v1alpha2(status: Mapping[str, Any]) -> Obj:
    out: Obj = {}
    for key, value in status.items():
        if key != "parents":
            out[key] = copy.deepcopy(value)
            continue
        if value is None:
            out["parent"] = None
            continue
        parents: list[Obj] = []
        for entry in value if isinstance(value, list) else []:
            entry = entry if isinstance(entry, Mapping) else {}
            converted: Obj = {}
            for ekey, evalue in entry.items():
                if ekey == "parentRef":
                    converted["parentRef"] = _parent_ref_to_v1alpha2(
                        evalue if isinstance(evalue, Mapping) else {}
                    )
                elif ekey == "conditions":
                    converted["conditions"] = _conditions(evalue, _REASON_TO_V1ALPHA2, drop_pending=False)
                else:
                    converted[ekey] = copy.deepcopy(evalue)
            parents.append(converted)
        out["parent"] = parents
    return out


def _parent_ref_to_v1alpha2(ref: Mapping[str, Any]) -> Obj:
    out: Obj = {}
    for key, value in ref.items():
        if key == "group":
            # ObjectReference carries apiVersion; Gateway API's served version is v1.
            out["apiVersion"] = "v1" if value == "" else f"{value}/v1"
        else:
            out[key] = copy.deepcopy(value)
    return out


def _conditions(
    value: Any,
    reasons: Mapping[str, str],
    *,
    drop_pending: bool,
    notes: _Notes | None = None,
    field: str = "",
) -> Any:
    if not isinstance(value, list):
        return copy.deepcopy(value)
    out: list[Any] = []
    for i, cond in enumerate(value):
        if not isinstance(cond, Mapping):
            out.append(copy.deepcopy(cond))
            continue
        if drop_pending and (cond.get("type"), cond.get("status"), cond.get("reason")) == (
            "Accepted",
            "Unknown",
            "Pending",
        ):
            if notes is not None:
                notes.add(
                    f"{field}.conditions[{i}]",
                    "the Accepted/Unknown/Pending placeholder has no v1 reason: dropped",
                )
            continue
        new = copy.deepcopy(dict(cond))
        reason = cond.get("reason")
        if cond.get("type") == "Accepted" and isinstance(reason, str) and reason in reasons:
            new["reason"] = reasons[reason]
        out.append(new)
    return out


# --- round-trip annotation ------------------------------------------------------------------


def _write_stash(out: Obj, stash: Obj) -> None:
    meta = out.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        out["metadata"] = meta
        stash["noMetadata"] = True
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict):
        if "annotations" not in meta:
            stash["noAnnotations"] = True
        else:
            stash["annotations"] = annotations
        annotations = {}
        meta["annotations"] = annotations
    annotations[ROUND_TRIP_ANNOTATION] = json.dumps(stash, separators=(",", ":"))


def _take_stash(out: Obj, notes: _Notes) -> Obj | None:
    meta = out.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(annotations, dict) or ROUND_TRIP_ANNOTATION not in annotations:
        return None
    try:
        stash = json.loads(annotations[ROUND_TRIP_ANNOTATION])
    except (TypeError, ValueError):
        stash = None
    if not isinstance(stash, dict):
        notes.add(
            f"metadata.annotations[{ROUND_TRIP_ANNOTATION}]", "not infergate round-trip data: kept as is"
        )
        return None
    assert isinstance(meta, dict)
    del annotations[ROUND_TRIP_ANNOTATION]
    if "previousAnnotation" in stash:
        annotations[ROUND_TRIP_ANNOTATION] = stash["previousAnnotation"]
    if not annotations:
        if stash.get("noAnnotations"):
            del meta["annotations"]
        elif "annotations" in stash:
            meta["annotations"] = stash["annotations"]
    if not meta and stash.get("noMetadata"):
        del out["metadata"]
    return stash


# --- helpers --------------------------------------------------------------------------------


def _ref(obj: Mapping[str, Any]) -> ObjectRef:
    ref = ObjectRef.of(obj)
    return ref if ref.kind else ObjectRef(POOL_KIND, ref.namespace, ref.name)


def _expect_kind(obj: Mapping[str, Any], ref: ObjectRef, api_version: str) -> None:
    problems = []
    if obj.get("kind") != POOL_KIND:
        problems.append(
            FieldProblem(ref, "kind", f"Unsupported value: {obj.get('kind')!r}: must be {POOL_KIND}")
        )
    if obj.get("apiVersion") != api_version:
        problems.append(
            FieldProblem(
                ref, "apiVersion", f"Unsupported value: {obj.get('apiVersion')!r}: must be {api_version}"
            )
        )
    if problems:
        raise ConversionError(problems)


def _mapping(value: Any, ref: ObjectRef, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConversionError(
            [FieldProblem(ref, field, f"Invalid value: {type(value).__name__}: must be an object")]
        )
    return value
