"""Running the source document's commands against a fresh `infergate up`.

`Cluster` starts `infergate up` (foreground, as a user runs it) on private loopback networks
with the document's GatewayClass, and runs bash scripts with its KUBECONFIG, the repository
as working directory (so `charts/inferencepool` and `config/crd/*.yaml` resolve) and
`.tools/bin` (kubectl, helm) first on PATH. Every command and its output go to a transcript
(`transcript.log` in the test's tmp dir, printed on failure).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from infergate.util import wait as util_wait
from infergate.util.net import random_loopback_block

GKE_CLASS = "gke-l7-regional-external-managed"
T = TypeVar("T")


def private_cidr(port: int) -> str:
    """A /24 inside 127.0.0.0/8 whose first addresses have ``port`` free (tests run concurrently)."""
    first = random_loopback_block(8, port, rng=random.Random())[0]
    return first.rsplit(".", 1)[0] + ".0/24"


def processes_mentioning(needle: str) -> list[int]:
    """Live processes whose command line or environment contains ``needle`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            zombie = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if not zombie and needle.encode() in text:
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class ShellResult:
    script: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.3) -> T:
    """``check()`` until it returns something truthy, at most ``timeout`` seconds; fails with its last value."""
    last: T | None = None

    def attempt() -> T | None:
        nonlocal last
        last = check()
        return last

    try:
        return util_wait.wait_until(attempt, timeout, interval=interval, what=what)
    except util_wait.WaitTimeout:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})") from None


@dataclass
class Cluster:
    """A running `infergate up` and a bash that talks to it."""

    repo_root: Path
    state_dir: Path
    tools_dir: Path
    transcript: Path
    proc: subprocess.Popen[str] | None = None
    kubeconfig: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def start(self, pod_cidr: str, address_pool: str) -> None:
        with (self.state_dir.parent / "up.stderr").open("w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infergate", "up", "--state-dir", str(self.state_dir), "--port", "0",
                 "--pod-cidr", pod_cidr, "--address-pool", address_pool, "--gateway-class", GKE_CLASS],
                stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until ready, EOF when it failed
        if not line.startswith("export KUBECONFIG="):
            self.stop()
            raise AssertionError(f"infergate up printed no KUBECONFIG line: {line!r}\n"
                                 f"{(self.state_dir.parent / 'up.stderr').read_text()}")
        self.kubeconfig = line.strip().split("=", 1)[1]
        helm_home = self.state_dir.parent / "helm"
        self.env = {**os.environ, "KUBECONFIG": self.kubeconfig,
                    "PATH": f"{self.tools_dir}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
                    "HELM_CACHE_HOME": str(helm_home / "cache"), "HELM_CONFIG_HOME": str(helm_home / "config"),
                    "HELM_DATA_HOME": str(helm_home / "data")}

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def bash(self, script: str, *, check: bool = True, timeout: float = 90, quiet: bool = False) -> ShellResult:
        """Run ``script`` with bash (``set -e``: a failing command fails the script).

        ``quiet``: a test's own query (polling a status...): in the transcript only when it fails.
        """
        run = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=self.repo_root, env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        result = ShellResult(script, run.returncode, run.stdout, run.stderr)
        with self.transcript.open("a") as log:
            if not quiet or run.returncode != 0:
                log.write(f"$ {script.rstrip()}\n{run.stdout}{run.stderr}[exit {run.returncode}]\n\n")
        if check:
            assert run.returncode == 0, f"exit {run.returncode}:\n$ {script}\n{run.stdout}{run.stderr}"
        return result

    def note(self, text: str) -> None:
        """A line of the test's own in the transcript."""
        with self.transcript.open("a") as log:
            log.write(f"# {text}\n")

    def kubectl_json(self, *args: str) -> dict[str, Any]:
        out = self.bash("kubectl " + " ".join(args) + " -o json", quiet=True).stdout
        loaded: dict[str, Any] = json.loads(out)
        return loaded


def can_bind_port_80() -> bool:
    if os.geteuid() == 0:
        return True
    try:
        status = Path("/proc/self/status").read_text()
        effective = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")), 16)
        if effective & (1 << 10):  # CAP_NET_BIND_SERVICE
            return True
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()) <= 80
    except (OSError, ValueError, StopIteration):
        return False


@pytest.fixture
def cluster(tmp_path: Path, repo_root: Path, kubectl_bin: str, helm_bin: str) -> Iterator[Cluster]:
    if not can_bind_port_80():
        pytest.fail("the document's Gateway listens on port 80: run the acceptance tests as root, with "
                    "CAP_NET_BIND_SERVICE, or with net.ipv4.ip_unprivileged_port_start <= 80", pytrace=False)
    assert Path(kubectl_bin).parent == Path(helm_bin).parent, "kubectl and helm expected side by side"
    state = tmp_path / "state"
    transcript = tmp_path / "transcript.log"
    up = Cluster(repo_root=repo_root, state_dir=state, tools_dir=Path(kubectl_bin).parent, transcript=transcript)
    # Gateway listeners use port 80 as the document says; pods use 8000 (simulators) and 9002-9090 (EPPs)
    up.start(pod_cidr=private_cidr(8000), address_pool=private_cidr(80))
    try:
        yield up
        assert len(processes_mentioning(str(state))) >= 5, "the gateway, Envoy and pods should be found by state dir"
    finally:
        up.stop()
        # nothing keeps running: pods carry KUBECONFIG=STATE_DIR/kubeconfig, the gateway its --kubeconfig
        wait_until(lambda: not processes_mentioning(str(state)) or None, 20, "no process of this infergate up left")
        if transcript.exists():
            sys.stderr.write(f"--- transcript ({transcript}) ---\n{transcript.read_text()[-20000:]}\n")
