"""CPU headroom of one peer-benchmark run, read from /proc at its start and end.

Three figures, because the machine's busy fraction alone cannot tell a starved benchmark from
a benchmark sharing an idle-enough machine with other jobs:

- ``machine_busy``: 1 - idle / total over every CPU (``/proc/stat``): everything on the
  machine, other jobs included. ``guest`` time is already inside ``user`` and is not added twice.
- ``bench_cores``: CPU seconds of the run's own processes (the simulators, the router's
  processes, this load generator) per wall second: what the benchmark needs at this time scale.
- ``cpu_wait``: of the time the run's own threads were runnable, the fraction they spent
  waiting for a core (``/proc/<pid>/task/<tid>/schedstat``: nanoseconds on a CPU, nanoseconds
  on a run queue, timeslices). The benchmark's threads wake for short bursts (a simulator
  step, an event), so even an idle machine's wake-up latency is a visible fraction of them
  (20-35% measured with the machine 16-33% busy): read it with
- ``sched_delay_ms``: the mean run-queue wait per timeslice, in wall milliseconds: how late a
  benchmark thread ran after it became runnable. This is the contention that bends the
  measured latencies: times the time scale it is model time lost per wake-up (a simulated
  step is 6.5-14 ms of model time).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class CpuFigures:
    machine_busy: float
    bench_cores: float
    cpu_wait: float
    sched_delay_ms: float = math.nan


def machine_ticks(proc: Path = PROC) -> tuple[int, int]:
    """(total, idle) jiffies of ``/proc/stat``'s ``cpu`` line; idle includes iowait, total leaves out
    guest and guest_nice (the kernel counts them in user and nice already)."""
    with open(proc / "stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]), idle


def process_ticks(pid: int, proc: Path = PROC) -> int:
    """utime + stime of every thread of ``pid``, in clock ticks (0 if it is gone)."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return 0
    parts = text.rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def thread_schedstats(pid: int, proc: Path = PROC) -> dict[int, tuple[int, int, int]]:
    """tid -> (ns on a CPU, ns waiting on a run queue, timeslices) per thread of ``pid`` ({} if gone)."""
    out: dict[int, tuple[int, int, int]] = {}
    try:
        tids = [int(t) for t in os.listdir(proc / str(pid) / "task")]
    except OSError:
        return out
    for tid in tids:
        try:
            fields = (proc / str(pid) / "task" / str(tid) / "schedstat").read_text().split()
        except OSError:
            continue  # the thread ended meanwhile
        out[tid] = (int(fields[0]), int(fields[1]), int(fields[2]) if len(fields) > 2 else 0)
    return out


class RunCpu:
    """Start at the run's start with its processes (name -> pid; this process is added as the
    load generator), ``figures()`` at its end. Threads that end during the run are not counted
    in ``cpu_wait`` (their figures are gone with them)."""

    def __init__(self, processes: Mapping[str, int], proc: Path = PROC) -> None:
        self.proc = proc
        self.pids = sorted({*processes.values(), os.getpid()})
        self._machine = machine_ticks(proc)
        self._ticks = {pid: process_ticks(pid, proc) for pid in self.pids}
        self._sched = {pid: thread_schedstats(pid, proc) for pid in self.pids}
        self._t0 = time.monotonic()

    def figures(self) -> CpuFigures:
        total, idle = machine_ticks(self.proc)
        d_total, d_idle = total - self._machine[0], idle - self._machine[1]
        busy = 1.0 - d_idle / d_total if d_total > 0 else math.nan
        elapsed = max(1e-6, time.monotonic() - self._t0)
        hz = os.sysconf("SC_CLK_TCK")
        ticks = sum(max(0, process_ticks(pid, self.proc) - self._ticks[pid]) for pid in self.pids)
        ran = waited = slices = 0
        for pid in self.pids:
            before = self._sched[pid]
            for tid, (run_ns, wait_ns, n) in thread_schedstats(pid, self.proc).items():
                run0, wait0, n0 = before.get(tid, (0, 0, 0))  # a thread started during the run: all of it
                ran += max(0, run_ns - run0)
                waited += max(0, wait_ns - wait0)
                slices += max(0, n - n0)
        wait = waited / (ran + waited) if ran + waited > 0 else math.nan
        delay = waited / slices / 1e6 if slices else math.nan
        return CpuFigures(busy, ticks / hz / elapsed, wait, delay)
