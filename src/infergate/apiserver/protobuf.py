"""Decoding of the Kubernetes protobuf request bodies that typed client-go clients send
(and the two wire-format encoders the server's few protobuf answers need).

Helm stores releases as Secrets (or ConfigMaps) and ``kubectl create namespace`` creates
Namespaces through typed clientsets, which send ``application/vnd.kubernetes.protobuf``.
Only decoding is needed (responses are JSON). Supported: Secret, ConfigMap, Namespace,
DeleteOptions, and the objects of ``kubectl create deployment|service|serviceaccount|role|
clusterrole|rolebinding|clusterrolebinding|job`` and ``kubectl run`` (a schema of the fields
those commands set; any other field is refused rather than dropped).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from infergate.util.clock import utc_timestamp

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


def encode_varint(value: int) -> bytes:
    """A non-negative int as a protobuf varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def encode_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings and embedded messages."""
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


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
    return utc_timestamp(seconds)


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


# ---------------------------------------------------------- schema-driven messages
# The objects `kubectl create deployment|service|serviceaccount|role|rolebinding|job` and
# `kubectl run` build, as their generated.proto numbers them. A field not listed here is
# refused (ProtobufError, answered 415) rather than silently dropped.

@dataclass(frozen=True)
class Message:
    name: str
    fields: dict[int, tuple[str, Any, bool]]  # number -> (json name, type, repeated)


STRING, INT, BOOL, MAP, QUANTITIES, INT_OR_STRING, META, IGNORED = (
    "string", "int", "bool", "map", "quantities", "int-or-string", "meta", "ignored")

LABEL_SELECTOR = Message("LabelSelector", {
    1: ("matchLabels", MAP, False),
    2: ("matchExpressions", Message("LabelSelectorRequirement", {
        1: ("key", STRING, False), 2: ("operator", STRING, False), 3: ("values", STRING, True)}), True)})
CONTAINER = Message("Container", {
    1: ("name", STRING, False), 2: ("image", STRING, False), 3: ("command", STRING, True),
    4: ("args", STRING, True), 5: ("workingDir", STRING, False),
    6: ("ports", Message("ContainerPort", {1: ("name", STRING, False), 2: ("hostPort", INT, False),
                                           3: ("containerPort", INT, False), 4: ("protocol", STRING, False),
                                           5: ("hostIP", STRING, False)}), True),
    7: ("env", Message("EnvVar", {1: ("name", STRING, False), 2: ("value", STRING, False)}), True),
    8: ("resources", Message("ResourceRequirements", {1: ("limits", QUANTITIES, False),
                                                     2: ("requests", QUANTITIES, False)}), False),
    9: ("volumeMounts", Message("VolumeMount", {1: ("name", STRING, False), 2: ("readOnly", BOOL, False),
                                                3: ("mountPath", STRING, False), 4: ("subPath", STRING, False)}),
        True),
    13: ("terminationMessagePath", STRING, False), 14: ("imagePullPolicy", STRING, False),
    16: ("stdin", BOOL, False), 17: ("stdinOnce", BOOL, False), 18: ("tty", BOOL, False),
    20: ("terminationMessagePolicy", STRING, False)})
LOCAL_REFERENCE = Message("LocalObjectReference", {1: ("name", STRING, False)})
POD_SPEC = Message("PodSpec", {
    2: ("containers", CONTAINER, True), 3: ("restartPolicy", STRING, False),
    4: ("terminationGracePeriodSeconds", INT, False), 5: ("activeDeadlineSeconds", INT, False),
    6: ("dnsPolicy", STRING, False), 7: ("nodeSelector", MAP, False), 8: ("serviceAccountName", STRING, False),
    9: ("serviceAccount", STRING, False), 10: ("nodeName", STRING, False), 11: ("hostNetwork", BOOL, False),
    12: ("hostPID", BOOL, False), 13: ("hostIPC", BOOL, False),
    14: ("securityContext", Message("PodSecurityContext", {}), False),
    15: ("imagePullSecrets", LOCAL_REFERENCE, True), 16: ("hostname", STRING, False),
    17: ("subdomain", STRING, False), 19: ("schedulerName", STRING, False), 20: ("initContainers", CONTAINER, True),
    21: ("automountServiceAccountToken", BOOL, False), 24: ("priorityClassName", STRING, False),
    30: ("enableServiceLinks", BOOL, False)})
POD_TEMPLATE = Message("PodTemplateSpec", {1: ("metadata", META, False), 2: ("spec", POD_SPEC, False)})
DEPLOYMENT = Message("Deployment", {
    1: ("metadata", META, False),
    2: ("spec", Message("DeploymentSpec", {
        1: ("replicas", INT, False), 2: ("selector", LABEL_SELECTOR, False), 3: ("template", POD_TEMPLATE, False),
        4: ("strategy", Message("DeploymentStrategy", {
            1: ("type", STRING, False),
            2: ("rollingUpdate", Message("RollingUpdateDeployment", {
                1: ("maxUnavailable", INT_OR_STRING, False), 2: ("maxSurge", INT_OR_STRING, False)}), False)}),
            False),
        5: ("minReadySeconds", INT, False), 6: ("revisionHistoryLimit", INT, False), 7: ("paused", BOOL, False),
        9: ("progressDeadlineSeconds", INT, False)}), False),
    3: ("status", IGNORED, False)})
POD = Message("Pod", {1: ("metadata", META, False), 2: ("spec", POD_SPEC, False), 3: ("status", IGNORED, False)})
JOB = Message("Job", {
    1: ("metadata", META, False),
    2: ("spec", Message("JobSpec", {
        1: ("parallelism", INT, False), 2: ("completions", INT, False), 3: ("activeDeadlineSeconds", INT, False),
        4: ("selector", LABEL_SELECTOR, False), 5: ("manualSelector", BOOL, False),
        6: ("template", POD_TEMPLATE, False), 7: ("backoffLimit", INT, False),
        8: ("ttlSecondsAfterFinished", INT, False)}), False),
    3: ("status", IGNORED, False)})
SERVICE = Message("Service", {
    1: ("metadata", META, False),
    2: ("spec", Message("ServiceSpec", {
        1: ("ports", Message("ServicePort", {
            1: ("name", STRING, False), 2: ("protocol", STRING, False), 3: ("port", INT, False),
            4: ("targetPort", INT_OR_STRING, False), 5: ("nodePort", INT, False),
            6: ("appProtocol", STRING, False)}), True),
        2: ("selector", MAP, False), 3: ("clusterIP", STRING, False), 4: ("type", STRING, False),
        5: ("externalIPs", STRING, True), 7: ("sessionAffinity", STRING, False),
        8: ("loadBalancerIP", STRING, False), 9: ("loadBalancerSourceRanges", STRING, True),
        10: ("externalName", STRING, False), 11: ("externalTrafficPolicy", STRING, False),
        12: ("healthCheckNodePort", INT, False), 13: ("publishNotReadyAddresses", BOOL, False),
        14: ("sessionAffinityConfig", Message("SessionAffinityConfig", {
            1: ("clientIP", Message("ClientIPConfig", {1: ("timeoutSeconds", INT, False)}), False)}), False),
        17: ("ipFamilyPolicy", STRING, False), 18: ("clusterIPs", STRING, True), 19: ("ipFamilies", STRING, True),
        20: ("allocateLoadBalancerNodePorts", BOOL, False), 21: ("loadBalancerClass", STRING, False),
        22: ("internalTrafficPolicy", STRING, False), 23: ("trafficDistribution", STRING, False)}), False),
    3: ("status", IGNORED, False)})
SERVICE_ACCOUNT = Message("ServiceAccount", {
    1: ("metadata", META, False),
    2: ("secrets", Message("ObjectReference", {1: ("kind", STRING, False), 2: ("namespace", STRING, False),
                                               3: ("name", STRING, False), 4: ("uid", STRING, False),
                                               5: ("apiVersion", STRING, False)}), True),
    3: ("imagePullSecrets", LOCAL_REFERENCE, True), 4: ("automountServiceAccountToken", BOOL, False)})
POLICY_RULE = Message("PolicyRule", {1: ("verbs", STRING, True), 2: ("apiGroups", STRING, True),
                                     3: ("resources", STRING, True), 4: ("resourceNames", STRING, True),
                                     5: ("nonResourceURLs", STRING, True)})
ROLE = Message("Role", {1: ("metadata", META, False), 2: ("rules", POLICY_RULE, True)})
ROLE_BINDING = Message("RoleBinding", {
    1: ("metadata", META, False),
    2: ("subjects", Message("Subject", {1: ("kind", STRING, False), 2: ("apiGroup", STRING, False),
                                        3: ("name", STRING, False), 4: ("namespace", STRING, False)}), True),
    3: ("roleRef", Message("RoleRef", {1: ("apiGroup", STRING, False), 2: ("kind", STRING, False),
                                       3: ("name", STRING, False)}), False)})


# Go's protobuf encoding writes non-pointer scalars even when they are zero; JSON omits them.
# These fields are pointers in the Go types, so a zero there was set on purpose.
ZERO_IS_MEANINGFUL = frozenset({
    "replicas", "parallelism", "completions", "backoffLimit", "terminationGracePeriodSeconds",
    "activeDeadlineSeconds", "ttlSecondsAfterFinished", "revisionHistoryLimit", "progressDeadlineSeconds",
    "automountServiceAccountToken", "enableServiceLinks", "manualSelector", "allocateLoadBalancerNodePorts",
})


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _int_or_string(data: bytes) -> int | str:
    kind, number, text = 0, 0, ""
    for n, v in fields(data):
        if n == 1 and isinstance(v, int):
            kind = v
        elif n == 2 and isinstance(v, int):
            number = _signed(v)
        elif n == 3:
            text = _str(v)
    return text if kind == 1 else number


def decode_message(data: bytes, message: Message) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, raw in fields(data):
        spec = message.fields.get(number)
        if spec is None:
            raise ProtobufError(f"field {number} of {message.name} is not supported in protobuf bodies; "
                                "send the object as JSON (kubectl apply -f)")
        name, kind, repeated = spec
        value: Any
        if kind == IGNORED:
            continue
        if kind == STRING:
            value = _str(raw)
        elif kind == INT:
            value = _signed(raw) if isinstance(raw, int) else 0
        elif kind == BOOL:
            value = bool(raw)
        elif kind == META:
            value = object_meta(_bytes(raw))
        elif kind == INT_OR_STRING:
            value = _int_or_string(_bytes(raw))
        elif kind in (MAP, QUANTITIES):
            key, entry = _map_entry(_bytes(raw))
            text = entry.decode()
            if kind == QUANTITIES:
                text = next((_str(v) for n, v in fields(entry) if n == 1), "")
            obj.setdefault(name, {})[key] = text
            continue
        else:
            value = decode_message(_bytes(raw), kind)
        if repeated:
            obj.setdefault(name, []).append(value)
        elif value in ("", 0, False) and not isinstance(value, dict) and name not in ZERO_IS_MEANINGFUL:
            obj.pop(name, None)
        else:
            obj[name] = value
    return obj


_MESSAGES: dict[str, Message] = {
    "Deployment": DEPLOYMENT, "Pod": POD, "Job": JOB, "Service": SERVICE, "ServiceAccount": SERVICE_ACCOUNT,
    "Role": ROLE, "ClusterRole": ROLE, "RoleBinding": ROLE_BINDING, "ClusterRoleBinding": ROLE_BINDING,
}

def _message_decoder(message: Message) -> Callable[[bytes], dict[str, Any]]:
    def decode_one(data: bytes) -> dict[str, Any]:
        return decode_message(data, message)

    return decode_one


_DECODERS: dict[str, Callable[[bytes], dict[str, Any]]] = {
    "Secret": _secret, "ConfigMap": _configmap, "Namespace": _namespace, "DeleteOptions": _delete_options,
    **{kind: _message_decoder(message) for kind, message in _MESSAGES.items()},
}


def decode(body: bytes, messages: Mapping[str, Message] | None = None) -> dict[str, Any]:
    """Decode a ``k8s\\0``-framed runtime.Unknown holding one of the supported kinds, or, with
    ``messages``, one of those kinds only (other modules' request bodies, e.g. TokenRequest)."""
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
    decoder = _DECODERS.get(kind) if messages is None else (
        _message_decoder(messages[kind]) if kind in messages else None)
    if decoder is None:
        raise ProtobufError(f"protobuf bodies of kind {kind or '?'} are not supported; send JSON")
    obj = decoder(raw)
    return {"apiVersion": api_version or "v1", "kind": kind, **obj}
