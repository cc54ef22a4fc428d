"""Envoy containers of a local pod: the bootstrap pointed at the pod's own address.

Containers of one pod share a network namespace: Envoy's ``127.0.0.1:9002`` is the EPP next to
it, its ``0.0.0.0:8081`` listener is the pod's port. Local pods share the host's network, each
with its own loopback address (the pod IP), so the runtime gives Envoy a copy of its bootstrap
(``-c``/``--config-path``) in which every ``socket_address`` naming a wildcard (``0.0.0.0``,
``::``) or the loopback (``127.x.y.z``, ``::1``, ``localhost``) names the pod IP instead; the
pod's infergate containers listen there too (see :func:`infergate.apiserver.runtime.spec.bind_to_pod_ip`).
Hot restart is off (``--disable-hot-restart`` is added when absent): several Envoys share the host.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

from infergate.api import yamlload
from infergate.util.files import private_dir, write_private

_CONFIG_FLAGS = ("-c", "--config-path")


def is_local_address(address: str) -> bool:
    """True for a wildcard, a loopback address or ``localhost`` (the pod's own, inside a pod)."""
    if address.strip("[]") in ("localhost", "0.0.0.0", "::"):
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def rebind(config: Any, ip: str) -> int:
    """Point every ``socket_address`` of ``config`` that names the pod's own address at ``ip``
    (in place); returns how many were changed."""
    changed = 0
    if isinstance(config, dict):
        socket = config.get("socket_address")
        if isinstance(socket, dict) and isinstance(socket.get("address"), str) \
                and is_local_address(socket["address"]):
            socket["address"] = ip
            socket.pop("ipv4_compat", None)
            changed += 1
        for value in config.values():
            changed += rebind(value, ip)
    elif isinstance(config, list):
        for item in config:
            changed += rebind(item, ip)
    return changed


def config_path(argv: list[str]) -> tuple[int, str] | None:
    """(index of the value, the path) of Envoy's ``-c``/``--config-path`` argument, else None."""
    for index, arg in enumerate(argv):
        if arg in _CONFIG_FLAGS and index + 1 < len(argv):
            return index + 1, argv[index + 1]
        for flag in _CONFIG_FLAGS:
            if arg.startswith(flag + "="):
                return index, arg[len(flag) + 1:]
    return None


def pod_envoy_argv(argv: list[str], ip: str, work_dir: Path, container: str) -> list[str]:
    """Envoy's arguments for a local pod: its bootstrap copied to ``work_dir`` with the pod's
    addresses (ValueError when the file is missing or not YAML/JSON)."""
    out = list(argv)
    found = config_path(out)
    if found is not None:
        index, path = found
        source = Path(path)
        try:
            config = yamlload.load(source.read_text())
        except OSError as exc:
            raise ValueError(f"containers[{container}]: Envoy configuration {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"containers[{container}]: Envoy configuration {path}: not YAML ({exc})") from None
        rebind(config, ip)
        target = private_dir(work_dir) / f"envoy-{container}.yaml"
        write_private(target, yaml.safe_dump(config, sort_keys=False))
        out[index] = str(target) if out[index] == path else out[index].replace(path, str(target))
    if "--disable-hot-restart" not in out:
        out.append("--disable-hot-restart")
    return out
