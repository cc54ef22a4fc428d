"""`infergate gateway` argument handling (the running process is tested in test_gateway_e2e)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from infergate.cli.gateway import command


def test_help_lists_the_flags() -> None:
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0
    for flag in ("--manifests", "--kubeconfig", "--gateway-class", "--controller-name", "--address-pool",
                 "--admin-port", "--address-mode", "--external-address", "--status-file"):
        assert flag in result.output


def test_exactly_one_source_is_required(tmp_path: Path) -> None:
    result = CliRunner().invoke(command, [])
    assert result.exit_code == 2 and "exactly one source" in result.output
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    result = CliRunner().invoke(command, ["-f", str(tmp_path), "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == 2 and "exactly one source" in result.output


def test_status_file_needs_a_manifest_directory(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    result = CliRunner().invoke(command, ["--kubeconfig", str(kubeconfig), "--status-file", str(tmp_path / "s")])
    assert result.exit_code == 2 and "--status-file" in result.output


def test_an_address_pool_outside_loopback_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(command, ["-f", str(tmp_path), "--address-pool", "10.0.0.0/24"])
    assert result.exit_code == 2
    assert "must be an IPv4 loopback network" in result.output


@pytest.mark.e2e
def test_a_taken_admin_port_is_an_error_naming_the_flag(tmp_path: Path) -> None:
    """Before: a traceback of aiohttp's OSError. Envoy, started first, is stopped with the process."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "infergate", "gateway", "-f", str(tmp_path),
                                 "--admin-port", str(port), "--work-dir", str(tmp_path / "work")],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: cannot start (--admin-port {port}): [Errno 98] error while attempting to bind on address "
        f"('127.0.0.1', {port}): address already in use")
