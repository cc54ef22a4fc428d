"""The OpenAPI v3 documents at ``/openapi/v3``: an index and one document per group-version.

Two consumers, two needs:

* ``kubectl apply`` / ``helm install`` (field-validation check): the document of the
  object's group-version must hold a PATCH operation carrying the object's
  ``x-kubernetes-group-version-kind`` and a ``fieldValidation`` query parameter. Built-in
  group-versions carry only that (no schemas).
* ``kubectl explain`` (v3 by default): it maps the resource to ``apis/G/V``, fails with
  ``couldn't find resource for "G/V, Resource=R"`` when the index lacks that key, takes the
  GVK from an operation on ``/apis/G/V[/namespaces/{namespace}]/R[/{name}]`` (get, post,
  put, patch or delete), then prints the ``components.schemas`` entry whose
  ``x-kubernetes-group-version-kind`` list contains that GVK, following ``$ref``,
  ``allOf``, ``items`` and ``additionalProperties``.

So every served version of every CRD gets a document the way kube-apiserver publishes CRD
schemas: list/create/deletecollection, get/replace/patch/delete (and the ``status``
subresource) operations, a schema named by the reversed group (``io.k8s.networking.inference.v1.InferencePool``)
holding the CRD's ``openAPIV3Schema`` plus ``apiVersion``, ``kind`` and ``metadata`` (a
``$ref`` to the ObjectMeta published here), and the ``...List`` schema.

The CR PATCH operations accept json-patch, merge-patch and apply-patch but NOT
strategic-merge-patch, as on a real server: kubectl's client-side apply reads that list
(``gvkSupportsPatchOpenAPIV3``) and then sends a JSON merge patch for custom resources.

Each document's ``hash`` in the index is the SHA-512 of its content (as kube-apiserver
does), so its URL changes exactly when it changes (a CRD applied, changed or deleted);
kubectl's HTTP cache is keyed by that URL. No caching headers are sent, so kubectl
revalidates anyway. Documents are built once per registry generation.
"""

from __future__ import annotations

import copy
import hashlib
import json
import weakref
from functools import cache
from typing import Any

from infergate.apiserver import builtin_schemas
from infergate.apiserver.resources import ResourceRegistry, ServedResource

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
OBJECT_META = f"{META}.ObjectMeta"
LIST_META = f"{META}.ListMeta"
OWNER_REFERENCE = f"{META}.OwnerReference"
PATCH = f"{META}.Patch"
STATUS = f"{META}.Status"
DELETE_OPTIONS = f"{META}.DeleteOptions"

API_VERSION_DESCRIPTION = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources")
KIND_DESCRIPTION = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this from "
    "the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")
METADATA_DESCRIPTION = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")
LIST_METADATA_DESCRIPTION = (
    "Standard list metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds")

PATCH_CONTENT_TYPES_CR = ("application/apply-patch+yaml", "application/json-patch+json",
                          "application/merge-patch+json")


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _string_map(description: str) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": {"type": "string", "default": ""}, "description": description}


