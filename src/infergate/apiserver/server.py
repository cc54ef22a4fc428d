"""The HTTP front of the embedded API server: routing, REST verbs, watch streams.

Requests are served by one aiohttp application on one event loop; the SQLite store is
called synchronously from it, so every request's read-modify-write is atomic with respect
to other requests, and a watch registers its subscription in the same step as it reads
the state it starts from (no event can slip between them).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from infergate.apiserver import authn, discovery, openapi_v2, protobuf
from infergate.apiserver.authn import ADMIN, Identity, TokenIssuer
from infergate.apiserver.defaults import apply_schema_defaults, default_pod, default_service, default_workload
from infergate.apiserver.errors import (
    APIError,
    already_exists,
    apply_conflict,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from infergate.apiserver.jsonpath import evaluate
from infergate.apiserver.patch import (
    ApplyConflict,
    PatchError,
    json_patch,
    merge_patch,
    record_update_manager,
    server_side_apply,
    strategic_merge_patch,
)
from infergate.apiserver.rbac import (
    BOOTSTRAP_CLUSTER_ROLES,
    MODES,
    Attributes,
    RBACAuthorizer,
    forbidden_status,
    request_attributes,
    review_attributes,
    rules_review_status,
)
from infergate.apiserver.resources import (
    CRD_GROUP_RESOURCE,
    ResourceRegistry,
    ServedResource,
    served_resource_from_crd,
)
from infergate.apiserver.selectors import SelectorError, field_selector, label_selector
from infergate.apiserver.store import ObjectKey, ResourceVersionTooOld, Store, WatchEvent
from infergate.apiserver.table import to_table
from infergate.apiserver.validation import Admission, FieldCause, check_schema, prune
from infergate.apiserver.watch import WatchHub
from infergate.util.clock import utc_now, utc_timestamp

log = logging.getLogger(__name__)

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
UNAUTHENTICATED_PATHS = ("/healthz", "/livez", "/readyz")
BOOKMARK_INTERVAL = 30.0
IDENTITY_KEY = web.RequestKey("identity", Identity)  # who the request acts as (after impersonation)
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# (request, namespace or None, object name) -> response
SubresourceHandler = Callable[[web.Request, str | None, str], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Target:
    """What a resource request addresses."""

    rtype: ServedResource
    version: str
    namespace: str | None  # None: cluster-scoped resource, or a list across namespaces
    name: str | None
    subresource: str | None

    def key(self, name: str | None = None) -> ObjectKey:
        return ObjectKey(self.rtype.group, self.rtype.resource, self.namespace or "", name or self.name or "")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _json(body: Any, status: int = 200, content_type: str = "application/json") -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                        headers={"Content-Type": content_type})


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the fields a no-op update may change (times, versions)."""
    clone = copy.deepcopy(obj)
    meta = clone.get("metadata") or {}
    meta.pop("resourceVersion", None)
    meta.pop("managedFields", None)
    clone.pop("apiVersion", None)
    return clone


