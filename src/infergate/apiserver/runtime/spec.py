"""From a Deployment's pod template to what a local process needs.

Which containers run locally (infergate's own image, or a command that is ``infergate``; in
such a pod also its Envoy containers: ``command: [envoy]`` or an ``envoyproxy/envoy`` image),
the argv (``infergate`` + command/args, ``$(VAR)`` expanded as the kubelet does; Envoy's
arguments), the environment (``env`` values, downward API ``fieldRef``, ConfigMap/Secret keys),
the readiness, liveness and startup probes and the ``preStop`` pause.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_IMAGE_PREFIXES: tuple[str, ...] = ("ghcr.io/infergate/infergate",)
ENVOY_IMAGES: tuple[str, ...] = ("envoyproxy/envoy", "docker.io/envoyproxy/envoy")
INFERGATE, ENVOY = "infergate", "envoy"  # the programs a local container can run
WILDCARDS = ("0.0.0.0", "::", "[::]")  # a container listening on "any address" listens on its pod IP
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet Kubernetes uses for generated names
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def safe_encode(data: bytes, length: int) -> str:
    number = int.from_bytes(hashlib.sha256(data).digest(), "big")
    out = []
    for _ in range(length):
        number, rest = divmod(number, len(_ALPHABET))
        out.append(_ALPHABET[rest])
    return "".join(out)


def template_hash(template: Mapping[str, Any]) -> str:
    """A stable ``pod-template-hash`` for a pod template (10 characters)."""
    return safe_encode(json.dumps(template, sort_keys=True, separators=(",", ":")).encode(), 10)


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion: known variables are replaced, ``$$`` is ``$``, others stay."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR_REF.sub(replace, text)


def _infergate_argv(command: list[str], args: list[str]) -> list[str] | None:
    """The arguments after ``infergate`` if the container runs infergate, else None."""
    if command:
        head = os.path.basename(command[0])
        if head == "infergate":
            return command[1:] + args
        if head.startswith("python") and command[1:3] == ["-m", "infergate"]:
            return command[3:] + args
        return None
    return list(args)  # the image's entrypoint: `infergate`


def runs_locally(container: Mapping[str, Any], image_prefixes: tuple[str, ...]) -> bool:
    """True for infergate's own image, or any container whose command is ``infergate ...``."""
    image = str(container.get("image") or "")
    command = [str(c) for c in container.get("command") or []]
    if command and _infergate_argv(command, []) is not None:
        return True
    if any(image == p or image.startswith(p + ":") or image.startswith(p + "@") for p in image_prefixes):
        return _infergate_argv(command, []) is not None
    return False


def runs_envoy(container: Mapping[str, Any]) -> bool:
    """True for a container whose command is ``envoy`` (any image), or Envoy's image with no command."""
    command = [str(c) for c in container.get("command") or []]
    if command:
        return os.path.basename(command[0]) == ENVOY
    image = str(container.get("image") or "")
    return any(image == p or image.startswith((p + ":", p + "@")) for p in ENVOY_IMAGES)


def program_of(container: Mapping[str, Any], image_prefixes: tuple[str, ...]) -> str | None:
    """``infergate``, ``envoy`` or None (the runtime cannot run the container)."""
    if runs_locally(container, image_prefixes):
        return INFERGATE
    if runs_envoy(container):
        return ENVOY
    return None


def local_container(template: Mapping[str, Any], image_prefixes: tuple[str, ...]) -> dict[str, Any] | None:
    """The container of a pod template that runs infergate (the first that qualifies), else None."""
    containers = ((template.get("spec") or {}).get("containers")) or []
    for container in containers:
        if isinstance(container, dict) and runs_locally(container, image_prefixes):
            return container
    return None


def local_containers(template: Mapping[str, Any], image_prefixes: tuple[str, ...]) -> list[dict[str, Any]]:
    """The containers of a pod the runtime runs, in ``spec.containers`` order: none unless one of
    them runs infergate; then every container that runs infergate or Envoy (others are skipped)."""
    if local_container(template, image_prefixes) is None:
        return []
    containers = ((template.get("spec") or {}).get("containers")) or []
    return [c for c in containers if isinstance(c, dict) and program_of(c, image_prefixes) is not None]