# The parts of meta/v1 a CR document refers to. Descriptions are shortened from upstream's
# and cover the fields this server stores (managedFields is kept but not described in depth).
_META_SCHEMAS: dict[str, dict[str, Any]] = {
    OBJECT_META: {
        "type": "object",
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects "
                       "users must create.",
        "properties": {
            "name": _string("Name must be unique within a namespace. Is required when creating resources, although "
                            "some resources may allow a client to request the generation of an appropriate name "
                            "automatically. Cannot be updated."),
            "generateName": _string("GenerateName is an optional prefix, used by the server, to generate a unique "
                                    "name ONLY IF the Name field has not been provided."),
            "namespace": _string("Namespace defines the space within which each name must be unique. An empty "
                                 "namespace is equivalent to the \"default\" namespace. Cannot be updated."),
            "uid": _string("UID is the unique in time and space value for this object. It is generated by the "
                           "server on successful creation of a resource and is not allowed to change. Read-only."),
            "resourceVersion": _string("An opaque value that represents the internal version of this object that "
                                       "can be used by clients to determine when objects have changed. Read-only."),
            "generation": {"type": "integer", "format": "int64",
                           "description": "A sequence number representing a specific generation of the desired "
                                          "state. Populated by the system. Read-only."},
            "creationTimestamp": _string("CreationTimestamp is a timestamp representing the server time when this "
                                         "object was created. Populated by the system. Read-only.",
                                         format="date-time"),
            "deletionTimestamp": _string("DeletionTimestamp is RFC 3339 date and time at which this resource will be "
                                         "deleted. Set by the server when a graceful deletion is requested. "
                                         "Read-only.", format="date-time"),
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64",
                                           "description": "Number of seconds allowed for this object to gracefully "
                                                          "terminate before it will be removed from the system. "
                                                          "Read-only."},
            "labels": _string_map("Map of string keys and values that can be used to organize and categorize "
                                  "(scope and select) objects."),
            "annotations": _string_map("Annotations is an unstructured key value map stored with a resource that "
                                       "may be set by external tools to store and retrieve arbitrary metadata."),
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""},
                           "description": "Must be empty before the object is deleted from the registry.",
                           "x-kubernetes-list-type": "set"},
            "ownerReferences": {"type": "array", "items": {"allOf": [_ref(OWNER_REFERENCE)], "default": {}},
                                "description": "List of objects depended by this object. If ALL objects in the "
                                               "list have been deleted, this object will be garbage collected.",
                                "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"},
            "managedFields": {"type": "array", "items": {"type": "object"},
                              "description": "ManagedFields maps workflow-id and version to the set of fields that "
                                             "are managed by that workflow."},
        },
    },
    OWNER_REFERENCE: {
        "type": "object",
        "description": "OwnerReference contains enough information to let you identify an owning object.",
        "required": ["apiVersion", "kind", "name", "uid"],
        "properties": {
            "apiVersion": _string("API version of the referent.", default=""),
            "kind": _string("Kind of the referent.", default=""),
            "name": _string("Name of the referent.", default=""),
            "uid": _string("UID of the referent.", default=""),
            "controller": {"type": "boolean", "description": "If true, this reference points to the managing "
                                                             "controller."},
            "blockOwnerDeletion": {"type": "boolean", "description": "If true, AND if the owner has the "
                                                                     "\"foregroundDeletion\" finalizer, then the "
                                                                     "owner cannot be deleted from the key-value "
                                                                     "store until this reference is removed."},
        },
        "x-kubernetes-map-type": "atomic",
    },
    LIST_META: {
        "type": "object",
        "description": "ListMeta describes metadata that synthetic resources must have, including lists.",
        "properties": {
            "resourceVersion": _string("String that identifies the server's internal version of this object. "
                                       "Read-only."),
            "continue": _string("Set when more results are available (never, on this server)."),
            "remainingItemCount": {"type": "integer", "format": "int64",
                                   "description": "The number of subsequent items in the list."},
        },
    },
    PATCH: {"type": "object",
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."},
    DELETE_OPTIONS: {
        "type": "object", "description": "DeleteOptions may be provided when deleting an API object.",
        "properties": {
            "apiVersion": _string(API_VERSION_DESCRIPTION), "kind": _string(KIND_DESCRIPTION),
            "propagationPolicy": _string("Whether and how garbage collection will be performed."),
            "gracePeriodSeconds": {"type": "integer", "format": "int64",
                                   "description": "The duration in seconds before the object should be deleted."},
            "dryRun": {"type": "array", "items": {"type": "string", "default": ""},
                       "description": "When present, indicates that modifications should not be persisted."},
        },
    },
    STATUS: {
        "type": "object", "description": "Status is a return value for calls that don't return other objects.",
        "properties": {
            "apiVersion": _string(API_VERSION_DESCRIPTION), "kind": _string(KIND_DESCRIPTION),
            "metadata": {"allOf": [_ref(LIST_META)], "default": {}, "description": LIST_METADATA_DESCRIPTION},
            "status": _string("Status of the operation. One of: \"Success\" or \"Failure\"."),
            "message": _string("A human-readable description of the status of this operation."),
            "reason": _string("A machine-readable description of why this operation is in the \"Failure\" status."),
            "code": {"type": "integer", "format": "int32", "description": "Suggested HTTP return code."},
        },
    },
}


