"""Decoding of the Kubernetes protobuf request bodies that typed client-go clients send.

Helm stores releases as Secrets (or ConfigMaps) and ``kubectl create namespace`` creates
Namespaces through typed clientsets, which send ``application/vnd.kubernetes.protobuf``.
Only decoding is needed (responses are JSON). Supported: Secret, ConfigMap, Namespace,
DeleteOptions and their ObjectMeta.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ProtobufError("varint too long")


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs; varints as int, length-delimited as bytes."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated field")
            yield number, data[pos:pos + length]
            pos += length
        elif wire == 1:
            yield number, int.from_bytes(data[pos:pos + 8], "little")
            pos += 8
        elif wire == 5:
            yield number, int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def _str(value: int | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: int | bytes) -> bytes:
    return value if isinstance(value, bytes) else b""


def _map_entry(data: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, raw in fields(data):
        if number == 1:
            key = _str(raw)
        elif number == 2:
            value = _bytes(raw)
    return key, value


def _time(data: bytes) -> str | None:
    seconds = 0
    for number, raw in fields(data):
        if number == 1 and isinstance(raw, int):
            seconds = raw
    if seconds == 0:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owner_reference(data: bytes) -> dict[str, Any]:
    names = {1: "kind", 3: "name", 4: "uid", 5: "apiVersion"}
    ref: dict[str, Any] = {}
    for number, raw in fields(data):
        if number in names:
            ref[names[number]] = _str(raw)
        elif number == 6:
            ref["controller"] = bool(raw)
        elif number == 7:
            ref["blockOwnerDeletion"] = bool(raw)
    return ref


def object_meta(data: bytes) -> dict[str, Any]:
    strings = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    meta: dict[str, Any] = {}
    for number, raw in fields(data):
        if number in strings:
            if _str(raw):
                meta[strings[number]] = _str(raw)
        elif number == 7 and isinstance(raw, int) and raw:
            meta["generation"] = raw
        elif number in (8, 9):
            stamp = _time(_bytes(raw))
            if stamp:
                meta["creationTimestamp" if number == 8 else "deletionTimestamp"] = stamp
        elif number in (11, 12):
            key, value = _map_entry(_bytes(raw))
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = value.decode()
        elif number == 13:
            meta.setdefault("ownerReferences", []).append(_owner_reference(_bytes(raw)))
        elif number == 14:
            meta.setdefault("finalizers", []).append(_str(raw))
    return meta


def _secret(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, raw in fields(data):
        if number == 1:
            obj["metadata"] = object_meta(_bytes(raw))
        elif number == 2:
            key, value = _map_entry(_bytes(raw))
            obj.setdefault("data", {})[key] = base64.b64encode(value).decode()
        elif number == 3 and _str(raw):
            obj["type"] = _str(raw)
        elif number == 4:
            key, value = _map_entry(_bytes(raw))
            obj.setdefault("stringData", {})[key] = value.decode()
        elif number == 5:
            obj["immutable"] = bool(raw)
    return obj


def _configmap(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, raw in fields(data):
        if number == 1:
            obj["metadata"] = object_meta(_bytes(raw))
        elif number == 2:
            key, value = _map_entry(_bytes(raw))
            obj.setdefault("data", {})[key] = value.decode()
        elif number == 3:
            key, value = _map_entry(_bytes(raw))
            obj.setdefault("binaryData", {})[key] = base64.b64encode(value).decode()
        elif number == 4:
            obj["immutable"] = bool(raw)
    return obj


def _namespace(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, raw in fields(data):
        if number == 1:
            obj["metadata"] = object_meta(_bytes(raw))
        elif number == 2:
            finalizers = [_str(v) for n, v in fields(_bytes(raw)) if n == 1]
            obj["spec"] = {"finalizers": finalizers} if finalizers else {}
    return obj


def _delete_options(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, raw in fields(data):
        if number == 1 and isinstance(raw, int):
            obj["gracePeriodSeconds"] = raw
        elif number == 3:
            obj["orphanDependents"] = bool(raw)
        elif number == 4:
            obj["propagationPolicy"] = _str(raw)
        elif number == 5:
            obj.setdefault("dryRun", []).append(_str(raw))
    return obj


_DECODERS: dict[str, Callable[[bytes], dict[str, Any]]] = {
    "Secret": _secret, "ConfigMap": _configmap, "Namespace": _namespace, "DeleteOptions": _delete_options,
}


def decode(body: bytes) -> dict[str, Any]:
    """Decode a ``k8s\\0``-framed runtime.Unknown holding one of the supported kinds."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    api_version, kind, raw = "", "", b""
    for number, value in fields(body[len(MAGIC):]):
        if number == 1:
            for n, v in fields(_bytes(value)):
                if n == 1:
                    api_version = _str(v)
                elif n == 2:
                    kind = _str(v)
        elif number == 2:
            raw = _bytes(value)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ProtobufError(f"protobuf bodies of kind {kind or '?'} are not supported; send JSON")
    obj = decoder(raw)
    return {"apiVersion": api_version or "v1", "kind": kind, **obj}
