"""util.procs: children in their own process group, output in a log, stopped with SIGTERM then SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from infergate.util.procs import pid_alive, signal_group, spawn_logged, spawn_logged_sync, terminate
from infergate.util.wait import async_wait_until, wait_until

# A child that starts a grandchild (same process group), says so, then waits.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(f"grandchild {child.pid}", flush=True)
print("to the log", file=sys.stderr, flush=True)
time.sleep(60)
"""
# A child that ignores SIGTERM.
STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(60)
"""


def _grandchild(log: Path) -> int | None:
    for line in log.read_text().splitlines():
        if line.startswith("grandchild "):
            return int(line.split()[1])
    return None


async def test_a_child_and_its_group_are_stopped_and_its_output_is_logged(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "child.log"
    proc = await spawn_logged([sys.executable, "-c", PARENT], log)
    assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)  # its own session and group
    grandchild = await async_wait_until(lambda: _grandchild(log), 10, what="the grandchild's pid")
    await async_wait_until(lambda: "to the log" in log.read_text(), 10)
    assert await terminate(proc, 5.0) == -signal.SIGTERM
    await async_wait_until(lambda: not pid_alive(grandchild), 5, what="the grandchild to exit")


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    proc = await spawn_logged([sys.executable, "-c", STUBBORN], log, stdout_pipe=True)
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"ignoring SIGTERM\n"
    started = time.monotonic()
    assert await terminate(proc, 0.5, name="the stubborn child") == -signal.SIGKILL
    assert time.monotonic() - started >= 0.5
    assert await terminate(proc, 0.5) == -signal.SIGKILL  # already stopped: left alone


def test_the_sync_spawner_detaches_and_signal_group_stops_the_group(tmp_path: Path) -> None:
    log = tmp_path / "sync.log"
    proc = spawn_logged_sync([sys.executable, "-c", PARENT], log, env={**os.environ, "X": "1"})
    try:
        assert os.getpgid(proc.pid) == proc.pid
        grandchild = wait_until(lambda: _grandchild(log), 10, what="the grandchild's pid")
        signal_group(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == -signal.SIGTERM
        wait_until(lambda: not pid_alive(grandchild), 5, what="the grandchild to exit")
    finally:
        proc.kill()
        proc.wait()
    signal_group(proc.pid, signal.SIGTERM)  # a group that is gone: nothing happens


async def test_a_child_in_the_callers_group_is_stopped_alone(tmp_path: Path) -> None:
    log = tmp_path / "same-group.log"
    proc = await spawn_logged([sys.executable, "-c", STUBBORN], log, stdout_pipe=True, new_session=False)
    assert proc.stdout is not None
    assert await proc.stdout.readline() == b"ignoring SIGTERM\n"
    assert os.getpgid(proc.pid) == os.getpgid(0)  # stays in our group: whoever stops ours stops it
    assert await terminate(proc, 0.5) == -signal.SIGKILL  # signalled alone (we are still here)