def _param(name: str, kind: str = "string", where: str = "query", description: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "in": where, "schema": {"type": kind, "uniqueItems": True}}
    if description:
        entry["description"] = description
    if where == "path":
        entry["required"] = True
    return entry


_WRITE_PARAMS = [
    _param("dryRun", description="When present, indicates that modifications should not be persisted."),
    _param("fieldManager", description="A name associated with the actor or entity that is making these changes."),
    _param("fieldValidation", description="Instructs the server on how to handle objects in the request containing "
                                          "unknown or duplicate fields: Ignore, Warn or Strict."),
]
_PATCH_PARAMS = [*_WRITE_PARAMS, _param("force", "boolean", description="Force is going to \"force\" Apply "
                                                                          "requests.")]
_LIST_PARAMS = [_param(name) for name in ("continue", "fieldSelector", "labelSelector", "resourceVersion",
                                          "resourceVersionMatch")] + [
    _param("limit", "integer"), _param("timeoutSeconds", "integer"), _param("allowWatchBookmarks", "boolean"),
    _param("sendInitialEvents", "boolean"), _param("watch", "boolean")]


def schema_name(group: str, version: str, kind: str) -> str:
    """The component name kube-apiserver gives a CRD kind: reversed group, version, kind."""
    reversed_group = ".".join(reversed(group.split("."))) if group else "io.k8s.api.core"
    return f"{reversed_group}.{version}.{kind}"


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in text.replace("-", ".").split(".") if part)


def _content(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}, "application/yaml": {"schema": _ref(name)}}


_ACTIONS = {"list": "list", "create": "post", "deletecollection": "deletecollection", "read": "get",
            "replace": "put", "patch": "patch", "delete": "delete"}


def _operation(verb: str, rtype: ServedResource, version: str, op_kind: str, action: str, response: str,
               parameters: list[dict[str, Any]], request: str | None = None,
               request_types: tuple[str, ...] = ("*/*",), success: tuple[str, ...] = ("200",)) -> dict[str, Any]:
    """One operation as kube-apiserver describes it; ``action`` is list/create/read/replace/patch/delete/
    deletecollection, ``op_kind`` the rest of the operation id (``NamespacedInferencePool``)."""
    responses: dict[str, Any] = {code: {"description": {"200": "OK", "201": "Created", "202": "Accepted"}[code],
                                        "content": _content(response)} for code in success}
    responses["401"] = {"description": "Unauthorized"}
    op: dict[str, Any] = {
        "tags": [f"{_camel(rtype.group)}{_camel(version)}"],
        "description": verb,
        "operationId": f"{action}{_camel(rtype.group)}{_camel(version)}{op_kind}",
        "parameters": parameters,
        "responses": responses,
        "x-kubernetes-action": _ACTIONS[action],
        "x-kubernetes-group-version-kind": {"group": rtype.group, "version": version, "kind": rtype.kind},
    }
    if request is not None:
        op["requestBody"] = {"content": {ct: {"schema": _ref(request)} for ct in request_types}, "required": True}
    return op


