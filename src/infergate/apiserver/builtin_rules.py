"""The API server's own rules for the built-in kinds, beyond their types: label keys and
values and the total size of annotations (every object), Namespace names (DNS-1123 labels),
Service names (DNS-1035 labels), types and ports, the 1 MiB of data a ConfigMap or a Secret
may hold. Messages as kube-apiserver words them.
"""

from __future__ import annotations

from typing import Any

from infergate.api.regex import compile_re2
from infergate.apiserver.validation import FieldCause

MAX_ANNOTATIONS_BYTES = 256 * 1024  # TotalAnnotationSizeLimitB
MAX_SECRET_BYTES = 1024 * 1024  # MaxSecretSize: the data of a Secret or a ConfigMap
MAX_LABEL_VALUE = 63
SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
PROTOCOLS = ("SCTP", "TCP", "UDP")

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + ")*"
_NAME_PART = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _NAME_PART + ")?"


def _full(pattern: str) -> Any:
    return compile_re2("^" + pattern + "$")


_RE = {name: _full(p) for name, p in (("1123", _DNS1123_LABEL), ("1035", _DNS1035_LABEL),
                                      ("subdomain", _DNS1123_SUBDOMAIN), ("name", _NAME_PART),
                                      ("value", _LABEL_VALUE))}


def _invalid(field: str, value: Any, detail: str) -> FieldCause:
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    return FieldCause(field, f"Invalid value: {shown}: {detail}")


