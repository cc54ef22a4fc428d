"""Authentication of the embedded API server: who a request is.

Two kinds of bearer token:

- the admin token of the generated kubeconfig: user ``admin`` in the groups
  ``system:masters`` and ``system:authenticated`` (system:masters bypasses authorization, as
  on a real cluster);
- ServiceAccount tokens, issued by the TokenRequest subresource
  (``POST /api/v1/namespaces/NS/serviceaccounts/NAME/token``, what ``kubectl create token``
  sends): JWTs signed with HMAC-SHA256 under a key kept in the state directory (so they
  survive restarts), authenticating as ``system:serviceaccount:NS:NAME`` in the groups
  ``system:serviceaccounts``, ``system:serviceaccounts:NS`` and ``system:authenticated``.
  The server checks that the ServiceAccount still exists with the uid the token names, so a
  token of a deleted (or deleted and recreated) ServiceAccount stops working.

Anything else is 401. Impersonation headers (``Impersonate-User``/``Impersonate-Group``)
are resolved here too; whether the caller may impersonate is the authorizer's question.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infergate.apiserver import protobuf
from infergate.util.files import write_private

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
SERVICE_ACCOUNTS = "system:serviceaccounts"
SA_PREFIX = "system:serviceaccount:"
ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_AUDIENCES = (ISSUER,)
DEFAULT_EXPIRATION_S = 3600
MIN_EXPIRATION_S = 600
MAX_EXPIRATION_S = 2**32
SIGNING_KEY_NAME = "sa-signing.key"


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    @property
    def is_master(self) -> bool:
        return MASTERS in self.groups


ADMIN = Identity("admin", (MASTERS, AUTHENTICATED))


def service_account_user(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def split_service_account(user: str) -> tuple[str, str] | None:
    """``system:serviceaccount:NS:NAME`` -> (NS, NAME), else None."""
    if not user.startswith(SA_PREFIX):
        return None
    parts = user[len(SA_PREFIX):].split(":")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return (SERVICE_ACCOUNTS, f"{SERVICE_ACCOUNTS}:{namespace}")


def service_account_identity(namespace: str, name: str, uid: str = "") -> Identity:
    return Identity(service_account_user(namespace, name), (*service_account_groups(namespace), AUTHENTICATED), uid)


def impersonated(user: str, groups: list[str], uid: str = "") -> Identity:
    """The identity an ``Impersonate-User`` (+ ``Impersonate-Group``) request acts as: a service
    account user without groups gets its fixed groups; everyone but system:anonymous is in
    system:authenticated (as the real impersonation filter does)."""
    all_groups = list(groups)
    sa = split_service_account(user)
    if sa is not None and not groups:
        all_groups = list(service_account_groups(sa[0]))
    if user != "system:anonymous" and AUTHENTICATED not in all_groups:
        all_groups.append(AUTHENTICATED)
    return Identity(user, tuple(all_groups), uid)


def load_or_create_signing_key(state_dir: Path) -> bytes:
    """The HMAC key of ServiceAccount tokens (``sa-signing.key``, mode 0600, kept across restarts)."""
    path = state_dir / SIGNING_KEY_NAME
    if path.exists():
        text = path.read_text().strip()
        if text:
            return base64.b64decode(text)
    key = secrets.token_bytes(32)
    write_private(path, base64.b64encode(key).decode() + "\n")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class ServiceAccountClaims:
    namespace: str
    name: str
    uid: str
    expires: int


class TokenIssuer:
    """Issues and verifies ServiceAccount tokens (HS256 JWTs)."""

    HEADER = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _signature(self, signing_input: str) -> str:
        return _b64(hmac.new(self.key, signing_input.encode(), hashlib.sha256).digest())

    def issue(self, namespace: str, name: str, uid: str, expiration_s: int,
              audiences: list[str] | tuple[str, ...] = DEFAULT_AUDIENCES, now: float | None = None) -> tuple[str, int]:
        """A token and its expiry (seconds since the epoch)."""
        issued = int(now if now is not None else time.time())
        expires = issued + expiration_s
        claims = {"aud": list(audiences), "exp": expires, "iat": issued, "nbf": issued, "iss": ISSUER,
                  "jti": secrets.token_hex(16), "sub": service_account_user(namespace, name),
                  "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}}
        signing_input = f"{self.HEADER}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
        return f"{signing_input}.{self._signature(signing_input)}", expires

    def verify(self, token: str, now: float | None = None) -> ServiceAccountClaims | None:
        """The claims of a token this issuer signed and that has not expired, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        signing_input = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._signature(signing_input).encode(), parts[2].encode()):
            return None
        try:
            claims = json.loads(_unb64(parts[1]))
            k8s = claims["kubernetes.io"]
            result = ServiceAccountClaims(str(k8s["namespace"]), str(k8s["serviceaccount"]["name"]),
                                          str(k8s["serviceaccount"].get("uid", "")), int(claims["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        if result.expires <= (now if now is not None else time.time()):
            return None
        return result


# ------------------------------------------------- protobuf bodies of the kinds served here
# kubectl's typed clients send TokenRequest and the access reviews as protobuf; the field
# numbers are those of k8s.io/api/{authentication,authorization}/v1/generated.proto.

_S, _B, _I, _M, _X = protobuf.STRING, protobuf.BOOL, protobuf.INT, protobuf.META, protobuf.IGNORED
TOKEN_REQUEST = protobuf.Message("TokenRequest", {
    1: ("metadata", _M, False),
    2: ("spec", protobuf.Message("TokenRequestSpec", {
        1: ("audiences", _S, True),
        3: ("boundObjectRef", protobuf.Message("BoundObjectReference", {
            1: ("kind", _S, False), 2: ("apiVersion", _S, False), 3: ("name", _S, False), 4: ("uid", _S, False)}),
            False),
        4: ("expirationSeconds", _I, False)}), False),
    3: ("status", _X, False)})
RESOURCE_ATTRIBUTES = protobuf.Message("ResourceAttributes", {
    1: ("namespace", _S, False), 2: ("verb", _S, False), 3: ("group", _S, False), 4: ("version", _S, False),
    5: ("resource", _S, False), 6: ("subresource", _S, False), 7: ("name", _S, False),
    8: ("fieldSelector", _X, False), 9: ("labelSelector", _X, False)})
NON_RESOURCE_ATTRIBUTES = protobuf.Message("NonResourceAttributes", {1: ("path", _S, False), 2: ("verb", _S, False)})
SELF_SUBJECT_ACCESS_REVIEW = protobuf.Message("SelfSubjectAccessReview", {
    1: ("metadata", _M, False),
    2: ("spec", protobuf.Message("SelfSubjectAccessReviewSpec", {
        1: ("resourceAttributes", RESOURCE_ATTRIBUTES, False),
        2: ("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES, False)}), False),
    3: ("status", _X, False)})
SUBJECT_ACCESS_REVIEW = protobuf.Message("SubjectAccessReview", {
    1: ("metadata", _M, False),
    2: ("spec", protobuf.Message("SubjectAccessReviewSpec", {
        1: ("resourceAttributes", RESOURCE_ATTRIBUTES, False),
        2: ("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES, False),
        3: ("user", _S, False), 4: ("groups", _S, True), 5: ("extra", _X, False), 6: ("uid", _S, False)}), False),
    3: ("status", _X, False)})
SELF_SUBJECT_RULES_REVIEW = protobuf.Message("SelfSubjectRulesReview", {
    1: ("metadata", _M, False),
    2: ("spec", protobuf.Message("SelfSubjectRulesReviewSpec", {1: ("namespace", _S, False)}), False),
    3: ("status", _X, False)})
MESSAGES = {"TokenRequest": TOKEN_REQUEST, "SelfSubjectRulesReview": SELF_SUBJECT_RULES_REVIEW, "SelfSubjectAccessReview": SELF_SUBJECT_ACCESS_REVIEW,
            "SubjectAccessReview": SUBJECT_ACCESS_REVIEW, "LocalSubjectAccessReview": SUBJECT_ACCESS_REVIEW}


def decode_protobuf(body: bytes) -> dict[str, Any]:
    """A ``k8s\\0``-framed TokenRequest or access review (ProtobufError for anything else)."""
    return protobuf.decode(body, MESSAGES)