def local_init_containers(template: Mapping[str, Any], image_prefixes: tuple[str, ...]) -> list[dict[str, Any]]:
    """The ``initContainers`` the runtime runs (infergate or Envoy), in order, before the containers."""
    containers = ((template.get("spec") or {}).get("initContainers")) or []
    return [c for c in containers if isinstance(c, dict) and program_of(c, image_prefixes) is not None]


def skipped_containers(template: Mapping[str, Any], image_prefixes: tuple[str, ...]) -> list[str]:
    """Names of the containers and init containers of a locally run pod that the runtime cannot run."""
    spec = template.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return [str(c.get("name")) for c in containers
            if isinstance(c, dict) and program_of(c, image_prefixes) is None]


def bind_to_pod_ip(value: str, ip: str) -> str:
    """A wildcard listen address in an argument is the pod IP: ``0.0.0.0``, ``0.0.0.0:18000``,
    ``--host=0.0.0.0`` (containers of one pod share its address, as they share a network namespace)."""
    flag, eq, rest = value.partition("=") if value.startswith("-") else ("", "", value)
    for wildcard in WILDCARDS:
        if rest == wildcard:
            return flag + eq + ip
        if rest.startswith(wildcard + ":") and rest[len(wildcard) + 1:].isdigit():
            return f"{flag}{eq}{ip}:{rest[len(wildcard) + 1:]}"
    return value


@dataclass(frozen=True)
class Probe:
    """A readiness, liveness or startup probe: ``kind`` is http, tcp or grpc; ``port`` resolved to a number."""

    kind: str
    port: int
    path: str = "/"
    scheme: str = "HTTP"
    host: str | None = None
    service: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    initial_delay_s: float = 0.0
    period_s: float = 10.0
    timeout_s: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


def _port_number(value: Any, container: Mapping[str, Any], what: str) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    for port in container.get("ports") or []:
        if port.get("name") == text:
            return int(port["containerPort"])
    raise ValueError(f"{what}: no container port named {text!r}")


def _parse_probe(probe: Mapping[str, Any], container: Mapping[str, Any], where: str) -> Probe | None:
    timing = {
        "initial_delay_s": float(probe.get("initialDelaySeconds", 0)),
        "period_s": float(probe.get("periodSeconds", 10)),
        "timeout_s": float(probe.get("timeoutSeconds", 1)),
        "success_threshold": int(probe.get("successThreshold", 1)),
        "failure_threshold": int(probe.get("failureThreshold", 3)),
    }
    if "httpGet" in probe:
        http = probe["httpGet"]
        headers = tuple((str(h["name"]), str(h["value"])) for h in http.get("httpHeaders") or [])
        return Probe("http", _port_number(http.get("port"), container, f"{where}.httpGet.port"),
                     path=str(http.get("path") or "/"), scheme=str(http.get("scheme") or "HTTP"),
                     host=http.get("host"), headers=headers, **timing)  # type: ignore[arg-type]
    if "tcpSocket" in probe:
        tcp = probe["tcpSocket"]
        return Probe("tcp", _port_number(tcp.get("port"), container, f"{where}.tcpSocket.port"),
                     host=tcp.get("host"), **timing)  # type: ignore[arg-type]
    if "grpc" in probe:
        grpc = probe["grpc"]
        return Probe("grpc", int(grpc["port"]), service=str(grpc.get("service") or ""), **timing)  # type: ignore[arg-type]
    return None  # exec probes: the process being up counts


def readiness_probe(container: Mapping[str, Any]) -> Probe | None:
    probe = container.get("readinessProbe")
    if not probe:
        return None
    return _parse_probe(probe, container, "readinessProbe")


