"""The peer benchmark's CPU headroom figures (bench.peers.cpu), on a fake /proc tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infergate.bench.peers import cpu
from infergate.bench.peers.cpu import RunCpu, machine_ticks

# user nice system idle iowait irq softirq steal guest guest_nice
STAT = "cpu  {user} 0 {system} {idle} {iowait} 0 0 0 {guest} 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n"


def write_stat(proc: Path, user: int, system: int, idle: int, iowait: int = 0, guest: int = 0) -> None:
    (proc / "stat").write_text(STAT.format(user=user, system=system, idle=idle, iowait=iowait, guest=guest))


def write_process(proc: Path, pid: int, ticks: int, threads: dict[int, tuple[int, int]],
                  slices: dict[int, int] | None = None) -> None:
    slices = slices or {}
    base = proc / str(pid)
    (base / "task").mkdir(parents=True, exist_ok=True)
    # pid (comm with ") " inside) state ppid ... utime(14) stime(15)
    fields = ["S", "1"] + ["0"] * 9 + [str(ticks), "0"] + ["0"] * 30
    (base / "stat").write_text(f"{pid} (sim (x) y) " + " ".join(fields) + "\n")
    for tid, (run_ns, wait_ns) in threads.items():
        (base / "task" / str(tid)).mkdir(exist_ok=True)
        (base / "task" / str(tid) / "schedstat").write_text(f"{run_ns} {wait_ns} {slices.get(tid, 7)}\n")


def test_machine_ticks_do_not_count_guest_time_twice(tmp_path: Path) -> None:
    # the kernel's user time already includes guest time; summing every field counted it twice
    write_stat(tmp_path, user=600, system=100, idle=200, iowait=100, guest=500)
    assert machine_ticks(tmp_path) == (1000, 300)


def test_figures_separate_the_machine_from_the_benchmarks_own_contention(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 110.0])
    monkeypatch.setattr(cpu.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(cpu.os, "sysconf", lambda name: 100)
    me = os.getpid()
    write_stat(tmp_path, user=0, system=0, idle=0)
    write_process(tmp_path, 11, 0, {11: (0, 0), 12: (1_000, 0)})
    write_process(tmp_path, me, 0, {me: (0, 0)})
    sampler = RunCpu({"sim": 11}, proc=tmp_path)
    # 10 s later: the machine was 90% busy (other jobs); the benchmark's processes used 0.3 cores
    # and their threads waited 1 s on a run queue for 3 s on a CPU (a new thread included)
    write_stat(tmp_path, user=1500, system=300, idle=200)
    write_process(tmp_path, 11, 250, {11: (2_000_000_000, 500_000_000), 12: (1_000 + 500_000_000, 0),
                                      13: (250_000_000, 250_000_000)}, {11: 507, 12: 7 + 500, 13: 500})
    write_process(tmp_path, me, 50, {me: (250_000_000, 250_000_000)}, {me: 507})
    figures = sampler.figures()
    assert figures.machine_busy == pytest.approx(0.9)
    assert figures.bench_cores == pytest.approx(0.3)
    assert figures.cpu_wait == pytest.approx(1.0 / 4.0)
    # 1 s of run-queue wait over 2,000 timeslices: half a millisecond late per wake-up
    assert figures.sched_delay_ms == pytest.approx(0.5)


def test_a_process_gone_before_the_end_counts_nothing(tmp_path: Path) -> None:
    write_stat(tmp_path, user=0, system=0, idle=0)
    sampler = RunCpu({"router": 999_999_999}, proc=tmp_path)
    write_stat(tmp_path, user=10, system=0, idle=10)
    figures = sampler.figures()
    assert figures.machine_busy == pytest.approx(0.5)
    assert figures.bench_cores == 0.0
