"""Flags `infergate serve` refuses before starting anything, with a message naming the flag."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from infergate.cli.serve import command


@pytest.mark.parametrize(("url", "reason"), [
    ("localhost:8000", "scheme must be http"),
    ("ftp://h:1", "scheme must be http, got 'ftp'"),
    ("https://h:8000", "https endpoints are not supported"),
    ("http://h", "no port"),
    ("http://:80", "no host"),
    ("http://h:99999", "Port out of range"),
    ("http://127.0.0.1:8000/v2/chat", "only a base URL"),
    ("http://127.0.0.1:0", "port 0 is no port to send to"),  # before: the pool was rejected, every request 404
])
def test_bad_endpoint_url_is_a_usage_error(url: str, reason: str) -> None:
    result = CliRunner().invoke(command, ["--endpoint", url])
    assert result.exit_code == 2
    assert "--endpoint" in result.output and reason in result.output and "http://HOST:PORT" in result.output


def test_nothing_to_serve() -> None:
    result = CliRunner().invoke(command, [])
    assert result.exit_code == 2 and "give --endpoint URL, --pool FILE or --sim N" in result.output


def test_unknown_profile() -> None:
    result = CliRunner().invoke(command, ["--sim", "1", "--profile", "nope"])
    assert result.exit_code == 2 and "--profile" in result.output and "round-robin" in result.output


def test_a_bad_pool_file_names_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "pool.yaml"
    bad.write_text("pool: {namespace: default}\nendpoints: [{address: 127.0.0.1, port: 8000}]\n")
    result = CliRunner().invoke(command, ["--pool", str(bad), "--port", "0", "--state-file", str(tmp_path / "s.json")])
    assert result.exit_code == 1
    assert f"--pool {bad}: pool.name: required" in result.output
    assert "stopped everything infergate serve started: nothing was running" in result.output


def test_several_pools_must_name_their_models(tmp_path: Path) -> None:
    files = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"pool: {{name: {name}}}\nendpoints: [{{address: 127.0.0.1, port: 8000}}]\n")
        files += ["--pool", str(path)]
    result = CliRunner().invoke(command, [*files, "--port", "0", "--state-file", str(tmp_path / "s.json")])
    assert result.exit_code == 1 and "models: required when serving several pools" in result.output


def test_a_busy_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(command, ["--endpoint", "http://127.0.0.1:9", "--port", str(port),
                                              "--state-file", str(tmp_path / "s.json")])
    assert result.exit_code == 1
    assert f"--port {port}: 127.0.0.1:{port} is already in use" in result.output
    assert "nothing was running" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--pool-name", "Bad_Name"], "Invalid value for '--pool-name': 'Bad_Name': must be a lowercase RFC 1123 label "
                                  "of at most 53 characters"),
    (["--pool-namespace", ""], "Invalid value for '--pool-namespace': '': must be a lowercase RFC 1123 label of at "
                               "most 63 characters"),
])
def test_a_pool_name_the_api_would_refuse_is_a_usage_error(args: list[str], message: str) -> None:
    """Before: serve started, the gateway rejected the pool's objects, serve said ready, and every request got 404."""
    result = CliRunner().invoke(command, ["--sim", "1", *args])
    assert result.exit_code == 2 and message in result.output, result.output