def _custom_resource_paths(rtype: ServedResource, version: str, prefix: str) -> dict[str, Any]:
    kind_schema = schema_name(rtype.group, version, rtype.kind)
    list_schema = f"{kind_schema}List"
    scope = "Namespaced" if rtype.namespaced else ""
    kind = f"{scope}{rtype.kind}"
    if rtype.namespaced:
        collection = f"{prefix}/namespaces/{{namespace}}/{rtype.resource}"
        scope_params = [_param("namespace", where="path", description="object name and auth scope")]
    else:
        collection = f"{prefix}/{rtype.resource}"
        scope_params = []
    item = f"{collection}/{{name}}"
    name_param = [_param("name", where="path", description=f"name of the {rtype.kind}")]
    paths: dict[str, Any] = {
        collection: {
            "get": _operation(f"list or watch objects of kind {rtype.kind}", rtype, version, kind, "list",
                              list_schema, _LIST_PARAMS),
            "post": _operation(f"create a {rtype.kind}", rtype, version, kind, "create", kind_schema,
                               _WRITE_PARAMS, request=kind_schema, success=("200", "201", "202")),
            "delete": _operation(f"delete collection of {rtype.kind}", rtype, version, kind,
                                 "deletecollection", STATUS, _LIST_PARAMS, request=DELETE_OPTIONS),
            "parameters": scope_params,
        },
        item: {
            "get": _operation(f"read the specified {rtype.kind}", rtype, version, kind, "read", kind_schema,
                              [_param("resourceVersion")]),
            "put": _operation(f"replace the specified {rtype.kind}", rtype, version, kind, "replace",
                              kind_schema, _WRITE_PARAMS, request=kind_schema, success=("200", "201")),
            "patch": _operation(f"partially update the specified {rtype.kind}", rtype, version, kind, "patch",
                                kind_schema, _PATCH_PARAMS, request=PATCH, request_types=PATCH_CONTENT_TYPES_CR,
                                success=("200", "201")),
            "delete": _operation(f"delete a {rtype.kind}", rtype, version, kind, "delete", kind_schema,
                                 _WRITE_PARAMS, request=DELETE_OPTIONS, success=("200", "202")),
            "parameters": scope_params + name_param,
        },
    }
    if rtype.namespaced:
        paths[f"{prefix}/{rtype.resource}"] = {
            "get": _operation(f"list or watch objects of kind {rtype.kind}", rtype, version,
                              f"{rtype.kind}ForAllNamespaces", "list", list_schema, _LIST_PARAMS)}
    if rtype.has_status:
        status_kind = f"{kind}Status"
        paths[f"{item}/status"] = {
            "get": _operation(f"read status of the specified {rtype.kind}", rtype, version, status_kind,
                              "read", kind_schema, [_param("resourceVersion")]),
            "put": _operation(f"replace status of the specified {rtype.kind}", rtype, version, status_kind,
                              "replace", kind_schema, _WRITE_PARAMS, request=kind_schema,
                              success=("200", "201")),
            "patch": _operation(f"partially update status of the specified {rtype.kind}", rtype, version,
                                status_kind, "patch", kind_schema, _PATCH_PARAMS, request=PATCH,
                                request_types=PATCH_CONTENT_TYPES_CR, success=("200", "201")),
            "parameters": scope_params + name_param,
        }
    return paths


