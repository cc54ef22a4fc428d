"""Helpers for `infergate serve` tests: the command as a user runs it, simulators, process trees."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

READY = "infergate serve ready: OpenAI base URL "


def infergate(*args: str) -> list[str]:
    return [sys.executable, "-m", "infergate", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


class Serve:
    """``infergate serve ARGS`` in its own session; ``url`` once it printed the ready line.

    Its output is read by a thread into ``output`` all along (so the pipe never fills).
    """

    def __init__(self, args: list[str], tmp: Path, timeout: float = 90.0) -> None:
        self.state_file = tmp / "serve.json"
        self.output: list[str] = []
        self.url = ""
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            infergate("serve", "--port", "0", "--state-file", str(self.state_file), *args),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=_env())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or not self.url:
            self.stop()
            raise AssertionError("infergate serve did not become ready:\n" + self.text())

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith(READY):
                self.url = line[len(READY):].strip()
                self._ready.set()
        self._ready.set()  # EOF: it exited

    def text(self) -> str:
        return "".join(self.output)

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_file.read_text())
        return data

    def stop(self, sig: int = signal.SIGINT, timeout: float = 40.0) -> str:
        """Send ``sig``, wait for the exit and return what it printed from then on."""
        ready_at = len(self.output)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError("infergate serve did not stop:\n" + self.text()) from None
        self._reader.join(10)
        return "".join(self.output[ready_at:])

    def wait_exit(self, timeout: float) -> str:
        """Wait for an exit serve decides itself; return all it printed."""
        self.proc.wait(timeout)
        self._reader.join(10)
        return self.text()


class Sim:
    """One `infergate sim` replica (the test's own model server)."""

    def __init__(self, port: int, model: str, pod_name: str, time_scale: float = 20.0) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            infergate("sim", "--address", "127.0.0.1", "--port", str(port), "--model", model,
                      "--pod-name", pod_name, "--time-scale", str(time_scale)),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True, env=_env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.stop()
            raise AssertionError(f"infergate sim did not start: {line!r}")
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    live = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.add(pid)
    return live


def poll(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
