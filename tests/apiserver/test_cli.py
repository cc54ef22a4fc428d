"""`infergate apiserver` as a process: prints the KUBECONFIG line, serves kubectl, stops on
SIGTERM, keeps its state for the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from infergate.util.net import free_port

pytestmark = pytest.mark.e2e


def start(state_dir: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "infergate", "apiserver", "--state-dir", str(state_dir),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # printed once the server is listening
    return proc, line


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    return err


def test_cli_serves_kubectl_and_keeps_acknowledged_writes_across_a_crash(tmp_path: Path, kubectl_bin: str) -> None:
    state = tmp_path / "state"
    port = free_port()
    proc, line = start(state, port)
    try:
        assert line == f"export KUBECONFIG={(state / 'kubeconfig').resolve()}"
        env = {**os.environ, "KUBECONFIG": line.split("=", 1)[1], "HOME": str(tmp_path / "home")}
        created = subprocess.run([kubectl_bin, "create", "namespace", "kept"], env=env, capture_output=True,
                                 text=True, timeout=30)
        assert created.stdout.strip() == "namespace/kept created", created.stderr
        server = (state / "kubeconfig").read_text()
        assert f"server: https://127.0.0.1:{port}" in server
    finally:
        proc.kill()  # SIGKILL: a crash right after the acknowledged write
        proc.communicate(timeout=15)
    proc, line = start(state, port)
    try:
        got = subprocess.run([kubectl_bin, "get", "namespace", "kept", "-o", "name"], env=env, capture_output=True,
                             text=True, timeout=30)
        assert got.stdout.strip() == "namespace/kept"
    finally:
        err = stop(proc)
    assert f"listening on https://127.0.0.1:{port}" in err


def test_cli_help_explains_the_flags() -> None:
    out = subprocess.run([sys.executable, "-m", "infergate", "apiserver", "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    for flag in ("--state-dir", "--host", "--port", "KUBECONFIG"):
        assert flag in out


def test_a_taken_port_is_an_error_in_one_line_with_the_way_out(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "infergate", "apiserver", "--state-dir", str(tmp_path / "state"),
                                 "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == "", result
    assert result.stderr == (f"Error: cannot start: [Errno 98] error while attempting to bind on address "
                             f"('127.0.0.1', {port}): address already in use (another server on --port {port}? "
                             "use --port 0 for a free port)\n")
