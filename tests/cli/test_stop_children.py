"""Commands that start children stop them on SIGTERM as on Ctrl-C, in bounded time, and say so.

A supervisor's stop and a user's `kill` send SIGTERM (a background job started from a
non-interactive shell even ignores SIGINT); before, `infergate bench peers` died at once on it and
left its simulator and EPP running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.serve.support import alive, descendants, poll

pytestmark = [pytest.mark.e2e]
SRC = Path(__file__).resolve().parents[2] / "src"


def cmdlines(pids: set[int]) -> list[bytes]:
    found = []
    for pid in pids:
        try:
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes())
        except OSError:
            continue
    return found


@pytest.mark.parametrize("signals", [(signal.SIGTERM,), (signal.SIGTERM, signal.SIGINT)],
                         ids=["sigterm", "sigterm-then-ctrl-c"])
def test_sigterm_to_bench_peers_stops_its_simulator_and_epp(tmp_path: Path, signals: tuple[signal.Signals, ...]
                                                            ) -> None:
    """A second signal cuts the stop short: what is left is killed at once, nothing is left running."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "infergate", "bench", "peers", "--workloads", "shared-prefix",
                             "--routers", "infergate-round-robin", "--phases", "open", "--duration", "5",
                             "--replicas", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    seen: set[int] = set()
    try:
        def epp_started() -> bool:
            seen.update(descendants(proc.pid))
            return any(b"\x00epp\x00" in c for c in cmdlines(seen))

        poll(epp_started, 30, "the benchmark to start its simulator and EPP", interval=0.05)
        assert any(b"\x00sim\x00" in c for c in cmdlines(seen))
        seen.update(descendants(proc.pid))
        stopped_at = time.monotonic()
        for sig in signals:  # back to back: the second one comes before the stop is done
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        poll(lambda: not alive(seen), 20, "every child to be gone", interval=0.05)
        assert time.monotonic() - stopped_at < 45, err  # bounded (before the fix they never stopped)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in alive(seen):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert "received SIGTERM: stopping" in err, err
    if len(signals) > 1:
        assert "stopped by SIGTERM (cleanup abandoned" in err, err
