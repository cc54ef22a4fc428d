"""A directory of manifests as the source of resources (``infergate gateway -f DIR``).

The directory is scanned recursively for ``*.yaml``, ``*.yml`` and ``*.json`` (hidden files
and folders are skipped) every ``poll_interval`` seconds; a change of any file's mtime or
size, or a file added or removed, re-reads the manifests. A file that fails to parse keeps
its previous content (and the error is logged), so a half-saved file does not drop routes.

Objects of the kinds the gateway reads are validated as the API server would (schema, CEL,
with ``infergate.api``); an invalid object is left out and its errors (field path + reason)
are logged and kept in ``errors``, as ``kubectl apply`` would have refused it.

There is no API server to store statuses, so they are kept in memory (and fed back into the
objects, as an API server would, which keeps Gateway addresses stable) and, when
``status_file`` is given, written there as one YAML document keyed by object.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from infergate.api import validate as validate_object
from infergate.api.objects import resource_type_of
from infergate.controller.manifests import MANIFEST_SUFFIXES, ManifestParseError, read_manifest_file
from infergate.controller.resources import KINDS, ObjectRef, ObservedObject, split_api_version
from infergate.controller.snapshot import Snapshot
from infergate.controller.status import merge_status
from infergate.controller.translator.options import TranslationResult

log = logging.getLogger(__name__)

MAX_FILES = 5000


class FileProvider:
    def __init__(self, directory: Path | str, *, poll_interval: float = 0.5,
                 status_file: Path | str | None = None, validate: bool = True) -> None:
        self.directory = Path(directory)
        self.poll_interval = poll_interval
        self.status_file = Path(status_file) if status_file else None
        self.validate = validate
        self.changed = asyncio.Event()
        self.errors: dict[str, str] = {}  # path -> last parse error
        self._signature: dict[str, tuple[int, int]] = {}
        self._objects: dict[str, list[dict[str, Any]]] = {}
        self._statuses: dict[ObjectRef, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None

    def _list_files(self) -> list[Path]:
        if not self.directory.is_dir():
            raise FileNotFoundError(f"manifest directory {self.directory} does not exist")
        found: list[Path] = []
        for root, dirs, files in os.walk(self.directory):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and name.endswith(MANIFEST_SUFFIXES):
                    found.append(Path(root) / name)
                    if len(found) > MAX_FILES:
                        raise RuntimeError(f"{self.directory}: more than {MAX_FILES} manifest files")
        return found

    def scan(self) -> bool:
        """Re-read changed files; returns whether the resources changed (blocking: run in a thread)."""
        signature: dict[str, tuple[int, int]] = {}
        for path in self._list_files():
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            signature[str(path)] = (st.st_mtime_ns, st.st_size)
        if signature == self._signature:
            return False
        objects = {}
        for name, sig in signature.items():
            if self._signature.get(name) == sig and name in self._objects:
                objects[name] = self._objects[name]
                continue
            try:
                objects[name] = self._admit(name, read_manifest_file(Path(name)))
            except (ManifestParseError, OSError, UnicodeDecodeError) as exc:
                self.errors[name] = str(exc)
                log.error("%s", exc)
                objects[name] = self._objects.get(name, [])
        self._signature = signature
        self._objects = objects
        return True

    def _admit(self, source: str, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The objects an API server would accept (kinds the gateway reads are validated)."""
        if not self.validate:
            self.errors.pop(source, None)
            return objects
        admitted, problems = [], []
        for obj in objects:
            group, _ = split_api_version(str(obj.get("apiVersion", "")))
            # Kinds without a schema in infergate.api (Secrets) are read as they are.
            if (group, obj.get("kind")) in KINDS and resource_type_of(obj) is not None:
                errors = validate_object(obj)
                if errors:
                    name = (obj.get("metadata") or {}).get("name", "?")
                    problems.append(f"{obj.get('kind')} {name}: " + "; ".join(str(e) for e in errors))
                    continue
            admitted.append(obj)
        if problems:
            self.errors[source] = "\n".join(problems)
            for problem in problems:
                log.error("%s: rejected %s", source, problem)
        else:
            self.errors.pop(source, None)
        return admitted

    async def start(self) -> None:
        await asyncio.to_thread(self.scan)
        self.changed.set()
        self._task = asyncio.create_task(self._poll(), name="file-provider-poll")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                if await asyncio.to_thread(self.scan):
                    self.changed.set()
            except Exception as exc:  # keep polling: the directory may come back
                log.error("scanning %s: %s", self.directory, exc)

    def snapshot(self) -> Snapshot:
        self.changed.clear()
        resources = []
        for name, objects in self._objects.items():
            for obj in objects:
                try:
                    resource = ObservedObject.from_dict(obj)
                except ValueError as exc:
                    log.error("%s: %s", name, exc)
                    continue
                stored = self._statuses.get(resource.ref)
                if stored is not None:
                    body = copy.copy(obj)
                    body["status"] = stored
                    resource = ObservedObject(resource.ref, resource.version, body)
                resources.append(resource)
        return Snapshot.of(resources)

    def statuses(self) -> dict[ObjectRef, dict[str, Any]]:
        return dict(self._statuses)

    async def write_statuses(self, result: TranslationResult, controller_name: str) -> int:
        changed = 0
        for ref, desired in result.statuses.items():
            merged = merge_status(ref, self._statuses.get(ref), desired, controller_name=controller_name,
                                  foreign_gateways=result.foreign_gateways)
            if merged is not None:
                self._statuses[ref] = merged
                changed += 1
        if self.status_file is not None and (changed or not self.status_file.exists()):
            text = yaml.safe_dump({str(ref): st for ref, st in sorted(self._statuses.items())}, sort_keys=False)
            tmp = self.status_file.with_name(self.status_file.name + ".tmp")
            await asyncio.to_thread(tmp.write_text, text)
            os.replace(tmp, self.status_file)
        return changed

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
