"""An EPP that cannot run says why in one line and ends, instead of running never ready.

Before: a kubeconfig that could not be loaded, or a pool source that stopped with an error,
only logged a traceback; the process listened, said ``ready``, answered every readiness check
"not serving" and exited 0 when stopped, so a pod stayed up, never ready and never restarted.
Now a kubeconfig that cannot be loaded is an error before anything listens (exit 1, the
reason in one line), and a source that stops with an error stops the EPP gracefully and
ends it with exit code 1 (the kubelet restarts the pod). A taken port is an error naming its
flag, for the EPP and for BBR (before: a traceback).
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from infergate.epp.runner import EPPOptions, SourceFailed, run_epp


def _epp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infergate", "epp", "--pool-name", "pool", "--grpc-port", "0",
                           "--grpc-health-port", "0", "--metrics-port", "0", "--host", "127.0.0.1", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.e2e
def test_a_missing_kubeconfig_is_an_error_before_anything_listens(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "kubeconfig"
    result = _epp("--kubeconfig", str(missing))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "ready" not in result.stdout
    assert result.stderr.strip().splitlines()[-1] == f"Error: cannot load kubeconfig {missing}: No such file or directory"
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_a_kubeconfig_without_a_context_is_an_error_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    result = _epp("--kubeconfig", str(config))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "ready" not in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: cannot load kubeconfig {config}: no current-context and no context given")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_a_pool_source_that_stops_with_an_error_ends_the_epp_after_a_graceful_stop(tmp_path: Path) -> None:
    """The static source ends with an error when its file is missing as it starts (here: never
    written; the CLI checks that it exists, a ConfigMap volume could lose it after that check)."""
    pool_file = tmp_path / "pool.yaml"
    options = EPPOptions(pool_name="pool", host="127.0.0.1", grpc_port=0, grpc_health_port=0, metrics_port=0,
                         static_file=str(pool_file))
    lines: list[str] = []
    try:
        with pytest.raises(SourceFailed) as failed:
            async with asyncio.timeout(30):
                await run_epp(options, ready=lines.append)
    finally:
        faulthandler.cancel_dump_traceback_later()  # run_epp's exit deadline is the process's, not this test's
    assert str(failed.value) == f"the pool source stopped: SourceError: {pool_file}: static pool file not found"
    assert len(lines) == 1 and lines[0].startswith("ready grpc="), lines  # it had started: the stop ran
    ports = [int(part.split("=")[1]) for part in lines[0].split()[1:]]
    assert len(ports) == 3 and not any(_listening(port) for port in ports), ports


@pytest.mark.e2e
def test_a_stop_signal_still_ends_the_epp_with_exit_code_0(tmp_path: Path) -> None:
    """Waiting for a source failure does not change the ordinary stop: SIGTERM, graceful stop, exit 0."""
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text("pool: {name: pool, targetPorts: [8000]}\n"
                         "endpoints: [{name: pod-0, address: 127.0.0.1, port: 8000}]\n")
    proc = subprocess.Popen([sys.executable, "-m", "infergate", "epp", "--pool-name", "pool", "--grpc-port", "0",
                             "--grpc-health-port", "0", "--metrics-port", "0", "--host", "127.0.0.1",
                             "--static-file", str(pool_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready grpc="), (line, proc.poll())
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "SIGTERM: stopping" in stderr and "Error" not in stderr


@pytest.mark.e2e
@pytest.mark.parametrize("command", ["epp", "bbr"])
@pytest.mark.parametrize("flag", ["--grpc-port", "--grpc-health-port", "--metrics-port"])
def test_a_taken_port_is_an_error_naming_its_flag(tmp_path: Path, command: str, flag: str) -> None:
    """Before: a traceback (grpc's RuntimeError "Failed to bind", aiohttp's OSError)."""
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text("pool: {name: pool, targetPorts: [8000]}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--grpc-port": "0", "--grpc-health-port": "0", "--metrics-port": "0", flag: str(port)}
        extra = ["--pool-name", "pool", "--static-file", str(pool_file)] if command == "epp" else []
        result = subprocess.run([sys.executable, "-m", "infergate", command, "--host", "127.0.0.1", *extra,
                                 *(arg for pair in ports.items() for arg in pair)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    assert "ready" not in result.stdout and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: cannot start ({flag} {port}): "), last
    assert "in use" in last, last
