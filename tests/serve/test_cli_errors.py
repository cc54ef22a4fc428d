"""Flags `infergate serve` refuses before starting anything, with a message naming the flag."""

from __future__ import annotations

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