def _custom_resource_schemas(rtype: ServedResource, version: str) -> dict[str, dict[str, Any]]:
    kind_schema = schema_name(rtype.group, version, rtype.kind)
    crd_schema = rtype.schemas.get(version)
    schema: dict[str, Any] = (copy.deepcopy(crd_schema) if isinstance(crd_schema, dict)
                              else {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    schema.setdefault("type", "object")
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = _string(API_VERSION_DESCRIPTION)
    properties["kind"] = _string(KIND_DESCRIPTION)
    properties["metadata"] = {"allOf": [_ref(OBJECT_META)], "description": METADATA_DESCRIPTION}
    schema["x-kubernetes-group-version-kind"] = [{"group": rtype.group, "kind": rtype.kind, "version": version}]
    list_kind = f"{rtype.kind}List"
    list_schema = {
        "type": "object", "description": f"{list_kind} is a list of {rtype.kind}",
        "required": ["items"],
        "properties": {
            "apiVersion": _string(API_VERSION_DESCRIPTION),
            "items": {"type": "array", "items": _ref(kind_schema),
                      "description": f"List of {rtype.resource}. More info: "
                                     "https://git.k8s.io/community/contributors/devel/sig-architecture/"
                                     "api-conventions.md"},
            "kind": _string(KIND_DESCRIPTION),
            "metadata": {"allOf": [_ref(LIST_META)], "description": LIST_METADATA_DESCRIPTION},
        },
        "x-kubernetes-group-version-kind": [{"group": rtype.group, "kind": list_kind, "version": version}],
    }
    return {kind_schema: schema, f"{kind_schema}List": list_schema}


def _builtin_patch_path(rtype: ServedResource, version: str, prefix: str) -> dict[str, Any]:
    """The one operation kubectl/helm need for a built-in kind: its PATCH, without schemas."""
    if rtype.namespaced:
        path = f"{prefix}/namespaces/{{namespace}}/{rtype.resource}/{{name}}"
    else:
        path = f"{prefix}/{rtype.resource}/{{name}}"
    return {path: {"patch": {
        "operationId": f"patch{rtype.kind}",
        "x-kubernetes-group-version-kind": {"group": rtype.group, "version": version, "kind": rtype.kind},
        "x-kubernetes-action": "patch",
        "parameters": _PATCH_PARAMS,
        "responses": {"200": {"description": "OK"}},
    }}}


def _ref_with_siblings(node: Any) -> Any:
    """``{"$ref": X, "description": ...}`` as kube-apiserver writes it in OpenAPI v3:
    ``{"allOf": [{"$ref": X}], "description": ...}`` (siblings of a ``$ref`` are ignored)."""
    if isinstance(node, list):
        return [_ref_with_siblings(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _ref_with_siblings(value) for key, value in node.items() if key != "$ref"}
    if "$ref" in node:
        if not out:
            return {"$ref": node["$ref"]}
        out["allOf"] = [{"$ref": node["$ref"]}]
    return out


@cache
def _builtin_schemas(group: str, version: str, kind: str) -> dict[str, dict[str, Any]]:
    """The published schema of a built-in kind and every schema it refers to (none when the
    release has no definition of it)."""
    defs = builtin_schemas.definitions()
    name = defs.name_of(group, version, kind)
    if name is None:
        return {}
    return {key: _ref_with_siblings(schema) for key, schema in defs.closure(name).items()}


def _group_versions(registry: ResourceRegistry) -> dict[str, list[ServedResource]]:
    """OpenAPI v3 path key (``api/v1``, ``apis/G/V``) -> the types served in it."""
    paths: dict[str, list[ServedResource]] = {}
    for rtype in sorted(registry.all(), key=lambda t: (t.group, t.resource)):
        if rtype.review:
            continue
        for version in rtype.versions:
            key = f"apis/{rtype.group}/{version}" if rtype.group else f"api/{version}"
            paths.setdefault(key, []).append(rtype)
    return paths


def _build_document(key: str, types: list[ServedResource]) -> dict[str, Any]:
    prefix = "/" + key
    version = key.rsplit("/", 1)[1]
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rtype in types:
        if rtype.crd_name:
            paths.update(_custom_resource_paths(rtype, version, prefix))
            schemas.update(_custom_resource_schemas(rtype, version))
        else:
            paths.update(_builtin_patch_path(rtype, version, prefix))
            schemas.update(_builtin_schemas(rtype.group, version, rtype.kind))
    if schemas:
        for name, schema in _META_SCHEMAS.items():  # a built-in kind's published ones are kept
            schemas.setdefault(name, copy.deepcopy(schema))
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0"},
            "paths": paths, "components": {"schemas": dict(sorted(schemas.items()))}}


def _hash(document: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest().upper()


class _Built:
    """The documents of one registry generation, their hashes, and the types each was built from."""

    def __init__(self, generation: int, types: dict[str, list[ServedResource]], previous: _Built | None) -> None:
        self.generation = generation
        self.types = types
        self.documents: dict[str, dict[str, Any]] = {}
        self.hashes: dict[str, str] = {}
        for key, served in types.items():
            if previous is not None and previous.types.get(key) == served:  # unchanged: no rebuild, no rehash
                self.documents[key], self.hashes[key] = previous.documents[key], previous.hashes[key]
                continue
            self.documents[key] = _build_document(key, served)
            self.hashes[key] = _hash(self.documents[key])


_cache: weakref.WeakKeyDictionary[ResourceRegistry, _Built] = weakref.WeakKeyDictionary()


def _built(registry: ResourceRegistry) -> _Built:
    built = _cache.get(registry)
    if built is None or built.generation != registry.generation:
        built = _Built(registry.generation, _group_versions(registry), built)
        _cache[registry] = built
    return built


def index(registry: ResourceRegistry) -> dict[str, Any]:
    built = _built(registry)
    return {"paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={built.hashes[key]}"}
                      for key in sorted(built.documents)}}


def document(registry: ResourceRegistry, key: str) -> dict[str, Any] | None:
    return _built(registry).documents.get(key)