class APIServer:
    """Kubernetes-compatible API over a :class:`Store`; ``app()`` gives the aiohttp app."""

    def __init__(self, store: Store, token: str, admission: Admission | None = None, *,
                 authorization_mode: str = "AlwaysAllow", signing_key: bytes | None = None) -> None:
        if authorization_mode not in MODES:
            raise ValueError(f"authorization mode: one of {', '.join(MODES)}, got {authorization_mode!r}")
        self.store = store
        self.token = token
        self.admission = admission or Admission()
        self.authorization_mode = authorization_mode
        self.issuer = TokenIssuer(signing_key if signing_key is not None else uuid.uuid4().bytes + uuid.uuid4().bytes)
        self.authorizer = RBACAuthorizer(store.list_objects,
                                         lambda g, r, ns, n: store.get(ObjectKey(g, r, ns, n)))
        self.registry = ResourceRegistry()
        self.hub = WatchHub()
        self._subresource_handlers: dict[tuple[str, str, str], SubresourceHandler] = {}
        self.add_subresource_handler("", "serviceaccounts", "token", self._token_request)
        if authorization_mode == "RBAC":  # answered truthfully only when there is something to answer
            for resource, kind, namespaced in (("selfsubjectrulesreviews", "SelfSubjectRulesReview", False),
                                               ("subjectaccessreviews", "SubjectAccessReview", False),
                                               ("localsubjectaccessreviews", "LocalSubjectAccessReview", True)):
                self.registry.register(ServedResource(group="authorization.k8s.io", resource=resource, kind=kind,
                                                    namespaced=namespaced, versions=("v1",),
                                                    singular=kind.lower(), review=True))
        for crd in self.store.list_objects(*CRD_GROUP_RESOURCE, ""):
            rtype = served_resource_from_crd(crd)
            if rtype.versions and self.registry.check_names(rtype) is None:
                self.registry.register(rtype)
        for name in INITIAL_NAMESPACES:
            key = ObjectKey("", "namespaces", "", name)
            if self.store.get(key) is None:
                ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {}}
                self._initialize(ns, key)
                self._commit(key, ns, "ADDED")

    # ------------------------------------------------------------------------ app

    def add_subresource_handler(self, group: str, resource: str, name: str, handler: SubresourceHandler) -> None:
        """Serve ``<resource>/<name>`` with ``handler(request, namespace, object name)``.

        For subresources backed by something other than the store, such as ``pods/log`` of
        the local runtime. The object must exist (404 otherwise); discovery lists the
        subresource.
        """
        self.registry.add_subresource(group, resource, name)
        self._subresource_handlers[(group, resource, name)] = handler

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth_middleware], client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, app: web.Application) -> None:
        self.hub.close_all()

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in UNAUTHENTICATED_PATHS:
            identity = self._authenticate(request)
            if identity is None:
                return _json(APIError(401, "Unauthorized", "Unauthorized").status(), 401)
            acting = self._impersonate(request, identity)
            if isinstance(acting, web.Response):
                return acting
            request[IDENTITY_KEY] = acting
            if self.authorization_mode == "RBAC" and not acting.is_master:
                attrs = request_attributes(request.method, request.path, request.query)
                if not self.authorizer.authorize(acting, attrs).allowed:
                    return _json(forbidden_status(acting.user, attrs), 403)
        result: web.StreamResponse = await handler(request)
        return result

    def _authenticate(self, request: web.Request) -> Identity | None:
        """The admin token, or a ServiceAccount token of an existing ServiceAccount; else None (401)."""
        header = request.headers.get("Authorization", "")
        supplied = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not supplied:
            return None
        if hmac.compare_digest(supplied.encode(), self.token.encode()):
            return ADMIN
        claims = self.issuer.verify(supplied)
        if claims is None:
            return None
        account = self.store.get(ObjectKey("", "serviceaccounts", claims.namespace, claims.name))
        if account is None or _meta(account).get("deletionTimestamp") or \
                (claims.uid and _meta(account).get("uid") != claims.uid):
            return None
        return authn.service_account_identity(claims.namespace, claims.name, claims.uid)

    def _impersonate(self, request: web.Request, identity: Identity) -> Identity | web.Response:
        """``Impersonate-User``/``-Group``/``-Uid``: the identity the request acts as. In RBAC mode
        the caller needs the ``impersonate`` verb on each (system:masters has it)."""
        user = request.headers.get("Impersonate-User", "")
        groups = request.headers.getall("Impersonate-Group", [])
        uid = request.headers.get("Impersonate-Uid", "")
        if not user and not groups and not uid:
            return identity
        if not user:
            return _json(APIError(500, "InternalError", "Internal error occurred: requested impersonation of "
                                  "groups or uid without impersonating a user").status(), 500)
        if self.authorization_mode == "RBAC" and not identity.is_master:
            sa = authn.split_service_account(user)
            wanted = [Attributes("impersonate", True, resource="serviceaccounts", namespace=sa[0], name=sa[1])
                      if sa else Attributes("impersonate", True, resource="users", name=user)]
            wanted += [Attributes("impersonate", True, resource="groups", name=g) for g in groups]
            if uid:
                wanted.append(Attributes("impersonate", True, api_group="authentication.k8s.io", resource="uids",
                                         name=uid))
            for attrs in wanted:
                if not self.authorizer.authorize(identity, attrs).allowed:
                    return _json(forbidden_status(identity.user, attrs), 403)
        return authn.impersonated(user, groups, uid)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except APIError as err:
            return _json(err.status(), err.code)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug: report it as the real server would, and log it
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return _json(APIError(500, "InternalError", f"Internal error occurred: {exc}").status(), 500)

    # ------------------------------------------------------------------- routing

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        accept = request.headers.get("Accept", "")
        if path in UNAUTHENTICATED_PATHS:
            return web.Response(text="ok")
        if path == "/version":
            return _json(discovery.KUBERNETES_VERSION)
        if path == "/api":
            if discovery.wants_aggregated(accept):
                return _json(discovery.aggregated(self.registry, core=True), content_type=discovery.AGGREGATED_CONTENT_TYPE)
            return _json(discovery.api_versions(request.host))
        if path == "/apis":
            if discovery.wants_aggregated(accept):
                return _json(discovery.aggregated(self.registry, core=False), content_type=discovery.AGGREGATED_CONTENT_TYPE)
            return _json(discovery.api_group_list(self.registry))
        if path == "/openapi/v2":
            if openapi_v2.wants_protobuf(accept):
                return web.Response(body=openapi_v2.document_protobuf(),
                                    headers={"Content-Type": openapi_v2.PROTOBUF_CONTENT_TYPE})
            return _json(openapi_v2.document_json())
        if parts[:2] == ["openapi", "v3"]:
            if len(parts) == 2:
                return _json(discovery.openapi_index(self.registry))
            doc = discovery.openapi_document(self.registry, "/".join(parts[2:]))
            if doc is not None:
                return _json(doc)
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if parts and parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts and parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        elif parts and parts[0] == "apis" and len(parts) == 2:
            info = discovery.api_group(self.registry, parts[1])
            if info is None:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return _json(info)
        else:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            listing = discovery.resource_list(self.registry, group, version)
            if listing is None:
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return _json(listing)
        target = self._target(group, version, rest)
        return await self._serve(request, target)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (group == "" and len(rest) == 3
                                                                  and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        resource, name = rest[0], rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if len(rest) > 3:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        rtype = self.registry.lookup(group, version, resource)
        if rtype is None:
            raise APIError(404, "NotFound", "the server could not find the requested resource",
                           {"group": group, "kind": resource})
        if namespace is not None and not rtype.namespaced:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if rtype.namespaced and namespace is None and name is not None:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if subresource == "finalize" and rtype.resource == "namespaces":
            subresource = "status"
        if subresource is not None and subresource not in rtype.subresources:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        return Target(rtype, version, namespace, name, subresource)

    async def _serve(self, request: web.Request, target: Target) -> web.StreamResponse:
        method = request.method
        query = request.query
        dry_run = bool(query.getall("dryRun", []))
        if target.name is None:
            if method == "GET":
                if _truthy(query.get("watch")):
                    return await self._watch(request, target)
                return self._list(request, target)
            if method == "POST" and target.rtype.review:
                try:
                    review = await self._read_review(request)
                except APIError:
                    if self.authorization_mode == "RBAC":
                        raise
                    review = {"spec": {}}  # AlwaysAllow: its attributes do not change the answer
                review["status"] = self._review_status(request, target, review)
                return _json(self._external(target, review), 201)
            if target.rtype.review:
                raise APIError(405, "MethodNotAllowed", f"the server does not allow the method {method} here")
            if method == "POST":
                obj = await self._read_object(request)
                return self._respond(request, target, self._create(target, obj, query.get("fieldManager"), dry_run,
                                                                  query.get("fieldValidation")), 201)
            if method == "DELETE":
                return self._delete_collection(request, target, dry_run)
            raise APIError(405, "MethodNotAllowed", f"the server does not allow the method {method} here")
        handler = self._subresource_handlers.get((target.rtype.group, target.rtype.resource, target.subresource or ""))
        if handler is not None:
            self._get(target)  # 404 when the object does not exist
            return await handler(request, target.namespace, target.name or "")
        if target.subresource == "scale":
            return await self._scale(request, target, dry_run)
        if method == "GET":
            return self._respond(request, target, self._get(target))
        if method == "PUT":
            obj = await self._read_object(request)
            current = self._get(target)
            updated = self._store_update(target, current, obj, query.get("fieldManager"), dry_run,
                                         field_validation=query.get("fieldValidation"))
            return self._respond(request, target, updated)
        if method == "PATCH":
            result, created = await self._patch(request, target, dry_run)
            return self._respond(request, target, result, 201 if created else 200)
        if method == "DELETE":
            options = await self._read_delete_options(request)
            return self._respond(request, target, self._delete(target, options, dry_run or bool(options.get("dryRun"))))
        raise APIError(405, "MethodNotAllowed", f"the server does not allow the method {method} here")

    # ------------------------------------------------------ reviews and TokenRequest

    async def _read_review(self, request: web.Request) -> dict[str, Any]:
        """A TokenRequest or access review, JSON or protobuf (kubectl's typed clients)."""
        content_type, raw = await self._read_body(request)
        if content_type == "application/vnd.kubernetes.protobuf":
            try:
                return authn.decode_protobuf(raw)
            except protobuf.ProtobufError as exc:
                raise APIError(415, "UnsupportedMediaType", str(exc)) from exc
        obj = self._decode(content_type, raw)
        if not isinstance(obj, dict):
            raise bad_request("the request body must be an object")
        return obj

    def _review_status(self, request: web.Request, target: Target, review: dict[str, Any]) -> dict[str, Any]:
        if self.authorization_mode != "RBAC":
            return {"allowed": True, "reason": "the infergate apiserver does not enforce "
                    "authorization: every authenticated request is allowed"}
        spec = review.get("spec") if isinstance(review.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        if target.rtype.resource == "selfsubjectrulesreviews":
            identity = request.get(IDENTITY_KEY, ADMIN)
            if identity.is_master:  # bound to cluster-admin on a real cluster
                return rules_review_status(BOOTSTRAP_CLUSTER_ROLES["cluster-admin"]["rules"])
            return rules_review_status(self.authorizer.rules_for(identity, str(spec.get("namespace") or "")))
        if target.rtype.resource == "selfsubjectaccessreviews":
            identity = request.get(IDENTITY_KEY, ADMIN)
        else:
            if not spec.get("user") and not spec.get("groups"):
                raise invalid(target.rtype.kind, "", target.rtype.group, [FieldCause(
                    "spec.user", "Invalid value: \"\": at least one of user or group must be specified")])
            identity = Identity(str(spec.get("user", "")), tuple(str(g) for g in spec.get("groups") or []),
                                str(spec.get("uid", "")))
        if target.rtype.resource == "localsubjectaccessreviews" and isinstance(spec.get("resourceAttributes"), dict):
            spec["resourceAttributes"]["namespace"] = target.namespace
        if identity.is_master:
            return {"allowed": True}
        decision = self.authorizer.authorize(identity, review_attributes(spec))
        return {"allowed": True, "reason": decision.reason} if decision.allowed else {"allowed": False}

    async def _token_request(self, request: web.Request, namespace: str | None, name: str) -> web.Response:
        """``serviceaccounts/token``: a TokenRequest answered with a signed token of the account."""
        if request.method != "POST":
            raise APIError(405, "MethodNotAllowed", f"the server does not allow the method {request.method} here")
        account = self.store.get(ObjectKey("", "serviceaccounts", namespace or "", name)) or {}
        body = await self._read_review(request)
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        try:
            seconds = int(spec.get("expirationSeconds") or authn.DEFAULT_EXPIRATION_S)
        except (TypeError, ValueError):
            raise bad_request("spec.expirationSeconds: an integer is required") from None
        if seconds < authn.MIN_EXPIRATION_S:
            raise invalid("TokenRequest", name, "authentication.k8s.io", [FieldCause(
                "spec.expirationSeconds", f"Invalid value: {seconds}: may not specify a duration less than 10 minutes")])
        if seconds > authn.MAX_EXPIRATION_S:
            raise invalid("TokenRequest", name, "authentication.k8s.io", [FieldCause(
                "spec.expirationSeconds", f"Invalid value: {seconds}: may not specify a duration larger than "
                "2^32 seconds")])
        audiences = [str(a) for a in spec.get("audiences") or authn.DEFAULT_AUDIENCES]
        token, expires = self.issuer.issue(namespace or "", name, str(_meta(account).get("uid", "")), seconds,
                                           audiences)
        stamp = utc_timestamp(expires)
        answer = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                  "metadata": {"name": name, "namespace": namespace, "creationTimestamp": utc_now()},
                  "spec": {"audiences": audiences, "expirationSeconds": seconds,
                           "boundObjectRef": spec.get("boundObjectRef")},
                  "status": {"token": token, "expirationTimestamp": stamp}}
        return _json(answer, 201)

    # ------------------------------------------------------------- bodies/answers

    async def _read_body(self, request: web.Request) -> tuple[str, bytes]:
        return request.headers.get("Content-Type", "application/json").split(";")[0].strip(), await request.read()

    def _decode(self, content_type: str, raw: bytes) -> Any:
        if content_type == "application/vnd.kubernetes.protobuf":
            try:
                return protobuf.decode(raw)
            except protobuf.ProtobufError as exc:
                raise APIError(415, "UnsupportedMediaType", str(exc)) from exc
        try:
            if content_type.endswith("yaml"):
                return yaml.safe_load(raw.decode() or "{}")
            return json.loads(raw.decode() or "null")
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the body of the request was in an unknown format: {exc}") from exc

    async def _read_object(self, request: web.Request) -> dict[str, Any]:
        obj = self._decode(*(await self._read_body(request)))
        if not isinstance(obj, dict):
            raise bad_request("the request body must be an object")
        return obj

    async def _read_delete_options(self, request: web.Request) -> dict[str, Any]:
        content_type, raw = await self._read_body(request)
        if not raw:
            return {}
        options = self._decode(content_type, raw)
        return options if isinstance(options, dict) else {}

    def _external(self, target: Target, obj: dict[str, Any]) -> dict[str, Any]:
        obj = dict(obj)
        obj["apiVersion"] = target.rtype.api_version(target.version)
        obj["kind"] = target.rtype.kind
        return {"apiVersion": obj.pop("apiVersion"), "kind": obj.pop("kind"), **obj}

    def _respond(self, request: web.Request, target: Target, obj: dict[str, Any], status: int = 200) -> web.Response:
        if obj.get("kind") == "Status":
            return _json(obj, status)
        obj = self._external(target, obj)
        if "as=Table" in request.headers.get("Accept", "") and request.method == "GET":
            rv = _meta(obj).get("resourceVersion", "")
            return _json(to_table(target.rtype, target.version, [obj], rv,
                                  request.query.get("includeObject", "Metadata")), status)
        return _json(obj, status)

    # ------------------------------------------------------------------- reading

    def _get(self, target: Target) -> dict[str, Any]:
        obj = self.store.get(target.key())
        if obj is None:
            raise not_found(target.rtype.group_resource, target.name or "", target.rtype.group, target.rtype.resource)
        return obj

    def _matchers(self, request: web.Request) -> tuple[Any, Any]:
        try:
            return label_selector(request.query.get("labelSelector")), field_selector(request.query.get("fieldSelector"))
        except SelectorError as exc:
            raise bad_request(str(exc)) from exc

    def _list(self, request: web.Request, target: Target) -> web.Response:
        labels, fields = self._matchers(request)
        rtype = target.rtype
        items = [self._external(target, o) for o in self.store.list_objects(rtype.group, rtype.resource, target.namespace)
                 if labels(o) and fields(o)]
        rv = str(self.store.resource_version)
        list_meta: dict[str, Any] = {"resourceVersion": rv}
        items, list_meta = self._page(request, items, list_meta)
        if "as=Table" in request.headers.get("Accept", ""):
            table = to_table(rtype, target.version, items, rv, request.query.get("includeObject", "Metadata"))
            table["metadata"] = list_meta
            return _json(table)
        return _json({"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version(target.version),
                      "metadata": list_meta, "items": items})

    @staticmethod
    def _page(request: web.Request, items: list[dict[str, Any]], list_meta: dict[str, Any]
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """``limit``/``continue`` paging over (namespace, name) order.

        Pages are read from the current state, not from a snapshot at the first page's
        resourceVersion (a real server answers from its watch cache).
        """
        def position(obj: dict[str, Any]) -> list[str]:
            return [_meta(obj).get("namespace", ""), _meta(obj).get("name", "")]

        token = request.query.get("continue", "")
        if token:
            try:
                after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
            except (ValueError, KeyError, TypeError) as exc:
                raise bad_request(f"invalid continue token: {exc}") from exc
            items = [o for o in items if position(o) > after]
        limit = request.query.get("limit", "")
        if limit.isdigit() and 0 < int(limit) < len(items):
            rest = len(items) - int(limit)
            items = items[:int(limit)]
            next_token = {"after": position(items[-1]), "rv": list_meta["resourceVersion"]}
            list_meta = {**list_meta, "continue": base64.urlsafe_b64encode(json.dumps(next_token).encode()).decode(),
                         "remainingItemCount": rest}
        return items, list_meta

    # ------------------------------------------------------------------- writing

    def _commit(self, key: ObjectKey, obj: dict[str, Any], event_type: str,
                previous: dict[str, Any] | None = None) -> dict[str, Any]:
        event = self.store.write(key, obj, event_type, previous)
        self.hub.publish(event)
        return obj

    def _initialize(self, obj: dict[str, Any], key: ObjectKey) -> None:
        meta = _meta(obj)
        meta["name"] = key.name
        if key.namespace:
            meta["namespace"] = key.namespace
        else:
            meta.pop("namespace", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = utc_now()
        meta["generation"] = 1
        for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(transient, None)
        if key.resource == "namespaces" and not key.group:
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = key.name
            obj["status"] = {"phase": "Active"}

    def _check_namespace(self, target: Target, namespace: str) -> None:
        ns = self.store.get(ObjectKey("", "namespaces", "", namespace))
        if ns is None:
            raise not_found("namespaces", namespace, "", "namespaces")
        if _meta(ns).get("deletionTimestamp"):
            raise APIError(403, "Forbidden",
                           f'{target.rtype.resource} is forbidden: unable to create new content in namespace '
                           f'{namespace} because it is being terminated',
                           {"name": namespace, "kind": "namespaces"})

    def _admit(self, target: Target, obj: dict[str, Any], old: dict[str, Any] | None,
               field_validation: str | None) -> dict[str, Any]:
        """Defaulting, schema pruning/validation and admission hooks; raises 422 on errors."""
        rtype = target.rtype
        name = _meta(obj).get("name", "")
        crd = self.store.get(ObjectKey(*CRD_GROUP_RESOURCE, "", rtype.crd_name)) if rtype.crd_name else None
        obj.setdefault("apiVersion", rtype.api_version(target.version))
        obj.setdefault("kind", rtype.kind)
        causes: list[FieldCause] = []
        schema = rtype.schemas.get(target.version)
        hooked = self.admission.handles(rtype.group, rtype.kind, obj, crd)
        if schema is not None:
            errors, unknown = check_schema(obj, schema)
            if not hooked:
                causes.extend(errors)
            if unknown:
                if (field_validation or "").lower() == "strict":
                    raise bad_request("strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
                prune(obj, unknown)
        if schema is not None and not hooked:
            apply_schema_defaults(obj, schema)
        self._builtin_defaults(rtype, obj, old)
        obj = self.admission.default(rtype.group, obj, crd)
        if not hooked and (not _NAME_RE.match(name) or len(name) > 253):
            causes.append(FieldCause("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain '
                                     "must consist of lower case alphanumeric characters, '-' or '.', and must "
                                     "start and end with an alphanumeric character"))
        if rtype.crd_name is None and (rtype.group, rtype.resource) == CRD_GROUP_RESOURCE:
            causes.extend(self._crd_causes(obj))
        causes.extend(self.admission.validate(rtype.group, obj, old, crd))
        causes = list(dict.fromkeys(causes))
        if causes:
            raise invalid(rtype.kind, name, rtype.group, causes)
        return obj

    def _builtin_defaults(self, rtype: ServedResource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if rtype.crd_name:
            return
        if (rtype.group, rtype.resource) == ("", "services"):
            old_spec = (old or {}).get("spec") or {}
            spec = obj.setdefault("spec", {})
            for kept in ("clusterIP", "clusterIPs"):  # immutable once allocated
                if old_spec.get(kept) and not spec.get(kept):
                    spec[kept] = old_spec[kept]
            in_use = [str((svc.get("spec") or {}).get("clusterIP") or "")
                      for svc in self.store.list_objects("", "services", None)]
            default_service(obj, in_use)
        elif (rtype.group, rtype.resource) == ("", "pods"):
            default_pod(obj)
        elif rtype.scale is not None:
            default_workload(obj)

    def _create(self, target: Target, obj: dict[str, Any], manager: str | None, dry_run: bool,
                field_validation: str | None = None) -> dict[str, Any]:
        rtype = target.rtype
        meta = _meta(obj)
        if obj.get("kind") and obj["kind"] != rtype.kind:
            raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) and kind ({obj['kind']}) do not "
                              f"match the endpoint ({rtype.api_version(target.version)} {rtype.kind})")
        body_group = str(obj.get("apiVersion") or "").rpartition("/")[0]
        if obj.get("apiVersion") and body_group != rtype.group:
            raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) does not match the expected "
                              f"API version ({rtype.api_version(target.version)})")
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            name = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if not name:
            raise invalid(rtype.kind, "", rtype.group,
                          [FieldCause("metadata.name", "Required value: name or generateName is required",
                                      "FieldValueRequired")])
        if rtype.namespaced:
            namespace = target.namespace or meta.get("namespace") or "default"
            if meta.get("namespace") and target.namespace and meta["namespace"] != target.namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            self._check_namespace(target, namespace)
        else:
            namespace = ""
        key = ObjectKey(rtype.group, rtype.resource, namespace, name)
        if self.store.get(key) is not None:
            raise already_exists(rtype.group_resource, name, rtype.group, rtype.resource)
        self._initialize(obj, key)
        obj["apiVersion"] = rtype.api_version(target.version)
        obj["kind"] = rtype.kind
        if rtype.has_status and rtype.crd_name:
            obj.pop("status", None)
        obj = self._admit(target, obj, None, field_validation)
        record_update_manager(obj, manager, rtype.api_version(target.version))
        if (rtype.group, rtype.resource) == CRD_GROUP_RESOURCE:
            self._crd_status(obj)
        if dry_run:
            return obj
        self._commit(key, obj, "ADDED")
        if (rtype.group, rtype.resource) == CRD_GROUP_RESOURCE:
            self._crd_changed(obj)
        return obj

    def _merge_update(self, target: Target, current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """The object an update of ``current`` to ``new`` stores (status subresource rules)."""
        rtype = target.rtype
        if target.subresource == "status":
            merged = copy.deepcopy(current)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new_meta = _meta(new)
            if new_meta.get("resourceVersion"):
                _meta(merged)["resourceVersion"] = new_meta["resourceVersion"]
            return merged
        merged = copy.deepcopy(new)
        if rtype.has_status:
            if "status" in current:
                merged["status"] = copy.deepcopy(current["status"])
            else:
                merged.pop("status", None)
        meta, old_meta = _meta(merged), _meta(current)
        for fixed in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
            else:
                meta.pop(fixed, None)
        if "managedFields" not in meta and "managedFields" in old_meta:
            meta["managedFields"] = old_meta["managedFields"]
        if old_meta.get("deletionTimestamp"):
            new_finalizers = [f for f in meta.get("finalizers") or [] if f in (old_meta.get("finalizers") or [])]
            if new_finalizers:
                meta["finalizers"] = new_finalizers
            else:
                meta.pop("finalizers", None)
        return merged

    def _store_update(self, target: Target, current: dict[str, Any], new: dict[str, Any], manager: str | None,
                      dry_run: bool, operation: str = "Update", field_validation: str | None = None) -> dict[str, Any]:
        rtype = target.rtype
        cur_meta = _meta(current)
        name = cur_meta.get("name", "")
        new_meta = _meta(new)
        if new_meta.get("name") and new_meta["name"] != name:
            raise bad_request(f'the name of the object ({new_meta["name"]}) does not match the name on the URL ({name})')
        wanted_rv = new_meta.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != cur_meta.get("resourceVersion"):
            raise conflict(rtype.group_resource, name, rtype.group, rtype.resource)
        merged = self._merge_update(target, current, new)
        merged["apiVersion"] = rtype.api_version(target.version)  # stored objects are version-independent
        merged["kind"] = rtype.kind
        meta = _meta(merged)
        meta["name"] = name
        if target.namespace:
            meta["namespace"] = target.namespace
        if _spec_part(merged) != _spec_part(current):
            meta["generation"] = int(cur_meta.get("generation") or 1) + 1
        merged = self._admit(target, merged, current, field_validation)
        if (rtype.group, rtype.resource) == CRD_GROUP_RESOURCE:
            self._crd_status(merged)
        if operation == "Update":
            record_update_manager(merged, manager, rtype.api_version(target.version), target.subresource or "")
        if _comparable(merged) == _comparable(current):
            return current
        if dry_run:
            return merged
        key = target.key(name)
        if cur_meta.get("deletionTimestamp") and not meta.get("finalizers"):
            emptied = (rtype.group, rtype.resource) != ("", "namespaces") or not self.store.list_namespace(name)
            if emptied:
                return self._remove(key, merged)
        self._commit(key, merged, "MODIFIED", current)
        if (rtype.group, rtype.resource) == CRD_GROUP_RESOURCE:
            self._crd_changed(merged)
        return merged

    async def _patch(self, request: web.Request, target: Target, dry_run: bool) -> tuple[dict[str, Any], bool]:
        content_type, raw = await self._read_body(request)
        patch = self._decode("application/yaml" if content_type == "application/apply-patch+yaml" else content_type, raw)
        query = request.query
        manager = query.get("fieldManager")
        rtype = target.rtype
        current = self.store.get(target.key())
        if content_type == "application/apply-patch+yaml":
            if not manager:
                raise invalid(rtype.kind, target.name or "", rtype.group,
                              [FieldCause("fieldManager", "Required value: is required for apply patch",
                                          "FieldValueRequired")])
            if not isinstance(patch, dict):
                raise bad_request("an apply patch must be an object")
            api_version = rtype.api_version(target.version)
            if current is None:
                if target.subresource:
                    raise not_found(rtype.group_resource, target.name or "", rtype.group, rtype.resource)
                applied = server_side_apply(None, patch, manager, api_version)
                _meta(applied)["name"] = target.name
                return self._create(target, applied, None, dry_run, query.get("fieldValidation")), True
            base = current
            if target.subresource == "status":
                base = copy.deepcopy(current)

            def defaulted(obj: dict[str, Any]) -> dict[str, Any]:  # owned values are compared as stored
                try:
                    return self._admit(target, obj, current, None)
                except APIError:
                    return obj  # the update below reports it

            try:  # the status subresource keeps no managedFields of its applies, so it has no owners to check
                applied = server_side_apply(base, patch, manager, api_version,
                                            force=_truthy(query.get("force")) or target.subresource == "status",
                                            ignored=frozenset({"status"}) if rtype.has_status else frozenset(),
                                            normalize=defaulted)
            except ApplyConflict as exc:
                raise apply_conflict(str(exc), exc.causes()) from exc
            if not _meta(patch).get("resourceVersion"):
                _meta(applied).pop("resourceVersion", None)
            return self._store_update(target, current, applied, manager, dry_run, "Apply",
                                      query.get("fieldValidation")), False
        if current is None:
            raise not_found(rtype.group_resource, target.name or "", rtype.group, rtype.resource)
        try:
            if content_type == "application/merge-patch+json":
                new = merge_patch(copy.deepcopy(current), patch)
            elif content_type == "application/json-patch+json":
                new = json_patch(current, patch)
            elif content_type == "application/strategic-merge-patch+json":
                if rtype.crd_name:
                    raise APIError(415, "UnsupportedMediaType",
                                   "the body of the request was in an unknown format - accepted media types include: "
                                   "application/json-patch+json, application/merge-patch+json, "
                                   "application/apply-patch+yaml")
                new = strategic_merge_patch(copy.deepcopy(current), patch)
            else:
                raise APIError(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
        except PatchError as exc:
            raise APIError(422, "Invalid", str(exc)) from exc
        if not isinstance(new, dict):
            raise bad_request("the patched object is not an object")
        patched_rv = _meta(patch if isinstance(patch, dict) else {}).get("resourceVersion")
        if content_type == "application/json-patch+json":
            # a JSON patch that tests or sets the resourceVersion makes it a precondition
            keep_rv = _meta(new).get("resourceVersion") != _meta(current).get("resourceVersion") or any(
                isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion" for op in patch)
        else:
            keep_rv = bool(patched_rv)
        if not keep_rv:
            _meta(new).pop("resourceVersion", None)
        return self._store_update(target, current, new, manager, dry_run,
                                  field_validation=query.get("fieldValidation")), False

    # ------------------------------------------------------------ in-process apply

    def apply_object(self, obj: dict[str, Any], field_manager: str = "infergate") -> dict[str, Any]:
        """Server-side apply ``obj`` without HTTP (for ``infergate up`` and tests).

        Same semantics as ``PATCH application/apply-patch+yaml``; raises :class:`APIError`.
        Must run on the server's event loop thread.
        """
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        group, _, version = api_version.rpartition("/")
        rtype = self.registry.by_kind(group, kind)
        if rtype is None or version not in rtype.versions:
            raise APIError(404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"')
        meta = _meta(obj)
        name = str(meta.get("name") or "")
        namespace = str(meta.get("namespace") or "default") if rtype.namespaced else None
        target = Target(rtype, version, namespace, name, None)
        current = self.store.get(target.key())
        applied = server_side_apply(current, obj, field_manager, api_version, force=True)
        if current is None:
            return self._create(target, applied, None, False)
        _meta(applied).pop("resourceVersion", None)
        return self._store_update(target, current, applied, field_manager, False, "Apply")

    # ---------------------------------------------------------------------- scale

    def _scale_of(self, target: Target, obj: dict[str, Any]) -> dict[str, Any]:
        paths = target.rtype.scale
        assert paths is not None
        meta = _meta(obj)
        spec_values = evaluate(obj, paths.spec_replicas)
        status_values = evaluate(obj, paths.status_replicas)
        selector: Any = evaluate(obj, paths.label_selector)[:1] if paths.label_selector else []
        selector_text = ""
        if selector and isinstance(selector[0], dict):
            labels = selector[0].get("matchLabels") or {}
            selector_text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        elif selector:
            selector_text = str(selector[0])
        scale_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                      if k in meta}
        status: dict[str, Any] = {"replicas": int(status_values[0]) if status_values else 0}
        if selector_text:
            status["selector"] = selector_text
        return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta,
                "spec": {"replicas": int(spec_values[0]) if spec_values else 1}, "status": status}

    async def _scale(self, request: web.Request, target: Target, dry_run: bool) -> web.Response:
        """The ``scale`` subresource (autoscaling/v1 Scale) over the object's replicas path."""
        current = self._get(target)
        scale = self._scale_of(target, current)
        if request.method == "GET":
            return _json(scale)
        content_type, raw = await self._read_body(request)
        body = self._decode(content_type, raw)
        if request.method == "PUT":
            wanted = body
        elif request.method == "PATCH" and content_type == "application/json-patch+json":
            wanted = json_patch(scale, body)
        elif request.method == "PATCH":
            wanted = merge_patch(copy.deepcopy(scale), body)
        else:
            raise APIError(405, "MethodNotAllowed", f"the server does not allow the method {request.method} here")
        replicas = (wanted.get("spec") or {}).get("replicas") if isinstance(wanted, dict) else None
        if not isinstance(replicas, int) or replicas < 0:
            raise invalid("Scale", target.name or "", "autoscaling",
                          [FieldCause("spec.replicas", f"Invalid value: {replicas}: must be greater than or "
                                      "equal to 0")])
        new = copy.deepcopy(current)
        node = new
        parts = [p for p in target.rtype.scale.spec_replicas.split(".") if p] if target.rtype.scale else []
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = replicas
        wanted_rv = _meta(wanted).get("resourceVersion") if isinstance(wanted, dict) else None
        _meta(new).pop("resourceVersion", None)
        if wanted_rv:
            _meta(new)["resourceVersion"] = wanted_rv
        main = Target(target.rtype, target.version, target.namespace, target.name, None)
        updated = self._store_update(main, current, new, request.query.get("fieldManager"), dry_run)
        return _json(self._scale_of(target, updated))

    # ------------------------------------------------------------------- deleting

    def _delete(self, target: Target, options: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        rtype = target.rtype
        current = self._get(target)
        meta = _meta(current)
        name = meta.get("name", "")
        preconditions = options.get("preconditions") or {}
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta.get("resourceVersion"):
            raise conflict(rtype.group_resource, name, rtype.group, rtype.resource)
        if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
            raise conflict(rtype.group_resource, name, rtype.group, rtype.resource)
        if (rtype.group, rtype.resource) == ("", "namespaces") and name in PROTECTED_NAMESPACES:
            raise APIError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                           {"name": name, "kind": "namespaces"})
        if dry_run:
            return current
        orphan = options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") is True
        return self._delete_object(target.key(name), current, orphan)

    def _delete_object(self, key: ObjectKey, current: dict[str, Any], orphan: bool = False) -> dict[str, Any]:
        meta = _meta(current)
        is_namespace = (key.group, key.resource) == ("", "namespaces")
        if meta.get("finalizers") or is_namespace:
            if not meta.get("deletionTimestamp"):
                obj = copy.deepcopy(current)
                _meta(obj)["deletionTimestamp"] = utc_now()
                _meta(obj)["deletionGracePeriodSeconds"] = 0
                if is_namespace:
                    obj["status"] = {"phase": "Terminating"}
                current = self._commit(key, obj, "MODIFIED", current)
            if is_namespace:
                for child_key, child in self.store.list_namespace(key.name):
                    self._delete_object(child_key, child)
                if not self.store.list_namespace(key.name) and not _meta(current).get("finalizers"):
                    return self._remove(key, current)
            return current
        return self._remove(key, current, orphan)

    def _remove(self, key: ObjectKey, obj: dict[str, Any], orphan: bool = False) -> dict[str, Any]:
        """Delete for good, then cascade (CRD objects, namespace emptiness, dependents)."""
        obj = copy.deepcopy(obj)
        self._commit(key, obj, "DELETED")
        if (key.group, key.resource) == CRD_GROUP_RESOURCE:
            rtype = self.registry.unregister(key.name)
            if rtype is not None:
                for item in self.store.list_objects(rtype.group, rtype.resource, None):
                    item_meta = _meta(item)
                    item_key = ObjectKey(rtype.group, rtype.resource, item_meta.get("namespace", ""), item_meta["name"])
                    self._commit(item_key, item, "DELETED")
                self.hub.close_resource(rtype.group, rtype.resource)
        if key.namespace:
            ns_key = ObjectKey("", "namespaces", "", key.namespace)
            ns = self.store.get(ns_key)
            if ns and _meta(ns).get("deletionTimestamp") and not self.store.list_namespace(key.namespace) \
                    and not _meta(ns).get("finalizers"):
                self._remove(ns_key, ns)
        uid = _meta(obj).get("uid")
        if uid:
            self._collect_dependents(uid, orphan)
        return obj

    def _collect_dependents(self, uid: str, orphan: bool) -> None:
        """Garbage collection: delete (or orphan) objects whose ownerReferences name ``uid``."""
        for dep_key, dep in self.store.find_dependents(uid):
            refs = [r for r in _meta(dep).get("ownerReferences") or [] if r.get("uid") != uid]
            if orphan or refs:
                if refs:
                    _meta(dep)["ownerReferences"] = refs
                else:
                    _meta(dep).pop("ownerReferences", None)
                self._commit(dep_key, dep, "MODIFIED", self.store.get(dep_key))
            elif self.store.get(dep_key) is not None:
                self._delete_object(dep_key, dep)

    def _delete_collection(self, request: web.Request, target: Target, dry_run: bool) -> web.Response:
        labels, fields = self._matchers(request)
        rtype = target.rtype
        items = [o for o in self.store.list_objects(rtype.group, rtype.resource, target.namespace) if labels(o) and fields(o)]
        deleted = []
        for item in items:
            key = ObjectKey(rtype.group, rtype.resource, _meta(item).get("namespace", ""), _meta(item)["name"])
            deleted.append(self._external(target, item if dry_run else self._delete_object(key, item)))
        return _json({"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version(target.version),
                      "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": deleted})

    # ------------------------------------------------------------------------ CRDs

    def _crd_causes(self, crd: dict[str, Any]) -> list[FieldCause]:
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
        name = _meta(crd).get("name")
        if names.get("plural") and spec.get("group") and name != expected:
            causes.append(FieldCause("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
        return causes

    def _crd_status(self, crd: dict[str, Any]) -> None:
        """Set NamesAccepted/Established, acceptedNames and storedVersions on a CRD."""
        rtype = served_resource_from_crd(crd)
        problem = self.registry.check_names(rtype)
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

    def _crd_changed(self, crd: dict[str, Any]) -> None:
        rtype = served_resource_from_crd(crd)
        if rtype.versions and self.registry.check_names(rtype) is None:
            self.registry.register(rtype)
        else:
            self.registry.unregister(rtype.crd_name or "")

    # ------------------------------------------------------------------------ watch

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        rtype = target.rtype
        query = request.query
        labels, fields = self._matchers(request)
        as_table = "as=Table" in request.headers.get("Accept", "")
        include_object = query.get("includeObject", "Metadata")
        send_initial = _truthy(query.get("sendInitialEvents"))
        bookmarks = _truthy(query.get("allowWatchBookmarks"))
        requested_rv = query.get("resourceVersion", "")
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds", "").isdigit() else None
        name = target.name

        def selected(obj: dict[str, Any]) -> bool:
            return labels(obj) and fields(obj) and (name is None or _meta(obj).get("name") == name)

        # synchronous: subscribe and read the starting point with no await in between
        sub = self.hub.subscribe(rtype.group, rtype.resource, target.namespace)
        initial: list[tuple[str, dict[str, Any]]] = []
        too_old: str | None = None
        last_rv = self.store.resource_version
        if send_initial or requested_rv in ("", "0"):
            initial = [("ADDED", o) for o in self.store.list_objects(rtype.group, rtype.resource, target.namespace)
                       if selected(o)]
        else:
            try:
                since = int(requested_rv)
                events = self.store.events_since(since, rtype.group, rtype.resource)
            except ValueError:
                self.hub.unsubscribe(sub)
                raise bad_request(f"invalid resourceVersion {requested_rv!r}") from None
            except ResourceVersionTooOld as exc:
                too_old = str(exc)
                events = []
            for e in events:
                if target.namespace is not None and e.namespace != target.namespace:
                    continue
                now_selected, was_selected = selected(e.object), e.previous is not None and selected(e.previous)
                if e.type == "MODIFIED" and e.previous is not None and now_selected != was_selected:
                    initial.append(("ADDED" if now_selected else "DELETED", e.object))
                elif now_selected:
                    initial.append((e.type, e.object))
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        first = True

        def encode(event_type: str, obj: dict[str, Any]) -> bytes:
            nonlocal first
            obj = self._external(target, obj)
            if as_table:
                obj = to_table(rtype, target.version, [obj], _meta(obj).get("resourceVersion", ""),
                               include_object, with_columns=first)
            first = False
            return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"

        def bookmark(rv: int, initial_end: bool = False) -> bytes:
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            obj = {"kind": rtype.kind, "apiVersion": rtype.api_version(target.version), "metadata": meta}
            return json.dumps({"type": "BOOKMARK", "object": obj}, separators=(",", ":")).encode() + b"\n"

        try:
            await response.prepare(request)
            if too_old is not None:
                status = APIError(410, "Expired", too_old).status()
                await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
                return response
            for event_type, obj in initial:
                await response.write(encode(event_type, obj))
            if send_initial:
                await response.write(bookmark(last_rv, initial_end=True))
            deadline = time.monotonic() + timeout if timeout is not None else None
            while True:
                wait = BOOKMARK_INTERVAL
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        break
                try:
                    event: WatchEvent | None = await asyncio.wait_for(sub.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and (deadline is None or time.monotonic() < deadline):
                        await response.write(bookmark(self.store.resource_version))
                    continue
                if event is None:
                    break
                if event.resource_version <= last_rv:
                    continue
                now_selected = selected(event.object)
                was_selected = event.previous is not None and selected(event.previous)
                if event.type == "MODIFIED" and event.previous is not None and now_selected != was_selected:
                    # the object entered or left the selection
                    if now_selected:
                        await response.write(encode("ADDED", event.object))
                    else:
                        await response.write(encode("DELETED", event.object))
                elif now_selected:
                    await response.write(encode(event.type, event.object))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.hub.unsubscribe(sub)
        return response
