"""What a failed `infergate migrate run -o json` says, for an assertion message: the phase, the
message, the steps and gates that did not pass (the JSON's tail, which a truncated stdout shows,
is often the successful preflight)."""

from __future__ import annotations

import json
from typing import Any


def failed_run(stdout: str, stderr: str, limit: int = 6000) -> str:
    try:
        report: dict[str, Any] = json.loads(stdout)
    except ValueError:
        return f"stdout (not JSON): {stdout[-limit:]}\nstderr: {stderr[-3000:]}"
    lines = [f"exit {report.get('exitCode')}, phase {report.get('phase')}: {report.get('message')}"]
    lines += [f"step: {json.dumps(s)[:1500]}" for s in report.get("steps") or []
              if s.get("status") not in ("done", "done earlier", "dry-run")]
    lines += [f"gate: {json.dumps(g)[:1500]}" for g in report.get("gates") or [] if g.get("verdict") != "pass"]
    lines += [f"check: {json.dumps(c)[:1500]}" for c in report.get("checks") or [] if c.get("ok") is False]
    return "\n".join(lines)[:limit] + f"\nstderr: {stderr[-3000:]}"
