"""One container of a local pod: its process (restarted with backoff), its probes, its status.

A pod of several containers has one :class:`PodProcess` per container, each restarted on its
own (``restartPolicy: Always``, the only one a Deployment allows), as the kubelet does. An init
container (``run_to_completion``) is restarted until it exits 0, then is done.

The process runs in its own session (process group), so stopping a pod stops everything
it started: SIGTERM to the group, SIGKILL after the grace period.

Probes, as the kubelet runs them: while a ``startupProbe`` has not succeeded, neither
readiness nor liveness runs (``started`` is false); ``failureThreshold`` consecutive startup
or liveness failures kill the process (SIGTERM to its group, SIGKILL after the grace period)
and the ordinary restart path runs it again (``restartCount`` + 1, ``lastState.terminated``).
Each attempt is bounded by its ``timeoutSeconds``; the probe tasks end with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from infergate.apiserver.runtime.logs import MARKER
from infergate.apiserver.runtime.probes import run_probe
from infergate.apiserver.runtime.spec import ENVOY, LaunchSpec, Probe
from infergate.dataplane.binary import envoy_binary
from infergate.util.clock import utc_now
from infergate.util.procs import signal_group, spawn_logged, terminate

log = logging.getLogger(__name__)
ENTRYPOINT = ("-m", "infergate.cli.pod")  # a module path run by the child: the runtime never imports the CLI
# Runs a program that dies with the runtime (PR_SET_PDEATHSIG survives exec), as the
# entrypoint above does for infergate: ``python -c EXEC_DYING_WITH_PARENT PROGRAM ARGS...``.
EXEC_DYING_WITH_PARENT = """
import ctypes, os, signal, sys
parent = os.environ.get("INFERGATE_PARENT_PID")
if parent and sys.platform.startswith("linux"):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if str(os.getppid()) != parent:
        sys.exit(1)
os.execv(sys.argv[1], sys.argv[1:])
"""


MIN_GRACE_AFTER_PRE_STOP_S = 2.0  # the kubelet's extra time for SIGTERM when the preStop hook used the grace


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff between restarts: ``initial_s`` doubling up to ``max_s``; reset after ``reset_after_s`` up."""

    initial_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 10.0
    max_grace_s: float = 10.0  # the pod's terminationGracePeriodSeconds is capped to this


@dataclass
class ContainerState:
    """What the Pod status reports."""

    phase: str = "Pending"
    running_since: str | None = None
    started_at: str | None = None
    waiting_reason: str | None = "ContainerCreating"
    last_exit_code: int | None = None
    last_finished_at: str | None = None
    restart_count: int = 0
    ready: bool = False
    pid: int | None = None
    started: bool = False  # running, and its startupProbe (if any) has succeeded
    killed_by: str | None = None  # "liveness" / "startup": the last run was killed by that probe
    completed: bool = False  # an init container that exited 0 (it is not run again)

    def key(self) -> tuple[object, ...]:
        return (self.phase, self.running_since, self.waiting_reason, self.last_exit_code, self.restart_count,
                self.ready, self.started, self.completed)


