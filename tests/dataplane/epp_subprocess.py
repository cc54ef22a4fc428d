"""``infergate epp`` as a child process with a static pool file, for the end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infergate.util.net import free_port


@dataclass(frozen=True)
class EppPorts:
    grpc: int
    metrics: int


@contextlib.asynccontextmanager
async def running_epp(static: Mapping[str, Any], path: Path, *, pool_name: str, pool_group: str,
                      refresh: str = "100ms", env: Mapping[str, str] | None = None,
                      extra_args: tuple[str, ...] = ()) -> AsyncIterator[EppPorts]:
    """Write ``static`` (pool, objectives/models, endpoints) to ``path`` and run ``infergate epp``
    on it until the block ends; ready once it prints ``ready grpc=``, within 30 s."""
    path.write_text(yaml.safe_dump(dict(static)))
    grpc_port, health_port, metrics_port = free_port(), free_port(), free_port()
    args = [
        sys.executable, "-m", "infergate", "epp", "--pool-name", pool_name, "--pool-group", pool_group,
        "--host", "127.0.0.1", "--grpc-port", str(grpc_port), "--grpc-health-port", str(health_port),
        "--metrics-port", str(metrics_port), "--static-file", str(path), "--refresh-metrics-interval", refresh,
        *extra_args,
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    drainer: asyncio.Task[None] | None = None
    try:
        assert proc.stdout is not None
        output = b""
        async with asyncio.timeout(30):
            while b"ready grpc=" not in output:
                line = await proc.stdout.readline()
                assert line, f"infergate epp exited: {output.decode(errors='replace')}"
                output += line

        async def drain() -> None:  # keep the pipe from filling up
            assert proc.stdout is not None
            while await proc.stdout.read(65536):
                pass

        drainer = asyncio.create_task(drain())
        yield EppPorts(grpc_port, metrics_port)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drainer is not None:
            drainer.cancel()
