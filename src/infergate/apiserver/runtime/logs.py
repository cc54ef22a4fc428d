"""``kubectl logs`` for local pods: the ``pods/log`` subresource over the runtime's log files.

Each container's process writes stdout and stderr to
``STATE_DIR/runtime/logs/NS_POD_CONTAINER.log``; every start is preceded by a marker line, so
``previous=true`` gives the run before the current one. Supported query parameters: ``follow``,
``tailLines``, ``limitBytes``, ``previous``, ``container`` (required when the pod has several,
as the API server requires it: kubectl sends the default container), ``timestamps`` (ignored:
lines are as written).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

MARKER = b"### infergate-runtime: "


@dataclass(frozen=True)
class PodLogFiles:
    """A local pod's log files: container name -> file, in ``spec`` order."""

    containers: dict[str, Path]
    init_containers: dict[str, Path] = field(default_factory=dict)

    def get(self, container: str) -> Path | None:
        return self.containers.get(container) or self.init_containers.get(container)

    def choices(self) -> str:
        """The API server's list of choices: ``[a b]``, `` or one of the init containers: [i]``."""
        text = f"[{' '.join(self.containers)}]"
        if self.init_containers:
            text += f" or one of the init containers: [{' '.join(self.init_containers)}]"
        return text


def split_runs(data: bytes) -> list[bytes]:
    """The log of each run of the process (marker lines removed), oldest first."""
    runs: list[bytes] = []
    current: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if line.startswith(MARKER):
            runs.append(b"".join(current))
            current = []
        else:
            current.append(line)
    runs.append(b"".join(current))
    return [r for i, r in enumerate(runs) if i > 0 or r]  # text before the first marker only if any


def select(data: bytes, previous: bool, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    runs = split_runs(data)
    wanted = 2 if previous else 1  # the run before the current one, or the current one
    text = runs[-wanted] if len(runs) >= wanted else b""
    if tail_lines is not None:
        lines = text.splitlines(keepends=True)
        text = b"".join(lines[-tail_lines:]) if tail_lines > 0 else b""
    if limit_bytes is not None:
        text = text[:limit_bytes]
    return text


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    return web.Response(status=code, text=json.dumps(body), content_type="application/json")


def _int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    return int(value) if value not in (None, "") else None


class LogServer:
    """``handler(request, namespace, name)`` for ``APIServer.add_subresource_handler("", "pods", "log", ...)``."""

    def __init__(self, log_files: Callable[[str, str], PodLogFiles | None], poll_interval: float = 0.2) -> None:
        self.log_files = log_files  # (namespace, pod) -> its files, or None when the runtime does not run the pod
        self.poll_interval = poll_interval

    def log_path(self, namespace: str, name: str, container: str) -> Path | None:
        files = self.log_files(namespace, name)
        return files.get(container) if files is not None else None

    async def __call__(self, request: web.Request, namespace: str | None, name: str) -> web.StreamResponse:
        if request.method != "GET":
            return _status(405, "MethodNotAllowed", "pods/log supports GET only")
        ns = namespace or "default"
        files = self.log_files(ns, name)
        if files is None:
            return _status(400, "BadRequest", f'pod "{name}" is not run by the local runtime (only Deployments of '
                                              f"infergate's image run as local processes): no logs")
        container = request.query.get("container") or ""
        if not container and len(files.containers) != 1:
            return _status(400, "BadRequest", f"a container name must be specified for pod {name}, "
                                              f"choose one of: {files.choices()}")
        container = container or next(iter(files.containers))
        path = files.get(container)
        if path is None:
            return _status(400, "BadRequest", f"container {container} is not valid for pod {name}")
        try:
            tail, limit = _int(request, "tailLines"), _int(request, "limitBytes")
        except ValueError:
            return _status(400, "BadRequest", "tailLines and limitBytes must be integers")
        previous = request.query.get("previous") == "true"
        data = path.read_bytes() if path.exists() else b""
        text = select(data, previous, tail, limit)
        if request.query.get("follow") != "true" or previous:
            return web.Response(body=text, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(text)
        offset = len(data)
        while self.log_path(ns, name, container) is not None:  # until the pod goes away or the client leaves
            await asyncio.sleep(self.poll_interval)
            size = path.stat().st_size if path.exists() else 0
            if size > offset:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read(size - offset)
                offset = size
                chunk = b"".join(line for line in chunk.splitlines(keepends=True) if not line.startswith(MARKER))
                if chunk:
                    await response.write(chunk)
        await response.write_eof()
        return response