class PodProcess:
    """Runs ``python -m infergate ARGV`` (or ``envoy ARGV``) for one container of a pod until stopped.

    ``name`` is the pod's key (``namespace/name``), ``spec.container`` the container's name.
    """

    def __init__(self, name: str, ip: str, spec: LaunchSpec, base_env: Mapping[str, str], log_path: Path,
                 on_change: Callable[[PodProcess], None], policy: RestartPolicy | None = None,
                 python: str = sys.executable, run_to_completion: bool = False) -> None:
        self.name = name
        self.container = spec.container
        self.run_to_completion = run_to_completion
        self.ip = ip
        self.spec = spec
        self.base_env = dict(base_env)
        self.log_path = log_path
        self.on_change = on_change
        self.policy = policy or RestartPolicy()
        self.python = python
        self.state = ContainerState()
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._last_key = self.state.key()

    @property
    def argv(self) -> list[str]:
        if self.spec.program == ENVOY:
            return [self.python, "-c", EXEC_DYING_WITH_PARENT, envoy_binary(), *self.spec.argv]
        return [self.python, *ENTRYPOINT, *self.spec.argv]

    @property
    def label(self) -> str:
        """``pod NS/NAME`` or, for a container other than ``main``, ``pod NS/NAME container C``."""
        return f"pod {self.name}" + (f" container {self.container}" if self.container != "main" else "")

    def environment(self) -> dict[str, str]:
        env = {**self.base_env, **self.spec.env}
        return env

    def start(self) -> None:
        if self._task is None and not self._stopping.is_set():
            self._task = asyncio.create_task(self._run(), name=self.label)

    async def completed(self) -> bool:
        """Wait for the restart loop to end (started, else at once): True if the container
        ran to completion (exit 0, ``run_to_completion``), False if it was stopped."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)
        return self.state.completed

    def _changed(self) -> None:
        key = self.state.key()
        if key != self._last_key:
            self._last_key = key
            self.on_change(self)

    async def _run(self) -> None:
        failures = 0
        async with aiohttp.ClientSession() as session:
            while not self._stopping.is_set():
                started = time.monotonic()
                try:
                    await self._run_once(session)
                except Exception as exc:  # cannot start: report and back off like a crash
                    log.error("%s: %s", self.label, exc)
                    self.state.last_exit_code = 128
                if self._stopping.is_set():
                    break
                if self.run_to_completion and self.state.last_exit_code == 0:
                    self.state.completed = True
                    self.state.phase = "Succeeded"
                    self.state.running_since = None
                    self.state.waiting_reason = None
                    self._changed()
                    return
                failures = 0 if time.monotonic() - started >= self.policy.reset_after_s else failures + 1
                delay = min(self.policy.initial_s * 2 ** max(failures - 1, 0), self.policy.max_s)
                self.state.restart_count += 1
                self.state.waiting_reason = "CrashLoopBackOff"
                self.state.ready = False
                self.state.running_since = None
                self._changed()
                log.warning("%s exited (%s); restarting in %.1fs", self.label, self.state.last_exit_code, delay)
                with contextlib.suppress(TimeoutError):  # asyncio.timeout, not wait_for: see _attempt
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()

    async def _run_once(self, session: aiohttp.ClientSession) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            log_file.write(MARKER + f"{utc_now()} starting: {self.spec.program} {' '.join(self.spec.argv)}\n".encode())
        self._proc = await spawn_logged(self.argv, self.log_path, env=self.environment())
        now = utc_now()
        self.state.phase = "Running"
        self.state.pid = self._proc.pid
        self.state.running_since = now
        self.state.started_at = self.state.started_at or now
        self.state.waiting_reason = None
        self.state.killed_by = None
        self.state.started = self.spec.startup is None
        self.state.ready = self.spec.probe is None and self.state.started
        self._changed()
        proc = self._proc
        probing = self.spec.probe is not None or self.spec.liveness is not None or self.spec.startup is not None
        prober = asyncio.create_task(self._probes(session, proc), name=f"probes {self.name}") if probing else None
        try:
            code = await proc.wait()
        finally:
            if prober is not None:
                prober.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prober
        if self.state.killed_by is not None:
            signal_group(proc.pid, signal.SIGKILL)  # anything the killed process left (if the probe task was cancelled)
        self.state.last_exit_code = 128 - code if code < 0 else code  # killed by signal N: 128+N, as containers
        self.state.last_finished_at = utc_now()
        self.state.ready = False
        self.state.started = False
        self.state.pid = None
        self._proc = None

    async def _probes(self, session: aiohttp.ClientSession, proc: asyncio.subprocess.Process) -> None:
        """Startup first (if any); then readiness and liveness side by side, until the process ends."""
        if self.spec.startup is not None:
            if not await self._startup_loop(session, self.spec.startup):
                await self._kill_for("startup", proc)
                return
            self.state.started = True
            if self.spec.probe is None:
                self.state.ready = True
            self._changed()
        loops: list[asyncio.Task[None]] = []
        if self.spec.probe is not None:
            loops.append(asyncio.create_task(self._probe_loop(session)))
        if self.spec.liveness is not None:
            loops.append(asyncio.create_task(self._liveness_loop(session, self.spec.liveness, proc)))
        if not loops:
            return
        try:  # the liveness loop ends only once it has killed the process: readiness stops with it
            await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _attempt(self, probe: Probe, session: aiohttp.ClientSession) -> bool:
        """One attempt, bounded even if a handler ignored its own timeout."""
        # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that comes as the
        # probe completes, and the probe loop then outlived its task's cancel (the stop hung)
        try:
            async with asyncio.timeout(probe.timeout_s + 1.0):
                return await run_probe(probe, self.ip, session)
        except TimeoutError:
            return False

    async def _startup_loop(self, session: aiohttp.ClientSession, probe: Probe) -> bool:
        """True once the startup probe succeeds; False after ``failureThreshold`` failures in a row."""
        await asyncio.sleep(probe.initial_delay_s)
        failures = 0
        while True:
            if await self._attempt(probe, session):
                return True
            failures += 1
            if failures >= probe.failure_threshold:
                log.warning("%s: startup probe failed %d times; killing the container", self.label, failures)
                return False
            await asyncio.sleep(probe.period_s)

    async def _liveness_loop(self, session: aiohttp.ClientSession, probe: Probe,
                             proc: asyncio.subprocess.Process) -> None:
        await asyncio.sleep(probe.initial_delay_s)
        failures = 0
        while True:
            ok = await self._attempt(probe, session)
            failures = 0 if ok else failures + 1
            if failures >= probe.failure_threshold:
                log.warning("%s: liveness probe failed %d times; killing the container", self.label, failures)
                await self._kill_for("liveness", proc)
                return
            await asyncio.sleep(probe.period_s)

    async def _kill_for(self, probe_kind: str, proc: asyncio.subprocess.Process) -> None:
        """Kill the container the kubelet's way: SIGTERM to its group, SIGKILL after the grace period.

        The process then exits and the restart loop runs it again (this task is cancelled by then).
        """
        if self._stopping.is_set() or proc.returncode is not None:
            return
        self.state.killed_by = probe_kind
        self.state.ready = False
        self._changed()
        await terminate(proc, self._grace_s(), name=self.label)

    async def _probe_loop(self, session: aiohttp.ClientSession) -> None:
        probe = self.spec.probe
        assert probe is not None
        await asyncio.sleep(probe.initial_delay_s)
        successes = failures = 0
        while True:
            ok = await run_probe(probe, self.ip, session)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if not self.state.ready and successes >= probe.success_threshold:
                self.state.ready = True
                self._changed()
            elif self.state.ready and failures >= probe.failure_threshold:
                self.state.ready = False
                self._changed()
            # Until ready, probe often (the pod should join its pool quickly); then at the
            # probe's period, capped so a dead endpoint leaves rotation within seconds.
            await asyncio.sleep(min(probe.period_s, 5.0) if self.state.ready else min(probe.period_s, 0.25))

    async def stop(self, *, pre_stop: bool = True) -> None:
        """Stop the restart loop and the process group: the container's ``preStop`` pause (unless
        ``pre_stop`` is False), then SIGTERM, and SIGKILL once the grace period is over.

        The pause and the SIGTERM share the grace period, as the kubelet's do (SIGTERM gets at
        least ``MIN_GRACE_AFTER_PRE_STOP_S`` after a long pause)."""
        self._stopping.set()
        proc = self._proc
        grace = self._grace_s()
        if proc is not None and proc.returncode is None and pre_stop and self.spec.pre_stop_s > 0:
            pause = min(self.spec.pre_stop_s, grace)
            log.info("%s: preStop pause of %gs before SIGTERM", self.label, pause)
            with contextlib.suppress(TimeoutError):  # the process may exit on its own meanwhile
                await asyncio.wait_for(proc.wait(), pause)
            grace = max(grace - pause, MIN_GRACE_AFTER_PRE_STOP_S)
        if proc is not None:
            await terminate(proc, grace, name=self.label)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 5.0)
        self.state.ready = False
        self.state.phase = "Succeeded"

    def _grace_s(self) -> float:
        return min(self.spec.grace_period_s, self.policy.max_grace_s)

    def kill(self) -> None:
        """SIGKILL the current process (tests: a crash)."""
        if self._proc is not None and self._proc.returncode is None:
            signal_group(self._proc.pid, signal.SIGKILL)