def _dns1123_label(field: str, value: str) -> list[FieldCause]:
    causes = []
    if len(value) > 63:
        causes.append(_invalid(field, value, "must be no more than 63 characters"))
    if not _RE["1123"].match(value):
        causes.append(_invalid(field, value, "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                               "characters or '-', and must start and end with an alphanumeric character (e.g. "
                               f"'my-name',  or '123-abc', regex used for validation is '{_DNS1123_LABEL}')"))
    return causes


def _dns1035_label(field: str, value: str) -> list[FieldCause]:
    causes = []
    if len(value) > 63:
        causes.append(_invalid(field, value, "must be no more than 63 characters"))
    if not _RE["1035"].match(value):
        causes.append(_invalid(field, value, "a DNS-1035 label must consist of lower case alphanumeric characters or "
                               "'-', start with an alphabetic character, and end with an alphanumeric character "
                               f"(e.g. 'my-name',  or 'abc-123', regex used for validation is '{_DNS1035_LABEL}')"))
    return causes


def _qualified_name(field: str, key: str) -> list[FieldCause]:
    """A label key: ``[prefix/]name``, the prefix a DNS subdomain of at most 253 characters."""
    prefix, _, name = key.rpartition("/")
    causes = []
    if "/" in key and (not prefix or len(prefix) > 253 or not _RE["subdomain"].match(prefix)):
        causes.append(_invalid(field, key, "prefix part a lowercase RFC 1123 subdomain must consist of lower case "
                               "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                               "character"))
    if not name or len(name) > 63:
        causes.append(_invalid(field, key, "name part must be non-empty and no more than 63 characters"))
    elif not _RE["name"].match(name):
        causes.append(_invalid(field, key, "name part must consist of alphanumeric characters, '-', '_' or '.', and "
                               "must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
                               f"'123-abc', regex used for validation is '{_NAME_PART}')"))
    return causes


def metadata_causes(obj: dict[str, Any]) -> list[FieldCause]:
    """Labels and annotations of any object (their JSON types are checked before, by shapes)."""
    metadata = obj.get("metadata") or {}
    causes: list[FieldCause] = []
    for key, value in (metadata.get("labels") or {}).items():
        causes.extend(_qualified_name("metadata.labels", key))
        if len(value) > MAX_LABEL_VALUE:
            causes.append(_invalid("metadata.labels", value, "must be no more than 63 characters"))
        elif not _RE["value"].match(value):
            causes.append(_invalid("metadata.labels", value, "a valid label must be an empty string or consist of "
                                   "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                                   "alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
                                   f"for validation is '{_LABEL_VALUE}')"))
    annotations = metadata.get("annotations") or {}
    for key in annotations:
        causes.extend(_qualified_name("metadata.annotations", key.lower()))
    total = sum(len(k) + len(v) for k, v in annotations.items())
    if total > MAX_ANNOTATIONS_BYTES:
        causes.append(FieldCause("metadata.annotations", f"Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes",
                                 "FieldValueTooLong"))
    return causes


def _port(field: str, value: Any) -> list[FieldCause]:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return [_invalid(field, value, "must be between 1 and 65535, inclusive")]
    return []


def _service_causes(obj: dict[str, Any]) -> list[FieldCause]:
    spec = obj.get("spec") or {}
    causes: list[FieldCause] = []
    kind = spec.get("type", "ClusterIP")
    if kind not in SERVICE_TYPES:
        causes.append(FieldCause("spec.type", f'Unsupported value: "{kind}": supported values: '
                                 + ", ".join(f'"{t}"' for t in SERVICE_TYPES), "FieldValueNotSupported"))
    ports = spec.get("ports") or []
    if not isinstance(ports, list):
        return [*causes, _invalid("spec.ports", "", "must be a list")]
    names = set()
    for i, port in enumerate(ports):
        field = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            causes.append(_invalid(field, "", "must be an object"))
            continue
        causes.extend(_port(f"{field}.port", port.get("port")))
        target = port.get("targetPort")
        if isinstance(target, int) and not isinstance(target, bool) and target != 0:
            causes.extend(_port(f"{field}.targetPort", target))
        name = port.get("name")
        if name is not None:
            if not isinstance(name, str):
                causes.append(_invalid(f"{field}.name", name, "must be a string"))
            else:
                if name:
                    causes.extend(_dns1123_label(f"{field}.name", name))
                if name in names:
                    causes.append(FieldCause(f"{field}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate"))
                names.add(name)
        protocol = port.get("protocol", "TCP")
        if protocol not in PROTOCOLS:
            causes.append(FieldCause(f"{field}.protocol", f'Unsupported value: "{protocol}": supported values: '
                                     + ", ".join(f'"{p}"' for p in PROTOCOLS), "FieldValueNotSupported"))
    if len(ports) > 1 and any(isinstance(p, dict) and not p.get("name") for p in ports):
        causes.append(FieldCause("spec.ports", "Required value: when multiple ports are specified, each must be "
                                 "named", "FieldValueRequired"))
    return causes


def _base64_size(value: str) -> int:
    return len(value) * 3 // 4 - value.endswith("=") - value.endswith("==")


def _data_size_causes(resource: str, obj: dict[str, Any]) -> list[FieldCause]:
    """At most 1 MiB of data in a ConfigMap (``data`` and ``binaryData``, the whole object
    named) or a Secret (``data``, with ``stringData`` merged in)."""
    def strings(section: str) -> dict[str, str]:
        found = obj.get(section)
        return {k: v for k, v in found.items() if isinstance(v, str)} if isinstance(found, dict) else {}

    if resource == "configmaps":
        total = sum(len(v.encode()) for v in strings("data").values())
        total += sum(_base64_size(v) for v in strings("binaryData").values())
        field = "[]"
    else:
        sizes = {k: _base64_size(v) for k, v in strings("data").items()}
        sizes.update({k: len(v.encode()) for k, v in strings("stringData").items()})
        total = sum(sizes.values())
        field = "data"
    if total > MAX_SECRET_BYTES:
        return [FieldCause(field, f"Too long: must have at most {MAX_SECRET_BYTES} bytes", "FieldValueTooLong")]
    return []


def builtin_causes(group: str, resource: str, obj: dict[str, Any]) -> list[FieldCause]:
    """The kind-specific rules of the built-in kinds infergate checks."""
    name = str((obj.get("metadata") or {}).get("name") or "")
    if (group, resource) == ("", "namespaces"):
        return _dns1123_label("metadata.name", name)
    if (group, resource) == ("", "services"):
        return _dns1035_label("metadata.name", name) + _service_causes(obj)
    if (group, resource) in (("", "configmaps"), ("", "secrets")):
        return _data_size_causes(resource, obj)
    return []
