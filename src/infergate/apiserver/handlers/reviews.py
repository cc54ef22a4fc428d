"""Access reviews (SelfSubjectRulesReview, (Local)SubjectAccessReview, SelfSubjectAccessReview)
and ``serviceaccounts/token`` TokenRequests."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from infergate.apiserver import authn, protobuf
from infergate.apiserver.authn import ADMIN, Identity, TokenIssuer
from infergate.apiserver.errors import APIError, bad_request, invalid
from infergate.apiserver.handlers.common import (
    IDENTITY_KEY,
    PROTOBUF,
    Target,
    decode,
    json_response,
    meta,
    method_not_allowed,
    read_body,
)
from infergate.apiserver.rbac import (
    BOOTSTRAP_CLUSTER_ROLES,
    RBACAuthorizer,
    review_attributes,
    rules_review_status,
)
from infergate.apiserver.store import ObjectKey, Store
from infergate.apiserver.validation import FieldCause
from infergate.util.clock import utc_now, utc_timestamp


async def read_review(request: web.Request) -> dict[str, Any]:
    """A TokenRequest or access review, JSON or protobuf (kubectl's typed clients)."""
    content_type, raw = await read_body(request)
    if content_type == PROTOBUF:
        try:
            return authn.decode_protobuf(raw)
        except protobuf.ProtobufError as exc:
            raise APIError(415, "UnsupportedMediaType", str(exc)) from exc
    obj = decode(content_type, raw)
    if not isinstance(obj, dict):
        raise bad_request("the request body must be an object")
    return obj


class Reviews:
    """Answers access reviews (truthfully in RBAC mode) and issues ServiceAccount tokens."""

    def __init__(self, store: Store, authorizer: RBACAuthorizer, issuer: TokenIssuer, rbac: bool) -> None:
        self.store = store
        self.authorizer = authorizer
        self.issuer = issuer
        self.rbac = rbac

    async def review(self, request: web.Request, target: Target) -> dict[str, Any]:
        """The review of the request's body with its ``status`` filled in."""
        try:
            review = await read_review(request)
        except APIError:
            if self.rbac:
                raise
            review = {"spec": {}}  # AlwaysAllow: its attributes do not change the answer
        review["status"] = self._status(request, target, review)
        return review

    def _status(self, request: web.Request, target: Target, review: dict[str, Any]) -> dict[str, Any]:
        if not self.rbac:
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

    async def token_request(self, request: web.Request, namespace: str | None, name: str) -> web.Response:
        """``serviceaccounts/token``: a TokenRequest answered with a signed token of the account."""
        if request.method != "POST":
            raise method_not_allowed(request.method)
        account = self.store.get(ObjectKey("", "serviceaccounts", namespace or "", name)) or {}
        body = await read_review(request)
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
        token, expires = self.issuer.issue(namespace or "", name, str(meta(account).get("uid", "")), seconds,
                                           audiences)
        answer = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                  "metadata": {"name": name, "namespace": namespace, "creationTimestamp": utc_now()},
                  "spec": {"audiences": audiences, "expirationSeconds": seconds,
                           "boundObjectRef": spec.get("boundObjectRef")},
                  "status": {"token": token, "expirationTimestamp": utc_timestamp(expires)}}
        return json_response(answer, 201)
