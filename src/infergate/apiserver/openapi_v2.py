"""The OpenAPI v2 document at ``/openapi/v2``: a valid, schema-free swagger 2.0 document.

Why it exists: ``kubectl apply -f`` of a ``kind: List`` (what ``kubectl get -o yaml``
prints) never asks the OpenAPI v3 documents. kubectl's v3 field-validation verifier
answers "unsupported" for ``v1/List`` without a request, so kubectl validates the List
client-side against the OpenAPI v2 document, fetched as protobuf
(``Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf``) and decoded as a
gnostic ``openapi.v2.Document``. A 404 there fails the whole apply ("the server could not
find the requested resource").

The document carries no definitions, so kubectl finds no client-side schema for the items
and skips its own checks; each item is then sent with ``fieldValidation=Strict`` and this
server validates it (field paths in the returned ``Status``), as for a single object.

Only the fields needed are encoded (field numbers from gnostic's ``OpenAPIv2.proto``):
``Document{swagger=1, info=2, paths=8, definitions=9}``, ``Info{title=1, version=2}``.
"""

from __future__ import annotations

from typing import Any

from infergate.apiserver.protobuf import encode_field

# The dotted form: the "@" of the Accept form is not a valid media type for Go's
# mime parser ("unexpected content after media subtype").
PROTOBUF_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
TITLE = "Kubernetes"
VERSION = "v1.37.0"


def document_protobuf() -> bytes:
    """The gnostic ``openapi.v2.Document`` as protobuf bytes."""
    info = encode_field(1, TITLE.encode()) + encode_field(2, VERSION.encode())
    return encode_field(1, b"2.0") + encode_field(2, info) + encode_field(8, b"") + encode_field(9, b"")


def document_json() -> dict[str, Any]:
    """The same document as JSON, for clients that ask for JSON."""
    return {"swagger": "2.0", "info": {"title": TITLE, "version": VERSION}, "paths": {}, "definitions": {}}


def wants_protobuf(accept: str) -> bool:
    return "protobuf" in accept
