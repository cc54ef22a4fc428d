"""The top-level command line: help, version, lazily-loaded subcommands."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from infergate import __version__
from infergate.cli import SUBCOMMANDS, main


def test_help_lists_only_installed_subcommands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "inference gateway" in result.output
    import importlib.util

    for name, (module, help_text) in SUBCOMMANDS.items():
        present = importlib.util.find_spec(module) is not None
        assert (help_text in result.output) == present, name


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_console_entry_point_runs_as_module() -> None:
    proc = subprocess.run([sys.executable, "-m", "infergate", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "Usage:" in proc.stdout