def _restart_probe(container: Mapping[str, Any], kind: str) -> Probe | None:
    """``livenessProbe`` / ``startupProbe``: parsed and validated as the API server validates them
    (a ValueError names the field: the pod shows ``CreateContainerConfigError`` with it)."""
    probe = container.get(kind)
    if not probe:
        return None
    name = str(container.get("name") or "main")
    where = f"containers[{name}].{kind}"
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in probe]
    if len(handlers) != 1:
        raise ValueError(f"{where}: must specify exactly one handler type (exec, httpGet, tcpSocket, grpc), "
                         f"has {handlers or 'none'}")
    parsed = _parse_probe(probe, container, where)
    if parsed is None:
        return None  # exec: not run locally, counts as passing
    if parsed.success_threshold != 1:
        raise ValueError(f"{where}.successThreshold: Invalid value: {parsed.success_threshold}: must be 1")
    if parsed.failure_threshold < 1:
        raise ValueError(f"{where}.failureThreshold: Invalid value: {parsed.failure_threshold}: must be >= 1")
    if parsed.period_s <= 0:
        raise ValueError(f"{where}.periodSeconds: Invalid value: {parsed.period_s:g}: must be > 0")
    if parsed.timeout_s <= 0:
        raise ValueError(f"{where}.timeoutSeconds: Invalid value: {parsed.timeout_s:g}: must be > 0")
    if parsed.initial_delay_s < 0:
        raise ValueError(f"{where}.initialDelaySeconds: Invalid value: {parsed.initial_delay_s:g}: must be >= 0")
    return parsed


def liveness_probe(container: Mapping[str, Any]) -> Probe | None:
    """The container's ``livenessProbe`` (None: none, or exec); ValueError when invalid."""
    return _restart_probe(container, "livenessProbe")


def startup_probe(container: Mapping[str, Any]) -> Probe | None:
    """The container's ``startupProbe`` (None: none, or exec); ValueError when invalid."""
    return _restart_probe(container, "startupProbe")


_SLEEP_COMMANDS = ("sleep", "/bin/sleep", "/usr/bin/sleep")
_SHELLS = ("sh", "/bin/sh", "bash", "/bin/bash")


def _sleep_seconds(command: list[str]) -> float | None:
    """N of ``["sleep", "N"]`` or ``["sh", "-c", "sleep N"]``, else None."""
    if len(command) == 3 and command[0] in _SHELLS and command[1] == "-c":
        command = command[2].split()
    if len(command) == 2 and command[0] in _SLEEP_COMMANDS:
        try:
            seconds = float(command[1])
        except ValueError:
            return None
        return seconds if seconds >= 0 else None
    return None


def pre_stop_pause(container: Mapping[str, Any]) -> float:
    """How long the container's ``lifecycle.preStop`` hook waits before its SIGTERM, in seconds.

    The local runtime runs the pause a Deployment asks for so that its Services (endpoints, the
    service proxy) drop the terminating pod before its program drains: ``sleep: {seconds: N}``,
    or an ``exec`` of ``sleep N`` (also through ``sh -c``). Any other hook (httpGet, another
    command) is not run locally: no pause. A ValueError names a bad ``sleep.seconds``."""
    hook = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in hook:
        name = str(container.get("name") or "main")
        value = (hook.get("sleep") or {}).get("seconds")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"containers[{name}].lifecycle.preStop.sleep.seconds: Invalid value: {value!r}: "
                             "must be a number of seconds >= 0")
        return float(value)
    if "exec" in hook:
        command = [str(c) for c in (hook.get("exec") or {}).get("command") or []]
        return _sleep_seconds(command) or 0.0
    return 0.0


