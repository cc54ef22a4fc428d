"""The processes ``infergate serve`` starts (simulators, EPPs), through ``infergate.util.procs``.

Each runs in its own session with its output in a log under the work directory; it is ready
when it prints its ``ready ...`` line (read with a deadline); ``stop`` is SIGTERM, a grace
period, then SIGKILL of its whole process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

from infergate.util.procs import spawn_logged, terminate


class ChildError(RuntimeError):
    pass


class Child:
    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @classmethod
    def infergate(cls, name: str, args: list[str], log_path: Path) -> Child:
        return cls(name, [sys.executable, "-m", "infergate", *args], log_path)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def start(self, ready_prefix: str, timeout: float) -> str:
        """Start and return the ready line; ``ChildError`` (with the log's end) if it exits or times out."""
        self.process = await spawn_logged(self.argv, self.log_path, stdout_pipe=True)
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that comes
                # with a line, and the loop then outlived its task's cancel
                async with asyncio.timeout(remaining):
                    raw = await self.process.stdout.readline()
            except TimeoutError:
                raise ChildError(f"{self.name} was not ready within {timeout:.0f}s; log {self.log_path}:\n"
                                 f"{self.log_tail()}") from None
            if not raw:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.process.wait(), 5)
                raise ChildError(f"{self.name} exited ({self.process.returncode}) before it was ready; "
                                 f"log {self.log_path}:\n{self.log_tail()}")
            line = raw.decode(errors="replace").strip()
            if line.startswith(ready_prefix):
                self._drain = asyncio.create_task(self._drain_stdout(), name=f"{self.name}-stdout")
                return line

    async def _drain_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while await self.process.stdout.read(65536):
            pass

    async def stop(self, grace: float = 5.0) -> int | None:
        if self.process is None:
            return None
        code = await terminate(self.process, grace, name=self.name)
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
        return code
