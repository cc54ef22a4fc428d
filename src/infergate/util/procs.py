"""Child processes the way the supervisors run them: own process group, output to a log, stopped in two steps.

A child starts in a new session, so it and anything it starts form one process group that
``terminate`` signals as a whole (a Python child's helpers, a wrapper's Envoy); its stdin is
/dev/null and its output is appended to a log file. ``terminate`` sends SIGTERM, waits a grace
period, then sends SIGKILL. A child started with ``new_session=False`` stays in its parent's
group (so whoever stops the parent's group stops it too); ``terminate`` then signals only it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

KILL_WAIT_S = 5.0  # how long to wait for the exit after SIGKILL


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (also one of another user, which signal 0 cannot reach)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid``; nothing if it is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def spawn_logged(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    stdout_pipe: bool = False,
    new_session: bool = True,
) -> asyncio.subprocess.Process:
    """Start ``argv`` in a new session with its output appended to ``log_path`` (created with its folder).

    With ``stdout_pipe`` the child's stdout is a pipe the caller reads (stderr still goes to the log).
    With ``new_session=False`` the child stays in the caller's process group.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else log_file,
            stderr=log_file,
            env=dict(env) if env is not None else None,
            start_new_session=new_session,
        )


def spawn_logged_sync(
    argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``spawn_logged`` for code without an event loop (the child outlives the caller if not stopped)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )


async def terminate(proc: asyncio.subprocess.Process, grace: float, *, name: str = "the process") -> int | None:
    """Stop a child started by ``spawn_logged`` and its process group: SIGTERM, ``grace`` seconds, SIGKILL.

    A child that does not lead its own group (``new_session=False``) is signalled alone.
    Returns the exit code (None if it did not exit even after SIGKILL). A child that has already
    exited is left alone.
    """
    if proc.returncode is not None:
        return proc.returncode
    send = _group_sender(proc) if _leads_group(proc.pid) else _process_sender(proc)
    send(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        log.warning("%s did not stop within %.0fs; killing it", name, grace)
    send(signal.SIGKILL)  # also what it left running in its group
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), KILL_WAIT_S)
    return proc.returncode


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _group_sender(proc: asyncio.subprocess.Process) -> Callable[[int], None]:
    return lambda sig: signal_group(proc.pid, sig)


def _process_sender(proc: asyncio.subprocess.Process) -> Callable[[int], None]:
    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)

    return send
