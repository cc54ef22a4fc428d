"""Flag helpers shared by the ``infergate`` server commands (``epp``, ``bbr``): Go-style flag
spellings, the duration flag type and upstream's ``--v`` / ``--zap-encoder`` logging."""

from __future__ import annotations

import errno
import json
import logging
import re
from typing import Any

import click

from infergate.util.durations import DurationError, parse_seconds

_GO_FLAG = re.compile(r"^-(?!h$)[a-z][a-z0-9-]*(=.*)?$")  # -name, -name=value, -v=4 (not -h)


class GoStyleCommand(click.Command):
    """A click command that also accepts Go ``flag`` spellings: ``-name value`` / ``-name=value``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten = ["-" + arg if _GO_FLAG.match(arg) else arg for arg in args]
        return super().parse_args(ctx, rewritten)


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """Go durations (``50ms``, ``5s``, ``1m30s``) or plain seconds, as seconds (float); not negative."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = float(value) if isinstance(value, int | float) else parse_seconds(str(value))
        except DurationError:
            self.fail(f"{value!r} is not a duration (examples: 50ms, 5s, 2m)", param, ctx)
        if seconds < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return seconds


DURATION = DurationType()


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": record.created, "level": record.levelname.lower(), "logger": record.name,
                 "msg": record.getMessage()}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def cannot_start(exc: OSError, port: int) -> click.ClickException:
    """A server that could not start, as the CLI says it; a taken port gets the way out."""
    hint = f" (another server on --port {port}? use --port 0 for a free port)" if exc.errno == errno.EADDRINUSE else ""
    return click.ClickException(f"cannot start: {exc}{hint}")


def configure_logging(verbosity: int, encoder: str = "console") -> None:
    """Upstream's ``--v``: 2 default (info), 3 verbose, 4 debug, 5 trace; ``--zap-encoder``."""
    level = logging.DEBUG if verbosity >= 4 else logging.INFO if verbosity >= 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if encoder == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(_JSONFormatter())
    if verbosity < 5:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