@dataclass(frozen=True)
class PodIdentity:
    name: str
    namespace: str
    ip: str
    uid: str = ""
    node_name: str = "infergate-local"
    service_account: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def field_ref(path: str, pod: PodIdentity) -> str:
    """The downward API's ``fieldRef.fieldPath`` values."""
    simple = {
        "metadata.name": pod.name, "metadata.namespace": pod.namespace, "metadata.uid": pod.uid,
        "status.podIP": pod.ip, "status.podIPs": pod.ip, "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1", "spec.nodeName": pod.node_name,
        "spec.serviceAccountName": pod.service_account,
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        source = pod.labels if match.group(1) == "labels" else pod.annotations
        return str(source.get(match.group(2), ""))
    raise ValueError(f"fieldRef.fieldPath: unsupported value {path!r}")


@dataclass(frozen=True)
class LaunchSpec:
    """What the runtime starts: ``<program> <argv>`` with ``env`` (the container's, resolved)."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    probe: Probe | None  # readiness
    grace_period_s: float
    liveness: Probe | None = None
    startup: Probe | None = None
    program: str = INFERGATE  # or ENVOY
    container: str = "main"  # the container's name
    pre_stop_s: float = 0.0  # the preStop pause before SIGTERM (see pre_stop_pause)


ValueLookup = Mapping[tuple[str, str, str], str]  # (kind ConfigMap|Secret, name, key) -> value


def container_env(container: Mapping[str, Any], pod: PodIdentity, lookup: ValueLookup) -> dict[str, str]:
    """The container's ``env`` in order, each value expanded against the ones before it."""
    env: dict[str, str] = {}
    for index, item in enumerate(container.get("env") or []):
        name = str(item["name"])
        if "value" in item:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        source = item.get("valueFrom") or {}
        where = f"env[{index}].valueFrom"
        if "fieldRef" in source:
            env[name] = field_ref(str(source["fieldRef"].get("fieldPath", "")), pod)
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind = "ConfigMap" if "configMapKeyRef" in source else "Secret"
            ref = source.get("configMapKeyRef") or source.get("secretKeyRef") or {}
            key = (kind, str(ref.get("name")), str(ref.get("key")))
            if key in lookup:
                env[name] = lookup[key]
            elif not ref.get("optional"):
                raise ValueError(f"{where}: {kind} {key[1]!r} has no key {key[2]!r}")
        elif "resourceFieldRef" in source:
            env[name] = "0"  # no resource limits on the local runtime
        else:
            raise ValueError(f"{where}: unsupported source {sorted(source)}")
    return env


def launch_spec(template: Mapping[str, Any], container: Mapping[str, Any], pod: PodIdentity,
                lookup: ValueLookup, path_map: Mapping[str, str] | None = None,
                program: str = INFERGATE) -> LaunchSpec:
    """Resolve a container to ``infergate`` (or ``envoy``) arguments and environment.

    ``path_map`` maps volume mount paths to local directories: arguments and env values that
    name a file under a mount path are pointed at the local copy (the local analog of a mount).
    An infergate argument that is a wildcard listen address is the pod IP (:func:`bind_to_pod_ip`).
    """
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    env = container_env(container, pod, lookup)
    if program == ENVOY:
        argv: list[str] | None = command[1:] + args if command else args
    else:
        argv = _infergate_argv(command, args)
    if argv is None:
        raise ValueError("container does not run infergate")
    argv = [expand(a, env) for a in argv]
    if program == INFERGATE:
        argv = [bind_to_pod_ip(a, pod.ip) for a in argv]
    if path_map:
        argv = [_map_path(a, path_map) for a in argv]
        env = {k: _map_path(v, path_map) for k, v in env.items()}
    spec = template.get("spec") or {}
    grace = float(spec.get("terminationGracePeriodSeconds", 30))
    return LaunchSpec(argv=tuple(argv), env=env, probe=readiness_probe(container), grace_period_s=grace,
                      liveness=liveness_probe(container), startup=startup_probe(container), program=program,
                      container=str(container.get("name") or "main"), pre_stop_s=pre_stop_pause(container))


def _map_path(value: str, path_map: Mapping[str, str]) -> str:
    """``/config/x.yaml`` or ``--flag=/config/x.yaml`` under a mount path -> the local copy."""
    flag, eq, rest = value.partition("=") if value.startswith("-") else ("", "", value)
    for mount, local in sorted(path_map.items(), key=lambda kv: -len(kv[0])):
        mount = mount.rstrip("/") or "/"
        if rest == mount or rest.startswith(mount + "/"):
            return flag + eq + local + rest[len(mount):]
    return value
