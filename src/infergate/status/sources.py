"""Where ``status`` reads the objects: the Kubernetes API, or a running ``infergate serve``.

A reader answers ``list_objects(group, kind)`` with plain manifest dicts, statuses included,
as the API server returns them. The Kubernetes reader is ``kubeapi.KubeReader`` (the one
module that knows the client library); ``ServeReader`` reads serve's manifests and the
statuses its controller wrote (see ``infergate.serve.state``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import yaml

from infergate.api import yamlload
from infergate.controller.manifests import MANIFEST_SUFFIXES, ManifestParseError, read_manifest_file
from infergate.controller.resources import ObservedObject, split_api_version
from infergate.serve.state import ServeState


class ReaderError(Exception):
    pass


class Reader(Protocol):
    @property
    def description(self) -> str: ...

    def list_objects(self, group: str, kind: str) -> list[dict[str, Any]]:
        """Objects of one kind in every namespace (the reader's namespace filter applies)."""
        ...


class ServeReader:
    """The objects ``infergate serve`` gave its gateway, with the statuses the gateway wrote."""

    def __init__(self, state: ServeState, state_path: Path, namespace: str | None = None) -> None:
        self.state = state
        self.namespace = namespace
        self.description = f"infergate serve at {state.url} (state {state_path})" + (
            f" (namespace {namespace})" if namespace else "")

    def close(self) -> None:
        """Nothing to release: the files are read at each call."""

    def _objects(self) -> list[dict[str, Any]]:
        directory = Path(self.state.manifests_dir)
        objects: list[dict[str, Any]] = []
        try:
            files = sorted(p for p in directory.iterdir() if p.name.endswith(MANIFEST_SUFFIXES)
                           and not p.name.startswith("."))
        except OSError as exc:
            raise ReaderError(f"{directory}: {exc} (has infergate serve stopped?)") from None
        for path in files:
            try:
                objects.extend(read_manifest_file(path))
            except (ManifestParseError, OSError) as exc:
                raise ReaderError(str(exc)) from None
        return objects

    def _statuses(self) -> dict[str, Any]:
        try:
            data = yamlload.load(Path(self.state.status_file).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, yaml.YAMLError) as exc:
            raise ReaderError(f"{self.state.status_file}: {exc}") from None
        return data if isinstance(data, dict) else {}

    def list_objects(self, group: str, kind: str) -> list[dict[str, Any]]:
        statuses = self._statuses()
        found = []
        for obj in self._objects():
            if obj.get("kind") != kind or split_api_version(str(obj.get("apiVersion", "")))[0] != group:
                continue
            if self.namespace and (obj.get("metadata") or {}).get("namespace", "default") != self.namespace:
                continue
            ref = str(ObservedObject.from_dict(obj).ref)
            if ref in statuses:
                obj = {**obj, "status": statuses[ref]}
            found.append(obj)
        return found
